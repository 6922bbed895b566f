//! The optimisers (SGD with momentum, Nesterov and weight decay; Adam and AdamW), the
//! gradients' sum of squares for clipping by global norm, and the non-finite-loss record.

use rayon::prelude::*;

use super::PAR_MIN_LEN;
use crate::backend::{check, clip_scale, Adam, Sgd, StepScalars};
use crate::Result;

/// Elements per rayon task: short tensors run as one task.
const MIN_CHUNK: usize = PAR_MIN_LEN / 4;

/// PyTorch's SGD (see [`Sgd`]). param, grad, velocity: [len]; scalars: [StepScalars::LEN].
pub fn sgd_step(
    p: &Sgd,
    scalars: &[f32],
    param: &mut [f32],
    grad: &[f32],
    velocity: &mut [f32],
) -> Result<()> {
    check::sgd(p, scalars.len(), param.len(), grad.len(), velocity.len())?;
    let lr = scalars[0];
    let scale = clip_scale(p.max_norm, scalars[StepScalars::GRAD_SQ_SUM]);
    let (mu, wd, nesterov) = (p.momentum, p.weight_decay, p.nesterov);
    let update = |((param, v), &g): ((&mut f32, &mut f32), &f32)| {
        let d = g * scale + wd * *param;
        *v = mu * *v + d;
        let step = if nesterov { d + mu * *v } else { *v };
        *param -= lr * step;
    };
    param
        .par_iter_mut()
        .zip(velocity.par_iter_mut())
        .zip(grad.par_iter())
        .with_min_len(MIN_CHUNK)
        .for_each(update);
    Ok(())
}

/// PyTorch's Adam / AdamW (see [`Adam`]). param, grad, m, v: [len]; scalars:
/// [StepScalars::LEN].
pub fn adam_step(
    p: &Adam,
    scalars: &[f32],
    param: &mut [f32],
    grad: &[f32],
    m: &mut [f32],
    v: &mut [f32],
) -> Result<()> {
    check::adam(p, scalars.len(), param.len(), grad.len(), m.len(), v.len())?;
    let (lr, step_size, bc2_sqrt) = (scalars[0], scalars[1], scalars[2]);
    let scale = clip_scale(p.max_norm, scalars[StepScalars::GRAD_SQ_SUM]);
    let (w1, b2, w2) = p.factors();
    let (eps, wd, decoupled) = (p.eps, p.weight_decay, p.decoupled);
    let update = |(((param, m), v), &g): (((&mut f32, &mut f32), &mut f32), &f32)| {
        let mut g = g * scale;
        if decoupled {
            *param *= 1.0 - lr * wd;
        } else {
            g += wd * *param;
        }
        *m += w1 * (g - *m);
        *v = b2 * *v + w2 * g * g;
        let denom = v.sqrt() / bc2_sqrt + eps;
        *param += -step_size * (*m / denom);
    };
    param
        .par_iter_mut()
        .zip(m.par_iter_mut())
        .zip(v.par_iter_mut())
        .zip(grad.par_iter())
        .with_min_len(MIN_CHUNK)
        .for_each(update);
    Ok(())
}

/// `scalars[GRAD_SQ_SUM] += Σ x²` (summed in f64).
pub fn sum_squares(len: usize, x: &[f32], scalars: &mut [f32]) -> Result<()> {
    check::sum_squares(len, x.len(), scalars.len())?;
    let sum: f64 = x
        .par_iter()
        .with_min_len(MIN_CHUNK)
        .map(|&v| (v as f64) * (v as f64))
        .sum();
    scalars[StepScalars::GRAD_SQ_SUM] += sum as f32;
    Ok(())
}

/// Keeps the first step whose loss was not finite (see
/// [`crate::backend::Backend::record_nonfinite`]). record holds `u32` bits.
pub fn record_nonfinite(loss_sum: &[f32], scalars: &[f32], record: &mut [u32]) -> Result<()> {
    check::record_nonfinite(loss_sum.len(), scalars.len(), record.len())?;
    if record[0] == 0 && !loss_sum[0].is_finite() {
        record[0] = scalars[StepScalars::STEP].to_bits();
    }
    Ok(())
}
