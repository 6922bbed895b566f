//! The model and the training loop end to end, one test target in topical modules:
//! - `model`: shape inference and the SimpleCNN preset, seeded initialisation, parameters read
//!   back, a whole-model gradient check against finite differences, the fused ReLU + max-pool;
//! - `step`: the SGD wiring of one step, schedules reaching the update, and what the loop reads
//!   back and flushes;
//! - `fit`: learning a synthetic task (partial batches, AdamW), divergence, metrics, max steps,
//!   shuffling, evaluation in uneven batches, refused data, and (with `CNN_GPU_DATA_DIR` set) a
//!   few hundred steps on MNIST;
//! - `config`: config validation;
//! - `bn_dropout`: batch norm and dropout in training and evaluation, on both backends;
//! - `resume`: stopping and resuming inside an epoch;
//! - `gpu`: the GPU backend's batch limit, buffer count and device loss.
//!
//! Generic bodies take `b: &B` so the GPU backend runs them too (see `backend_test!`). This file
//! holds the model specs, synthetic data and helpers the modules share.

#[path = "../common/mod.rs"]
mod common;

mod bn_dropout;
mod config;
mod fit;
mod gpu;
mod model;
mod resume;
mod step;

use cnn_gpu::backend::Backend;
use cnn_gpu::data::Dataset;
use cnn_gpu::model::{Layer, Model, ModelSpec, Naming, Workspace};
use cnn_gpu::optim::OptimConfig;
use cnn_gpu::train::{FitOptions, TrainConfig, TrainSummary};
use common::*;
use rand::Rng;

fn conv(cin: usize, cout: usize, kh: usize, kw: usize, stride: usize, padding: usize) -> Layer {
    Layer::Conv2d {
        in_channels: cin,
        out_channels: cout,
        kernel_h: kh,
        kernel_w: kw,
        stride,
        padding,
    }
}

fn linear(i: usize, o: usize) -> Layer {
    Layer::Linear {
        in_features: i,
        out_features: o,
    }
}

/// Every layer kind, asymmetric everywhere: H≠W input, a 3×2 kernel, stride 2, padding 0 and 1,
/// overlapping pools. Per-sample shapes in the comments.
fn every_layer_spec() -> ModelSpec {
    ModelSpec {
        naming: Naming::Numbered,
        input: (2, 7, 6),
        layers: vec![
            conv(2, 3, 3, 2, 1, 1), // [3, 7, 7]
            Layer::Relu,
            Layer::AvgPool2d {
                kernel: 2,
                stride: 1,
            }, // [3, 6, 6]
            conv(3, 4, 3, 3, 2, 1), // [4, 3, 3]
            Layer::Relu,
            Layer::MaxPool2d {
                kernel: 2,
                stride: 1,
            }, // [4, 2, 2]
            Layer::Flatten, // [16]
            linear(16, 5),
            Layer::Relu,
            linear(5, 3),
        ],
    }
}

/// Flatten first (it shares the input's buffer), then a small MLP.
fn mlp_spec() -> ModelSpec {
    ModelSpec {
        naming: Naming::Numbered,
        input: (1, 3, 4),
        layers: vec![Layer::Flatten, linear(12, 6), Layer::Relu, linear(6, 4)],
    }
}

/// Fills a workspace's input and labels directly (no dataset).
fn fill_batch<B: Backend>(b: &B, ws: &mut Workspace<B>, x: &[f32], y: &[u32]) {
    let (xb, yb) = ws.input_and_labels_mut();
    b.write_f32(xb, x).expect("write input");
    b.write_u32(yb, y).expect("write labels");
}

/// The batch-mean loss of the model's current parameters on the workspace's batch.
fn loss_now<B: Backend>(
    b: &B,
    model: &Model<B>,
    ws: &mut Workspace<B>,
    loss_sum: &mut B::Buffer,
) -> f64 {
    b.fill_zero(loss_sum).unwrap();
    model.forward(b, ws).unwrap();
    model.loss(b, ws, loss_sum).unwrap();
    b.read_f32(loss_sum).unwrap()[0] as f64
}

/// `n` `rows`×`cols` images of three classes: a bright horizontal line (0), a bright vertical
/// line (1) or a bright diagonal (2), at a random offset, on dim noise.
fn synthetic_images(seed: u64, n: usize, rows: usize, cols: usize) -> Dataset {
    let mut r = rng(seed);
    let mut images = Vec::with_capacity(n * rows * cols);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = (i % 3) as u8;
        let mut img: Vec<u8> = (0..rows * cols).map(|_| r.random_range(0..60)).collect();
        let at = r.random_range(0..rows.min(cols));
        for k in 0..rows.max(cols) {
            let (y, x) = match class {
                0 => (at, k),
                1 => (k, at),
                _ => (k, (k + at) % cols),
            };
            if y < rows && x < cols {
                img[y * cols + x] = r.random_range(200..=255);
            }
        }
        images.extend(img);
        labels.push(class);
    }
    Dataset::new(images, labels, rows, cols).unwrap()
}

fn small_cnn() -> ModelSpec {
    ModelSpec {
        naming: Naming::Numbered,
        input: (1, 8, 8),
        layers: vec![
            conv(1, 4, 3, 3, 1, 1),
            Layer::Relu,
            Layer::MaxPool2d {
                kernel: 2,
                stride: 2,
            },
            Layer::Flatten,
            linear(64, 3),
        ],
    }
}

/// A small CNN with both batch norms and dropout, as a model file would give it
/// (nn.Sequential names): conv → BatchNorm2d → ReLU → pool → flatten → linear →
/// BatchNorm1d → ReLU → Dropout(0.3) → linear.
fn bn_dropout_cnn() -> ModelSpec {
    ModelSpec {
        naming: Naming::Sequential,
        input: (1, 8, 8),
        layers: vec![
            conv(1, 4, 3, 3, 1, 1),
            Layer::BatchNorm2d { features: 4 },
            Layer::Relu,
            Layer::MaxPool2d {
                kernel: 2,
                stride: 2,
            },
            Layer::Flatten,
            linear(64, 16),
            Layer::BatchNorm1d { features: 16 },
            Layer::Relu,
            Layer::Dropout { p: 0.3 },
            linear(16, 3),
        ],
    }
}

/// Trains `spec` 8 epochs on the lines and checks that the last logged loss is under
/// `loss_ratio` times the first and that the test accuracy reaches 95%.
fn train_lines<B: Backend>(b: &B, spec: ModelSpec, loss_ratio: f32) -> (Model<B>, TrainSummary) {
    let train = synthetic_images(1, 250, 8, 8);
    let test = synthetic_images(2, 150, 8, 8);
    let cfg = TrainConfig {
        epochs: 8,
        batch_size: 16,
        lr: 0.02,
        optim: OptimConfig::default(),
        seed: 4,
        log_interval: 4,
        eval_batch_size: 64,
        max_steps: None,
        first_epoch: 1,
        eval_every_epoch: false,
        augment: None,
        shuffle: true,
        resume_within: None,
    };
    let mut model = Model::new(b, spec, cfg.seed).unwrap();
    let summary =
        cnn_gpu::train::train(b, &mut model, &train, &test, &cfg, FitOptions::quiet()).unwrap();
    let fit = &summary.fit;
    assert_eq!(fit.epochs.len(), 8);
    assert!(fit.epochs.iter().all(|e| e.steps == 16 && e.images == 250));
    assert_eq!(
        fit.losses.len(),
        8 * 4,
        "batches 4, 8, 12, 16 of each epoch"
    );
    let first = fit.losses[0].loss;
    let last = fit.losses.last().unwrap().loss;
    assert!(
        last < loss_ratio * first,
        "loss fell from {first} to only {last}: {:?}",
        fit.losses
    );
    assert_eq!(summary.eval.total, 150);
    assert!(
        summary.eval.accuracy_percent() >= 95.0,
        "accuracy {}%",
        summary.eval.accuracy_percent()
    );
    (model, summary)
}
