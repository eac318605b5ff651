// Jobs: the list with filters (name, kind, latest run's state) and cursor
// paging, and one job with its spec, its schedule (next fires, missed ones,
// pause/resume/trigger) and its runs.

import { h, fill, badge, table, section, facts, when, idLink, link, confirmAction, toast } from './dom.js';
import * as api from './api.js';

const KINDS = ['shell', 'script', 'process', 'docker', 'function'];
export const STATES = ['pending', 'waiting', 'scheduled', 'running', 'retrying', 'succeeded', 'failed', 'timed_out', 'cancelled', 'upstream_failed'];

/** A <select> of `options` with an "any" first. */
export function choice(name, label, options, value) {
  return h('label', {}, label,
    h('select', { name, id: `filter-${name}` },
      h('option', { value: '' }, 'any'),
      options.map((o) => h('option', { value: o, selected: o === value }, o.replace(/_/g, ' ')))));
}

/** The filter form of a list page: submitting it changes the hash. */
export function filters(path, fields) {
  const form = h('form', { class: 'filters', role: 'search', id: 'filters' }, fields,
    h('button', { type: 'submit', id: 'filter-apply' }, 'Filter'));
  form.addEventListener('submit', (e) => {
    e.preventDefault();
    const values = Object.fromEntries([...new FormData(form)].filter(([, v]) => v !== ''));
    // A page size chosen in the address stays; the cursor starts again.
    const size = new URLSearchParams(location.hash.split('?')[1] || '').get('limit');
    location.hash = `#${path}${api.query({ ...values, limit: size })}`;
  });
  return form;
}

/** "Newest" and "Older" links of a cursor-paged list. */
export function pager(path, params, next) {
  const { before, ...rest } = params;
  return h('nav', { class: 'pager', 'aria-label': 'Pages' },
    before ? link(`#${path}${api.query(rest)}`, '« Newest') : null,
    next ? link(`#${path}${api.query({ ...rest, before: next })}`, 'Older »', { id: 'older' }) : null);
}

export async function listPage(params) {
  const body = h('div');
  const el = h('div', { class: 'page' }, h('h1', {}, 'Jobs'),
    filters('/jobs', [
      h('label', {}, 'Name', h('input', { name: 'name', id: 'filter-name', type: 'search', value: params.name || '', placeholder: 'contains…' })),
      choice('kind', 'Kind', KINDS, params.kind),
      choice('state', 'Latest run', STATES, params.state),
    ]),
    body);
  async function load() {
    const page = await api.get(`/api/v1/jobs${api.query({ name: params.name, kind: params.kind, state: params.state, before: params.before, limit: params.limit })}`);
    fill(body, table(['Job', 'Name', 'Kind', 'Task', 'Runs', 'Latest run', 'Next fire'],
      page.items.map((j) => h('tr', { 'data-job': j.id },
        h('td', {}, idLink(j.id)), h('td', { class: 'name' }, link(`#/jobs/${j.id}`, j.name)), h('td', {}, j.kind),
        h('td', { class: 'task' }, h('code', {}, j.task)), h('td', {}, String(j.runs)),
        h('td', { class: 'state' }, j.last_state ? badge(j.last_state) : '—'),
        h('td', {}, j.paused ? badge('paused') : when(j.next_fire)))), { id: 'jobs-table' }),
      pager('/jobs', params, page.next));
  }
  await load();
  return { title: 'Jobs', el, refresh: load };
}

function task(t) {
  switch (t.kind) {
    case 'shell': return h('pre', { class: 'code' }, t.command);
    case 'script': return [h('p', { class: 'muted' }, `interpreter: ${t.interpreter}`), h('pre', { class: 'code' }, t.body)];
    case 'process': return h('pre', { class: 'code' }, t.argv.join(' '));
    case 'docker': return facts([['Image', h('code', {}, t.image)], ['Command', t.command.length ? h('code', {}, t.command.join(' ')) : '(the image\'s)'], ['Network', t.network]]);
    case 'function': return facts([['Function', h('code', {}, t.name)], ['Input', h('pre', { class: 'code' }, JSON.stringify(t.input, null, 2))]]);
    default: return h('pre', { class: 'code' }, JSON.stringify(t, null, 2));
  }
}

function schedule(info, job, act) {
  if (!info) return null;
  const st = info.state;
  const paused = Boolean(st.paused_at);
  const spec = info.schedule || job.schedule || {};
  return section('Schedule',
    facts([
      ['Cron', spec.cron ? h('code', {}, spec.cron) : null],
      ['Time zone', spec.timezone],
      ['Overlap', spec.overlap],
      ['State', paused ? [badge('paused'), ` since `, when(st.paused_at), st.pause_note ? ` — ${st.pause_note}` : ''] : badge('active')],
      ['Fired', String(st.fired)], ['Skipped', String(st.skipped)],
      ['Missed', h('span', { id: 'missed' }, String(st.missed))],
    ], { id: 'schedule' }),
    h('h3', {}, 'Next fires'),
    info.next.length ? h('ol', { id: 'next-fires' }, info.next.map((t) => h('li', {}, when(t)))) : h('p', { class: 'muted' }, paused ? 'None while paused.' : 'None.'),
    st.recent_fires.length ? [h('h3', {}, 'Recent fires'), h('ol', { id: 'recent-fires' }, st.recent_fires.map((t) => h('li', {}, when(t))))] : null,
    h('div', { class: 'actions' },
      paused ? h('button', { type: 'button', 'data-action': 'resume', onclick: () => act('resume') }, 'Resume')
        : h('button', { type: 'button', 'data-action': 'pause', onclick: () => act('pause') }, 'Pause'),
      h('button', { type: 'button', 'data-action': 'trigger', onclick: () => act('trigger') }, 'Trigger now')));
}

export async function detailPage(id) {
  const el = h('div', { class: 'page' });
  async function act(action) {
    const ask = { pause: ['Pause this schedule? Fires that fall in the pause will not run.', 'Pause'],
      trigger: ['Fire this job once now?', 'Trigger'] }[action];
    if (ask && !(await confirmAction(...ask))) return;
    try {
      await api.post(`/api/v1/schedules/${id}/${action}`, {});
      toast(`${action} done`);
      await load();
    } catch (e) { toast(e.message, 'error'); }
  }
  async function cancel() {
    if (!(await confirmAction(`Cancel ${id}? Its unfinished runs are cancelled and running attempts killed.`, 'Cancel job'))) return;
    try { await api.post(`/api/v1/jobs/${id}/cancel`); toast(`${id} cancelled`); await load(); } catch (e) { toast(e.message, 'error'); }
  }
  async function load() {
    const d = await api.get(`/api/v1/jobs/${encodeURIComponent(id)}`);
    const j = d.job;
    const r = j.resources;
    const live = d.runs.some((x) => !['succeeded', 'failed', 'cancelled', 'timed_out', 'upstream_failed'].includes(x.state));
    fill(el,
      h('h1', {}, h('span', { class: 'muted' }, `${j.id} `), h('span', { id: 'job-name' }, j.name)),
      h('div', { class: 'actions' },
        !j.cancelled && (live || j.schedule) ? h('button', { type: 'button', class: 'danger', 'data-action': 'cancel-job', onclick: cancel }, 'Cancel job') : null,
        j.cancelled ? badge('cancelled') : null),
      h('div', { class: 'grid' },
        section('Task', h('div', { id: 'job-task' }, task(j.task))),
        section('Spec', facts([
          ['Kind', j.task.kind], ['Created', when(j.created_at)],
          ['Resources', `${r.cpu} CPU, ${r.memory}`], ['Timeout', j.timeout || 'none'],
          ['Retries', `${j.retry.max_retries} (backoff ${j.retry.backoff}, at most ${j.retry.backoff_max})`],
          ['Priority', String(j.priority)],
          ['Constraints', j.constraints.length ? j.constraints.map((c) => `${c.label} ${c.op} ${c.value}`).join(', ') : null],
          ['Depends on', j.depends_on.length ? j.depends_on.map((x) => [idLink(x), ' ']) : null],
          ['Idempotency key', j.idempotency_key], ['Workdir', j.workdir],
          // Names only: the API answers every secret value as ***.
          ['Secret env', Object.keys(j.secret_env || {}).length ? Object.keys(j.secret_env).map((k) => `${k}=***`).join(', ') : null],
        ], { id: 'job-spec' }), h('details', {}, h('summary', {}, 'As JSON'), h('pre', { class: 'code' }, JSON.stringify(j, null, 2))))),
      schedule(d.schedule, j, act),
      section('Runs', table(['Run', 'State', 'Created', 'Finished', 'Attempts'],
        [...d.runs].reverse().map((x) => h('tr', { 'data-run': x.id }, h('td', {}, idLink(x.id)),
          h('td', { class: 'state' }, badge(x.state)), h('td', {}, when(x.created_at)), h('td', {}, when(x.finished_at)),
          h('td', {}, String(x.attempts.length)))), { id: 'job-runs' }),
      d.schedule ? h('p', {}, link(`#/runs?job=${j.id}`, 'All runs of this job')) : null));
    return j.name;
  }
  const name = await load();
  return { title: name, el, refresh: load };
}
