//! Prometheus metrics (the `prometheus-client` crate, the Prometheus project's Rust client).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// A request's route and status.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct RouteStatus {
    pub(crate) route: String,
    pub(crate) status: u16,
}

/// Everything `/metrics` shows.
pub(crate) struct Metrics {
    registry: Registry,
    pub(crate) requests: Family<RouteStatus, Counter>,
    pub(crate) texts: Counter,
    pub(crate) windows: Counter,
    pub(crate) tokens: Counter,
    pub(crate) queue_depth: Gauge,
    pub(crate) batch_texts: Histogram,
    pub(crate) queue_seconds: Histogram,
    pub(crate) inference_seconds: Histogram,
    pub(crate) request_seconds: Histogram,
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        let mut registry = Registry::with_prefix("triage");
        let requests = Family::<RouteStatus, Counter>::default();
        let texts = Counter::default();
        let windows = Counter::default();
        let tokens = Counter::default();
        let queue_depth = Gauge::default();
        let batch_texts = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        let queue_seconds = Histogram::new(exponential_buckets(0.0005, 2.0, 16));
        let inference_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        let request_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 16));
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register("texts", "Texts labelled or detected", texts.clone());
        registry.register("windows", "Encoder windows run", windows.clone());
        registry.register("tokens", "Encoder tokens run", tokens.clone());
        registry.register(
            "queue_depth",
            "Texts waiting for a batch",
            queue_depth.clone(),
        );
        registry.register(
            "batch_texts",
            "Texts per encoder batch",
            batch_texts.clone(),
        );
        registry.register(
            "queue_seconds",
            "Time a request waited for its batch",
            queue_seconds.clone(),
        );
        registry.register(
            "inference_seconds",
            "Time to label one batch",
            inference_seconds.clone(),
        );
        registry.register(
            "request_seconds",
            "Time to answer a request",
            request_seconds.clone(),
        );
        Metrics {
            registry,
            requests,
            texts,
            windows,
            tokens,
            queue_depth,
            batch_texts,
            queue_seconds,
            inference_seconds,
            request_seconds,
        }
    }

    /// The text exposition format.
    pub(crate) fn encode(&self) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &self.registry)
            .expect("writing to a string");
        s
    }
}
