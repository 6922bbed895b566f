//! Batch norm and dropout in training: the BN + dropout model learns the synthetic lines,
//! dropout switches with the mode, both backends train it alike, and a batch of one is refused.

use cnn_gpu::backend::Backend;
use cnn_gpu::data::Dataset;
use cnn_gpu::model::{Layer, Model, ModelSpec, NamedTensor, Naming, Workspace};
use cnn_gpu::train::{evaluate, FitOptions, ResidentDataset, TrainConfig};

use crate::backend_test;
use crate::common::{self, *};
use crate::{bn_dropout_cnn, linear, synthetic_images, train_lines};

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
