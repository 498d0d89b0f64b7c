//! W3C trace-context (`traceparent`/`tracestate`) propagation over gRPC.
//!
//! Uses the globally installed propagator ([`crate::init`] installs
//! TraceContext), so both ends agree without passing configuration around.
//!
//! Server side, `ferry-server` calls [`set_parent_from_headers`] on each
//! request span. Client side, every call one Ferry process makes to another
//! goes through [`traced`], which injects the current span's context:
//!
//! ```no_run
//! # async fn f(channel: tonic::transport::Channel) {
//! // Any generated client takes it the same way: `FooServiceClient::new(traced(channel))`.
//! let traced = ferry_telemetry::propagation::traced(channel);
//! let mut client = tonic::client::Grpc::new(traced);
//! # let _ = &mut client;
//! # }
//! ```
//!
//! A client with its own interceptor (e.g. one adding a bearer token) calls
//! [`inject_context`] from it instead.

use opentelemetry::Context;
use opentelemetry::propagation::{Extractor, Injector};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};
use tonic::service::Interceptor;
use tonic::service::interceptor::InterceptedService;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// Reads propagation fields from HTTP headers.
#[derive(Debug)]
pub struct HeaderExtractor<'a>(pub &'a http::HeaderMap);

impl Extractor for HeaderExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(|k| k.as_str()).collect()
    }
}

/// Writes propagation fields into HTTP headers.
#[derive(Debug)]
pub struct HeaderInjector<'a>(pub &'a mut http::HeaderMap);

impl Injector for HeaderInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            http::HeaderName::from_bytes(key.as_bytes()),
            http::HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

/// Reads propagation fields from tonic request metadata (ASCII entries only).
#[derive(Debug)]
pub struct MetadataExtractor<'a>(pub &'a MetadataMap);

impl Extractor for MetadataExtractor<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.0
            .keys()
            .filter_map(|k| match k {
                tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                tonic::metadata::KeyRef::Binary(_) => None,
            })
            .collect()
    }
}

/// Writes propagation fields into tonic request metadata.
#[derive(Debug)]
pub struct MetadataInjector<'a>(pub &'a mut MetadataMap);

impl Injector for MetadataInjector<'_> {
    fn set(&mut self, key: &str, value: String) {
        // Invalid keys/values are dropped: a broken trace header must never fail a call.
        if let (Ok(key), Ok(value)) = (
            MetadataKey::from_bytes(key.as_bytes()),
            MetadataValue::try_from(value.as_str()),
        ) {
            self.0.insert(key, value);
        }
    }
}

/// The remote parent context carried by `headers` (empty if none).
pub fn extract_context(headers: &http::HeaderMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&HeaderExtractor(headers)))
}

/// The remote parent context carried by gRPC `metadata` (empty if none).
pub fn extract_context_from_metadata(metadata: &MetadataMap) -> Context {
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&MetadataExtractor(metadata)))
}

/// Makes `span` a child of the trace in `headers`, so a server span continues
/// its caller's trace. No-op when the headers carry no context or the span is
/// disabled.
pub fn set_parent_from_headers(span: &tracing::Span, headers: &http::HeaderMap) {
    let cx = extract_context(headers);
    if opentelemetry::trace::TraceContextExt::has_active_span(&cx) {
        // Fails only when the span is disabled by the filter; nothing to continue then.
        let _ = span.set_parent(cx);
    }
}

/// Environment variables carrying a trace into a process, as OpenTelemetry's
/// environment-variable carriers name them (e.g. set by a CI job).
pub const ENV_CARRIERS: [(&str, &str); 2] =
    [("traceparent", "TRACEPARENT"), ("tracestate", "TRACESTATE")];

/// Makes `span` a child of the trace in `TRACEPARENT` / `TRACESTATE`, if set.
pub fn set_parent_from_env(span: &tracing::Span) {
    let carrier: std::collections::HashMap<String, String> = ENV_CARRIERS
        .iter()
        .filter_map(|(key, var)| Some((key.to_string(), std::env::var(var).ok()?)))
        .collect();
    let cx = opentelemetry::global::get_text_map_propagator(|p| p.extract(&carrier));
    if opentelemetry::trace::TraceContextExt::has_active_span(&cx) {
        let _ = span.set_parent(cx);
    }
}

/// Injects the current `tracing` span's context into outgoing gRPC metadata.
pub fn inject_context(metadata: &mut MetadataMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut MetadataInjector(metadata))
    });
}

/// Injects the current span's context into outgoing HTTP headers.
pub fn inject_context_into_headers(headers: &mut http::HeaderMap) {
    let cx = tracing::Span::current().context();
    opentelemetry::global::get_text_map_propagator(|p| {
        p.inject_context(&cx, &mut HeaderInjector(headers))
    });
}

/// Trace id (32 hex digits) of the current span, if it is part of a trace;
/// handy for correlating logs and error messages with traces.
pub fn current_trace_id() -> Option<String> {
    use opentelemetry::trace::TraceContextExt as _;
    let cx = tracing::Span::current().context();
    let sc = cx.span().span_context().clone();
    sc.is_valid().then(|| sc.trace_id().to_string())
}

/// A tonic client interceptor that adds the caller's trace context to every
/// request: `Client::with_interceptor(channel, trace_context_interceptor)`.
pub fn trace_context_interceptor(
    mut request: tonic::Request<()>,
) -> Result<tonic::Request<()>, tonic::Status> {
    inject_context(request.metadata_mut());
    Ok(request)
}

/// Interceptor adding the current span's W3C `traceparent`/`tracestate` to every
/// call (nothing when the current span is not part of a trace). A named type, so
/// channels using it can be named: see [`TracedChannel`].
#[derive(Clone, Copy, Debug, Default)]
pub struct TraceContext;

impl Interceptor for TraceContext {
    fn call(&mut self, request: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        trace_context_interceptor(request)
    }
}

/// `inner` (typically a `tonic::transport::Channel`) with the caller's trace
/// context injected into every call; give it to any generated client.
pub fn traced<S>(inner: S) -> InterceptedService<S, TraceContext> {
    InterceptedService::new(inner, TraceContext)
}

/// A channel whose calls carry the caller's trace context ([`traced`]).
pub type TracedChannel = InterceptedService<tonic::transport::Channel, TraceContext>;

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry::trace::TraceContextExt as _;

    const PARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn extracts_w3c_parent_from_headers_and_metadata() {
        crate::test_telemetry();
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", PARENT.parse().unwrap());
        let cx = extract_context(&headers);
        let sc = cx.span().span_context().clone();
        assert!(sc.is_remote());
        assert_eq!(
            sc.trace_id().to_string(),
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );

        let md = MetadataMap::from_headers(headers);
        let cx = extract_context_from_metadata(&md);
        assert_eq!(
            cx.span().span_context().span_id().to_string(),
            "00f067aa0ba902b7"
        );
    }

    #[test]
    fn span_continues_parent_and_injects_it() {
        crate::test_telemetry();
        let mut headers = http::HeaderMap::new();
        headers.insert("traceparent", PARENT.parse().unwrap());
        let span = tracing::info_span!("server");
        set_parent_from_headers(&span, &headers);

        let mut md = MetadataMap::new();
        span.in_scope(|| inject_context(&mut md));
        let injected = md.get("traceparent").unwrap().to_str().unwrap().to_owned();
        // Same trace, new span id (ours), sampled.
        assert!(
            injected.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
            "{injected}"
        );
        assert!(!injected.contains("00f067aa0ba902b7"), "{injected}");
        assert_eq!(
            span.in_scope(current_trace_id).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );

        let mut out = http::HeaderMap::new();
        span.in_scope(|| inject_context_into_headers(&mut out));
        assert_eq!(out.get("traceparent").unwrap(), injected.as_str());

        let req = span
            .in_scope(|| trace_context_interceptor(tonic::Request::new(())))
            .unwrap();
        assert_eq!(
            req.metadata().get("traceparent").unwrap(),
            injected.as_str()
        );
        let req = span
            .in_scope(|| TraceContext.call(tonic::Request::new(())))
            .unwrap();
        assert_eq!(
            req.metadata().get("traceparent").unwrap(),
            injected.as_str()
        );
    }

    #[test]
    fn nothing_is_injected_outside_a_trace() {
        crate::test_telemetry();
        let req = TraceContext.call(tonic::Request::new(())).unwrap();
        assert!(req.metadata().get("traceparent").is_none());
    }
}
