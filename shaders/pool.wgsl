// 2-d max and average pooling, forward and backward, over N,C,H,W (no padding).
// Forward: one thread per output. Backward: one thread per input element, gathering from every
// window that covers it (deterministic, no atomics); max-pool recomputes each window's arg-max
// (the first maximum in row-major order, as PyTorch).

struct PoolParams {
    planes: u32, // batch · channels
    h: u32,
    w: u32,
    kernel: u32,
    stride: u32,
    oh: u32,
    ow: u32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: PoolParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn thread_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 256u;
}

// Index into the plane of the first maximum of window (oy, ox).
fn window_argmax(base: u32, oy: u32, ox: u32) -> u32 {
    let y0 = oy * p.stride;
    let x0 = ox * p.stride;
    var best = y0 * p.w + x0;
    var best_v = x[base + best];
    for (var ky = 0u; ky < p.kernel; ky++) {
        for (var kx = 0u; kx < p.kernel; kx++) {
            let q = (y0 + ky) * p.w + x0 + kx;
            let v = x[base + q];
            if v > best_v {
                best_v = v;
                best = q;
            }
        }
    }
    return best;
}

// The range of output rows (or columns) whose window covers input coordinate i.
fn covering(i: u32, out_len: u32) -> vec2<u32> {
    var lo = 0u;
    if i + 1u > p.kernel {
        lo = (i + 1u - p.kernel + p.stride - 1u) / p.stride;
    }
    let hi = min(i / p.stride + 1u, out_len); // exclusive
    return vec2<u32>(lo, hi);
}

@compute @workgroup_size(256)
fn maxpool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    let per_plane = p.oh * p.ow;
    if i >= p.planes * per_plane {
        return;
    }
    let plane = i / per_plane;
    let s = i % per_plane;
    let base = plane * p.h * p.w;
    dst[i] = x[base + window_argmax(base, s / p.ow, s % p.ow)];
}

@compute @workgroup_size(256)
fn maxpool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    let per_plane = p.h * p.w;
    if i >= p.planes * per_plane {
        return;
    }
    let plane = i / per_plane;
    let q = i % per_plane;
    let base = plane * per_plane;
    let rows = covering(q / p.w, p.oh);
    let cols = covering(q % p.w, p.ow);
    var sum = 0.0;
    for (var oy = rows.x; oy < rows.y; oy++) {
        for (var ox = cols.x; ox < cols.y; ox++) {
            if window_argmax(base, oy, ox) == q {
                sum += dout[(plane * p.oh + oy) * p.ow + ox];
            }
        }
    }
    dst[i] = sum;
}

@compute @workgroup_size(256)
fn avgpool_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    let per_plane = p.oh * p.ow;
    if i >= p.planes * per_plane {
        return;
    }
    let plane = i / per_plane;
    let s = i % per_plane;
    let base = plane * p.h * p.w;
    let y0 = (s / p.ow) * p.stride;
    let x0 = (s % p.ow) * p.stride;
    var sum = 0.0;
    for (var ky = 0u; ky < p.kernel; ky++) {
        for (var kx = 0u; kx < p.kernel; kx++) {
            sum += x[base + (y0 + ky) * p.w + x0 + kx];
        }
    }
    dst[i] = sum / f32(p.kernel * p.kernel);
}

@compute @workgroup_size(256)
fn avgpool_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    let per_plane = p.h * p.w;
    if i >= p.planes * per_plane {
        return;
    }
    let plane = i / per_plane;
    let q = i % per_plane;
    let rows = covering(q / p.w, p.oh);
    let cols = covering(q % p.w, p.ow);
    var sum = 0.0;
    for (var oy = rows.x; oy < rows.y; oy++) {
        for (var ox = cols.x; ox < cols.y; ox++) {
            sum += dout[(plane * p.oh + oy) * p.ow + ox];
        }
    }
    dst[i] = sum / f32(p.kernel * p.kernel);
}
