//! The matrix product, and the strided GEMM that it and the convolutions share.

use gemm::Parallelism;

use crate::backend::{check, Channels, Matmul};
use crate::Result;

/// A row-major or transposed view of a matrix in a slice: element (i, j) is
/// `data[i·row_stride + j·col_stride]`.
#[derive(Clone, Copy)]
pub(crate) struct MatRef<'a> {
    pub data: &'a [f32],
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// `data` read as a row-major [rows, cols] matrix.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        MatRef {
            data,
            row_stride: cols,
            col_stride: 1,
        }
    }
    /// `data`, a row-major [cols, rows] matrix, read transposed as [rows, cols].
    pub fn transposed(data: &'a [f32], rows: usize) -> Self {
        MatRef {
            data,
            row_stride: 1,
            col_stride: rows,
        }
    }
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0
            || cols == 0
            || (rows - 1) * self.row_stride + (cols - 1) * self.col_stride < self.data.len()
    }
}

/// `c[m, n] = (accumulate ? c : 0) + a[m, k] · b[k, n]`, c row-major with `n` columns.
/// Panics when a view reaches past its slice (callers check buffer lengths before this).
#[allow(clippy::too_many_arguments)] // the three sizes, then each matrix: fewer than gemm::gemm's 19
pub(crate) fn gemm(
    m: usize,
    n: usize,
    k: usize,
    c: &mut [f32],
    accumulate: bool,
    a: MatRef,
    b: MatRef,
    parallelism: Parallelism,
) {
    assert!(
        c.len() >= m * n && a.fits(m, k) && b.fits(k, n),
        "gemm views out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            c[..m * n].fill(0.0);
        }
        return;
    }
    // SAFETY: every element the product reads or writes lies inside its slice (asserted above),
    // `c` is borrowed mutably so it aliases neither input, and the strides fit in isize because
    // the slices' lengths do.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// `c[m, n] = Σ_k op(a)[m, k] · op(b)[k, n]`; a is stored [m, k] or, with `trans_a`, [k, m];
/// b is stored [k, n] or, with `trans_b`, [n, k]. Transposes are strides, never copies.
pub fn matmul(p: &Matmul, a: &[f32], b: &[f32], c: &mut [f32]) -> Result<()> {
    check::matmul(p, a.len(), b.len(), c.len())?;
    let a = if p.trans_a {
        MatRef::transposed(a, p.m)
    } else {
        MatRef::rows(a, p.k)
    };
    let b = if p.trans_b {
        MatRef::transposed(b, p.k)
    } else {
        MatRef::rows(b, p.n)
    };
    gemm(p.m, p.n, p.k, c, false, a, b, Parallelism::Rayon(0));
    Ok(())
}

/// [`matmul`], `+ bias[n]` on every row (as [`super::bias::bias_add`] adds it), then the ReLU
/// when `relu` (as [`super::elementwise::relu_forward`] computes it).
pub fn matmul_bias(
    p: &Matmul,
    relu: bool,
    a: &[f32],
    b: &[f32],
    bias: &[f32],
    c: &mut [f32],
) -> Result<()> {
    check::matmul_epilogue("matmul_bias", p, bias.len(), p.n)?;
    matmul(p, a, b, c)?;
    super::bias::bias_add(&columns(p), bias, c)?;
    if relu {
        c.iter_mut()
            .for_each(|v| *v = if *v > 0.0 { *v } else { 0.0 });
    }
    Ok(())
}

/// [`matmul`], then zero where the ReLU output `y` is not positive (as
/// [`super::elementwise::relu_backward`] masks).
pub fn matmul_relu_backward(
    p: &Matmul,
    a: &[f32],
    b: &[f32],
    y: &[f32],
    c: &mut [f32],
) -> Result<()> {
    check::matmul_epilogue("matmul_relu_backward", p, y.len(), p.m * p.n)?;
    matmul(p, a, b, c)?;
    for (c, &y) in c.iter_mut().zip(y) {
        *c = if y > 0.0 { *c } else { 0.0 };
    }
    Ok(())
}

/// [`matmul`], and `sums[m] = Σ_k op(a)[m, k]` as [`super::bias::channel_sum`] sums.
pub fn matmul_row_sums(
    p: &Matmul,
    a: &[f32],
    b: &[f32],
    c: &mut [f32],
    sums: &mut [f32],
) -> Result<()> {
    check::matmul_epilogue("matmul_row_sums", p, sums.len(), p.m)?;
    matmul(p, a, b, c)?;
    // op(a)[m, k]: stored [k, m] (transposed) is k rows of m channels, else m rows of k.
    let rows = if p.trans_a {
        Channels {
            outer: p.k,
            channels: p.m,
            inner: 1,
        }
    } else {
        Channels {
            outer: 1,
            channels: p.m,
            inner: p.k,
        }
    };
    super::bias::channel_sum(&rows, a, sums)
}

/// C's [m, n] as channels: m rows of n channels.
fn columns(p: &Matmul) -> Channels {
    Channels {
        outer: p.m,
        channels: p.n,
        inner: 1,
    }
}
