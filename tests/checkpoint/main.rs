//! Checkpoints: a save → load round trip is bit-exact (parameters, momentum buffers, outputs);
//! the file is the safetensors layout PyTorch's `load_state_dict(load_file(p))` relies on
//! (names, shapes, F32); files without metadata (PyTorch's) load; every kind of bad file is an
//! `Error::Data` naming it; writes are atomic.
//!
//! This file holds the round trips and the file layout; the modules `files` (bad files, atomic
//! writes, permissions) and `batch_norm` (batch-norm buffers) make up the rest of this one test
//! target.

#[path = "../common/mod.rs"]
mod common;

mod batch_norm;
mod files;

use std::collections::HashMap;
use std::path::Path;

use cnn_gpu::backend::Backend;
use cnn_gpu::checkpoint::{self, TrainState};
use cnn_gpu::model::{Model, ModelSpec, NamedTensor, Workspace};
use cnn_gpu::optim::{LrSchedule, OptimConfig, Optimizer};
use cnn_gpu::train::LossWindow;
use cnn_gpu::Error;
use common::*;
use safetensors::tensor::{Dtype, TensorView};

const PYTORCH_NAMES: [(&str, &[usize]); 8] = [
    ("conv1.weight", &[32, 1, 3, 3]),
    ("conv1.bias", &[32]),
    ("conv2.weight", &[64, 32, 3, 3]),
    ("conv2.bias", &[64]),
    ("fc1.weight", &[64, 3136]),
    ("fc1.bias", &[64]),
    ("fc2.weight", &[10, 64]),
    ("fc2.bias", &[10]),
];

fn state() -> TrainState {
    TrainState {
        epoch: 3,
        step: 2811,
        seed: 7,
        lr: 0.001,
        optim: OptimConfig::default(),
        loss_window: Some(LossWindow {
            sum: 1.2345678,
            steps: 7,
        }),
        batch_size: Some(64),
        train_images: Some(60000),
    }
}

/// The logits of `model` on a fixed random batch of 5.
fn logits<B: Backend>(b: &B, model: &Model<B>) -> Vec<f32> {
    let mut ws = Workspace::inference(b, model, 5).unwrap();
    let x = rand_vec(11, 5 * 784, -1.0, 1.0);
    b.write_f32(ws.input_and_labels_mut().0, &x).unwrap();
    model.forward(b, &mut ws).unwrap();
    read(b, ws.logits())
}

fn bits(ts: &[NamedTensor]) -> Vec<(String, Vec<usize>, Vec<u32>)> {
    ts.iter()
        .map(|t| {
            (
                t.name.clone(),
                t.shape.clone(),
                t.data.iter().map(|x| x.to_bits()).collect(),
            )
        })
        .collect()
}

fn round_trip_is_bit_exact<B: Backend>(b: &B) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let mut model = Model::new(b, ModelSpec::simple_cnn(), 5).unwrap();
    // Momentum buffers as training would leave them: anything but zero.
    let velocity: Vec<NamedTensor> = model
        .read_params(b)
        .unwrap()
        .into_iter()
        .enumerate()
        .map(|(i, mut t)| {
            t.data = rand_vec(100 + i as u64, t.data.len(), -0.1, 0.1);
            t
        })
        .collect();
    model.set_velocity(b, &velocity).unwrap();
    checkpoint::save_model(b, &model, &path, true, Some(&state())).unwrap();

    let (loaded, ckpt) = checkpoint::load_model(b, ModelSpec::simple_cnn(), &path).unwrap();
    assert_eq!(
        bits(&loaded.read_params(b).unwrap()),
        bits(&model.read_params(b).unwrap())
    );
    assert_eq!(bits(ckpt.velocity.as_ref().unwrap()), bits(&velocity));
    assert_eq!(ckpt.train_state(), Some(state()));
    let (a, c) = (logits(b, &model), logits(b, &loaded));
    assert_eq!(
        a.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        c.iter().map(|x| x.to_bits()).collect::<Vec<_>>(),
        "the loaded model's outputs"
    );
}
backend_test!(round_trip, round_trip_is_bit_exact);

/// Random tensors shaped like the model's parameters, as optimiser state.
fn random_like<B: Backend>(b: &B, model: &Model<B>, seed: u64) -> Vec<NamedTensor> {
    let mut ts = model.read_params(b).unwrap();
    for (i, t) in ts.iter_mut().enumerate() {
        t.data = rand_vec(seed + i as u64, t.data.len(), 0.0, 0.1);
    }
    ts
}

/// Adam's state goes in under PyTorch's names (exp_avg, exp_avg_sq), comes back bit for bit,
/// and the optimiser settings (AdamW, betas, eps, decay, step schedule, warm-up, clipping)
/// round-trip through the metadata.
fn adam_state_round_trips<B: Backend>(b: &B) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("adam.safetensors");
    let mut model = Model::new(b, ModelSpec::simple_cnn(), 5).unwrap();
    let (m, v) = (random_like(b, &model, 200), random_like(b, &model, 300));
    model.set_velocity(b, &m).unwrap();
    model.set_exp_avg_sq(b, &v).unwrap();
    let adam = TrainState {
        optim: OptimConfig {
            optimizer: Optimizer::Adam {
                beta1: 0.85,
                beta2: 0.995,
                eps: 1e-7,
                weight_decay: 0.05,
                decoupled: true,
            },
            schedule: LrSchedule::Step {
                epochs: 2,
                gamma: 0.5,
            },
            warmup_steps: 30,
            clip_grad_norm: Some(2.5),
        },
        ..state()
    };
    checkpoint::save_model(b, &model, &path, true, Some(&adam)).unwrap();
    let names: Vec<String> = header(&path).keys().cloned().collect();
    for (n, _) in PYTORCH_NAMES {
        for suffix in ["exp_avg", "exp_avg_sq"] {
            let name = format!("optimizer.{n}.{suffix}");
            assert!(names.contains(&name), "{name} in {names:?}");
        }
        assert!(!names.contains(&format!("optimizer.{n}.momentum_buffer")));
    }
    let ckpt = checkpoint::load(&path, &ModelSpec::simple_cnn()).unwrap();
    assert_eq!(bits(ckpt.velocity.as_ref().unwrap()), bits(&m));
    assert_eq!(bits(ckpt.exp_avg_sq.as_ref().unwrap()), bits(&v));
    assert_eq!(ckpt.train_state(), Some(adam));
    assert_eq!(ckpt.metadata["optimizer"], "adamw");

    // An SGD model (no second moments) saves momentum_buffer only, whatever it is told.
    let sgd = Model::new(b, ModelSpec::simple_cnn(), 5).unwrap();
    checkpoint::save_model(b, &sgd, &path, true, Some(&state())).unwrap();
    let ckpt = checkpoint::load(&path, &ModelSpec::simple_cnn()).unwrap();
    assert!(ckpt.velocity.is_some() && ckpt.exp_avg_sq.is_none());
    assert_eq!(ckpt.train_state(), Some(state()));
}
backend_test!(adam_round_trip, adam_state_round_trips);

/// A momentum buffer beside Adam's second moment is neither SGD's state nor Adam's: refused.
#[test]
fn mixed_optimizer_state_is_refused() {
    let b = cpu();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mixed.safetensors");
    let model = Model::new(&b, ModelSpec::simple_cnn(), 5).unwrap();
    let params = model.read_params(&b).unwrap();
    let optimizer = checkpoint::OptimizerTensors {
        velocity: Some(&params),
        exp_avg_sq: None,
    };
    checkpoint::save(&path, model.spec(), &params, optimizer, None).unwrap();
    // Rewrite with exp_avg_sq added beside momentum_buffer.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, TensorView)> = st.tensors();
    let extra: Vec<(String, TensorView)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| n.ends_with(".momentum_buffer"))
        .map(|(n, t)| (n.replace(".momentum_buffer", ".exp_avg_sq"), t))
        .collect();
    tensors.extend(extra);
    let mixed = safetensors::serialize(tensors, None).unwrap();
    std::fs::write(&path, mixed).unwrap();
    let err = checkpoint::load(&path, &ModelSpec::simple_cnn()).unwrap_err();
    assert!(matches!(err, Error::Data { .. }), "{err}");
    assert!(err.to_string().contains("inconsistent"), "{err}");
}

/// The header as PyTorch's loader reads it: 8-byte little-endian length, then JSON.
fn header(path: &Path) -> serde_json::Map<String, serde_json::Value> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let json: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    json.as_object().unwrap().clone()
}

fn header_has_pytorch_names<B: Backend>(b: &B) {
    let dir = tempfile::tempdir().unwrap();
    let model = Model::new(b, ModelSpec::simple_cnn(), 1).unwrap();
    for with_velocity in [false, true] {
        let path = dir.path().join(format!("m{with_velocity}.safetensors"));
        checkpoint::save_model(b, &model, &path, with_velocity, Some(&state())).unwrap();
        let h = header(&path);
        let mut want: Vec<(String, Vec<usize>)> = PYTORCH_NAMES
            .iter()
            .map(|(n, s)| (n.to_string(), s.to_vec()))
            .collect();
        if with_velocity {
            want.extend(
                PYTORCH_NAMES
                    .iter()
                    .map(|(n, s)| (format!("optimizer.{n}.momentum_buffer"), s.to_vec())),
            );
        }
        let mut got: Vec<(String, Vec<usize>)> = Vec::new();
        let mut total = 0;
        for (name, info) in &h {
            if name == "__metadata__" {
                continue;
            }
            assert_eq!(info["dtype"], "F32", "{name}");
            let shape: Vec<usize> = info["shape"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d.as_u64().unwrap() as usize)
                .collect();
            let offs = info["data_offsets"].as_array().unwrap();
            let len = offs[1].as_u64().unwrap() - offs[0].as_u64().unwrap();
            assert_eq!(len as usize, 4 * shape.iter().product::<usize>(), "{name}");
            total += len;
            got.push((name.clone(), shape));
        }
        got.sort();
        want.sort();
        assert_eq!(got, want);
        let n = u64::from_le_bytes(std::fs::read(&path).unwrap()[..8].try_into().unwrap());
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            8 + n + total,
            "no bytes beyond the tensors"
        );
        let meta = h["__metadata__"].as_object().unwrap();
        assert_eq!(meta["format"], "cnn-gpu");
        assert_eq!(
            meta["architecture"],
            checkpoint::architecture(&ModelSpec::simple_cnn())
        );
        for (k, v) in [
            ("epoch", "3"),
            ("step", "2811"),
            ("seed", "7"),
            ("lr", "0.001"),
            ("optimizer", "sgd"),
            ("momentum", "0.9"),
            ("nesterov", "false"),
            ("weight_decay", "0"),
            ("lr_schedule", "constant"),
            ("warmup_steps", "0"),
        ] {
            assert_eq!(meta[k], v, "{k}");
        }
    }
}
backend_test!(header, header_has_pytorch_names);

/// Writes a safetensors file as PyTorch's `save_file(state_dict)` would (no metadata), from
/// (name, dtype, shape, bytes) entries.
fn write_raw(
    path: &Path,
    tensors: &[(String, Dtype, Vec<usize>, Vec<u8>)],
    meta: Option<HashMap<String, String>>,
) {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, d, s, bytes)| (n.clone(), TensorView::new(*d, s.clone(), bytes).unwrap()))
        .collect();
    std::fs::write(path, safetensors::serialize(views, meta).unwrap()).unwrap();
}

fn le(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn pytorch_like(seed: u64) -> Vec<(String, Dtype, Vec<usize>, Vec<u8>)> {
    ModelSpec::simple_cnn()
        .init_params(seed)
        .unwrap()
        .into_iter()
        .map(|t| (t.name, Dtype::F32, t.shape, le(&t.data)))
        .collect()
}

fn file_without_metadata_loads<B: Backend>(b: &B) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("torch.safetensors");
    write_raw(&path, &pytorch_like(9), None);
    let (model, ckpt) = checkpoint::load_model(b, ModelSpec::simple_cnn(), &path).unwrap();
    assert!(ckpt.metadata.is_empty() && ckpt.velocity.is_none());
    assert_eq!(ckpt.train_state(), None);
    let want = ModelSpec::simple_cnn().init_params(9).unwrap();
    assert_eq!(bits(&model.read_params(b).unwrap()), bits(&want));
}
backend_test!(no_metadata, file_without_metadata_loads);
