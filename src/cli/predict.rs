//! `cnn-gpu predict`: classify digit images with a checkpoint.

use std::path::PathBuf;

use clap::Args;

use cnn_gpu::backend::Backend;
use cnn_gpu::model::{Model, ModelSpec};
use cnn_gpu::train;

use super::files::{load_digit, load_simple_cnn};
use super::{open_backend, run_failure, Chosen, DeviceArgs, Failure};

#[derive(Args, Debug)]
pub(crate) struct PredictArgs {
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
    /// The checkpoint (safetensors, PyTorch state_dict names) to classify with.
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// PNG or JPEG images of single digits, any size, colour or grey.
    #[arg(required = true, value_name = "IMAGE")]
    pub(crate) images: Vec<PathBuf>,
    /// The images are dark ink on light paper (MNIST is light on black).
    #[arg(long)]
    pub(crate) invert: bool,
    /// How many classes to print per image, most probable first.
    #[arg(long, default_value_t = 3)]
    pub(crate) top: usize,
}

pub(crate) fn predict_command(args: &PredictArgs) -> Result<(), Failure> {
    if args.top == 0 {
        return Err(Failure::usage("--top must be at least 1"));
    }
    let ckpt = load_simple_cnn(&args.checkpoint)?;
    let mut pixels = Vec::new();
    for path in &args.images {
        pixels.extend(load_digit(path, args.invert)?);
    }
    let probs = match open_backend(&args.device)? {
        Chosen::Cpu(b) => classify_on(&b, &ckpt.params, &pixels),
        Chosen::Gpu(b) => classify_on(&b, &ckpt.params, &pixels),
    }?;
    for (path, p) in args.images.iter().zip(&probs) {
        let ranked = top_classes(p, args.top);
        println!("{}: {}", path.display(), ranked[0].0);
        for (class, prob) in ranked {
            println!("  {class}  {:>6.2}%", 100.0 * prob);
        }
    }
    Ok(())
}

fn classify_on<B: Backend>(
    b: &B,
    params: &[cnn_gpu::model::NamedTensor],
    pixels: &[u8],
) -> Result<Vec<Vec<f64>>, Failure> {
    let model = Model::with_params(b, ModelSpec::simple_cnn(), params).map_err(run_failure)?;
    train::classify(b, &model, pixels).map_err(run_failure)
}

/// The `k` most probable (class, probability) pairs, most probable first (lower class first
/// on ties).
fn top_classes(p: &[f64], k: usize) -> Vec<(usize, f64)> {
    let mut ranked: Vec<(usize, f64)> = p.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    ranked.truncate(k);
    ranked
}
