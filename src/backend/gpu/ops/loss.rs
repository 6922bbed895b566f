//! loss: softmax cross-entropy with its logits gradient, and the correct-prediction count
//! (shaders/loss.wgsl).

use bytemuck::{Pod, Zeroable};

use super::to_u32;
use crate::backend::gpu::dispatch::{shader, Kernel, Shader};
use crate::backend::gpu::{GpuBackend, GpuBuffer};
use crate::backend::{check, expect_len, SoftmaxXent};
use crate::Result;

const SHADER: Shader = shader!("loss.wgsl");
const SOFTMAX_CROSS_ENTROPY: Kernel = Kernel::new(SHADER, "softmax_cross_entropy");
const COUNT_CORRECT: Kernel = Kernel::new(SHADER, "count_correct");

// loss.wgsl's bindings (0 is the uniform).
const LOGITS: u32 = 1;
const LABELS: u32 = 2;
const LOSS_SUM: u32 = 3;
const DLOGITS: u32 = 4;
const CORRECT: u32 = 5;

/// loss.wgsl's `LossParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct LossParams {
    batch: u32,
    classes: u32,
    _pad: [u32; 2],
}

fn loss_params(p: &SoftmaxXent) -> Result<LossParams> {
    Ok(LossParams {
        batch: to_u32("batch", p.batch)?,
        classes: to_u32("classes", p.classes)?,
        _pad: [0; 2],
    })
}

pub(in crate::backend::gpu) fn softmax_cross_entropy(
    gpu: &GpuBackend,
    p: &SoftmaxXent,
    logits: &GpuBuffer,
    labels: &GpuBuffer,
    loss_sum: &mut GpuBuffer,
    dlogits: &mut GpuBuffer,
) -> Result<()> {
    const OP: &str = "softmax_cross_entropy";
    check::softmax_xent(OP, p, logits.len, labels.len)?;
    expect_len(OP, "loss_sum", loss_sum.len, 1)?;
    expect_len(OP, "dlogits", dlogits.len, logits.len)?;
    let params = loss_params(p)?;
    let bufs = [
        (LOGITS, logits),
        (LABELS, labels),
        (LOSS_SUM, &*loss_sum),
        (DLOGITS, &*dlogits),
    ];
    gpu.dispatch(SOFTMAX_CROSS_ENTROPY, &params, &bufs, [1, 1, 1])
}

pub(in crate::backend::gpu) fn count_correct(
    gpu: &GpuBackend,
    p: &SoftmaxXent,
    logits: &GpuBuffer,
    labels: &GpuBuffer,
    correct: &mut GpuBuffer,
) -> Result<()> {
    check::softmax_xent("count_correct", p, logits.len, labels.len)?;
    expect_len("count_correct", "correct", correct.len, 1)?;
    let params = loss_params(p)?;
    let bufs = [(LOGITS, logits), (LABELS, labels), (CORRECT, &*correct)];
    gpu.dispatch(COUNT_CORRECT, &params, &bufs, [1, 1, 1])
}
