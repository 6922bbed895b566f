//! elementwise: the ReLU forward and backward, and the zero fill (shaders/elementwise.wgsl).

use bytemuck::{Pod, Zeroable};

use super::to_u32;
use crate::backend::check;
use crate::backend::gpu::dispatch::{shader, Kernel, Shader};
use crate::backend::gpu::{GpuBackend, GpuBuffer};
use crate::Result;

const SHADER: Shader = shader!("elementwise.wgsl");
const RELU_FORWARD: Kernel = Kernel::new(SHADER, "relu_forward");
const RELU_BACKWARD: Kernel = Kernel::new(SHADER, "relu_backward");
const FILL_ZERO: Kernel = Kernel::new(SHADER, "fill_zero");

// elementwise.wgsl's bindings (0 is the uniform).
const X: u32 = 1;
const DY: u32 = 2;
const DST: u32 = 3;

/// elementwise.wgsl's `ElementwiseParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct ElementwiseParams {
    len: u32,
    _pad: [u32; 3],
}

/// Records `kernel` over `len` elements, one thread each.
fn elementwise(
    gpu: &GpuBackend,
    kernel: Kernel,
    len: usize,
    bufs: &[(u32, &GpuBuffer)],
) -> Result<()> {
    let params = ElementwiseParams {
        len: to_u32("len", len)?,
        _pad: [0; 3],
    };
    gpu.dispatch(kernel, &params, bufs, gpu.grid(len)?)
}

pub(in crate::backend::gpu) fn fill_zero(gpu: &GpuBackend, buf: &mut GpuBuffer) -> Result<()> {
    elementwise(gpu, FILL_ZERO, buf.len, &[(DST, &*buf)])
}

pub(in crate::backend::gpu) fn relu_forward(
    gpu: &GpuBackend,
    len: usize,
    x: &GpuBuffer,
    y: &mut GpuBuffer,
) -> Result<()> {
    check::elementwise("relu_forward", len, &[x.len, y.len])?;
    elementwise(gpu, RELU_FORWARD, len, &[(X, x), (DST, &*y)])
}

pub(in crate::backend::gpu) fn relu_backward(
    gpu: &GpuBackend,
    len: usize,
    y: &GpuBuffer,
    dy: &GpuBuffer,
    dx: &mut GpuBuffer,
) -> Result<()> {
    check::elementwise("relu_backward", len, &[y.len, dy.len, dx.len])?;
    // y, the forward output, is the shader's x.
    elementwise(gpu, RELU_BACKWARD, len, &[(X, y), (DY, dy), (DST, &*dx)])
}
