//! gRPC call counts and latencies by method and status code, recorded into a
//! node's [`Metrics`] by a tower layer over the server's routes
//! ([`measure_routes`]). Only gRPC requests are measured (other HTTP on the
//! same port passes through untouched). The code is read from the response
//! headers: a failed call has it there, a successful unary call and a stream
//! (whose status comes in trailers) count as `OK` once their response starts.

use std::task::{Context, Poll};
use std::time::Instant;

use archon_core::metrics::Metrics;
use futures::future::BoxFuture;
use tonic::Code;
use tonic::codegen::http::{HeaderMap, Request, Response, header};
use tonic::service::Routes;
use tower::{Layer, Service};

/// `routes` with every gRPC call recorded into `metrics`
/// (`archon_grpc_requests_total`, `archon_grpc_request_duration_seconds`).
/// Apply it once, after adding every service to measure.
pub fn measure_routes(routes: Routes, metrics: &Metrics) -> Routes {
    Routes::from(routes.into_axum_router().layer(GrpcMetricsLayer::new(metrics.clone())))
}

/// Records each gRPC call passing through into a [`Metrics`].
#[derive(Debug, Clone)]
pub struct GrpcMetricsLayer {
    metrics: Metrics,
}

impl GrpcMetricsLayer {
    /// A layer recording into `metrics`.
    pub fn new(metrics: Metrics) -> GrpcMetricsLayer {
        GrpcMetricsLayer { metrics }
    }
}

impl<S> Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetricsService<S>;

    fn layer(&self, inner: S) -> GrpcMetricsService<S> {
        GrpcMetricsService { inner, metrics: self.metrics.clone() }
    }
}

/// The service [`GrpcMetricsLayer`] wraps around another.
#[derive(Debug, Clone)]
pub struct GrpcMetricsService<S> {
    inner: S,
    metrics: Metrics,
}

impl<S, B, R> Service<Request<B>> for GrpcMetricsService<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
    S::Error: 'static,
    R: 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response<R>, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let grpc =
            request.headers().get(header::CONTENT_TYPE).is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let method = grpc.then(|| request.uri().path().trim_start_matches('/').to_owned());
        let call = self.inner.call(request);
        let Some(method) = method else { return Box::pin(call) };
        let metrics = self.metrics.clone();
        let started = Instant::now();
        Box::pin(async move {
            let result = call.await;
            let code = match &result {
                Ok(response) => code_of(response.headers()),
                Err(_) => Code::Unknown,
            };
            // A method no service has: one series for all, however many are tried.
            let method = if code == Code::Unimplemented { "unknown" } else { method.as_str() };
            metrics.observe_grpc(method, code_name(code), started.elapsed());
            result
        })
    }
}

/// The status in a response's headers; `OK` when it is not there yet.
fn code_of(headers: &HeaderMap) -> Code {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<i32>().ok())
        .map_or(Code::Ok, Code::from)
}

/// A code as gRPC names it elsewhere (grpc-go's `String()`).
fn code_name(code: Code) -> &'static str {
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_code_comes_from_the_headers_and_defaults_to_ok() {
        let mut headers = HeaderMap::new();
        assert_eq!(code_name(code_of(&headers)), "OK");
        headers.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(code_name(code_of(&headers)), "NotFound");
        headers.insert("grpc-status", "junk".parse().unwrap());
        assert_eq!(code_name(code_of(&headers)), "OK");
    }
}
