// The register-tiled GEMM core shared by matmul.wgsl and conv2d.wgsl (prepended to each at
// compile time). A workgroup of 16×16 threads computes a (16·TM)×(16·TN) tile of C = A·B; each
// thread owns TM×TN outputs (rows ty + 16·i, columns tx + 16·j, so stores are coalesced). K
// advances 16 at a time through workgroup memory. TM and TN (1, 2, 4 or 8) are override
// constants: the host picks the largest tile that the problem fills, so small M or N (conv1's 32
// channels, a weight gradient's 9 taps) do not waste most of each tile, and large square
// products get 128×128 tiles of 8×8 a thread. The workgroup arrays are sized by the same
// constants, so a small tile takes only the workgroup memory it uses (16 KiB at 128×128).
// The including file defines how the operands are read and the result written:
//   fn load_a(m: u32, k: u32) -> f32      A[m, k]
//   fn load_b(k: u32, n: u32) -> f32      B[k, n]
//   fn store_c(m: u32, n: u32, z: u32, v: f32)   C[m, n] of K-split z
// Every load and store is guarded, so any M, N, K is correct (not only multiples of the tile).

override TM: u32 = 4u;
override TN: u32 = 4u;
override TILE_M: u32 = 16u * TM;
override TILE_N: u32 = 16u * TN;
const TILE_K: u32 = 16u;
// The largest TM and TN: the stride of the accumulator array.
const MAX_T: u32 = 8u;

// (Named overrides as the sizes: naga 30 panics on an array sized by an override expression
// in a module with overrides declared after it, as conv2d.wgsl's are.)
override TILE_A_LEN: u32 = TILE_K * TILE_M;
override TILE_B_LEN: u32 = TILE_K * TILE_N;
var<workgroup> tile_a: array<f32, TILE_A_LEN>; // [TILE_K][TILE_M]
var<workgroup> tile_b: array<f32, TILE_B_LEN>; // [TILE_K][TILE_N]

// Computes the tile whose top-left corner is (row0, col0) over k in [k_begin, k_end).
// Must be called in uniform control flow (it uses barriers).
fn gemm_tile(local: u32, row0: u32, col0: u32, m_len: u32, n_len: u32, k_begin: u32, k_end: u32, z: u32) {
    let tx = local % 16u;
    let ty = local / 16u;
    var acc: array<f32, 64>; // [MAX_T][MAX_T], TM×TN of it used
    var k0 = k_begin;
    loop {
        if k0 >= k_end {
            break;
        }
        // A: TILE_K × TILE_M = 256·TM elements; consecutive threads read consecutive k.
        for (var r = 0u; r < TM; r++) {
            let e = local + r * 256u;
            let ak = e % TILE_K;
            let am = e / TILE_K;
            var va = 0.0;
            if row0 + am < m_len && k0 + ak < k_end {
                va = load_a(row0 + am, k0 + ak);
            }
            tile_a[ak * TILE_M + am] = va;
        }
        // B: TILE_K × TILE_N = 256·TN elements; consecutive threads read consecutive n.
        for (var r = 0u; r < TN; r++) {
            let e = local + r * 256u;
            let bn = e % TILE_N;
            let bk = e / TILE_N;
            var vb = 0.0;
            if col0 + bn < n_len && k0 + bk < k_end {
                vb = load_b(k0 + bk, col0 + bn);
            }
            tile_b[bk * TILE_N + bn] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < TILE_K; kk++) {
            var a: array<f32, 8>;
            var b: array<f32, 8>;
            for (var i = 0u; i < TM; i++) {
                a[i] = tile_a[kk * TILE_M + ty + 16u * i];
            }
            for (var j = 0u; j < TN; j++) {
                b[j] = tile_b[kk * TILE_N + tx + 16u * j];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i * MAX_T + j] = fma(a[i], b[j], acc[i * MAX_T + j]);
                }
            }
        }
        workgroupBarrier();
        k0 += TILE_K;
    }
    for (var i = 0u; i < TM; i++) {
        let m = row0 + ty + 16u * i;
        for (var j = 0u; j < TN; j++) {
            let n = col0 + tx + 16u * j;
            if m < m_len && n < n_len {
                store_c(m, n, z, acc[i * MAX_T + j]);
            }
        }
    }
}
