//! Dynamic batching: the texts of concurrent requests join one queue; one thread takes what is
//! waiting (up to a token budget, waiting at most a short window for more) and labels it as one
//! batch with [`Labeller::label_batch`], whose scores for a text do not depend on the rest of
//! its batch. The labelling itself runs on rayon's pool and the engine's threads (every core),
//! never on the async runtime's.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};
use tokio::sync::oneshot;
use triage_batch::{BatchResult, Labeller};

use crate::metrics::Metrics;

/// One request's texts: `(position, id, text)`.
pub(crate) struct Job {
    pub(crate) texts: Vec<(u64, String, String)>,
    pub(crate) reply: oneshot::Sender<Vec<BatchResult>>,
    pub(crate) enqueued: Instant,
}

impl Job {
    /// Tokens the encoder will run, estimated from characters (a token is about 3 of them in
    /// the languages served; the budget is a guide, not a limit on any one text).
    fn tokens(&self) -> usize {
        self.texts
            .iter()
            .map(|(_, _, t)| t.chars().count() / 3 + 2)
            .sum()
    }
}

/// The batcher's knobs.
#[derive(Debug, Clone, Copy)]
pub struct BatchOptions {
    /// Estimated tokens per batch: more waiting requests wait for the next batch.
    pub max_batch_tokens: usize,
    /// How long the first request of a batch waits for others to join.
    pub max_wait: Duration,
    /// Characters per text above which a text fails as `too_long`.
    pub max_chars: usize,
}

/// The sending side of the queue.
#[derive(Clone)]
pub(crate) struct Queue {
    tx: Sender<Job>,
    depth: Arc<AtomicI64>,
    /// Requests being read and checked, whose jobs are on their way: the batcher waits for
    /// more only while there are some (a lone request is labelled at once).
    coming: Arc<AtomicI64>,
}

/// A request on its way to the queue (see [`Queue::coming`]); dropping it says it is not.
pub(crate) struct Coming(Arc<AtomicI64>);

impl Drop for Coming {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Queue {
    /// Starts the batcher thread.
    pub(crate) fn start(
        labeller: Arc<Labeller>,
        options: BatchOptions,
        metrics: Arc<Metrics>,
    ) -> Queue {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        let depth = Arc::new(AtomicI64::new(0));
        let coming = Arc::new(AtomicI64::new(0));
        let (d, c) = (depth.clone(), coming.clone());
        std::thread::Builder::new()
            .name("triage-batcher".into())
            .spawn(move || run(&labeller, &options, &rx, &d, &c, &metrics))
            .expect("a thread starts");
        Queue { tx, depth, coming }
    }

    /// Says a request is on its way, until the returned guard is dropped (after `push`).
    pub(crate) fn coming(&self) -> Coming {
        self.coming.fetch_add(1, Ordering::SeqCst);
        Coming(self.coming.clone())
    }

    /// Queues a job; its reply comes on the job's channel.
    pub(crate) fn push(&self, job: Job, metrics: &Metrics) -> bool {
        let n = job.texts.len() as i64;
        let d = self.depth.fetch_add(n, Ordering::Relaxed) + n;
        metrics.queue_depth.set(d);
        self.tx.send(job).is_ok()
    }
}

fn run(
    labeller: &Labeller,
    options: &BatchOptions,
    rx: &Receiver<Job>,
    depth: &AtomicI64,
    coming: &AtomicI64,
    metrics: &Metrics,
) {
    let mut carried: Option<Job> = None;
    loop {
        let first = match carried.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        let mut tokens = first.tokens();
        let mut jobs = vec![first];
        let until = Instant::now() + options.max_wait;
        while tokens < options.max_batch_tokens {
            // nothing queued and no request on its way: waiting would only add latency
            if rx.is_empty() && coming.load(Ordering::SeqCst) <= 0 {
                break;
            }
            let left = until.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(j) => {
                    let t = j.tokens();
                    if tokens + t > options.max_batch_tokens {
                        carried = Some(j);
                        break;
                    }
                    tokens += t;
                    jobs.push(j);
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        let n: i64 = jobs.iter().map(|j| j.texts.len() as i64).sum();
        metrics
            .queue_depth
            .set(depth.fetch_sub(n, Ordering::Relaxed) - n);
        // a request that gave up (its deadline passed) is not labelled
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.is_empty() {
            continue;
        }
        let started = Instant::now();
        for j in &jobs {
            metrics
                .queue_seconds
                .observe(started.duration_since(j.enqueued).as_secs_f64());
        }
        let sizes: Vec<usize> = jobs.iter().map(|j| j.texts.len()).collect();
        let mut replies = Vec::with_capacity(jobs.len());
        let mut texts = Vec::with_capacity(sizes.iter().sum());
        for j in jobs {
            texts.extend(j.texts);
            replies.push(j.reply);
        }
        metrics.batch_texts.observe(texts.len() as f64);
        let mut results = labeller.label_batch(texts, options.max_chars).into_iter();
        metrics
            .inference_seconds
            .observe(started.elapsed().as_secs_f64());
        for (reply, size) in replies.into_iter().zip(sizes) {
            let mine: Vec<BatchResult> = results.by_ref().take(size).collect();
            let _ = reply.send(mine);
        }
    }
}
