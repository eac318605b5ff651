// The dashboard's shell: routes (#/jobs/job-3 …) to pages, keeps the page live
// from the status stream (each change redraws the current page's data, at most
// one redraw in flight), and moves to the leader or another manager when asked.

import { h, fill } from './dom.js';
import { ApiError, NotLeader, Unreachable } from './api.js';
import { Live } from './live.js';
import * as overview from './overview.js';
import * as jobs from './jobs.js';
import * as runs from './runs.js';
import * as workflows from './workflows.js';
import * as workers from './workers.js';
import * as submit from './submit.js';

const ROUTES = [
  [/^\/?$/, overview.page, 'overview'],
  [/^\/jobs\/?$/, jobs.listPage, 'jobs'],
  [/^\/jobs\/([^/]+)$/, jobs.detailPage, 'jobs'],
  [/^\/runs\/?$/, runs.listPage, 'runs'],
  [/^\/runs\/([^/]+)$/, runs.detailPage, 'runs'],
  [/^\/workflows\/?$/, workflows.listPage, 'workflows'],
  [/^\/workflows\/([^/]+)$/, workflows.detailPage, 'workflows'],
  [/^\/workers\/?$/, workers.page, 'workers'],
  [/^\/submit\/?$/, submit.page, 'submit'],
];

const main = document.getElementById('main');
let current = null;
let generation = 0;
let busy = false;
let again = false;
let stale = false;
let lastStart = 0;
let timer = null;

/** Refreshes start at most this often, however often the cluster changes. */
const MIN_REFRESH_MS = 400;

const live = new Live(() => refresh(), () => route());

/** The hash as a path and its query: #/jobs?name=x → ['/jobs', {name: 'x'}]. */
function location_() {
  const hash = location.hash.replace(/^#/, '') || '/';
  const [path, q = ''] = hash.split('?');
  return [path, Object.fromEntries(new URLSearchParams(q))];
}

/** Shows why a page could not be drawn, or hands the page on. */
export function failed(error) {
  if (error instanceof NotLeader) {
    live.toLeader();
    return;
  }
  if (error instanceof Unreachable) {
    stale = true; // the status stream reconnects, then the page is drawn again
    return;
  }
  const message = error instanceof ApiError ? `${error.status}: ${error.message}` : String(error);
  fill(main, h('section', { class: 'card error', role: 'alert' }, h('h1', {}, 'Could not load this page'), h('p', {}, message)));
}

async function route() {
  if (current && current.dispose) current.dispose();
  current = null;
  generation += 1;
  const mine = generation;
  const [path, params] = location_();
  const found = ROUTES.find(([re]) => re.test(path));
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (found && a.dataset.nav === found[2]) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!found) {
    fill(main, h('section', { class: 'card' }, h('h1', {}, 'No such page'), h('p', {}, h('a', { href: '#/' }, 'Back to the overview'))));
    return;
  }
  const [re, page] = found;
  const args = path.match(re).slice(1).map(decodeURIComponent);
  fill(main, h('p', { class: 'muted' }, 'Loading…'));
  try {
    const view = await page(...args, params, { live, failed });
    if (mine !== generation) { if (view && view.dispose) view.dispose(); return; }
    current = view;
    fill(main, view.el);
    document.title = `${view.title} · Archon`;
    main.dataset.page = found[2];
    main.dataset.ready = String(mine);
    live.drawn();
  } catch (e) {
    if (mine === generation) failed(e);
  }
}

/** Redraws the current page's data after a change (one at a time, coalesced). */
async function refresh() {
  if (stale) {
    stale = false;
    route();
    return;
  }
  if (!current || !current.refresh) return;
  if (busy) { again = true; return; }
  const wait = lastStart + MIN_REFRESH_MS - Date.now();
  if (wait > 0) {
    if (!timer) timer = setTimeout(() => { timer = null; refresh(); }, wait);
    return;
  }
  lastStart = Date.now();
  busy = true;
  const view = current;
  try {
    await view.refresh(live.status);
    if (view === current) main.dataset.refreshed = String(Date.now());
  } catch (e) {
    if (view === current) failed(e);
  } finally {
    busy = false;
    if (again) { again = false; refresh(); }
  }
}

// The theme: automatic (the system's), light or dark; remembered.
const THEMES = ['auto', 'light', 'dark'];
function applyTheme(theme) {
  if (theme === 'auto') delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = theme;
  const button = document.getElementById('theme');
  button.setAttribute('aria-label', `Colour theme: ${theme === 'auto' ? 'automatic' : theme}`);
  button.title = button.getAttribute('aria-label');
}
document.getElementById('theme').addEventListener('click', () => {
  const now = localStorage.getItem('archon-theme') || 'auto';
  const next = THEMES[(THEMES.indexOf(now) + 1) % THEMES.length];
  localStorage.setItem('archon-theme', next);
  applyTheme(next);
});
applyTheme(localStorage.getItem('archon-theme') || 'auto');

window.addEventListener('hashchange', () => { route(); main.focus({ preventScroll: true }); });
route();
live.start();
