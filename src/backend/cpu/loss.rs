//! Softmax cross-entropy (loss and its gradient) and the accuracy counter.

use crate::backend::{check, expect_len, SoftmaxXent};
use crate::{Error, Result};

/// The shared checks, then one the GPU cannot afford: every label names a class.
fn check_labels(op: &'static str, p: &SoftmaxXent, logits: &[f32], labels: &[u32]) -> Result<()> {
    check::softmax_xent(op, p, logits.len(), labels.len())?;
    match labels
        .iter()
        .enumerate()
        .find(|&(_, &l)| l as usize >= p.classes)
    {
        Some((i, &l)) => Err(Error::shape(
            op,
            format!("labels[{i}] = {l} is not below classes = {}", p.classes),
        )),
        None => Ok(()),
    }
}

/// Softmax + cross-entropy averaged over the batch, as `nn.CrossEntropyLoss`:
/// `loss_sum[0] += mean_i (logsumexp(logits[i]) − logits[i, labels[i]])` (accumulated) and
/// `dlogits[i, j] = (softmax(logits[i])_j − [j == labels[i]]) / batch` (overwritten).
/// Each row is shifted by its maximum before exponentiating, and sums are kept in f64, so large
/// logits neither overflow nor lose the loss to cancellation.
/// logits: [batch, classes], labels: [batch] (each < classes), loss_sum: [1], dlogits: like logits.
pub fn softmax_cross_entropy(
    p: &SoftmaxXent,
    logits: &[f32],
    labels: &[u32],
    loss_sum: &mut [f32],
    dlogits: &mut [f32],
) -> Result<()> {
    const OP: &str = "softmax_cross_entropy";
    check_labels(OP, p, logits, labels)?;
    expect_len(OP, "loss_sum", loss_sum.len(), 1)?;
    expect_len(OP, "dlogits", dlogits.len(), p.batch * p.classes)?;
    let inv_batch = 1.0 / p.batch as f64;
    let mut total = 0.0f64;
    for ((row, drow), &label) in logits
        .chunks_exact(p.classes)
        .zip(dlogits.chunks_exact_mut(p.classes))
        .zip(labels)
    {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let sum_exp: f64 = row.iter().map(|&z| (z as f64 - max).exp()).sum();
        let log_sum_exp = max + sum_exp.ln();
        total += log_sum_exp - row[label as usize] as f64;
        for (j, (d, &z)) in drow.iter_mut().zip(row).enumerate() {
            let softmax = (z as f64 - log_sum_exp).exp();
            let target = if j == label as usize { 1.0 } else { 0.0 };
            *d = ((softmax - target) * inv_batch) as f32;
        }
    }
    loss_sum[0] += (total * inv_batch) as f32;
    Ok(())
}

/// `correct[0] += #{i : argmax_j logits[i, j] == labels[i]}`, scanning each row with a strict
/// `>` so that the first maximum wins ties. logits: [batch, classes], labels: [batch], correct: [1] (accumulated).
pub fn count_correct(
    p: &SoftmaxXent,
    logits: &[f32],
    labels: &[u32],
    correct: &mut [u32],
) -> Result<()> {
    const OP: &str = "count_correct";
    check_labels(OP, p, logits, labels)?;
    expect_len(OP, "correct", correct.len(), 1)?;
    let mut hits = 0u32;
    for (row, &label) in logits.chunks_exact(p.classes).zip(labels) {
        let mut best = 0;
        for (j, &z) in row.iter().enumerate().skip(1) {
            if z > row[best] {
                best = j;
            }
        }
        hits += u32::from(best == label as usize);
    }
    correct[0] = correct[0].wrapping_add(hits);
    Ok(())
}
