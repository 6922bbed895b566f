//! Per-channel bias and its gradient (the channel sum), and the f32 lane sum that channel sums
//! use.

use rayon::prelude::*;

use super::PAR_MIN_LEN;
use crate::backend::{check, Channels};
use crate::Result;

/// The sum of a slice in f32 with eight independent lanes (so it vectorises and its rounding
/// error grows with len/8 rather than len).
pub(crate) fn sum(x: &[f32]) -> f32 {
    let mut lanes = [0.0f32; 8];
    let chunks = x.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().sum();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += v;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `x[o, c, i] += bias[c]` for x of shape [outer, channels, inner], in place.
pub fn bias_add(p: &Channels, bias: &[f32], x: &mut [f32]) -> Result<()> {
    check::channels("bias_add", p, bias.len(), x.len())?;
    let kernel = |(r, row): (usize, &mut [f32])| {
        let b = bias[r % p.channels];
        row.iter_mut().for_each(|v| *v += b);
    };
    if p.len() < PAR_MIN_LEN {
        x.chunks_mut(p.inner).enumerate().for_each(kernel);
    } else {
        x.par_chunks_mut(p.inner).enumerate().for_each(kernel);
    }
    Ok(())
}

/// `out[c] = Σ_{o, i} x[o, c, i]` for x of shape [outer, channels, inner] (bias gradients).
/// Each [inner] row is summed in f32 lanes, the rows of a channel in f64.
pub fn channel_sum(p: &Channels, x: &[f32], out: &mut [f32]) -> Result<()> {
    check::channels("channel_sum", p, out.len(), x.len())?;
    let kernel = |(c, out): (usize, &mut f32)| {
        let total: f64 = (0..p.outer)
            .map(|o| sum(&x[(o * p.channels + c) * p.inner..][..p.inner]) as f64)
            .sum();
        *out = total as f32;
    };
    if p.len() < PAR_MIN_LEN {
        out.iter_mut().enumerate().for_each(kernel);
    } else {
        out.par_iter_mut().enumerate().for_each(kernel);
    }
    Ok(())
}
