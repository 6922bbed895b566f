//! `cnn-gpu eval`.

use std::path::PathBuf;

use clap::Args;

use cnn_gpu::backend::Backend;
use cnn_gpu::checkpoint::{self, Checkpoint};
use cnn_gpu::model::ModelSpec;
use cnn_gpu::train::{self, ResidentDataset};

use super::{open_backend, run_failure, Chosen, DataArgs, DeviceArgs, Failure, ModelArgs};

#[derive(Args, Debug)]
pub(crate) struct EvalArgs {
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// The checkpoint (safetensors, PyTorch state_dict names) to evaluate.
    #[arg(long)]
    pub(crate) checkpoint: PathBuf,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 1000)]
    pub(crate) batch_size: usize,
}

pub(crate) fn eval_command(args: &EvalArgs) -> Result<(), Failure> {
    if args.batch_size == 0 {
        return Err(Failure::usage("--batch-size must be at least 1"));
    }
    let spec = args.model.resolve(Some(&args.checkpoint))?;
    let ckpt = checkpoint::load(&args.checkpoint, &spec).map_err(Failure::usage)?;
    match open_backend(&args.device)? {
        Chosen::Cpu(b) => eval_on(&b, args, spec, &ckpt),
        Chosen::Gpu(b) => eval_on(&b, args, spec, &ckpt),
    }
}

pub(crate) fn eval_on<B: Backend>(
    b: &B,
    args: &EvalArgs,
    spec: ModelSpec,
    ckpt: &Checkpoint,
) -> Result<(), Failure> {
    let mnist = args.data.load()?;
    let model = checkpoint::build_model(b, spec, ckpt).map_err(run_failure)?;
    let test =
        ResidentDataset::upload(b, &mnist.test, model.classes(), "test").map_err(run_failure)?;
    let r = train::evaluate_detailed(b, &model, &test, args.batch_size).map_err(run_failure)?;
    let trained = match ckpt.train_state() {
        Some(s) => format!("epoch {}, step {}", s.epoch, s.step),
        None => "no training state".to_string(),
    };
    println!(
        "Checkpoint {} ({trained}) on {}",
        args.checkpoint.display(),
        b.describe()
    );
    println!(
        "Accuracy of the network on the {} test images: {:.2}%",
        r.eval.total,
        r.eval.accuracy_percent()
    );
    println!("Mean loss: {:.4}", r.mean_loss);
    for c in 0..r.classes {
        let (ok, n) = r.class_counts(c);
        let pct = if n == 0 {
            0.0
        } else {
            100.0 * ok as f64 / n as f64
        };
        let name = match args.data.kind().class_names()[c] {
            digit if digit == c.to_string() => String::new(),
            name => format!(" ({name})"),
        };
        println!("Accuracy of class {c}{name}: {pct:.2}% ({ok}/{n})");
    }
    println!("Confusion matrix (rows: true class, columns: predicted):");
    let header: String = (0..r.classes).map(|c| format!("{c:>6}")).collect();
    println!("     {header}");
    for t in 0..r.classes {
        let row: String = r.confusion[t * r.classes..(t + 1) * r.classes]
            .iter()
            .map(|n| format!("{n:>6}"))
            .collect();
        println!("{t:>4} {row}");
    }
    Ok(())
}
