// The register-tiled GEMM core shared by matmul.wgsl and conv2d.wgsl (prepended to each at
// compile time). A workgroup of 256 threads computes a 64×64 tile of C = A·B; each thread owns
// 4×4 outputs (rows ty + 16·i, columns tx + 16·j, so stores are coalesced). K advances 16 at a
// time through workgroup memory. The including file defines how the operands are read and the
// result written:
//   fn load_a(m: u32, k: u32) -> f32      A[m, k]
//   fn load_b(k: u32, n: u32) -> f32      B[k, n]
//   fn store_c(m: u32, n: u32, z: u32, v: f32)   C[m, n] of K-split z
// Every load and store is guarded, so any M, N, K is correct (not only multiples of the tile).

const TILE_M: u32 = 64u;
const TILE_N: u32 = 64u;
const TILE_K: u32 = 16u;

var<workgroup> tile_a: array<f32, 1024>; // [TILE_K][TILE_M]
var<workgroup> tile_b: array<f32, 1024>; // [TILE_K][TILE_N]

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
        for (var r = 0u; r < 4u; r++) {
            let e = local + r * 256u;
            // A: consecutive threads read consecutive k.
            let ak = e % TILE_K;
            let am = e / TILE_K;
            var va = 0.0;
            if row0 + am < m_len && k0 + ak < k_end {
                va = load_a(row0 + am, k0 + ak);
            }
            tile_a[ak * TILE_M + am] = va;
            // B: consecutive threads read consecutive n.
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
            for (var i = 0u; i < 4u; i++) {
                a[i] = tile_a[kk * TILE_M + ty + 16u * i];
                b[i] = tile_b[kk * TILE_N + tx + 16u * i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(a[i], b[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
        k0 += TILE_K;
    }
    for (var i = 0u; i < 4u; i++) {
        let m = row0 + ty + 16u * i;
        for (var j = 0u; j < 4u; j++) {
            let n = col0 + tx + 16u * j;
            if m < m_len && n < n_len {
                store_c(m, n, z, acc[i * 4u + j]);
            }
        }
    }
}
