//! `cnn-gpu plot`: training curves from a `train --metrics` file.

use std::path::PathBuf;

use clap::Args;

use cnn_gpu::{metrics, picture};

use super::files::{check_output, write_png};
use super::Failure;

#[derive(Args, Debug)]
pub(crate) struct PlotArgs {
    /// The JSON-lines file `cnn-gpu train --metrics PATH` wrote.
    #[arg(value_name = "METRICS")]
    pub(crate) metrics: PathBuf,
    /// The PNG to write.
    #[arg(short, long)]
    pub(crate) output: PathBuf,
    /// Picture width in pixels.
    #[arg(long, default_value_t = 900)]
    pub(crate) width: u32,
    /// Picture height in pixels.
    #[arg(long, default_value_t = 360)]
    pub(crate) height: u32,
}

pub(crate) fn plot_command(args: &PlotArgs) -> Result<(), Failure> {
    if !(300..=8000).contains(&args.width) || !(200..=8000).contains(&args.height) {
        return Err(Failure::usage(
            "--width must be 300…8000 and --height 200…8000 pixels",
        ));
    }
    let records = metrics::read_metrics(&args.metrics).map_err(Failure::usage)?;
    check_output(&args.output)?;
    let curves =
        picture::curves_picture(&records, args.width, args.height).map_err(Failure::other)?;
    write_png(&args.output, &curves.image)
}
