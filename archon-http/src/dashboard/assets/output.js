// A run's output: live over /api/v1/runs/{id}/events while it runs, the kept
// tail once it ended. ANSI colours become styled spans (text only, never
// markup). The view holds a bounded tail — at most MAX_CHARS characters in the
// page, however fast the run prints — and links the full log for download.
// Chunks are gathered and drawn once per frame, so a flood cannot freeze the tab.

import { h, fill, link } from './dom.js';

/** The most characters of output the page keeps. */
export const MAX_CHARS = 200000;

const SGR_FG = { 30: 0, 31: 1, 32: 2, 33: 3, 34: 4, 35: 5, 36: 6, 37: 7, 90: 8, 91: 9, 92: 10, 93: 11, 94: 12, 95: 13, 96: 14, 97: 15 };

/** Splits text with ANSI escapes into [text, style] pieces; `style` carries across calls. */
export class Ansi {
  constructor() { this.style = { fg: null, bold: false, dim: false, underline: false }; this.carry = ''; }

  pieces(input) {
    let text = this.carry + input;
    this.carry = '';
    // An escape cut in two by a chunk boundary waits for its end.
    const cut = text.lastIndexOf('\x1b');
    if (cut >= 0 && cut > text.length - 16 && !/[A-Za-z]/.test(text.slice(cut + 2))) {
      this.carry = text.slice(cut);
      text = text.slice(0, cut);
    }
    const out = [];
    const re = /\x1b\[([0-9;?]*)([A-Za-z])|\x1b[^[]?/g;
    let last = 0;
    let m;
    while ((m = re.exec(text)) !== null) {
      if (m.index > last) out.push([clean(text.slice(last, m.index)), { ...this.style }]);
      if (m[2] === 'm') this.apply(m[1]);
      last = re.lastIndex;
    }
    if (last < text.length) out.push([clean(text.slice(last)), { ...this.style }]);
    return out.filter(([t]) => t.length);
  }

  apply(params) {
    const codes = params === '' ? [0] : params.split(';').map(Number);
    for (let i = 0; i < codes.length; i += 1) {
      const c = codes[i];
      if (c === 0) this.style = { fg: null, bold: false, dim: false, underline: false };
      else if (c === 1) this.style.bold = true;
      else if (c === 2) this.style.dim = true;
      else if (c === 4) this.style.underline = true;
      else if (c === 22) { this.style.bold = false; this.style.dim = false; }
      else if (c === 24) this.style.underline = false;
      else if (c === 39) this.style.fg = null;
      else if (c in SGR_FG) this.style.fg = SGR_FG[c];
      else if (c === 38 && codes[i + 1] === 5) { this.style.fg = codes[i + 2] < 16 ? codes[i + 2] : null; i += 2; }
      else if (c === 38 && codes[i + 1] === 2) i += 4;
    }
  }
}

/** Control characters other than newline and tab are dropped. */
function clean(text) {
  return text.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '');
}

function span([text, style], stream) {
  const cls = [stream === 'stderr' ? 'stderr' : null, style.fg !== null ? `ansi-${style.fg}` : null,
    style.bold ? 'ansi-bold' : null, style.dim ? 'ansi-dim' : null, style.underline ? 'ansi-underline' : null];
  return h('span', { class: cls.filter(Boolean).join(' ') || null }, text);
}

export class OutputView {
  constructor(runId) {
    this.runId = runId;
    this.ansi = { stdout: new Ansi(), stderr: new Ansi() };
    this.queue = [];
    this.queued = 0;
    this.chars = 0;
    this.dropped = false;
    this.frame = null;
    this.source = null;
    this.pre = h('pre', { id: 'output', class: 'output', tabindex: 0, 'aria-label': 'Output', 'aria-live': 'off' });
    this.follow = h('input', { type: 'checkbox', id: 'output-follow', checked: true });
    this.note = h('span', { id: 'output-note', class: 'muted' });
    this.state = h('span', { id: 'output-state', class: 'muted' });
    this.pre.addEventListener('scroll', () => {
      const atEnd = this.pre.scrollTop + this.pre.clientHeight >= this.pre.scrollHeight - 4;
      if (!atEnd && this.follow.checked && !this.scrolling) this.follow.checked = false;
      if (atEnd && !this.follow.checked) this.follow.checked = true;
      this.scrolling = false;
    });
    const base = `/api/v1/runs/${encodeURIComponent(runId)}/output`;
    this.el = h('section', { class: 'card output-card' },
      h('div', { class: 'output-head' }, h('h2', {}, 'Output'),
        h('label', { class: 'inline' }, this.follow, ' Follow'),
        this.state,
        h('span', { class: 'spacer' }),
        link(`${base}?stream=stdout`, 'stdout', { download: `${runId}.stdout.log`, class: 'button small', id: 'download-stdout' }),
        link(`${base}?stream=stderr`, 'stderr', { download: `${runId}.stderr.log`, class: 'button small', id: 'download-stderr' })),
      this.note, this.pre);
  }

  /** Shows what an ended run kept: stdout, then stderr. */
  async showKept(api) {
    const base = `/api/v1/runs/${encodeURIComponent(this.runId)}/output`;
    const [out, err] = await Promise.all([api.text(`${base}?stream=stdout&tail=${MAX_CHARS}`),
      api.text(`${base}?stream=stderr&tail=${MAX_CHARS}`)]);
    if (out.truncated || err.truncated) this.dropped = true;
    this.push(out.text, 'stdout');
    this.push(err.text, 'stderr');
    this.state.textContent = 'ended';
  }

  /** Follows the run live until it ends (`onEnd` is told how) or the manager goes away (`onLost`). */
  followLive(onEnd, onLost) {
    this.reset();
    this.state.textContent = 'live';
    const source = new EventSource(`/api/v1/runs/${encodeURIComponent(this.runId)}/events`);
    this.source = source;
    source.addEventListener('output', (e) => {
      const chunk = JSON.parse(e.data);
      this.push(chunk.text !== null && chunk.text !== undefined ? chunk.text : atob(chunk.base64 || ''), chunk.stream);
    });
    source.addEventListener('end', (e) => {
      source.close();
      this.state.textContent = 'ended';
      onEnd(JSON.parse(e.data));
    });
    source.addEventListener('error', () => {
      // The manager went away: the page reconnects and redraws this view.
      source.close();
      this.state.textContent = 'disconnected';
      onLost();
    });
  }

  /** Empties the view (a reconnect replays what the manager still buffers). */
  reset() {
    this.queue = [];
    this.queued = 0;
    this.chars = 0;
    this.ansi = { stdout: new Ansi(), stderr: new Ansi() };
    this.pre.replaceChildren();
  }

  /** Queues text for the next frame, keeping only the newest MAX_CHARS. */
  push(text, stream) {
    if (!text) return;
    this.queue.push([text, stream]);
    this.queued += text.length;
    while (this.queued > MAX_CHARS && this.queue.length > 1) {
      this.queued -= this.queue.shift()[0].length;
      this.dropped = true;
    }
    if (this.queued > MAX_CHARS) {
      const [t, st] = this.queue[0];
      this.queue[0] = [t.slice(t.length - MAX_CHARS), st];
      this.queued = MAX_CHARS;
      this.dropped = true;
    }
    if (!this.frame) this.frame = requestAnimationFrame(() => this.draw());
  }

  draw() {
    this.frame = null;
    const batch = this.queue;
    this.queue = [];
    this.queued = 0;
    const fragment = document.createDocumentFragment();
    for (const [text, stream] of batch) {
      for (const piece of this.ansi[stream === 'stderr' ? 'stderr' : 'stdout'].pieces(text)) {
        fragment.append(span(piece, stream));
        this.chars += piece[0].length;
      }
    }
    this.pre.append(fragment);
    // Keep the page's copy bounded: drop the oldest pieces.
    while (this.chars > MAX_CHARS && this.pre.firstChild) {
      const first = this.pre.firstChild;
      const len = first.textContent.length;
      if (this.chars - len < MAX_CHARS * 0.8 && len > 1000) {
        first.textContent = first.textContent.slice(this.chars - MAX_CHARS * 0.8);
        this.chars = MAX_CHARS * 0.8;
      } else {
        first.remove();
        this.chars -= len;
      }
      this.dropped = true;
    }
    if (this.dropped) {
      fill(this.note, 'Showing the newest output only; download stdout or stderr for the whole kept log.');
    }
    this.pre.dataset.chars = String(this.chars);
    if (this.follow.checked) {
      this.scrolling = true;
      this.pre.scrollTop = this.pre.scrollHeight;
    }
  }

  dispose() {
    if (this.source) this.source.close();
    if (this.frame) cancelAnimationFrame(this.frame);
  }
}
