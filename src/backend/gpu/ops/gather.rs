//! gather: a batch's images and labels from the resident dataset, plain or through per-image
//! affine maps (shaders/gather.wgsl).

use bytemuck::{Pod, Zeroable};

use super::to_u32;
use crate::backend::gpu::dispatch::{shader, Kernel, Shader};
use crate::backend::gpu::{GpuBackend, GpuBuffer};
use crate::backend::{check, Gather, GatherAffine};
use crate::Result;

const SHADER: Shader = shader!("gather.wgsl");
const GATHER_BATCH: Kernel = Kernel::new(SHADER, "gather_batch");
const GATHER_BATCH_AFFINE: Kernel = Kernel::new(SHADER, "gather_batch_affine");

// gather.wgsl's bindings (0 is the uniform).
const IMAGES: u32 = 1;
const LABELS: u32 = 2;
const PERM: u32 = 3;
/// The 256 normalised pixel values (the backend's `norm_table`): gather_batch only.
const TABLE: u32 = 4;
const X: u32 = 5;
const Y: u32 = 6;
/// gather_batch_affine only.
const AFFINE: u32 = 7;

/// gather.wgsl's `GatherParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct GatherParams {
    batch: u32,
    image_len: u32,
    offset: u32,
    /// Image width: gather_batch_affine only.
    cols: u32,
}

pub(in crate::backend::gpu) fn gather_batch(
    gpu: &GpuBackend,
    p: &Gather,
    images: &GpuBuffer,
    labels: &GpuBuffer,
    perm: &GpuBuffer,
    x: &mut GpuBuffer,
    y: &mut GpuBuffer,
) -> Result<()> {
    check::gather_batch(p, images.len, labels.len, perm.len, x.len, y.len)?;
    let params = GatherParams {
        batch: to_u32("batch", p.batch)?,
        image_len: to_u32("image_len", p.image_len)?,
        offset: to_u32("offset", p.offset)?,
        cols: 0,
    };
    let bufs = [
        (IMAGES, images),
        (LABELS, labels),
        (PERM, perm),
        (TABLE, &gpu.norm_table),
        (X, &*x),
        (Y, &*y),
    ];
    let grid = gpu.grid(p.batch * p.image_len)?;
    gpu.dispatch(GATHER_BATCH, &params, &bufs, grid)
}

#[allow(clippy::too_many_arguments)]
pub(in crate::backend::gpu) fn gather_batch_affine(
    gpu: &GpuBackend,
    p: &GatherAffine,
    images: &GpuBuffer,
    labels: &GpuBuffer,
    perm: &GpuBuffer,
    affine: &GpuBuffer,
    x: &mut GpuBuffer,
    y: &mut GpuBuffer,
) -> Result<()> {
    check::gather_batch_affine(
        p, images.len, labels.len, perm.len, affine.len, x.len, y.len,
    )?;
    let g = &p.gather;
    let params = GatherParams {
        batch: to_u32("batch", g.batch)?,
        image_len: to_u32("image_len", g.image_len)?,
        offset: to_u32("offset", g.offset)?,
        cols: to_u32("cols", p.cols)?,
    };
    let bufs = [
        (IMAGES, images),
        (LABELS, labels),
        (PERM, perm),
        (X, &*x),
        (Y, &*y),
        (AFFINE, affine),
    ];
    let grid = gpu.grid(g.batch * g.image_len)?;
    gpu.dispatch(GATHER_BATCH_AFFINE, &params, &bufs, grid)
}
