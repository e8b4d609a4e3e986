//! triage's classifier as an HTTP service (tokio and axum): the same labeller, configuration
//! and scores as `triage label`, for callers that cannot link `triage-classify`.
//!
//! - `POST /v1/classify` `{"texts": [...]}` or `{"records": [{"id", "text"}]}`: for each text
//!   the record `triage label` writes for it (or `{"error": ...}` in its slot), in order.
//! - `POST /predict`: Hugging Face text-embeddings-inference's request and response shapes.
//! - `POST /v1/detect`: languages only.
//! - `GET /health`, `/ready`, `/info`, `/metrics` (Prometheus), `/openapi.json`.
//!
//! Requests' texts join one queue and are labelled in batches (`batcher.rs`) on their own
//! threads; a request waits for its texts without holding an async thread. Every error is JSON
//! `{"error": {"code", "message", "field"}}`, `field` being the JSON path of what was wrong.
#![deny(missing_docs)]

mod batcher;
mod metrics;

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tokio::sync::Semaphore;
use triage_batch::{type_name, BatchResult, Labeller};

pub use batcher::BatchOptions;

use batcher::{Job, Queue};

use metrics::{Metrics, RouteStatus};

/// The server's limits and knobs.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Largest request body (bytes): 413 above.
    pub max_body_bytes: usize,
    /// Texts per request: 413 above.
    pub max_texts: usize,
    /// Requests handled at once: 429 (with `Retry-After`) above.
    pub max_concurrent: usize,
    /// How long a request may wait for its texts: 503 after.
    pub deadline: Duration,
    /// After SIGTERM or Ctrl-C: how long `/ready` says 503 while requests are still taken
    /// (for a load balancer to notice), then how long requests in flight may take to finish.
    pub drain_delay: Duration,
    /// See `drain_delay`.
    pub drain_timeout: Duration,
    /// API keys (`Authorization: Bearer KEY`); none: no authentication.
    pub api_keys: Vec<String>,
    /// Dynamic batching.
    pub batch: BatchOptions,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            max_body_bytes: 2 << 20,
            max_texts: 256,
            max_concurrent: 256,
            deadline: Duration::from_secs(30),
            drain_delay: Duration::ZERO,
            drain_timeout: Duration::from_secs(30),
            api_keys: Vec::new(),
            batch: BatchOptions {
                max_batch_tokens: 8192,
                max_wait: Duration::from_millis(5),
                max_chars: 100_000,
            },
        }
    }
}

struct AppState {
    labeller: Arc<Labeller>,
    queue: Queue,
    metrics: Arc<Metrics>,
    options: ServeOptions,
    info: Value,
    ready: AtomicBool,
    permits: Arc<Semaphore>,
    /// SHA-256 of each API key (compared in constant time).
    keys: Vec<[u8; 32]>,
    next_id: AtomicU64,
}

type Shared = Arc<AppState>;

/// An error answer: `{"error": {"code", "message", "field"}}`.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    field: Option<String>,
    retry_after: Option<u64>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    fn at(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }
}

fn error_body(code: &str, message: &str, field: Option<&str>) -> Value {
    json!({"error": {"code": code, "message": message, "field": field}})
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = json_response(
            self.status,
            error_body(self.code, &self.message, self.field.as_deref()).to_string(),
        );
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        r
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    let mut r = Response::new(Body::from(body));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The router of a server on `labeller` (`info`: what `/info` says of the model and labels).
fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/v1/classify", post(classify))
        .route("/predict", post(predict))
        .route("/v1/detect", post(detect))
        .route("/info", get(info))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi))
        .route_layer(axum::middleware::from_fn_with_state(state.clone(), auth));
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .merge(api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), observe))
        .with_state(state)
}

/// Serves on `listener` until `shutdown` completes; then `/ready` answers 503, new requests
/// are still taken for `drain_delay`, and requests in flight get `drain_timeout` to finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    labeller: Arc<Labeller>,
    info: Value,
    options: ServeOptions,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let queue = Queue::start(labeller.clone(), options.batch, metrics.clone());
    let keys = options
        .api_keys
        .iter()
        .map(|k| sha256(k.as_bytes()))
        .collect();
    let state = Arc::new(AppState {
        labeller,
        queue,
        metrics,
        permits: Arc::new(Semaphore::new(options.max_concurrent.max(1))),
        info,
        ready: AtomicBool::new(true),
        keys,
        next_id: AtomicU64::new(1),
        options: options.clone(),
    });
    let app = router(state.clone());
    let (drain_tx, drain_rx) = tokio::sync::oneshot::channel::<()>();
    let st = state.clone();
    let graceful = async move {
        shutdown.await;
        st.ready.store(false, Ordering::SeqCst);
        tracing::info!(
            delay_ms = st.options.drain_delay.as_millis() as u64,
            "draining: /ready answers 503"
        );
        tokio::time::sleep(st.options.drain_delay).await;
        let _ = drain_tx.send(());
    };
    let server = axum::serve(listener, app).with_graceful_shutdown(graceful);
    let timeout = options.drain_timeout;
    tokio::select! {
        r = server => {
            tracing::info!("drained: every request answered");
            r
        }
        _ = async move {
            if drain_rx.await.is_ok() {
                tokio::time::sleep(timeout).await;
            } else {
                std::future::pending::<()>().await;
            }
        } => {
            tracing::warn!("drain timeout: exiting with requests in flight");
            Ok(())
        }
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(b).into()
}

/// `Authorization: Bearer KEY` against every key, in constant time (digests of equal length,
/// every key compared).
async fn auth(State(s): State<Shared>, req: Request, next: Next) -> Response {
    if s.keys.is_empty() {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|k| sha256(k.trim().as_bytes()));
    let ok = given.is_some_and(|g| {
        use subtle::ConstantTimeEq;
        let mut any = subtle::Choice::from(0);
        for k in &s.keys {
            any |= k.ct_eq(&g);
        }
        bool::from(any)
    });
    if ok {
        next.run(req).await
    } else {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a valid API key is needed: Authorization: Bearer KEY",
        )
        .at("headers.authorization")
        .into_response()
    }
}

/// One log line and the metrics of every request, with its id (`x-request-id`, given or made).
async fn observe(State(s): State<Shared>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128)
        .map(str::to_owned)
        .unwrap_or_else(|| format!("r{}", s.next_id.fetch_add(1, Ordering::Relaxed)));
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched".to_owned(), |m| m.as_str().to_owned());
    let method = req.method().clone();
    let mut res = next.run(req).await;
    let status = res.status().as_u16();
    let secs = started.elapsed().as_secs_f64();
    s.metrics
        .requests
        .get_or_create(&RouteStatus {
            route: route.clone(),
            status,
        })
        .inc();
    s.metrics.request_seconds.observe(secs);
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert("x-request-id", v);
    }
    tracing::info!(
        request_id = %id,
        method = %method,
        route = %route,
        status,
        ms = format!("{:.2}", secs * 1e3),
        "request"
    );
    res
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no route {}", req.uri().path()),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{} is not served at {}", req.method(), req.uri().path()),
    )
}

async fn health() -> Response {
    json_response(StatusCode::OK, json!({"status": "ok"}).to_string())
}

async fn ready(State(s): State<Shared>) -> Response {
    if s.ready.load(Ordering::SeqCst) {
        json_response(StatusCode::OK, json!({"status": "ready"}).to_string())
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "draining",
            "shutting down: finishing the requests in flight",
        )
        .into_response()
    }
}

async fn info(State(s): State<Shared>) -> Response {
    let o = &s.options;
    let mut v = s.info.clone();
    v["limits"] = json!({
        "max_body_bytes": o.max_body_bytes,
        "max_texts": o.max_texts,
        "max_chars": o.batch.max_chars,
        "max_concurrent": o.max_concurrent,
        "deadline_ms": o.deadline.as_millis() as u64,
    });
    v["batching"] = json!({
        "max_batch_tokens": o.batch.max_batch_tokens,
        "max_wait_ms": o.batch.max_wait.as_secs_f64() * 1e3,
    });
    v["auth"] = json!(!s.keys.is_empty());
    json_response(StatusCode::OK, v.to_string())
}

async fn metrics_text(State(s): State<Shared>) -> Response {
    let mut r = Response::new(Body::from(s.metrics.encode()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    r
}

async fn openapi() -> Response {
    json_response(
        StatusCode::OK,
        include_str!("openapi.json").replace("@VERSION@", env!("CARGO_PKG_VERSION")),
    )
}

/// The request body, at most `max_body_bytes` of it.
async fn body(s: &AppState, req: Request) -> Result<axum::body::Bytes, ApiError> {
    let limit = s.options.max_body_bytes;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            format!("the request body is larger than {limit} bytes"),
        )
    };
    if let Some(n) = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        if n > limit as u64 {
            return Err(too_large());
        }
    }
    axum::body::to_bytes(req.into_body(), limit)
        .await
        .map_err(|_| too_large())
}

/// `T` from JSON, with the path of a wrong field.
fn parse<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let r: Result<T, _> = serde_path_to_error::deserialize(&mut de);
    match r {
        Ok(v) => {
            de.end().map_err(|e| {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("invalid JSON: {e}"),
                )
            })?;
            Ok(v)
        }
        Err(e) => {
            let path = e.path().to_string();
            let inner = e.into_inner();
            let field = (path != ".").then_some(path);
            let err = if inner.is_syntax() || inner.is_eof() {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!("invalid JSON: {inner}"),
                )
            } else {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_request",
                    inner.to_string(),
                )
            };
            Err(match field {
                Some(f) => err.at(f),
                None => err,
            })
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassifyRequest {
    #[serde(default)]
    texts: Option<Vec<Value>>,
    #[serde(default)]
    records: Option<Vec<RecordIn>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordIn {
    #[serde(default)]
    id: Option<Id>,
    text: Value,
}

/// A record's id: a string or an integer.
#[derive(Deserialize)]
#[serde(untagged)]
enum Id {
    S(String),
    N(i64),
}

/// One text to label, or why it cannot be: `(path, text or error)`.
type Slot = (String, Result<(String, String), ApiError>);

/// The slots of a request's texts: each a string, else an error in its slot.
fn slot(path: String, id: String, v: Value) -> Slot {
    match v {
        Value::String(t) => (path, Ok((id, t))),
        other => {
            let e = ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_text",
                format!("expected a string, found {}", type_name(&other)),
            )
            .at(path.clone());
            (path, Err(e))
        }
    }
}

/// Checks the number of texts and each one's length.
fn check_limits(s: &AppState, slots: &[Slot], what: &str) -> Result<(), ApiError> {
    if slots.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_request",
            format!("{what} is empty"),
        )
        .at(what));
    }
    if slots.len() > s.options.max_texts {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_texts",
            format!(
                "{} texts, more than the limit of {} per request",
                slots.len(),
                s.options.max_texts
            ),
        )
        .at(what));
    }
    for (path, t) in slots {
        if let Ok((_, text)) = t {
            // bytes bound characters from above: count only when it may matter
            if text.len() > s.options.batch.max_chars {
                let n = text.chars().count();
                if n > s.options.batch.max_chars {
                    return Err(ApiError::new(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "text_too_long",
                        format!(
                            "{n} characters, more than the limit of {}",
                            s.options.batch.max_chars
                        ),
                    )
                    .at(path.clone()));
                }
            }
        }
    }
    Ok(())
}

/// A permit of the concurrency limit, or 429.
fn permit(s: &AppState) -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    s.permits.clone().try_acquire_owned().map_err(|_| {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            format!(
                "{} requests are being handled, the limit; retry after a second",
                s.options.max_concurrent
            ),
        );
        e.retry_after = Some(1);
        e
    })
}

/// Labels the good slots in one job; returns each slot's result.
async fn label(
    s: &AppState,
    slots: Vec<Slot>,
    coming: batcher::Coming,
) -> Result<Vec<(String, Result<BatchResult, ApiError>)>, ApiError> {
    let mut texts = Vec::new();
    for (i, (_, t)) in slots.iter().enumerate() {
        if let Ok((id, text)) = t {
            texts.push((i as u64 + 1, id.clone(), text.clone()));
        }
    }
    let mut results = if texts.is_empty() {
        drop(coming);
        Vec::new().into_iter()
    } else {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let n = texts.len();
        let job = Job {
            texts,
            reply: tx,
            enqueued: Instant::now(),
        };
        let pushed = s.queue.push(job, &s.metrics);
        drop(coming);
        if !pushed {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the labeller has stopped",
            ));
        }
        let r = tokio::time::timeout(s.options.deadline, rx)
            .await
            .map_err(|_| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "deadline_exceeded",
                    format!(
                        "not labelled within the deadline of {} ms",
                        s.options.deadline.as_millis()
                    ),
                )
            })?
            .map_err(|_| {
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "the labeller dropped the request",
                )
            })?;
        debug_assert_eq!(r.len(), n);
        r.into_iter()
    };
    let mut out = Vec::with_capacity(slots.len());
    for (path, t) in slots {
        out.push(match t {
            Err(e) => (path, Err(e)),
            Ok(_) => {
                let r = results.next().ok_or_else(|| {
                    ApiError::new(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "internal",
                        "a text has no result",
                    )
                })?;
                if let BatchResult::Labelled {
                    windows, tokens, ..
                } = &r
                {
                    s.metrics.windows.inc_by(*windows as u64);
                    s.metrics.tokens.inc_by(*tokens as u64);
                }
                s.metrics.texts.inc();
                (path, Ok(r))
            }
        });
    }
    Ok(out)
}

fn slot_error(path: &str, r: Result<BatchResult, ApiError>) -> Result<Box<RawValue>, Value> {
    match r {
        Ok(BatchResult::Labelled { json, .. }) => {
            Ok(RawValue::from_string(json).expect("records are JSON"))
        }
        Ok(BatchResult::Failed { kind, reason }) => Err(error_body(&kind, &reason, Some(path))),
        Err(e) => Err(error_body(e.code, &e.message, e.field.as_deref())),
    }
}

async fn classify(State(s): State<Shared>, req: Request) -> Result<Response, ApiError> {
    let _permit = permit(&s)?;
    let coming = s.queue.coming();
    let bytes = body(&s, req).await?;
    let r: ClassifyRequest = parse(&bytes)?;
    let (slots, what): (Vec<Slot>, &str) = match (r.texts, r.records) {
        (Some(t), None) => (
            t.into_iter()
                .enumerate()
                .map(|(i, v)| slot(format!("texts[{i}]"), (i + 1).to_string(), v))
                .collect(),
            "texts",
        ),
        (None, Some(rs)) => (
            rs.into_iter()
                .enumerate()
                .map(|(i, r)| {
                    let id = match r.id {
                        Some(Id::S(s)) => s,
                        Some(Id::N(n)) => n.to_string(),
                        None => (i + 1).to_string(),
                    };
                    slot(format!("records[{i}].text"), id, r.text)
                })
                .collect(),
            "records",
        ),
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_request",
                "give either \"texts\" or \"records\"",
            ))
        }
    };
    check_limits(&s, &slots, what)?;
    let results = label(&s, slots, coming).await?;
    let mut body = String::from("{\"results\":[");
    for (i, (path, r)) in results.into_iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        match slot_error(&path, r) {
            Ok(raw) => body.push_str(raw.get()),
            Err(e) => body.push_str(&e.to_string()),
        }
    }
    body.push_str("]}");
    Ok(json_response(StatusCode::OK, body))
}

#[derive(Deserialize)]
struct PredictRequest {
    inputs: PredictInputs,
    #[serde(default)]
    #[allow(dead_code)]
    raw_scores: bool,
    #[serde(default)]
    #[allow(dead_code)]
    truncate: Option<bool>,
    #[serde(default)]
    #[allow(dead_code)]
    truncation_direction: Option<String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum PredictInputs {
    One(String),
    Many(Vec<Value>),
}

/// TEI's `/predict`: `{"inputs": "text"}` answers `[{"label", "score"}, ...]` (highest score
/// first), `{"inputs": ["a", "b"]}` a list of those. triage windows long texts instead of
/// cutting them, so `truncate` changes nothing.
async fn predict(State(s): State<Shared>, req: Request) -> Result<Response, ApiError> {
    let _permit = permit(&s)?;
    let coming = s.queue.coming();
    let bytes = body(&s, req).await?;
    let r: PredictRequest = parse(&bytes)?;
    let (values, one) = match r.inputs {
        PredictInputs::One(t) => (vec![Value::String(t)], true),
        PredictInputs::Many(v) => (v, false),
    };
    let slots: Vec<Slot> = values
        .into_iter()
        .enumerate()
        .map(|(i, v)| {
            // TEI also takes `[["text"]]`: a one-text list is that text
            let v = match v {
                Value::Array(mut a) if a.len() == 1 => a.remove(0),
                v => v,
            };
            let path = if one {
                "inputs".to_owned()
            } else {
                format!("inputs[{i}]")
            };
            slot(path, (i + 1).to_string(), v)
        })
        .collect();
    check_limits(&s, &slots, "inputs")?;
    let results = label(&s, slots, coming).await?;
    let mut out = Vec::new();
    for (path, r) in results {
        match slot_error(&path, r) {
            Ok(raw) => {
                let rec: Value = serde_json::from_str(raw.get()).unwrap_or_default();
                let mut labels: Vec<Value> = rec["labels"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|l| json!({"label": l["label"], "score": l["score"]}))
                    .collect();
                labels.sort_by(|a, b| {
                    b["score"]
                        .as_f64()
                        .unwrap_or(0.0)
                        .total_cmp(&a["score"].as_f64().unwrap_or(0.0))
                });
                out.push(Value::Array(labels));
            }
            // TEI fails the whole request for a bad input
            Err(e) => {
                let status = StatusCode::UNPROCESSABLE_ENTITY;
                return Ok(json_response(status, e.to_string()));
            }
        }
    }
    let body = if one {
        out.remove(0)
    } else {
        Value::Array(out)
    };
    Ok(json_response(StatusCode::OK, body.to_string()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectRequest {
    texts: Vec<Value>,
}

/// Languages only: no encoder.
async fn detect(State(s): State<Shared>, req: Request) -> Result<Response, ApiError> {
    let _permit = permit(&s)?;
    let bytes = body(&s, req).await?;
    let r: DetectRequest = parse(&bytes)?;
    let slots: Vec<Slot> = r
        .texts
        .into_iter()
        .enumerate()
        .map(|(i, v)| slot(format!("texts[{i}]"), String::new(), v))
        .collect();
    check_limits(&s, &slots, "texts")?;
    let labeller = s.labeller.clone();
    // detection is CPU work too: off the async threads
    let results = tokio::task::spawn_blocking(move || {
        slots
            .into_iter()
            .map(|(_, t)| match t {
                Ok((_, text)) => {
                    let d = labeller.detector().detect(&text);
                    json!({
                        "lang": d.lang(),
                        "lang_confidence": d.confidence(),
                        "lang_reliable": d.is_reliable(),
                        "lang_listed": d.is_listed(),
                        "script": d.script(),
                    })
                }
                Err(e) => error_body(e.code, &e.message, e.field.as_deref()),
            })
            .collect::<Vec<_>>()
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()))?;
    s.metrics.texts.inc_by(results.len() as u64);
    Ok(json_response(
        StatusCode::OK,
        json!({"results": results}).to_string(),
    ))
}
