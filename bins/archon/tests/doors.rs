//! Issue 15, point 7: no door is missed. Every gRPC method is read from the
//! services' own descriptors (`archon.v1` and `archon.raft.v1`) and every HTTP
//! route from the OpenAPI document the server serves, plus the few routes
//! outside it listed here; each is called against a secured `archon dev` with
//! no token, a malformed one, a revoked one, an expired one, one without the
//! scope it needs, and without a client certificate — and must refuse each.
//! A method added without deciding who may call it fails here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
mod secure;

use std::sync::Arc;
use std::time::{Duration, Instant};

use archon_core::auth::Scope;
use secure::{SecureDev, client_config, grpc_raw, https, https_body};

/// Routes outside the OpenAPI document, each with the scope it needs. The
/// sign-in page (`/login`) is the one route open to all, by design.
const OTHER_ROUTES: &[(&str, &str, Scope)] = &[
    ("GET", "/", Scope::Read),
    ("GET", "/ui/app.js", Scope::Read),
    ("GET", "/ui/app.css", Scope::Read),
    ("GET", "/metrics", Scope::Read),
    ("GET", "/api/docs/", Scope::Read),
    ("GET", "/api/v1/openapi.json", Scope::Read),
];

struct Tokens {
    admin: String,
    reader: String,
    revoked: String,
    expired: String,
}

impl Tokens {
    /// Every kind of token to present, made on `dev`; waits until the
    /// short-lived one has expired.
    async fn make(dev: &SecureDev, tls: &Arc<rustls::ClientConfig>) -> Tokens {
        let admin = dev.admin_token();
        let reader = dev.token("read", None);
        let revoked = dev.token("admin", None);
        let id = revoked["archon_".len()..revoked.len() - 65].to_owned();
        let out = dev.cli(&["token", "revoke", &id]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let expired = dev.token("admin", Some("1s"));
        let bearer = format!("Bearer {expired}");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let (status, body) =
                https(dev.addr, tls.clone(), "GET", "/api/v1/cluster", &[("authorization", &bearer)]).await.unwrap();
            if status == 401 && body.contains("expired") {
                break;
            }
            assert!(Instant::now() < deadline, "the 1s token never expired: {status} {body}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Tokens { admin, reader, revoked, expired }
    }

    /// The tokens that must not get in anywhere, with their names.
    fn bad(&self) -> Vec<(&'static str, Option<&str>)> {
        vec![
            ("no token", None),
            ("a malformed token", Some("archon_notatoken_zz")),
            ("a revoked token", Some(&self.revoked)),
            ("an expired token", Some(&self.expired)),
        ]
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_grpc_method_refuses_what_it_must() {
    let dev = SecureDev::start();
    let files = dev.admin_files();
    let admin_cert = client_config(&files.ca, Some((&files.cert, &files.key)), &[&rustls::version::TLS13]);
    let no_cert = client_config(&files.ca, None, &[&rustls::version::TLS13]);
    let tokens = Tokens::make(&dev, &admin_cert).await;

    let mut methods = secure::methods(archon_net::proto::FILE_DESCRIPTOR_SET);
    methods.extend(secure::methods(archon_raft::service::proto::FILE_DESCRIPTOR_SET));
    for expected in
        ["/archon.v1.ArchonApi/Submit", "/archon.v1.WorkerSessions/OpenSession", "/archon.raft.v1.Raft/Vote"]
    {
        assert!(methods.iter().any(|m| m == expected), "{expected} is not among {methods:?}");
    }
    let mut checked = 0;
    for method in &methods {
        let (service, name) = method.trim_start_matches('/').split_once('/').unwrap();
        let api = service == archon_net::API_SERVICE;
        let needed = if api {
            Some(archon_net::api_scope(name).unwrap_or_else(|| {
                panic!("{method} has no scope: decide who may call it in archon-net/src/guard.rs (api_scope)")
            }))
        } else {
            assert!(
                service == archon_net::RAFT_SERVICE || service == archon_net::WORKER_SERVICE,
                "{method}: a service the guard does not know"
            );
            None
        };
        for (what, token) in tokens.bad() {
            let status = grpc_raw(dev.addr, &admin_cert, token, method).await;
            let want = if api { tonic::Code::Unauthenticated } else { tonic::Code::PermissionDenied };
            assert_eq!(status.code(), want, "{method} with {what}: {status:?}");
            checked += 1;
        }
        // Without a client certificate, even the admin token gets nowhere.
        let status = grpc_raw(dev.addr, &no_cert, Some(&tokens.admin), method).await;
        assert_eq!(status.code(), tonic::Code::Unauthenticated, "{method} without a certificate: {status:?}");
        assert!(status.message().contains("client certificate"), "{status:?}");
        checked += 1;
        match needed {
            Some(scope) if scope != Scope::Read => {
                let status = grpc_raw(dev.addr, &admin_cert, Some(&tokens.reader), method).await;
                assert_eq!(status.code(), tonic::Code::PermissionDenied, "{method} with a read token: {status:?}");
                assert!(status.message().contains(&format!("needs the {scope} scope")), "{status:?}");
                checked += 1;
            }
            // A client certificate with the admin token: still not a manager's or a worker's.
            None => {
                let status = grpc_raw(dev.addr, &admin_cert, Some(&tokens.admin), method).await;
                assert_eq!(status.code(), tonic::Code::PermissionDenied, "{method} as a client: {status:?}");
                checked += 1;
            }
            _ => {}
        }
    }
    // The control: the same call with what it needs gets past the guard.
    let status = grpc_raw(dev.addr, &admin_cert, Some(&tokens.reader), "/archon.v1.ArchonApi/Status").await;
    assert!(
        !matches!(status.code(), tonic::Code::Unauthenticated | tonic::Code::PermissionDenied),
        "a read token could not read: {status:?}"
    );
    println!("{} methods, {checked} refusals checked", methods.len());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_http_route_refuses_what_it_must() {
    let dev = SecureDev::start();
    let files = dev.admin_files();
    let tls = client_config(&files.ca, Some((&files.cert, &files.key)), &[&rustls::version::TLS13]);
    let tokens = Tokens::make(&dev, &tls).await;

    let admin = format!("Bearer {}", tokens.admin);
    let (status, doc) =
        https(dev.addr, tls.clone(), "GET", "/api/v1/openapi.json", &[("authorization", &admin)]).await.unwrap();
    assert_eq!(status, 200);
    let doc: serde_json::Value = serde_json::from_str(doc.split_once("\r\n\r\n").unwrap().1).unwrap();
    let mut routes: Vec<(String, String, Scope)> = Vec::new();
    for (path, operations) in doc["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let method = method.to_uppercase();
            // Any value fills a path parameter: the check comes before the handler reads it.
            let filled =
                path.split('/').map(|p| if p.starts_with('{') { "1" } else { p }).collect::<Vec<_>>().join("/");
            let needed = archon_http::auth::route_scope(&method.parse().unwrap(), &filled);
            routes.push((method, filled, needed));
        }
    }
    assert!(routes.len() >= 20, "only {} routes in the document", routes.len());
    routes.extend(OTHER_ROUTES.iter().map(|(m, p, s)| (m.to_string(), p.to_string(), *s)));

    let reader = format!("Bearer {}", tokens.reader);
    let mut checked = 0;
    for (method, path, needed) in &routes {
        for (what, token) in tokens.bad() {
            let header = token.map(|t| format!("Bearer {t}"));
            let headers: Vec<(&str, &str)> = header.iter().map(|h| ("authorization", h.as_str())).collect();
            let (status, body) = https(dev.addr, tls.clone(), method, path, &headers).await.unwrap();
            assert_eq!(status, 401, "{method} {path} with {what}: {body}");
            checked += 1;
        }
        if *needed != Scope::Read {
            let (status, body) =
                https(dev.addr, tls.clone(), method, path, &[("authorization", &reader)]).await.unwrap();
            assert_eq!(status, 403, "{method} {path} with a read token: {body}");
            assert!(body.contains(&format!("needs the {needed} scope")), "{body}");
            checked += 1;
        }
    }
    // The control: a route answers what it should with the token it needs.
    let (status, _) =
        https(dev.addr, tls.clone(), "GET", "/api/v1/cluster", &[("authorization", &reader)]).await.unwrap();
    assert_eq!(status, 200);
    println!("{} routes, {checked} refusals checked", routes.len());
}

/// The `Set-Cookie` value for `name` in a raw response.
fn set_cookie<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    response.lines().filter_map(|l| l.strip_prefix("set-cookie: ")).find(|c| c.starts_with(&format!("{name}=")))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_signs_in_once_into_a_strict_cookie_and_its_changes_need_the_csrf_token() {
    let dev = SecureDev::start();
    let files = dev.admin_files();
    // A browser: no client certificate, only the cluster CA trusted.
    let browser = client_config(&files.ca, None, &[&rustls::version::TLS13]);

    // The page sends a browser without a session to sign in.
    let (status, page) = https(dev.addr, browser.clone(), "GET", "/", &[("accept", "text/html")]).await.unwrap();
    assert_eq!(status, 303, "{page}");
    assert!(page.contains("location: /login"), "{page}");

    let (status, form) = https(dev.addr, browser.clone(), "GET", "/login", &[]).await.unwrap();
    assert_eq!(status, 200);
    let csrf_cookie = set_cookie(&form, "archon_csrf").expect("a CSRF cookie");
    assert!(csrf_cookie.contains("Secure") && csrf_cookie.contains("SameSite=Strict"), "{csrf_cookie}");
    let csrf = csrf_cookie["archon_csrf=".len()..].split(';').next().unwrap().to_owned();
    assert!(form.contains(&format!("value=\"{csrf}\"")), "the form carries the CSRF token");

    // A sign-in without the form's CSRF token is refused; with it, a strict cookie.
    let cookie = format!("archon_csrf={csrf}");
    let token = dev.token("read,submit", None);
    let (status, _) = https_body(
        dev.addr,
        browser.clone(),
        "POST",
        "/login",
        &[("cookie", &cookie)],
        "application/x-www-form-urlencoded",
        &format!("token={token}&csrf=forged{}", "0".repeat(40)),
    )
    .await
    .unwrap();
    assert_eq!(status, 403);
    let (status, signed_in) = https_body(
        dev.addr,
        browser.clone(),
        "POST",
        "/login",
        &[("cookie", &cookie)],
        "application/x-www-form-urlencoded",
        &format!("token={token}&csrf={csrf}"),
    )
    .await
    .unwrap();
    assert_eq!(status, 303, "{signed_in}");
    let session = set_cookie(&signed_in, "archon_session").expect("a session cookie");
    for attribute in ["Secure", "HttpOnly", "SameSite=Strict"] {
        assert!(session.contains(attribute), "{session} lacks {attribute}");
    }
    let session = session.split(';').next().unwrap();
    let cookies = format!("{session}; archon_csrf={csrf}");

    // The cookie reads; a change needs the CSRF header too.
    let (status, _) =
        https(dev.addr, browser.clone(), "GET", "/api/v1/cluster", &[("cookie", &cookies)]).await.unwrap();
    assert_eq!(status, 200);
    let job = r#"{"name": "from-the-page", "command": "true"}"#;
    let (status, body) =
        https_body(dev.addr, browser.clone(), "POST", "/api/v1/jobs", &[("cookie", &cookies)], "application/json", job)
            .await
            .unwrap();
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("CSRF"), "{body}");
    let (status, body) = https_body(
        dev.addr,
        browser.clone(),
        "POST",
        "/api/v1/jobs",
        &[("cookie", &cookies), ("x-csrf-token", &csrf)],
        "application/json",
        job,
    )
    .await
    .unwrap();
    assert_eq!(status, 201, "{body}");
    // And a cookie never stands in for a client certificate on gRPC.
    let status = grpc_raw(dev.addr, &browser, Some(&token), "/archon.v1.ArchonApi/Status").await;
    assert_eq!(status.code(), tonic::Code::Unauthenticated, "{status:?}");
}
