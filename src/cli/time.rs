//! `cnn-gpu time`, after Caffe's `caffe time`.

use clap::Args;

use cnn_gpu::backend::Backend;
use cnn_gpu::model::ModelSpec;
use cnn_gpu::profile::time_layers;

use super::{open_backend, run_failure, Chosen, DeviceArgs, Failure, ModelArgs};

#[derive(Args, Debug)]
pub(crate) struct TimeArgs {
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    #[arg(long, default_value_t = 64)]
    pub(crate) batch_size: usize,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 20)]
    pub(crate) iterations: usize,
    /// Seeds the weights and the random input batch.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
}

pub(crate) fn time_command(args: &TimeArgs) -> Result<(), Failure> {
    if args.batch_size == 0 || args.iterations == 0 {
        return Err(Failure::usage(
            "--batch-size and --iterations must be at least 1",
        ));
    }
    let spec = args.model.resolve(None)?;
    match open_backend(&args.device)? {
        Chosen::Cpu(b) => time_on(&b, args, spec),
        Chosen::Gpu(b) => time_on(&b, args, spec),
    }
}

pub(crate) fn time_on<B: Backend>(b: &B, args: &TimeArgs, spec: ModelSpec) -> Result<(), Failure> {
    let t =
        time_layers(b, spec, args.batch_size, args.iterations, args.seed).map_err(run_failure)?;
    println!(
        "{}, batch {}, {} steps on {}",
        args.model.model.as_deref().unwrap_or("simple-cnn"),
        t.batch,
        t.iterations,
        b.describe()
    );
    println!(
        "{:<3} {:<44} {:>12} {:>12}",
        "#", "layer", "forward ms", "backward ms"
    );
    for l in &t.layers {
        if let Some(into) = l.fused_into {
            let note = format!("(in layer {into}'s times)");
            println!("{:<3} {:<44} {note:>25}", l.index, l.layer);
            continue;
        }
        println!(
            "{:<3} {:<44} {:>12.3} {:>12.3}",
            l.index,
            l.layer,
            l.forward * 1e3,
            l.backward * 1e3
        );
    }
    println!(
        "{:<3} {:<44} {:>12.3}",
        "",
        "softmax cross-entropy (loss + gradient)",
        t.loss * 1e3
    );
    println!("{:<3} {:<44} {:>12.3}", "", "SGD update", t.update * 1e3);
    println!(
        "{:<3} {:<44} {:>12.3}",
        "",
        "total in ops, per step",
        t.total * 1e3
    );
    println!(
        "{:<3} {:<44} {:>12.3}   ({:.0} images/s)",
        "",
        "wall time per step, unprofiled",
        t.wall * 1e3,
        t.images_per_sec()
    );
    Ok(())
}
