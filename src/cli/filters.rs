//! `cnn-gpu filters`: a picture of conv1's learned kernels.

use std::path::PathBuf;

use clap::Args;

use cnn_gpu::picture;

use super::files::{check_output, load_simple_cnn, write_png};
use super::Failure;

#[derive(Args, Debug)]
pub(crate) struct FiltersArgs {
    /// The checkpoint (safetensors, PyTorch state_dict names) whose kernels to draw.
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// The PNG to write.
    #[arg(short, long)]
    pub(crate) output: PathBuf,
    /// Pixels per kernel weight.
    #[arg(long, default_value_t = 16)]
    pub(crate) scale: u32,
}

pub(crate) fn filters_command(args: &FiltersArgs) -> Result<(), Failure> {
    if !(1..=64).contains(&args.scale) {
        return Err(Failure::usage("--scale must be between 1 and 64"));
    }
    let ckpt = load_simple_cnn(&args.checkpoint)?;
    check_output(&args.output)?;
    let w = ckpt
        .params
        .iter()
        .find(|t| t.name == "conv1.weight")
        .ok_or_else(|| Failure::other("the checkpoint has no conv1.weight"))?;
    let shape: [usize; 4] = w
        .shape
        .clone()
        .try_into()
        .map_err(|_| Failure::other(format!("conv1.weight has shape {:?}", w.shape)))?;
    let img = picture::kernels_picture("conv1.weight", &w.data, shape, args.scale);
    write_png(&args.output, &img)
}
