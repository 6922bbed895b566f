//! The subcommands, one module each, and what they share: the backend choice, the data flags,
//! and [`Failure`], which carries a message and an exit code to `main`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use cnn_gpu::backend::cpu::CpuBackend;
use cnn_gpu::backend::gpu::{list_adapters, GemmVariant, GpuBackend, GpuOptions};
use cnn_gpu::checkpoint;
use cnn_gpu::data::fetch::{fetch_files, resolve_mirrors, Progress};
use cnn_gpu::data::{load_mnist, missing_files, resolve_data_dir, DatasetKind, Mnist};
use cnn_gpu::model::ModelSpec;

pub(crate) mod check;
pub(crate) mod convolve;
pub(crate) mod eval;
pub(crate) mod fault;
pub(crate) mod featuremaps;
pub(crate) mod files;
pub(crate) mod filters;
pub(crate) mod info;
pub(crate) mod plot;
pub(crate) mod predict;
pub(crate) mod time;
pub(crate) mod train;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum BackendChoice {
    /// The GPU if one can be opened, else the CPU.
    Auto,
    /// The WGSL backend (fails if no adapter can be opened).
    Gpu,
    /// The CPU reference backend.
    Cpu,
}

/// Where the ops run: shared by every command that computes.
#[derive(Args, Debug)]
pub(crate) struct DeviceArgs {
    /// Which backend runs the ops.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub(crate) backend: BackendChoice,
    #[command(flatten)]
    pub(crate) gpu: AdapterArgs,
    /// CPU backend threads (default: all cores).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// The GPU backend's GEMM core for matmul and the convolutions (default: $CNN_GPU_GEMM,
    /// else baseline).
    #[arg(long, value_name = "VARIANT", value_parser = parse_gemm)]
    pub(crate) gemm: Option<GemmVariant>,
}

/// A `--gemm` value: one of [`GemmVariant::ALL`]'s names.
pub(crate) fn parse_gemm(s: &str) -> Result<GemmVariant, String> {
    GemmVariant::parse(s).ok_or_else(|| {
        let known: Vec<&str> = GemmVariant::ALL.iter().map(|v| v.name()).collect();
        format!("not one of {}", known.join(", "))
    })
}

/// `--adapter`: which GPU, for every command that can run on one (in [`DeviceArgs`], and
/// `check`).
#[derive(Args, Debug)]
pub(crate) struct AdapterArgs {
    /// Pick a GPU adapter: its index in `cnn-gpu info`, or part of its name.
    #[arg(long)]
    pub(crate) adapter: Option<String>,
}

impl AdapterArgs {
    /// The GPU options these flags ask for (the rest default).
    pub(crate) fn options(&self) -> GpuOptions {
        GpuOptions {
            adapter: self.adapter.clone(),
            ..GpuOptions::default()
        }
    }
}

/// A failure on its way to the user: the message and the exit code.
pub(crate) struct Failure {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Failure {
    /// Something the user must fix (exit 2).
    fn usage(e: impl std::fmt::Display) -> Self {
        Failure {
            code: 2,
            message: e.to_string(),
        }
    }
    /// A refused setting (exit 2), without the library's "invalid parameters" prefix; a
    /// setting the library names is named by its flag.
    fn config(e: cnn_gpu::Error) -> Self {
        match e {
            cnn_gpu::Error::InvalidParams(msg) => Failure::usage(msg),
            cnn_gpu::Error::Setting { name, message } => {
                Failure::usage(format!("{} {message}", flag(name)))
            }
            other => Failure::usage(other),
        }
    }
    /// Anything else (exit 1).
    fn other(e: impl std::fmt::Display) -> Self {
        Failure {
            code: 1,
            message: e.to_string(),
        }
    }
}

/// The backend a command runs on.
#[allow(clippy::large_enum_variant)] // one, for the whole run
pub(crate) enum Chosen {
    Cpu(CpuBackend),
    Gpu(GpuBackend),
}

/// Opens the backend `--backend` names. `auto` takes a hardware GPU and otherwise the CPU
/// backend, with a one-line warning: a software adapter (lavapipe, WARP) runs the same kernels
/// far slower than the CPU backend, so only `--backend gpu` (or `--adapter`) picks one.
pub(crate) fn open_backend(args: &DeviceArgs) -> Result<Chosen, Failure> {
    if args.threads == Some(0) {
        return Err(Failure::usage("--threads must be at least 1"));
    }
    let cpu = || {
        if args.gpu.adapter.is_some() {
            log::warn!("--adapter is ignored by the CPU backend");
        }
        CpuBackend::new(args.threads)
            .map(Chosen::Cpu)
            .map_err(Failure::other)
    };
    match args.backend {
        BackendChoice::Cpu => cpu(),
        BackendChoice::Gpu => open_gpu(args).map(Chosen::Gpu).map_err(|e| match e {
            cnn_gpu::Error::NoAdapter(_) => {
                Failure::usage(format!("{e}; use --backend cpu to run on the CPU"))
            }
            other => Failure::other(other),
        }),
        BackendChoice::Auto if args.gpu.adapter.is_none() && !real_gpu_present() => {
            eprintln!(
                "warning: no hardware GPU adapter found; running on the CPU backend \
                 (`cnn-gpu info` lists adapters; --backend gpu uses a software one)"
            );
            cpu()
        }
        BackendChoice::Auto => match open_gpu(args) {
            Ok(gpu) => Ok(Chosen::Gpu(gpu)),
            Err(e) => {
                eprintln!("warning: running on the CPU: {e}");
                cpu()
            }
        },
    }
}

pub(crate) fn real_gpu_present() -> bool {
    let (adapters, pick) = list_adapters();
    pick.is_some_and(|i| adapters[i].device_type != "Cpu")
}

pub(crate) fn open_gpu(args: &DeviceArgs) -> cnn_gpu::Result<GpuBackend> {
    let options = GpuOptions {
        gemm: args.gemm,
        ..args.gpu.options()
    };
    let gpu = GpuBackend::new(&options)?;
    if args.threads.is_some() {
        log::warn!("--threads is ignored by the GPU backend");
    }
    Ok(gpu)
}

/// Library errors: limits the user can change (a smaller batch) and a diverged run (a smaller
/// lr) exit 2, the rest 1. The flags that fix a setting or a divergence are named here: the
/// library names values.
pub(crate) fn run_failure(e: cnn_gpu::Error) -> Failure {
    match e {
        cnn_gpu::Error::Setting { name, message } => {
            Failure::usage(format!("invalid parameters: {} {message}", flag(name)))
        }
        cnn_gpu::Error::Diverged {
            step,
            epoch,
            batch,
            value,
        } => Failure::usage(format!(
            "the loss became {value} at step {step} (epoch {epoch}, batch {batch}); lower --lr, \
             or add --warmup-steps or --clip-grad-norm"
        )),
        cnn_gpu::Error::Limit(_) | cnn_gpu::Error::InvalidParams(_) => {
            Failure::usage(format!("{e:#}"))
        }
        other => Failure::other(format!("{other:#}")),
    }
}

/// The flag of the setting the library calls `name`: `--` and the name, `-` for `_`
/// (`lr_step_size` is `--lr-step-size`).
pub(crate) fn flag(name: &str) -> String {
    format!("--{}", name.replace('_', "-"))
}

/// Where the dataset comes from: shared by every command that reads MNIST.
/// `--model NAME|FILE`, shared by train, eval and time.
#[derive(Args, Debug)]
pub(crate) struct ModelArgs {
    /// The model: `simple-cnn` (the default), `lenet5`, `fashion-cnn`, or a model file (TOML;
    /// see docs/model-files.md). eval, and train with --init or --resume, take it from the
    /// checkpoint when the checkpoint describes its model.
    #[arg(long, value_name = "NAME|FILE")]
    pub(crate) model: Option<String>,
}

impl ModelArgs {
    /// The model to use: `--model` when given, else the one `checkpoint` describes in its
    /// metadata, else SimpleCNN. It must give one output per class of the MNIST-format
    /// datasets (10).
    pub(crate) fn resolve(&self, checkpoint: Option<&Path>) -> Result<ModelSpec, Failure> {
        let spec = match (&self.model, checkpoint) {
            (Some(arg), _) => match ModelSpec::preset(arg) {
                Some(spec) => spec,
                None if Path::new(arg).is_file() => {
                    ModelSpec::from_file(Path::new(arg)).map_err(Failure::usage)?
                }
                None => {
                    return Err(Failure::usage(format!(
                        "--model {arg}: no such preset or file; give {} or the path of a \
                         model file (TOML, see README)",
                        ModelSpec::PRESETS.join(", ")
                    )))
                }
            },
            (None, Some(path)) => checkpoint::model_of(path)
                .map_err(Failure::usage)?
                .unwrap_or_default(),
            (None, None) => ModelSpec::simple_cnn(),
        };
        let shapes = spec.infer_shapes().map_err(Failure::config)?;
        let outputs = shapes.last().expect("never empty").numel();
        if outputs != CLASSES {
            return Err(Failure::usage(format!(
                "the model gives {outputs} outputs per image, but the MNIST-format datasets have \
                 {CLASSES} classes: make its last layer give {CLASSES}"
            )));
        }
        Ok(spec)
    }
}

/// Classes of every dataset the CLI reads (MNIST and Fashion-MNIST).
const CLASSES: usize = 10;

#[derive(Args, Debug)]
pub(crate) struct DataArgs {
    /// Which dataset.
    #[arg(long, value_enum, default_value_t = DatasetChoice::Mnist)]
    pub(crate) dataset: DatasetChoice,
    /// Directory holding the dataset's four IDX files (default: $CNN_GPU_DATA_DIR for MNIST,
    /// $CNN_GPU_FASHION_DATA_DIR for Fashion-MNIST; else ./data/mnist or ./data/fashion-mnist
    /// when complete; else, for Fashion-MNIST, /usr/share/datasets/fashion-mnist (Debian's
    /// dataset-fashion-mnist) when complete; else the ./data directory, downloading into it).
    #[arg(long)]
    pub(crate) data_dir: Option<PathBuf>,
    /// Where to download missing files from (repeatable, tried in order; default: the
    /// environment variable CNN_GPU_MNIST_MIRROR or CNN_GPU_FASHION_MNIST_MIRROR, else the
    /// built-in mirrors).
    #[arg(long = "mirror", value_name = "URL")]
    pub(crate) mirrors: Vec<String>,
    /// Never download: fail when files are missing.
    #[arg(long)]
    pub(crate) no_download: bool,
}

/// `--dataset`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum DatasetChoice {
    /// Handwritten digits.
    Mnist,
    /// Zalando's Fashion-MNIST: ten kinds of clothes in the same format.
    FashionMnist,
}

impl DataArgs {
    pub(crate) fn kind(&self) -> DatasetKind {
        match self.dataset {
            DatasetChoice::Mnist => DatasetKind::Mnist,
            DatasetChoice::FashionMnist => DatasetKind::FashionMnist,
        }
    }

    /// These flags as they would be typed (the defaults left out), for a command to print.
    pub(crate) fn flags(&self) -> Vec<String> {
        let mut words = Vec::new();
        if self.dataset != DatasetChoice::Mnist {
            let value = self.dataset.to_possible_value().expect("not skipped");
            words.extend(["--dataset".to_string(), value.get_name().to_string()]);
        }
        if let Some(dir) = &self.data_dir {
            words.extend(["--data-dir".to_string(), dir.display().to_string()]);
        }
        for m in &self.mirrors {
            words.extend(["--mirror".to_string(), m.clone()]);
        }
        if self.no_download {
            words.push("--no-download".into());
        }
        words
    }

    /// Finds the dataset (downloading missing files unless --no-download) and loads it.
    pub(crate) fn load(&self) -> Result<Mnist, Failure> {
        let kind = self.kind();
        let dir = resolve_data_dir(self.data_dir.as_deref(), kind);
        if !self.no_download {
            fetch_missing(&dir, &self.mirrors, kind)?;
        }
        load_mnist(&dir).map_err(|e| Failure::usage(format!("{e:#}")))
    }
}

/// Downloads `kind`'s files missing from `dir`, if any, showing progress on stderr. Files that
/// are present but unusable are left to `load_mnist` to report.
fn fetch_missing(dir: &Path, mirror_flags: &[String], kind: DatasetKind) -> Result<(), Failure> {
    let missing = missing_files(dir);
    if missing.is_empty() {
        return Ok(());
    }
    let files: Vec<(&str, &str)> = kind
        .sha256()
        .iter()
        .filter(|(name, _)| missing.contains(name))
        .copied()
        .collect();
    let mirrors = resolve_mirrors(mirror_flags, kind);
    eprintln!(
        "{} not found in {}: downloading {} \
         (--no-download forbids this; --mirror URL or {} picks a mirror)",
        kind.name(),
        dir.display(),
        missing.join(", "),
        kind.mirror_env()
    );
    let mut progress: Box<dyn Progress> = if std::io::stderr().is_terminal() {
        Box::new(BarProgress { bar: None })
    } else {
        Box::new(LineProgress)
    };
    fetch_files(dir, &mirrors, &files, progress.as_mut())
        .map(|_| ())
        .map_err(Failure::usage)
}

/// Progress on a terminal: a line naming the URL, then a bar that ends as "done" or "failed".
pub(crate) struct BarProgress {
    pub(crate) bar: Option<indicatif::ProgressBar>,
}

impl BarProgress {
    /// Replaces the bar by `message` for good.
    fn end(&mut self, message: String, ok: bool) {
        if let Some(bar) = self.bar.take() {
            bar.set_style(indicatif::ProgressStyle::with_template("  {msg}").expect("a template"));
            if ok {
                bar.finish_with_message(message);
            } else {
                bar.abandon_with_message(message);
            }
        }
    }
}

impl Progress for BarProgress {
    fn begin(&mut self, name: &str, url: &str) {
        eprintln!("downloading {name}.gz from {url}");
        let bar = indicatif::ProgressBar::no_length().with_style(
            indicatif::ProgressStyle::with_template(
                "  [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} {eta}",
            )
            .expect("a template")
            .progress_chars("=> "),
        );
        self.bar = Some(bar);
    }
    fn advance(&mut self, downloaded: u64, total: Option<u64>) {
        if let Some(bar) = &self.bar {
            if let Some(total) = total {
                bar.set_length(total);
            }
            bar.set_position(downloaded);
        }
    }
    fn done(&mut self, _name: &str, bytes: u64) {
        self.end(format!("done, {}", megabytes(bytes)), true);
    }
    fn failed(&mut self, _name: &str, _url: &str, reason: &str) {
        self.end(format!("failed: {reason}"), false);
    }
}

/// Progress when stderr is not a terminal: one line per attempt.
pub(crate) struct LineProgress;

impl Progress for LineProgress {
    fn begin(&mut self, name: &str, url: &str) {
        eprint!("downloading {name}.gz from {url} … ");
    }
    fn done(&mut self, _name: &str, bytes: u64) {
        eprintln!("done, {}", megabytes(bytes));
    }
    fn failed(&mut self, _name: &str, _url: &str, reason: &str) {
        eprintln!("failed: {reason}");
    }
}

pub(crate) fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}
