//! The step plan (`cnn-gpu time --plan`): one SimpleCNN training step's dispatches as the GPU
//! backend records them, on lavapipe.

mod common;

use cnn_gpu::backend::gpu::{GpuBackend, GpuOptions, PlannedDispatch, RuntimeChecks};
use cnn_gpu::model::ModelSpec;
use cnn_gpu::profile::{gemm_flops_per_image, plan_step};

const GEMMS: [&str; 4] = [
    "matmul",
    "conv2d_forward",
    "conv2d_backward_input",
    "conv2d_backward_weight",
];

fn find<'a>(plan: &'a [PlannedDispatch], entry: &str) -> Vec<&'a PlannedDispatch> {
    plan.iter().filter(|d| d.entry == entry).collect()
}

fn plans_simple_cnn(gpu: &GpuBackend) {
    let before = gpu.dispatch_count();
    let plan = plan_step(gpu, ModelSpec::simple_cnn(), 64, 0, 2).expect("plan");
    // Warm-up, planned and two timed steps: four steps of the same dispatches.
    let per_step = (gpu.dispatch_count() - before) / 4;
    assert_eq!(plan.dispatches.len() as u64, per_step);
    assert!(plan.dispatches.len() <= 24, "{:#?}", plan.dispatches);
    assert_eq!(plan.dispatches.len(), 20, "{:#?}", plan.dispatches);
    assert_fused(&plan.dispatches);
    assert!(plan.record_submit > 0.0 && plan.record_submit.is_finite());

    // conv1 forward: M = 32 channels (2 a thread: one 32-row tile), N = 64·28·28 columns
    // (4 a thread: 64-column tiles), K = 9.
    let conv1 = find(&plan.dispatches, "conv2d_forward")[0];
    assert_eq!(conv1.groups, [784, 1, 1]);
    assert_eq!(conv1.flops, 2.0 * 32.0 * (64.0 * 784.0) * 9.0);
    assert!(conv1.constants.contains("CIN=1 H=28 W=28 COUT=32"));
    // Its bound buffers: weights 288, input 64·784, bias 32, output 32·64·784 floats, and the
    // one-word stand-in for the bias-gradient binding that only the weight gradient uses.
    assert_eq!(
        conv1.bytes,
        4.0 * (288 + 64 * 784 + 32 + 32 * 64 * 784 + 1) as f64
    );

    // fc2 forward: 64×64 times 64×10; fc1 forward: 64×3136 times 3136×64, on 16×16 tiles
    // (4 × 4 of them) with K split into 17 slices of 192 (the last 64).
    let fc = find(&plan.dispatches, "matmul");
    assert!(
        fc.iter().any(|d| d.flops == 2.0 * 64.0 * 10.0 * 64.0)
            && fc
                .iter()
                .any(|d| d.flops == 2.0 * 64.0 * 64.0 * 3136.0 && d.groups == [4, 4, 17]),
        "{fc:#?}"
    );

    // conv2's split-K reduce: 18,432 weights and the 64 bias sums (the ones column), 64 a
    // workgroup.
    let reduce = find(&plan.dispatches, "conv2d_backward_weight_reduce");
    assert_eq!(reduce[0].groups, [289, 1, 1]);
    assert!(reduce[0].constants.contains("BIAS_GRAD=1"));
    assert_no_starving(&plan.dispatches);

    let gemm: f64 = plan
        .dispatches
        .iter()
        .filter(|d| GEMMS.contains(&d.entry))
        .map(|d| d.flops)
        .sum();
    // The matrix products add up to what the step bench counts per image: forward, weight
    // gradient, and input gradient but for conv1's.
    let per_image = gemm_flops_per_image(&ModelSpec::simple_cnn()).unwrap();
    assert_eq!(gemm, 64.0 * per_image);
    assert_eq!(per_image, 23_787_264.0);
    assert!(plan.total_flops() > gemm);
}

/// The fusions that keep a step within 24 dispatches: the bias adds, ReLUs and bias sums run
/// in the GEMMs' epilogues (and the pools), and one optimiser dispatch updates every parameter
/// (the 220,234 of them, packed in one buffer).
#[track_caller]
fn assert_fused(plan: &[PlannedDispatch]) {
    for entry in [
        "bias_add",
        "channel_sum",
        "channel_sum_partial",
        "relu_forward",
        "relu_backward",
        "conv2d_backward_bias",
    ] {
        assert_eq!(find(plan, entry).len(), 0, "{entry} runs on its own");
    }
    let sgd = find(plan, "sgd_step");
    assert_eq!(sgd.len(), 1, "one optimiser dispatch");
    // Its bound words: values, gradients and momentum, each ≥ every parameter.
    assert!(sgd[0].bytes >= 3.0 * 4.0 * 220_234.0, "{sgd:?}");
    let epilogues: Vec<&str> = find(plan, "matmul")
        .iter()
        .map(|d| d.constants.as_str())
        .collect();
    for e in ["EPILOGUE=1", "EPILOGUE=3", "EPILOGUE=4"] {
        assert!(
            epilogues.iter().any(|c| c.contains(e)),
            "{e}: {epilogues:?}"
        );
    }
}

/// Every dispatch of ≥ 1 MFLOP or ≥ 1 MB runs at least 132 workgroups (an H100/H200's SMs).
#[track_caller]
fn assert_no_starving(plan: &[PlannedDispatch]) {
    let starving: Vec<(&str, [u32; 3])> = plan
        .iter()
        .filter(|d| d.starves(132))
        .map(|d| (d.entry, d.groups))
        .collect();
    assert_eq!(starving, [], "dispatches that would starve a 132-SM GPU");
}

/// Batch 1024 (two steps on lavapipe: the warm-up and the planned one).
#[test]
fn no_dispatch_starves_at_batch_1024() {
    common::with_gpu(|gpu| {
        let plan = plan_step(gpu, ModelSpec::simple_cnn(), 1024, 0, 0).expect("plan");
        assert_no_starving(&plan.dispatches);
        // fc2's forward and weight gradient (1.3 MFLOP each) split K at this batch.
        assert!(plan.dispatches.len() <= 24, "{:#?}", plan.dispatches);
        assert_eq!(plan.dispatches.len(), 21, "{:#?}", plan.dispatches);
        assert_fused(&plan.dispatches);
    });
}

#[test]
fn plan_lists_every_dispatch_of_a_step() {
    common::with_gpu(plans_simple_cnn);
}

/// Grids folded past the per-dimension limit appear as the backend dispatched them, and the
/// weight gradient's K-split (over z) stays within the limit.
#[test]
fn plan_shows_folded_grids() {
    let options = GpuOptions {
        runtime_checks: RuntimeChecks::On,
        max_workgroups_per_dimension: Some(100),
        ..GpuOptions::default()
    };
    common::with_gpu_options(options, |gpu| {
        let plan = plan_step(gpu, ModelSpec::simple_cnn(), 64, 0, 1).expect("plan");
        assert!(plan
            .dispatches
            .iter()
            .all(|d| d.groups.iter().all(|&g| g <= 100)));
        // conv1 forward's 784 column tiles fold into 100 × 8 over x and z.
        let conv1 = find(&plan.dispatches, "conv2d_forward")[0];
        assert_eq!(conv1.groups, [100, 1, 8]);
    });
}
