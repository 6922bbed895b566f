//! pool2d: max and average pooling, forward and backward, and max pooling fused with the ReLU
//! before it (shaders/pool2d.wgsl).

use bytemuck::{Pod, Zeroable};

use super::to_u32;
use crate::backend::gpu::dispatch::{shader, Constants, Kernel, Shader};
use crate::backend::gpu::{GpuBackend, GpuBuffer};
use crate::backend::{check, Pool2d};
use crate::Result;

const SHADER: Shader = shader!("pool2d.wgsl");

/// A pooling entry point, and whether it fuses the ReLU before it (the RELU override: the
/// relu_ entry points run the same bodies as the plain ones).
#[derive(Clone, Copy)]
struct Pass {
    kernel: Kernel,
    relu: bool,
}

const fn pass(entry: &'static str, relu: bool) -> Pass {
    Pass {
        kernel: Kernel::new(SHADER, entry),
        relu,
    }
}

const MAXPOOL2D_FORWARD: Pass = pass("maxpool2d_forward", false);
const MAXPOOL2D_BACKWARD: Pass = pass("maxpool2d_backward", false);
const RELU_MAXPOOL2D_FORWARD: Pass = pass("relu_maxpool2d_forward", true);
const RELU_MAXPOOL2D_BACKWARD: Pass = pass("relu_maxpool2d_backward", true);
const AVGPOOL2D_FORWARD: Pass = pass("avgpool2d_forward", false);
const AVGPOOL2D_BACKWARD: Pass = pass("avgpool2d_backward", false);

// pool2d.wgsl's bindings (0 is the uniform).
const X: u32 = 1;
const DOUT: u32 = 2;
const DST: u32 = 3;

/// pool2d.wgsl's `PoolParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct PoolParams {
    planes: u32,
    _pad: [u32; 3],
}

/// Records one pooling pass over `threads` elements (outputs forward, inputs backward).
fn pool(
    gpu: &GpuBackend,
    pass: Pass,
    p: &Pool2d,
    threads: usize,
    bufs: &[(u32, &GpuBuffer)],
) -> Result<()> {
    let constants = Constants::of(&[
        ("H", to_u32("in_h", p.in_h)?),
        ("W", to_u32("in_w", p.in_w)?),
        ("KERNEL", to_u32("kernel", p.kernel)?),
        ("STRIDE", to_u32("stride", p.stride)?),
        ("OH", to_u32("out_h", p.out_h())?),
        ("OW", to_u32("out_w", p.out_w())?),
        ("RELU", u32::from(pass.relu)),
    ]);
    let params = PoolParams {
        planes: to_u32("batch·channels", p.batch * p.channels)?,
        _pad: [0; 3],
    };
    gpu.dispatch_with(pass.kernel, constants, &params, bufs, gpu.grid(threads)?)
}

/// A max-pool forward pass (plain or fused), its lengths checked under its entry's name.
fn maxpool_forward(
    gpu: &GpuBackend,
    pass: Pass,
    p: &Pool2d,
    x: &GpuBuffer,
    out: &GpuBuffer,
) -> Result<()> {
    check::pool2d(pass.kernel.entry, p, x.len, out.len)?;
    pool(gpu, pass, p, p.output_len(), &[(X, x), (DST, out)])
}

/// A max-pool backward pass (plain or fused), its lengths checked under its entry's name.
fn maxpool_backward(
    gpu: &GpuBackend,
    pass: Pass,
    p: &Pool2d,
    x: &GpuBuffer,
    dout: &GpuBuffer,
    dx: &GpuBuffer,
) -> Result<()> {
    let op = pass.kernel.entry;
    check::pool2d(op, p, x.len, dout.len)?;
    check::pool2d(op, p, dx.len, dout.len)?;
    pool(
        gpu,
        pass,
        p,
        p.input_len(),
        &[(X, x), (DOUT, dout), (DST, dx)],
    )
}

pub(in crate::backend::gpu) fn maxpool2d_forward(
    gpu: &GpuBackend,
    p: &Pool2d,
    x: &GpuBuffer,
    out: &mut GpuBuffer,
) -> Result<()> {
    maxpool_forward(gpu, MAXPOOL2D_FORWARD, p, x, out)
}

pub(in crate::backend::gpu) fn maxpool2d_backward(
    gpu: &GpuBackend,
    p: &Pool2d,
    x: &GpuBuffer,
    dout: &GpuBuffer,
    dx: &mut GpuBuffer,
) -> Result<()> {
    maxpool_backward(gpu, MAXPOOL2D_BACKWARD, p, x, dout, dx)
}

pub(in crate::backend::gpu) fn relu_maxpool2d_forward(
    gpu: &GpuBackend,
    p: &Pool2d,
    x: &GpuBuffer,
    out: &mut GpuBuffer,
) -> Result<()> {
    maxpool_forward(gpu, RELU_MAXPOOL2D_FORWARD, p, x, out)
}

pub(in crate::backend::gpu) fn relu_maxpool2d_backward(
    gpu: &GpuBackend,
    p: &Pool2d,
    x: &GpuBuffer,
    dout: &GpuBuffer,
    dx: &mut GpuBuffer,
) -> Result<()> {
    maxpool_backward(gpu, RELU_MAXPOOL2D_BACKWARD, p, x, dout, dx)
}

pub(in crate::backend::gpu) fn avgpool2d_forward(
    gpu: &GpuBackend,
    p: &Pool2d,
    x: &GpuBuffer,
    out: &mut GpuBuffer,
) -> Result<()> {
    check::pool2d("avgpool2d_forward", p, x.len, out.len)?;
    let bufs = [(X, x), (DST, &*out)];
    pool(gpu, AVGPOOL2D_FORWARD, p, p.output_len(), &bufs)
}

pub(in crate::backend::gpu) fn avgpool2d_backward(
    gpu: &GpuBackend,
    p: &Pool2d,
    dout: &GpuBuffer,
    dx: &mut GpuBuffer,
) -> Result<()> {
    check::pool2d("avgpool2d_backward", p, dx.len, dout.len)?;
    let bufs = [(DOUT, dout), (DST, &*dx)];
    pool(gpu, AVGPOOL2D_BACKWARD, p, p.input_len(), &bufs)
}
