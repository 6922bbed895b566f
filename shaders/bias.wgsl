// Per-channel bias over a tensor seen as [outer, channels, inner]: the add (linear layers'
// forward) and the sum over outer and inner (every bias gradient).

struct ChannelParams {
    outer: u32,
    channels: u32,
    inner: u32,
    // channel_sum_partial: the slices each channel's sum is cut into (unused elsewhere).
    chunks: u32,
}

@group(0) @binding(0) var<uniform> p: ChannelParams;
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read_write> dst: array<f32>;

// dst[o, c, i] += src[c]; one thread per element.
@compute @workgroup_size(256)
fn bias_add(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let e = gid.x + gid.y * groups.x * 256u;
    if e >= p.outer * p.channels * p.inner {
        return;
    }
    dst[e] += src[(e / p.inner) % p.channels];
}

var<workgroup> partial: array<f32, 256>;

// The sum of channel c's elements t ∈ [start, end) of its outer·inner (0 where c is past the
// last channel): strided loads, then a tree in workgroup memory. It has barriers: every thread
// of the workgroup calls it, with the same arguments but `local`.
fn channel_range_sum(local: u32, c: u32, start: u32, end: u32) -> f32 {
    var sum = 0.0;
    if c < p.channels {
        for (var t = start + local; t < end; t += 256u) {
            let o = t / p.inner;
            let i = t % p.inner;
            sum += src[(o * p.channels + c) * p.inner + i];
        }
    }
    partial[local] = sum;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if local < stride {
            partial[local] += partial[local + stride];
        }
        workgroupBarrier();
    }
    return partial[0];
}

// The first pass of a two-pass channel sum, for channels too few to fill the GPU:
// dst[c · chunks + j] = the sum of slice j of channel c's outer·inner elements (slices of
// ⌈outer·inner / chunks⌉, in order); one workgroup per (channel, slice), workgroup (x, y)
// being c · chunks + j = x + y · groups.x. channel_sum over [1, channels, chunks] adds the
// slices up.
@compute @workgroup_size(256)
fn channel_sum_partial(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let w = wg.x + wg.y * groups.x;
    let c = w / p.chunks;
    let j = w % p.chunks;
    let count = p.outer * p.inner;
    let span = (count + p.chunks - 1u) / p.chunks;
    let total = channel_range_sum(local, c, min(count, j * span), min(count, (j + 1u) * span));
    if local == 0u && c < p.channels {
        dst[w] = total;
    }
}

// dst[c] = Σ_{o,i} src[o, c, i]; one workgroup per channel (workgroup (x, y) is channel
// x + y · groups.x), a tree reduction in workgroup memory.
@compute @workgroup_size(256)
fn channel_sum(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let c = wg.x + wg.y * groups.x;
    let total = channel_range_sum(local, c, 0u, p.outer * p.inner);
    if local == 0u && c < p.channels {
        dst[c] = total;
    }
}
