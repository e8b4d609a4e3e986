//! How windows go through the encoder: padded to length buckets, batched by bucket within the
//! engine's token budget, the passes run in parallel, each window pooled on its own, so that
//! a window's states never depend on its batch.

use std::borrow::Borrow;

use candle_core::{IndexOp, Tensor};

use super::Classifier;
use crate::backend::MAX_GPU_BATCH_TOKENS;
use crate::config::Pooling;
use crate::error::Result;
use crate::model::{l2_normalize, mean_pool};
use crate::tokenize::Prepared;

/// Windows are padded to a multiple of this many tokens (see `Classifier::run_windows`).
pub const BUCKET: usize = 8;
impl Classifier {
    pub(super) fn pool(&self, hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let pooled = match self.inner.pooling.pooling {
            Pooling::Mean => mean_pool(hidden, mask)?,
            Pooling::Cls => hidden.i((.., 0))?.contiguous()?,
        };
        if self.inner.pooling.normalize {
            l2_normalize(&pooled)
        } else {
            Ok(pooled)
        }
    }

    /// Runs every window of `prepared` through the encoder in length-sorted batches and maps
    /// each batch's hidden states to rows with `f`; returns the rows of each text in order.
    ///
    /// Every window is padded to its length bucket (the next multiple of [`BUCKET`] tokens) and
    /// only windows of one bucket share a batch, so the arithmetic a window goes through, and
    /// with it every bit of its scores, does not depend on which other texts, how many, or how
    /// many threads there are.
    pub(super) fn run_windows<P, T, F>(
        &self,
        prepared: &[P],
        exact: bool,
        f: F,
    ) -> Result<Vec<Vec<T>>>
    where
        P: Borrow<Prepared> + Sync,
        T: Send,
        F: Fn(&Self, &Tensor, &Tensor) -> Result<Vec<T>> + Sync,
    {
        let rows = self.run_items(prepared, &every_window(prepared), exact, f)?;
        Ok(by_text(prepared, rows))
    }

    /// `f` of the encoder's states of the windows `items` (`(text, window)`), in that order; on
    /// the f32 encoder with `exact` (see [`crate::backend::Encoder::forward_exact`]). `f` gets
    /// the states and mask of one window (`[1, len, ...]`) on the CPU, of a whole pass on a
    /// GPU, and gives one row per window.
    pub(super) fn run_items<P, T, F>(
        &self,
        prepared: &[P],
        items: &[(usize, usize)],
        exact: bool,
        f: F,
    ) -> Result<Vec<T>>
    where
        P: Borrow<Prepared> + Sync,
        T: Send,
        F: Fn(&Self, &Tensor, &Tensor) -> Result<Vec<T>> + Sync,
    {
        use rayon::prelude::*;
        // Windows of one padded length share forward passes, up to MAX_BATCH_TOKENS tokens a
        // pass. Every window in a pass has exactly its own bucket's length, so attention, layer
        // norms and activations see the same rows as if it ran alone; the matrix products give
        // each row the same bits for any number of rows from BUCKET up (each output element is
        // one dot product over the same K in the same order), which the tests check. The
        // passes run in parallel.
        //
        // On a GPU the passes are larger (MAX_GPU_BATCH_TOKENS) and run in turn, and that bit
        // for bit independence does not hold: cuBLAS picks its kernels by the products' shapes,
        // so a window's scores can move in their last bits with the batch it is in.
        let mut groups: std::collections::BTreeMap<usize, Vec<usize>> =
            std::collections::BTreeMap::new();
        for (i, &(d, w)) in items.iter().enumerate() {
            let padded = prepared[d].borrow().windows[w]
                .ids
                .len()
                .div_ceil(BUCKET)
                .max(1)
                * BUCKET;
            groups.entry(padded).or_default().push(i);
        }
        let gpu = self.inner.gpu_passes;
        let budget = if gpu {
            MAX_GPU_BATCH_TOKENS
        } else {
            self.inner.encoder.batch_tokens()
        };
        let mut batches: Vec<(usize, Vec<usize>)> = Vec::new();
        for (len, members) in groups {
            let per = (budget / len).max(1);
            // equal-sized passes, so that the two cores get even work
            let n = members.len().div_ceil(per);
            let size = members.len().div_ceil(n);
            for part in members.chunks(size) {
                batches.push((len, part.to_vec()));
            }
        }
        // on the CPU, fewer passes than threads (a lone long text: a request to `triage
        // serve`, the last chunk of a run) are split, the largest first, so that every core
        // has one (a window's result does not depend on its pass)
        let threads = if gpu { 1 } else { rayon::current_num_threads() };
        while batches.len() < threads {
            let Some(k) = (0..batches.len())
                .filter(|&k| batches[k].1.len() > 1)
                .max_by_key(|&k| batches[k].0 * batches[k].1.len())
            else {
                break;
            };
            let (len, members) = &mut batches[k];
            let half = members.split_off(members.len() / 2);
            let len = *len;
            batches.push((len, half));
        }
        // the longest first, so that the last pass to finish is a short one
        batches.sort_by_key(|b| std::cmp::Reverse(b.0 * b.1.len()));
        // one window and nothing beside it: it may have every core (the same bits)
        let alone = !gpu && batches.len() == 1 && batches[0].1.len() == 1;
        let run = |(len, members): &(usize, Vec<usize>)| -> Result<Vec<T>> {
            let ids: Vec<&[u32]> = members
                .iter()
                .map(|&i| {
                    prepared[items[i].0].borrow().windows[items[i].1]
                        .ids
                        .as_slice()
                })
                .collect();
            let inputs = self.inner.inputs_of.inputs(&ids, *len)?;
            let hidden = if exact {
                self.inner.encoder.forward_exact(&inputs)?
            } else if alone {
                self.inner.encoder.forward_alone(&inputs)?
            } else {
                self.inner.encoder.forward(&inputs)?
            };
            if gpu {
                // the whole batch at once: one copy back to the host instead of one per window
                return f(self, &hidden, &inputs.mask);
            }
            // pooling and heads run window by window, as small products of one row give
            // other bits than the same row among several
            let mut rows = Vec::with_capacity(members.len());
            for r in 0..members.len() {
                let h = hidden.narrow(0, r, 1)?;
                let m = inputs.mask.narrow(0, r, 1)?;
                rows.push(f(self, &h, &m)?.remove(0));
            }
            Ok(rows)
        };
        // A GPU takes the passes one after another: it is busy with one large pass, and
        // threads would only queue on its stream.
        let results: Vec<Result<Vec<T>>> = if gpu {
            batches.iter().map(run).collect()
        } else {
            batches.par_iter().map(run).collect()
        };
        let mut out: Vec<Option<T>> = std::iter::repeat_with(|| None).take(items.len()).collect();
        for ((_, members), r) in batches.iter().zip(results) {
            for (&i, row) in members.iter().zip(r?) {
                out[i] = Some(row);
            }
        }
        Ok(out
            .into_iter()
            .map(|r| r.expect("every window is in one pass"))
            .collect())
    }

    /// [`Classifier::embed_prepared`] on the main encoder or, with `exact`, its f32 one.
    pub(super) fn embed_prepared_on(
        &self,
        prepared: &[Prepared],
        exact: bool,
    ) -> Result<Vec<Vec<f32>>> {
        let per_window = self.window_embeddings_on(prepared, exact)?;
        Ok(prepared
            .iter()
            .zip(per_window)
            .map(|(p, rows)| self.text_embedding(p, &rows))
            .collect())
    }

    /// A text's embedding from its windows' pooled embeddings (as
    /// [`Classifier::window_embeddings`] gives them): their mean weighted by each window's
    /// tokens, divided by its length when the model's pooling normalises. The one definition
    /// of a text's embedding: the label prototypes, [`Classifier::embed`] and the heads
    /// `triage train` fits all use it.
    pub fn text_embedding(&self, prepared: &Prepared, windows: &[Vec<f32>]) -> Vec<f32> {
        let mut v = vec![0f32; self.hidden_size()];
        let mut total = 0f32;
        for (w, row) in prepared.windows.iter().zip(windows) {
            let weight = w.ids.len() as f32;
            total += weight;
            v.iter_mut().zip(row).for_each(|(a, b)| *a += weight * b);
        }
        v.iter_mut().for_each(|a| *a /= total);
        if self.inner.pooling.normalize {
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
            v.iter_mut().for_each(|a| *a /= norm);
        }
        v
    }
}

/// `(text, window)` of every window of `prepared`, in order.
pub(super) fn every_window<P: Borrow<Prepared>>(prepared: &[P]) -> Vec<(usize, usize)> {
    prepared
        .iter()
        .enumerate()
        .flat_map(|(d, p)| (0..p.borrow().windows.len()).map(move |w| (d, w)))
        .collect()
}

/// Rows of every window (in [`every_window`]'s order) grouped by text.
pub(super) fn by_text<P: Borrow<Prepared>, T>(prepared: &[P], rows: Vec<T>) -> Vec<Vec<T>> {
    let mut rows = rows.into_iter();
    prepared
        .iter()
        .map(|p| rows.by_ref().take(p.borrow().windows.len()).collect())
        .collect()
}
