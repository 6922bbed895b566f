//! The argument checks of every op, shared by all backends: parameters that make sense and
//! buffers whose lengths match them. A backend calls the op's check with its buffers' lengths
//! before it computes or records anything.

use super::expect_len;
use super::params::*;
use crate::{Error, Result};

pub fn gather_batch(
    p: &Gather,
    images: usize,
    labels: usize,
    perm: usize,
    x: usize,
    y: usize,
) -> Result<()> {
    const OP: &str = "gather_batch";
    if p.batch == 0 || p.image_len == 0 {
        return Err(Error::InvalidParams(format!(
            "gather with a zero size: {p:?}"
        )));
    }
    if p.offset + p.batch > perm {
        return Err(Error::shape(
            OP,
            format!(
                "batch {}..{} runs past the permutation's {perm} entries",
                p.offset,
                p.offset + p.batch
            ),
        ));
    }
    if images * 4 < labels * p.image_len {
        return Err(Error::shape(
            OP,
            format!(
                "{labels} labels need {} image bytes, the images hold {}",
                labels * p.image_len,
                images * 4
            ),
        ));
    }
    expect_len(OP, "x", x, p.batch * p.image_len)?;
    expect_len(OP, "y", y, p.batch)
}

pub fn gather_batch_affine(
    p: &GatherAffine,
    images: usize,
    labels: usize,
    perm: usize,
    affine: usize,
    x: usize,
    y: usize,
) -> Result<()> {
    const OP: &str = "gather_batch_affine";
    gather_batch(&p.gather, images, labels, perm, x, y)?;
    if p.cols == 0 || !p.gather.image_len.is_multiple_of(p.cols) {
        return Err(Error::InvalidParams(format!(
            "images of {} pixels are not rows of {} columns",
            p.gather.image_len, p.cols
        )));
    }
    if affine < perm * AFFINE_LEN {
        return Err(Error::shape(
            OP,
            format!(
                "affine holds {affine} values, {AFFINE_LEN} per permutation entry need {}",
                perm * AFFINE_LEN
            ),
        ));
    }
    Ok(())
}

pub fn conv2d_forward(p: &Conv2d, x: usize, w: usize, bias: usize, out: usize) -> Result<()> {
    const OP: &str = "conv2d_forward";
    p.validate()?;
    expect_len(OP, "x", x, p.input_len())?;
    expect_len(OP, "w", w, p.weight_len())?;
    expect_len(OP, "bias", bias, p.out_channels)?;
    expect_len(OP, "out", out, p.output_len())
}

pub fn conv2d_backward_input(p: &Conv2d, dout: usize, w: usize, dx: usize) -> Result<()> {
    const OP: &str = "conv2d_backward_input";
    p.validate()?;
    expect_len(OP, "dout", dout, p.output_len())?;
    expect_len(OP, "w", w, p.weight_len())?;
    expect_len(OP, "dx", dx, p.input_len())
}

pub fn conv2d_backward_weight(p: &Conv2d, x: usize, dout: usize, dw: usize) -> Result<()> {
    const OP: &str = "conv2d_backward_weight";
    p.validate()?;
    expect_len(OP, "x", x, p.input_len())?;
    expect_len(OP, "dout", dout, p.output_len())?;
    expect_len(OP, "dw", dw, p.weight_len())
}

pub fn conv2d_backward_bias(p: &Conv2d, dout: usize, dbias: usize) -> Result<()> {
    const OP: &str = "conv2d_backward_bias";
    p.validate()?;
    expect_len(OP, "dout", dout, p.output_len())?;
    expect_len(OP, "dbias", dbias, p.out_channels)
}

/// Forward: (x, out) = (input, output); backward: (dx, dout).
pub fn pool2d(op: &'static str, p: &Pool2d, input: usize, output: usize) -> Result<()> {
    p.validate()?;
    expect_len(op, "input-shaped buffer", input, p.input_len())?;
    expect_len(op, "output-shaped buffer", output, p.output_len())
}

pub fn elementwise(op: &'static str, len: usize, bufs: &[usize]) -> Result<()> {
    bufs.iter()
        .try_for_each(|&b| expect_len(op, "buffer", b, len))
}

pub fn matmul(p: &Matmul, a: usize, b: usize, c: usize) -> Result<()> {
    const OP: &str = "matmul";
    p.validate()?;
    expect_len(OP, "a", a, p.m * p.k)?;
    expect_len(OP, "b", b, p.k * p.n)?;
    expect_len(OP, "c", c, p.m * p.n)
}

/// The extra buffer of a fused matrix product (`matmul_bias`'s bias, `matmul_relu_backward`'s
/// ReLU output, `matmul_row_sums`'s sums): `want` elements.
pub fn matmul_epilogue(op: &'static str, p: &Matmul, have: usize, want: usize) -> Result<()> {
    p.validate()?;
    expect_len(op, "epilogue buffer", have, want)
}

/// bias_add: (bias, x); channel_sum: (out, x).
pub fn channels(op: &'static str, p: &Channels, per_channel: usize, tensor: usize) -> Result<()> {
    if p.is_empty() {
        return Err(Error::InvalidParams(format!(
            "{op} with a zero size: {p:?}"
        )));
    }
    expect_len(op, "per-channel buffer", per_channel, p.channels)?;
    expect_len(op, "tensor", tensor, p.len())
}

pub fn softmax_xent(op: &'static str, p: &SoftmaxXent, logits: usize, labels: usize) -> Result<()> {
    if p.batch == 0 || p.classes == 0 {
        return Err(Error::InvalidParams(format!(
            "{op} with a zero size: {p:?}"
        )));
    }
    expect_len(op, "logits", logits, p.batch * p.classes)?;
    expect_len(op, "labels", labels, p.batch)
}

pub(crate) fn positive_finite(what: &str, v: f32) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidParams(format!(
            "{what} must be a positive finite number, got {v}"
        )))
    }
}

pub(crate) fn in_unit(what: &str, v: impl Into<f64>) -> Result<()> {
    let v = v.into();
    if (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(Error::InvalidParams(format!(
            "{what} must be in [0, 1), got {v}"
        )))
    }
}

pub(crate) fn non_negative(what: &str, v: f32) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::InvalidParams(format!(
            "{what} must be a finite number ≥ 0, got {v}"
        )))
    }
}

fn clip(max_norm: Option<f32>) -> Result<()> {
    max_norm.map_or(Ok(()), |m| positive_finite("the gradient-clipping norm", m))
}

/// sgd_step: the hyper-parameters, then every buffer.
pub fn sgd(p: &Sgd, scalars: usize, param: usize, grad: usize, velocity: usize) -> Result<()> {
    const OP: &str = "sgd_step";
    in_unit("SGD momentum", p.momentum)?;
    non_negative("SGD weight decay", p.weight_decay)?;
    clip(p.max_norm)?;
    if p.nesterov && p.momentum == 0.0 {
        return Err(Error::InvalidParams(
            "Nesterov momentum needs a momentum above 0".into(),
        ));
    }
    expect_len(OP, "scalars", scalars, StepScalars::LEN)?;
    expect_len(OP, "param", param, p.len)?;
    expect_len(OP, "grad", grad, p.len)?;
    expect_len(OP, "velocity", velocity, p.len)
}

/// adam_step: the hyper-parameters, then every buffer.
pub fn adam(p: &Adam, scalars: usize, param: usize, grad: usize, m: usize, v: usize) -> Result<()> {
    const OP: &str = "adam_step";
    in_unit("Adam beta1", p.beta1)?;
    in_unit("Adam beta2", p.beta2)?;
    positive_finite("Adam eps", p.eps)?;
    non_negative("Adam weight decay", p.weight_decay)?;
    clip(p.max_norm)?;
    expect_len(OP, "scalars", scalars, StepScalars::LEN)?;
    expect_len(OP, "param", param, p.len)?;
    expect_len(OP, "grad", grad, p.len)?;
    expect_len(OP, "exp_avg", m, p.len)?;
    expect_len(OP, "exp_avg_sq", v, p.len)
}

/// sum_squares: a non-empty tensor and a scalars buffer.
pub fn sum_squares(len: usize, x: usize, scalars: usize) -> Result<()> {
    const OP: &str = "sum_squares";
    expect_len(OP, "x", x, len)?;
    expect_len(OP, "scalars", scalars, StepScalars::LEN)
}

/// record_nonfinite: a one-word loss sum and record, and a scalars buffer.
pub fn record_nonfinite(loss_sum: usize, scalars: usize, record: usize) -> Result<()> {
    const OP: &str = "record_nonfinite";
    expect_len(OP, "loss_sum", loss_sum, 1)?;
    expect_len(OP, "scalars", scalars, StepScalars::LEN)?;
    expect_len(OP, "record", record, 1)
}

pub fn dropout(op: &'static str, p: &Dropout, step: usize, src: usize, dst: usize) -> Result<()> {
    p.validate()?;
    expect_len(op, "step", step, 1)?;
    expect_len(op, "input", src, p.len)?;
    expect_len(op, "output", dst, p.len)
}

/// Every batch-norm op: `tensors` hold [outer, channels, inner] values, `stats` the means then
/// the variances ([2·channels]), `per_channel` one value per channel (weight, bias, their
/// gradients).
pub fn batch_norm(
    op: &'static str,
    p: &BatchNorm,
    tensors: &[usize],
    stats: &[usize],
    per_channel: &[usize],
) -> Result<()> {
    p.validate()?;
    let c = p.shape.channels;
    tensors
        .iter()
        .try_for_each(|&n| expect_len(op, "tensor", n, p.shape.len()))?;
    stats
        .iter()
        .try_for_each(|&n| expect_len(op, "statistics (means then variances)", n, 2 * c))?;
    per_channel
        .iter()
        .try_for_each(|&n| expect_len(op, "per-channel buffer", n, c))
}

/// Training-mode batch norm needs a variance: more than one value per channel (PyTorch refuses
/// the same).
pub fn batch_norm_stats(p: &BatchNorm, x: usize, stats: usize, running: usize) -> Result<()> {
    batch_norm("batch_norm_stats", p, &[x], &[stats, running], &[])?;
    if p.per_channel() < 2 {
        return Err(Error::InvalidParams(format!(
            "batch norm in training needs more than one value per channel, got {} \
             (batch {} × {} per sample); use a larger batch",
            p.per_channel(),
            p.shape.outer,
            p.shape.inner
        )));
    }
    Ok(())
}
