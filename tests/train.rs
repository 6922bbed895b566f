//! The model and the training loop end to end: shape inference and the SimpleCNN preset,
//! seeded initialisation, a whole-model gradient check against finite differences, the SGD
//! wiring of one step, learning a synthetic task, partial batches, evaluation in uneven
//! batches, config validation, and (with `CNN_GPU_DATA_DIR` set) a few hundred steps on MNIST.
//!
//! Generic bodies take `b: &B` so the GPU backend runs them too (see `backend_test!`).

mod common;

use cnn_gpu::backend::Backend;
use cnn_gpu::data::{load_mnist, Dataset, DATA_DIR_ENV};
use cnn_gpu::metrics::{read_metrics, MetricsReporter, MetricsWriter, Record};
use cnn_gpu::model::{Layer, Model, ModelSpec, NamedTensor, Naming, Shape, Workspace};
use cnn_gpu::optim::{LrSchedule, OptimConfig, Optimizer};
use cnn_gpu::train::{
    evaluate, evaluate_detailed, fit, Event, FitOptions, Flow, QuietReporter, ResidentDataset,
    TrainConfig, TrainSummary,
};
use cnn_gpu::Error;
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

// ---- (c) the SimpleCNN preset and initialisation -------------------------------------------

#[test]
fn simple_cnn_shapes_and_parameter_count() {
    let spec = ModelSpec::simple_cnn();
    let shapes = spec.infer_shapes().unwrap();
    let map = |c, h, w| Shape::Map { c, h, w };
    assert_eq!(
        shapes,
        vec![
            map(1, 28, 28),
            map(32, 28, 28),
            map(32, 28, 28),
            map(32, 14, 14),
            map(64, 14, 14),
            map(64, 14, 14),
            map(64, 7, 7),
            Shape::Flat(3136),
            Shape::Flat(64),
            Shape::Flat(64),
            Shape::Flat(10),
        ]
    );
    let params = spec.param_shapes().unwrap();
    let expected: Vec<(String, Vec<usize>)> = vec![
        ("conv1.weight".into(), vec![32, 1, 3, 3]),
        ("conv1.bias".into(), vec![32]),
        ("conv2.weight".into(), vec![64, 32, 3, 3]),
        ("conv2.bias".into(), vec![64]),
        ("fc1.weight".into(), vec![64, 3136]),
        ("fc1.bias".into(), vec![64]),
        ("fc2.weight".into(), vec![10, 64]),
        ("fc2.bias".into(), vec![10]),
    ];
    assert_eq!(params, expected);
    // conv1 32·1·9+32, conv2 64·32·9+64, fc1 64·3136+64, fc2 10·64+10.
    let count = (32 * 9 + 32) + (64 * 32 * 9 + 64) + (64 * 3136 + 64) + (10 * 64 + 10);
    assert_eq!(count, 220_234);
    assert_eq!(spec.num_params().unwrap(), count);
    assert_eq!(ModelSpec::default(), spec);
}

#[test]
fn init_is_bounded_by_fan_in_and_seeded() {
    let spec = ModelSpec::simple_cnn();
    let init = spec.init_params(0).unwrap();
    let fan_in = [9, 9, 288, 288, 3136, 3136, 64, 64];
    assert_eq!(init.len(), fan_in.len());
    for (t, &fan) in init.iter().zip(&fan_in) {
        let bound = 1.0 / (fan as f32).sqrt();
        let max = t.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            max <= bound,
            "{}: |value| {max} exceeds 1/√{fan} = {bound}",
            t.name
        );
        // Uniform over the whole range: the extremes come close to the bound, the mean to 0.
        assert!(max > 0.8 * bound, "{}: max |value| {max} ≪ {bound}", t.name);
        let mean = t.data.iter().map(|&v| v as f64).sum::<f64>() / t.data.len() as f64;
        assert!(
            mean.abs() < 0.35 * bound as f64,
            "{}: mean {mean} is far from 0",
            t.name
        );
    }
    assert_eq!(spec.init_params(0).unwrap(), init, "same seed, same values");
    assert_ne!(
        spec.init_params(1).unwrap()[0].data,
        init[0].data,
        "seeds differ"
    );
}

fn uploaded_params_read_back<B: Backend>(b: &B) {
    let spec = every_layer_spec();
    let init = spec.init_params(7).unwrap();
    let mut model = Model::new(b, spec, 7).unwrap();
    assert_eq!(model.read_params(b).unwrap(), init);

    // set_params: a subset by name, then errors that change nothing.
    let mut t = init[2].clone();
    t.data.iter_mut().for_each(|v| *v = 0.25);
    model.set_params(b, std::slice::from_ref(&t)).unwrap();
    let back = model.read_params(b).unwrap();
    assert_eq!(back[2], t);
    assert_eq!(back[3], init[3]);

    let unknown = NamedTensor {
        name: "conv9.weight".into(),
        ..t.clone()
    };
    let short = NamedTensor {
        data: vec![0.0; 3],
        ..init[0].clone()
    };
    for bad in [unknown, short] {
        let err = model
            .set_params(b, &[init[0].clone(), bad.clone()])
            .unwrap_err();
        assert!(matches!(err, Error::InvalidParams(_)), "{err}");
        assert!(err.to_string().contains(&bad.name), "{err}");
    }
    assert_eq!(model.read_params(b).unwrap()[0], init[0], "nothing written");
}
backend_test!(uploaded_params_read_back_t, uploaded_params_read_back);

#[test]
fn shape_errors_name_the_layer() {
    let mut spec = ModelSpec::simple_cnn();
    spec.layers.remove(6); // the Flatten
    let err = spec.infer_shapes().unwrap_err().to_string();
    assert!(
        err.contains("layer 6 (Linear(3136→64))") && err.contains("Flatten"),
        "{err}"
    );

    let mut spec = ModelSpec::simple_cnn();
    spec.input = (3, 28, 28);
    let err = spec.infer_shapes().unwrap_err().to_string();
    assert!(
        err.contains("layer 0 (Conv2d") && err.contains("3"),
        "{err}"
    );

    let mut spec = ModelSpec::simple_cnn();
    spec.input = (1, 32, 32); // 64·8·8 ≠ 3136 features
    let err = spec.infer_shapes().unwrap_err().to_string();
    assert!(err.contains("layer 7") && err.contains("4096"), "{err}");

    let spec = ModelSpec {
        naming: Naming::Numbered,
        input: (1, 2, 2),
        layers: vec![Layer::MaxPool2d {
            kernel: 3,
            stride: 1,
        }],
    };
    let err = spec.infer_shapes().unwrap_err().to_string();
    assert!(err.contains("layer 0 (MaxPool2d"), "{err}");

    let spec = ModelSpec {
        naming: Naming::Numbered,
        input: (1, 2, 2),
        layers: vec![Layer::Flatten, Layer::Relu],
    };
    assert!(spec.infer_shapes().is_err(), "no parameters at all");
}

// ---- (b) whole-model gradient check ----------------------------------------------------------

/// The model's backward (every parameter gradient) against central differences of the loss,
/// at up to 48 entries of every tensor.
fn model_gradients_match_finite_differences<B: Backend>(b: &B) {
    for (what, spec, batch) in [
        ("every-layer model", every_layer_spec(), 3),
        ("MLP", mlp_spec(), 2),
    ] {
        let mut model = Model::new(b, spec.clone(), 11).unwrap();
        let input_len = model.input_len();
        let classes = model.classes() as u32;
        let mut ws = Workspace::new(b, &model, batch).unwrap();
        let x = rand_vec(5, batch * input_len, -1.0, 1.0);
        let y: Vec<u32> = (0..batch as u32).map(|i| (i * 2 + 1) % classes).collect();
        fill_batch(b, &mut ws, &x, &y);
        let mut loss_sum = b.zeros(1, "loss_sum").unwrap();

        loss_now(b, &model, &mut ws, &mut loss_sum);
        model.backward(b, &mut ws).unwrap();
        let grads = model.read_grads(b).unwrap();
        let params = model.read_params(b).unwrap();
        for (p, g) in params.iter().zip(&grads) {
            assert_eq!(p.name, g.name);
            assert!(
                g.data.iter().any(|&v| v != 0.0),
                "{what}: {} has an all-zero gradient",
                g.name
            );
            check_gradient(
                &format!("{what}: {}", p.name),
                &p.data,
                &g.data,
                1e-3,
                1e-3,
                2e-2,
                |v| {
                    let t = NamedTensor {
                        data: v.to_vec(),
                        ..p.clone()
                    };
                    model.set_params(b, &[t]).unwrap();
                    loss_now(b, &model, &mut ws, &mut loss_sum)
                },
            );
            model.set_params(b, std::slice::from_ref(p)).unwrap();
        }
    }
}
backend_test!(
    model_gradients_match_finite_differences_t,
    model_gradients_match_finite_differences
);

/// Training runs a ReLU followed by a max-pool as one fused op; a dropout of p = 0 between them
/// (an exact copy) keeps them apart. Both models must give the same loss and every parameter
/// gradient bit for bit, after a training forward pass and after an evaluation one.
fn fused_relu_pool_changes_nothing<B: Backend>(b: &B) {
    let fused = ModelSpec::simple_cnn();
    let mut apart = fused.clone();
    let mut layers = Vec::new();
    for (i, layer) in fused.layers.iter().enumerate() {
        layers.push(layer.clone());
        if *layer == Layer::Relu && matches!(fused.layers[i + 1], Layer::MaxPool2d { .. }) {
            layers.push(Layer::Dropout { p: 0.0 });
        }
    }
    assert_eq!(
        layers.len(),
        fused.layers.len() + 2,
        "SimpleCNN has two ReLU + max-pool pairs"
    );
    apart.layers = layers;
    let batch = 3;
    let x = rand_vec(21, batch * 784, -1.0, 1.0);
    let y = [3u32, 0, 9];
    let run = |spec: ModelSpec, train: bool| {
        let mut model = Model::new(b, spec, 5).unwrap();
        let mut ws = Workspace::new(b, &model, batch).unwrap();
        fill_batch(b, &mut ws, &x, &y);
        let mut loss_sum = b.zeros(1, "loss_sum").unwrap();
        if train {
            model.forward_train(b, &mut ws).unwrap();
        } else {
            model.forward(b, &mut ws).unwrap();
        }
        model.loss(b, &mut ws, &mut loss_sum).unwrap();
        model.backward(b, &mut ws).unwrap();
        let loss = b.read_f32(&loss_sum).unwrap();
        (loss, model.read_grads(b).unwrap())
    };
    for train in [true, false] {
        let (loss_f, grads_f) = run(fused.clone(), train);
        let (loss_a, grads_a) = run(apart.clone(), train);
        assert_close(&loss_f, &loss_a, 0.0, 0.0, "loss");
        assert_eq!(grads_f.len(), 8);
        for (f, a) in grads_f.iter().zip(&grads_a) {
            assert_eq!(f.name, a.name);
            assert!(f.data.iter().any(|&v| v != 0.0), "{} is all zero", f.name);
            let what = format!("{} (training forward: {train})", f.name);
            assert_close(&f.data, &a.data, 0.0, 0.0, &what);
        }
    }
}
backend_test!(
    fused_relu_pool_changes_nothing_t,
    fused_relu_pool_changes_nothing
);

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

// ---- (a) learning a synthetic task -----------------------------------------------------------

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

/// A few epochs of a small CNN on 8×8 lines: the loss falls and the test accuracy is high.
/// 250 images in batches of 16 also exercises the partial last batch (250 = 15·16 + 10).
fn learns_synthetic_lines<B: Backend>(b: &B) {
    train_lines(b, small_cnn(), 0.25);
}
backend_test!(learns_synthetic_lines_t, learns_synthetic_lines);

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

/// AdamW with warm-up, a cosine schedule and clipping learns the same task (every optimiser
/// feature wired through the loop at once).
fn learns_with_adamw<B: Backend>(b: &B) {
    let train = synthetic_images(1, 250, 8, 8);
    let test = synthetic_images(2, 150, 8, 8);
    let cfg = TrainConfig {
        epochs: 6,
        batch_size: 16,
        lr: 0.01,
        optim: OptimConfig {
            optimizer: Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.01,
                decoupled: true,
            },
            schedule: LrSchedule::Cosine,
            warmup_steps: 10,
            clip_grad_norm: Some(5.0),
        },
        seed: 4,
        log_interval: 16,
        eval_batch_size: 64,
        ..TrainConfig::default()
    };
    let mut model = Model::new(b, small_cnn(), cfg.seed).unwrap();
    let summary =
        cnn_gpu::train::train(b, &mut model, &train, &test, &cfg, FitOptions::quiet()).unwrap();
    let losses = &summary.fit.losses;
    let (first, last) = (losses[0].loss, losses.last().unwrap().loss);
    assert!(last < 0.25 * first, "loss fell from {first} to only {last}");
    assert!(
        summary.eval.accuracy_percent() >= 95.0,
        "accuracy {}%",
        summary.eval.accuracy_percent()
    );
}
backend_test!(learns_with_adamw_t, learns_with_adamw);

/// An absurd lr makes the loss NaN or infinite: the run stops with `Error::Diverged` naming
/// the first such step. With a loss read after every step the host sees that step itself;
/// read only at the end of the epoch (log interval 100), the backend's record names the same
/// step. The epoch hook (which saves checkpoints) never sees the diverged epoch.
fn divergence_names_the_step<B: Backend>(b: &B) {
    let data = synthetic_images(1, 100, 8, 8); // 7 steps an epoch
    let res = ResidentDataset::upload(b, &data, 3, "train").unwrap();
    let diverged = |log_interval: usize| {
        let cfg = TrainConfig {
            epochs: 2,
            batch_size: 16,
            lr: 1e30,
            log_interval,
            ..TrainConfig::default()
        };
        let mut model = Model::new(b, small_cnn(), 0).unwrap();
        let mut hooked = Vec::new();
        let mut hook = |event: &Event, _: &Model<B>| {
            if let Event::EpochEnd { epoch, .. } = event {
                hooked.push(*epoch);
            }
            Ok(Flow::Continue)
        };
        let err = fit(
            b,
            &mut model,
            &res,
            &cfg,
            FitOptions::quiet().hook(&mut hook),
        )
        .expect_err("lr 1e30 diverges");
        (err, hooked)
    };
    let (every_step, hooked) = diverged(1);
    let Error::Diverged {
        step, epoch, batch, ..
    } = every_step
    else {
        panic!("expected Diverged, got {every_step:?}")
    };
    assert!(
        (2..=7).contains(&step),
        "step 1's loss is of the initial weights: {step}"
    );
    assert_eq!((epoch, batch), (1, step), "{every_step}");
    assert!(hooked.is_empty(), "no epoch hook after divergence");
    let msg = every_step.to_string();
    assert!(
        msg.contains(&format!("at step {step} ")) && msg.contains("learning rate"),
        "{msg}"
    );
    let (at_epoch_end, hooked) = diverged(100);
    assert!(
        matches!(at_epoch_end, Error::Diverged { step: s, .. } if s == step),
        "the record names step {step}: {at_epoch_end}"
    );
    assert!(hooked.is_empty());
}
backend_test!(divergence_names_the_step_t, divergence_names_the_step);
/// `--metrics`: one log record per interval carrying the loop's own losses and global step,
/// and one epoch record per epoch whose mean loss is the mean of that epoch's intervals (the
/// intervals cover every step here) and whose test accuracy, after the last epoch, is the final
/// evaluation's.
fn metrics_record_every_interval_and_epoch<B: Backend>(b: &B) {
    let train = synthetic_images(1, 250, 8, 8);
    let test = synthetic_images(2, 150, 8, 8);
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 16,
        lr: 0.02,
        log_interval: 4,
        eval_batch_size: 64,
        eval_every_epoch: true,
        ..TrainConfig::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metrics.jsonl");
    let writer = MetricsWriter::create(&path).unwrap();
    let mut rep = MetricsReporter::new(QuietReporter, writer, "test", Some("adapter".into()));
    let mut model = Model::new(b, small_cnn(), 4).unwrap();
    let summary = cnn_gpu::train::train(
        b,
        &mut model,
        &train,
        &test,
        &cfg,
        FitOptions::reporting(&mut rep),
    )
    .unwrap();
    rep.finish().unwrap();
    let records = read_metrics(&path).unwrap();
    assert_eq!(
        records.len(),
        3 * 4 + 3,
        "4 intervals and 1 epoch line per epoch"
    );
    let mut logs = Vec::new();
    for (e, chunk) in records.chunks(5).enumerate() {
        let epoch = e + 1;
        let mut interval_losses = Vec::new();
        for (i, r) in chunk[..4].iter().enumerate() {
            let Record::Log {
                epoch: re,
                batch,
                step,
                loss,
                backend,
                adapter,
                ..
            } = r
            else {
                panic!("record {i} of epoch {epoch} is not a log record: {r:?}");
            };
            assert_eq!(
                (*re, *batch, *step),
                (epoch, 4 * (i + 1), 16 * e + 4 * (i + 1))
            );
            assert_eq!(
                (backend.as_str(), adapter.as_deref()),
                ("test", Some("adapter"))
            );
            interval_losses.push(*loss);
            logs.push(*loss);
        }
        let Record::Epoch {
            epoch: re,
            step,
            loss,
            test_accuracy,
            ..
        } = &chunk[4]
        else {
            panic!(
                "the 5th record of epoch {epoch} is not an epoch record: {:?}",
                chunk[4]
            );
        };
        assert_eq!((*re, *step), (epoch, 16 * epoch));
        let mean = interval_losses.iter().sum::<f64>() / 4.0;
        assert!(
            (loss - mean).abs() < 1e-5,
            "epoch {epoch}: mean loss {loss}, intervals {mean}"
        );
        assert!((0.0..=100.0).contains(test_accuracy));
        if epoch == 3 {
            assert_eq!(*test_accuracy, summary.eval.accuracy_percent());
        }
    }
    let fit_losses: Vec<f64> = summary.fit.losses.iter().map(|r| r.loss as f64).collect();
    assert_eq!(logs, fit_losses);
}
backend_test!(
    metrics_record_every_interval_and_epoch_t,
    metrics_record_every_interval_and_epoch
);

/// `max_steps` ends the run mid-epoch, after exactly that many steps, and still evaluates.
fn max_steps_stops_mid_epoch<B: Backend>(b: &B) {
    let train = synthetic_images(1, 100, 8, 8);
    let cfg = TrainConfig {
        epochs: 3,
        batch_size: 16,
        log_interval: 1,
        max_steps: Some(9),
        ..TrainConfig::default()
    };
    let mut model = Model::new(b, small_cnn(), 2).unwrap();
    let summary =
        cnn_gpu::train::train(b, &mut model, &train, &train, &cfg, FitOptions::quiet()).unwrap();
    let fit = &summary.fit;
    // 100 images are 7 steps an epoch (the last of 4): epoch 1 whole, then 2 steps of epoch 2.
    assert_eq!(fit.losses.len(), 9);
    assert_eq!(fit.epochs.len(), 2);
    assert_eq!((fit.epochs[0].steps, fit.epochs[0].images), (7, 100));
    assert_eq!((fit.epochs[1].steps, fit.epochs[1].images), (2, 32));
    assert_eq!(fit.losses.last().map(|r| (r.epoch, r.batch)), Some((2, 2)));
    assert_eq!(summary.eval.total, 100);
}
backend_test!(max_steps_stops_mid_epoch_t, max_steps_stops_mid_epoch);

/// Without shuffling, the first step trains on the file's first batch: its logged loss is the
/// untrained model's mean loss over exactly those images (and, shuffled, over others).
fn no_shuffle_takes_the_files_order<B: Backend>(b: &B) {
    let train = synthetic_images(3, 100, 8, 8);
    let first = Dataset::new(
        train.images[..16 * 64].to_vec(),
        train.labels[..16].to_vec(),
        8,
        8,
    )
    .unwrap();
    let model = Model::new(b, small_cnn(), 2).unwrap();
    let res = ResidentDataset::upload(b, &first, 3, "first batch").unwrap();
    let want = evaluate_detailed(b, &model, &res, 16).unwrap().mean_loss as f32;
    let first_loss = |shuffle: bool| {
        let cfg = TrainConfig {
            epochs: 1,
            batch_size: 16,
            log_interval: 1,
            max_steps: Some(1),
            shuffle,
            ..TrainConfig::default()
        };
        let mut model = Model::new(b, small_cnn(), 2).unwrap();
        let data = ResidentDataset::upload(b, &train, 3, "train").unwrap();
        fit(b, &mut model, &data, &cfg, FitOptions::quiet())
            .unwrap()
            .losses[0]
            .loss
    };
    let unshuffled = first_loss(false);
    assert!((unshuffled - want).abs() < 1e-5, "{unshuffled} vs {want}");
    let shuffled = first_loss(true);
    assert!(
        (shuffled - want).abs() > 1e-4,
        "a shuffled first batch is another one"
    );
}
backend_test!(
    no_shuffle_takes_the_files_order_t,
    no_shuffle_takes_the_files_order
);

/// The count of correct answers does not depend on how the evaluation set is batched.
fn evaluation_batching_does_not_matter<B: Backend>(b: &B) {
    let data = synthetic_images(9, 23, 8, 8);
    let model = Model::new(b, small_cnn(), 5).unwrap();
    let res = ResidentDataset::upload(b, &data, 3, "eval").unwrap();
    let whole = evaluate(b, &model, &res, 23).unwrap();
    assert_eq!(whole.total, 23);
    for batch in [1, 5, 22, 100] {
        assert_eq!(
            evaluate(b, &model, &res, batch).unwrap(),
            whole,
            "batch {batch}"
        );
    }
}
backend_test!(
    evaluation_batching_does_not_matter_t,
    evaluation_batching_does_not_matter
);

fn bad_labels_and_sizes_are_refused<B: Backend>(b: &B) {
    let mut data = synthetic_images(9, 6, 8, 8);
    data.labels[4] = 3;
    let err = ResidentDataset::upload(b, &data, 3, "train")
        .err()
        .expect("label 3 of 3 classes");
    assert!(err.to_string().contains("label 3"), "{err}");

    let data = synthetic_images(9, 6, 8, 8);
    let res = ResidentDataset::upload(b, &data, 3, "train").unwrap();
    let mut model = Model::new(b, mlp_spec(), 0).unwrap(); // takes 12 values, not 64
    let err = fit(
        b,
        &mut model,
        &res,
        &TrainConfig::default(),
        FitOptions::quiet(),
    )
    .expect_err("batch 64 > 6 images");
    assert!(
        err.to_string().contains("larger than the training set"),
        "{err}"
    );
    let cfg = TrainConfig {
        batch_size: 2,
        ..TrainConfig::default()
    };
    let err = fit(b, &mut model, &res, &cfg, FitOptions::quiet()).expect_err("input size");
    assert!(err.to_string().contains("64 pixels"), "{err}");
}
backend_test!(
    bad_labels_and_sizes_are_refused_t,
    bad_labels_and_sizes_are_refused
);

// ---- (d) configuration -----------------------------------------------------------------------

/// The default optimiser settings with SGD momentum `momentum`.
fn sgd(momentum: f32) -> OptimConfig {
    OptimConfig {
        optimizer: Optimizer::sgd(momentum),
        ..OptimConfig::default()
    }
}

#[test]
fn config_validation() {
    let ok = TrainConfig::default();
    assert_eq!(
        (
            ok.epochs,
            ok.batch_size,
            ok.lr,
            ok.optim.optimizer,
            ok.log_interval
        ),
        (5, 64, 0.001, Optimizer::sgd(0.9), 100)
    );
    ok.validate().unwrap();
    ok.validate_for(60_000).unwrap();
    ok.validate_for(64).unwrap();

    let cases: Vec<(TrainConfig, &str)> = vec![
        (
            TrainConfig {
                epochs: 0,
                ..ok.clone()
            },
            "epochs",
        ),
        (
            TrainConfig {
                batch_size: 0,
                ..ok.clone()
            },
            "batch size",
        ),
        (
            TrainConfig {
                eval_batch_size: 0,
                ..ok.clone()
            },
            "evaluation batch",
        ),
        (
            TrainConfig {
                lr: 0.0,
                ..ok.clone()
            },
            "learning rate",
        ),
        (
            TrainConfig {
                lr: -0.1,
                ..ok.clone()
            },
            "learning rate",
        ),
        (
            TrainConfig {
                lr: f32::NAN,
                ..ok.clone()
            },
            "learning rate",
        ),
        (
            TrainConfig {
                lr: f32::INFINITY,
                ..ok.clone()
            },
            "learning rate",
        ),
        (
            TrainConfig {
                optim: sgd(1.0),
                ..ok.clone()
            },
            "momentum",
        ),
        (
            TrainConfig {
                optim: sgd(-0.1),
                ..ok.clone()
            },
            "momentum",
        ),
        (
            TrainConfig {
                optim: sgd(f32::NAN),
                ..ok.clone()
            },
            "momentum",
        ),
        (
            TrainConfig {
                log_interval: 0,
                ..ok.clone()
            },
            "log interval",
        ),
        (
            TrainConfig {
                max_steps: Some(0),
                ..ok.clone()
            },
            "max steps",
        ),
        (
            TrainConfig {
                optim: OptimConfig {
                    clip_grad_norm: Some(0.0),
                    ..OptimConfig::default()
                },
                ..ok.clone()
            },
            "clip_grad_norm",
        ),
        (
            TrainConfig {
                optim: OptimConfig {
                    optimizer: Optimizer::Adam {
                        beta1: 0.9,
                        beta2: 1.0,
                        eps: 1e-8,
                        weight_decay: 0.0,
                        decoupled: false,
                    },
                    ..OptimConfig::default()
                },
                ..ok.clone()
            },
            "beta2",
        ),
    ];
    for (cfg, what) in cases {
        let err = cfg.validate().expect_err(what).to_string();
        assert!(err.contains(what), "{what}: {err}");
        // The library names values; only the CLI knows its flags.
        assert!(!err.contains("--"), "{what} names a flag: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
    TrainConfig {
        optim: sgd(0.0),
        ..ok.clone()
    }
    .validate()
    .unwrap();
    let err = ok.validate_for(63).unwrap_err().to_string();
    assert!(
        err.contains("batch size 64 is larger than the training set (63"),
        "{err}"
    );
    assert!(ok.validate_for(0).is_err());
    // Warm-up longer than the run: 2 epochs of 64 images in batches of 64, or 1 max step.
    let warm = TrainConfig {
        epochs: 2,
        optim: OptimConfig {
            warmup_steps: 3,
            ..OptimConfig::default()
        },
        ..ok.clone()
    };
    let err = warm.validate_for(64).unwrap_err().to_string();
    assert!(
        err.contains("warmup_steps 3 is longer than the run (2 steps)"),
        "{err}"
    );
    warm.validate_for(65).unwrap();
    let short = TrainConfig {
        max_steps: Some(1),
        ..warm
    };
    short
        .validate_for(65)
        .expect("max steps cuts the run short without changing its schedule");
}

// ---- (e) real MNIST --------------------------------------------------------------------------

/// 300 steps of SimpleCNN with the tutorial's settings on the first 19,200 MNIST training
/// images: the mean loss of the last 50 steps is clearly below that of the first 50 (≈ 2.30,
/// i.e. ln 10), and the model already beats chance on 2,000 test images.
fn mnist_loss_falls<B: Backend>(b: &B) {
    let Some(dir) = std::env::var_os(DATA_DIR_ENV) else {
        eprintln!("skipped: set {DATA_DIR_ENV} to the MNIST directory to run this test");
        return;
    };
    let mnist = load_mnist(std::path::Path::new(&dir)).expect("MNIST");
    let subset = |d: &Dataset, n: usize| {
        Dataset::new(
            d.images[..n * d.image_len()].to_vec(),
            d.labels[..n].to_vec(),
            d.rows,
            d.cols,
        )
        .unwrap()
    };
    let train = subset(&mnist.train, 300 * 64);
    let test = subset(&mnist.test, 2000);
    let cfg = TrainConfig {
        epochs: 1,
        log_interval: 50,
        ..TrainConfig::default()
    };
    let mut model = Model::new(b, ModelSpec::simple_cnn(), cfg.seed).unwrap();
    let summary =
        cnn_gpu::train::train(b, &mut model, &train, &test, &cfg, FitOptions::quiet()).unwrap();
    let losses: Vec<f32> = summary.fit.losses.iter().map(|r| r.loss).collect();
    eprintln!(
        "MNIST, 300 steps on {}: losses {losses:?}, accuracy {:.2}%, {:.0} images/s",
        b.describe(),
        summary.eval.accuracy_percent(),
        summary.fit.steady_images_per_sec
    );
    assert_eq!(losses.len(), 6);
    assert!((losses[0] - 2.30).abs() < 0.1, "start {}", losses[0]);
    assert!(
        losses[5] < 0.8 * losses[0],
        "loss did not fall clearly: {losses:?}"
    );
    assert!(
        summary.eval.accuracy_percent() > 40.0,
        "accuracy {}%",
        summary.eval.accuracy_percent()
    );
}
// CPU only: 300 SimpleCNN steps at batch 64 take about half an hour on lavapipe. The GPU
// kernels are held to the CPU's results by tests/gpu_vs_cpu.rs and tests/gpu_train.rs.
#[test]
fn mnist_loss_falls_cpu() {
    mnist_loss_falls(&common::cpu());
}

// ---- no readback inside a step ---------------------------------------------------------------

/// Delegates every op to `inner`, counting readbacks and flushes.
struct Counting<'a, B: Backend> {
    inner: &'a B,
    reads: std::cell::Cell<usize>,
    flushes: std::cell::Cell<usize>,
}

impl<B: Backend> Backend for Counting<'_, B> {
    type Buffer = B::Buffer;
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn zeros(&self, len: usize, label: &str) -> cnn_gpu::Result<B::Buffer> {
        self.inner.zeros(len, label)
    }
    fn upload_f32(&self, data: &[f32], label: &str) -> cnn_gpu::Result<B::Buffer> {
        self.inner.upload_f32(data, label)
    }
    fn upload_u32(&self, data: &[u32], label: &str) -> cnn_gpu::Result<B::Buffer> {
        self.inner.upload_u32(data, label)
    }
    fn write_f32(&self, buf: &mut B::Buffer, data: &[f32]) -> cnn_gpu::Result<()> {
        self.inner.write_f32(buf, data)
    }
    fn write_u32(&self, buf: &mut B::Buffer, data: &[u32]) -> cnn_gpu::Result<()> {
        self.inner.write_u32(buf, data)
    }
    fn fill_zero(&self, buf: &mut B::Buffer) -> cnn_gpu::Result<()> {
        self.inner.fill_zero(buf)
    }
    fn read_f32(&self, buf: &B::Buffer) -> cnn_gpu::Result<Vec<f32>> {
        self.reads.set(self.reads.get() + 1);
        self.inner.read_f32(buf)
    }
    fn read_u32(&self, buf: &B::Buffer) -> cnn_gpu::Result<Vec<u32>> {
        self.reads.set(self.reads.get() + 1);
        self.inner.read_u32(buf)
    }
    fn len(&self, buf: &B::Buffer) -> usize {
        self.inner.len(buf)
    }
    fn flush(&self) -> cnn_gpu::Result<()> {
        self.flushes.set(self.flushes.get() + 1);
        self.inner.flush()
    }
    fn counters(&self) -> cnn_gpu::backend::Counters {
        self.inner.counters()
    }
    fn start_profile(&self) -> cnn_gpu::Result<()> {
        self.inner.start_profile()
    }
    fn scope(&self, name: &str) {
        self.inner.scope(name)
    }
    fn finish_profile(&self) -> cnn_gpu::Result<Vec<(String, f64)>> {
        self.inner.finish_profile()
    }
    fn gather_batch(
        &self,
        p: &cnn_gpu::backend::Gather,
        images: &B::Buffer,
        labels: &B::Buffer,
        perm: &B::Buffer,
        x: &mut B::Buffer,
        y: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.gather_batch(p, images, labels, perm, x, y)
    }
    fn gather_batch_affine(
        &self,
        p: &cnn_gpu::backend::GatherAffine,
        images: &B::Buffer,
        labels: &B::Buffer,
        perm: &B::Buffer,
        affine: &B::Buffer,
        x: &mut B::Buffer,
        y: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner
            .gather_batch_affine(p, images, labels, perm, affine, x, y)
    }
    fn conv2d_forward(
        &self,
        p: &cnn_gpu::backend::Conv2d,
        x: &B::Buffer,
        w: &B::Buffer,
        bias: &B::Buffer,
        out: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.conv2d_forward(p, x, w, bias, out)
    }
    fn conv2d_backward_input(
        &self,
        p: &cnn_gpu::backend::Conv2d,
        dout: &B::Buffer,
        w: &B::Buffer,
        dx: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.conv2d_backward_input(p, dout, w, dx)
    }
    fn conv2d_backward_weight(
        &self,
        p: &cnn_gpu::backend::Conv2d,
        x: &B::Buffer,
        dout: &B::Buffer,
        dw: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.conv2d_backward_weight(p, x, dout, dw)
    }
    fn conv2d_backward_bias(
        &self,
        p: &cnn_gpu::backend::Conv2d,
        dout: &B::Buffer,
        dbias: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.conv2d_backward_bias(p, dout, dbias)
    }
    fn maxpool2d_forward(
        &self,
        p: &cnn_gpu::backend::Pool2d,
        x: &B::Buffer,
        out: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.maxpool2d_forward(p, x, out)
    }
    fn maxpool2d_backward(
        &self,
        p: &cnn_gpu::backend::Pool2d,
        x: &B::Buffer,
        dout: &B::Buffer,
        dx: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.maxpool2d_backward(p, x, dout, dx)
    }
    fn relu_maxpool2d_forward(
        &self,
        p: &cnn_gpu::backend::Pool2d,
        x: &B::Buffer,
        out: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.relu_maxpool2d_forward(p, x, out)
    }
    fn relu_maxpool2d_backward(
        &self,
        p: &cnn_gpu::backend::Pool2d,
        x: &B::Buffer,
        dout: &B::Buffer,
        dx: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.relu_maxpool2d_backward(p, x, dout, dx)
    }
    fn avgpool2d_forward(
        &self,
        p: &cnn_gpu::backend::Pool2d,
        x: &B::Buffer,
        out: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.avgpool2d_forward(p, x, out)
    }
    fn avgpool2d_backward(
        &self,
        p: &cnn_gpu::backend::Pool2d,
        dout: &B::Buffer,
        dx: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.avgpool2d_backward(p, dout, dx)
    }
    fn relu_forward(&self, len: usize, x: &B::Buffer, y: &mut B::Buffer) -> cnn_gpu::Result<()> {
        self.inner.relu_forward(len, x, y)
    }
    fn relu_backward(
        &self,
        len: usize,
        y: &B::Buffer,
        dy: &B::Buffer,
        dx: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.relu_backward(len, y, dy, dx)
    }
    fn dropout_forward(
        &self,
        p: &cnn_gpu::backend::Dropout,
        step: &B::Buffer,
        x: &B::Buffer,
        y: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.dropout_forward(p, step, x, y)
    }
    fn dropout_backward(
        &self,
        p: &cnn_gpu::backend::Dropout,
        step: &B::Buffer,
        dy: &B::Buffer,
        dx: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.dropout_backward(p, step, dy, dx)
    }
    fn batch_norm_stats(
        &self,
        p: &cnn_gpu::backend::BatchNorm,
        x: &B::Buffer,
        stats: &mut B::Buffer,
        running: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.batch_norm_stats(p, x, stats, running)
    }
    fn batch_norm_forward(
        &self,
        p: &cnn_gpu::backend::BatchNorm,
        x: &B::Buffer,
        stats: &B::Buffer,
        weight: &B::Buffer,
        bias: &B::Buffer,
        y: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.batch_norm_forward(p, x, stats, weight, bias, y)
    }
    fn batch_norm_backward_params(
        &self,
        p: &cnn_gpu::backend::BatchNorm,
        x: &B::Buffer,
        dy: &B::Buffer,
        stats: &B::Buffer,
        dweight: &mut B::Buffer,
        dbias: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner
            .batch_norm_backward_params(p, x, dy, stats, dweight, dbias)
    }
    fn batch_norm_backward_input(
        &self,
        p: &cnn_gpu::backend::BatchNorm,
        x: &B::Buffer,
        dy: &B::Buffer,
        stats: &B::Buffer,
        weight: &B::Buffer,
        dweight: &B::Buffer,
        dbias: &B::Buffer,
        dx: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner
            .batch_norm_backward_input(p, x, dy, stats, weight, dweight, dbias, dx)
    }
    fn matmul(
        &self,
        p: &cnn_gpu::backend::Matmul,
        a: &B::Buffer,
        b: &B::Buffer,
        c: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.matmul(p, a, b, c)
    }
    fn bias_add(
        &self,
        p: &cnn_gpu::backend::Channels,
        bias: &B::Buffer,
        x: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.bias_add(p, bias, x)
    }
    fn channel_sum(
        &self,
        p: &cnn_gpu::backend::Channels,
        x: &B::Buffer,
        out: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.channel_sum(p, x, out)
    }
    fn softmax_cross_entropy(
        &self,
        p: &cnn_gpu::backend::SoftmaxXent,
        logits: &B::Buffer,
        labels: &B::Buffer,
        loss_sum: &mut B::Buffer,
        dlogits: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner
            .softmax_cross_entropy(p, logits, labels, loss_sum, dlogits)
    }
    fn count_correct(
        &self,
        p: &cnn_gpu::backend::SoftmaxXent,
        logits: &B::Buffer,
        labels: &B::Buffer,
        correct: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.count_correct(p, logits, labels, correct)
    }
    fn sgd_step(
        &self,
        p: &cnn_gpu::backend::Sgd,
        scalars: &B::Buffer,
        param: &mut B::Buffer,
        grad: &B::Buffer,
        velocity: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.sgd_step(p, scalars, param, grad, velocity)
    }
    fn adam_step(
        &self,
        p: &cnn_gpu::backend::Adam,
        scalars: &B::Buffer,
        param: &mut B::Buffer,
        grad: &B::Buffer,
        m: &mut B::Buffer,
        v: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.adam_step(p, scalars, param, grad, m, v)
    }
    fn sum_squares(
        &self,
        len: usize,
        x: &B::Buffer,
        scalars: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.sum_squares(len, x, scalars)
    }
    fn record_nonfinite(
        &self,
        loss_sum: &B::Buffer,
        scalars: &B::Buffer,
        record: &mut B::Buffer,
    ) -> cnn_gpu::Result<()> {
        self.inner.record_nonfinite(loss_sum, scalars, record)
    }
}

/// The loop reads back only at log intervals, after the first step (to time start-up) and at
/// the end of each epoch (to time it); it flushes once per step; evaluation reads back once.
/// The same holds with batch norm and dropout (`bn_dropout_cnn`).
fn reads_back_only_at_log_intervals<B: Backend>(b: &B) {
    reads_back_only_at_log_intervals_for(b, small_cnn());
    reads_back_only_at_log_intervals_for(b, bn_dropout_cnn());
}

fn reads_back_only_at_log_intervals_for<B: Backend>(b: &B, spec: ModelSpec) {
    let counting = Counting {
        inner: b,
        reads: Default::default(),
        flushes: Default::default(),
    };
    let b = &counting;
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
        b.reads.set(0);
        b.flushes.set(0);
        let summary = fit(b, &mut model, &res, &cfg, FitOptions::quiet()).unwrap();
        assert_eq!(summary.losses.len(), 2 * logs_per_epoch);
        assert_eq!(b.flushes.get(), 2 * 7, "one flush per step");
        assert_eq!(
            b.reads.get(),
            1 + 2 * logs_per_epoch + 2,
            "reads with log interval {log_interval}"
        );
    }
    b.reads.set(0);
    evaluate(b, &model, &res, 30).unwrap();
    assert_eq!(b.reads.get(), 1, "evaluation reads back once");
}
backend_test!(
    reads_back_only_at_log_intervals_t,
    reads_back_only_at_log_intervals
);

/// A batch whose activations exceed what the adapter can bind is refused before any work, with
/// the largest batch that fits; evaluation splits its batches to fit on its own.
#[test]
fn batch_too_large_for_the_adapter_is_refused_with_the_largest_that_fits() {
    use cnn_gpu::backend::gpu::GpuOptions;
    // small_cnn's largest activation is conv1's output, 4·8·8 = 256 floats a sample: a 10 KiB
    // limit holds 10 samples.
    let options = GpuOptions {
        max_buffer_bytes: Some(10 * 256 * 4),
        ..GpuOptions::default()
    };
    common::with_gpu_options(options, |gpu| {
        let train = synthetic_images(1, 100, 8, 8);
        let cfg = TrainConfig {
            batch_size: 11,
            epochs: 1,
            ..TrainConfig::default()
        };
        let mut model = Model::new(gpu, small_cnn(), 2).unwrap();
        let err = cnn_gpu::train::train(gpu, &mut model, &train, &train, &cfg, FitOptions::quiet())
            .expect_err("batch 11 does not fit");
        assert!(matches!(err, cnn_gpu::Error::Limit(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("the largest batch that fits is 10"),
            "{err}"
        );

        let cfg = TrainConfig {
            batch_size: 10,
            epochs: 1,
            eval_batch_size: 64,
            ..cfg
        };
        let summary =
            cnn_gpu::train::train(gpu, &mut model, &train, &train, &cfg, FitOptions::quiet())
                .expect("batch 10 fits, and evaluation splits its batches of 64");
        assert_eq!(summary.eval.total, 100);
    });
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

/// The BN + dropout model learns the synthetic lines on each backend ([`train_lines`]): the
/// loss falls to under half, evaluation (running statistics, no dropout) reaches 95% and gives the same count twice,
/// and each batch norm tracked one batch per step (8 epochs of 16) with running statistics
/// moved from PyTorch's initial 0 and 1.
fn bn_dropout_learns_synthetic_lines<B: Backend>(b: &B) {
    let (model, summary) = train_lines(b, bn_dropout_cnn(), 0.5);
    let test = synthetic_images(2, 150, 8, 8);
    let test_res = ResidentDataset::upload(b, &test, 3, "test").unwrap();
    let again = evaluate(b, &model, &test_res, 64).unwrap();
    assert_eq!(again, summary.eval, "evaluation is deterministic");
    let norms = model.read_norm_buffers(b).unwrap();
    assert_eq!(
        norms.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
        ["layers.1", "layers.6"]
    );
    for n in &norms {
        assert_eq!(n.num_batches_tracked, 8 * 16, "{}", n.name);
        assert!(n.running_mean.iter().any(|&m| m.abs() > 1e-3), "{n:?}");
        assert!(n.running_var.iter().all(|&v| v > 0.0), "{n:?}");
        assert!(
            n.running_var.iter().any(|&v| (v - 1.0).abs() > 1e-3),
            "{n:?}"
        );
    }
}
backend_test!(bn_dropout_learns_t, bn_dropout_learns_synthetic_lines);

/// Dropout is on in training and off in evaluation: two evaluation passes give the same logits;
/// two training passes (two steps) give different ones; a model whose dropout is its only
/// difference gives the evaluation logits of the model without it.
fn dropout_switches_with_the_mode<B: Backend>(b: &B) {
    let spec = ModelSpec {
        naming: Naming::Sequential,
        input: (1, 4, 4),
        layers: vec![Layer::Flatten, Layer::Dropout { p: 0.5 }, linear(16, 3)],
    };
    let x = rand_vec(7, 5 * 16, -1.0, 1.0);
    let mut model = Model::new(b, spec.clone(), 1).unwrap();
    let mut ws = Workspace::new(b, &model, 5).unwrap();
    let logits = |model: &mut Model<B>, ws: &mut Workspace<B>, train: bool| {
        b.write_f32(ws.input_and_labels_mut().0, &x).unwrap();
        if train {
            model.forward_train(b, ws).unwrap();
        } else {
            model.forward(b, ws).unwrap();
        }
        read(b, ws.logits())
    };
    let eval1 = logits(&mut model, &mut ws, false);
    let eval2 = logits(&mut model, &mut ws, false);
    assert_eq!(eval1, eval2);
    let train1 = logits(&mut model, &mut ws, true);
    let train2 = logits(&mut model, &mut ws, true);
    assert_ne!(train1, eval1);
    assert_ne!(train1, train2, "each step draws a new mask");
    // The same weights without the dropout layer (renamed to its Sequential index).
    let plain = ModelSpec {
        layers: vec![Layer::Flatten, linear(16, 3)],
        ..spec
    };
    let params: Vec<NamedTensor> = model
        .read_params(b)
        .unwrap()
        .into_iter()
        .map(|mut t| {
            t.name = t.name.replace("layers.2", "layers.1");
            t
        })
        .collect();
    let plain_model = Model::with_params(b, plain, &params).unwrap();
    let mut ws2 = Workspace::inference(b, &plain_model, 5).unwrap();
    b.write_f32(ws2.input_and_labels_mut().0, &x).unwrap();
    plain_model.forward(b, &mut ws2).unwrap();
    assert_eq!(read(b, ws2.logits()), eval1);
}
backend_test!(
    dropout_switches_with_the_mode_t,
    dropout_switches_with_the_mode
);

/// The BN + dropout model trains to the same losses, parameters and running statistics on the
/// GPU as on the CPU: the dropout masks are the same on both.
#[test]
fn bn_dropout_training_matches_between_backends() {
    let data = synthetic_images(5, 90, 8, 8);
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 16,
        lr: 0.02,
        seed: 9,
        log_interval: 1,
        ..TrainConfig::default()
    };
    fn run<B: Backend>(b: &B, data: &Dataset, cfg: &TrainConfig) -> (Vec<f32>, Model<B>) {
        let mut model = Model::new(b, bn_dropout_cnn(), cfg.seed).unwrap();
        let summary =
            cnn_gpu::train::train(b, &mut model, data, data, cfg, FitOptions::quiet()).unwrap();
        (summary.fit.losses.iter().map(|r| r.loss).collect(), model)
    }
    let c = cpu();
    let (cpu_losses, cpu_model) = run(&c, &data, &cfg);
    assert_eq!(cpu_losses.len(), 6);
    with_gpu(|g| {
        let (gpu_losses, gpu_model) = run(g, &data, &cfg);
        assert_close(&gpu_losses, &cpu_losses, 1e-4, 1e-3, "losses");
        let (gp, cp) = (
            gpu_model.read_params(g).unwrap(),
            cpu_model.read_params(&c).unwrap(),
        );
        for (g, c) in gp.iter().zip(&cp) {
            assert_close(&g.data, &c.data, 1e-4, 1e-3, &c.name);
        }
        let gn = gpu_model.read_norm_buffers(g).unwrap();
        let cn = cpu_model.read_norm_buffers(&c).unwrap();
        for (g, c) in gn.iter().zip(&cn) {
            assert_close(&g.running_mean, &c.running_mean, 1e-4, 1e-3, &c.name);
            assert_close(&g.running_var, &c.running_var, 1e-4, 1e-3, &c.name);
            assert_eq!(g.num_batches_tracked, 6);
        }
    });
}

/// A batch norm cannot train on one value per channel: a training set whose last batch holds
/// one image (33 = 2·16 + 1) is refused before any step, naming the layer; evaluation at batch
/// 1 is fine (running statistics).
fn batch_of_one_is_refused_before_training<B: Backend>(b: &B) {
    let data = synthetic_images(1, 33, 8, 8);
    let cfg = TrainConfig {
        epochs: 1,
        batch_size: 16,
        ..TrainConfig::default()
    };
    let mut model = Model::new(b, bn_dropout_cnn(), 0).unwrap();
    let err = cnn_gpu::train::train(b, &mut model, &data, &data, &cfg, FitOptions::quiet())
        .expect_err("a last batch of 1");
    let msg = err.to_string();
    assert!(
        msg.contains("a training batch of 1 gives layer 6 (BatchNorm1d(16)) one value per channel"),
        "{msg}"
    );
    assert_eq!(
        model.read_norm_buffers(b).unwrap()[0].num_batches_tracked,
        0,
        "no step ran"
    );
    let res = ResidentDataset::upload(b, &data, 3, "test").unwrap();
    assert_eq!(evaluate(b, &model, &res, 1).unwrap().total, 33);
}
backend_test!(
    batch_of_one_is_refused_t,
    batch_of_one_is_refused_before_training
);

/// Stopping inside an epoch (the hook's Flow::Stop) hands out the steps done and the running
/// loss window; a model rebuilt from the parameters and momentum then, resumed with
/// `resume_within`, logs exactly the losses of a run never stopped and ends with the same
/// parameters (to f32 rounding of the separate runs: none, bit for bit, on one backend).
fn stop_and_resume_mid_epoch_equals_an_uninterrupted_run<B: Backend>(b: &B) {
    use cnn_gpu::train::{Event, Flow, MidEpoch};
    let train = synthetic_images(5, 100, 8, 8);
    // 100 images in batches of 16: 7 steps an epoch, losses after batches 3 and 6.
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 16,
        lr: 0.02,
        log_interval: 3,
        seed: 9,
        ..TrainConfig::default()
    };
    let res = ResidentDataset::upload(b, &train, 3, "train").unwrap();
    let mut whole = Model::new(b, small_cnn(), cfg.seed).unwrap();
    let all = fit(b, &mut whole, &res, &cfg, FitOptions::quiet()).unwrap();
    assert_eq!(all.losses.len(), 4);

    // Stop after step 11 in all: step 4 of epoch 2, one step into a loss window.
    let mut model = Model::new(b, small_cnn(), cfg.seed).unwrap();
    let mut stopped = None;
    let err = fit(
        b,
        &mut model,
        &res,
        &cfg,
        FitOptions::quiet().hook(&mut |e, _| {
            match *e {
                Event::Step { total: 11, .. } => return Ok(Flow::Stop),
                Event::Stopped { epoch, at } => stopped = Some((epoch, at)),
                _ => {}
            }
            Ok(Flow::Continue)
        }),
    )
    .expect_err("stopped");
    assert!(
        matches!(err, Error::Interrupted { epoch: 2, step: 4 }),
        "{err:?}"
    );
    let (epoch, at) = stopped.expect("the hook saw the stop");
    assert_eq!((epoch, at.steps_done, at.window.steps), (2, 4, 1));
    assert!(at.window.sum > 0.0);

    let mut resumed = Model::with_params(b, small_cnn(), &model.read_params(b).unwrap()).unwrap();
    resumed
        .set_velocity(b, &model.read_velocity(b).unwrap())
        .unwrap();
    let rest_cfg = TrainConfig {
        first_epoch: 2,
        resume_within: Some(MidEpoch {
            steps_done: at.steps_done,
            window: at.window,
        }),
        ..cfg.clone()
    };
    let rest = fit(b, &mut resumed, &res, &rest_cfg, FitOptions::quiet()).unwrap();
    assert_eq!(rest.epochs.len(), 1);
    assert_eq!(rest.epochs[0].steps, 3, "steps 5 to 7 of epoch 2");
    assert_eq!(
        rest.losses,
        all.losses[3..],
        "the batch-6 line, window included"
    );
    assert_eq!(
        resumed.read_params(b).unwrap(),
        whole.read_params(b).unwrap()
    );
}
backend_test!(
    stop_and_resume_mid_epoch_equals_an_uninterrupted_run_t,
    stop_and_resume_mid_epoch_equals_an_uninterrupted_run
);

/// A resume point that does not fit the epoch is refused.
#[test]
fn resume_points_outside_the_epoch_are_refused() {
    use cnn_gpu::train::{LossWindow, MidEpoch};
    let window = LossWindow { sum: 1.0, steps: 1 };
    for (steps_done, steps) in [(0, 0), (7, 1), (3, 4)] {
        let cfg = TrainConfig {
            batch_size: 16,
            resume_within: Some(MidEpoch {
                steps_done,
                window: LossWindow { steps, ..window },
            }),
            ..TrainConfig::default()
        };
        // 100 images: 7 steps an epoch.
        let err = cfg.validate_for(100).unwrap_err().to_string();
        assert!(err.contains("cannot resume after step"), "{err}");
    }
}

/// The GPU backend holds as many buffers after every epoch as after the first: nothing leaks
/// per step or per epoch (uniforms, bind groups and staging buffers are cached).
#[test]
fn gpu_buffers_do_not_grow_from_epoch_to_epoch() {
    use cnn_gpu::train::{Event, Flow};
    common::with_gpu(|gpu| {
        let train = synthetic_images(1, 100, 8, 8);
        let cfg = TrainConfig {
            epochs: 4,
            batch_size: 16,
            log_interval: 2,
            ..TrainConfig::default()
        };
        let res = ResidentDataset::upload(gpu, &train, 3, "train").unwrap();
        let mut model = Model::new(gpu, small_cnn(), 1).unwrap();
        let before = gpu.live_buffers();
        let mut counts = Vec::new();
        fit(
            gpu,
            &mut model,
            &res,
            &cfg,
            FitOptions::quiet().hook(&mut |e, _| {
                if let Event::EpochEnd { .. } = e {
                    counts.push(gpu.live_buffers());
                }
                Ok(Flow::Continue)
            }),
        )
        .unwrap();
        assert!(counts[0] > before, "the loop's workspaces are counted");
        assert_eq!(counts, vec![counts[0]; 4], "{counts:?}");
    });
}

/// A GPU device lost during a run (a driver reset, a removed card): every later call is an
/// `Error::Gpu` naming the loss, never a panic or a hang.
#[test]
fn a_lost_gpu_device_fails_every_later_call_cleanly() {
    common::with_gpu(|gpu| {
        let mut buf = gpu.upload_f32(&[1.0, 2.0], "x").unwrap();
        assert_eq!(gpu.read_f32(&buf).unwrap(), [1.0, 2.0]);
        gpu.lose_device_for_test();
        let lost = |r: cnn_gpu::Result<()>, what: &str| match r {
            Err(Error::Gpu(m)) => assert!(m.contains("lost"), "{what}: {m}"),
            other => panic!("{what}: {other:?}"),
        };
        lost(gpu.flush(), "flush");
        lost(gpu.read_f32(&buf).map(|_| ()), "read");
        lost(gpu.write_f32(&mut buf, &[3.0, 4.0]), "write");
        lost(gpu.zeros(4, "y").map(|_| ()), "allocation");
    });
}
