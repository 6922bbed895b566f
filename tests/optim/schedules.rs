//! The learning-rate schedules (host-side) against PyTorch's, and Adam's per-step scalars.

use cnn_gpu::optim::{LrSchedule, OptimConfig, Optimizer, RunLength};

use crate::common::assert_close;

// ---- learning-rate schedules (host-side) ---------------------------------------------------

/// The lr of 10 steps, 2 steps per epoch, base 0.1.
fn lrs(schedule: LrSchedule, warmup_steps: usize) -> Vec<f32> {
    let optim = OptimConfig {
        schedule,
        warmup_steps,
        ..OptimConfig::default()
    };
    let run = RunLength {
        steps_per_epoch: 2,
        total_steps: 10,
    };
    (0..10).map(|s| optim.lr_at(0.1, s, run) as f32).collect()
}

/// The script's "step (4 steps, gamma 0.5)" (StepLR stepped per batch with step_size 4 = two
/// epochs of two steps), "cosine T_max 10", and both chained after LinearLR warm-up over 3
/// steps (ChainedScheduler).
#[test]
fn schedules_match_pytorch() {
    let step = LrSchedule::Step {
        epochs: 2,
        gamma: 0.5,
    };
    let want_step = [0.1, 0.1, 0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025];
    assert_close(&lrs(step, 0), &want_step, 0.0, 1e-6, "step");
    let want_cos = [
        0.1,
        0.0975528258,
        0.0904508497,
        0.0793892626,
        0.0654508497,
        0.05,
        0.0345491503,
        0.0206107374,
        0.00954915028,
        0.00244717419,
    ];
    assert_close(&lrs(LrSchedule::Cosine, 0), &want_cos, 0.0, 1e-6, "cosine");
    let want_warm_step = [
        0.0333333333,
        0.0666666667,
        0.1,
        0.1,
        0.05,
        0.05,
        0.05,
        0.05,
        0.025,
        0.025,
    ];
    assert_close(&lrs(step, 3), &want_warm_step, 0.0, 1e-6, "warm-up × step");
    let want_warm_cos = [
        0.0333333333,
        0.0650352172,
        0.0904508497,
        0.0793892626,
        0.0654508497,
        0.05,
        0.0345491503,
        0.0206107374,
        0.00954915028,
        0.00244717419,
    ];
    assert_close(
        &lrs(LrSchedule::Cosine, 3),
        &want_warm_cos,
        0.0,
        1e-6,
        "warm-up × cosine",
    );
    assert_eq!(lrs(LrSchedule::Constant, 0), vec![0.1; 10], "constant");
}

/// Adam's per-step scalars: step t = 2 with β1 0.9, β2 0.999 gives step_size = lr / (1 − 0.81)
/// and √(1 − 0.998001); the sum of squares starts at 0 and the step is stored as u32 bits.
#[test]
fn adam_step_scalars() {
    let optim = OptimConfig {
        optimizer: Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        },
        ..OptimConfig::default()
    };
    let run = RunLength {
        steps_per_epoch: 10,
        total_steps: 10,
    };
    let s = optim.scalars(0.019, 2, run);
    assert_eq!(s.lr, 0.019);
    assert!((s.step_size - 0.1).abs() < 1e-7, "{}", s.step_size);
    assert_eq!(s.bias_correction2_sqrt, 0.001999f64.sqrt() as f32);
    let w = s.words();
    assert_eq!((w[3], w[4].to_bits()), (0.0, 2));
}
