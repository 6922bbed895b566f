// 2-d max and average pooling, forward and backward, over N,C,H,W (no padding).
// Forward: one thread per output. Backward: one thread per input element, gathering from every
// window that covers it (deterministic, no atomics); max-pool recomputes each window's arg-max
// (the first maximum in row-major order, as PyTorch).
// With RELU = 1, max-pooling is fused with the ReLU before it: x is the ReLU's input, each
// window value is relu(v) (v if v > 0, else 0) before the max, and the backward pass lets the
// gradient through only where that max is positive, as the ReLU's backward would. Each entry
// point is named after its Backend method; relu_maxpool2d_forward and _backward run the same
// bodies as maxpool2d_forward and _backward, and the host sets RELU = 1 for them (0 otherwise).

// The plane's shape is fixed per pipeline (override constants: divisions by constants are
// cheap); the number of planes, batch · channels, travels in the uniform.
override H: u32 = 1u;
override W: u32 = 1u;
override KERNEL: u32 = 1u;
override STRIDE: u32 = 1u;
override OH: u32 = 1u;
override OW: u32 = 1u;
override RELU: u32 = 0u;

struct PoolParams {
    planes: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: PoolParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dout: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

fn thread_index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 256u;
}

// The value a window sees at plane index q: relu(x) when fused, else x.
fn seen(base: u32, q: u32) -> f32 {
    let v = x[base + q];
    if RELU == 1u {
        return select(0.0, v, v > 0.0);
    }
    return v;
}

// The index into the plane of window (oy, ox)'s first maximum, and that maximum.
struct ArgMax {
    index: u32,
    value: f32,
}

fn window_argmax(base: u32, oy: u32, ox: u32) -> ArgMax {
    let y0 = oy * STRIDE;
    let x0 = ox * STRIDE;
    var best = y0 * W + x0;
    var best_v = seen(base, best);
    for (var ky = 0u; ky < KERNEL; ky++) {
        for (var kx = 0u; kx < KERNEL; kx++) {
            let q = (y0 + ky) * W + x0 + kx;
            let v = seen(base, q);
            if v > best_v {
                best_v = v;
                best = q;
            }
        }
    }
    return ArgMax(best, best_v);
}

// The range of output rows (or columns) whose window covers input coordinate i.
fn covering(i: u32, out_len: u32) -> vec2<u32> {
    var lo = 0u;
    if i + 1u > KERNEL {
        lo = (i + 1u - KERNEL + STRIDE - 1u) / STRIDE;
    }
    let hi = min(i / STRIDE + 1u, out_len); // exclusive
    return vec2<u32>(lo, hi);
}

// One output of a max-pool (fused with the ReLU before it when RELU = 1).
fn maxpool2d_forward_at(gid: vec3<u32>, groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    let per_plane = OH * OW;
    if i >= p.planes * per_plane {
        return;
    }
    let plane = i / per_plane;
    let s = i % per_plane;
    let base = plane * H * W;
    dst[i] = window_argmax(base, s / OW, s % OW).value;
}

// One input gradient of a max-pool (fused with the ReLU before it when RELU = 1).
fn maxpool2d_backward_at(gid: vec3<u32>, groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    let per_plane = H * W;
    if i >= p.planes * per_plane {
        return;
    }
    let plane = i / per_plane;
    let q = i % per_plane;
    let base = plane * per_plane;
    let rows = covering(q / W, OH);
    let cols = covering(q % W, OW);
    var sum = 0.0;
    for (var oy = rows.x; oy < rows.y; oy++) {
        for (var ox = cols.x; ox < cols.y; ox++) {
            let m = window_argmax(base, oy, ox);
            // Fused with the ReLU, a window whose max is 0 sends no gradient.
            if m.index == q && (RELU == 0u || m.value > 0.0) {
                sum += dout[(plane * OH + oy) * OW + ox];
            }
        }
    }
    dst[i] = sum;
}

@compute @workgroup_size(256)
fn maxpool2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    maxpool2d_forward_at(gid, groups);
}

@compute @workgroup_size(256)
fn relu_maxpool2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    maxpool2d_forward_at(gid, groups);
}

@compute @workgroup_size(256)
fn maxpool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    maxpool2d_backward_at(gid, groups);
}

@compute @workgroup_size(256)
fn relu_maxpool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    maxpool2d_backward_at(gid, groups);
}

@compute @workgroup_size(256)
fn avgpool2d_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    let per_plane = OH * OW;
    if i >= p.planes * per_plane {
        return;
    }
    let plane = i / per_plane;
    let s = i % per_plane;
    let base = plane * H * W;
    let y0 = (s / OW) * STRIDE;
    let x0 = (s % OW) * STRIDE;
    var sum = 0.0;
    for (var ky = 0u; ky < KERNEL; ky++) {
        for (var kx = 0u; kx < KERNEL; kx++) {
            sum += x[base + (y0 + ky) * W + x0 + kx];
        }
    }
    dst[i] = sum / f32(KERNEL * KERNEL);
}

@compute @workgroup_size(256)
fn avgpool2d_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = thread_index(gid, groups);
    let per_plane = H * W;
    if i >= p.planes * per_plane {
        return;
    }
    let plane = i / per_plane;
    let q = i % per_plane;
    let rows = covering(q / W, OH);
    let cols = covering(q % W, OW);
    var sum = 0.0;
    for (var oy = rows.x; oy < rows.y; oy++) {
        for (var ox = cols.x; ox < cols.y; ox++) {
            sum += dout[(plane * OH + oy) * OW + ox];
        }
    }
    dst[i] = sum / f32(KERNEL * KERNEL);
}
