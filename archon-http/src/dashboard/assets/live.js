// Staying live: the page follows /api/v1/events (the cluster's status, pushed
// on every change). When the stream breaks the page says so, and retries with
// backoff: its own manager first, then the others it last heard of. Another
// manager that answers gets the page (same view, its address); a follower
// hands the page on to the leader.

import { h, fill } from './dom.js';

const BACKOFF_MS = [500, 1000, 2000, 4000, 8000];

export class Live {
  constructor(onStatus, onRetry) {
    this.onStatus = onStatus;
    this.onRetry = onRetry;
    this.status = null;
    this.source = null;
    this.failures = 0;
    this.timer = null;
    this.banner = document.getElementById('conn');
  }

  start() {
    this.connect();
  }

  connect() {
    clearTimeout(this.timer);
    const source = new EventSource('/api/v1/events');
    this.source = source;
    source.addEventListener('status', (e) => {
      this.failures = 0;
      this.status = JSON.parse(e.data);
      this.show('live', 'Live');
      this.onStatus(this.status);
    });
    source.addEventListener('error', () => {
      source.close();
      if (this.source === source) this.lost();
    });
  }

  /** The stream broke: say so, and retry after a growing pause. */
  lost() {
    this.source = null;
    const delay = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)];
    this.failures += 1;
    const until = Date.now() + delay;
    const tick = () => {
      const left = Math.max(0, Math.ceil((until - Date.now()) / 1000));
      this.show('disconnected', `Disconnected from ${location.host} — reconnecting in ${left} s (attempt ${this.failures})`);
      if (Date.now() >= until) this.retry(); else this.timer = setTimeout(tick, 250);
    };
    tick();
  }

  async retry() {
    this.show('disconnected', `Disconnected from ${location.host} — reconnecting…`);
    if (await reachable('')) return this.connect();
    for (const origin of this.others()) {
      if (await reachable(origin, true)) {
        this.show('disconnected', `Moving to manager ${origin}…`);
        location.assign(`${origin}/${location.hash}`);
        return undefined;
      }
    }
    return this.lost();
  }

  /** The other managers' origins, as last heard. */
  others() {
    const managers = this.status ? this.status.managers : [];
    return managers.filter((m) => m.address).map((m) => originOf(m.address)).filter((o) => o !== location.origin);
  }

  /** This manager is a follower: move the page to the leader. */
  async toLeader() {
    try {
      const status = await (await fetch('/api/v1/cluster', { cache: 'no-store' })).json();
      const leader = status.managers.find((m) => m.role === 'leader');
      if (leader && leader.address && originOf(leader.address) !== location.origin) {
        this.show('disconnected', `Moving to the leader, manager ${leader.id} at ${leader.address}…`);
        location.assign(`${originOf(leader.address)}/${location.hash}`);
        return;
      }
      if (leader) {
        // This manager was just elected and is taking over: ask again shortly.
        this.show('disconnected', 'This manager is taking over as leader…');
        setTimeout(() => this.onRetry(), 300);
        return;
      }
    } catch { /* the retry below says so */ }
    this.show('disconnected', 'No leader yet — retrying…');
    setTimeout(() => this.toLeader(), 1000);
  }

  /** A page was drawn: say live again if the stream is open. */
  drawn() {
    if (this.source && this.source.readyState === EventSource.OPEN) this.show('live', 'Live');
  }

  show(state, text) {
    this.banner.dataset.state = state;
    fill(this.banner, h('span', { class: 'dot', 'aria-hidden': 'true' }), text);
  }
}

/** A manager's address (`host:port` or a URL) as an origin. */
export function originOf(address) {
  return address.includes('://') ? address.replace(/\/+$/, '') : `${location.protocol}//${address}`;
}

/** Whether a manager answers: same origin with a real read, another one with an opaque probe. */
async function reachable(base, opaque = false) {
  const controller = new AbortController();
  const timeout = setTimeout(() => controller.abort(), 2000);
  try {
    const response = await fetch(`${base}/api/v1/cluster`, {
      cache: 'no-store', signal: controller.signal, mode: opaque ? 'no-cors' : 'same-origin',
    });
    return opaque || response.ok;
  } catch {
    return false;
  } finally {
    clearTimeout(timeout);
  }
}
