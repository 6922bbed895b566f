// Softmax cross-entropy (mean over the batch, as nn.CrossEntropyLoss) with its logits gradient,
// and the correct-prediction count. One workgroup of 256 threads; each thread takes rows
// local, local + 256, …; the batch total is reduced in workgroup memory and added to a resident
// accumulator, so the loss is read back only when the user wants to see it.

struct LossParams {
    batch: u32,
    classes: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: LossParams;
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read> labels: array<u32>;
@group(0) @binding(3) var<storage, read_write> loss_sum: array<f32>;
@group(0) @binding(4) var<storage, read_write> dlogits: array<f32>;
@group(0) @binding(5) var<storage, read_write> correct: array<u32>;

var<workgroup> partial_loss: array<f32, 256>;
var<workgroup> partial_count: array<u32, 256>;

@compute @workgroup_size(256)
fn softmax_cross_entropy(@builtin(local_invocation_index) local: u32) {
    var total = 0.0;
    let inv_batch = 1.0 / f32(p.batch);
    for (var r = local; r < p.batch; r += 256u) {
        let row = r * p.classes;
        var mx = logits[row];
        for (var j = 1u; j < p.classes; j++) {
            mx = max(mx, logits[row + j]);
        }
        var denom = 0.0;
        for (var j = 0u; j < p.classes; j++) {
            denom += exp(logits[row + j] - mx);
        }
        let label = labels[r];
        total += log(denom) + mx - logits[row + label];
        for (var j = 0u; j < p.classes; j++) {
            let prob = exp(logits[row + j] - mx) / denom;
            dlogits[row + j] = (prob - select(0.0, 1.0, j == label)) * inv_batch;
        }
    }
    partial_loss[local] = total;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if local < stride {
            partial_loss[local] += partial_loss[local + stride];
        }
        workgroupBarrier();
    }
    if local == 0u {
        loss_sum[0] += partial_loss[0] * inv_batch;
    }
}

@compute @workgroup_size(256)
fn count_correct(@builtin(local_invocation_index) local: u32) {
    var count = 0u;
    for (var r = local; r < p.batch; r += 256u) {
        let row = r * p.classes;
        var best = 0u;
        var best_v = logits[row];
        for (var j = 1u; j < p.classes; j++) {
            if logits[row + j] > best_v {
                best_v = logits[row + j];
                best = j;
            }
        }
        count += select(0u, 1u, best == labels[r]);
    }
    partial_count[local] = count;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride >>= 1u) {
        if local < stride {
            partial_count[local] += partial_count[local + stride];
        }
        workgroupBarrier();
    }
    if local == 0u {
        correct[0] += partial_count[0];
    }
}
