// Batch gathering from the resident dataset: x[i, q] = normalised pixel q of image
// perm[offset + i], y[i] = its label. Pixels are u8 packed four to a little-endian u32; the
// normalisation is a 256-entry table computed on the host with crate::data::normalize_pixel,
// so both backends see bit-identical inputs. One thread per output pixel.
//
// gather_batch_affine resamples each image through its own affine map first (augmentation):
// output pixel (u, v) reads source point (a·u + b·v + c, d·u + e·v + f), bilinearly, with 0
// (the background) outside the image; [a..f] = affine[6·(offset + i) ..]. The arithmetic is
// the CPU backend's (cpu/gather.rs), in the same order.

struct GatherParams {
    batch: u32,
    image_len: u32,
    offset: u32,
    // Image width (gather_batch_affine only; 0 for gather_batch).
    cols: u32,
}

@group(0) @binding(0) var<uniform> p: GatherParams;
@group(0) @binding(1) var<storage, read> images: array<u32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read> perm: array<u32>;
@group(0) @binding(4) var<storage, read> table: array<f32, 256>;
@group(0) @binding(5) var<storage, read_write> x: array<f32>;
@group(0) @binding(6) var<storage, read_write> y: array<u32>;
@group(0) @binding(7) var<storage, read> affine: array<f32>;

// Byte `byte` of the dataset's pixels, packed four to a little-endian word.
fn image_byte(byte: u32) -> u32 {
    return (images[byte / 4u] >> ((byte % 4u) * 8u)) & 0xffu;
}

@compute @workgroup_size(256)
fn gather_batch(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = gid.x + gid.y * groups.x * 256u;
    if e >= p.batch * p.image_len {
        return;
    }
    let i = e / p.image_len;
    let q = e % p.image_len;
    let item = perm[p.offset + i];
    x[e] = table[image_byte(item * p.image_len + q)];
    if q == 0u {
        y[i] = labels[item];
    }
}

// crate::data::normalize_value, the host's one definition of the normalisation, for the
// interpolated values that the table cannot hold.
fn normalize_value(value: f32) -> f32 {
    return ((value / 255.0) - 0.5) / 0.5;
}

// Pixel (c, r) of dataset item `item` as a float, 0 outside the image.
fn source_pixel(item: u32, c: i32, r: i32) -> f32 {
    let rows = i32(p.image_len / p.cols);
    if c < 0 || r < 0 || c >= i32(p.cols) || r >= rows {
        return 0.0;
    }
    return f32(image_byte(item * p.image_len + u32(r) * p.cols + u32(c)));
}

@compute @workgroup_size(256)
fn gather_batch_affine(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = gid.x + gid.y * groups.x * 256u;
    if e >= p.batch * p.image_len {
        return;
    }
    let i = e / p.image_len;
    let q = e % p.image_len;
    let item = perm[p.offset + i];
    let o = (p.offset + i) * 6u;
    let u = f32(q % p.cols);
    let v = f32(q / p.cols);
    let sx = affine[o] * u + affine[o + 1u] * v + affine[o + 2u];
    let sy = affine[o + 3u] * u + affine[o + 4u] * v + affine[o + 5u];
    let x0 = floor(sx);
    let y0 = floor(sy);
    let fx = sx - x0;
    let fy = sy - y0;
    let c0 = i32(x0);
    let r0 = i32(y0);
    let top = source_pixel(item, c0, r0) * (1.0 - fx) + source_pixel(item, c0 + 1, r0) * fx;
    let bottom = source_pixel(item, c0, r0 + 1) * (1.0 - fx) + source_pixel(item, c0 + 1, r0 + 1) * fx;
    let value = top * (1.0 - fy) + bottom * fy;
    x[e] = normalize_value(value);
    if q == 0u {
        y[i] = labels[item];
    }
}
