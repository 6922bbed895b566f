//! 2-d convolution, forward and backward, through im2col and GEMM.
//!
//! For one image, `col[K, P]` with K = Cin·KH·KW and P = OH·OW holds
//! `col[(ci·KH + kh)·KW + kw, oh·OW + ow] = x[ci, oh·s − pad + kh, ow·s − pad + kw]` (zero outside
//! the input), so that
//! - forward:         `out[Cout, P] = bias + w[Cout, K] · col[K, P]`,
//! - backward-input:  `dcol[K, P] = wᵀ[K, Cout] · dout[Cout, P]`, then `dx = col2im(dcol)`,
//! - backward-weight: `dw[Cout, K] = Σ_n dout_n[Cout, P] · col_nᵀ[P, K]`.
//!
//! Images run in parallel, each GEMM on one thread. A 1×1 kernel with stride 1 and no padding
//! needs no im2col: the image itself is `col`. The column buffers are per-thread scratch,
//! reused across calls.

use std::cell::RefCell;

use gemm::Parallelism;
use rayon::prelude::*;

use super::bias::channel_sum;
use super::matmul::{gemm, MatRef};
use crate::backend::{check, Channels, Conv2d};
use crate::Result;

thread_local! {
    /// Per-thread im2col scratch, so the hot path allocates only on first use.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// Runs `f` with a scratch slice of `len` words (contents unspecified). The buffer is taken out
/// of the thread-local while `f` runs, so a nested call (should rayon run another job on this
/// thread) gets a fresh one instead of a borrow panic.
fn with_scratch<T>(len: usize, f: impl FnOnce(&mut [f32]) -> T) -> T {
    let mut buf = SCRATCH.with(|s| std::mem::take(&mut *s.borrow_mut()));
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    let result = f(&mut buf[..len]);
    SCRATCH.with(|s| *s.borrow_mut() = buf);
    result
}

/// Rows of im2col: K = Cin·KH·KW.
fn col_rows(p: &Conv2d) -> usize {
    p.in_channels * p.kernel_h * p.kernel_w
}

/// Whether the image is its own im2col matrix (1×1 kernel, stride 1, no padding).
fn is_pointwise(p: &Conv2d) -> bool {
    p.kernel_h == 1 && p.kernel_w == 1 && p.stride == 1 && p.padding == 0
}

/// The output columns `ow` whose input column `ow·s + kw − pad` lies inside [0, W).
fn valid_cols(p: &Conv2d, kw: usize) -> (usize, usize) {
    let (s, pad) = (p.stride, p.padding);
    let lo = if pad > kw { (pad - kw).div_ceil(s) } else { 0 };
    let hi = if p.in_w + pad > kw {
        (p.in_w + pad - kw).div_ceil(s)
    } else {
        0
    };
    let hi = hi.min(p.out_w());
    (lo.min(hi), hi)
}

/// The input row `oh·s + kh − pad`, if inside [0, H).
fn input_row(p: &Conv2d, oh: usize, kh: usize) -> Option<usize> {
    (oh * p.stride + kh)
        .checked_sub(p.padding)
        .filter(|&ih| ih < p.in_h)
}

/// `col[(ci·KH + kh)·KW + kw, oh·OW + ow] = x[ci, oh·s − pad + kh, ow·s − pad + kw]`, zero
/// outside the input. x: one image [Cin, H, W], col: [K, OH·OW].
fn im2col(p: &Conv2d, x: &[f32], col: &mut [f32]) {
    let (oh_n, ow_n) = (p.out_h(), p.out_w());
    let mut rows = col.chunks_exact_mut(oh_n * ow_n);
    for ci in 0..p.in_channels {
        let plane = &x[ci * p.in_h * p.in_w..][..p.in_h * p.in_w];
        for kh in 0..p.kernel_h {
            for kw in 0..p.kernel_w {
                let row = rows.next().expect("col has K rows");
                if is_same_width(p) {
                    im2col_row_same_width(p, plane, kh, kw, row);
                    continue;
                }
                let (lo, hi) = valid_cols(p, kw);
                for (oh, dst) in row.chunks_exact_mut(ow_n).enumerate() {
                    let Some(ih) = input_row(p, oh, kh) else {
                        dst.fill(0.0);
                        continue;
                    };
                    let src = &plane[ih * p.in_w..][..p.in_w];
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    if lo == hi {
                        continue;
                    }
                    let first = lo * p.stride + kw - p.padding;
                    if p.stride == 1 {
                        dst[lo..hi].copy_from_slice(&src[first..first + hi - lo]);
                    } else {
                        for (d, &v) in dst[lo..hi]
                            .iter_mut()
                            .zip(src[first..].iter().step_by(p.stride))
                        {
                            *d = v;
                        }
                    }
                }
            }
        }
    }
}

/// Where one im2col row of a stride-1 convolution whose output is as wide as its input
/// (KW = 2·pad + 1, the usual "same" convolution) meets the input plane. Then
/// `row[j] = plane[j + shift]` for every valid entry, one shift for the whole row, so the row
/// moves in one piece; the entries in rows `oh_lo..oh_hi` outside `j0..j1`, and those that
/// wrapped around to a neighbouring input row, are exactly the invalid columns of
/// [`valid_cols`]. (Short per-row copies would each be a `memcpy` call, which costs more than
/// the copying at these widths.)
struct SameWidthRow {
    oh_lo: usize,
    oh_hi: usize,
    shift: isize,
    j0: usize,
    j1: usize,
}

fn same_width_row(p: &Conv2d, kh: usize, kw: usize) -> SameWidthRow {
    let w = p.in_w;
    // Output rows whose input row oh + kh − pad lies inside [0, H).
    let oh_lo = p.padding.saturating_sub(kh).min(p.out_h());
    let oh_hi = (p.in_h + p.padding)
        .saturating_sub(kh)
        .clamp(oh_lo, p.out_h());
    let shift = (kh * w + kw) as isize - (p.padding * w + p.padding) as isize;
    let j0 = (oh_lo * w).max((-shift).max(0) as usize);
    let j1 = (oh_hi * w)
        .min(((p.in_h * w) as isize - shift).max(0) as usize)
        .max(j0);
    SameWidthRow {
        oh_lo,
        oh_hi,
        shift,
        j0,
        j1,
    }
}

fn is_same_width(p: &Conv2d) -> bool {
    p.stride == 1 && p.out_w() == p.in_w
}

/// Zeroes the invalid columns of rows `oh_lo..oh_hi` of a same-width im2col row.
fn zero_invalid_columns(p: &Conv2d, kw: usize, r: &SameWidthRow, row: &mut [f32]) {
    let (lo, hi) = valid_cols(p, kw);
    for dst in row[r.oh_lo * p.in_w..r.oh_hi * p.in_w].chunks_exact_mut(p.in_w) {
        for d in &mut dst[..lo] {
            *d = 0.0;
        }
        for d in &mut dst[hi..] {
            *d = 0.0;
        }
    }
}

/// One im2col row of a same-width convolution: one copy, then the invalid columns cleared.
fn im2col_row_same_width(p: &Conv2d, plane: &[f32], kh: usize, kw: usize, row: &mut [f32]) {
    let r = same_width_row(p, kh, kw);
    row[..r.oh_lo * p.in_w].fill(0.0);
    row[r.oh_hi * p.in_w..].fill(0.0);
    if r.j0 < r.j1 {
        let src = (r.j0 as isize + r.shift) as usize;
        row[r.j0..r.j1].copy_from_slice(&plane[src..src + (r.j1 - r.j0)]);
    }
    zero_invalid_columns(p, kw, &r, row);
}

/// One col2im row of a same-width convolution: the invalid columns of the (scratch) dcol row
/// cleared, then one contiguous add, so the entries that wrap onto a neighbouring row add zero.
fn col2im_row_same_width(p: &Conv2d, row: &mut [f32], kh: usize, kw: usize, plane: &mut [f32]) {
    let r = same_width_row(p, kh, kw);
    zero_invalid_columns(p, kw, &r, row);
    if r.j0 == r.j1 {
        return; // no input row under this kernel row
    }
    let dst = (r.j0 as isize + r.shift) as usize;
    for (d, &v) in plane[dst..dst + (r.j1 - r.j0)]
        .iter_mut()
        .zip(&row[r.j0..r.j1])
    {
        *d += v;
    }
}

/// The adjoint of [`im2col`]: `dx[ci, ih, iw] = Σ dcol` over every (row, column) of dcol that
/// im2col reads from (ci, ih, iw). Overwrites dx: one image [Cin, H, W].
/// dcol is scratch: the same-width path clears its invalid entries.
fn col2im(p: &Conv2d, dcol: &mut [f32], dx: &mut [f32]) {
    let (oh_n, ow_n) = (p.out_h(), p.out_w());
    dx.fill(0.0);
    let mut rows = dcol.chunks_exact_mut(oh_n * ow_n);
    for ci in 0..p.in_channels {
        let plane = &mut dx[ci * p.in_h * p.in_w..][..p.in_h * p.in_w];
        for kh in 0..p.kernel_h {
            for kw in 0..p.kernel_w {
                let row = rows.next().expect("dcol has K rows");
                if is_same_width(p) {
                    col2im_row_same_width(p, row, kh, kw, plane);
                    continue;
                }
                let (lo, hi) = valid_cols(p, kw);
                for (oh, src) in row.chunks_exact(ow_n).enumerate() {
                    let Some(ih) = input_row(p, oh, kh) else {
                        continue;
                    };
                    if lo == hi {
                        continue;
                    }
                    let dst = &mut plane[ih * p.in_w..][..p.in_w];
                    let first = lo * p.stride + kw - p.padding;
                    if p.stride == 1 {
                        for (d, &v) in dst[first..first + hi - lo].iter_mut().zip(&src[lo..hi]) {
                            *d += v;
                        }
                    } else {
                        for (d, &v) in dst[first..].iter_mut().step_by(p.stride).zip(&src[lo..hi]) {
                            *d += v;
                        }
                    }
                }
            }
        }
    }
}

/// `out[n, co, oh, ow] = bias[co] + Σ_{ci, kh, kw} w[co, ci, kh, kw] · x[n, ci, oh·s − pad + kh,
/// ow·s − pad + kw]` (zero outside the input).
/// x: [N, Cin, H, W], w: [Cout, Cin, KH, KW], bias: [Cout], out: [N, Cout, OH, OW].
pub fn conv2d_forward(
    p: &Conv2d,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    out: &mut [f32],
) -> Result<()> {
    check::conv2d_forward(p, x.len(), w.len(), bias.len(), out.len())?;
    let (k, cols) = (col_rows(p), p.out_h() * p.out_w());
    let image_in = p.in_channels * p.in_h * p.in_w;
    out.par_chunks_mut(p.out_channels * cols)
        .zip(x.par_chunks(image_in))
        .for_each(|(out, x)| {
            for (row, &b) in out.chunks_exact_mut(cols).zip(bias) {
                row.fill(b);
            }
            let mut product = |col: &[f32]| {
                let (w, col) = (MatRef::rows(w, k), MatRef::rows(col, cols));
                gemm(
                    p.out_channels,
                    cols,
                    k,
                    out,
                    true,
                    w,
                    col,
                    Parallelism::None,
                );
            };
            if is_pointwise(p) {
                product(x);
            } else {
                with_scratch(k * cols, |col| {
                    im2col(p, x, col);
                    product(col);
                });
            }
        });
    Ok(())
}

/// `dx = ∂L/∂x` given `dout = ∂L/∂out`: `dx[n, ci, ih, iw] = Σ w[co, ci, kh, kw] · dout[n, co, oh,
/// ow]` over every (co, kh, kw, oh, ow) with `oh·s − pad + kh = ih` and `ow·s − pad + kw = iw`.
/// dout: [N, Cout, OH, OW], w: [Cout, Cin, KH, KW], dx: [N, Cin, H, W] (overwritten).
pub fn conv2d_backward_input(p: &Conv2d, dout: &[f32], w: &[f32], dx: &mut [f32]) -> Result<()> {
    check::conv2d_backward_input(p, dout.len(), w.len(), dx.len())?;
    let (k, cols) = (col_rows(p), p.out_h() * p.out_w());
    let image_in = p.in_channels * p.in_h * p.in_w;
    let wt = MatRef::transposed(w, k);
    dx.par_chunks_mut(image_in)
        .zip(dout.par_chunks(p.out_channels * cols))
        .for_each(|(dx, dout)| {
            let dout = MatRef::rows(dout, cols);
            if is_pointwise(p) {
                gemm(
                    k,
                    cols,
                    p.out_channels,
                    dx,
                    false,
                    wt,
                    dout,
                    Parallelism::None,
                );
            } else {
                with_scratch(k * cols, |dcol| {
                    gemm(
                        k,
                        cols,
                        p.out_channels,
                        dcol,
                        false,
                        wt,
                        dout,
                        Parallelism::None,
                    );
                    col2im(p, dcol, dx);
                });
            }
        });
    Ok(())
}

/// `dw[co, ci, kh, kw] = Σ_{n, oh, ow} dout[n, co, oh, ow] · x[n, ci, oh·s − pad + kh,
/// ow·s − pad + kw]`. x: [N, Cin, H, W], dout: [N, Cout, OH, OW], dw: [Cout, Cin, KH, KW]
/// (overwritten).
///
/// The batch is cut into one contiguous run of images per thread; each run sums into its own
/// partial dw, and the partials are added in order, so the result does not depend on how rayon
/// schedules the runs.
pub fn conv2d_backward_weight(p: &Conv2d, x: &[f32], dout: &[f32], dw: &mut [f32]) -> Result<()> {
    check::conv2d_backward_weight(p, x.len(), dout.len(), dw.len())?;
    let (k, cols) = (col_rows(p), p.out_h() * p.out_w());
    let (image_in, image_out) = (p.in_channels * p.in_h * p.in_w, p.out_channels * cols);
    let runs = rayon::current_num_threads().clamp(1, p.batch);
    let per_run = p.batch.div_ceil(runs);
    let accumulate_run = |dw: &mut [f32], x: &[f32], dout: &[f32]| {
        for (n, (x, dout)) in x
            .chunks_exact(image_in)
            .zip(dout.chunks_exact(image_out))
            .enumerate()
        {
            let dout = MatRef::rows(dout, cols);
            let mut product = |col: &[f32]| {
                let colt = MatRef::transposed(col, cols);
                gemm(
                    p.out_channels,
                    k,
                    cols,
                    dw,
                    n > 0,
                    dout,
                    colt,
                    Parallelism::None,
                );
            };
            if is_pointwise(p) {
                product(x);
            } else {
                with_scratch(k * cols, |col| {
                    im2col(p, x, col);
                    product(col);
                });
            }
        }
    };
    let mut partials = vec![0.0f32; (runs - 1) * dw.len()];
    let mut targets: Vec<&mut [f32]> = std::iter::once(&mut *dw)
        .chain(partials.chunks_exact_mut(p.weight_len()))
        .collect();
    targets
        .par_iter_mut()
        .zip(
            x.par_chunks(per_run * image_in)
                .zip(dout.par_chunks(per_run * image_out)),
        )
        .for_each(|(dw, (x, dout))| accumulate_run(dw, x, dout));
    let n_runs = p.batch.div_ceil(per_run);
    for partial in partials.chunks_exact(p.weight_len()).take(n_runs - 1) {
        for (d, &v) in dw.iter_mut().zip(partial) {
            *d += v;
        }
    }
    Ok(())
}

/// `dbias[co] = Σ_{n, oh, ow} dout[n, co, oh, ow]`. dout: [N, Cout, OH, OW], dbias: [Cout].
pub fn conv2d_backward_bias(p: &Conv2d, dout: &[f32], dbias: &mut [f32]) -> Result<()> {
    check::conv2d_backward_bias(p, dout.len(), dbias.len())?;
    let channels = Channels {
        outer: p.batch,
        channels: p.out_channels,
        inner: p.out_h() * p.out_w(),
    };
    channel_sum(&channels, dout, dbias)
}

/// [`conv2d_backward_weight`] then [`conv2d_backward_bias`].
pub fn conv2d_backward_params(
    p: &Conv2d,
    x: &[f32],
    dout: &[f32],
    dw: &mut [f32],
    dbias: &mut [f32],
) -> Result<()> {
    check::conv2d_backward_bias(p, dout.len(), dbias.len())?;
    conv2d_backward_weight(p, x, dout, dw)?;
    conv2d_backward_bias(p, dout, dbias)
}
