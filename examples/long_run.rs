//! Many epochs back to back, watching for growth: after every epoch one line with the epoch's
//! mean loss, the process's resident memory now and at its peak (VmRSS and VmHWM from
//! /proc/self/status, Linux) and, on the GPU backend, the live GPU buffers.
//!
//! `cargo run --release --example long_run -- [--backend cpu|gpu] [--epochs 20]
//!  [--images 512] [--batch 64] [--data-dir DIR]`
//!
//! Trains SimpleCNN on the first `--images` MNIST training images (from --data-dir, else
//! $CNN_GPU_DATA_DIR, else data/mnist) and evaluates on the first 1000 test images at the end.
//! A run that does not leak shows VmRSS and the buffer count flat after the first epoch.

use std::cell::Cell;

use cnn_gpu::backend::cpu::CpuBackend;
use cnn_gpu::backend::gpu::{GpuBackend, GpuOptions};
use cnn_gpu::backend::Backend;
use cnn_gpu::data::{load_mnist, resolve_data_dir, Dataset, DatasetKind};
use cnn_gpu::model::{Model, ModelSpec};
use cnn_gpu::train::{self, Event, FitOptions, Flow, LossRecord, Reporter, TrainConfig};

struct Args {
    gpu: bool,
    epochs: usize,
    images: usize,
    batch: usize,
    data_dir: Option<std::path::PathBuf>,
}

fn parse_args() -> Args {
    let mut args = Args {
        gpu: false,
        epochs: 20,
        images: 512,
        batch: 64,
        data_dir: None,
    };
    let usage = || -> ! {
        eprintln!(
            "usage: long_run [--backend cpu|gpu] [--epochs N] [--images N] [--batch N] \
             [--data-dir DIR]"
        );
        std::process::exit(2)
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let Some(value) = it.next() else { usage() };
        let number = || value.parse::<usize>().ok().filter(|&n| n > 0);
        match flag.as_str() {
            "--backend" if value == "cpu" || value == "gpu" => args.gpu = value == "gpu",
            "--epochs" => args.epochs = number().unwrap_or_else(|| usage()),
            "--images" => args.images = number().unwrap_or_else(|| usage()),
            "--batch" => args.batch = number().unwrap_or_else(|| usage()),
            "--data-dir" => args.data_dir = Some(value.into()),
            _ => usage(),
        }
    }
    args
}

/// VmRSS and VmHWM in MiB (0 where /proc is not there).
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn first(ds: &Dataset, n: usize) -> Dataset {
    let n = n.min(ds.len());
    Dataset::new(
        ds.images[..n * ds.image_len()].to_vec(),
        ds.labels[..n].to_vec(),
        ds.rows,
        ds.cols,
    )
    .expect("a prefix of a consistent set")
}

fn run<B: Backend>(b: &B, args: &Args, live_buffers: &dyn Fn() -> Option<usize>) {
    let dir = resolve_data_dir(args.data_dir.as_deref(), DatasetKind::Mnist);
    let mnist = load_mnist(&dir).unwrap_or_else(|e| {
        eprintln!("error: {e}");
        std::process::exit(2)
    });
    let (train_set, test_set) = (first(&mnist.train, args.images), first(&mnist.test, 1000));
    drop(mnist);
    let cfg = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch,
        // One loss line an epoch: the mean over the whole epoch.
        log_interval: train_set.len().div_ceil(args.batch),
        ..TrainConfig::default()
    };
    let mut model = Model::new(b, ModelSpec::simple_cnn(), cfg.seed).expect("a model");
    println!(
        "long run on {}: {} epochs of {} images, batch {}",
        b.describe(),
        cfg.epochs,
        train_set.len(),
        cfg.batch_size
    );
    let (rss, hwm) = memory_mib();
    println!("before training: VmRSS {rss:.1} MiB, VmHWM {hwm:.1} MiB");
    // The reporter keeps the epoch's loss line for the hook (both are lent to the loop).
    let loss = Cell::new(0.0f32);
    let mut reporter = LossKeeper(&loss);
    let mut hook = |e: &Event, _: &Model<B>| {
        if let Event::EpochEnd { epoch, .. } = e {
            let (rss, hwm) = memory_mib();
            let buffers = live_buffers().map_or(String::new(), |n| format!(", GPU buffers {n}"));
            println!(
                "epoch {epoch:2}: loss {:.4}, VmRSS {rss:.1} MiB, VmHWM {hwm:.1} MiB{buffers}",
                loss.get()
            );
        }
        Ok(Flow::Continue)
    };
    let opts = FitOptions::reporting(&mut reporter).hook(&mut hook);
    let summary =
        train::train(b, &mut model, &train_set, &test_set, &cfg, opts).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(1)
        });
    println!(
        "accuracy on {} test images: {:.2}%",
        summary.eval.total,
        summary.eval.accuracy_percent()
    );
}

/// Keeps the last loss line's value.
struct LossKeeper<'a>(&'a Cell<f32>);

impl Reporter for LossKeeper<'_> {
    fn loss(&mut self, rec: &LossRecord) {
        self.0.set(rec.loss);
    }
}

fn main() {
    let args = parse_args();
    if args.gpu {
        let gpu = GpuBackend::new(&GpuOptions::default()).unwrap_or_else(|e| {
            eprintln!("error: {e}");
            std::process::exit(2)
        });
        run(&gpu, &args, &|| Some(gpu.live_buffers()));
    } else {
        let cpu = CpuBackend::new(None).expect("the CPU backend");
        run(&cpu, &args, &|| None);
    }
}
