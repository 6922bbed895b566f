//! Inverted dropout, forward and backward: one mask, recomputed from the seed and the step in
//! each direction (see [`dropout_hash`]), never stored.

use rayon::prelude::*;

use super::PAR_MIN_LEN;
use crate::backend::{check, dropout_hash, Dropout};
use crate::Result;

/// `y[i] = x[i] · scale` where element i is kept at `step`, else 0. x, y: [len].
pub fn dropout_forward(p: &Dropout, step: u32, x: &[f32], y: &mut [f32]) -> Result<()> {
    masked("dropout_forward", p, step, x, y)
}

/// `dx[i] = dy[i] · scale` through the same mask as [`dropout_forward`] at `step`.
pub fn dropout_backward(p: &Dropout, step: u32, dy: &[f32], dx: &mut [f32]) -> Result<()> {
    masked("dropout_backward", p, step, dy, dx)
}

/// `dst[i] = src[i] · scale` where element i is kept at `step`, else 0: the forward pass on
/// x → y and the backward pass on dy → dx alike.
fn masked(op: &'static str, p: &Dropout, step: u32, src: &[f32], dst: &mut [f32]) -> Result<()> {
    check::dropout(op, p, 1, src.len(), dst.len())?;
    let (threshold, scale) = (p.threshold(), p.scale());
    let kernel = |(i, (d, &s)): (usize, (&mut f32, &f32))| {
        let keep = dropout_hash(p.seed, step, i as u32) >= threshold;
        *d = if keep { s * scale } else { 0.0 };
    };
    if p.len < PAR_MIN_LEN {
        dst.iter_mut().zip(src).enumerate().for_each(kernel);
    } else {
        dst.par_iter_mut().zip(src).enumerate().for_each(kernel);
    }
    Ok(())
}
