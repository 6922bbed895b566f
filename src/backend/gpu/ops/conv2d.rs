//! conv2d: the convolution's three passes as implicit GEMMs (shaders/conv2d.wgsl, on the
//! gemm_tile.wgsl core), the weight gradient's split-K reduction, and the bias gradient (a
//! channel sum).

use bytemuck::{Pod, Zeroable};

use super::bias::channel_sum;
use super::matmul::{gemm_grid, gemm_per_thread};
use super::to_u32;
use crate::backend::gpu::dispatch::{shader, Constants, Kernel, Shader};
use crate::backend::gpu::{GpuBackend, GpuBuffer};
use crate::backend::{check, Channels, Conv2d};
use crate::Result;

const SHADER: Shader = shader!("conv2d.wgsl", after "gemm_tile.wgsl");

/// A GEMM pass: its entry point, and the value of the MODE override that picks the operands
/// of the GEMM body the passes share (see the shader).
#[derive(Clone, Copy)]
struct Pass {
    kernel: Kernel,
    mode: u32,
}

const FORWARD: Pass = Pass {
    kernel: Kernel::new(SHADER, "conv2d_forward"),
    mode: 0,
};
const BACKWARD_INPUT: Pass = Pass {
    kernel: Kernel::new(SHADER, "conv2d_backward_input"),
    mode: 1,
};
const BACKWARD_WEIGHT: Pass = Pass {
    kernel: Kernel::new(SHADER, "conv2d_backward_weight"),
    mode: 2,
};
/// The weight gradient's second pass when K was split.
const BACKWARD_WEIGHT_REDUCE: Kernel = Kernel::new(SHADER, "conv2d_backward_weight_reduce");
/// Its threads per workgroup (conv2d.wgsl's `@workgroup_size`).
const REDUCE_WORKGROUP: usize = 64;

// conv2d.wgsl's bindings (0 is the uniform): the GEMM's A and B operands, the bias (read by
// the forward pass only; the others bind any read-only buffer there), and the output.
const LHS: u32 = 1;
const RHS: u32 = 2;
const AUX: u32 = 3;
const DST: u32 = 4;

/// conv2d.wgsl's `ConvParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct ConvParams {
    batch: u32,
    splits: u32,
    k_chunk: u32,
    _pad: u32,
}

/// conv2d.wgsl's shape constants.
fn conv_constants(p: &Conv2d) -> Result<Constants> {
    Ok(Constants::of(&[
        ("CIN", to_u32("in_channels", p.in_channels)?),
        ("H", to_u32("in_h", p.in_h)?),
        ("W", to_u32("in_w", p.in_w)?),
        ("COUT", to_u32("out_channels", p.out_channels)?),
        ("KH", to_u32("kernel_h", p.kernel_h)?),
        ("KW", to_u32("kernel_w", p.kernel_w)?),
        ("STRIDE", to_u32("stride", p.stride)?),
        ("PAD", to_u32("padding", p.padding)?),
        ("OH", to_u32("out_h", p.out_h())?),
        ("OW", to_u32("out_w", p.out_w())?),
    ]))
}

/// Records one GEMM pass over an M×N×K product with K split `splits` ways in chunks of
/// `k_chunk`.
fn conv_gemm(
    gpu: &GpuBackend,
    pass: Pass,
    p: &Conv2d,
    (m, n, k): (usize, usize, usize),
    (splits, k_chunk): (usize, usize),
    bufs: &[(u32, &GpuBuffer)],
) -> Result<()> {
    let (tm, tn) = (gemm_per_thread(m), gemm_per_thread(n));
    let mut constants = conv_constants(p)?;
    constants.extend(&[("MODE", pass.mode), ("TM", tm), ("TN", tn)]);
    let params = ConvParams {
        batch: to_u32("batch", p.batch)?,
        splits: to_u32("splits", splits)?,
        k_chunk: to_u32("k_chunk", k_chunk)?,
        _pad: 0,
    };
    let grid = gemm_grid(m, n, tm, tn, splits, gpu.max_workgroups())?;
    gpu.next_flops(2.0 * (m * n * k) as f64);
    gpu.dispatch_with(pass.kernel, constants, &params, bufs, grid)
}

pub(in crate::backend::gpu) fn conv2d_forward(
    gpu: &GpuBackend,
    p: &Conv2d,
    x: &GpuBuffer,
    w: &GpuBuffer,
    bias: &GpuBuffer,
    out: &mut GpuBuffer,
) -> Result<()> {
    check::conv2d_forward(p, x.len, w.len, bias.len, out.len)?;
    let k = p.in_channels * p.kernel_h * p.kernel_w;
    let mnk = (p.out_channels, p.batch * p.out_h() * p.out_w(), k);
    let bufs = [(LHS, w), (RHS, x), (AUX, bias), (DST, &*out)];
    conv_gemm(gpu, FORWARD, p, mnk, (1, 0), &bufs)
}

pub(in crate::backend::gpu) fn conv2d_backward_input(
    gpu: &GpuBackend,
    p: &Conv2d,
    dout: &GpuBuffer,
    w: &GpuBuffer,
    dx: &mut GpuBuffer,
) -> Result<()> {
    check::conv2d_backward_input(p, dout.len, w.len, dx.len)?;
    let k = p.out_channels * p.kernel_h * p.kernel_w;
    let mnk = (p.in_channels, p.batch * p.in_h * p.in_w, k);
    // AUX is unused in this pass; w stands in for it.
    let bufs = [(LHS, w), (RHS, dout), (AUX, w), (DST, &*dx)];
    conv_gemm(gpu, BACKWARD_INPUT, p, mnk, (1, 0), &bufs)
}

pub(in crate::backend::gpu) fn conv2d_backward_weight(
    gpu: &GpuBackend,
    p: &Conv2d,
    x: &GpuBuffer,
    dout: &GpuBuffer,
    dw: &mut GpuBuffer,
) -> Result<()> {
    check::conv2d_backward_weight(p, x.len, dout.len, dw.len)?;
    // K = batch·OH·OW is large and M×N = Cout × Cin·KH·KW small: split K over enough
    // workgroups to fill the GPU (≥ 256 each), then add the slices up.
    let (m, n) = (p.out_channels, p.in_channels * p.kernel_h * p.kernel_w);
    let k = p.batch * p.out_h() * p.out_w();
    let tiles =
        m.div_ceil(16 * gemm_per_thread(m) as usize) * n.div_ceil(16 * gemm_per_thread(n) as usize);
    // The splits run over z: at most the per-dimension limit of them.
    let wanted = (512 / tiles).clamp(1, gpu.max_workgroups() as usize);
    let k_chunk = k.div_ceil(wanted).max(256).next_multiple_of(16);
    let splits = k.div_ceil(k_chunk);
    if splits == 1 {
        // AUX is unused in this pass; dout stands in for it.
        let bufs = [(LHS, dout), (RHS, x), (AUX, dout), (DST, &*dw)];
        return conv_gemm(gpu, BACKWARD_WEIGHT, p, (m, n, k), (1, k_chunk), &bufs);
    }
    let partial = gpu.scratch(splits * m * n)?;
    let bufs = [(LHS, dout), (RHS, x), (AUX, dout), (DST, &*partial)];
    conv_gemm(gpu, BACKWARD_WEIGHT, p, (m, n, k), (splits, k_chunk), &bufs)?;
    let params = ConvParams {
        batch: to_u32("batch", p.batch)?,
        splits: splits as u32,
        k_chunk: 0,
        _pad: 0,
    };
    let reduce = [(LHS, &*partial), (DST, &*dw)];
    gpu.dispatch_with(
        BACKWARD_WEIGHT_REDUCE,
        conv_constants(p)?,
        &params,
        &reduce,
        gpu.grid_groups((m * n).div_ceil(REDUCE_WORKGROUP))?,
    )
}

pub(in crate::backend::gpu) fn conv2d_backward_bias(
    gpu: &GpuBackend,
    p: &Conv2d,
    dout: &GpuBuffer,
    dbias: &mut GpuBuffer,
) -> Result<()> {
    check::conv2d_backward_bias(p, dout.len, dbias.len)?;
    let c = Channels {
        outer: p.batch,
        channels: p.out_channels,
        inner: p.out_h() * p.out_w(),
    };
    channel_sum(gpu, &c, dout, dbias)
}
