//! 2-d pooling over N,C,H,W tensors: max and average, forward and backward. No padding; the
//! output size rounds down. Planes (one channel of one image) are independent, so each op runs
//! in parallel over them.

use rayon::prelude::*;

use crate::backend::{check, Pool2d};
use crate::Result;

/// (index within the plane, value) of the window's first maximum in row-major order: a strict
/// `>` while scanning, written as selects rather than branches (random data would mispredict).
#[inline]
fn window_argmax(p: &Pool2d, x: &[f32], oh: usize, ow: usize) -> (usize, f32) {
    let (h0, w0) = (oh * p.stride, ow * p.stride);
    let mut best = h0 * p.in_w + w0;
    let mut max = x[best];
    for kh in 0..p.kernel {
        let start = (h0 + kh) * p.in_w + w0;
        for (i, &v) in (start..).zip(&x[start..start + p.kernel]) {
            let better = v > max;
            best = if better { i } else { best };
            max = if better { v } else { max };
        }
    }
    (best, max)
}

/// The two input rows under output row `oh` of a 2×2, stride-2 pooling, cut to 2·OW columns.
#[inline]
fn rows_2x2<'a>(p: &Pool2d, x: &'a [f32], oh: usize) -> (&'a [f32], &'a [f32]) {
    let cols = 2 * p.out_w();
    (
        &x[2 * oh * p.in_w..][..cols],
        &x[(2 * oh + 1) * p.in_w..][..cols],
    )
}

/// [`window_argmax`] of one 2×2 window given in row-major order: (position 0..4, value).
#[inline]
fn first_max_2x2(v: [f32; 4]) -> (usize, f32) {
    let (mut best, mut max) = (0, v[0]);
    for (i, &v) in v.iter().enumerate().skip(1) {
        let better = v > max;
        best = if better { i } else { best };
        max = if better { v } else { max };
    }
    (best, max)
}

/// maxpool2d_backward of one plane for 2×2 windows at stride 2. The windows do not overlap, so
/// each covered input element is written once, its window's dout or zero, with no clearing pass.
/// The arg-max is found without branches: the first element equal to the window's maximum
/// (the first element when that is a NaN, as the strict-`>` scan of [`window_argmax`] gives).
#[inline(never)]
fn maxpool_backward_plane_2x2(p: &Pool2d, x: &[f32], dout: &[f32], dx: &mut [f32]) {
    let ow_n = p.out_w();
    for (oh, dout) in dout.chunks_exact(ow_n).enumerate() {
        let (r0, r1) = rows_2x2(p, x, oh);
        let (d0, d1) = dx[2 * oh * p.in_w..].split_at_mut(p.in_w);
        d0[2 * ow_n..].fill(0.0); // a column past the last window (odd W)
        d1[2 * ow_n..p.in_w].fill(0.0);
        let (d0, d1) = (&mut d0[..2 * ow_n], &mut d1[..2 * ow_n]);
        let windows = r0.chunks_exact(2).zip(r1.chunks_exact(2));
        let grads = d0.chunks_exact_mut(2).zip(d1.chunks_exact_mut(2));
        for (((a, b), (ga, gb)), &d) in windows.zip(grads).zip(dout) {
            let max = first_max_2x2([a[0], a[1], b[0], b[1]]).1;
            // 0/1 flags combined as integers: LLVM turns `if cond { d } else { 0.0 }` on float
            // compares into branches, which data like relu outputs mispredict.
            let g0 = u32::from((a[0] >= max) | a[0].is_nan());
            let g1 = u32::from(a[1] == max) & !g0 & 1;
            let g2 = u32::from(b[0] == max) & !(g0 | g1) & 1;
            let g3 = !(g0 | g1 | g2) & 1;
            let pick = |g: u32| f32::from_bits(d.to_bits() & g.wrapping_neg());
            ga[0] = pick(g0);
            ga[1] = pick(g1);
            gb[0] = pick(g2);
            gb[1] = pick(g3);
        }
    }
    dx[2 * p.out_h() * p.in_w..].fill(0.0); // a row past the last window (odd H)
}

/// `out[n, c, oh, ow] = max_{kh, kw} x[n, c, oh·s + kh, ow·s + kw]`.
/// x: [N, C, H, W], out: [N, C, OH, OW].
pub fn maxpool2d_forward(p: &Pool2d, x: &[f32], out: &mut [f32]) -> Result<()> {
    check::pool2d("maxpool2d_forward", p, x.len(), out.len())?;
    let (plane_in, ow_n) = (p.in_h * p.in_w, p.out_w());
    out.par_chunks_mut(p.out_h() * ow_n)
        .zip(x.par_chunks(plane_in))
        .for_each(|(out, x)| {
            for (oh, out) in out.chunks_exact_mut(ow_n).enumerate() {
                if p.kernel == 2 && p.stride == 2 {
                    let (r0, r1) = rows_2x2(p, x, oh);
                    for ((o, a), b) in out
                        .iter_mut()
                        .zip(r0.chunks_exact(2))
                        .zip(r1.chunks_exact(2))
                    {
                        *o = first_max_2x2([a[0], a[1], b[0], b[1]]).1;
                    }
                    continue;
                }
                for (ow, o) in out.iter_mut().enumerate() {
                    *o = window_argmax(p, x, oh, ow).1;
                }
            }
        });
    Ok(())
}

/// `dx = Σ_windows dout[n, c, oh, ow] · [position is the window's first maximum in x]`: each
/// dout element goes to its window's arg-max (the first in row-major order on ties, as PyTorch);
/// overlapping windows add up. x, dx: [N, C, H, W], dout: [N, C, OH, OW].
pub fn maxpool2d_backward(p: &Pool2d, x: &[f32], dout: &[f32], dx: &mut [f32]) -> Result<()> {
    check::pool2d("maxpool2d_backward", p, x.len(), dout.len())?;
    check::pool2d("maxpool2d_backward", p, dx.len(), dout.len())?;
    let (plane_in, ow_n) = (p.in_h * p.in_w, p.out_w());
    dx.par_chunks_mut(plane_in)
        .zip(
            x.par_chunks(plane_in)
                .zip(dout.par_chunks(p.out_h() * ow_n)),
        )
        .for_each(|(dx, (x, dout))| {
            if p.kernel == 2 && p.stride == 2 {
                return maxpool_backward_plane_2x2(p, x, dout, dx);
            }
            dx.fill(0.0);
            for (oh, dout) in dout.chunks_exact(ow_n).enumerate() {
                for (ow, &d) in dout.iter().enumerate() {
                    dx[window_argmax(p, x, oh, ow).0] += d;
                }
            }
        });
    Ok(())
}

/// `out[n, c, oh, ow] = (Σ_{kh, kw} x[n, c, oh·s + kh, ow·s + kw]) / kernel²`.
/// x: [N, C, H, W], out: [N, C, OH, OW].
pub fn avgpool2d_forward(p: &Pool2d, x: &[f32], out: &mut [f32]) -> Result<()> {
    check::pool2d("avgpool2d_forward", p, x.len(), out.len())?;
    let (plane_in, ow_n) = (p.in_h * p.in_w, p.out_w());
    let count = (p.kernel * p.kernel) as f32;
    out.par_chunks_mut(p.out_h() * ow_n)
        .zip(x.par_chunks(plane_in))
        .for_each(|(out, x)| {
            for (i, o) in out.iter_mut().enumerate() {
                let (h0, w0) = ((i / ow_n) * p.stride, (i % ow_n) * p.stride);
                let mut total = 0.0f32;
                for kh in 0..p.kernel {
                    total += x[(h0 + kh) * p.in_w + w0..][..p.kernel].iter().sum::<f32>();
                }
                *o = total / count;
            }
        });
    Ok(())
}

/// `dx[n, c, h, w] = Σ_{windows containing (h, w)} dout[n, c, oh, ow] / kernel²`: each dout
/// element spread evenly over its window; overlapping windows add up.
/// dout: [N, C, OH, OW], dx: [N, C, H, W].
pub fn avgpool2d_backward(p: &Pool2d, dout: &[f32], dx: &mut [f32]) -> Result<()> {
    check::pool2d("avgpool2d_backward", p, dx.len(), dout.len())?;
    let (plane_in, ow_n) = (p.in_h * p.in_w, p.out_w());
    let count = (p.kernel * p.kernel) as f32;
    dx.par_chunks_mut(plane_in)
        .zip(dout.par_chunks(p.out_h() * ow_n))
        .for_each(|(dx, dout)| {
            dx.fill(0.0);
            for (i, &d) in dout.iter().enumerate() {
                let (h0, w0) = ((i / ow_n) * p.stride, (i % ow_n) * p.stride);
                let share = d / count;
                for kh in 0..p.kernel {
                    dx[(h0 + kh) * p.in_w + w0..][..p.kernel]
                        .iter_mut()
                        .for_each(|v| *v += share);
                }
            }
        });
    Ok(())
}
