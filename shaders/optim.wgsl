// The optimisers in PyTorch's form, one thread per parameter, and their helpers. What changes
// each step (lr, Adam's bias corrections, the gradients' sum of squares, the step number) is
// read from the resident `scalars` buffer the host overwrites once per step (StepScalars in
// src/backend/params.rs), never from a per-step uniform.
//
// scalars: [0] lr, [1] step_size = lr / (1 − β1^t), [2] √(1 − β2^t), [3] Σ grad² (accumulated
// by sum_squares), [4] the step number t as u32 bits.

struct OptimParams {
    len: u32,
    // SGD: momentum.
    momentum: f32,
    // Adam: 1 − β1, β2 and 1 − β2 (each rounded from f64 on the host, as PyTorch's).
    one_minus_beta1: f32,
    beta2: f32,
    one_minus_beta2: f32,
    eps: f32,
    weight_decay: f32,
    // Clip to this global norm; 0: no clipping.
    max_norm: f32,
    // SGD: Nesterov; Adam: decoupled weight decay (AdamW).
    flag: u32,
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

@group(0) @binding(0) var<uniform> p: OptimParams;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> state1: array<f32>;
@group(0) @binding(4) var<storage, read_write> state2: array<f32>;
@group(0) @binding(5) var<storage, read> scalars: array<f32>;

// clip_grad_norm_'s factor: min(1, max_norm / (norm + 1e-6)), 1 for a NaN norm (as the CPU).
fn clip_scale() -> f32 {
    if p.max_norm <= 0.0 {
        return 1.0;
    }
    let coef = p.max_norm / (sqrt(scalars[3]) + 1e-6);
    return select(1.0, coef, coef < 1.0);
}

fn index(gid: vec3<u32>, groups: vec3<u32>) -> u32 {
    return gid.x + gid.y * groups.x * 256u;
}

// g ← scale·grad + wd·param; v ← μ·v + g; param ← param − lr·(nesterov ? g + μ·v : v).
@compute @workgroup_size(256)
fn sgd_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = index(gid, groups);
    if i >= p.len {
        return;
    }
    let lr = scalars[0];
    let w = param[i];
    let d = grad[i] * clip_scale() + p.weight_decay * w;
    let v = p.momentum * state1[i] + d;
    state1[i] = v;
    let step = select(v, d + p.momentum * v, p.flag != 0u);
    param[i] = w - lr * step;
}

// Adam / AdamW (flag): see Adam in src/backend/params.rs. state1 = exp_avg, state2 = exp_avg_sq.
@compute @workgroup_size(256)
fn adam_step(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = index(gid, groups);
    if i >= p.len {
        return;
    }
    let lr = scalars[0];
    var w = param[i];
    var g = grad[i] * clip_scale();
    if p.flag != 0u {
        w = w * (1.0 - lr * p.weight_decay);
    } else {
        g = g + p.weight_decay * w;
    }
    let m = state1[i] + p.one_minus_beta1 * (g - state1[i]);
    let v = p.beta2 * state2[i] + p.one_minus_beta2 * g * g;
    state1[i] = m;
    state2[i] = v;
    let denom = sqrt(v) / scalars[2] + p.eps;
    param[i] = w + (-scalars[1]) * (m / denom);
}

// ---- sum_squares: scalars[3] += Σ x², one workgroup striding over x, then a tree ----------

// Reads `grad` (binding 1) over p.len elements; writes the scalars through binding 7.
@group(0) @binding(7) var<storage, read_write> acc: array<f32>;

var<workgroup> partial: array<f32, 256>;

@compute @workgroup_size(256)
fn sum_squares(@builtin(local_invocation_index) t: u32) {
    var s = 0.0;
    for (var i = t; i < p.len; i = i + 256u) {
        let v = grad[i];
        s = s + v * v;
    }
    partial[t] = s;
    workgroupBarrier();
    for (var half = 128u; half > 0u; half = half / 2u) {
        if t < half {
            partial[t] = partial[t] + partial[t + half];
        }
        workgroupBarrier();
    }
    if t == 0u {
        acc[3] = acc[3] + partial[0];
    }
}

// ---- record_nonfinite: keep the first step whose loss was NaN or infinite -----------------

@group(0) @binding(8) var<storage, read> loss_sum: array<f32>;
@group(0) @binding(9) var<storage, read_write> record: array<u32>;

// One thread (p.len = 1).
@compute @workgroup_size(1)
fn record_nonfinite(@builtin(global_invocation_id) gid: vec3<u32>) {
    if gid.x >= p.len {
        return;
    }
    // All exponent bits set: infinite or NaN (WGSL has no isnan / isinf).
    let bits = bitcast<u32>(loss_sum[0]);
    if record[0] == 0u && (bits & 0x7f800000u) == 0x7f800000u {
        record[0] = bitcast<u32>(scalars[4]);
    }
}
