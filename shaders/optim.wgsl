// SGD with momentum in PyTorch's form: v ← μ·v + g; p ← p − lr·v. One thread per parameter.

struct SgdParams {
    len: u32,
    lr: f32,
    momentum: f32,
    _pad0: u32,
}

@group(0) @binding(0) var<uniform> p: SgdParams;
@group(0) @binding(1) var<storage, read> grad: array<f32>;
@group(0) @binding(2) var<storage, read_write> param: array<f32>;
@group(0) @binding(3) var<storage, read_write> velocity: array<f32>;

@compute @workgroup_size(256)
fn sgd_momentum(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let i = gid.x + gid.y * groups.x * 256u;
    if i >= p.len {
        return;
    }
    let v = p.momentum * velocity[i] + grad[i];
    velocity[i] = v;
    param[i] = param[i] - p.lr * v;
}
