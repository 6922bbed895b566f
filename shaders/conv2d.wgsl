// conv2d as implicit GEMM (gemm_tile.wgsl is prepended): no im2col buffer, the operands are
// gathered from the N,C,H,W tensors as the tile is loaded. The override MODE picks the pass:
//   MODE 0, forward:         out[Cout, B·OH·OW] = w[Cout, Cin·KH·KW] · im2col(x) + bias
//   MODE 1, input gradient:  dx[Cin, B·H·W] = wᵀ-by-tap[Cin, Cout·KH·KW] · col(dout)
//   MODE 2, weight gradient: dw[Cout, Cin·KH·KW] = dout[Cout, B·OH·OW] · im2col(x)ᵀ, with K split
//                            over workgroup z into partial sums that `splitk_reduce` adds up.
// Bindings: lhs is the A operand's buffer, rhs the B operand's, aux the bias (MODE 0; other
// modes bind any read-only buffer there), dst the output (or the K-split partials).

struct ConvParams {
    batch: u32,
    cin: u32,
    h: u32,
    w: u32,
    cout: u32,
    kh: u32,
    kw: u32,
    stride: u32,
    pad: u32,
    oh: u32,
    ow: u32,
    splits: u32,
    k_chunk: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

override MODE: u32 = 0u;

@group(0) @binding(0) var<uniform> p: ConvParams;
@group(0) @binding(1) var<storage, read> lhs: array<f32>;
@group(0) @binding(2) var<storage, read> rhs: array<f32>;
@group(0) @binding(3) var<storage, read> aux: array<f32>;
@group(0) @binding(4) var<storage, read_write> dst: array<f32>;

// x[b, ci, oh·s − pad + kh, ow·s − pad + kw], zero in the padding. `tap` = (ci·KH + kh)·KW + kw,
// `pos` = (b·OH + oh)·OW + ow.
fn im2col(tap: u32, pos: u32) -> f32 {
    let taps = p.kh * p.kw;
    let ci = tap / taps;
    let r = tap % taps;
    let ky = r / p.kw;
    let kx = r % p.kw;
    let plane = p.oh * p.ow;
    let b = pos / plane;
    let s = pos % plane;
    let oy = s / p.ow;
    let ox = s % p.ow;
    let iy = i32(oy * p.stride + ky) - i32(p.pad);
    let ix = i32(ox * p.stride + kx) - i32(p.pad);
    if iy < 0 || ix < 0 || iy >= i32(p.h) || ix >= i32(p.w) {
        return 0.0;
    }
    return rhs[((b * p.cin + ci) * p.h + u32(iy)) * p.w + u32(ix)];
}

fn load_a(m: u32, k: u32) -> f32 {
    let taps = p.kh * p.kw;
    if MODE == 0u {
        // w[co = m, tap = k]
        return lhs[m * p.cin * taps + k];
    } else if MODE == 1u {
        // w[co, ci = m, tap] with k = co·taps + tap
        let co = k / taps;
        let tap = k % taps;
        return lhs[(co * p.cin + m) * taps + tap];
    }
    // MODE 2: dout[b, co = m, s] with k = b·OH·OW + s
    let plane = p.oh * p.ow;
    let b = k / plane;
    let s = k % plane;
    return lhs[(b * p.cout + m) * plane + s];
}

fn load_b(k: u32, n: u32) -> f32 {
    if MODE == 0u {
        return im2col(k, n);
    } else if MODE == 1u {
        // dout[b, co, oy, ox] where iy = oy·s − pad + ky, for k = co·taps + ky·KW + kx and
        // n = (b·H + iy)·W + ix; zero where no output position maps onto this input.
        let taps = p.kh * p.kw;
        let co = k / taps;
        let r = k % taps;
        let ky = r / p.kw;
        let kx = r % p.kw;
        let plane = p.h * p.w;
        let b = n / plane;
        let s = n % plane;
        let ty = i32(s / p.w + p.pad) - i32(ky);
        let tx = i32(s % p.w + p.pad) - i32(kx);
        if ty < 0 || tx < 0 {
            return 0.0;
        }
        let uy = u32(ty);
        let ux = u32(tx);
        if uy % p.stride != 0u || ux % p.stride != 0u {
            return 0.0;
        }
        let oy = uy / p.stride;
        let ox = ux / p.stride;
        if oy >= p.oh || ox >= p.ow {
            return 0.0;
        }
        return rhs[((b * p.cout + co) * p.oh + oy) * p.ow + ox];
    }
    // MODE 2: im2col(x)ᵀ[pos = k, tap = n]
    return im2col(n, k);
}

fn store_c(m: u32, n: u32, z: u32, v: f32) {
    if MODE == 0u {
        let plane = p.oh * p.ow;
        let b = n / plane;
        let s = n % plane;
        dst[(b * p.cout + m) * plane + s] = v + aux[m];
    } else if MODE == 1u {
        let plane = p.h * p.w;
        let b = n / plane;
        let s = n % plane;
        dst[(b * p.cin + m) * plane + s] = v;
    } else {
        let cols = p.cin * p.kh * p.kw;
        dst[(z * p.cout + m) * cols + n] = v;
    }
}

// Dispatch: (ceil(N / 64), ceil(M / 64), splits) with M, N as in the header.
@compute @workgroup_size(256)
fn conv2d_gemm(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wg: vec3<u32>) {
    let taps = p.kh * p.kw;
    var m_len: u32;
    var n_len: u32;
    var k_len: u32;
    if MODE == 0u {
        m_len = p.cout;
        n_len = p.batch * p.oh * p.ow;
        k_len = p.cin * taps;
    } else if MODE == 1u {
        m_len = p.cin;
        n_len = p.batch * p.h * p.w;
        k_len = p.cout * taps;
    } else {
        m_len = p.cout;
        n_len = p.cin * taps;
        k_len = p.batch * p.oh * p.ow;
    }
    var k_begin = 0u;
    var k_end = k_len;
    if MODE == 2u {
        k_begin = min(wg.z * p.k_chunk, k_len);
        k_end = min(k_begin + p.k_chunk, k_len);
    }
    gemm_tile(local, wg.y * TILE_M, wg.x * TILE_N, m_len, n_len, k_begin, k_end, wg.z);
}

// dw[i] = Σ_z partial[z, i] over the `splits` K-slices of the weight gradient.
// lhs = partials [splits, Cout·Cin·KH·KW], dst = dw. Dispatch: ceil(len / 256) (x, y split).
@compute @workgroup_size(256)
fn splitk_reduce(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    let len = p.cout * p.cin * p.kh * p.kw;
    if i >= len {
        return;
    }
    var sum = 0.0;
    for (var z = 0u; z < p.splits; z++) {
        sum += lhs[z * len + i];
    }
    dst[i] = sum;
}
