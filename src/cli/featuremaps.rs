//! `cnn-gpu featuremaps`: a picture of one image's activations after each convolution's ReLU.

use std::path::PathBuf;

use clap::Args;

use cnn_gpu::backend::Backend;
use cnn_gpu::digit::SIDE;
use cnn_gpu::model::{Layer, Model, ModelSpec, NamedTensor, Shape};
use cnn_gpu::picture::{self, Activations};
use cnn_gpu::train;

use super::files::{check_output, load_digit, load_simple_cnn, write_png};
use super::{open_backend, run_failure, Chosen, DeviceArgs, Failure};

#[derive(Args, Debug)]
pub(crate) struct FeatureMapsArgs {
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
    /// The checkpoint (safetensors, PyTorch state_dict names) to run.
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// A PNG or JPEG image of one digit (prepared as `predict` prepares it).
    #[arg(value_name = "IMAGE")]
    pub(crate) image: PathBuf,
    /// The image is dark ink on light paper (MNIST is light on black).
    #[arg(long)]
    pub(crate) invert: bool,
    /// The PNG to write.
    #[arg(short, long)]
    pub(crate) output: PathBuf,
}

pub(crate) fn featuremaps_command(args: &FeatureMapsArgs) -> Result<(), Failure> {
    let ckpt = load_simple_cnn(&args.checkpoint)?;
    let pixels = load_digit(&args.image, args.invert)?;
    check_output(&args.output)?;
    let layers = match open_backend(&args.device)? {
        Chosen::Cpu(b) => conv_activations(&b, &ckpt.params, &pixels),
        Chosen::Gpu(b) => conv_activations(&b, &ckpt.params, &pixels),
    }?;
    let input = Activations {
        title: "input (28×28, as the network sees it)".into(),
        data: pixels.iter().map(|&p| p as f32).collect(),
        c: 1,
        h: SIDE,
        w: SIDE,
    };
    write_png(
        &args.output,
        &picture::feature_maps_picture(&input, &layers),
    )
}

/// Each convolution's output after the ReLU that follows it (or the convolution's own output
/// when no ReLU follows), for one image.
fn conv_activations<B: Backend>(
    b: &B,
    params: &[NamedTensor],
    pixels: &[u8],
) -> Result<Vec<Activations>, Failure> {
    let model = Model::with_params(b, ModelSpec::simple_cnn(), params).map_err(run_failure)?;
    let data = train::upload_unlabelled(b, &model, pixels).map_err(run_failure)?;
    let layers = &model.spec().layers;
    let mut out = Vec::new();
    train::forward_batches(b, &model, &data, 1, |_, ws| {
        let mut convs = 0;
        for (i, layer) in layers.iter().enumerate() {
            if !matches!(layer, Layer::Conv2d { .. }) {
                continue;
            }
            convs += 1;
            let relu = layers.get(i + 1) == Some(&Layer::Relu);
            let act = if relu { i + 2 } else { i + 1 };
            let Shape::Map { c, h, w } = model.shapes()[act] else {
                continue;
            };
            out.push(Activations {
                title: format!(
                    "conv{convs}{}: {c}×{h}×{w}",
                    if relu { " + ReLU" } else { "" }
                ),
                data: b.read_f32(model.activation(ws, act)?)?,
                c,
                h,
                w,
            });
        }
        Ok(())
    })
    .map_err(run_failure)?;
    Ok(out)
}
