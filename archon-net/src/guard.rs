//! Who may call which gRPC method, checked on every call before any service
//! sees it ([`guard_routes`]). Closed by default: a method this table does not
//! name is refused, so a new one stays shut until someone decides who may call
//! it ([`api_scope`]).
//!
//! - `archon.raft.v1.Raft` (consensus and membership): a **manager**
//!   certificate, nothing else.
//! - `archon.v1.WorkerSessions`: a **worker** certificate (the session's worker
//!   is then bound to the certificate's name; see the sessions service).
//! - `archon.v1.ArchonApi`: a **client** certificate with a bearer token whose
//!   scopes allow the method, or a **manager** certificate (the cluster itself,
//!   allowed everything: how the first admin token is made).
//!
//! Requests that are not gRPC (the REST API and dashboard on the same port) pass
//! through: archon-http checks their tokens.

use std::sync::Arc;
use std::task::{Context, Poll};

use archon_core::auth::{Authenticator, Denied, Grant, Peer, Role, Scope};
use futures::future::BoxFuture;
use tonic::codegen::http::{Request, Response, header};
use tonic::service::Routes;
use tower::{Layer, Service};

/// The gRPC service every manager-to-manager RPC belongs to.
pub const RAFT_SERVICE: &str = "archon.raft.v1.Raft";
/// The worker sessions service.
pub const WORKER_SERVICE: &str = "archon.v1.WorkerSessions";
/// The client API service.
pub const API_SERVICE: &str = "archon.v1.ArchonApi";

/// The scope each `ArchonApi` method needs; `None` for a method not listed,
/// which is refused.
pub fn api_scope(method: &str) -> Option<Scope> {
    Some(match method {
        "GetJob" | "GetRun" | "ListJobs" | "ListRuns" | "WaitRun" | "FollowOutput" | "Status" | "ListWorkers"
        | "GetWorkflow" | "ListWorkflows" => Scope::Read,
        "Submit" | "SubmitWorkflow" => Scope::Submit,
        "Cancel" | "SetDraining" | "Schedule" => Scope::Operate,
        "CreateToken" | "ListTokens" | "RevokeToken" => Scope::Admin,
        _ => return None,
    })
}

/// Decides whether a gRPC call to `path` (`/package.Service/Method`) from
/// `peer`, with the `authorization` header given, may go ahead, and as whom.
pub fn admit(
    path: &str,
    peer: Option<&Peer>,
    authorization: Option<&str>,
    auth: &dyn Authenticator,
) -> Result<Grant, Denied> {
    let (service, method) = path.trim_start_matches('/').split_once('/').unwrap_or((path, ""));
    let identity = peer.and_then(|p| p.identity.as_ref()).ok_or(Denied::NoCertificate)?;
    let role_denied =
        |needed: &str| Denied::Role { role: identity.role, what: service.to_owned(), needed: needed.into() };
    match service {
        RAFT_SERVICE if identity.role == Role::Manager => Ok(Grant::all(identity.to_string())),
        RAFT_SERVICE => Err(role_denied("manager")),
        WORKER_SERVICE if identity.role == Role::Worker => Ok(Grant::all(identity.to_string())),
        WORKER_SERVICE => Err(role_denied("worker")),
        API_SERVICE => {
            let Some(needed) = api_scope(method) else {
                return Err(Denied::Role {
                    role: identity.role,
                    what: path.into(),
                    needed: "none: it is not open".into(),
                });
            };
            match identity.role {
                Role::Manager => Ok(Grant::all(identity.to_string())),
                Role::Worker => Err(role_denied("client or manager")),
                Role::Client => {
                    let grant = auth.authenticate(bearer(authorization)?)?;
                    grant.allow(needed)?;
                    Ok(grant)
                }
            }
        }
        _ => Err(Denied::Role { role: identity.role, what: path.into(), needed: "none: it is not open".into() }),
    }
}

/// The token in an `authorization: Bearer …` header.
pub fn bearer(authorization: Option<&str>) -> Result<&str, Denied> {
    let value = authorization.ok_or(Denied::Missing)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(Denied::Malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(Denied::Malformed);
    }
    Ok(token.trim())
}

/// `routes` with every gRPC call checked by [`admit`] against `auth`. Apply it
/// outermost, after every service is added.
pub fn guard_routes(routes: Routes, auth: Arc<dyn Authenticator>) -> Routes {
    Routes::from(routes.into_axum_router().layer(GuardLayer { auth }))
}

/// The layer [`guard_routes`] applies.
#[derive(Clone)]
pub struct GuardLayer {
    auth: Arc<dyn Authenticator>,
}

impl std::fmt::Debug for GuardLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for GuardLayer {
    type Service = GuardService<S>;

    fn layer(&self, inner: S) -> GuardService<S> {
        GuardService { inner, auth: self.auth.clone() }
    }
}

/// The service [`GuardLayer`] wraps around another.
#[derive(Clone)]
pub struct GuardService<S> {
    inner: S,
    auth: Arc<dyn Authenticator>,
}

impl<S> std::fmt::Debug for GuardService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuardService").finish_non_exhaustive()
    }
}

impl<S, B, R> Service<Request<B>> for GuardService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<B>) -> Self::Future {
        let grpc =
            request.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        if !grpc {
            return Box::pin(self.inner.call(request));
        }
        let authorization = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        let peer = request.extensions().get::<Peer>();
        match admit(request.uri().path(), peer, authorization, self.auth.as_ref()) {
            Ok(grant) => {
                request.extensions_mut().insert(grant);
                Box::pin(self.inner.call(request))
            }
            Err(denied) => {
                tracing::info!(
                    path = request.uri().path(),
                    peer = ?peer.and_then(|p| p.addr),
                    identity = ?peer.and_then(|p| p.identity.as_ref()).map(ToString::to_string),
                    reason = %denied,
                    "refused a gRPC call"
                );
                let status = crate::status::error_to_status(denied.into());
                Box::pin(std::future::ready(Ok(status.into_http())))
            }
        }
    }
}
