//! batch_norm: training-mode statistics, the normalisation, and its parameter and input
//! gradients (shaders/batch_norm.wgsl).

use bytemuck::{Pod, Zeroable};

use super::to_u32;
use crate::backend::gpu::dispatch::{shader, Kernel, Shader};
use crate::backend::gpu::{GpuBackend, GpuBuffer};
use crate::backend::{check, BatchNorm};
use crate::Result;

const SHADER: Shader = shader!("batch_norm.wgsl");
const STATS: Kernel = Kernel::new(SHADER, "batch_norm_stats");
const FORWARD: Kernel = Kernel::new(SHADER, "batch_norm_forward");
const BACKWARD_PARAMS: Kernel = Kernel::new(SHADER, "batch_norm_backward_params");
const BACKWARD_INPUT: Kernel = Kernel::new(SHADER, "batch_norm_backward_input");

// batch_norm.wgsl's bindings (0 is the uniform): inputs, then outputs.
const X: u32 = 1;
const DY: u32 = 2;
const STATS_IN: u32 = 3;
const WEIGHT: u32 = 4;
const BIAS: u32 = 5;
const DWEIGHT_IN: u32 = 6;
const DBIAS_IN: u32 = 7;
const DST: u32 = 8;
const STATS_OUT: u32 = 9;
const RUNNING: u32 = 10;
const DWEIGHT_OUT: u32 = 11;
const DBIAS_OUT: u32 = 12;

/// batch_norm.wgsl's `BnParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct BnParams {
    outer: u32,
    channels: u32,
    inner: u32,
    eps: f32,
    momentum: f32,
    _pad: [u32; 3],
}

fn bn_params(p: &BatchNorm) -> Result<BnParams> {
    let s = p.shape;
    to_u32("batch-norm tensor length", s.len())?;
    Ok(BnParams {
        outer: to_u32("outer", s.outer)?,
        channels: to_u32("channels", s.channels)?,
        inner: to_u32("inner", s.inner)?,
        eps: p.eps,
        momentum: p.momentum,
        _pad: [0; 3],
    })
}

pub(in crate::backend::gpu) fn batch_norm_stats(
    gpu: &GpuBackend,
    p: &BatchNorm,
    x: &GpuBuffer,
    stats: &mut GpuBuffer,
    running: &mut GpuBuffer,
) -> Result<()> {
    check::batch_norm_stats(p, x.len, stats.len, running.len)?;
    let bufs = [(X, x), (STATS_OUT, &*stats), (RUNNING, &*running)];
    let groups = gpu.grid_groups(p.shape.channels)?;
    gpu.dispatch(STATS, &bn_params(p)?, &bufs, groups)
}

pub(in crate::backend::gpu) fn batch_norm_forward(
    gpu: &GpuBackend,
    p: &BatchNorm,
    x: &GpuBuffer,
    stats: &GpuBuffer,
    weight: &GpuBuffer,
    bias: &GpuBuffer,
    y: &mut GpuBuffer,
) -> Result<()> {
    check::batch_norm(
        "batch_norm_forward",
        p,
        &[x.len, y.len],
        &[stats.len],
        &[weight.len, bias.len],
    )?;
    let bufs = [
        (X, x),
        (STATS_IN, stats),
        (WEIGHT, weight),
        (BIAS, bias),
        (DST, &*y),
    ];
    gpu.dispatch(FORWARD, &bn_params(p)?, &bufs, gpu.grid(p.shape.len())?)
}

pub(in crate::backend::gpu) fn batch_norm_backward_params(
    gpu: &GpuBackend,
    p: &BatchNorm,
    x: &GpuBuffer,
    dy: &GpuBuffer,
    stats: &GpuBuffer,
    dweight: &mut GpuBuffer,
    dbias: &mut GpuBuffer,
) -> Result<()> {
    check::batch_norm(
        "batch_norm_backward_params",
        p,
        &[x.len, dy.len],
        &[stats.len],
        &[dweight.len, dbias.len],
    )?;
    let bufs = [
        (X, x),
        (DY, dy),
        (STATS_IN, stats),
        (DWEIGHT_OUT, &*dweight),
        (DBIAS_OUT, &*dbias),
    ];
    let groups = gpu.grid_groups(p.shape.channels)?;
    gpu.dispatch(BACKWARD_PARAMS, &bn_params(p)?, &bufs, groups)
}

#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn batch_norm_backward_input(
    gpu: &GpuBackend,
    p: &BatchNorm,
    x: &GpuBuffer,
    dy: &GpuBuffer,
    stats: &GpuBuffer,
    weight: &GpuBuffer,
    dweight: &GpuBuffer,
    dbias: &GpuBuffer,
    dx: &mut GpuBuffer,
) -> Result<()> {
    check::batch_norm(
        "batch_norm_backward_input",
        p,
        &[x.len, dy.len, dx.len],
        &[stats.len],
        &[weight.len, dweight.len, dbias.len],
    )?;
    let bufs = [
        (X, x),
        (DY, dy),
        (STATS_IN, stats),
        (WEIGHT, weight),
        (DWEIGHT_IN, dweight),
        (DBIAS_IN, dbias),
        (DST, &*dx),
    ];
    let grid = gpu.grid(p.shape.len())?;
    gpu.dispatch(BACKWARD_INPUT, &bn_params(p)?, &bufs, grid)
}
