//! Checkpoints cross between PyTorch and cnn-gpu both ways, checked against numbers PyTorch
//! computed (tests/fixtures/pytorch_expected.json, made by scripts/pytorch_fixture.py):
//!
//! - `pytorch_simple_cnn.safetensors`: the tutorial's SimpleCNN trained 300 steps in PyTorch and
//!   saved with `safetensors.torch.save_file(model.state_dict())`; it loads here and gives
//!   PyTorch's logits and test accuracy.
//! - `cnn_gpu_simple_cnn.safetensors`: written by `cnn-gpu train --save`; PyTorch loaded it with
//!   a strict `load_state_dict` and recorded its logits and accuracy, which we reproduce.
//!
//! - `pytorch_bn_small` / `cnn_gpu_bn_small`: the same both ways for a batch-norm + dropout model
//!   file (scripts/pytorch_bn_fixture.py), running statistics and I64 batch counts included.
//!
//! The logits of a synthetic batch need no dataset; the test-set accuracy needs the full MNIST
//! (`CNN_GPU_DATA_DIR`) and must match PyTorch's to one image in 10000 (±0.01%).

mod common;

use std::path::{Path, PathBuf};

use cnn_gpu::backend::Backend;
use cnn_gpu::checkpoint;
use cnn_gpu::data::{load_mnist, normalize_pixel, DATA_DIR_ENV};
use cnn_gpu::model::{Model, ModelSpec, Workspace};
use cnn_gpu::train::{evaluate_detailed, ResidentDataset};
use common::*;
use serde_json::Value;

const FIXTURES: [&str; 2] = ["pytorch_simple_cnn", "cnn_gpu_simple_cnn"];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// What PyTorch computed for the fixture `name`.
fn expected(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture("pytorch_expected.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    all[name].clone()
}

fn load_model<B: Backend>(b: &B, name: &str) -> Model<B> {
    let path = fixture(&format!("{name}.safetensors"));
    let ckpt = checkpoint::load(&path, &ModelSpec::simple_cnn())
        .unwrap_or_else(|e| panic!("{name} should load: {e}"));
    Model::with_params(b, ModelSpec::simple_cnn(), &ckpt.params).unwrap()
}

/// The script's synthetic batch: pixel (b, h, w) = (b·784 + h·28 + w)·37 mod 256, normalised.
fn synthetic_batch() -> Vec<f32> {
    (0..4 * 784)
        .map(|i| normalize_pixel((i * 37 % 256) as u8))
        .collect()
}

/// `model`'s evaluation-mode logits on the synthetic batch are `expected`'s
/// `synthetic_logits` (PyTorch's), to 1e-4.
fn assert_pytorch_logits<B: Backend>(b: &B, model: &Model<B>, expected: &Value, name: &str) {
    let mut ws = Workspace::inference(b, model, 4).unwrap();
    b.write_f32(ws.input_and_labels_mut().0, &synthetic_batch())
        .unwrap();
    model.forward(b, &mut ws).unwrap();
    let want: Vec<f32> = expected["synthetic_logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(want.len(), 40);
    assert_close(&read(b, ws.logits()), &want, 1e-4, 1e-4, name);
}

fn logits_match_pytorch<B: Backend>(b: &B) {
    for name in FIXTURES {
        assert_pytorch_logits(b, &load_model(b, name), &expected(name), name);
    }
}
backend_test!(logits_match_pytorch_t, logits_match_pytorch);

/// The full test set on the CPU backend (lavapipe would take minutes; the logits test above
/// covers the GPU backend on the same weights).
#[test]
fn test_accuracy_matches_pytorch() {
    let Some(dir) = std::env::var_os(DATA_DIR_ENV).filter(|d| !d.is_empty()) else {
        println!("skipped test_accuracy_matches_pytorch: {DATA_DIR_ENV} is not set");
        return;
    };
    let mnist = load_mnist(Path::new(&dir)).unwrap();
    let b = cpu();
    for name in FIXTURES {
        let model = load_model(&b, name);
        let test = ResidentDataset::upload(&b, &mnist.test, 10, "test").unwrap();
        let r = evaluate_detailed(&b, &model, &test, 1000).unwrap();
        let want = expected(name);
        let want_correct = want["correct"].as_u64().unwrap() as i64;
        assert_eq!(r.eval.total, 10_000);
        assert!(
            (r.eval.correct as i64 - want_correct).abs() <= 1,
            "{name}: {} correct here, {want_correct} in PyTorch",
            r.eval.correct
        );
        let want_loss = want["mean_loss"].as_f64().unwrap();
        assert!(
            (r.mean_loss - want_loss).abs() < 1e-4,
            "{name}: mean loss {} here, {want_loss} in PyTorch",
            r.mean_loss
        );
        println!(
            "{name}: {:.2}% here, {:.2}% in PyTorch",
            r.eval.accuracy_percent(),
            want["accuracy_percent"].as_f64().unwrap()
        );
    }
}

/// Batch norm and dropout cross too (tests/fixtures/pytorch_bn_expected.json, made by
/// scripts/pytorch_bn_fixture.py from the model file tests/fixtures/bn_small.toml):
/// `pytorch_bn_small` was trained 30 steps in PyTorch and saved with its running statistics and
/// I64 `num_batches_tracked`; `cnn_gpu_bn_small` was written by `cnn-gpu train` and loaded by
/// PyTorch with a strict `load_state_dict`. Both give PyTorch's evaluation-mode logits here
/// (running statistics, no dropout) and PyTorch's batch counts.
fn bn_logits_match_pytorch<B: Backend>(b: &B) {
    let spec = ModelSpec::from_file(&fixture("bn_small.toml")).unwrap();
    let text = std::fs::read_to_string(fixture("pytorch_bn_expected.json")).unwrap();
    let all: Value = serde_json::from_str(&text).unwrap();
    for name in ["pytorch_bn_small", "cnn_gpu_bn_small"] {
        let path = fixture(&format!("{name}.safetensors"));
        let (model, ckpt) = checkpoint::load_model(b, spec.clone(), &path)
            .unwrap_or_else(|e| panic!("{name} should load: {e}"));
        for n in &ckpt.norms {
            let want = &all[name]["num_batches_tracked"][format!("{}.num_batches_tracked", n.name)];
            assert_eq!(
                Some(n.num_batches_tracked),
                want.as_i64(),
                "{name} {}",
                n.name
            );
        }
        assert_pytorch_logits(b, &model, &all[name], name);
    }
}
backend_test!(bn_logits_match_pytorch_t, bn_logits_match_pytorch);
