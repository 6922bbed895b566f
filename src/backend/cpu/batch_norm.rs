//! Batch normalisation, forward and backward. Per-channel sums are taken in f64.

use rayon::prelude::*;

use super::bias::sum;
use super::PAR_MIN_LEN;
use crate::backend::{check, BatchNorm};
use crate::Result;

/// Σ over the [inner] rows of channel `c` (of a tensor seen as [outer, channels, inner]) of
/// `f(row offset)`: each row's value is taken in f32 (so it vectorises), the rows add in f64.
fn over_rows(p: &BatchNorm, c: usize, f: impl Fn(usize) -> f32) -> f64 {
    let s = p.shape;
    (0..s.outer)
        .map(|o| f((o * s.channels + c) * s.inner) as f64)
        .sum()
}

/// Writes `stats = [mean; biased var]` and updates `running` (see the trait).
pub fn batch_norm_stats(
    p: &BatchNorm,
    x: &[f32],
    stats: &mut [f32],
    running: &mut [f32],
) -> Result<()> {
    check::batch_norm_stats(p, x.len(), stats.len(), running.len())?;
    let (c_n, m) = (p.shape.channels, p.per_channel() as f64);
    let per: Vec<(f64, f64)> = (0..c_n)
        .into_par_iter()
        .map(|c| {
            let row = |at: usize| &x[at..at + p.shape.inner];
            let mean = over_rows(p, c, |at| sum(row(at))) / m;
            let m32 = mean as f32;
            let var = over_rows(p, c, |at| {
                row(at).iter().map(|&v| (v - m32) * (v - m32)).sum()
            }) / m;
            (mean, var)
        })
        .collect();
    let mom = p.momentum;
    for (c, &(mean, var)) in per.iter().enumerate() {
        stats[c] = mean as f32;
        stats[c_n + c] = var as f32;
        let unbiased = (var * m / (m - 1.0)) as f32;
        running[c] = (1.0 - mom) * running[c] + mom * mean as f32;
        running[c_n + c] = (1.0 - mom) * running[c_n + c] + mom * unbiased;
    }
    Ok(())
}

/// (mean, 1/√(var + eps)) of channel c.
fn mean_invstd(p: &BatchNorm, stats: &[f32], c: usize) -> (f32, f32) {
    let var = stats[p.shape.channels + c];
    (stats[c], 1.0 / (var + p.eps).sqrt())
}

/// Calls `f(c, row_offset)` for every [inner] row of every channel, in parallel for large
/// tensors.
fn rows(p: &BatchNorm, dst: &mut [f32], f: impl Fn(usize, usize, &mut [f32]) + Sync) {
    let s = p.shape;
    let kernel = |(r, row): (usize, &mut [f32])| f(r % s.channels, r * s.inner, row);
    if s.len() < PAR_MIN_LEN {
        dst.chunks_mut(s.inner).enumerate().for_each(kernel);
    } else {
        dst.par_chunks_mut(s.inner).enumerate().for_each(kernel);
    }
}

pub fn batch_norm_forward(
    p: &BatchNorm,
    x: &[f32],
    stats: &[f32],
    weight: &[f32],
    bias: &[f32],
    y: &mut [f32],
) -> Result<()> {
    check::batch_norm(
        "batch_norm_forward",
        p,
        &[x.len(), y.len()],
        &[stats.len()],
        &[weight.len(), bias.len()],
    )?;
    rows(p, y, |c, at, row| {
        let (mean, invstd) = mean_invstd(p, stats, c);
        for (y, &x) in row.iter_mut().zip(&x[at..]) {
            *y = (x - mean) * invstd * weight[c] + bias[c];
        }
    });
    Ok(())
}

pub fn batch_norm_backward_params(
    p: &BatchNorm,
    x: &[f32],
    dy: &[f32],
    stats: &[f32],
    dweight: &mut [f32],
    dbias: &mut [f32],
) -> Result<()> {
    check::batch_norm(
        "batch_norm_backward_params",
        p,
        &[x.len(), dy.len()],
        &[stats.len()],
        &[dweight.len(), dbias.len()],
    )?;
    let sums: Vec<(f64, f64)> = (0..p.shape.channels)
        .into_par_iter()
        .map(|c| {
            let (mean, invstd) = mean_invstd(p, stats, c);
            let inner = p.shape.inner;
            let sw = over_rows(p, c, |at| {
                let xs = x[at..at + inner].iter();
                xs.zip(&dy[at..at + inner])
                    .map(|(&x, &d)| d * (x - mean) * invstd)
                    .sum()
            });
            (sw, over_rows(p, c, |at| sum(&dy[at..at + inner])))
        })
        .collect();
    for (c, (sw, sb)) in sums.into_iter().enumerate() {
        dweight[c] = sw as f32;
        dbias[c] = sb as f32;
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward_input(
    p: &BatchNorm,
    x: &[f32],
    dy: &[f32],
    stats: &[f32],
    weight: &[f32],
    dweight: &[f32],
    dbias: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    check::batch_norm(
        "batch_norm_backward_input",
        p,
        &[x.len(), dy.len(), dx.len()],
        &[stats.len()],
        &[weight.len(), dweight.len(), dbias.len()],
    )?;
    let m = p.per_channel() as f32;
    rows(p, dx, |c, at, row| {
        let (mean, invstd) = mean_invstd(p, stats, c);
        let (gw, gb) = (dweight[c] / m, dbias[c] / m);
        for ((dx, &x), &dy) in row.iter_mut().zip(&x[at..]).zip(&dy[at..]) {
            let xhat = (x - mean) * invstd;
            *dx = weight[c] * invstd * (dy - gb - xhat * gw);
        }
    });
    Ok(())
}
