//! One training step through the loop: from zero momentum it is SGD on the gradient, the
//! scheduled lr reaches the update, and the loop reads back only at log intervals and flushes
//! once per step (counted with `Backend::counters`).

use cnn_gpu::backend::Backend;
use cnn_gpu::model::{Model, ModelSpec, Workspace};
use cnn_gpu::optim::{LrSchedule, OptimConfig};
use cnn_gpu::train::{evaluate, fit, Event, FitOptions, Flow, ResidentDataset, TrainConfig};

use crate::backend_test;
use crate::common::{self, *};
use crate::{bn_dropout_cnn, every_layer_spec, fill_batch, loss_now, small_cnn, synthetic_images};

// ---- the loop's SGD wiring -----------------------------------------------------------------

/// One epoch of one full batch from zero momentum is exactly p − lr·∇L(p) (the first PyTorch
/// momentum step has v = g), whatever order the permutation puts the samples in.
fn one_step_is_sgd_on_the_gradient<B: Backend>(b: &B) {
    first_step_is_sgd_on_the_gradient(b, OptimConfig::default(), 1, 1.0);
}
backend_test!(
    one_step_is_sgd_on_the_gradient_t,
    one_step_is_sgd_on_the_gradient
);

/// The scheduled lr reaches the update through the step-scalars buffer: with a linear warm-up
/// over 4 steps the first step moves by lr/4 along the gradient (PyTorch's LinearLR with
/// start_factor 1/4); a cosine schedule over the run starts at the full lr.
fn schedules_reach_the_update<B: Backend>(b: &B) {
    let warmup = OptimConfig {
        warmup_steps: 4,
        ..OptimConfig::default()
    };
    first_step_is_sgd_on_the_gradient(b, warmup, 4, 0.25);
    let cosine = OptimConfig {
        schedule: LrSchedule::Cosine,
        ..OptimConfig::default()
    };
    first_step_is_sgd_on_the_gradient(b, cosine, 2, 1.0);
}
backend_test!(schedules_reach_the_update_t, schedules_reach_the_update);

/// Trains `epochs` epochs of one full batch with `optim` and checks the parameters after the
/// first (read by the epoch hook) against p − factor·lr·∇L(p).
fn first_step_is_sgd_on_the_gradient<B: Backend>(
    b: &B,
    optim: OptimConfig,
    epochs: usize,
    factor: f32,
) {
    let spec = every_layer_spec();
    let (c, h, w) = spec.input;
    let n = 6;
    let data = synthetic_images(3, n, c * h, w); // C×H×W bytes per sample
    let classes = 3;
    let mut model = Model::new(b, spec.clone(), 3).unwrap();
    let p0 = model.read_params(b).unwrap();

    // The gradient at p0 over the whole set, computed by hand through the same ops.
    let res = ResidentDataset::upload(b, &data, classes, "train").unwrap();
    let mut ws = Workspace::new(b, &model, n).unwrap();
    let x: Vec<f32> = data
        .images
        .iter()
        .map(|&p| cnn_gpu::data::normalize_pixel(p))
        .collect();
    let y: Vec<u32> = data.labels.iter().map(|&l| l as u32).collect();
    fill_batch(b, &mut ws, &x, &y);
    let mut loss_sum = b.zeros(1, "loss_sum").unwrap();
    loss_now(b, &model, &mut ws, &mut loss_sum);
    model.backward(b, &mut ws).unwrap();
    let g = model.read_grads(b).unwrap();

    let cfg = TrainConfig {
        epochs,
        batch_size: n,
        lr: 0.05,
        log_interval: 1,
        optim,
        ..TrainConfig::default()
    };
    let mut p1 = Vec::new();
    let mut hook = |event: &Event, m: &Model<B>| {
        if let Event::EpochEnd { epoch: 1, .. } = event {
            p1 = m.read_params(b)?;
        }
        Ok(Flow::Continue)
    };
    let summary = fit(
        b,
        &mut model,
        &res,
        &cfg,
        FitOptions::quiet().hook(&mut hook),
    )
    .unwrap();
    assert_eq!(summary.epochs.len(), epochs);
    assert_eq!(summary.epochs[0].steps, 1);
    assert_eq!(summary.losses.len(), epochs);
    for ((a, g), after) in p0.iter().zip(&g).zip(&p1) {
        let want: Vec<f32> = a
            .data
            .iter()
            .zip(&g.data)
            .map(|(&p, &g)| p - factor * 0.05 * g)
            .collect();
        assert_close(
            &after.data,
            &want,
            1e-6,
            1e-4,
            &format!("{} after one step", a.name),
        );
    }
}

// ---- no readback inside a step ---------------------------------------------------------------

/// The loop reads back only at log intervals, after the first step (to time start-up) and at
/// the end of each epoch (to time it); it flushes once per step; evaluation reads back once.
/// The same holds with batch norm and dropout (`bn_dropout_cnn`).
fn reads_back_only_at_log_intervals<B: Backend>(b: &B) {
    reads_back_only_at_log_intervals_for(b, small_cnn());
    reads_back_only_at_log_intervals_for(b, bn_dropout_cnn());
}

fn reads_back_only_at_log_intervals_for<B: Backend>(b: &B, spec: ModelSpec) {
    let data = synthetic_images(1, 100, 8, 8); // 100 = 6·16 + 4: 7 steps an epoch
    let res = ResidentDataset::upload(b, &data, 3, "train").unwrap();
    let mut model = Model::new(b, spec, 0).unwrap();
    for (log_interval, logs_per_epoch) in [(100, 0), (3, 2)] {
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 16,
            lr: 0.01,
            log_interval,
            ..TrainConfig::default()
        };
        let before = b.counters();
        let summary = fit(b, &mut model, &res, &cfg, FitOptions::quiet()).unwrap();
        let after = b.counters();
        assert_eq!(summary.losses.len(), 2 * logs_per_epoch);
        assert_eq!(after.flushes - before.flushes, 2 * 7, "one flush per step");
        assert_eq!(
            after.reads - before.reads,
            1 + 2 * logs_per_epoch + 2,
            "reads with log interval {log_interval}"
        );
    }
    let before = b.counters();
    evaluate(b, &model, &res, 30).unwrap();
    assert_eq!(
        b.counters().reads - before.reads,
        1,
        "evaluation reads back once"
    );
}
backend_test!(
    reads_back_only_at_log_intervals_t,
    reads_back_only_at_log_intervals
);
