//! 2-d pooling over N,C,H,W tensors: max and average, forward and backward, and max pooling
//! fused with the ReLU before it. No padding; the output size rounds down. Planes (one channel
//! of one image) are independent, so each op runs in parallel over them.
//!
//! The fused ops read the ReLU's input: each window value is `relu(v)` (`v` if `v > 0`, else
//! 0, as [`super::elementwise::relu_forward`] computes it) before the max is taken, and the
//! gradient passes only where that max is positive, as the ReLU's backward would let it.
//! Written with a `const RELU: bool`, so the plain ops pay nothing for it.

use rayon::prelude::*;

use crate::backend::{check, Pool2d};
use crate::Result;

/// The value a window sees: the ReLU's output when fused, else `v` itself.
#[inline(always)]
fn seen<const RELU: bool>(v: f32) -> f32 {
    if RELU {
        if v > 0.0 {
            v
        } else {
            0.0
        }
    } else {
        v
    }
}

/// (index within the plane, value) of the window's first maximum in row-major order: a strict
/// `>` while scanning, written as selects rather than branches (random data would mispredict).
#[inline]
fn window_argmax<const RELU: bool>(p: &Pool2d, x: &[f32], oh: usize, ow: usize) -> (usize, f32) {
    let (h0, w0) = (oh * p.stride, ow * p.stride);
    let mut best = h0 * p.in_w + w0;
    let mut max = seen::<RELU>(x[best]);
    for kh in 0..p.kernel {
        let start = (h0 + kh) * p.in_w + w0;
        for (i, &v) in (start..).zip(&x[start..start + p.kernel]) {
            let v = seen::<RELU>(v);
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
#[inline(always)]
fn first_max_2x2<const RELU: bool>(v: [f32; 4]) -> (u32, f32) {
    let (mut best, mut max) = (0u32, seen::<RELU>(v[0]));
    for (i, &v) in (1u32..).zip(&v[1..]) {
        let v = seen::<RELU>(v);
        let better = v > max;
        best = if better { i } else { best };
        max = if better { v } else { max };
    }
    (best, max)
}

/// maxpool2d_backward of one plane for 2×2 windows at stride 2. The windows do not overlap, so
/// each covered input element is written once, its window's dout or zero, with no clearing pass.
#[inline(never)]
fn maxpool_backward_plane_2x2<const RELU: bool>(
    p: &Pool2d,
    x: &[f32],
    dout: &[f32],
    dx: &mut [f32],
) {
    let ow_n = p.out_w();
    for (oh, dout) in dout.chunks_exact(ow_n).enumerate() {
        let (r0, r1) = rows_2x2(p, x, oh);
        let (d0, d1) = dx[2 * oh * p.in_w..].split_at_mut(p.in_w);
        d0[2 * ow_n..].fill(0.0); // a column past the last window (odd W)
        d1[2 * ow_n..p.in_w].fill(0.0);
        backward_windows_2x2::<RELU>(r0, r1, dout, &mut d0[..2 * ow_n], &mut d1[..2 * ow_n]);
    }
    dx[2 * p.out_h() * p.in_w..].fill(0.0); // a row past the last window (odd H)
}

/// The backward pass of one row of 2×2 windows: window j covers `r0[2j..2j + 2]` and
/// `r1[2j..2j + 2]`, and its `dout[j]` goes to the same places of `d0` and `d1` at the window's
/// first maximum, zero elsewhere. On x86-64, four windows at a time in SSE2 (which every x86-64
/// has): the data is random, and the scalar form compiles to branches that mispredict.
fn backward_windows_2x2<const RELU: bool>(
    r0: &[f32],
    r1: &[f32],
    dout: &[f32],
    d0: &mut [f32],
    d1: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    {
        let n = dout.len();
        let full = n / 4 * 4;
        for j in (0..full).step_by(4) {
            let (a, b) = (&r0[2 * j..2 * j + 8], &r1[2 * j..2 * j + 8]);
            let (ga, gb) = (&mut d0[2 * j..2 * j + 8], &mut d1[2 * j..2 * j + 8]);
            sse2::backward_4_windows::<RELU>(a, b, &dout[j..j + 4], ga, gb);
        }
        if full < n {
            // The last one to three windows, through zero-padded copies.
            let k = n - full;
            let (mut a, mut b, mut d) = ([0.0f32; 8], [0.0f32; 8], [0.0f32; 4]);
            let (mut ga, mut gb) = ([0.0f32; 8], [0.0f32; 8]);
            a[..2 * k].copy_from_slice(&r0[2 * full..]);
            b[..2 * k].copy_from_slice(&r1[2 * full..]);
            d[..k].copy_from_slice(&dout[full..]);
            sse2::backward_4_windows::<RELU>(&a, &b, &d, &mut ga, &mut gb);
            d0[2 * full..].copy_from_slice(&ga[..2 * k]);
            d1[2 * full..].copy_from_slice(&gb[..2 * k]);
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    backward_windows_2x2_scalar::<RELU>(r0, r1, dout, d0, d1);
}

/// [`backward_windows_2x2`] one window at a time, where there is no SSE2 (on x86-64 a unit test
/// checks that both forms agree bit for bit).
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
fn backward_windows_2x2_scalar<const RELU: bool>(
    r0: &[f32],
    r1: &[f32],
    dout: &[f32],
    d0: &mut [f32],
    d1: &mut [f32],
) {
    let windows = r0.chunks_exact(2).zip(r1.chunks_exact(2));
    let grads = d0.chunks_exact_mut(2).zip(d1.chunks_exact_mut(2));
    for (((a, b), (ga, gb)), &d) in windows.zip(grads).zip(dout) {
        let (best, max) = first_max_2x2::<RELU>([a[0], a[1], b[0], b[1]]);
        let d = if !RELU || max > 0.0 { d } else { 0.0 };
        ga[0] = if best == 0 { d } else { 0.0 };
        ga[1] = if best == 1 { d } else { 0.0 };
        gb[0] = if best == 2 { d } else { 0.0 };
        gb[1] = if best == 3 { d } else { 0.0 };
    }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use std::arch::x86_64::*;

    /// [`super::backward_windows_2x2`] of exactly four windows: `a`, `b`, `ga`, `gb` hold 8
    /// values, `dout` 4. The same strict-`>` scan as [`super::first_max_2x2`], as masks:
    /// `c_k` is "element k beats the maximum of the elements before it", so the first maximum
    /// is the last k whose `c_k` is set (element 0 when none is), NaNs never win a comparison
    /// and a NaN first element keeps the gradient.
    #[inline(always)]
    pub(super) fn backward_4_windows<const RELU: bool>(
        a: &[f32],
        b: &[f32],
        dout: &[f32],
        ga: &mut [f32],
        gb: &mut [f32],
    ) {
        assert!(a.len() == 8 && b.len() == 8 && dout.len() == 4 && ga.len() == 8 && gb.len() == 8);
        // SAFETY: SSE2 is part of the x86-64 baseline; every unaligned load and store reads or
        // writes 4 floats inside a slice whose length was asserted above.
        unsafe {
            let (a_lo, a_hi) = (_mm_loadu_ps(a.as_ptr()), _mm_loadu_ps(a.as_ptr().add(4)));
            let (b_lo, b_hi) = (_mm_loadu_ps(b.as_ptr()), _mm_loadu_ps(b.as_ptr().add(4)));
            // The four windows' elements 0 and 1 (top row) and 2 and 3 (bottom row).
            let mut e0 = _mm_shuffle_ps::<0b10_00_10_00>(a_lo, a_hi);
            let mut e1 = _mm_shuffle_ps::<0b11_01_11_01>(a_lo, a_hi);
            let mut e2 = _mm_shuffle_ps::<0b10_00_10_00>(b_lo, b_hi);
            let mut e3 = _mm_shuffle_ps::<0b11_01_11_01>(b_lo, b_hi);
            let zero = _mm_setzero_ps();
            if RELU {
                // relu(v) = v where v > 0, else +0 (NaN included).
                let relu = |v| _mm_and_ps(v, _mm_cmpgt_ps(v, zero));
                (e0, e1, e2, e3) = (relu(e0), relu(e1), relu(e2), relu(e3));
            }
            let select = |c, x, y| _mm_or_ps(_mm_and_ps(c, x), _mm_andnot_ps(c, y));
            let c1 = _mm_cmpgt_ps(e1, e0);
            let max = select(c1, e1, e0);
            let c2 = _mm_cmpgt_ps(e2, max);
            let max = select(c2, e2, max);
            let c3 = _mm_cmpgt_ps(e3, max);
            let max = select(c3, e3, max);
            let mut d = _mm_loadu_ps(dout.as_ptr());
            if RELU {
                // A window whose ReLU'd maximum is 0 passes no gradient.
                d = _mm_and_ps(d, _mm_cmpgt_ps(max, zero));
            }
            let g3 = _mm_and_ps(c3, d);
            let d = _mm_andnot_ps(c3, d);
            let g2 = _mm_and_ps(c2, d);
            let d = _mm_andnot_ps(c2, d);
            let g1 = _mm_and_ps(c1, d);
            let g0 = _mm_andnot_ps(c1, d);
            _mm_storeu_ps(ga.as_mut_ptr(), _mm_unpacklo_ps(g0, g1));
            _mm_storeu_ps(ga.as_mut_ptr().add(4), _mm_unpackhi_ps(g0, g1));
            _mm_storeu_ps(gb.as_mut_ptr(), _mm_unpacklo_ps(g2, g3));
            _mm_storeu_ps(gb.as_mut_ptr().add(4), _mm_unpackhi_ps(g2, g3));
        }
    }
}

/// `out[n, c, oh, ow] = max_{kh, kw} x[n, c, oh·s + kh, ow·s + kw]` (of `relu(x)` when fused),
/// after checking the lengths for `op`.
fn maxpool_forward<const RELU: bool>(
    op: &'static str,
    p: &Pool2d,
    x: &[f32],
    out: &mut [f32],
) -> Result<()> {
    check::pool2d(op, p, x.len(), out.len())?;
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
                        *o = first_max_2x2::<RELU>([a[0], a[1], b[0], b[1]]).1;
                    }
                    continue;
                }
                for (ow, o) in out.iter_mut().enumerate() {
                    *o = window_argmax::<RELU>(p, x, oh, ow).1;
                }
            }
        });
    Ok(())
}

/// Each dout element to its window's arg-max (of `relu(x)` when fused, and then only where
/// that max is positive), after checking the lengths for `op`.
fn maxpool_backward<const RELU: bool>(
    op: &'static str,
    p: &Pool2d,
    x: &[f32],
    dout: &[f32],
    dx: &mut [f32],
) -> Result<()> {
    check::pool2d(op, p, x.len(), dout.len())?;
    check::pool2d(op, p, dx.len(), dout.len())?;
    let (plane_in, ow_n) = (p.in_h * p.in_w, p.out_w());
    dx.par_chunks_mut(plane_in)
        .zip(
            x.par_chunks(plane_in)
                .zip(dout.par_chunks(p.out_h() * ow_n)),
        )
        .for_each(|(dx, (x, dout))| {
            if p.kernel == 2 && p.stride == 2 {
                return maxpool_backward_plane_2x2::<RELU>(p, x, dout, dx);
            }
            dx.fill(0.0);
            for (oh, dout) in dout.chunks_exact(ow_n).enumerate() {
                for (ow, &d) in dout.iter().enumerate() {
                    let (best, max) = window_argmax::<RELU>(p, x, oh, ow);
                    if !RELU || max > 0.0 {
                        dx[best] += d;
                    }
                }
            }
        });
    Ok(())
}

/// `out[n, c, oh, ow] = max_{kh, kw} x[n, c, oh·s + kh, ow·s + kw]`.
/// x: [N, C, H, W], out: [N, C, OH, OW].
pub fn maxpool2d_forward(p: &Pool2d, x: &[f32], out: &mut [f32]) -> Result<()> {
    maxpool_forward::<false>("maxpool2d_forward", p, x, out)
}

/// `dx = Σ_windows dout[n, c, oh, ow] · [position is the window's first maximum in x]`: each
/// dout element goes to its window's arg-max (the first in row-major order on ties, as PyTorch);
/// overlapping windows add up. x, dx: [N, C, H, W], dout: [N, C, OH, OW].
pub fn maxpool2d_backward(p: &Pool2d, x: &[f32], dout: &[f32], dx: &mut [f32]) -> Result<()> {
    maxpool_backward::<false>("maxpool2d_backward", p, x, dout, dx)
}

/// `out = maxpool2d(relu(x))`, without writing relu(x). x: [N, C, H, W] (the ReLU's input),
/// out: [N, C, OH, OW].
pub fn relu_maxpool2d_forward(p: &Pool2d, x: &[f32], out: &mut [f32]) -> Result<()> {
    maxpool_forward::<true>("relu_maxpool2d_forward", p, x, out)
}

/// The gradient of [`relu_maxpool2d_forward`] with respect to its input x (the ReLU's input):
/// `relu_backward(relu(x), maxpool2d_backward(relu(x), dout))`, in one pass.
/// x, dx: [N, C, H, W], dout: [N, C, OH, OW].
pub fn relu_maxpool2d_backward(p: &Pool2d, x: &[f32], dout: &[f32], dx: &mut [f32]) -> Result<()> {
    maxpool_backward::<true>("relu_maxpool2d_backward", p, x, dout, dx)
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

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    /// The SSE2 form and the portable one give the same bits for rows of 1 to 9 windows (the
    /// zero-padded tail included) and a long random row, fused or not: windows that are all
    /// negative, all zero, tied, led by a NaN or holding one later, and mixed.
    #[test]
    fn sse2_and_scalar_backward_agree() {
        #[rustfmt::skip]
        let special: [[f32; 4]; 9] = [
            [-1.0, -2.0, -0.5, -3.0],      // all negative: no gradient when fused
            [0.0, 0.0, 0.0, 0.0],          // a tie at zero
            [f32::NAN, 1.0, 2.0, 0.5],     // a NaN first
            [1.0, f32::NAN, 3.0, 3.0],     // a NaN later, then a tie
            [2.0, 2.0, 1.0, 2.0],          // a tie at the first
            [-0.0, 0.0, -1.0, -0.0],       // signed zeros
            [0.5, 1.5, -2.0, 1.5],
            [-4.0, 0.0, 0.25, -0.25],
            [3.0, -3.0, 7.0, 6.5],
        ];
        let mut seed = 12345u32;
        let mut random = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            [f32::NAN, -1.0, 0.0, 0.0, 1.0, 2.0, -0.5, 2.0][(seed >> 29) as usize]
        };
        let long: Vec<[f32; 4]> = (0..203)
            .map(|_| [random(), random(), random(), random()])
            .collect();
        let rows: Vec<&[[f32; 4]]> = (1..=9).map(|n| &special[..n]).chain([&long[..]]).collect();
        for windows in rows {
            let n = windows.len();
            let r0: Vec<f32> = windows.iter().flat_map(|w| [w[0], w[1]]).collect();
            let r1: Vec<f32> = windows.iter().flat_map(|w| [w[2], w[3]]).collect();
            let dout: Vec<f32> = (0..n).map(|j| j as f32 + 0.5).collect();
            for relu in [false, true] {
                let run = |simd: bool| {
                    let (mut d0, mut d1) = (vec![9.0; 2 * n], vec![9.0; 2 * n]);
                    match (simd, relu) {
                        (true, false) => {
                            backward_windows_2x2::<false>(&r0, &r1, &dout, &mut d0, &mut d1)
                        }
                        (true, true) => {
                            backward_windows_2x2::<true>(&r0, &r1, &dout, &mut d0, &mut d1)
                        }
                        (false, false) => {
                            backward_windows_2x2_scalar::<false>(&r0, &r1, &dout, &mut d0, &mut d1)
                        }
                        (false, true) => {
                            backward_windows_2x2_scalar::<true>(&r0, &r1, &dout, &mut d0, &mut d1)
                        }
                    }
                    let bits: Vec<u32> = d0.iter().chain(&d1).map(|v| v.to_bits()).collect();
                    bits
                };
                assert_eq!(run(true), run(false), "{n} windows, relu {relu}");
            }
        }
    }
}
