// Charts drawn as SVG from /api/v1/timeline: runs ended and failed per minute
// (differences of the ended counters between samples), queue depth, and CPU in
// use — the cluster's and each worker's.

import { h, s } from './dom.js';

const W = 600;
const H = 150;
const PAD = { left: 40, right: 8, top: 10, bottom: 22 };

/** Runs ended and failed in each of the last `minutes` minutes. */
export function perMinute(samples, minutes = 60) {
  const now = Date.now();
  const start = Math.floor(now / 60000) - minutes + 1;
  const buckets = Array.from({ length: minutes }, (_, i) => ({ minute: start + i, ended: 0, failed: 0 }));
  for (let i = 1; i < samples.length; i += 1) {
    const at = Date.parse(samples[i].at);
    const index = Math.floor(at / 60000) - start;
    if (index < 0 || index >= minutes) continue;
    buckets[index].ended += Math.max(0, samples[i].ended - samples[i - 1].ended);
    buckets[index].failed += Math.max(0, samples[i].failed - samples[i - 1].failed);
  }
  return buckets;
}

function frame(id, label, max, unit) {
  const svg = s('svg', { id, class: 'chart', viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': label },
    s('title', {}, label));
  const y0 = H - PAD.bottom;
  for (const frac of [0, 0.5, 1]) {
    const y = y0 - frac * (y0 - PAD.top);
    svg.append(s('line', { class: 'grid', x1: PAD.left, x2: W - PAD.right, y1: y, y2: y }));
    svg.append(s('text', { class: 'axis', x: PAD.left - 4, y: y + 4, 'text-anchor': 'end' },
      `${Number.isInteger(max * frac) ? max * frac : (max * frac).toFixed(1)}${frac === 1 ? unit : ''}`));
  }
  svg.append(s('text', { class: 'axis', x: PAD.left, y: H - 6 }, '−60 min'));
  svg.append(s('text', { class: 'axis', x: W - PAD.right, y: H - 6, 'text-anchor': 'end' }, 'now'));
  return svg;
}

function niceMax(x) {
  if (x <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(x));
  for (const m of [1, 2, 5, 10]) if (m * p >= x) return m * p;
  return 10 * p;
}

/** Bars of runs ended (and, over them, failed) per minute. */
export function rateChart(samples) {
  const buckets = perMinute(samples);
  const max = niceMax(Math.max(...buckets.map((b) => b.ended)));
  const svg = frame('chart-rate', 'Runs ended and failed per minute over the last hour', max, '/min');
  const plotW = W - PAD.left - PAD.right;
  const y0 = H - PAD.bottom;
  const bw = plotW / buckets.length;
  buckets.forEach((b, i) => {
    const x = PAD.left + i * bw;
    const hEnded = (b.ended / max) * (y0 - PAD.top);
    const hFailed = (b.failed / max) * (y0 - PAD.top);
    const label = `${new Date(b.minute * 60000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })}: ${b.ended} ended, ${b.failed} failed`;
    svg.append(s('g', { class: 'bar', 'data-ended': b.ended, 'data-failed': b.failed },
      s('title', {}, label),
      s('rect', { class: 'ended', x: x + 1, y: y0 - hEnded, width: Math.max(1, bw - 2), height: hEnded }),
      s('rect', { class: 'failed', x: x + 1, y: y0 - hFailed, width: Math.max(1, bw - 2), height: hFailed })));
  });
  return h('figure', {}, svg, h('figcaption', {}, h('span', { class: 'key ended' }), 'ended ',
    h('span', { class: 'key failed' }), 'failed, per minute'));
}

/** A line of `values` (one per sample, at `times`), scaled to `max`. */
function line(times, values, max, cls) {
  const now = Date.now();
  const start = now - 3600000;
  const plotW = W - PAD.left - PAD.right;
  const y0 = H - PAD.bottom;
  const points = [];
  times.forEach((t, i) => {
    if (values[i] === null || values[i] === undefined || t < start) return;
    const x = PAD.left + ((t - start) / 3600000) * plotW;
    const y = y0 - (Math.min(values[i], max) / max) * (y0 - PAD.top);
    points.push(`${x.toFixed(1)},${y.toFixed(1)}`);
  });
  return s('polyline', { class: `line ${cls}`, points: points.join(' '), 'data-points': points.length });
}

/** Queue depth over the last hour. */
export function queueChart(samples) {
  const times = samples.map((x) => Date.parse(x.at));
  const queued = samples.map((x) => x.queued);
  const running = samples.map((x) => x.running);
  const max = niceMax(Math.max(1, ...queued, ...running));
  const svg = frame('chart-queue', 'Runs queued and running over the last hour', max, '');
  svg.append(line(times, running, max, 'running'), line(times, queued, max, 'queued'));
  return h('figure', {}, svg, h('figcaption', {}, h('span', { class: 'key queued' }), 'queued ',
    h('span', { class: 'key running' }), 'running'));
}

/** CPU and memory reserved, as a share of what the workers offer. */
export function utilisationChart(samples) {
  const times = samples.map((x) => Date.parse(x.at));
  const pct = (a, b) => (b > 0 ? (100 * a) / b : 0);
  const cpu = samples.map((x) => pct(x.cpu_allocated_millis, x.cpu_capacity_millis));
  const memory = samples.map((x) => pct(x.memory_allocated_bytes, x.memory_capacity_bytes));
  const svg = frame('chart-util', 'CPU and memory reserved on the workers over the last hour', 100, '%');
  svg.append(line(times, memory, 100, 'memory'), line(times, cpu, 100, 'cpu'));
  return h('figure', {}, svg, h('figcaption', {}, h('span', { class: 'key cpu' }), 'CPU ',
    h('span', { class: 'key memory' }), 'memory reserved'));
}

/** A worker's CPU use over the hour, small. */
export function sparkline(times, permille, label) {
  const w = 120;
  const hgt = 24;
  const start = Date.now() - 3600000;
  const points = [];
  times.forEach((t, i) => {
    const v = permille[i];
    if (v === null || v === undefined || t < start) return;
    points.push(`${(((t - start) / 3600000) * w).toFixed(1)},${(hgt - (v / 1000) * (hgt - 2) - 1).toFixed(1)}`);
  });
  return s('svg', { class: 'spark', viewBox: `0 0 ${w} ${hgt}`, role: 'img', 'aria-label': label, width: w, height: hgt },
    s('title', {}, label), s('polyline', { class: 'line cpu', points: points.join(' '), 'data-points': points.length }));
}
