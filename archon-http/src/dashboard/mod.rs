//! The web dashboard: one page at `/` and its scripts and styles under `/ui/`,
//! all compiled into the binary (no npm, no build step, no CDN). The page is a
//! small client of the REST API in plain JavaScript modules: it renders every
//! value as text (never as markup), follows `/api/v1/events` to stay live and
//! moves to another manager when its own goes away.
//!
//! Every answer carries a Content-Security-Policy without `unsafe-inline`:
//! scripts and styles only from this server, no framing, and connections only
//! to this server and the cluster's other managers (the page probes them when
//! it reconnects).

use std::sync::Arc;

use archon_core::api::Api;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::error::Error;

/// The page's files: name under `/ui/`, content type, text.
const ASSETS: &[(&str, &str, &str)] = &[
    ("app.css", CSS, include_str!("assets/app.css")),
    ("app.js", JS, include_str!("assets/app.js")),
    ("api.js", JS, include_str!("assets/api.js")),
    ("dom.js", JS, include_str!("assets/dom.js")),
    ("live.js", JS, include_str!("assets/live.js")),
    ("charts.js", JS, include_str!("assets/charts.js")),
    ("dag.js", JS, include_str!("assets/dag.js")),
    ("output.js", JS, include_str!("assets/output.js")),
    ("overview.js", JS, include_str!("assets/overview.js")),
    ("jobs.js", JS, include_str!("assets/jobs.js")),
    ("runs.js", JS, include_str!("assets/runs.js")),
    ("workflows.js", JS, include_str!("assets/workflows.js")),
    ("workers.js", JS, include_str!("assets/workers.js")),
    ("submit.js", JS, include_str!("assets/submit.js")),
    ("favicon.svg", "image/svg+xml", include_str!("assets/favicon.svg")),
];

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const INDEX: &str = include_str!("assets/index.html");

/// `/` and `/ui/{file}`.
pub(crate) fn router(api: Arc<dyn Api>) -> axum::Router {
    axum::Router::new()
        .route(crate::DASHBOARD_PATH, get(index))
        .route("/ui/{file}", get(asset))
        .method_not_allowed_fallback(crate::routes::wrong_method)
        .with_state(api)
}

/// The page, with a policy that lets it reach the cluster's managers.
async fn index(State(api): State<Arc<dyn Api>>) -> Response {
    let managers = api.status().await.map(|s| s.managers).unwrap_or_default();
    let others: Vec<String> = managers.iter().filter_map(|m| origin(&m.address)).collect();
    let mut response = ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], INDEX).into_response();
    secure(&mut response, &others);
    response
}

/// One of the page's files.
async fn asset(Path(file): Path<String>) -> Result<Response, Error> {
    let (_, kind, body) =
        ASSETS.iter().find(|(name, _, _)| *name == file).ok_or_else(|| Error::NoRoute(format!("/ui/{file}")))?;
    let mut response = ([(header::CONTENT_TYPE, *kind)], *body).into_response();
    secure(&mut response, &[]);
    Ok(response)
}

/// The origin of a manager's client address (`host:port` or a URL), when it
/// reads as one.
fn origin(address: &str) -> Option<String> {
    let (scheme, rest) = match address.split_once("://") {
        Some((s @ ("http" | "https"), rest)) => (s, rest.trim_end_matches('/')),
        Some(_) => return None,
        None => ("http", address),
    };
    let ok = !rest.is_empty()
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'[' | b']' | b'_'));
    ok.then(|| format!("{scheme}://{rest}"))
}

/// The headers every dashboard answer carries.
pub(crate) fn secure(response: &mut Response, managers: &[String]) {
    let connect = std::iter::once("'self'".to_owned()).chain(managers.iter().cloned()).collect::<Vec<_>>().join(" ");
    let policy = format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src {connect}; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
    );
    let headers = response.headers_mut();
    if let Ok(policy) = HeaderValue::from_str(&policy) {
        headers.insert(header::CONTENT_SECURITY_POLICY, policy);
    }
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_that_read_as_host_and_port_become_origins() {
        assert_eq!(origin("127.0.0.1:7001").as_deref(), Some("http://127.0.0.1:7001"));
        assert_eq!(origin("[::1]:7001").as_deref(), Some("http://[::1]:7001"));
        assert_eq!(origin("manager-1.example:7001").as_deref(), Some("http://manager-1.example:7001"));
        assert_eq!(origin("http://127.0.0.1:7001").as_deref(), Some("http://127.0.0.1:7001"));
        assert_eq!(origin("https://m1:7001/").as_deref(), Some("https://m1:7001"));
        assert_eq!(origin("ftp://m1:7001"), None);
        assert_eq!(origin(""), None);
        assert_eq!(origin("x; script-src *"), None);
    }

    #[test]
    fn every_asset_the_page_imports_is_served() {
        let mut sources: Vec<&str> = ASSETS.iter().map(|(_, _, body)| *body).collect();
        sources.push(INDEX);
        for source in sources {
            for (i, _) in source.match_indices("/ui/") {
                let rest = &source[i + 4..];
                let name: String = rest.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '.').collect();
                assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "/ui/{name} is referenced but not served");
            }
            for (i, _) in source.match_indices("from './") {
                let rest = &source[i + 8..];
                let name: String = rest.chars().take_while(|c| *c != '\'').collect();
                assert!(ASSETS.iter().any(|(n, _, _)| *n == name), "./{name} is imported but not served");
            }
        }
    }
}
