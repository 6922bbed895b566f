// matmul: c[m,n] = Σ_k op(a)[m,k] · op(b)[k,n] (gemm_tile.wgsl is prepended).
// a is stored [m,k], or [k,m] when trans_a != 0; b is stored [k,n], or [n,k] when trans_b != 0.

struct MatmulParams {
    m: u32,
    k: u32,
    n: u32,
    trans_a: u32,
    trans_b: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
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
    c[m * p.n + n] = v;
}

// Dispatch: (column tiles, ceil(m / TILE_M), 1), the column tiles folded over z when they pass
// the per-dimension limit (tile wg.x + wg.z · groups.x).
@compute @workgroup_size(256)
fn matmul(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    gemm_tile(local, wg.y * TILE_M, (wg.x + wg.z * groups.x) * TILE_N, p.m, p.n, 0u, p.k, 0u);
}
