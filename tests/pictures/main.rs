//! The picture and inference commands, one test target in topical modules:
//! - `library`: `convolve`'s matrices on both backends against hand computed values, picture
//!   layout and colours, `predict`'s probabilities against an independent forward pass, feature
//!   maps;
//! - `commands`: the binary's `predict`, `convolve`, `filters` and `featuremaps`, and its
//!   refusals (exit 2, one line, no file left behind);
//! - `plot`: training curves, in the library and through `cnn-gpu plot`.
//!
//! This file holds what the modules share: the tutorial's demo matrix (docs/looking-inside.md),
//! a sharp checkpoint's parameters, a digit, the reference probabilities and a temporary
//! directory of inputs.

#[path = "../common/mod.rs"]
mod common;

mod commands;
mod library;
mod plot;

use std::path::{Path, PathBuf};

use cnn_gpu::backend::Backend;
use cnn_gpu::checkpoint;
use cnn_gpu::data::normalize_pixel;
use cnn_gpu::model::{Model, ModelSpec, NamedTensor, Workspace};

/// The tutorial's demo input (docs/looking-inside.md): a 3×3 block of ones in a 5×5 field of
/// zeros.
const DEMO: &str = "0 0 0 0 0\n0 1 1 1 0\n0 1 1 1 0\n0 1 1 1 0\n0 0 0 0 0\n";

/// SimpleCNN parameters from `seed`, with the last layer's weights scaled up so that the
/// probabilities are far from uniform.
fn sharp_params(seed: u64) -> Vec<NamedTensor> {
    let mut params = ModelSpec::simple_cnn().init_params(seed).unwrap();
    for t in &mut params {
        if t.name == "fc2.weight" {
            t.data.iter_mut().for_each(|w| *w *= 40.0);
        }
    }
    params
}

/// A digit: MNIST's first test image when `CNN_GPU_DATA_DIR` has MNIST, else a drawn "1".
fn a_digit() -> Vec<u8> {
    if let Ok(dir) = std::env::var("CNN_GPU_DATA_DIR") {
        if let Ok(m) = cnn_gpu::data::load_mnist(Path::new(&dir)) {
            return m.test.image(0).to_vec();
        }
    }
    let mut px = vec![0u8; 784];
    for y in 4..24 {
        for x in 12..16 {
            px[y * 28 + x] = 200 + (y as u8 % 5) * 10;
        }
    }
    px
}

/// The probabilities by another route than `train::classify`: the host's `normalize_pixel`
/// written straight into a workspace, the CPU backend, a host softmax.
fn reference_probabilities(params: &[NamedTensor], pixels: &[u8]) -> Vec<f64> {
    let b = common::cpu();
    let model = Model::with_params(&b, ModelSpec::simple_cnn(), params).unwrap();
    let mut ws = Workspace::inference(&b, &model, 1).unwrap();
    let x: Vec<f32> = pixels.iter().map(|&p| normalize_pixel(p)).collect();
    b.write_f32(ws.input_and_labels_mut().0, &x).unwrap();
    model.forward(&b, &mut ws).unwrap();
    let logits: Vec<f64> = b
        .read_f32(ws.logits())
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .collect();
    let max = logits.iter().cloned().fold(f64::MIN, f64::max);
    let sum: f64 = logits.iter().map(|v| (v - max).exp()).sum();
    logits.iter().map(|v| (v - max).exp() / sum).collect()
}

/// [`common::assert_refused`], and no file left in `dir` other than those that were there.
#[track_caller]
fn assert_refused(args: &[&str], what: &str, dir: &Path) {
    let before = listing(dir);
    common::assert_refused(args, what);
    assert_eq!(listing(dir), before, "{args:?} left a file behind");
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// A temporary directory with a checkpoint of [`sharp_params`] and the digit as a PNG.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spec = ModelSpec::simple_cnn();
        checkpoint::save(
            &dir.path().join("ckpt.safetensors"),
            &spec,
            &sharp_params(3),
            Default::default(),
            None,
        )
        .unwrap();
        image::GrayImage::from_raw(28, 28, a_digit())
            .unwrap()
            .save(dir.path().join("digit.png"))
            .unwrap();
        std::fs::write(dir.path().join("demo.txt"), DEMO).unwrap();
        Fixture { dir }
    }
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}
