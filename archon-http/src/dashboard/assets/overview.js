// The overview: managers and who leads, workers with what they have reserved,
// runs by state, the queue, recent failures, and the last hour in charts.

import { h, fill, badge, table, section, meter, when, idLink, link, bytes, exit } from './dom.js';
import * as api from './api.js';
import { rateChart, queueChart, utilisationChart } from './charts.js';

const SHOWN_WORKERS = 12;
const TIMELINE_EVERY_MS = 5000;

function managers(status) {
  return table(['Manager', 'Address', 'Role', 'Term', 'Applied'],
    status.managers.map((m) => h('tr', { 'data-manager': m.id, 'data-role': m.role },
      h('td', {}, `#${m.id}`), h('td', {}, m.address || '—'), h('td', {}, badge(m.role)),
      h('td', {}, String(m.term)), h('td', {}, String(m.last_applied)))), { id: 'managers' });
}

function workerBars(list) {
  const active = list.filter((w) => w.state !== 'left');
  const load = (w) => (w.capacity.cpu_millis ? w.allocated.cpu_millis / w.capacity.cpu_millis : 0);
  const shown = [...active].sort((a, b) => load(b) - load(a)).slice(0, SHOWN_WORKERS);
  return h('div', { id: 'worker-bars' },
    shown.length ? h('ul', { class: 'bars' }, shown.map((w) => h('li', { 'data-worker': w.id },
      h('span', { class: 'bar-name' }, link('#/workers', w.name), ' ', badge(w.state)),
      meter(w.allocated.cpu_millis, w.capacity.cpu_millis, `CPU ${w.allocated.cpu} of ${w.capacity.cpu}`),
      meter(w.allocated.memory_bytes, w.capacity.memory_bytes, `Memory ${bytes(w.allocated.memory_bytes)} of ${bytes(w.capacity.memory_bytes)}`))))
      : h('p', { class: 'muted' }, 'No worker has registered yet.'),
    active.length > shown.length ? h('p', {}, link('#/workers', `and ${active.length - shown.length} more workers`)) : null);
}

function runsByState(status) {
  const order = ['pending', 'waiting', 'scheduled', 'running', 'retrying', 'succeeded', 'failed', 'timed_out', 'cancelled', 'upstream_failed'];
  const entries = Object.entries(status.runs).sort(([a], [b]) => order.indexOf(a) - order.indexOf(b));
  return h('ul', { id: 'runs-by-state', class: 'counts' },
    entries.length ? entries.map(([state, n]) => h('li', { 'data-state': state },
      link(`#/runs?state=${state}`, badge(state)), h('strong', {}, String(n)))) : h('li', { class: 'muted' }, 'No runs yet.'));
}

function failures(page) {
  return table(['Run', 'Job', 'State', 'Ended', 'Exit'],
    page.items.map((r) => h('tr', { 'data-run': r.id }, h('td', {}, idLink(r.id)),
      h('td', {}, link(`#/jobs/${r.job}`, r.job_name || r.job)), h('td', {}, badge(r.state)),
      h('td', {}, when(r.finished_at)), h('td', {}, exit(r.exit)))), { id: 'recent-failures' });
}

export async function page() {
  const parts = {
    summary: h('div', { class: 'stats', id: 'summary' }),
    managers: h('div'),
    workers: h('div'),
    runs: h('div'),
    failures: h('div'),
    charts: h('div', { class: 'charts' }),
  };
  const el = h('div', { class: 'page' },
    h('h1', {}, 'Overview'),
    parts.summary,
    h('div', { class: 'grid' },
      section('Managers', parts.managers),
      section('Runs by state', parts.runs)),
    section('Last hour', parts.charts),
    h('div', { class: 'grid' },
      section('Workers', parts.workers),
      section('Recent failures', parts.failures)));

  let timelineAt = 0;
  async function charts() {
    timelineAt = Date.now();
    const timeline = await api.get('/api/v1/timeline');
    fill(parts.charts, rateChart(timeline.samples), queueChart(timeline.samples), utilisationChart(timeline.samples));
  }
  async function load(status) {
    const [cluster, workers, failed] = await Promise.all([
      status ? Promise.resolve(status) : api.get('/api/v1/cluster'),
      api.get('/api/v1/workers'),
      api.get('/api/v1/runs?state=failed&limit=8'),
    ]);
    const leader = cluster.managers.find((m) => m.role === 'leader');
    const running = (cluster.runs.running || 0) + (cluster.runs.scheduled || 0);
    fill(parts.summary,
      stat('Leader', leader ? `#${leader.id} · term ${leader.term}` : 'none', 'leader'),
      stat('Queue depth', String(cluster.queued), 'queue-depth'),
      stat('Running', String(running), 'running'),
      stat('Jobs', String(cluster.jobs), 'jobs-count'),
      stat('Workers', Object.entries(cluster.workers).map(([k, n]) => `${n} ${k}`).join(', ') || '0', 'workers-count'));
    fill(parts.managers, managers(cluster));
    fill(parts.runs, runsByState(cluster));
    fill(parts.workers, workerBars(workers.items));
    fill(parts.failures, failures(failed));
    if (Date.now() - timelineAt >= TIMELINE_EVERY_MS) await charts();
  }
  await load(null);
  // The charts move on with time even when nothing else changes.
  const timer = setInterval(() => charts().catch(() => {}), 2 * TIMELINE_EVERY_MS);
  return { title: 'Overview', el, refresh: load, dispose: () => clearInterval(timer) };
}

function stat(label, value, id) {
  return h('div', { class: 'stat' }, h('span', { class: 'stat-label' }, label), h('strong', { id }, value));
}
