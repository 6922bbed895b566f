//! `cnn-gpu time`, after Caffe's `caffe time`.

use clap::Args;

use cnn_gpu::backend::gpu::{GpuBackend, PlannedDispatch};
use cnn_gpu::backend::Backend;
use cnn_gpu::model::ModelSpec;
use cnn_gpu::profile::{plan_step, time_layers};

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
    /// List one step's GPU dispatches (kernel, grid, estimated FLOPs and bytes) and the host's
    /// time to record and submit a step, instead of the per-layer times.
    #[arg(long)]
    pub(crate) plan: bool,
}

pub(crate) fn time_command(args: &TimeArgs) -> Result<(), Failure> {
    if args.batch_size == 0 || args.iterations == 0 {
        return Err(Failure::usage(
            "--batch-size and --iterations must be at least 1",
        ));
    }
    let spec = args.model.resolve(None)?;
    match (open_backend(&args.device)?, args.plan) {
        (Chosen::Cpu(_), true) => Err(Failure::usage(
            "--plan lists GPU dispatches: it needs the GPU backend (--backend gpu)",
        )),
        (Chosen::Gpu(b), true) => plan_on(&b, args, spec),
        (Chosen::Cpu(b), false) => time_on(&b, args, spec),
        (Chosen::Gpu(b), false) => time_on(&b, args, spec),
    }
}

/// The first line: the model as `--model` named it, the batch, `what`, the backend.
fn header(args: &TimeArgs, batch: usize, what: &str, backend: &str) {
    let model = args.model.model.as_deref().unwrap_or("simple-cnn");
    println!("{model}, batch {batch}{what} on {backend}");
}

/// Streaming multiprocessors of an H100/H200: the workgroups a dispatch needs to occupy one.
const SMS: u64 = 132;

/// `time --plan`: one step's dispatches, then the totals and the host's recording time.
fn plan_on(b: &GpuBackend, args: &TimeArgs, spec: ModelSpec) -> Result<(), Failure> {
    let plan =
        plan_step(b, spec, args.batch_size, args.seed, args.iterations).map_err(run_failure)?;
    header(
        args,
        plan.batch,
        ": one training step's dispatches",
        &b.describe(),
    );
    println!(
        "{:<3} {:<46} {:>18} {:>9} {:>10} {:>9}  constants",
        "#", "kernel", "grid", "groups", "MFLOP", "MB"
    );
    // A dispatch of ≥ 1 MFLOP or ≥ 1 MB on fewer workgroups than an H100/H200 has SMs.
    let starving = |d: &PlannedDispatch| d.starves(SMS);
    for (i, d) in plan.dispatches.iter().enumerate() {
        let [x, y, z] = d.groups;
        let line = format!(
            "{:<3} {:<46} {:>18} {:>9} {:>10.3} {:>9.3}  {}{}",
            i + 1,
            format!("{}::{}", d.shader, d.entry),
            format!("{x}×{y}×{z}"),
            d.workgroups(),
            d.flops / 1e6,
            d.bytes / 1e6,
            d.constants,
            if starving(d) { "  [starves]" } else { "" }
        );
        println!("{}", line.trim_end());
    }
    println!(
        "batch {}: {} dispatches per step ({} starving: under {SMS} workgroups), {:.1} MFLOP, \
         {:.1} MB bound; host record + submit {:.0} µs per step (median of {}, CPU time)",
        plan.batch,
        plan.dispatches.len(),
        plan.dispatches.iter().filter(|d| starving(d)).count(),
        plan.total_flops() / 1e6,
        plan.total_bytes() / 1e6,
        plan.record_submit * 1e6,
        args.iterations
    );
    Ok(())
}

pub(crate) fn time_on<B: Backend>(b: &B, args: &TimeArgs, spec: ModelSpec) -> Result<(), Failure> {
    let t =
        time_layers(b, spec, args.batch_size, args.iterations, args.seed).map_err(run_failure)?;
    let steps = format!(", {} steps", t.iterations);
    header(args, t.batch, &steps, &b.describe());
    println!(
        "{:<3} {:<44} {:>12} {:>12}",
        "#", "layer", "forward ms", "backward ms"
    );
    for l in &t.layers {
        if let Some(into) = l.fused_into {
            // A ReLU fused into the linear layer before it runs backward in the one after it.
            let note = if into < l.index {
                format!("(in layers {into} and {}'s times)", l.index + 1)
            } else {
                format!("(in layer {into}'s times)")
            };
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
