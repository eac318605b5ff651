// Workflows: the list, and one workflow drawn as a graph whose nodes take the
// colour of their run's state as it changes.

import { h, fill, badge, table, section, facts, when, idLink, link, confirmAction, toast } from './dom.js';
import * as api from './api.js';
import { dag } from './dag.js';
import { choice, filters, pager } from './jobs.js';

const WF_STATES = ['running', 'succeeded', 'failed', 'cancelled'];

export async function listPage(params) {
  const body = h('div');
  const el = h('div', { class: 'page' }, h('h1', {}, 'Workflows'),
    filters('/workflows', [
      h('label', {}, 'Name', h('input', { name: 'name', id: 'filter-name', type: 'search', value: params.name || '' })),
      choice('state', 'State', WF_STATES, params.state),
    ]),
    body);
  async function load() {
    const page = await api.get(`/api/v1/workflows${api.query({ name: params.name, state: params.state, before: params.before, limit: params.limit })}`);
    fill(body, table(['Workflow', 'Name', 'State', 'Jobs', 'Created', 'Finished'],
      page.items.map((w) => h('tr', { 'data-workflow': w.id }, h('td', {}, idLink(w.id)),
        h('td', {}, link(`#/workflows/${w.id}`, w.name)), h('td', { class: 'state' }, badge(w.state)),
        h('td', {}, String(w.nodes)), h('td', {}, when(w.created_at)), h('td', {}, when(w.finished_at)))), { id: 'workflows-table' }),
      pager('/workflows', params, page.next));
  }
  await load();
  return { title: 'Workflows', el, refresh: load };
}

export async function detailPage(id) {
  const el = h('div', { class: 'page' });
  async function cancel() {
    if (!(await confirmAction(`Cancel ${id}? Every unfinished run of its jobs is cancelled.`, 'Cancel workflow'))) return;
    try { await api.post(`/api/v1/workflows/${id}/cancel`); toast(`${id} cancelled`); await load(); } catch (e) { toast(e.message, 'error'); }
  }
  async function load() {
    const w = await api.get(`/api/v1/workflows/${encodeURIComponent(id)}`);
    fill(el,
      h('h1', {}, h('span', { class: 'muted' }, `${w.id} `), w.name, ' ', badge(w.state, { id: 'workflow-state' })),
      h('div', { class: 'actions' }, w.state === 'running' && !w.cancelled
        ? h('button', { type: 'button', class: 'danger', 'data-action': 'cancel-workflow', onclick: cancel }, 'Cancel workflow') : null),
      section('Graph', h('div', { class: 'dag-wrap' }, dag(w.nodes))),
      section('Jobs', table(['Node', 'Job', 'Depends on', 'Run', 'State'],
        w.nodes.map((n) => h('tr', { 'data-node': n.name }, h('td', {}, n.name), h('td', {}, idLink(n.job)),
          h('td', {}, n.depends_on.map((e) => `${e.job} (${e.when})`).join(', ') || '—'),
          h('td', {}, n.run ? idLink(n.run.id) : '—'), h('td', { class: 'state' }, n.run ? badge(n.run.state) : '—'))))),
      section('Workflow', facts([['Created', when(w.created_at)], ['Finished', w.finished_at ? when(w.finished_at) : null],
        ['Fired by', w.fired_by ? idLink(w.fired_by) : null]])));
    return w.name;
  }
  const name = await load();
  return { title: name, el, refresh: load };
}
