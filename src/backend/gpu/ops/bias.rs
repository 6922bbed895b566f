//! bias: the per-channel bias add and the channel sum that every bias gradient is
//! (shaders/bias.wgsl).

use bytemuck::{Pod, Zeroable};

use super::to_u32;
use crate::backend::gpu::dispatch::{shader, Kernel, Shader};
use crate::backend::gpu::{GpuBackend, GpuBuffer};
use crate::backend::{check, Channels};
use crate::Result;

const SHADER: Shader = shader!("bias.wgsl");
const BIAS_ADD: Kernel = Kernel::new(SHADER, "bias_add");
const CHANNEL_SUM: Kernel = Kernel::new(SHADER, "channel_sum");
const CHANNEL_SUM_PARTIAL: Kernel = Kernel::new(SHADER, "channel_sum_partial");

/// Workgroups a channel sum's first pass aims at: a few per SM of a 132-SM GPU.
const SUM_GROUPS: usize = 512;
/// Fewest elements a slice of a two-pass channel sum adds, so that slicing pays for the
/// second pass.
const SLICE_MIN: usize = 1024;

// bias.wgsl's bindings (0 is the uniform).
const SRC: u32 = 1;
const DST: u32 = 2;

/// bias.wgsl's `ChannelParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct ChannelParams {
    outer: u32,
    channels: u32,
    inner: u32,
    /// Slices per channel (channel_sum_partial only).
    chunks: u32,
}

fn channel_params(p: &Channels) -> Result<ChannelParams> {
    Ok(ChannelParams {
        outer: to_u32("outer", p.outer)?,
        channels: to_u32("channels", p.channels)?,
        inner: to_u32("inner", p.inner)?,
        chunks: 0,
    })
}

pub(in crate::backend::gpu) fn bias_add(
    gpu: &GpuBackend,
    p: &Channels,
    bias: &GpuBuffer,
    x: &mut GpuBuffer,
) -> Result<()> {
    check::channels("bias_add", p, bias.len, x.len)?;
    let params = channel_params(p)?;
    let bufs = [(SRC, bias), (DST, &*x)];
    gpu.dispatch(BIAS_ADD, &params, &bufs, gpu.grid(p.len())?)
}

pub(in crate::backend::gpu) fn channel_sum(
    gpu: &GpuBackend,
    p: &Channels,
    x: &GpuBuffer,
    out: &mut GpuBuffer,
) -> Result<()> {
    check::channels("channel_sum", p, out.len, x.len)?;
    // Few channels over many elements (conv1.b: 32 channels of batch·784) would leave most of
    // a GPU idle at one workgroup a channel: cut each channel into slices summed in parallel,
    // then add the slices up.
    let chunks = SUM_GROUPS
        .div_ceil(p.channels.max(1))
        .min(p.outer * p.inner / SLICE_MIN);
    if chunks <= 1 {
        let params = channel_params(p)?;
        let bufs = [(SRC, x), (DST, &*out)];
        return gpu.dispatch(CHANNEL_SUM, &params, &bufs, gpu.grid_groups(p.channels)?);
    }
    let partial = gpu.scratch(p.channels * chunks)?;
    let first = ChannelParams {
        chunks: to_u32("chunks", chunks)?,
        ..channel_params(p)?
    };
    let bufs = [(SRC, x), (DST, &*partial)];
    let grid = gpu.grid_groups(p.channels * chunks)?;
    gpu.dispatch(CHANNEL_SUM_PARTIAL, &first, &bufs, grid)?;
    let slices = Channels {
        outer: 1,
        channels: p.channels,
        inner: chunks,
    };
    let bufs = [(SRC, &*partial), (DST, &*out)];
    let grid = gpu.grid_groups(p.channels)?;
    gpu.dispatch(CHANNEL_SUM, &channel_params(&slices)?, &bufs, grid)
}
