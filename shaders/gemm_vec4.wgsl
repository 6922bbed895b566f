// The `vec4` GEMM core (GemmVariant::Vec4), a drop-in for gemm_tile.wgsl: the same interface
// (the includer's load_a, load_b and store_c; the overrides TM and TN; TILE_M and TILE_N for the
// entry points' tile corners) and the same sum per output, k ascending through fma, so its
// results equal the baseline's bit for bit. What differs is how a workgroup stages the tiles:
// - Contiguous outputs a thread: thread (tx, ty) owns rows ty·TM + i and columns tx·TN + j, so
//   its TM (TN) operands of one k are adjacent in workgroup memory and load as TM/4 (TN/4)
//   vec4s when TM (TN) ≥ 4, instead of TM (TN) scalar loads 16 words apart.
// - A conflict-free A tile: the A tile is stored k-major ([TILE_K][TILE_M]); its writers are 16
//   consecutive k of one row, TILE_M words apart, which would all hit one bank. Each k row's
//   vec4 slots are XOR-swizzled by k (slot ^ (k mod TILE_M/4)), which spreads those writes over
//   the banks as padding would, without padding's memory (a padded 128×128 tile would pass the
//   16 KiB workgroup limit). Reads of a thread's TM rows stay whole vec4s.
// - Prefetch: the next K-tile's operands are loaded from global memory into registers while the
//   current tile is multiplied, then written to workgroup memory after the barrier.
// - Column offsets once: a thread stages the same B column in every K-tile (TILE_N divides the
//   256 threads), so it asks the includer once for that column's offsets, b_column(n), and
//   then loads through load_b_at(k, n, column): conv2d.wgsl's im2col splits the column's
//   position (image, row, column) once instead of once per element.
// Beside load_a, load_b and store_c the includer defines:
//   fn b_column(n: u32) -> vec4<i32>               whatever of column n load_b_at reuses
//   fn load_b_at(k: u32, n: u32, col: vec4<i32>) -> f32   B[k, n], col = b_column(n)
// Every load and store is guarded, so any M, N, K is correct.

override TM: u32 = 4u;
override TN: u32 = 4u;
override TILE_M: u32 = 16u * TM;
override TILE_N: u32 = 16u * TN;
const TILE_K: u32 = 16u;
// The largest TM and TN: the stride of the accumulator array.
const MAX_T: u32 = 8u;

// (Named overrides as the sizes, as gemm_tile.wgsl has them: naga 30 needs that.)
override TILE_A_VECS: u32 = TILE_K * TILE_M / 4u;
override TILE_B_VECS: u32 = TILE_K * TILE_N / 4u;
var<workgroup> tile_a: array<vec4<f32>, TILE_A_VECS>; // [TILE_K][TILE_M], swizzled
var<workgroup> tile_b: array<vec4<f32>, TILE_B_VECS>; // [TILE_K][TILE_N]

// The word of tile_a that holds A(row0 + m, k0 + k): row k, vec4 slot m/4 XOR-swizzled by k.
fn a_word(k: u32, m: u32) -> u32 {
    let slots = TILE_M / 4u;
    let slot = (m / 4u) ^ (k % slots);
    return k * TILE_M + slot * 4u + m % 4u;
}

// This thread's TM operands of A at k, rows ty·TM …
fn read_a(kk: u32, ty: u32) -> array<f32, 8> {
    var a: array<f32, 8>;
    if TM >= 4u {
        for (var q = 0u; q < TM / 4u; q++) {
            let v = tile_a[a_word(kk, ty * TM + 4u * q) / 4u];
            a[4u * q] = v.x;
            a[4u * q + 1u] = v.y;
            a[4u * q + 2u] = v.z;
            a[4u * q + 3u] = v.w;
        }
    } else {
        for (var i = 0u; i < TM; i++) {
            let w = a_word(kk, ty * TM + i);
            a[i] = tile_a[w / 4u][w % 4u];
        }
    }
    return a;
}

// This thread's TN operands of B at k, columns tx·TN …
fn read_b(kk: u32, tx: u32) -> array<f32, 8> {
    var b: array<f32, 8>;
    let base = kk * TILE_N + tx * TN;
    if TN >= 4u {
        for (var q = 0u; q < TN / 4u; q++) {
            let v = tile_b[base / 4u + q];
            b[4u * q] = v.x;
            b[4u * q + 1u] = v.y;
            b[4u * q + 2u] = v.z;
            b[4u * q + 3u] = v.w;
        }
    } else {
        for (var j = 0u; j < TN; j++) {
            let w = base + j;
            b[j] = tile_b[w / 4u][w % 4u];
        }
    }
    return b;
}

// The operands one thread stages of the tile at k0: A elements local + r·256 of the
// TILE_K × TILE_M tile (k fastest, so consecutive threads read consecutive k), B elements
// local + r·256 of the TILE_K × TILE_N tile (n fastest); zero outside the product.
struct Staged {
    a: array<f32, 8>,
    b: array<f32, 8>,
}

fn stage(local: u32, row0: u32, col0: u32, m_len: u32, n_len: u32, k0: u32, k_end: u32, bcol: vec4<i32>) -> Staged {
    var s: Staged;
    for (var r = 0u; r < TM; r++) {
        let e = local + r * 256u;
        let ak = e % TILE_K;
        let am = e / TILE_K;
        var va = 0.0;
        if row0 + am < m_len && k0 + ak < k_end {
            va = load_a(row0 + am, k0 + ak);
        }
        s.a[r] = va;
    }
    for (var r = 0u; r < TN; r++) {
        let e = local + r * 256u;
        let bn = e % TILE_N;
        let bk = e / TILE_N;
        var vb = 0.0;
        if col0 + bn < n_len && k0 + bk < k_end {
            vb = load_b_at(k0 + bk, col0 + bn, bcol);
        }
        s.b[r] = vb;
    }
    return s;
}

// Computes the tile whose top-left corner is (row0, col0) over k in [k_begin, k_end).
// Must be called in uniform control flow (it uses barriers).
fn gemm_tile(local: u32, row0: u32, col0: u32, m_len: u32, n_len: u32, k_begin: u32, k_end: u32, z: u32) {
    let tx = local % 16u;
    let ty = local / 16u;
    var acc: array<f32, 64>; // [MAX_T][MAX_T], TM×TN of it used
    var k0 = k_begin;
    // The one B column this thread stages (local % TILE_N), its offsets computed once.
    let bn = col0 + local % TILE_N;
    var bcol = vec4<i32>(0);
    if bn < n_len {
        bcol = b_column(bn);
    }
    var staged = stage(local, row0, col0, m_len, n_len, k0, k_end, bcol);
    loop {
        if k0 >= k_end {
            break;
        }
        for (var r = 0u; r < TM; r++) {
            let e = local + r * 256u;
            let w = a_word(e % TILE_K, e / TILE_K);
            tile_a[w / 4u][w % 4u] = staged.a[r];
        }
        // B is stored as it is staged: element e of the tile at word e.
        for (var r = 0u; r < TN; r++) {
            let e = local + r * 256u;
            tile_b[e / 4u][e % 4u] = staged.b[r];
        }
        workgroupBarrier();
        // Prefetch the next K-tile while this one is multiplied.
        let k1 = k0 + TILE_K;
        if k1 < k_end {
            staged = stage(local, row0, col0, m_len, n_len, k1, k_end, bcol);
        }
        for (var kk = 0u; kk < TILE_K; kk++) {
            let a = read_a(kk, ty);
            let b = read_b(kk, tx);
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i * MAX_T + j] = fma(a[i], b[j], acc[i * MAX_T + j]);
                }
            }
        }
        workgroupBarrier();
        k0 = k1;
    }
    for (var i = 0u; i < TM; i++) {
        let m = row0 + ty * TM + i;
        for (var j = 0u; j < TN; j++) {
            let n = col0 + tx * TN + j;
            if m < m_len && n < n_len {
                store_c(m, n, z, acc[i * MAX_T + j]);
            }
        }
    }
}
