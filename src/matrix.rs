//! Small 2-d matrices for `cnn-gpu convolve`: read from text (rows of whitespace-separated
//! numbers), the named demo kernels, and one convolution or pooling of a single-channel matrix
//! run on a backend through the same [`Backend`] ops the network uses.

use std::fmt;

use crate::backend::{Backend, Conv2d, Pool2d};
use crate::{Error, Result};

/// A row-major matrix of f32.
#[derive(Clone, Debug, PartialEq)]
pub struct Matrix {
    pub rows: usize,
    pub cols: usize,
    pub data: Vec<f32>,
}

impl Matrix {
    pub fn new(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), rows * cols, "a {rows}×{cols} matrix");
        Matrix { rows, cols, data }
    }

    /// Parses rows of whitespace-separated numbers (blank lines and `#` comments are skipped).
    /// The error names the line and what is wrong with it.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let mut data = Vec::new();
        let mut rows = 0;
        let mut cols = 0;
        for (i, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let row = line
                .split_whitespace()
                .map(|t| {
                    t.parse::<f32>()
                        .ok()
                        .filter(|v| v.is_finite())
                        .ok_or_else(|| format!("line {}: {t:?} is not a finite number", i + 1))
                })
                .collect::<std::result::Result<Vec<f32>, String>>()?;
            if rows == 0 {
                cols = row.len();
            } else if row.len() != cols {
                return Err(format!(
                    "line {}: {} numbers, but the first row has {cols}",
                    i + 1,
                    row.len()
                ));
            }
            data.extend(row);
            rows += 1;
        }
        if rows == 0 {
            return Err("no numbers: a matrix is rows of whitespace-separated numbers".into());
        }
        Ok(Matrix::new(rows, cols, data))
    }

    pub fn get(&self, r: usize, c: usize) -> f32 {
        self.data[r * self.cols + c]
    }

    /// (min, max) of the entries.
    pub fn range(&self) -> (f32, f32) {
        self.data
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            })
    }
}

/// Rows of right-aligned numbers, rounded to 4 decimals and written without trailing zeros.
impl fmt::Display for Matrix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let cells: Vec<String> = self
            .data
            .iter()
            .map(|&v| format!("{}", (v as f64 * 1e4).round() / 1e4 + 0.0))
            .collect();
        let width = cells.iter().map(|c| c.chars().count()).max().unwrap_or(1);
        for row in cells.chunks(self.cols) {
            let line: Vec<String> = row.iter().map(|c| format!("{c:>width$}")).collect();
            writeln!(f, "{}", line.join(" "))?;
        }
        Ok(())
    }
}

/// The names `--kernel` accepts, with their 3×3 kernels.
pub const NAMED_KERNELS: [(&str, [f32; 9]); 4] = [
    ("edge", [-1., -1., -1., -1., 8., -1., -1., -1., -1.]),
    ("blur", [1. / 9.; 9]),
    ("sharpen", [0., -1., 0., -1., 5., -1., 0., -1., 0.]),
    ("identity", [0., 0., 0., 0., 1., 0., 0., 0., 0.]),
];

/// The named kernel, if `name` is one of [`NAMED_KERNELS`].
pub fn named_kernel(name: &str) -> Option<Matrix> {
    NAMED_KERNELS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, k)| Matrix::new(3, 3, k.to_vec()))
}

/// Which pooling op.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolKind {
    Max,
    Avg,
}

/// A matrix the backend has been asked for: its buffer, read back by [`Pending::read`] (or, on
/// a host that cannot block, however it reads buffers).
pub struct Pending<B: Backend> {
    pub buffer: B::Buffer,
    pub rows: usize,
    pub cols: usize,
}

impl<B: Backend> Pending<B> {
    /// The matrix, once the backend has computed it.
    pub fn read(self, b: &B) -> Result<Matrix> {
        Ok(Matrix::new(self.rows, self.cols, b.read_f32(&self.buffer)?))
    }
}

/// Cross-correlation of `input` with `kernel` (as PyTorch's conv2d, no bias), zero padding
/// `padding` on every side, step `stride`: the backend's `conv2d_forward` with one image and
/// one channel. Refuses a stride of 0, a padding wider than half the kernel (outputs that would
/// see nothing but padding) and a kernel larger than the padded input.
pub fn convolve<B: Backend>(
    b: &B,
    input: &Matrix,
    kernel: &Matrix,
    stride: usize,
    padding: usize,
) -> Result<Matrix> {
    record_convolve(b, input, kernel, stride, padding)?.read(b)
}

/// [`convolve`], recorded on the backend and not read back.
pub fn record_convolve<B: Backend>(
    b: &B,
    input: &Matrix,
    kernel: &Matrix,
    stride: usize,
    padding: usize,
) -> Result<Pending<B>> {
    if stride == 0 {
        return Err(Error::InvalidParams("the stride must be at least 1".into()));
    }
    let most = kernel.rows.min(kernel.cols) / 2;
    if padding > most {
        return Err(Error::InvalidParams(format!(
            "padding {padding} is more than a {}×{} kernel allows (at most {most}, half the \
             kernel: wider padding only adds outputs that see nothing but zeros)",
            kernel.rows, kernel.cols
        )));
    }
    let p = Conv2d {
        batch: 1,
        in_channels: 1,
        in_h: input.rows,
        in_w: input.cols,
        out_channels: 1,
        kernel_h: kernel.rows,
        kernel_w: kernel.cols,
        stride,
        padding,
    };
    p.validate()?;
    let x = b.upload_f32(&input.data, "convolve.input")?;
    let w = b.upload_f32(&kernel.data, "convolve.kernel")?;
    let bias = b.zeros(1, "convolve.bias")?;
    let mut out = b.zeros(p.output_len(), "convolve.output")?;
    b.conv2d_forward(&p, &x, &w, &bias, &mut out)?;
    Ok(Pending {
        buffer: out,
        rows: p.out_h(),
        cols: p.out_w(),
    })
}

/// Max or average pooling of `input` over `size`×`size` windows every `stride` (no padding, the
/// last partial windows dropped, as PyTorch's defaults): the backend's pooling ops.
pub fn pool<B: Backend>(
    b: &B,
    input: &Matrix,
    kind: PoolKind,
    size: usize,
    stride: usize,
) -> Result<Matrix> {
    record_pool(b, input, kind, size, stride)?.read(b)
}

/// [`pool`], recorded on the backend and not read back.
pub fn record_pool<B: Backend>(
    b: &B,
    input: &Matrix,
    kind: PoolKind,
    size: usize,
    stride: usize,
) -> Result<Pending<B>> {
    if stride == 0 || size == 0 {
        return Err(Error::InvalidParams(
            "the pooling size and stride must be at least 1".into(),
        ));
    }
    let p = Pool2d {
        batch: 1,
        channels: 1,
        in_h: input.rows,
        in_w: input.cols,
        kernel: size,
        stride,
    };
    p.validate()?;
    let x = b.upload_f32(&input.data, "pool.input")?;
    let mut out = b.zeros(p.output_len(), "pool.output")?;
    match kind {
        PoolKind::Max => b.maxpool2d_forward(&p, &x, &mut out)?,
        PoolKind::Avg => b.avgpool2d_forward(&p, &x, &mut out)?,
    }
    Ok(Pending {
        buffer: out,
        rows: p.out_h(),
        cols: p.out_w(),
    })
}
