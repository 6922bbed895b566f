// The register-tiled GEMM core shared by matmul.wgsl and conv2d.wgsl (prepended to each at
// compile time). A workgroup of 16×16 threads computes a (16·TM)×(16·TN) tile of C = A·B; each
// thread owns TM×TN outputs (rows ty + 16·i, columns tx + 16·j, so stores are coalesced). K
// advances 16 at a time through workgroup memory. TM and TN (1, 2 or 4) are override constants:
// the host picks the largest tile that the problem fills, so small M or N (conv1's 32 channels,
// a weight gradient's 9 taps) do not waste most of each tile.
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

var<workgroup> tile_a: array<f32, 1024>; // [TILE_K][TILE_M], TILE_M ≤ 64
var<workgroup> tile_b: array<f32, 1024>; // [TILE_K][TILE_N], TILE_N ≤ 64

// Computes the tile whose top-left corner is (row0, col0) over k in [k_begin, k_end).
// Must be called in uniform control flow (it uses barriers).
fn gemm_tile(local: u32, row0: u32, col0: u32, m_len: u32, n_len: u32, k_begin: u32, k_end: u32, z: u32) {
    let tx = local % 16u;
    let ty = local / 16u;
    var acc: array<f32, 16>;
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
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < TM; i++) {
                a[i] = tile_a[kk * TILE_M + ty + 16u * i];
            }
            for (var j = 0u; j < TN; j++) {
                b[j] = tile_b[kk * TILE_N + tx + 16u * j];
            }
            for (var i = 0u; i < TM; i++) {
                for (var j = 0u; j < TN; j++) {
                    acc[i * 4u + j] = fma(a[i], b[j], acc[i * 4u + j]);
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
                store_c(m, n, z, acc[i * 4u + j]);
            }
        }
    }
}
