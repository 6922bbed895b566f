// Per-channel bias over a tensor seen as [outer, channels, inner]: the add (linear layers'
// forward) and the sum over outer and inner (every bias gradient).

struct ChannelParams {
    outer: u32,
    channels: u32,
    inner: u32,
    _pad0: u32,
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

// dst[c] = Σ_{o,i} src[o, c, i]; one workgroup per channel (workgroup (x, y) is channel
// x + y · groups.x), a tree reduction in workgroup memory.
@compute @workgroup_size(256)
fn channel_sum(@builtin(local_invocation_index) local: u32, @builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let c = wg.x + wg.y * groups.x;
    var sum = 0.0;
    if c < p.channels {
        let count = p.outer * p.inner;
        for (var t = local; t < count; t += 256u) {
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
    if local == 0u && c < p.channels {
        dst[c] = partial[0];
    }
}
