// Inverted dropout with a stateless hash RNG: element i is kept at a step when
// pcg(pcg(pcg(seed) ^ step) ^ i) >= threshold, and then scaled by 1/(1 - p). The forward pass
// (x -> y, dropout_forward) and the backward pass (dy -> dx, dropout_backward) run the same
// body: the mask is recomputed, never stored. src/backend/params.rs (dropout_hash) computes the
// same on the CPU.

struct DropoutParams {
    len: u32,
    threshold: u32,
    scale: f32,
    seed: u32,
}

@group(0) @binding(0) var<uniform> p: DropoutParams;
// The training step, written by the trainer before each step: a buffer, not a uniform, so that
// each step does not build a uniform and a bind group of its own.
@group(0) @binding(1) var<storage, read> step: array<u32>;
@group(0) @binding(2) var<storage, read> src: array<f32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;

// Jarzynski and Olano, "Hash Functions for GPU Rendering" (2020): PCG's output permutation.
fn pcg(v: u32) -> u32 {
    let s = v * 747796405u + 2891336453u;
    let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
    return (w >> 22u) ^ w;
}

// dst[i] = src[i] * scale where element i is kept, else 0; one thread per element.
fn masked(gid: vec3<u32>, groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if i >= p.len {
        return;
    }
    let h = pcg(pcg(pcg(p.seed) ^ step[0]) ^ i);
    dst[i] = select(0.0, src[i] * p.scale, h >= p.threshold);
}

@compute @workgroup_size(256)
fn dropout_forward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    masked(gid, groups);
}

@compute @workgroup_size(256)
fn dropout_backward(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    masked(gid, groups);
}
