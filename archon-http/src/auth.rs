//! Who may use the REST API and the dashboard, when the server has
//! authorization on ([`HttpAuth`]): every route needs a bearer token whose
//! scopes allow it ([`route_scope`]) — `GET` reads, submitting needs `submit`,
//! cancelling, draining and schedules `operate`, tokens `admin` — except the
//! sign-in page and the paths the operator opened by config (`/metrics`, say).
//! A manager's certificate is allowed everything.
//!
//! A program sends `Authorization: Bearer archon_…`. A browser signs in once at
//! `/login`: the token goes into a `Secure; HttpOnly; SameSite=Strict` cookie
//! the page's scripts cannot read, and a second cookie holds a random CSRF
//! token that the page echoes in an `X-CSRF-Token` header (or the form in a
//! field) on every request that changes something; a cookie-authenticated
//! change without it is refused.

use std::sync::Arc;

use archon_core::auth::{Authenticator, Denied, Grant, Peer, Role, Scope};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};

use crate::error::{Problem, problem_response};

/// The sign-in page.
pub const LOGIN_PATH: &str = "/login";
/// Signs out (POST).
pub const LOGOUT_PATH: &str = "/logout";
/// The cookie holding a signed-in browser's token.
pub const SESSION_COOKIE: &str = "archon_session";
/// The cookie holding the CSRF token the page echoes.
pub const CSRF_COOKIE: &str = "archon_csrf";
/// The header the page echoes it in.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// How long a browser stays signed in (the token's own expiry still applies).
const SESSION_SECONDS: u64 = 12 * 3600;

/// Authorization for the HTTP routes.
#[derive(Clone)]
pub struct HttpAuth {
    /// Checks tokens (a manager, against its replicated tokens).
    pub authenticator: Arc<dyn Authenticator>,
    /// Paths answered without a token, by explicit configuration only
    /// (e.g. `/metrics` for a Prometheus without a token).
    pub open_paths: Vec<String>,
}

impl std::fmt::Debug for HttpAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpAuth").field("open_paths", &self.open_paths).finish_non_exhaustive()
    }
}

/// The scope a request needs: reads need `read`; submitting jobs and
/// workflows `submit`; tokens `admin`; every other change `operate`.
pub fn route_scope(method: &Method, path: &str) -> Scope {
    if path == "/api/v1/tokens" || path.starts_with("/api/v1/tokens/") {
        return Scope::Admin;
    }
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Scope::Read;
    }
    match path {
        "/api/v1/jobs" | "/api/v1/jobs/batch" | "/api/v1/workflows" => Scope::Submit,
        _ => Scope::Operate,
    }
}

/// The routes of signing in and out.
pub(crate) fn router(auth: Arc<HttpAuth>) -> axum::Router {
    axum::Router::new().route(LOGIN_PATH, get(login_page).post(login)).route(LOGOUT_PATH, post(logout)).with_state(auth)
}

/// Checks every request that is not gRPC (archon-net guards those).
pub(crate) async fn guard(State(auth): State<Arc<HttpAuth>>, mut req: Request, next: Next) -> Response {
    let headers = req.headers();
    let grpc = headers.get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    let path = req.uri().path().to_owned();
    if grpc || auth.open_paths.contains(&path) {
        return next.run(req).await;
    }
    let peer = req.extensions().get::<Peer>();
    match admit(&auth, req.method(), &path, headers, peer) {
        Ok(grant) => {
            req.extensions_mut().insert(grant);
            next.run(req).await
        }
        Err(denied) => {
            tracing::info!(%path, method = %req.method(), reason = %denied, "refused an HTTP request");
            let browsing = req.method() == Method::GET
                && headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
            if browsing && denied.unauthenticated() {
                return Redirect::to(LOGIN_PATH).into_response();
            }
            refusal(&denied)
        }
    }
}

/// What a request may do, or why not.
fn admit(
    auth: &HttpAuth,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    peer: Option<&Peer>,
) -> Result<Grant, Denied> {
    let needed = route_scope(method, path);
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let session = cookie(headers, SESSION_COOKIE);
    let grant = match (bearer, session) {
        (Some(value), _) => auth.authenticator.authenticate(bearer_token(value)?)?,
        (None, Some(token)) => {
            let grant = auth.authenticator.authenticate(token)?;
            if changes(method) {
                check_csrf(headers, headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok()))?;
            }
            grant
        }
        (None, None) => match peer.and_then(|p| p.identity.as_ref()) {
            Some(identity) if identity.role == Role::Manager => Grant::all(identity.to_string()),
            _ => return Err(Denied::Missing),
        },
    };
    grant.allow(needed)?;
    Ok(grant)
}

fn bearer_token(value: &str) -> Result<&str, Denied> {
    let (scheme, token) = value.trim().split_once(' ').ok_or(Denied::Malformed)?;
    if scheme.eq_ignore_ascii_case("bearer") { Ok(token.trim()) } else { Err(Denied::Malformed) }
}

fn changes(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The CSRF token sent (header or form field) must equal the cookie's.
fn check_csrf(headers: &HeaderMap, sent: Option<&str>) -> Result<(), Denied> {
    match (cookie(headers, CSRF_COOKIE), sent) {
        (Some(expected), Some(sent)) if expected.len() >= 32 && constant_time_eq(expected, sent) => Ok(()),
        _ => Err(Denied::Csrf),
    }
}

fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A cookie's value.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// The problem object for a refusal: 401 for who, 403 for what.
fn refusal(denied: &Denied) -> Response {
    let (status, kind) = if denied.unauthenticated() {
        (StatusCode::UNAUTHORIZED, "unauthenticated")
    } else {
        (StatusCode::FORBIDDEN, "forbidden")
    };
    let mut response = problem_response(Problem::new(status, kind, denied.to_string()));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"archon\""));
    }
    response
}

fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The sign-in form, with a fresh CSRF token in a cookie and a field.
async fn login_page(headers: HeaderMap) -> Response {
    page(&headers, None, StatusCode::OK)
}

fn page(headers: &HeaderMap, error: Option<&str>, status: StatusCode) -> Response {
    let csrf = cookie(headers, CSRF_COOKIE).filter(|c| c.len() >= 32).map(str::to_owned).or_else(random_hex);
    let Some(csrf) = csrf else {
        return problem_response(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "no randomness for a CSRF token",
        ));
    };
    let message = error.map(|e| format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))).unwrap_or_default();
    let html = LOGIN_HTML.replace("{csrf}", &csrf).replace("{message}", &message);
    let mut response = (status, [(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response();
    set_cookie(&mut response, &format!("{CSRF_COOKIE}={csrf}; Path=/; Secure; SameSite=Strict"));
    crate::dashboard::secure(&mut response, &[]);
    response
}

/// Signs a browser in: checks the form's CSRF token and the token given, then
/// keeps the token in the session cookie.
async fn login(State(auth): State<Arc<HttpAuth>>, headers: HeaderMap, body: axum::body::Bytes) -> Response {
    let mut token = None;
    let mut csrf = None;
    for (key, value) in form_pairs(&body) {
        match key.as_str() {
            "token" => token = Some(value),
            "csrf" => csrf = Some(value),
            _ => {}
        }
    }
    if check_csrf(&headers, csrf.as_deref()).is_err() {
        return page(&headers, Some("The form expired; sign in again."), StatusCode::FORBIDDEN);
    }
    let token = token.unwrap_or_default();
    match auth.authenticator.authenticate(token.trim()) {
        Ok(grant) => {
            tracing::info!(who = %grant.who, "signed in to the dashboard");
            let mut response = Redirect::to(crate::DASHBOARD_PATH).into_response();
            set_cookie(
                &mut response,
                &format!(
                    "{SESSION_COOKIE}={}; Path=/; Max-Age={SESSION_SECONDS}; Secure; HttpOnly; SameSite=Strict",
                    token.trim()
                ),
            );
            response
        }
        Err(denied) => page(&headers, Some(&denied.to_string()), StatusCode::UNAUTHORIZED),
    }
}

/// Signs a browser out (CSRF-checked like every change).
async fn logout(headers: HeaderMap) -> Response {
    if let Err(denied) = check_csrf(&headers, headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok())) {
        return refusal(&denied);
    }
    let mut response = Redirect::to(LOGIN_PATH).into_response();
    set_cookie(&mut response, &format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; Secure; HttpOnly; SameSite=Strict"));
    response
}

fn set_cookie(response: &mut Response<Body>, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// The `key=value` pairs of a form body, decoded.
fn form_pairs(body: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(body);
    text.split('&').filter_map(|pair| pair.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect()
}

/// Percent-decoding with `+` as a space (application/x-www-form-urlencoded).
fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len()
                && let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) =>
            {
                out.push(hi << 4 | lo);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(b: u8) -> Option<u8> {
    char::from(b).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

const LOGIN_HTML: &str = include_str!("dashboard/assets/login.html");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_follow_method_and_path() {
        assert_eq!(route_scope(&Method::GET, "/api/v1/jobs"), Scope::Read);
        assert_eq!(route_scope(&Method::POST, "/api/v1/jobs"), Scope::Submit);
        assert_eq!(route_scope(&Method::POST, "/api/v1/workflows"), Scope::Submit);
        assert_eq!(route_scope(&Method::POST, "/api/v1/jobs/job-1/cancel"), Scope::Operate);
        assert_eq!(route_scope(&Method::GET, "/api/v1/tokens"), Scope::Admin);
        assert_eq!(route_scope(&Method::DELETE, "/api/v1/tokens/0123456789abcdef"), Scope::Admin);
        assert_eq!(route_scope(&Method::GET, "/"), Scope::Read);
    }

    #[test]
    fn forms_and_cookies_decode() {
        let pairs = form_pairs("token=archon_1%5F2&csrf=ab+c&x=%zz&y=%é".as_bytes());
        assert_eq!(pairs[0], ("token".into(), "archon_1_2".into()));
        assert_eq!(pairs[1], ("csrf".into(), "ab c".into()));
        assert_eq!(pairs[2], ("x".into(), "%zz".into()));
        assert_eq!(pairs[3], ("y".into(), "%é".into()));
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; archon_csrf=xyz"));
        assert_eq!(cookie(&headers, CSRF_COOKIE), Some("xyz"));
        assert_eq!(cookie(&headers, SESSION_COOKIE), None);
        assert_eq!(check_csrf(&headers, Some("xyz")), Err(Denied::Csrf), "too short to be ours");
    }
}
