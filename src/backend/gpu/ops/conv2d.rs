//! conv2d: the convolution's three passes as implicit GEMMs (shaders/conv2d.wgsl, on the
//! gemm_tile.wgsl core), the weight gradient's split-K reduction, and the bias gradient (a
//! channel sum).

use bytemuck::{Pod, Zeroable};

use super::bias::channel_sum;
use super::matmul::{gemm_grid, gemm_per_thread, BIG_TILES_MIN};
use super::to_u32;
use crate::backend::gpu::dispatch::{shader, Constants, Kernel, Shader};
use crate::backend::gpu::{GemmVariant, GpuBackend, GpuBuffer};
use crate::backend::{check, Channels, Conv2d};
use crate::Result;

/// conv2d.wgsl on the GEMM core `v`.
fn shader(v: GemmVariant) -> Shader {
    match v {
        GemmVariant::Baseline => shader!("conv2d.wgsl", after "gemm_tile.wgsl"),
        GemmVariant::Vec4 => {
            shader!("conv2d.wgsl", after "gemm_vec4.wgsl", named "conv2d.wgsl+vec4")
        }
    }
}

/// A GEMM pass: its entry point, and the value of the MODE override that picks the operands
/// of the GEMM body the passes share (see the shader).
#[derive(Clone, Copy)]
struct Pass {
    entry: &'static str,
    mode: u32,
}

const FORWARD: Pass = Pass {
    entry: "conv2d_forward",
    mode: 0,
};
const BACKWARD_INPUT: Pass = Pass {
    entry: "conv2d_backward_input",
    mode: 1,
};
const BACKWARD_WEIGHT: Pass = Pass {
    entry: "conv2d_backward_weight",
    mode: 2,
};
/// The weight gradient's second pass when K was split.
const BACKWARD_WEIGHT_REDUCE: &str = "conv2d_backward_weight_reduce";
/// Its threads per workgroup (conv2d.wgsl's `@workgroup_size`).
const REDUCE_WORKGROUP: usize = 64;

// conv2d.wgsl's bindings (0 is the uniform): the GEMM's A and B operands, the bias (read by
// the forward pass only; the others bind any read-only buffer there), and the output.
const LHS: u32 = 1;
const RHS: u32 = 2;
const AUX: u32 = 3;
const DST: u32 = 4;
/// The bias gradient of conv2d_backward_params (other dispatches bind the stand-in).
const DBIAS: u32 = 5;

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
/// `k_chunk`; `bias_grad` (0 or 1) is the weight gradient's column of ones (conv2d.wgsl's
/// BIAS_GRAD), which N counts.
fn conv_gemm(
    gpu: &GpuBackend,
    pass: Pass,
    p: &Conv2d,
    (m, n, k): (usize, usize, usize),
    (splits, k_chunk): (usize, usize),
    bias_grad: u32,
    bufs: &[(u32, &GpuBuffer)],
) -> Result<()> {
    let (tm, mut tn) = (gemm_per_thread(m), gemm_per_thread(n));
    // The vec4 core takes 4×8 outputs a thread (64×128 tiles) where the rows fill a 64-row
    // tile and the columns still give BIG_TILES_MIN tiles (batch-1024 conv2 forward: 1,568).
    if gpu.gemm_variant() == GemmVariant::Vec4
        && tm == 4
        && m.div_ceil(64) * n.div_ceil(128) >= BIG_TILES_MIN
    {
        tn = 8;
    }
    let mut constants = conv_constants(p)?;
    constants.extend(&[
        ("MODE", pass.mode),
        ("TM", tm),
        ("TN", tn),
        ("BIAS_GRAD", bias_grad),
    ]);
    let params = ConvParams {
        batch: to_u32("batch", p.batch)?,
        splits: to_u32("splits", splits)?,
        k_chunk: to_u32("k_chunk", k_chunk)?,
        _pad: 0,
    };
    let grid = gemm_grid(m, n, tm, tn, splits, gpu.max_workgroups())?;
    // The FLOPs of the product itself, without the ones column.
    let n_taps = n - bias_grad as usize;
    gpu.next_flops(2.0 * (m * n_taps * k) as f64);
    let kernel = Kernel::new(shader(gpu.gemm_variant()), pass.entry);
    gpu.dispatch_with(kernel, constants, &params, bufs, grid)
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
    let bufs = [
        (LHS, w),
        (RHS, x),
        (AUX, bias),
        (DST, &*out),
        (DBIAS, gpu.stand_in()),
    ];
    conv_gemm(gpu, FORWARD, p, mnk, (1, 0), 0, &bufs)
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
    let bufs = [
        (LHS, w),
        (RHS, dout),
        (AUX, w),
        (DST, &*dx),
        (DBIAS, gpu.stand_in()),
    ];
    conv_gemm(gpu, BACKWARD_INPUT, p, mnk, (1, 0), 0, &bufs)
}

pub(in crate::backend::gpu) fn conv2d_backward_weight(
    gpu: &GpuBackend,
    p: &Conv2d,
    x: &GpuBuffer,
    dout: &GpuBuffer,
    dw: &mut GpuBuffer,
) -> Result<()> {
    check::conv2d_backward_weight(p, x.len, dout.len, dw.len)?;
    weight_gradient(gpu, p, x, dout, dw, None)
}

pub(in crate::backend::gpu) fn conv2d_backward_params(
    gpu: &GpuBackend,
    p: &Conv2d,
    x: &GpuBuffer,
    dout: &GpuBuffer,
    dw: &mut GpuBuffer,
    dbias: &mut GpuBuffer,
) -> Result<()> {
    check::conv2d_backward_weight(p, x.len, dout.len, dw.len)?;
    check::conv2d_backward_bias(p, dout.len, dbias.len)?;
    weight_gradient(gpu, p, x, dout, dw, Some(&*dbias))
}

/// The weight gradient's GEMM, with the bias gradient as its column of ones when `dbias` is
/// given.
fn weight_gradient(
    gpu: &GpuBackend,
    p: &Conv2d,
    x: &GpuBuffer,
    dout: &GpuBuffer,
    dw: &GpuBuffer,
    dbias: Option<&GpuBuffer>,
) -> Result<()> {
    let bias_grad = dbias.is_some() as usize;
    let dbias = dbias.unwrap_or(gpu.stand_in());
    // K = batch·OH·OW is large and M×N = Cout × Cin·KH·KW small: split K over enough
    // workgroups to fill the GPU (≥ 256 each), then add the slices up.
    let (m, n) = (
        p.out_channels,
        p.in_channels * p.kernel_h * p.kernel_w + bias_grad,
    );
    let k = p.batch * p.out_h() * p.out_w();
    let tiles =
        m.div_ceil(16 * gemm_per_thread(m) as usize) * n.div_ceil(16 * gemm_per_thread(n) as usize);
    // The splits run over z: at most the per-dimension limit of them.
    let wanted = (512 / tiles).clamp(1, gpu.max_workgroups() as usize);
    let k_chunk = k.div_ceil(wanted).max(256).next_multiple_of(16);
    let splits = k.div_ceil(k_chunk);
    let ones = bias_grad as u32;
    if splits == 1 {
        // AUX is unused in this pass; dout stands in for it.
        let bufs = [
            (LHS, dout),
            (RHS, x),
            (AUX, dout),
            (DST, dw),
            (DBIAS, dbias),
        ];
        return conv_gemm(
            gpu,
            BACKWARD_WEIGHT,
            p,
            (m, n, k),
            (1, k_chunk),
            ones,
            &bufs,
        );
    }
    let partial = gpu.scratch(splits * m * n)?;
    let bufs = [
        (LHS, dout),
        (RHS, x),
        (AUX, dout),
        (DST, &*partial),
        (DBIAS, gpu.stand_in()),
    ];
    conv_gemm(
        gpu,
        BACKWARD_WEIGHT,
        p,
        (m, n, k),
        (splits, k_chunk),
        ones,
        &bufs,
    )?;
    let params = ConvParams {
        batch: to_u32("batch", p.batch)?,
        splits: splits as u32,
        k_chunk: 0,
        _pad: 0,
    };
    let mut constants = conv_constants(p)?;
    constants.extend(&[("BIAS_GRAD", ones)]);
    let reduce = [(LHS, &*partial), (DST, dw), (DBIAS, dbias)];
    gpu.dispatch_with(
        Kernel::new(shader(gpu.gemm_variant()), BACKWARD_WEIGHT_REDUCE),
        constants,
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
