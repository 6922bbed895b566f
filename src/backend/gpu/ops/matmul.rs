//! matmul: the matrix product (shaders/matmul.wgsl), and the tile sizes of the register-tiled
//! GEMM core (shaders/gemm_tile.wgsl) that it and conv2d share.

use bytemuck::{Pod, Zeroable};

use super::to_u32;
use crate::backend::gpu::dispatch::{shader, Constants, Kernel, Shader};
use crate::backend::gpu::{GpuBackend, GpuBuffer};
use crate::backend::{check, Matmul};
use crate::Result;

const SHADER: Shader = shader!("matmul.wgsl", after "gemm_tile.wgsl");
const MATMUL: Kernel = Kernel::new(SHADER, "matmul");

// matmul.wgsl's bindings (0 is the uniform).
const A: u32 = 1;
const B: u32 = 2;
const C: u32 = 3;

/// matmul.wgsl's `MatmulParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct MatmulParams {
    m: u32,
    k: u32,
    n: u32,
    trans_a: u32,
    trans_b: u32,
    _pad: [u32; 3],
}

/// Outputs per thread along one side of the GEMM tile (gemm_tile.wgsl's TM or TN): the largest
/// of 4, 2, 1 whose tile (16 threads × it) the dimension still fills by more than half.
pub(super) fn gemm_per_thread(len: usize) -> u32 {
    if len > 32 {
        4
    } else if len > 16 {
        2
    } else {
        1
    }
}

/// The smallest number of 128×128 tiles for which [`matmul_per_thread`] picks them: four
/// waves of workgroups on a 132-SM GPU, so that the last wave's idle SMs cost little.
const BIG_TILES_MIN: usize = 4 * 128;

/// TM and TN of a matrix product: 8×8 a thread (128×128 tiles, which reached 26.5 TFLOP/s at
/// 4096³ on an H200 where 64×64 tiles reached 18.5; ../shared/docs/PERFORMANCE.md) when the
/// product has at least [`BIG_TILES_MIN`] of them, else [`gemm_per_thread`] of each side.
fn matmul_per_thread(m: usize, n: usize) -> (u32, u32) {
    if m >= 128 && n >= 128 && (m / 128) * (n / 128) >= BIG_TILES_MIN {
        (8, 8)
    } else {
        (gemm_per_thread(m), gemm_per_thread(n))
    }
}

/// The workgroup grid of an M×N GEMM with tiles of (16·tm)×(16·tn) and K split `splits` ways.
/// Without a K-split, column tiles past the per-dimension limit fold over z (the kernels take
/// tile `wg.x + wg.z · groups.x`), so large batches need no special case.
pub(super) fn gemm_grid(
    m: usize,
    n: usize,
    tm: u32,
    tn: u32,
    splits: usize,
    max: u32,
) -> Result<[u32; 3]> {
    let cols = n.div_ceil(16 * tn as usize);
    let rows = to_u32("GEMM row tiles", m.div_ceil(16 * tm as usize))?;
    let max = max as usize;
    let (x, z) = if splits == 1 && cols > max {
        (max, cols.div_ceil(max))
    } else {
        (cols, splits)
    };
    Ok([to_u32("GEMM column tiles", x)?, rows, to_u32("GEMM z", z)?])
}

pub(in crate::backend::gpu) fn matmul(
    gpu: &GpuBackend,
    p: &Matmul,
    a: &GpuBuffer,
    b: &GpuBuffer,
    c: &mut GpuBuffer,
) -> Result<()> {
    check::matmul(p, a.len, b.len, c.len)?;
    let params = MatmulParams {
        m: to_u32("m", p.m)?,
        k: to_u32("k", p.k)?,
        n: to_u32("n", p.n)?,
        trans_a: p.trans_a as u32,
        trans_b: p.trans_b as u32,
        _pad: [0; 3],
    };
    let (tm, tn) = matmul_per_thread(p.m, p.n);
    let grid = gemm_grid(p.m, p.n, tm, tn, 1, gpu.max_workgroups())?;
    gpu.next_flops(2.0 * (p.m * p.n * p.k) as f64);
    gpu.dispatch_with(
        MATMUL,
        Constants::of(&[("TM", tm), ("TN", tn)]),
        &params,
        &[(A, a), (B, b), (C, &*c)],
        grid,
    )
}
