//! dropout: inverted dropout's forward and backward passes (shaders/dropout.wgsl), the mask
//! recomputed from the seed and the step in each.

use bytemuck::{Pod, Zeroable};

use super::to_u32;
use crate::backend::gpu::dispatch::{shader, Kernel, Shader};
use crate::backend::gpu::{GpuBackend, GpuBuffer};
use crate::backend::{check, Dropout};
use crate::Result;

const SHADER: Shader = shader!("dropout.wgsl");
const DROPOUT_FORWARD: Kernel = Kernel::new(SHADER, "dropout_forward");
const DROPOUT_BACKWARD: Kernel = Kernel::new(SHADER, "dropout_backward");

// dropout.wgsl's bindings (0 is the uniform).
const STEP: u32 = 1;
const SRC: u32 = 2;
const DST: u32 = 3;

/// dropout.wgsl's `DropoutParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct DropoutParams {
    len: u32,
    threshold: u32,
    scale: f32,
    seed: u32,
}

/// dst = src through dropout's mask and scale (`kernel` is either direction's entry point).
fn masked(
    gpu: &GpuBackend,
    kernel: Kernel,
    p: &Dropout,
    step: &GpuBuffer,
    src: &GpuBuffer,
    dst: &GpuBuffer,
) -> Result<()> {
    check::dropout(kernel.entry, p, step.len, src.len, dst.len)?;
    let params = DropoutParams {
        len: to_u32("len", p.len)?,
        threshold: p.threshold(),
        scale: p.scale(),
        seed: p.seed,
    };
    let bufs = [(STEP, step), (SRC, src), (DST, dst)];
    gpu.dispatch(kernel, &params, &bufs, gpu.grid(p.len)?)
}

pub(in crate::backend::gpu) fn dropout_forward(
    gpu: &GpuBackend,
    p: &Dropout,
    step: &GpuBuffer,
    x: &GpuBuffer,
    y: &mut GpuBuffer,
) -> Result<()> {
    masked(gpu, DROPOUT_FORWARD, p, step, x, y)
}

pub(in crate::backend::gpu) fn dropout_backward(
    gpu: &GpuBackend,
    p: &Dropout,
    step: &GpuBuffer,
    dy: &GpuBuffer,
    dx: &mut GpuBuffer,
) -> Result<()> {
    masked(gpu, DROPOUT_BACKWARD, p, step, dy, dx)
}
