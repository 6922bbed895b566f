//! optim: the SGD and Adam updates, the gradients' sum of squares for clipping, and the
//! non-finite-loss record (shaders/optim.wgsl).

use bytemuck::{Pod, Zeroable};

use super::to_u32;
use crate::backend::gpu::dispatch::{shader, Kernel, Shader};
use crate::backend::gpu::{GpuBackend, GpuBuffer};
use crate::backend::{check, Adam, Sgd};
use crate::Result;

const SHADER: Shader = shader!("optim.wgsl");
const SGD_STEP: Kernel = Kernel::new(SHADER, "sgd_step");
const ADAM_STEP: Kernel = Kernel::new(SHADER, "adam_step");
const SUM_SQUARES: Kernel = Kernel::new(SHADER, "sum_squares");
const RECORD_NONFINITE: Kernel = Kernel::new(SHADER, "record_nonfinite");

// optim.wgsl's bindings (0 is the uniform). STATE1 and STATE2 are SGD's velocity, or Adam's
// m and v; ACC is the step's scalars again, written by sum_squares.
const GRAD: u32 = 1;
const PARAM: u32 = 2;
const STATE1: u32 = 3;
const STATE2: u32 = 4;
const SCALARS: u32 = 5;
const ACC: u32 = 7;
const LOSS_SUM: u32 = 8;
const RECORD: u32 = 9;

/// optim.wgsl's `OptimParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct OptimParams {
    len: u32,
    momentum: f32,
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    eps: f32,
    weight_decay: f32,
    /// 0: no clipping.
    max_norm: f32,
    /// SGD: Nesterov; Adam: decoupled weight decay (AdamW).
    flag: u32,
    _pad: [u32; 3],
}

pub(in crate::backend::gpu) fn sgd_step(
    gpu: &GpuBackend,
    p: &Sgd,
    scalars: &GpuBuffer,
    param: &mut GpuBuffer,
    grad: &GpuBuffer,
    velocity: &mut GpuBuffer,
) -> Result<()> {
    check::sgd(p, scalars.len, param.len, grad.len, velocity.len)?;
    let params = OptimParams {
        len: to_u32("len", p.len)?,
        momentum: p.momentum,
        weight_decay: p.weight_decay,
        max_norm: p.max_norm.unwrap_or(0.0),
        flag: p.nesterov as u32,
        ..OptimParams::zeroed()
    };
    let bufs = [
        (GRAD, grad),
        (PARAM, &*param),
        (STATE1, &*velocity),
        (SCALARS, scalars),
    ];
    gpu.dispatch(SGD_STEP, &params, &bufs, gpu.grid(p.len)?)
}

pub(in crate::backend::gpu) fn adam_step(
    gpu: &GpuBackend,
    p: &Adam,
    scalars: &GpuBuffer,
    param: &mut GpuBuffer,
    grad: &GpuBuffer,
    m: &mut GpuBuffer,
    v: &mut GpuBuffer,
) -> Result<()> {
    check::adam(p, scalars.len, param.len, grad.len, m.len, v.len)?;
    let (one_minus_beta1, beta2, one_minus_beta2) = p.factors();
    let params = OptimParams {
        len: to_u32("len", p.len)?,
        one_minus_beta1,
        beta2,
        one_minus_beta2,
        eps: p.eps,
        weight_decay: p.weight_decay,
        max_norm: p.max_norm.unwrap_or(0.0),
        flag: p.decoupled as u32,
        ..OptimParams::zeroed()
    };
    let bufs = [
        (GRAD, grad),
        (PARAM, &*param),
        (STATE1, &*m),
        (STATE2, &*v),
        (SCALARS, scalars),
    ];
    gpu.dispatch(ADAM_STEP, &params, &bufs, gpu.grid(p.len)?)
}

pub(in crate::backend::gpu) fn sum_squares(
    gpu: &GpuBackend,
    len: usize,
    x: &GpuBuffer,
    scalars: &mut GpuBuffer,
) -> Result<()> {
    check::sum_squares(len, x.len, scalars.len)?;
    let params = OptimParams {
        len: to_u32("len", len)?,
        ..OptimParams::zeroed()
    };
    let bufs = [(GRAD, x), (ACC, &*scalars)];
    gpu.dispatch(SUM_SQUARES, &params, &bufs, [1, 1, 1])
}

pub(in crate::backend::gpu) fn record_nonfinite(
    gpu: &GpuBackend,
    loss_sum: &GpuBuffer,
    scalars: &GpuBuffer,
    record: &mut GpuBuffer,
) -> Result<()> {
    check::record_nonfinite(loss_sum.len, scalars.len, record.len)?;
    let params = OptimParams {
        len: 1,
        ..OptimParams::zeroed()
    };
    let bufs = [(SCALARS, scalars), (LOSS_SUM, loss_sum), (RECORD, &*record)];
    gpu.dispatch(RECORD_NONFINITE, &params, &bufs, [1, 1, 1])
}
