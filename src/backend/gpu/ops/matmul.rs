//! matmul: the matrix product (shaders/matmul.wgsl), and the tile sizes of the register-tiled
//! GEMM core (shaders/gemm_tile.wgsl) that it and conv2d share.

use bytemuck::{Pod, Zeroable};

use super::to_u32;
use crate::backend::gpu::dispatch::{shader, Constants, Kernel, Shader};
use crate::backend::gpu::{GemmVariant, GpuBackend, GpuBuffer};
use crate::backend::{check, Matmul};
use crate::Result;

/// matmul.wgsl on the GEMM core `v`.
fn shader(v: GemmVariant) -> Shader {
    match v {
        GemmVariant::Baseline => shader!("matmul.wgsl", after "gemm_tile.wgsl"),
        GemmVariant::Vec4 => {
            shader!("matmul.wgsl", after "gemm_vec4.wgsl", named "matmul.wgsl+vec4")
        }
    }
}
/// matmul_reduce's threads per workgroup (its `@workgroup_size`).
const REDUCE_WORKGROUP: usize = 64;
/// Workgroups a dispatch needs to occupy every SM of an H100/H200 (132 SMs).
const FILL: usize = 132;
/// The shortest K-slice of a split product: one K-tile (batch-1024 fc2 forward has K = 64).
const K_CHUNK_MIN: usize = 16;

// matmul.wgsl's bindings (0 is the uniform).
const A: u32 = 1;
const B: u32 = 2;
const C: u32 = 3;
const AUX: u32 = 4;
const SUMS: u32 = 5;

/// What a product's outputs go through before they are stored (matmul.wgsl's EPILOGUE), with
/// the buffer it reads or writes.
#[derive(Clone, Copy)]
pub(in crate::backend::gpu) enum Epilogue<'a> {
    None,
    /// `+ bias[n]`, then the ReLU when `relu`.
    Bias {
        bias: &'a GpuBuffer,
        relu: bool,
    },
    /// Zero where the ReLU output `y[m, n]` is not positive.
    ReluMask {
        y: &'a GpuBuffer,
    },
    /// The row sums of op(a) into `sums` (a column of ones appended to B).
    RowSums {
        sums: &'a GpuBuffer,
    },
}

impl Epilogue<'_> {
    fn code(&self) -> u32 {
        match self {
            Epilogue::None => 0,
            Epilogue::Bias { relu: false, .. } => 1,
            Epilogue::Bias { relu: true, .. } => 2,
            Epilogue::ReluMask { .. } => 3,
            Epilogue::RowSums { .. } => 4,
        }
    }
}

/// matmul.wgsl's `MatmulParams`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
struct MatmulParams {
    m: u32,
    k: u32,
    n: u32,
    trans_a: u32,
    trans_b: u32,
    splits: u32,
    k_chunk: u32,
    _pad: u32,
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
pub(super) const BIG_TILES_MIN: usize = 4 * 128;

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
    epilogue: Epilogue,
    a: &GpuBuffer,
    b: &GpuBuffer,
    c: &mut GpuBuffer,
) -> Result<()> {
    check::matmul(p, a.len, b.len, c.len)?;
    // The stand-ins for bindings the epilogue does not use: `a` for aux (read-only), the
    // backend's one-word buffer for sums (read-write).
    let (aux, sums, cols) = match epilogue {
        Epilogue::None => (a, gpu.stand_in(), p.n),
        Epilogue::Bias { bias, .. } => {
            check::matmul_epilogue("matmul_bias", p, bias.len, p.n)?;
            (bias, gpu.stand_in(), p.n)
        }
        Epilogue::ReluMask { y } => {
            check::matmul_epilogue("matmul_relu_backward", p, y.len, p.m * p.n)?;
            (y, gpu.stand_in(), p.n)
        }
        Epilogue::RowSums { sums } => {
            check::matmul_epilogue("matmul_row_sums", p, sums.len, p.m)?;
            (a, sums, p.n + 1)
        }
    };
    let max = gpu.max_workgroups() as usize;
    let (tm, tn) = narrowed(p.m, cols, matmul_per_thread(p.m, cols), max);
    let tiles = p.m.div_ceil(16 * tm as usize) * cols.div_ceil(16 * tn as usize);
    // Still too few tiles: split a long K into slices of at least K_CHUNK_MIN.
    let wanted = (2 * FILL).div_ceil(tiles).min(p.k / K_CHUNK_MIN).min(max);
    let fits = cols.div_ceil(16 * tn as usize) <= max && p.m.div_ceil(16 * tm as usize) <= max;
    // Only products big enough to matter (≥ 1 MFLOP): a split adds a dispatch.
    let big = 2 * p.m * p.n * p.k >= 1_000_000;
    let (splits, k_chunk) = if tiles < FILL && wanted > 1 && fits && big {
        let k_chunk = p.k.div_ceil(wanted).next_multiple_of(16);
        (p.k.div_ceil(k_chunk), k_chunk)
    } else {
        (1, p.k)
    };
    let params = MatmulParams {
        m: to_u32("m", p.m)?,
        k: to_u32("k", p.k)?,
        n: to_u32("n", p.n)?,
        trans_a: p.trans_a as u32,
        trans_b: p.trans_b as u32,
        splits: to_u32("splits", splits)?,
        k_chunk: to_u32("k_chunk", k_chunk)?,
        _pad: 0,
    };
    let grid = gemm_grid(p.m, cols, tm, tn, splits, gpu.max_workgroups())?;
    let constants = Constants::of(&[("TM", tm), ("TN", tn), ("EPILOGUE", epilogue.code())]);
    let module = shader(gpu.gemm_variant());
    let gemm = Kernel::new(module, "matmul");
    gpu.next_flops(2.0 * (p.m * p.n * p.k) as f64);
    if splits == 1 {
        let bufs = [(A, a), (B, b), (C, &*c), (AUX, aux), (SUMS, sums)];
        return gpu.dispatch_with(gemm, constants, &params, &bufs, grid);
    }
    let partial = gpu.scratch(splits * p.m * cols)?;
    let bufs = [
        (A, a),
        (B, b),
        (C, &*partial),
        (AUX, a),
        (SUMS, gpu.stand_in()),
    ];
    gpu.dispatch_with(gemm, constants, &params, &bufs, grid)?;
    // The reduce binds the slices as a.
    let groups = gpu.grid_groups((p.m * cols).div_ceil(REDUCE_WORKGROUP))?;
    let bufs = [(A, &*partial), (C, &*c), (AUX, aux), (SUMS, sums)];
    let constants = Constants::of(&[("EPILOGUE", epilogue.code())]);
    gpu.dispatch_with(
        Kernel::new(module, "matmul_reduce"),
        constants,
        &params,
        &bufs,
        groups,
    )
}

/// `(tm, tn)` halved, the larger first, while the M×N product has fewer than [`FILL`] tiles, a
/// side is above 1 a thread and the tiles of each side stay within `max` (the per-dimension
/// limit): a product too small to fill the GPU spreads over more workgroups (each output
/// still sums its K in the same order).
fn narrowed(m: usize, n: usize, (mut tm, mut tn): (u32, u32), max: usize) -> (u32, u32) {
    let rows = |tm: u32| m.div_ceil(16 * tm as usize);
    let cols = |tn: u32| n.div_ceil(16 * tn as usize);
    while rows(tm) * cols(tn) < FILL {
        if tm >= tn && tm > 1 && rows(tm / 2) <= max {
            tm /= 2;
        } else if tn > 1 && cols(tn / 2) <= max {
            tn /= 2;
        } else if tm > 1 && rows(tm / 2) <= max {
            tm /= 2;
        } else {
            break;
        }
    }
    (tm, tn)
}
