//! `cnn-gpu train`.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use clap::Args;

use cnn_gpu::backend::Backend;
use cnn_gpu::checkpoint::{self, Checkpoint, TrainState};
use cnn_gpu::data::augment::Augment;
use cnn_gpu::metrics::{MetricsReporter, MetricsWriter};
use cnn_gpu::model::{Model, ModelSpec};
use cnn_gpu::train::{self, PrintReporter, Reporter, TrainConfig};

use super::{open_backend, run_failure, Chosen, DataArgs, DeviceArgs, Failure, ModelArgs};

#[derive(Args, Debug)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    #[arg(long, default_value_t = 5)]
    pub(crate) epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub(crate) batch_size: usize,
    /// Learning rate.
    #[arg(long, default_value_t = 0.001, allow_negative_numbers = true)]
    pub(crate) lr: f32,
    /// SGD momentum, in [0, 1).
    #[arg(long, default_value_t = 0.9, allow_negative_numbers = true)]
    pub(crate) momentum: f32,
    /// Seeds the initial weights and the shuffles.
    #[arg(long, default_value_t = 0)]
    pub(crate) seed: u64,
    /// Print the mean loss every this many batches.
    #[arg(long, default_value_t = 100)]
    pub(crate) log_interval: usize,
    /// Stop after this many training steps in all (a short run), then evaluate.
    #[arg(long)]
    pub(crate) max_steps: Option<usize>,
    /// Write a checkpoint (safetensors, PyTorch state_dict names) here at the end of training.
    #[arg(long, value_name = "PATH")]
    pub(crate) save: Option<PathBuf>,
    /// Also write the --save checkpoint every N epochs.
    #[arg(long, value_name = "N", requires = "save")]
    pub(crate) save_every: Option<usize>,
    /// Also save SGD's momentum buffers (optimizer.<name>.momentum_buffer): PyTorch's strict
    /// load_state_dict then needs them filtered out.
    #[arg(long, requires = "save")]
    pub(crate) save_optimizer: bool,
    /// Start from the weights of this checkpoint instead of the seeded initialisation.
    #[arg(long, value_name = "PATH", conflicts_with = "resume")]
    pub(crate) init: Option<PathBuf>,
    /// Continue the run this checkpoint (saved with --save-optimizer at the end of an epoch)
    /// stopped: its weights, momentum, seed, lr and momentum, from the next epoch on, with the
    /// same batches and losses as an uninterrupted run.
    #[arg(long, value_name = "PATH")]
    pub(crate) resume: Option<PathBuf>,
    /// Write metrics as JSON lines here: one per log interval and one per epoch (with a
    /// test-set evaluation after every epoch). `cnn-gpu plot` draws them.
    #[arg(long, value_name = "PATH")]
    pub(crate) metrics: Option<PathBuf>,
    /// Visit the training images in the files' order every epoch instead of shuffling them.
    #[arg(long)]
    pub(crate) no_shuffle: bool,
    /// Augment the training images: a random rotation, shift and zoom per image and epoch,
    /// applied while each batch is gathered (defaults ±10°, ±2 px, 0.9:1.1; the flags below
    /// change one range each and imply --augment).
    #[arg(long)]
    pub(crate) augment: bool,
    /// Largest rotation, in degrees.
    #[arg(long, value_name = "DEG", allow_negative_numbers = true)]
    pub(crate) augment_rotate: Option<f32>,
    /// Largest shift along each axis, in pixels.
    #[arg(long, value_name = "PX", allow_negative_numbers = true)]
    pub(crate) augment_translate: Option<f32>,
    /// Zoom range, MIN:MAX (e.g. 0.9:1.1).
    #[arg(long, value_name = "MIN:MAX", value_parser = parse_scale)]
    pub(crate) augment_scale: Option<(f32, f32)>,
}

/// `--augment-scale MIN:MAX`.
fn parse_scale(s: &str) -> Result<(f32, f32), String> {
    let bad = || format!("expected MIN:MAX such as 0.9:1.1, got {s:?}");
    let (lo, hi) = s.split_once(':').ok_or_else(bad)?;
    Ok((
        lo.trim().parse().map_err(|_| bad())?,
        hi.trim().parse().map_err(|_| bad())?,
    ))
}

impl TrainArgs {
    /// The augmentation the flags ask for, if any.
    fn augment(&self) -> Option<Augment> {
        let any = self.augment
            || self.augment_rotate.is_some()
            || self.augment_translate.is_some()
            || self.augment_scale.is_some();
        any.then(|| {
            let d = Augment::default();
            let (scale_min, scale_max) = self.augment_scale.unwrap_or((d.scale_min, d.scale_max));
            Augment {
                rotate_deg: self.augment_rotate.unwrap_or(d.rotate_deg),
                translate_px: self.augment_translate.unwrap_or(d.translate_px),
                scale_min,
                scale_max,
            }
        })
    }
}

pub(crate) fn train_command(args: &TrainArgs) -> Result<(), Failure> {
    // Refuse bad values before any work.
    let spec = args
        .model
        .resolve(args.init.as_deref().or(args.resume.as_deref()))?;
    let resume = match &args.resume {
        Some(path) => Some(load_resume(path, &spec)?),
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
        eval_every_epoch: args.metrics.is_some(),
        augment: args.augment(),
        shuffle: !args.no_shuffle,
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
    // A bad checkpoint or metrics path fails now, not after training.
    if let Some(path) = &args.save {
        checkpoint::check_writable(path, "checkpoint").map_err(Failure::usage)?;
    }
    if let Some(path) = &args.metrics {
        checkpoint::check_writable(path, "metrics file").map_err(Failure::usage)?;
    }
    let init = match (&args.init, resume) {
        (Some(path), _) => Some(checkpoint::load(path, &spec).map_err(Failure::usage)?),
        (None, Some((ckpt, _))) => Some(ckpt),
        (None, None) => None,
    };
    match open_backend(&args.device)? {
        Chosen::Cpu(b) => train_on(&b, None, args, spec, &cfg, init.as_ref()),
        Chosen::Gpu(b) => {
            let adapter = b.describe();
            train_on(&b, Some(adapter), args, spec, &cfg, init.as_ref())
        }
    }
}

/// A checkpoint to resume from: it must hold the momentum buffers and the training state.
pub(crate) fn load_resume(
    path: &Path,
    spec: &ModelSpec,
) -> Result<(Checkpoint, TrainState), Failure> {
    let ckpt = checkpoint::load(path, spec).map_err(Failure::usage)?;
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

/// Loads MNIST, trains SimpleCNN on `b` (the GPU `adapter`, or the CPU when None) and prints
/// the results.
pub(crate) fn train_on<B: Backend>(
    b: &B,
    adapter: Option<String>,
    args: &TrainArgs,
    spec: ModelSpec,
    cfg: &TrainConfig,
    init: Option<&Checkpoint>,
) -> Result<(), Failure> {
    let mnist = args.data.load()?;
    cfg.validate_for(mnist.train.labels.len())
        .map_err(Failure::config)?;
    let printer = if std::io::stdout().is_terminal() {
        PrintReporter::with_progress_bar(cfg.batch_size)
    } else {
        PrintReporter::plain()
    };
    // Created only now that the data loaded: a failed start leaves no empty metrics file.
    let metrics_writer = match &args.metrics {
        Some(path) => Some(MetricsWriter::create(path).map_err(Failure::usage)?),
        None => None,
    };
    let mut model = match init {
        Some(ckpt) => Model::from_checkpoint(b, spec, ckpt),
        None => Model::new(b, spec, cfg.seed),
    }
    .map_err(run_failure)?;
    // Resuming: the momentum too, and the steps already taken, which must end an epoch.
    let steps_per_epoch = mnist.train.labels.len().div_ceil(cfg.batch_size);
    let steps_before = (cfg.first_epoch - 1) * steps_per_epoch;
    // Dropout masks follow the seed and the step, so a resumed run draws the same ones.
    model.set_rng(cfg.seed, steps_before as u64);
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
    let mut run = |reporter: &mut dyn Reporter| {
        train::train_with(
            b,
            &mut model,
            &mnist.train,
            &mnist.test,
            cfg,
            reporter,
            &mut on_epoch,
        )
        .map_err(run_failure)
    };
    let summary = match metrics_writer {
        Some(writer) => {
            let kind = if adapter.is_some() { "gpu" } else { "cpu" };
            let mut reporter = MetricsReporter::new(printer, writer, kind, adapter);
            let summary = run(&mut reporter)?;
            reporter.finish().map_err(Failure::other)?;
            summary
        }
        None => run(&mut { printer })?,
    };
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
