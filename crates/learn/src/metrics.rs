//! Classification metrics: precision, recall, F1, threshold search, precision-recall curves,
//! calibration error and confusion matrices.

use serde::Serialize;

/// Precision, recall and F1 of one label (0 where undefined).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Default)]
pub struct Prf {
    /// tp / (tp + fp).
    pub precision: f64,
    /// tp / (tp + fn).
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// Positives in the truth (tp + fn).
    pub support: u64,
    /// True positives.
    pub tp: u64,
    /// False positives.
    pub fp: u64,
    /// False negatives.
    pub fn_: u64,
}

/// Precision, recall and F1 from counts.
pub fn prf(tp: u64, fp: u64, fn_: u64) -> Prf {
    let div = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    let precision = div(tp, tp + fp);
    let recall = div(tp, tp + fn_);
    let f1 = if precision + recall == 0.0 {
        0.0
    } else {
        2.0 * precision * recall / (precision + recall)
    };
    Prf {
        precision,
        recall,
        f1,
        support: tp + fn_,
        tp,
        fp,
        fn_,
    }
}

/// Micro average: precision, recall and F1 of the summed counts.
pub fn micro(items: &[Prf]) -> Prf {
    let (tp, fp, fn_) = items
        .iter()
        .fold((0, 0, 0), |a, p| (a.0 + p.tp, a.1 + p.fp, a.2 + p.fn_));
    prf(tp, fp, fn_)
}

/// Macro average of precision, recall and F1 over the items with support.
pub fn macro_avg(items: &[Prf]) -> Prf {
    let with: Vec<&Prf> = items.iter().filter(|p| p.support > 0).collect();
    let n = with.len().max(1) as f64;
    Prf {
        precision: with.iter().map(|p| p.precision).sum::<f64>() / n,
        recall: with.iter().map(|p| p.recall).sum::<f64>() / n,
        f1: with.iter().map(|p| p.f1).sum::<f64>() / n,
        support: with.iter().map(|p| p.support).sum(),
        ..Default::default()
    }
}

/// One point of a threshold sweep: flag when `score >= threshold`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ThresholdPoint {
    /// The threshold.
    pub threshold: f32,
    /// Precision at it.
    pub precision: f64,
    /// Recall at it.
    pub recall: f64,
    /// F1 at it.
    pub f1: f64,
}

/// Every distinct cut of `scored` (score, is positive), from the highest threshold down.
pub fn pr_curve(scored: &[(f32, bool)]) -> Vec<ThresholdPoint> {
    let positives = scored.iter().filter(|s| s.1).count() as u64;
    let mut sorted: Vec<(f32, bool)> = scored.to_vec();
    sorted.sort_by(|a, b| b.0.total_cmp(&a.0));
    let mut out = Vec::new();
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut i = 0;
    while i < sorted.len() {
        let t = sorted[i].0;
        while i < sorted.len() && sorted[i].0 == t {
            if sorted[i].1 {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let p = prf(tp, fp, positives - tp);
        out.push(ThresholdPoint {
            threshold: t,
            precision: p.precision,
            recall: p.recall,
            f1: p.f1,
        });
    }
    out
}

/// The threshold with the best F1 (the higher threshold on ties); `None` without positives.
pub fn best_f1_threshold(scored: &[(f32, bool)]) -> Option<ThresholdPoint> {
    if !scored.iter().any(|s| s.1) {
        return None;
    }
    pr_curve(scored)
        .into_iter()
        .fold(None, |best: Option<ThresholdPoint>, p| match best {
            Some(b) if b.f1 >= p.f1 => Some(b),
            _ => Some(p),
        })
}

/// The lowest threshold (most recall) whose precision reaches `target`; `None` if none does.
pub fn threshold_for_precision(scored: &[(f32, bool)], target: f64) -> Option<ThresholdPoint> {
    pr_curve(scored)
        .into_iter()
        .rev()
        .find(|p| p.precision >= target && p.recall > 0.0)
}

/// Expected calibration error of scores as probabilities: the share-weighted gap between the
/// mean score and the share of positives in each of `bins` equal-width bins.
pub fn expected_calibration_error(scored: &[(f32, bool)], bins: usize) -> f64 {
    if scored.is_empty() {
        return 0.0;
    }
    let mut sum = vec![0f64; bins];
    let mut pos = vec![0f64; bins];
    let mut n = vec![0f64; bins];
    for &(s, y) in scored {
        let b = ((s.clamp(0.0, 1.0) as f64 * bins as f64) as usize).min(bins - 1);
        sum[b] += s as f64;
        pos[b] += y as u8 as f64;
        n[b] += 1.0;
    }
    let total = scored.len() as f64;
    (0..bins)
        .filter(|&b| n[b] > 0.0)
        .map(|b| n[b] / total * (sum[b] / n[b] - pos[b] / n[b]).abs())
        .sum()
}

/// `matrix[truth][predicted]` counts.
pub fn confusion(truth: &[usize], predicted: &[usize], classes: usize) -> Vec<Vec<u64>> {
    let mut m = vec![vec![0u64; classes]; classes];
    for (&t, &p) in truth.iter().zip(predicted) {
        m[t][p] += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prf_by_hand() {
        // tp 6, fp 2, fn 4: precision 0.75, recall 0.6, f1 = 2*0.45/1.35 = 0.6667
        let p = prf(6, 2, 4);
        assert_eq!((p.precision, p.recall, p.support), (0.75, 0.6, 10));
        assert!((p.f1 - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(prf(0, 0, 0).f1, 0.0);
        let a = prf(1, 1, 0); // p 0.5 r 1 f1 0.6667
        let b = prf(3, 0, 1); // p 1 r 0.75 f1 0.857
        let mi = micro(&[a, b]); // tp 4 fp 1 fn 1 -> 0.8 0.8 0.8
        assert!((mi.f1 - 0.8).abs() < 1e-12);
        let ma = macro_avg(&[a, b, prf(0, 3, 0)]); // the third has no support: left out
        assert!((ma.f1 - (2.0 / 3.0 + 6.0 / 7.0) / 2.0).abs() < 1e-12);
        assert!((ma.precision - 0.75).abs() < 1e-12);
    }

    #[test]
    fn threshold_search() {
        let s = [
            (0.9, true),
            (0.8, true),
            (0.7, false),
            (0.6, true),
            (0.3, false),
            (0.2, false),
        ];
        let curve = pr_curve(&s);
        assert_eq!(curve.len(), 6);
        // at 0.8: tp 2 fp 0 fn 1 -> p 1, r 2/3, f1 0.8; at 0.6: tp 3 fp 1 -> p .75 r 1 f1 .857
        assert_eq!(curve[1].threshold, 0.8);
        assert!((curve[1].f1 - 0.8).abs() < 1e-12);
        let best = best_f1_threshold(&s).unwrap();
        assert_eq!(best.threshold, 0.6);
        assert!((best.f1 - 6.0 / 7.0).abs() < 1e-12);
        let p = threshold_for_precision(&s, 0.95).unwrap();
        assert_eq!((p.threshold, p.precision), (0.8, 1.0));
        assert!(threshold_for_precision(&[(0.5, false), (0.4, true)], 0.95).is_none());
        assert!(best_f1_threshold(&[(0.5, false)]).is_none());
        // ties share one cut
        assert_eq!(pr_curve(&[(0.5, true), (0.5, false)]).len(), 1);
    }

    #[test]
    fn calibration_and_confusion() {
        // two bins: [0,0.5): scores 0.1, 0.3 with one positive -> |0.2 - 0.5| = 0.3, weight 0.5
        //           [0.5,1]: 0.9, 0.9 both positive -> |0.9 - 1| = 0.1, weight 0.5  => 0.2
        let ece =
            expected_calibration_error(&[(0.1, false), (0.3, true), (0.9, true), (0.9, true)], 2);
        assert!((ece - 0.2).abs() < 1e-6, "{ece}");
        assert_eq!(
            expected_calibration_error(&[(1.0, true), (0.0, false)], 10),
            0.0
        );
        assert_eq!(
            confusion(&[0, 0, 1, 2], &[0, 1, 1, 0], 3),
            vec![vec![1, 1, 0], vec![0, 1, 0], vec![1, 0, 0]]
        );
    }
}
