// Batch gathering from the resident dataset: x[i, q] = normalised pixel q of image
// perm[offset + i], y[i] = its label. Pixels are u8 packed four to a little-endian u32; the
// normalisation is a 256-entry table computed on the host with the CPU backend's formula, so
// both backends see bit-identical inputs. One thread per output pixel.

struct GatherParams {
    batch: u32,
    image_len: u32,
    offset: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: GatherParams;
@group(0) @binding(1) var<storage, read> images: array<u32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> perm: array<u32>;
@group(0) @binding(4) var<storage, read> table: array<f32, 256>;
@group(0) @binding(5) var<storage, read_write> x: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<u32>;

@compute @workgroup_size(256)
fn gather_batch(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = gid.x + gid.y * groups.x * 256u;
    if e >= p.batch * p.image_len {
        return;
    }
    let i = e / p.image_len;
    let q = e % p.image_len;
    let item = perm[p.offset + i];
    let byte = item * p.image_len + q;
    let pixel = (images[byte / 4u] >> ((byte % 4u) * 8u)) & 0xffu;
    x[e] = table[pixel];
    if q == 0u {
        y[i] = labels[item];
    }
}
