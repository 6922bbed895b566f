// Batch normalisation over a tensor seen as [outer, channels, inner] (BatchNorm2d: N, C, H*W;
// BatchNorm1d: N, features, 1). `stats` holds the means then the variances ([2 * channels]).
// The per-channel reductions run one workgroup per channel (workgroup (x, y) is channel
// x + y * groups.x); the element-wise passes one thread per element.

struct BnParams {
    outer: u32,
    channels: u32,
    inner: u32,
    eps: f32,
    momentum: f32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: BnParams;
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> dy: array<f32>;
@group(0) @binding(3) var<storage, read> stats: array<f32>;
@group(0) @binding(4) var<storage, read> weight: array<f32>;
@group(0) @binding(5) var<storage, read> bias: array<f32>;
@group(0) @binding(6) var<storage, read> dweight_in: array<f32>;
@group(0) @binding(7) var<storage, read> dbias_in: array<f32>;
@group(0) @binding(8) var<storage, read_write> dst: array<f32>;
@group(0) @binding(9) var<storage, read_write> stats_out: array<f32>;
@group(0) @binding(10) var<storage, read_write> running: array<f32>;
@group(0) @binding(11) var<storage, read_write> dweight_out: array<f32>;
@group(0) @binding(12) var<storage, read_write> dbias_out: array<f32>;

var<workgroup> red_a: array<f32, 256>;
var<workgroup> red_b: array<f32, 256>;

// The index of value t (0 <= t < outer * inner) of channel c.
fn at(c: u32, t: u32) -> u32 {
    return ((t / p.inner) * p.channels + c) * p.inner + t % p.inner;
}

// Sums red_a and red_b over the workgroup into element 0 of each.
fn reduce(local: u32) {
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if local < stride {
            red_a[local] += red_a[local + stride];
            red_b[local] += red_b[local + stride];
        }
        workgroupBarrier();
    }
}

fn channel_of(wg: vec3<u32>, groups: vec3<u32>) -> u32 {
    return wg.x + wg.y * groups.x;
}

// 1 / sqrt(var + eps) of channel c.
fn invstd_of(c: u32) -> f32 {
    return 1.0 / sqrt(stats[p.channels + c] + p.eps);
}

// stats_out = [mean; biased variance] of the batch (two passes), and the running statistics
// updated with the momentum and the unbiased variance.
@compute @workgroup_size(256)
fn batch_norm_stats(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let c = channel_of(wg, groups);
    let valid = c < p.channels;
    let count = p.outer * p.inner;
    var s = 0.0;
    if valid {
        for (var t = local; t < count; t += 256u) {
            s += x[at(c, t)];
        }
    }
    red_a[local] = s;
    red_b[local] = 0.0;
    reduce(local);
    let mean = red_a[0] / f32(count);
    workgroupBarrier();
    var q = 0.0;
    if valid {
        for (var t = local; t < count; t += 256u) {
            let d = x[at(c, t)] - mean;
            q += d * d;
        }
    }
    red_a[local] = q;
    reduce(local);
    if local == 0u && valid {
        let v = red_a[0] / f32(count);
        stats_out[c] = mean;
        stats_out[p.channels + c] = v;
        let unbiased = v * f32(count) / f32(count - 1u);
        let m = p.momentum;
        running[c] = (1.0 - m) * running[c] + m * mean;
        running[p.channels + c] = (1.0 - m) * running[p.channels + c] + m * unbiased;
    }
}

// dst = (x - mean) / sqrt(var + eps) * weight + bias.
@compute @workgroup_size(256)
fn batch_norm_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = gid.x + gid.y * groups.x * 256u;
    if e >= p.outer * p.channels * p.inner {
        return;
    }
    let c = (e / p.inner) % p.channels;
    dst[e] = (x[e] - stats[c]) * invstd_of(c) * weight[c] + bias[c];
}

// dweight_out[c] = sum of dy * xhat, dbias_out[c] = sum of dy over the channel.
@compute @workgroup_size(256)
fn batch_norm_backward_params(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let c = channel_of(wg, groups);
    let valid = c < p.channels;
    var sw = 0.0;
    var sb = 0.0;
    if valid {
        let mean = stats[c];
        let invstd = invstd_of(c);
        let count = p.outer * p.inner;
        for (var t = local; t < count; t += 256u) {
            let i = at(c, t);
            sw += dy[i] * (x[i] - mean) * invstd;
            sb += dy[i];
        }
    }
    red_a[local] = sw;
    red_b[local] = sb;
    reduce(local);
    if local == 0u && valid {
        dweight_out[c] = red_a[0];
        dbias_out[c] = red_b[0];
    }
}

// dst = weight / sqrt(var + eps) * (dy - dbias / M - xhat * dweight / M), M = outer * inner.
@compute @workgroup_size(256)
fn batch_norm_backward_input(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = gid.x + gid.y * groups.x * 256u;
    if e >= p.outer * p.channels * p.inner {
        return;
    }
    let c = (e / p.inner) % p.channels;
    let m = f32(p.outer * p.inner);
    let invstd = invstd_of(c);
    let xhat = (x[e] - stats[c]) * invstd;
    dst[e] = weight[c] * invstd * (dy[e] - dbias_in[c] / m - xhat * dweight_in[c] / m);
}
