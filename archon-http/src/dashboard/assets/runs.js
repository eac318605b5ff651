// Runs: the list (by state, by job) and one run — its state, why it is still
// pending (each worker and what it lacks), its attempts with worker, exit,
// timing and resources used, and its output, followed live.

import { h, fill, badge, table, section, facts, when, span, seconds, bytes, exit, idLink, link, confirmAction, toast } from './dom.js';
import * as api from './api.js';
import { OutputView } from './output.js';
import { STATES, choice, filters, pager } from './jobs.js';

const ENDED = ['succeeded', 'failed', 'cancelled', 'timed_out', 'upstream_failed'];

export async function listPage(params) {
  const body = h('div');
  const el = h('div', { class: 'page' }, h('h1', {}, 'Runs'),
    filters('/runs', [
      choice('state', 'State', STATES, params.state),
      h('label', {}, 'Job', h('input', { name: 'job', id: 'filter-job', value: params.job || '', placeholder: 'job-12', pattern: '(job-)?[0-9]+' })),
    ]),
    body);
  async function load() {
    const page = await api.get(`/api/v1/runs${api.query({ state: params.state, job: params.job, before: params.before, limit: params.limit })}`);
    fill(body, table(['Run', 'Job', 'State', 'Created', 'Took', 'Attempts', 'Exit'],
      page.items.map((r) => h('tr', { 'data-run': r.id },
        h('td', {}, idLink(r.id)), h('td', {}, link(`#/jobs/${r.job}`, r.job_name || r.job)),
        h('td', { class: 'state' }, badge(r.state)), h('td', {}, when(r.created_at)),
        h('td', {}, r.finished_at ? span(r.created_at, r.finished_at) : '—'), h('td', {}, String(r.attempts)),
        h('td', {}, exit(r.exit)))), { id: 'runs-table' }),
      pager('/runs', params, page.next));
  }
  await load();
  return { title: 'Runs', el, refresh: load };
}

/** "waiting for capacity: needs …; a has …, b has …" → its parts, one per worker. */
export function reasons(text) {
  const colon = text.indexOf(': ');
  if (colon < 0) return { head: text, items: [] };
  const head = text.slice(0, colon);
  const rest = text.slice(colon + 2);
  const items = rest.split(/; |, (?=[^,]+ (?:has|lacks|needs|is|does|cannot|offers|runs|\())/).map((x) => x.trim()).filter(Boolean);
  return { head, items };
}

function pending(text) {
  if (!text) return null;
  const { head, items } = reasons(text);
  return section('Why it is pending', h('div', { id: 'pending-reason', role: 'status' },
    h('p', {}, head), items.length ? h('ul', {}, items.map((x) => h('li', {}, x))) : null));
}

function attempts(list) {
  return table(['Attempt', 'Worker', 'State', 'Assigned', 'Started', 'Ran', 'Exit', 'CPU', 'Peak memory'],
    list.map((a) => h('tr', { 'data-attempt': a.id },
      h('td', {}, a.id), h('td', {}, link('#/workers', a.worker)), h('td', { class: 'state' }, badge(a.state)),
      h('td', {}, when(a.assigned_at)), h('td', {}, when(a.started_at)),
      h('td', {}, a.started_at ? span(a.started_at, a.finished_at) : '—'),
      h('td', { class: 'exit' }, exit(a.exit)),
      h('td', {}, a.usage ? `${seconds(a.usage.cpu_seconds)} (user ${seconds(a.usage.cpu_user_seconds)})` : '—'),
      h('td', {}, a.usage ? bytes(a.usage.peak_memory_bytes) : '—'))), { id: 'attempts' });
}

export async function detailPage(id) {
  const head = h('div');
  const output = new OutputView(id);
  const el = h('div', { class: 'page' }, head, output.el);
  let following = false;
  let shown = false;
  async function cancel() {
    if (!(await confirmAction(`Cancel ${id}? A running attempt is killed on its worker.`, 'Cancel run'))) return;
    try { await api.post(`/api/v1/runs/${id}/cancel`); toast(`${id} cancelled`); await load(); } catch (e) { toast(e.message, 'error'); }
  }
  async function load() {
    const d = await api.get(`/api/v1/runs/${encodeURIComponent(id)}`);
    const r = d.run;
    const ended = ENDED.includes(r.state);
    fill(head,
      h('h1', {}, h('span', { class: 'muted' }, `${r.id} `), link(`#/jobs/${r.job}`, d.job_name, { id: 'run-job' }), ' ',
        badge(r.state, { id: 'run-state' })),
      h('div', { class: 'actions' },
        ended ? null : h('button', { type: 'button', class: 'danger', 'data-action': 'cancel-run', onclick: cancel }, 'Cancel run'),
        r.cancel_requested && !ended ? h('span', { class: 'muted' }, 'cancel requested…') : null),
      pending(d.pending_reason),
      section('Run', facts([
        ['Job', idLink(r.job)], ['Created', when(r.created_at)], ['Scheduled for', r.scheduled_for ? when(r.scheduled_for) : null],
        ['Finished', r.finished_at ? when(r.finished_at) : null], ['Took', r.finished_at ? span(r.created_at, r.finished_at) : null],
        ['Retries used', String(r.retries_used)], ['Next try', r.not_before ? when(r.not_before) : null], ['Reason', r.reason],
      ], { id: 'run-facts' })),
      section('Attempts', attempts(d.attempts)));
    // Output: followed live while the run can still print, the kept tail once it ended.
    if (!ended && !following && d.attempts.length) {
      following = true;
      output.followLive(() => load().catch(() => {}), () => { following = false; });
    } else if (ended && !following && !shown) {
      shown = true;
      await output.showKept(api);
    }
    return d.job_name;
  }
  const name = await load();
  return { title: `${id} ${name}`, el, refresh: load, dispose: () => output.dispose() };
}
