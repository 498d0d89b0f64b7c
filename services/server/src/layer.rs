//! Per-request tracing span and gRPC metrics as a tower layer.
//!
//! The final status of a gRPC call is only known at the end of the response:
//! in the headers for trailers-only (error) responses, otherwise in the
//! trailers after the last message. So the span and the metrics are closed by
//! a guard that travels from the response future into the response body and
//! records when the body is finished or dropped; a call dropped before any
//! status was sent (client went away) counts as `CANCELLED`.

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Instant;

use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tonic::Code;
use tower::{Layer, Service};

/// Label used for services and methods outside the server's known set, so
/// arbitrary paths from clients cannot blow up metric cardinality.
pub const UNKNOWN_LABEL: &str = "unknown";

/// Tower layer adding a `grpc.request` span (continuing the caller's W3C
/// trace) and the `ferry_grpc_*` metrics to every request.
#[derive(Clone, Debug, Default)]
pub struct GrpcTelemetryLayer {
    known_services: Option<Arc<HashSet<String>>>,
}

impl GrpcTelemetryLayer {
    /// Labels every request by its path as-is.
    pub fn new() -> Self {
        Self::default()
    }

    /// Labels requests for services outside `services` (fully qualified
    /// names) as `unknown`.
    pub fn with_known_services<I, S>(services: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            known_services: Some(Arc::new(services.into_iter().map(Into::into).collect())),
        }
    }
}

impl<S> Layer<S> for GrpcTelemetryLayer {
    type Service = GrpcTelemetry<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GrpcTelemetry {
            inner,
            known_services: self.known_services.clone(),
        }
    }
}

/// Service produced by [`GrpcTelemetryLayer`].
#[derive(Clone, Debug)]
pub struct GrpcTelemetry<S> {
    inner: S,
    known_services: Option<Arc<HashSet<String>>>,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for GrpcTelemetry<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>>,
    ResBody: Body,
{
    type Response = http::Response<TelemetryBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<ReqBody>) -> Self::Future {
        let path = req.uri().path();
        let (service, method) = split_path(path);
        let known = self
            .known_services
            .as_ref()
            .is_none_or(|k| k.contains(service));
        let (service_label, method_label) = if known {
            (service.to_owned(), method.to_owned())
        } else {
            (UNKNOWN_LABEL.to_owned(), UNKNOWN_LABEL.to_owned())
        };

        let span = tracing::info_span!(
            "grpc.request",
            otel.name = %path.trim_start_matches('/'),
            otel.kind = "server",
            otel.status_code = tracing::field::Empty,
            rpc.system = "grpc",
            rpc.service = %service,
            rpc.method = %method,
            grpc.method = %path,
            rpc.grpc.status_code = tracing::field::Empty,
        );
        ferry_telemetry::propagation::set_parent_from_headers(&span, req.headers());

        let future = span.in_scope(|| self.inner.call(req));
        ResponseFuture {
            inner: future,
            recorder: Some(Recorder {
                span,
                service: service_label,
                method: method_label,
                start: Instant::now(),
                code: None,
            }),
        }
    }
}

/// `/pkg.Service/Method` → (`pkg.Service`, `Method`).
fn split_path(path: &str) -> (&str, &str) {
    path.strip_prefix('/')
        .and_then(|p| p.split_once('/'))
        .filter(|(s, m)| !s.is_empty() && !m.is_empty() && !m.contains('/'))
        .unwrap_or((UNKNOWN_LABEL, UNKNOWN_LABEL))
}

fn status_from(headers: &http::HeaderMap) -> Option<Code> {
    headers
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i32>().ok())
        .map(Code::from_i32)
}

/// Records span fields and metrics exactly once, when dropped.
#[derive(Debug)]
struct Recorder {
    span: tracing::Span,
    service: String,
    method: String,
    start: Instant,
    code: Option<Code>,
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // No status ever reached the client: it cancelled or the connection died.
        let code = self.code.unwrap_or(Code::Cancelled);
        let elapsed = self.start.elapsed();
        // A bogus method on a known service would otherwise become a new label value.
        let method = if code == Code::Unimplemented {
            UNKNOWN_LABEL
        } else {
            &self.method
        };
        ferry_telemetry::metrics::grpc().observe(&self.service, method, code, elapsed);

        self.span.record("rpc.grpc.status_code", code as i32);
        // Server-side errors per the OTel RPC conventions; client faults stay unset.
        if matches!(
            code,
            Code::Unknown
                | Code::DeadlineExceeded
                | Code::Unimplemented
                | Code::Internal
                | Code::Unavailable
                | Code::DataLoss
        ) {
            self.span.record("otel.status_code", "ERROR");
        }
        let _enter = self.span.enter();
        tracing::debug!(
            code = ferry_telemetry::metrics::code_name(code),
            elapsed_ms = elapsed.as_secs_f64() * 1e3,
            "grpc request finished"
        );
    }
}

pin_project! {
    /// Response future of [`GrpcTelemetry`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        recorder: Option<Recorder>,
    }
}

impl<F, ResBody, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<http::Response<ResBody>, E>>,
    ResBody: Body,
{
    type Output = Result<http::Response<TelemetryBody<ResBody>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _enter = this.recorder.as_ref().map(|r| r.span.enter());
            ready!(this.inner.poll(cx))
        };
        let mut recorder = this.recorder.take();
        Poll::Ready(match result {
            Ok(response) => {
                if let Some(r) = recorder.as_mut() {
                    // Trailers-only response: the status is final already.
                    r.code = status_from(response.headers());
                }
                Ok(response.map(|inner| TelemetryBody { inner, recorder }))
            }
            Err(err) => {
                if let Some(r) = recorder.as_mut() {
                    r.code = Some(Code::Unknown);
                }
                Err(err)
            }
        })
    }
}

pin_project! {
    /// Response body of [`GrpcTelemetry`]: picks the status out of the trailers.
    pub struct TelemetryBody<B> {
        #[pin]
        inner: B,
        recorder: Option<Recorder>,
    }
}

impl<B: Body> Body for TelemetryBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = {
            let _enter = this.recorder.as_ref().map(|r| r.span.enter());
            ready!(this.inner.poll_frame(cx))
        };
        match &polled {
            Some(Ok(frame)) => {
                if let (Some(trailers), Some(r)) = (frame.trailers_ref(), this.recorder.as_mut())
                    && let Some(code) = status_from(trailers)
                {
                    r.code = Some(code);
                }
            }
            Some(Err(_)) => {
                if let Some(r) = this.recorder.as_mut() {
                    r.code.get_or_insert(Code::Unknown);
                }
                this.recorder.take();
            }
            // End of stream: record now rather than whenever the body is dropped.
            None => {
                this.recorder.take();
            }
        }
        Poll::Ready(polled)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_grpc_paths() {
        assert_eq!(
            split_path("/grpc.health.v1.Health/Check"),
            ("grpc.health.v1.Health", "Check")
        );
        assert_eq!(split_path("/"), (UNKNOWN_LABEL, UNKNOWN_LABEL));
        assert_eq!(split_path("/a/b/c"), (UNKNOWN_LABEL, UNKNOWN_LABEL));
        assert_eq!(split_path("nope"), (UNKNOWN_LABEL, UNKNOWN_LABEL));
    }

    #[test]
    fn reads_status_header() {
        let mut h = http::HeaderMap::new();
        assert_eq!(status_from(&h), None);
        h.insert("grpc-status", "5".parse().unwrap());
        assert_eq!(status_from(&h), Some(Code::NotFound));
    }
}
