//! 2-d pooling over N,C,H,W tensors: max and average, forward and backward. No padding; the
//! output size rounds down. Planes (one channel of one image) are independent, so each op runs
//! in parallel over them.

use rayon::prelude::*;

use crate::backend::{check, Pool2d};
use crate::Result;

/// Index within the plane of the window's first maximum in row-major order (strict `>`).
fn window_argmax(p: &Pool2d, x: &[f32], oh: usize, ow: usize) -> usize {
    let (h0, w0) = (oh * p.stride, ow * p.stride);
    let mut best = h0 * p.in_w + w0;
    for kh in 0..p.kernel {
        let row = (h0 + kh) * p.in_w;
        for kw in 0..p.kernel {
            if x[row + w0 + kw] > x[best] {
                best = row + w0 + kw;
            }
        }
    }
    best
}

/// `out[n, c, oh, ow] = max_{kh, kw} x[n, c, oh·s + kh, ow·s + kw]`.
/// x: [N, C, H, W], out: [N, C, OH, OW].
pub fn maxpool2d_forward(p: &Pool2d, x: &[f32], out: &mut [f32]) -> Result<()> {
    check::pool2d("maxpool2d_forward", p, x.len(), out.len())?;
    let (plane_in, ow_n) = (p.in_h * p.in_w, p.out_w());
    out.par_chunks_mut(p.out_h() * ow_n)
        .zip(x.par_chunks(plane_in))
        .for_each(|(out, x)| {
            for (i, o) in out.iter_mut().enumerate() {
                *o = x[window_argmax(p, x, i / ow_n, i % ow_n)];
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
            dx.fill(0.0);
            for (i, &d) in dout.iter().enumerate() {
                dx[window_argmax(p, x, i / ow_n, i % ow_n)] += d;
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
