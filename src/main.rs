//! The `cnn-gpu` command line: parses arguments, calls the library, and turns errors into
//! messages and exit codes. No training logic lives here.
//!
//! Exit codes:
//! - 0: success;
//! - 2: something the user must fix — a bad flag value (refused before any work; clap's own
//!   parse errors also exit 2), unusable MNIST files in the data directory, or missing files
//!   that could not be downloaded;
//! - 1: any other failure (no GPU adapter, a backend error …).
//!
//! Every failure prints one line `error: …` on stderr (a failed download adds the mirrors'
//! answers on the lines after it).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use cnn_gpu::backend::cpu::CpuBackend;
use cnn_gpu::backend::gpu::{list_adapters, GpuBackend, GpuOptions};
use cnn_gpu::backend::Backend;
use cnn_gpu::checkpoint::{self, Checkpoint, TrainState};
use cnn_gpu::data::fetch::{fetch_files, resolve_mirrors, Progress, MIRROR_ENV, MNIST_SHA256};
use cnn_gpu::data::{load_mnist, missing_files, resolve_data_dir};
use cnn_gpu::model::{Model, ModelSpec};
use cnn_gpu::profile::time_layers;
use cnn_gpu::train::{self, PrintReporter, ResidentDataset, TrainConfig};

#[derive(Parser, Debug)]
#[command(
    name = "cnn-gpu",
    version,
    about = "Train a CNN on MNIST with WGSL compute shaders (or the CPU)"
)]
#[command(after_help = "Exit codes: 0 success, 2 bad arguments or data files, 1 other failures.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train the tutorial's SimpleCNN on MNIST and report the test accuracy.
    Train(TrainArgs),
    /// List every GPU adapter with the limits that matter, and which one `--backend auto` picks.
    Info,
    /// Time each layer's forward and backward pass of a training step (GPU timestamps).
    Time(TimeArgs),
    /// Evaluate a checkpoint on the MNIST test set: accuracy, loss, per class, confusion matrix.
    Eval(EvalArgs),
}

#[derive(Args, Debug)]
struct EvalArgs {
    #[command(flatten)]
    device: DeviceArgs,
    /// The checkpoint (safetensors, PyTorch state_dict names) to evaluate.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Directory holding the MNIST IDX files (default: see the data module's search order).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where to download missing MNIST files from (repeatable, tried in order).
    #[arg(long = "mirror", value_name = "URL")]
    mirrors: Vec<String>,
    /// Never download: fail when MNIST files are missing.
    #[arg(long)]
    no_download: bool,
    /// Evaluation batch size.
    #[arg(long, default_value_t = 1000)]
    batch_size: usize,
}

#[derive(Args, Debug)]
struct TimeArgs {
    #[command(flatten)]
    device: DeviceArgs,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Timed steps (after one warm-up step).
    #[arg(long, default_value_t = 20)]
    iterations: usize,
    /// Seeds the weights and the random input batch.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum BackendChoice {
    /// The GPU if one can be opened, else the CPU.
    Auto,
    /// The WGSL backend (fails if no adapter can be opened).
    Gpu,
    /// The CPU reference backend.
    Cpu,
}

/// Where the ops run: shared by every command that computes.
#[derive(Args, Debug)]
struct DeviceArgs {
    /// Which backend runs the ops.
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    backend: BackendChoice,
    /// Pick a GPU adapter: its index in `cnn-gpu info`, or part of its name.
    #[arg(long)]
    adapter: Option<String>,
    /// CPU backend threads (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
}

#[derive(Args, Debug)]
struct TrainArgs {
    #[command(flatten)]
    device: DeviceArgs,
    #[arg(long, default_value_t = 5)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.001, allow_negative_numbers = true)]
    lr: f32,
    /// SGD momentum, in [0, 1).
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    momentum: f32,
    /// Seeds the initial weights and the shuffles.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Directory holding the MNIST IDX files (default: see the data module's search order).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Where to download missing MNIST files from (repeatable, tried in order; default: the
    /// environment variable CNN_GPU_MNIST_MIRROR, else the built-in mirrors).
    #[arg(long = "mirror", value_name = "URL")]
    mirrors: Vec<String>,
    /// Never download: fail when MNIST files are missing.
    #[arg(long)]
    no_download: bool,
    /// Print the mean loss every this many batches.
    #[arg(long, default_value_t = 100)]
    log_interval: usize,
    /// Stop after this many training steps in all (a short run), then evaluate.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Write a checkpoint (safetensors, PyTorch state_dict names) here at the end of training.
    #[arg(long, value_name = "PATH")]
    save: Option<PathBuf>,
    /// Also write the --save checkpoint every N epochs.
    #[arg(long, value_name = "N", requires = "save")]
    save_every: Option<usize>,
    /// Also save SGD's momentum buffers (optimizer.<name>.momentum_buffer): PyTorch's strict
    /// load_state_dict then needs them filtered out.
    #[arg(long, requires = "save")]
    save_optimizer: bool,
    /// Start from the weights of this checkpoint instead of the seeded initialisation.
    #[arg(long, value_name = "PATH", conflicts_with = "resume")]
    init: Option<PathBuf>,
    /// Continue the run this checkpoint (saved with --save-optimizer at the end of an epoch)
    /// stopped: its weights, momentum, seed, lr and momentum, from the next epoch on, with the
    /// same batches and losses as an uninterrupted run.
    #[arg(long, value_name = "PATH")]
    resume: Option<PathBuf>,
}

/// A failure on its way to the user: the message and the exit code.
struct Failure {
    code: u8,
    message: String,
}

impl Failure {
    /// Something the user must fix (exit 2).
    fn usage(e: impl std::fmt::Display) -> Self {
        Failure {
            code: 2,
            message: e.to_string(),
        }
    }
    /// A refused setting (exit 2), without the library's "invalid parameters" prefix.
    fn config(e: cnn_gpu::Error) -> Self {
        match e {
            cnn_gpu::Error::InvalidParams(msg) => Failure::usage(msg),
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

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train_command(&args),
        Command::Time(args) => time_command(&args),
        Command::Eval(args) => eval_command(&args),
        Command::Info => {
            info_command();
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn train_command(args: &TrainArgs) -> Result<(), Failure> {
    // Refuse bad values before any work.
    let resume = match &args.resume {
        Some(path) => Some(load_resume(path)?),
        None => None,
    };
    let mut cfg = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        momentum: args.momentum,
        seed: args.seed,
        log_interval: args.log_interval,
        max_steps: args.max_steps,
        ..TrainConfig::default()
    };
    if let Some((_, state)) = &resume {
        cfg.seed = state.seed;
        cfg.lr = state.lr;
        cfg.momentum = state.momentum;
        cfg.first_epoch = state.epoch + 1;
    }
    cfg.validate().map_err(Failure::config)?;
    if args.save_every == Some(0) {
        return Err(Failure::usage("--save-every must be at least 1"));
    }
    // A bad checkpoint path fails now, not after training.
    if let Some(path) = &args.save {
        checkpoint::check_writable(path).map_err(Failure::usage)?;
    }
    let init = match (&args.init, resume) {
        (Some(path), _) => {
            Some(checkpoint::load(path, &ModelSpec::simple_cnn()).map_err(Failure::usage)?)
        }
        (None, Some((ckpt, _))) => Some(ckpt),
        (None, None) => None,
    };
    match open_backend(&args.device)? {
        Chosen::Cpu(b) => train_on(&b, args, &cfg, init.as_ref()),
        Chosen::Gpu(b) => train_on(&b, args, &cfg, init.as_ref()),
    }
}

fn eval_command(args: &EvalArgs) -> Result<(), Failure> {
    if args.batch_size == 0 {
        return Err(Failure::usage("--batch-size must be at least 1"));
    }
    let ckpt =
        checkpoint::load(&args.checkpoint, &ModelSpec::simple_cnn()).map_err(Failure::usage)?;
    match open_backend(&args.device)? {
        Chosen::Cpu(b) => eval_on(&b, args, &ckpt),
        Chosen::Gpu(b) => eval_on(&b, args, &ckpt),
    }
}

fn eval_on<B: Backend>(b: &B, args: &EvalArgs, ckpt: &Checkpoint) -> Result<(), Failure> {
    let dir = resolve_data_dir(args.data_dir.as_deref());
    if !args.no_download {
        fetch_missing(&dir, &args.mirrors)?;
    }
    let mnist = load_mnist(&dir).map_err(|e| Failure::usage(format!("{e:#}")))?;
    let model =
        Model::with_params(b, ModelSpec::simple_cnn(), &ckpt.params).map_err(run_failure)?;
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
        println!("Accuracy of class {c}: {pct:.2}% ({ok}/{n})");
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

/// The backend a command runs on.
#[allow(clippy::large_enum_variant)] // one, for the whole run
enum Chosen {
    Cpu(CpuBackend),
    Gpu(GpuBackend),
}

/// Opens the backend `--backend` names. `auto` takes a hardware GPU and otherwise the CPU
/// backend, with a one-line warning: a software adapter (lavapipe, WARP) runs the same kernels
/// far slower than the CPU backend, so only `--backend gpu` (or `--adapter`) picks one.
fn open_backend(args: &DeviceArgs) -> Result<Chosen, Failure> {
    if args.threads == Some(0) {
        return Err(Failure::usage("--threads must be at least 1"));
    }
    let cpu = || {
        if args.adapter.is_some() {
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
        BackendChoice::Auto if args.adapter.is_none() && !real_gpu_present() => {
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

fn real_gpu_present() -> bool {
    let (adapters, pick) = list_adapters();
    pick.is_some_and(|i| adapters[i].device_type != "Cpu")
}

fn open_gpu(args: &DeviceArgs) -> cnn_gpu::Result<GpuBackend> {
    let options = GpuOptions {
        adapter: args.adapter.clone(),
        ..GpuOptions::default()
    };
    let gpu = GpuBackend::new(&options)?;
    if args.threads.is_some() {
        log::warn!("--threads is ignored by the GPU backend");
    }
    Ok(gpu)
}

/// Library errors: limits the user can change (a smaller batch) exit 2, the rest 1.
fn run_failure(e: cnn_gpu::Error) -> Failure {
    match e {
        cnn_gpu::Error::Limit(_) | cnn_gpu::Error::InvalidParams(_) => {
            Failure::usage(format!("{e:#}"))
        }
        other => Failure::other(format!("{other:#}")),
    }
}

fn time_command(args: &TimeArgs) -> Result<(), Failure> {
    if args.batch_size == 0 || args.iterations == 0 {
        return Err(Failure::usage(
            "--batch-size and --iterations must be at least 1",
        ));
    }
    match open_backend(&args.device)? {
        Chosen::Cpu(b) => time_on(&b, args),
        Chosen::Gpu(b) => time_on(&b, args),
    }
}

fn time_on<B: Backend>(b: &B, args: &TimeArgs) -> Result<(), Failure> {
    let t = time_layers(
        b,
        ModelSpec::simple_cnn(),
        args.batch_size,
        args.iterations,
        args.seed,
    )
    .map_err(run_failure)?;
    println!(
        "SimpleCNN, batch {}, {} steps on {}",
        t.batch,
        t.iterations,
        b.describe()
    );
    println!(
        "{:<3} {:<44} {:>12} {:>12}",
        "#", "layer", "forward ms", "backward ms"
    );
    for l in &t.layers {
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

/// A checkpoint to resume from: it must hold the momentum buffers and the training state.
fn load_resume(path: &Path) -> Result<(Checkpoint, TrainState), Failure> {
    let ckpt = checkpoint::load(path, &ModelSpec::simple_cnn()).map_err(Failure::usage)?;
    let state = ckpt.train_state();
    match (&ckpt.velocity, state) {
        (Some(_), Some(state)) => Ok((ckpt, state)),
        _ => Err(Failure::usage(format!(
            "{}: no optimizer state to resume from (save it with --save-optimizer), or use \
             --init to start from its weights",
            path.display()
        ))),
    }
}

/// Loads MNIST, trains SimpleCNN on `b` and prints the results.
fn train_on<B: Backend>(
    b: &B,
    args: &TrainArgs,
    cfg: &TrainConfig,
    init: Option<&Checkpoint>,
) -> Result<(), Failure> {
    let dir = resolve_data_dir(args.data_dir.as_deref());
    if !args.no_download {
        fetch_missing(&dir, &args.mirrors)?;
    }
    let mnist = load_mnist(&dir).map_err(|e| Failure::usage(format!("{e:#}")))?;
    cfg.validate_for(mnist.train.labels.len())
        .map_err(Failure::config)?;
    let mut reporter = PrintReporter;
    let spec = ModelSpec::simple_cnn();
    let mut model = match init {
        Some(ckpt) => Model::with_params(b, spec, &ckpt.params),
        None => Model::new(b, spec, cfg.seed),
    }
    .map_err(run_failure)?;
    // Resuming: the momentum too, and the steps already taken, which must end an epoch.
    let steps_per_epoch = mnist.train.labels.len().div_ceil(cfg.batch_size);
    let steps_before = (cfg.first_epoch - 1) * steps_per_epoch;
    if cfg.first_epoch > 1 {
        let ckpt = init.expect("resuming has a checkpoint");
        let state = ckpt.train_state().expect("checked when loaded");
        if state.step != steps_before {
            return Err(Failure::usage(format!(
                "the checkpoint was saved after step {} of epoch {}, not at the end of an epoch \
                 of {steps_per_epoch} steps at batch size {}: resume needs the same batch size \
                 and a checkpoint from the end of an epoch",
                state.step,
                state.epoch + 1,
                cfg.batch_size
            )));
        }
        if let Some(velocity) = &ckpt.velocity {
            model.set_velocity(b, velocity).map_err(run_failure)?;
        }
        println!(
            "Resuming at epoch {} (seed {}, lr {}, momentum {})",
            cfg.first_epoch, cfg.seed, cfg.lr, cfg.momentum
        );
    }
    let state = |epoch: usize, step: usize| TrainState {
        epoch,
        step,
        seed: cfg.seed,
        lr: cfg.lr,
        momentum: cfg.momentum,
    };
    let save = |m: &Model<B>, path: &Path, epoch: usize, step: usize| {
        checkpoint::save_model(b, m, path, args.save_optimizer, Some(&state(epoch, step)))?;
        println!(
            "Saved checkpoint {} (epoch {epoch}, step {step})",
            path.display()
        );
        Ok(())
    };
    let mut on_epoch = |epoch: usize, step: usize, m: &Model<B>| -> cnn_gpu::Result<()> {
        match (&args.save, args.save_every) {
            // The last epoch's checkpoint is written after training.
            (Some(path), Some(n)) if epoch.is_multiple_of(n) && epoch < cfg.epochs => {
                save(m, path, epoch, steps_before + step)
            }
            _ => Ok(()),
        }
    };
    let summary = train::train_with(
        b,
        &mut model,
        &mnist.train,
        &mnist.test,
        cfg,
        &mut reporter,
        &mut on_epoch,
    )
    .map_err(run_failure)?;
    if let Some(path) = &args.save {
        let epoch = summary.fit.epochs.last().map_or(0, |e| e.epoch);
        let step = steps_before + summary.fit.epochs.iter().map(|e| e.steps).sum::<usize>();
        save(&model, path, epoch, step).map_err(run_failure)?;
    }
    println!(
        "Steady state: {:.0} images/s (the first step, with start-up, took {:.3} s)",
        summary.fit.steady_images_per_sec, summary.fit.first_step_seconds
    );
    Ok(())
}

/// Downloads the MNIST files missing from `dir`, if any, showing progress on stderr. Files that
/// are present but unusable are left to `load_mnist` to report.
fn fetch_missing(dir: &Path, mirror_flags: &[String]) -> Result<(), Failure> {
    let missing = missing_files(dir);
    if missing.is_empty() {
        return Ok(());
    }
    let files: Vec<(&str, &str)> = MNIST_SHA256
        .iter()
        .filter(|(name, _)| missing.contains(name))
        .copied()
        .collect();
    let mirrors = resolve_mirrors(mirror_flags);
    eprintln!(
        "MNIST not found in {}: downloading {} \
         (--no-download forbids this; --mirror URL or {MIRROR_ENV} picks a mirror)",
        dir.display(),
        missing.join(", ")
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
struct BarProgress {
    bar: Option<indicatif::ProgressBar>,
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
struct LineProgress;

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

fn megabytes(bytes: u64) -> String {
    format!("{:.1} MB", bytes as f64 / 1e6)
}

fn info_command() {
    let (adapters, pick) = list_adapters();
    if adapters.is_empty() {
        println!(
            "No GPU adapter found (Vulkan, Metal or DX12). `--backend auto` trains on the CPU."
        );
        println!("On Linux without a GPU, Mesa's lavapipe provides one: apt-get install mesa-vulkan-drivers");
        return;
    }
    for a in &adapters {
        let mark = match (Some(a.index) == pick, a.device_type == "Cpu") {
            (true, false) => "  <- picked by --backend auto",
            // See open_backend: auto trains on the CPU backend rather than a software adapter.
            (true, true) => {
                "  <- picked by --backend gpu (auto uses the CPU backend: software adapter)"
            }
            _ => "",
        };
        println!("[{}] {}{mark}", a.index, a.name);
        println!(
            "    backend {}, type {}, driver {} {}",
            a.backend, a.device_type, a.driver, a.driver_info
        );
        println!(
            "    max buffer {} MiB, max storage binding {} MiB, max workgroups per dimension {}, \
             workgroup memory {} KiB",
            a.max_buffer_size >> 20,
            a.max_storage_buffer_binding_size >> 20,
            a.max_compute_workgroups_per_dimension,
            a.max_compute_workgroup_storage_size >> 10
        );
        println!(
            "    timestamp queries: {}, inside passes: {}",
            yes_no(a.timestamp_query),
            yes_no(a.timestamp_query_inside_passes)
        );
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
