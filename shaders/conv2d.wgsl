// conv2d as implicit GEMM (gemm_tile.wgsl is prepended): no im2col buffer, the operands are
// gathered from the N,C,H,W tensors as the tile is loaded. One entry point per pass, each named
// after its Backend method; the three share one GEMM body whose operands the override MODE
// picks, and the host sets MODE to the entry point's number:
//   MODE 0, conv2d_forward:         out[Cout, B·OH·OW] = w[Cout, Cin·KH·KW] · im2col(x) + bias
//   MODE 1, conv2d_backward_input:  dx[Cin, B·H·W] = wᵀ-by-tap[Cin, Cout·KH·KW] · col(dout)
//   MODE 2, conv2d_backward_weight: dw[Cout, Cin·KH·KW] = dout[Cout, B·OH·OW] · im2col(x)ᵀ, with
//                                   K split over workgroup z into partial sums that
//                                   `conv2d_backward_weight_reduce` adds up.
//   With BIAS_GRAD = 1 (MODE 2 only), B gets a column of ones at n = Cin·KH·KW, so the product's
//   extra column is dbias[Cout] = Σ_k dout[co, k], written to dbias: the bias gradient summed by
//   the GEMM that already reads dout (conv2d_backward_params).
// Bindings: lhs is the A operand's buffer, rhs the B operand's, aux the bias (MODE 0; other
// modes bind any read-only buffer there), dst the output (or the K-split partials), dbias the
// bias gradient (BIAS_GRAD; other dispatches bind a stand-in).

// The layer's shape is fixed per pipeline (override constants), so every division and modulo
// below is by a constant that the driver's compiler turns into a multiply and shift; only the
// batch (which differs for a last partial batch) and the K-split travel in the uniform.
override MODE: u32 = 0u;
override CIN: u32 = 1u;
override H: u32 = 1u;
override W: u32 = 1u;
override COUT: u32 = 1u;
override KH: u32 = 1u;
override KW: u32 = 1u;
override STRIDE: u32 = 1u;
override PAD: u32 = 0u;
override OH: u32 = 1u;
override OW: u32 = 1u;
override BIAS_GRAD: u32 = 0u;

struct ConvParams {
    batch: u32,
    splits: u32,
    k_chunk: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> lhs: array<f32>;
@group(0) @binding(2) var<storage, read> rhs: array<f32>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;
@group(0) @binding(5) var<storage, read_write> dbias: array<f32>;

// The weight gradient's columns: Cin·KH·KW taps, and the column of ones of BIAS_GRAD.
fn weight_cols() -> u32 {
    return CIN * KH * KW + BIAS_GRAD;
}

// x[b, ci, oh·s − pad + kh, ow·s − pad + kw], zero in the padding. `tap` = (ci·KH + kh)·KW + kw,
// `pos` = (b·OH + oh)·OW + ow.
fn im2col(tap: u32, pos: u32) -> f32 {
    let taps = KH * KW;
    let ci = tap / taps;
    let r = tap % taps;
    let ky = r / KW;
    let kx = r % KW;
    let plane = OH * OW;
    let b = pos / plane;
    let s = pos % plane;
    let oy = s / OW;
    let ox = s % OW;
    let iy = i32(oy * STRIDE + ky) - i32(PAD);
    let ix = i32(ox * STRIDE + kx) - i32(PAD);
    if iy < 0 || ix < 0 || iy >= i32(H) || ix >= i32(W) {
        return 0.0;
    }
    return rhs[((b * CIN + ci) * H + u32(iy)) * W + u32(ix)];
}

fn load_a(m: u32, k: u32) -> f32 {
    let taps = KH * KW;
    if MODE == 0u {
        // w[co = m, tap = k]
        return lhs[m * CIN * taps + k];
    } else if MODE == 1u {
        // w[co, ci = m, tap] with k = co·taps + tap
        let co = k / taps;
        let tap = k % taps;
        return lhs[(co * CIN + m) * taps + tap];
    }
    // MODE 2: dout[b, co = m, s] with k = b·OH·OW + s
    let plane = OH * OW;
    let b = k / plane;
    let s = k % plane;
    return lhs[(b * COUT + m) * plane + s];
}

fn load_b(k: u32, n: u32) -> f32 {
    if MODE == 0u {
        return im2col(k, n);
    } else if MODE == 1u {
        // dout[b, co, oy, ox] where iy = oy·s − pad + ky, for k = co·taps + ky·KW + kx and
        // n = (b·H + iy)·W + ix; zero where no output position maps onto this input.
        let taps = KH * KW;
        let co = k / taps;
        let r = k % taps;
        let ky = r / KW;
        let kx = r % KW;
        let plane = H * W;
        let b = n / plane;
        let s = n % plane;
        let ty = i32(s / W + PAD) - i32(ky);
        let tx = i32(s % W + PAD) - i32(kx);
        if ty < 0 || tx < 0 {
            return 0.0;
        }
        let uy = u32(ty);
        let ux = u32(tx);
        if uy % STRIDE != 0u || ux % STRIDE != 0u {
            return 0.0;
        }
        let oy = uy / STRIDE;
        let ox = ux / STRIDE;
        if oy >= OH || ox >= OW {
            return 0.0;
        }
        return rhs[((b * COUT + co) * OH + oy) * OW + ox];
    }
    // MODE 2: im2col(x)ᵀ[pos = k, tap = n], and the column of ones past the taps.
    if n == CIN * KH * KW {
        return 1.0;
    }
    return im2col(n, k);
}

// The vec4 core's column hooks (gemm_vec4.wgsl): column n's offsets, split once per thread, and
// B[k, n] from them; equal to load_b(k, n).
//   MODE 0: n = (b, oy, ox) → (b·Cin·H·W, oy·s − pad, ox·s − pad, 0)
//   MODE 1: n = (b, iy, ix) → (b·Cout·OH·OW, iy + pad, ix + pad, 0)
//   MODE 2: n = tap (ci, ky, kx) → (ci·H·W, ky − pad, kx − pad, 1 for the ones column)
fn b_column(n: u32) -> vec4<i32> {
    if MODE == 0u {
        let plane = OH * OW;
        let s = n % plane;
        let b = n / plane;
        return vec4<i32>(i32(b * CIN * H * W), i32((s / OW) * STRIDE) - i32(PAD), i32((s % OW) * STRIDE) - i32(PAD), 0);
    } else if MODE == 1u {
        let plane = H * W;
        let s = n % plane;
        let b = n / plane;
        return vec4<i32>(i32(b * COUT * OH * OW), i32(s / W + PAD), i32(s % W + PAD), 0);
    }
    if n == CIN * KH * KW {
        return vec4<i32>(0, 0, 0, 1);
    }
    let taps = KH * KW;
    let ci = n / taps;
    let r = n % taps;
    return vec4<i32>(i32(ci * H * W), i32(r / KW) - i32(PAD), i32(r % KW) - i32(PAD), 0);
}

fn load_b_at(k: u32, n: u32, col: vec4<i32>) -> f32 {
    if MODE == 0u {
        // k = tap (ci, ky, kx)
        let taps = KH * KW;
        let ci = k / taps;
        let r = k % taps;
        let iy = col.y + i32(r / KW);
        let ix = col.z + i32(r % KW);
        if iy < 0 || ix < 0 || iy >= i32(H) || ix >= i32(W) {
            return 0.0;
        }
        return rhs[u32(col.x) + (ci * H + u32(iy)) * W + u32(ix)];
    } else if MODE == 1u {
        // k = co·taps + ky·KW + kx; the output position (oy, ox) that reads (iy, ix) at (ky, kx)
        let taps = KH * KW;
        let co = k / taps;
        let r = k % taps;
        let ty = col.y - i32(r / KW);
        let tx = col.z - i32(r % KW);
        if ty < 0 || tx < 0 {
            return 0.0;
        }
        let uy = u32(ty);
        let ux = u32(tx);
        if uy % STRIDE != 0u || ux % STRIDE != 0u {
            return 0.0;
        }
        let oy = uy / STRIDE;
        let ox = ux / STRIDE;
        if oy >= OH || ox >= OW {
            return 0.0;
        }
        return rhs[u32(col.x) + (co * OH + oy) * OW + ox];
    }
    // MODE 2: k = pos (b, oy, ox)
    if col.w == 1 {
        return 1.0;
    }
    let plane = OH * OW;
    let b = k / plane;
    let s = k % plane;
    let iy = i32((s / OW) * STRIDE) + col.y;
    let ix = i32((s % OW) * STRIDE) + col.z;
    if iy < 0 || ix < 0 || iy >= i32(H) || ix >= i32(W) {
        return 0.0;
    }
    return rhs[b * CIN * H * W + u32(col.x) + u32(iy) * W + u32(ix)];
}

// The weight gradient's output (m, n) of the whole product: dw, or dbias for the ones column.
fn finish_weight(m: u32, n: u32, v: f32) {
    let taps = CIN * KH * KW;
    if n == taps {
        dbias[m] = v;
    } else {
        dst[m * taps + n] = v;
    }
}

fn store_c(m: u32, n: u32, z: u32, v: f32) {
    if MODE == 0u {
        let plane = OH * OW;
        let b = n / plane;
        let s = n % plane;
        dst[(b * COUT + m) * plane + s] = v + aux[m];
    } else if MODE == 1u {
        let plane = H * W;
        let b = n / plane;
        let s = n % plane;
        dst[(b * CIN + m) * plane + s] = v;
    } else if p.splits > 1u {
        dst[(z * COUT + m) * weight_cols() + n] = v;
    } else {
        finish_weight(m, n, v);
    }
}

// The GEMM pass that MODE picks, for workgroup `wg` of the entry points below.
fn conv2d_gemm(local: u32, wg: vec3<u32>, groups: vec3<u32>) {
    let taps = KH * KW;
    var m_len: u32;
    var n_len: u32;
    var k_len: u32;
    if MODE == 0u {
        m_len = COUT;
        n_len = p.batch * OH * OW;
        k_len = CIN * taps;
    } else if MODE == 1u {
        m_len = CIN;
        n_len = p.batch * H * W;
        k_len = COUT * taps;
    } else {
        m_len = COUT;
        n_len = weight_cols();
        k_len = p.batch * OH * OW;
    }
    var k_begin = 0u;
    var k_end = k_len;
    var col_tile = wg.x;
    if MODE == 2u {
        // z is the K-split.
        k_begin = min(wg.z * p.k_chunk, k_len);
        k_end = min(k_begin + p.k_chunk, k_len);
    } else {
        // z folds column tiles past the per-dimension dispatch limit (large batches).
        col_tile = wg.x + wg.z * groups.x;
    }
    gemm_tile(local, wg.y * TILE_M, col_tile * TILE_N, m_len, n_len, k_begin, k_end, wg.z);
}

// Dispatch: (column tiles, row tiles, splits) with M, N as in the header; in MODE 0 and 1 the
// column tiles fold over z when they pass the per-dimension limit.
@compute @workgroup_size(256)
fn conv2d_forward(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    conv2d_gemm(local, wg, groups);
}

@compute @workgroup_size(256)
fn conv2d_backward_input(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    conv2d_gemm(local, wg, groups);
}

@compute @workgroup_size(256)
fn conv2d_backward_weight(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    conv2d_gemm(local, wg, groups);
}

// The weight gradient's second pass when K was split: output i of the product is
// Σ_z partial[z, i] over the `splits` K-slices, stored as dw (and dbias for the ones column of
// BIAS_GRAD). lhs = partials [splits, Cout, weight_cols()]. Dispatch: ceil(len / 64) (x, y
// split): workgroups of 64 so that conv2's 18,432 weights still make 288 workgroups, more than
// a 132-SM GPU has SMs.
@compute @workgroup_size(64)
fn conv2d_backward_weight_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 64u;
    let len = COUT * weight_cols();
    if i >= len {
        return;
    }
    var sum = 0.0;
    for (var z = 0u; z < p.splits; z++) {
        sum += lhs[z * len + i];
    }
    finish_weight(i / weight_cols(), i % weight_cols(), sum);
}
