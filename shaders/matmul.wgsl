// matmul: c[m,n] = Σ_k op(a)[m,k] · op(b)[k,n] (gemm_tile.wgsl is prepended).
// a is stored [m,k], or [k,m] when trans_a != 0; b is stored [k,n], or [n,k] when trans_b != 0.
// With splits > 1 (a long K under too few tiles to fill the GPU: fc1's forward), workgroup z
// computes K-slice z, [z·k_chunk, (z + 1)·k_chunk), into c[z, m, n], and matmul_reduce adds
// the slices up.

struct MatmulParams {
    m: u32,
    k: u32,
    n: u32,
    trans_a: u32,
    trans_b: u32,
    splits: u32,
    k_chunk: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: MatmulParams;
@group(0) @binding(1) var<storage, read> a: array<f32>;
@group(0) @binding(2) var<storage, read> b: array<f32>;
@group(0) @binding(3) var<storage, read_write> c: array<f32>;

fn load_a(m: u32, k: u32) -> f32 {
    if p.trans_a != 0u {
        return a[k * p.m + m];
    }
    return a[m * p.k + k];
}

fn load_b(k: u32, n: u32) -> f32 {
    if p.trans_b != 0u {
        return b[n * p.k + k];
    }
    return b[k * p.n + n];
}

fn store_c(m: u32, n: u32, z: u32, v: f32) {
    c[(z * p.m + m) * p.n + n] = v;
}

// Dispatch: (column tiles, ceil(m / TILE_M), 1), the column tiles folded over z when they pass
// the per-dimension limit (tile wg.x + wg.z · groups.x); with splits > 1, (column tiles,
// row tiles, splits).
@compute @workgroup_size(256)
fn matmul(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    if p.splits > 1u {
        let k_begin = min(p.k, wg.z * p.k_chunk);
        let k_end = min(p.k, k_begin + p.k_chunk);
        gemm_tile(local, wg.y * TILE_M, wg.x * TILE_N, p.m, p.n, k_begin, k_end, wg.z);
    } else {
        gemm_tile(local, wg.y * TILE_M, (wg.x + wg.z * groups.x) * TILE_N, p.m, p.n, 0u, p.k, 0u);
    }
}

// The K-split's second pass: c[i] = Σ_z a[z, i] over the splits (a = the slices). Dispatch:
// ceil(m·n / 64) (x, y split).
@compute @workgroup_size(64)
fn matmul_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 64u;
    let len = p.m * p.n;
    if i >= len {
        return;
    }
    var sum = 0.0;
    for (var z = 0u; z < p.splits; z++) {
        sum += a[z * len + i];
    }
    c[i] = sum;
}
