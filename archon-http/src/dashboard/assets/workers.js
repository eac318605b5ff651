// Workers: labels, capabilities, what each has reserved of its capacity, its
// running attempts, its CPU over the last hour, and drain / undrain.

import { h, fill, badge, table, meter, when, bytes, confirmAction, toast } from './dom.js';
import * as api from './api.js';
import { sparkline } from './charts.js';

const MAX_SERIES = 200;

export async function page() {
  const body = h('div');
  const el = h('div', { class: 'page' }, h('h1', {}, 'Workers'), body);
  async function drain(w, draining) {
    if (draining && !(await confirmAction(`Drain ${w.name} (${w.id})? It takes no new work; what it runs finishes.`, 'Drain'))) return;
    try {
      await api.post(`/api/v1/workers/${w.id}/${draining ? 'drain' : 'undrain'}`);
      toast(`${w.name} ${draining ? 'draining' : 'accepting work'}`);
      await load();
    } catch (e) { toast(e.message, 'error'); }
  }
  async function load() {
    const { items } = await api.get('/api/v1/workers');
    const ids = items.filter((w) => w.state !== 'left').slice(0, MAX_SERIES).map((w) => w.id);
    const timeline = ids.length ? await api.get(`/api/v1/timeline?workers=${ids.join(',')}`) : { samples: [], workers: {} };
    const times = timeline.samples.map((x) => Date.parse(x.at));
    fill(body, table(['Worker', 'State', 'Labels', 'Capabilities', 'CPU', 'Memory', 'Last hour (CPU)', 'Running', 'Last seen', ''],
      items.map((w) => h('tr', { 'data-worker': w.id, 'data-name': w.name },
        h('td', {}, h('strong', {}, w.name), h('br'), h('span', { class: 'muted' }, `${w.id} · ${w.address || '—'}`)),
        h('td', { class: 'state' }, badge(w.state), w.connected ? null : [' ', badge('disconnected')]),
        h('td', {}, Object.entries(w.labels).map(([k, v]) => h('span', { class: 'chip' }, `${k}=${v}`))),
        h('td', {}, w.capabilities.map((c) => h('span', { class: 'chip cap' }, c))),
        h('td', {}, meter(w.allocated.cpu_millis, w.capacity.cpu_millis, `${w.allocated.cpu} of ${w.capacity.cpu}`)),
        h('td', {}, meter(w.allocated.memory_bytes, w.capacity.memory_bytes, `${bytes(w.allocated.memory_bytes)} of ${bytes(w.capacity.memory_bytes)}`)),
        h('td', {}, timeline.workers[w.id] ? sparkline(times, timeline.workers[w.id].cpu_permille, `CPU of ${w.name} over the last hour`) : '—'),
        h('td', { class: 'running' }, w.running.length ? w.running.join(', ') : '—'),
        h('td', {}, when(w.last_seen)),
        h('td', {}, w.state === 'ready' ? h('button', { type: 'button', 'data-action': 'drain', onclick: () => drain(w, true) }, 'Drain')
          : w.state === 'draining' ? h('button', { type: 'button', 'data-action': 'undrain', onclick: () => drain(w, false) }, 'Undrain') : null))),
    { id: 'workers-table' }));
  }
  await load();
  return { title: 'Workers', el, refresh: load };
}
