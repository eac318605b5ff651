// The REST API as the page uses it. Requests never follow redirects: a
// follower answers 307 to the leader, and the page then moves to the leader
// itself (see live.js) rather than reading across origins.

/** A problem object the API answered (RFC 9457): `field` names what was wrong. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
    this.field = problem.field || null;
  }
}

/** This manager is not the leader. */
export class NotLeader extends Error {
  constructor() { super('this manager is not the leader'); }
}

/** The manager did not answer (down, restarting, unreachable). */
export class Unreachable extends Error {}

/** The CSRF token the server set at sign-in (a cookie the page may read). */
function csrf() {
  const found = document.cookie.split(';').map((c) => c.trim()).find((c) => c.startsWith('archon_csrf='));
  return found ? found.slice('archon_csrf='.length) : '';
}

async function call(method, path, body) {
  let response;
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  // Every change carries the CSRF token: the session cookie alone is refused.
  if (method !== 'GET') headers['x-csrf-token'] = csrf();
  try {
    response = await fetch(path, {
      method,
      redirect: 'manual',
      cache: 'no-store',
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (e) {
    throw new Unreachable(String(e));
  }
  // Signed out, or the token expired or was revoked: sign in again.
  if (response.status === 401) {
    window.location.assign('/login');
    throw new ApiError(401, { title: 'sign in again' });
  }
  if (response.type === 'opaqueredirect' || response.status === 307) throw new NotLeader();
  if (!response.ok) {
    let problem = {};
    try { problem = await response.json(); } catch { problem = { title: response.statusText } }
    throw new ApiError(response.status, problem);
  }
  return response;
}

/** GET a JSON document. */
export async function get(path) {
  return (await call('GET', path)).json();
}

/** POST a JSON body; the answer's JSON, or null for 204. */
export async function post(path, body = {}) {
  const response = await call('POST', path, body);
  return response.status === 204 ? null : response.json();
}

/** GET text (a run's kept output) with how many bytes were left out before it. */
export async function text(path) {
  const response = await call('GET', path);
  return { text: await response.text(), truncated: Number(response.headers.get('archon-truncated') || 0) };
}

/** A query string from the non-empty values of `params`. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}
