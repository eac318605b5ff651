// Building the page: every value goes in as text (textContent, attributes),
// never as markup, so a job named <script> is shown, not run.

const SVG_NS = 'http://www.w3.org/2000/svg';

function build(el, attrs, children) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith('on') && typeof value === 'function') {
      el.addEventListener(key.slice(2), value);
    } else if (key === 'class') {
      el.setAttribute('class', Array.isArray(value) ? value.filter(Boolean).join(' ') : value);
    } else {
      el.setAttribute(key, value === true ? '' : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** An HTML element: h('a', {href: '#/jobs'}, 'Jobs'). */
export function h(tag, attrs, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** An SVG element. */
export function s(tag, attrs, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** Replaces what `el` holds. */
export function fill(el, ...children) {
  el.replaceChildren();
  return build(el, {}, children);
}

/** A link inside the page. */
export function link(href, text, attrs = {}) {
  return h('a', { href, ...attrs }, text);
}

/** An id's page: job-3 → #/jobs/job-3. */
export function idLink(id) {
  if (!id) return '—';
  const kind = id.split('-')[0];
  const section = { job: 'jobs', run: 'runs', wf: 'workflows', w: 'workers' }[kind];
  return section ? link(`#/${section}/${id}`, id) : id;
}

/** A state as a coloured badge (its colour is not the only cue: the word is there). */
export function badge(state, extra = {}) {
  const name = String(state ?? 'unknown');
  return h('span', { class: `badge state-${name.replace(/[^a-z_]/g, '')}`, 'data-state': name, ...extra }, name.replace(/_/g, ' '));
}

/** A table with a header row; rows are arrays of cells or <tr>s. */
export function table(headers, rows, attrs = {}) {
  return h('div', { class: 'table-wrap' },
    h('table', attrs,
      h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col' }, x)))),
      h('tbody', {}, rows.length
        ? rows.map((r) => (r instanceof Node ? r : h('tr', {}, r.map((c) => h('td', {}, c)))))
        : h('tr', {}, h('td', { colspan: headers.length, class: 'empty' }, 'Nothing here yet.')))));
}

/** A definition list of [term, value] pairs (values may be nodes). */
export function facts(pairs, attrs = {}) {
  return h('dl', { class: 'facts', ...attrs },
    pairs.filter(([, v]) => v !== null && v !== undefined && v !== '').map(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

/** A bar showing `used` of `total`. */
export function meter(used, total, label) {
  const share = total > 0 ? Math.min(1, used / total) : 0;
  const pct = Math.round(share * 100);
  const bar = h('span', { class: 'meter-fill' });
  bar.style.width = `${pct}%`;
  return h('span', { class: ['meter', share > 0.9 ? 'hot' : ''], role: 'meter', 'aria-valuemin': 0,
    'aria-valuemax': 100, 'aria-valuenow': pct, 'aria-label': `${label}: ${pct}%`, title: `${label}: ${pct}%` },
    bar, h('span', { class: 'meter-text' }, label));
}

/** A section with a heading. */
export function section(title, ...children) {
  return h('section', { class: 'card' }, h('h2', {}, title), children);
}

// --- formatting ---------------------------------------------------------------------

/** An RFC 3339 instant as local time, with the date when not today. */
export function when(iso) {
  if (!iso) return '—';
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return iso;
  const today = new Date().toDateString() === d.toDateString();
  const opts = today ? { hour: '2-digit', minute: '2-digit', second: '2-digit' }
    : { year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' };
  return h('time', { datetime: iso, title: iso }, d.toLocaleString(undefined, opts));
}

/** Seconds between two instants (or to now), as 1.2 s / 3 m 4 s. */
export function span(fromIso, toIso) {
  if (!fromIso) return '—';
  const ms = (toIso ? new Date(toIso) : new Date()) - new Date(fromIso);
  return seconds(ms / 1000);
}

/** A number of seconds for people. */
export function seconds(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  if (x < 1) return `${Math.round(x * 1000)} ms`;
  if (x < 60) return `${x.toFixed(1)} s`;
  const m = Math.floor(x / 60);
  if (m < 60) return `${m} m ${Math.round(x % 60)} s`;
  return `${Math.floor(m / 60)} h ${m % 60} m`;
}

/** Bytes for people. */
export function bytes(n) {
  if (n === null || n === undefined) return '—';
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let x = n;
  while (x >= 1024 && i < units.length - 1) { x /= 1024; i += 1; }
  return `${i === 0 ? x : x.toFixed(1)} ${units[i]}`;
}

/** An exit status as the CLI shows it ({kind: 'exited', code: 0} → exit 0). */
export function exit(status) {
  if (!status) return '—';
  switch (status.kind) {
    case 'exited': return `exit ${status.code}`;
    case 'signaled': return `signal ${status.signal}`;
    case 'failed': return `failed: ${status.reason}`;
    default: return String(status.kind || '?').replace(/_/g, ' ');
  }
}

// --- dialogs ------------------------------------------------------------------------

/** Asks before a destructive action; resolves true when confirmed. */
export function confirmAction(message, action) {
  const dialog = document.getElementById('confirm');
  fill(dialog.querySelector('.confirm-text'), message);
  dialog.querySelector('button[value=confirm]').textContent = action;
  dialog.returnValue = '';
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => resolve(dialog.returnValue === 'confirm'), { once: true });
    dialog.showModal();
    dialog.querySelector('button[value=cancel]').focus();
  });
}

/** A short message at the bottom of the screen. */
export function toast(message, kind = 'info') {
  const box = document.getElementById('toasts');
  const item = h('div', { class: `toast ${kind}`, role: kind === 'error' ? 'alert' : 'status' }, message);
  box.append(item);
  setTimeout(() => item.remove(), 6000);
}
