// matmul: c[m,n] = Σ_k op(a)[m,k] · op(b)[k,n] (gemm_tile.wgsl is prepended).
// a is stored [m,k], or [k,m] when trans_a != 0; b is stored [k,n], or [n,k] when trans_b != 0.
// With splits > 1 (a long K under too few tiles to fill the GPU: fc1's forward), workgroup z
// computes K-slice z, [z·k_chunk, (z + 1)·k_chunk), into c[z, m, cols], and matmul_reduce adds
// the slices up and applies the epilogue.
//
// EPILOGUE (an override) is what each output of the product goes through before it is stored:
//   0  c[m,n] = product
//   1  c[m,n] = product + aux[n]                        (aux = a bias [n])
//   2  c[m,n] = relu(product + aux[n])                  (aux = a bias [n])
//   3  c[m,n] = product where aux[m,n] > 0, else 0      (aux = a ReLU's output [m,n])
//   4  c[m,n] = product, and sums[m] = Σ_k op(a)[m,k]: B gets a column of ones at n = p.n
//      (so the product has cols = n + 1 columns) whose outputs go to sums.
// aux and sums are bound only where an epilogue reads them; other dispatches bind stand-ins.
override EPILOGUE: u32 = 0u;

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
@group(0) @binding(4) var<storage, read> aux: array<f32>;
@group(0) @binding(5) var<storage, read_write> sums: array<f32>;

// The product's columns: n, and the column of ones of EPILOGUE 4.
fn cols() -> u32 {
    if EPILOGUE == 4u {
        return p.n + 1u;
    }
    return p.n;
}

fn load_a(m: u32, k: u32) -> f32 {
    if p.trans_a != 0u {
        return a[k * p.m + m];
    }
    return a[m * p.k + k];
}

fn load_b(k: u32, n: u32) -> f32 {
    if EPILOGUE == 4u && n == p.n {
        return 1.0;
    }
    if p.trans_b != 0u {
        return b[n * p.k + k];
    }
    return b[k * p.n + n];
}

// The vec4 core's column hooks (gemm_vec4.wgsl): a matrix column needs no offsets.
fn b_column(n: u32) -> vec4<i32> {
    return vec4<i32>(0);
}

fn load_b_at(k: u32, n: u32, col: vec4<i32>) -> f32 {
    return load_b(k, n);
}

// Stores the whole product's output (m, n) through the epilogue. The ReLU is written as the
// CPU backend's `if v > 0 { v } else { 0 }`, so -0 and NaN give +0 on both.
fn finish(m: u32, n: u32, v: f32) {
    if EPILOGUE == 4u && n == p.n {
        sums[m] = v;
        return;
    }
    var out = v;
    if EPILOGUE == 1u || EPILOGUE == 2u {
        out = v + aux[n];
    }
    if EPILOGUE == 2u {
        out = select(0.0, out, out > 0.0);
    }
    if EPILOGUE == 3u {
        out = select(0.0, v, aux[m * p.n + n] > 0.0);
    }
    c[m * p.n + n] = out;
}

fn store_c(m: u32, n: u32, z: u32, v: f32) {
    if p.splits > 1u {
        c[(z * p.m + m) * cols() + n] = v;
    } else {
        finish(m, n, v);
    }
}

// Dispatch: (column tiles, ceil(m / TILE_M), 1), the column tiles folded over z when they pass
// the per-dimension limit (tile wg.x + wg.z · groups.x); with splits > 1, (column tiles,
// row tiles, splits).
@compute @workgroup_size(256)
fn matmul(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    if p.splits > 1u {
        let k_begin = min(p.k, wg.z * p.k_chunk);
        let k_end = min(p.k, k_begin + p.k_chunk);
        gemm_tile(local, wg.y * TILE_M, wg.x * TILE_N, p.m, cols(), k_begin, k_end, wg.z);
    } else {
        gemm_tile(local, wg.y * TILE_M, (wg.x + wg.z * groups.x) * TILE_N, p.m, cols(), 0u, p.k, 0u);
    }
}

// The K-split's second pass: output i of the product is Σ_z a[z, i] over the splits (a = the
// slices, [splits, m, cols]), stored through the epilogue. Dispatch: ceil(m·cols / 64) (x, y
// split).
@compute @workgroup_size(64)
fn matmul_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 64u;
    let len = p.m * cols();
    if i >= len {
        return;
    }
    var sum = 0.0;
    for (var z = 0u; z < p.splits; z++) {
        sum += a[z * len + i];
    }
    finish(i / cols(), i % cols(), sum);
}
