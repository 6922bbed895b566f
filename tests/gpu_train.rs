//! End to end: the same seed and data trained for a few steps on the CPU and on the GPU give the
//! same loss trajectory and the same final parameters, within f32 tolerance.

mod common;

use cnn_gpu::backend::gpu::{GpuOptions, RuntimeChecks};
use cnn_gpu::backend::Backend;
use cnn_gpu::data::Dataset;
use cnn_gpu::model::{Model, ModelSpec, NamedTensor};
use cnn_gpu::optim::{LrSchedule, OptimConfig, Optimizer};
use cnn_gpu::train::{self, FitOptions, LossRecord, TrainConfig};
use common::{assert_close, cpu, with_gpu_options};

/// 28×28 images of ten classes: class c is a bright bar at row 2c plus deterministic noise,
/// so the network has something to learn in a few steps.
fn bars(count: usize) -> Dataset {
    let mut images = vec![0u8; count * 784];
    let mut labels = Vec::with_capacity(count);
    for i in 0..count {
        let class = (i * 7 + i / 10) % 10;
        labels.push(class as u8);
        let img = &mut images[i * 784..(i + 1) * 784];
        for (q, px) in img.iter_mut().enumerate() {
            *px = ((q * 31 + i * 17) % 61) as u8;
        }
        for col in 2..26 {
            img[(2 + 2 * class) * 28 + col] = 255;
            img[(3 + 2 * class) * 28 + col] = 200;
        }
    }
    Dataset::new(images, labels, 28, 28).expect("consistent synthetic set")
}

fn run<B: Backend>(
    b: &B,
    data: &Dataset,
    optim: OptimConfig,
) -> (Vec<LossRecord>, Vec<NamedTensor>, usize) {
    // 12 steps of batch 16 (the last epoch's last batch partial: 184 = 11·16 + 8).
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 16,
        log_interval: 1,
        seed: 3,
        optim,
        ..TrainConfig::default()
    };
    let mut model = Model::new(b, ModelSpec::simple_cnn(), cfg.seed).expect("a model");
    let summary =
        train::train(b, &mut model, data, data, &cfg, FitOptions::quiet()).expect("training runs");
    let params = model.read_params(b).expect("read parameters");
    (summary.fit.losses, params, summary.eval.correct)
}

#[test]
fn gpu_training_matches_cpu() {
    compare_training(RuntimeChecks::On, OptimConfig::default());
}

/// AdamW with warm-up, a cosine schedule and gradient clipping (the norm reduced on the
/// device): the same trajectory on both backends.
#[test]
fn gpu_adamw_training_matches_cpu() {
    let optim = OptimConfig {
        optimizer: Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            decoupled: true,
        },
        schedule: LrSchedule::Cosine,
        warmup_steps: 3,
        clip_grad_norm: Some(1.0),
    };
    compare_training(RuntimeChecks::On, optim);
}

/// The build real GPUs run: shader modules without naga's bounds checks, workgroup memory not
/// zeroed. The same numbers prove the kernels never relied on either.
#[test]
fn unchecked_gpu_training_matches_cpu() {
    compare_training(RuntimeChecks::Off, OptimConfig::default());
}

fn compare_training(checks: RuntimeChecks, optim: OptimConfig) {
    let data = bars(184);
    let (cpu_losses, cpu_params, cpu_correct) = run(&cpu(), &data, optim);
    assert_eq!(cpu_losses.len(), 12, "one loss record per step");
    assert!(
        cpu_losses.last().unwrap().loss < cpu_losses[0].loss,
        "the loss falls on the CPU: {cpu_losses:?}"
    );
    let options = GpuOptions {
        runtime_checks: checks,
        ..GpuOptions::default()
    };
    with_gpu_options(options, |gpu| {
        assert_eq!(gpu.runtime_checks(), checks == RuntimeChecks::On);
        let (gpu_losses, gpu_params, gpu_correct) = run(gpu, &data, optim);
        let want: Vec<f32> = cpu_losses.iter().map(|r| r.loss).collect();
        let got: Vec<f32> = gpu_losses.iter().map(|r| r.loss).collect();
        assert_close(&got, &want, 1e-4, 1e-3, "loss trajectory");
        for (g, c) in gpu_params.iter().zip(&cpu_params) {
            assert_eq!(g.name, c.name);
            assert_close(&g.data, &c.data, 1e-4, 1e-3, &format!("final {}", c.name));
        }
        let diff = (gpu_correct as i64 - cpu_correct as i64).abs();
        assert!(
            diff <= 1,
            "correct counts agree: GPU {gpu_correct}, CPU {cpu_correct}"
        );
    });
}
