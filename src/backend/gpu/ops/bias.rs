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
    _pad: u32,
}

fn channel_params(p: &Channels) -> Result<ChannelParams> {
    Ok(ChannelParams {
        outer: to_u32("outer", p.outer)?,
        channels: to_u32("channels", p.channels)?,
        inner: to_u32("inner", p.inner)?,
        _pad: 0,
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
    let params = channel_params(p)?;
    let bufs = [(SRC, x), (DST, &*out)];
    gpu.dispatch(CHANNEL_SUM, &params, &bufs, gpu.grid_groups(p.channels)?)
}
