//! `cnn-gpu train`.

use std::cell::Cell;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use clap::{Args, ValueEnum};

use cnn_gpu::backend::Backend;
use cnn_gpu::checkpoint::{self, Checkpoint, TrainState};
use cnn_gpu::data::augment::Augment;
use cnn_gpu::metrics::{MetricsReporter, MetricsWriter};
use cnn_gpu::model::{Model, ModelSpec};
use cnn_gpu::optim::{LrSchedule, OptimConfig, Optimizer};
use cnn_gpu::train::{
    self, Event, Flow, LossWindow, MidEpoch, PrintReporter, Reporter, TrainConfig,
};

use super::fault::{Fault, FAULT_ENV};
use super::{open_backend, run_failure, Chosen, DataArgs, DeviceArgs, Failure};

#[derive(Args, Debug)]
pub(crate) struct TrainArgs {
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
    #[command(flatten)]
    pub(crate) data: DataArgs,
    #[arg(long, default_value_t = 5)]
    pub(crate) epochs: usize,
    #[arg(long, default_value_t = 64)]
    pub(crate) batch_size: usize,
    /// Learning rate (the schedule's starting value).
    #[arg(long, default_value_t = 0.001, allow_negative_numbers = true)]
    pub(crate) lr: f32,
    #[command(flatten)]
    pub(crate) optim: OptimArgs,
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
    /// Also save the optimizer state (SGD: optimizer.<name>.momentum_buffer; Adam:
    /// optimizer.<name>.exp_avg and .exp_avg_sq): PyTorch's strict load_state_dict then needs
    /// them filtered out.
    #[arg(long, requires = "save")]
    pub(crate) save_optimizer: bool,
    /// Start from the weights of this checkpoint instead of the seeded initialisation.
    #[arg(long, value_name = "PATH", conflicts_with = "resume")]
    pub(crate) init: Option<PathBuf>,
    /// Continue the run this checkpoint stopped (one saved with --save-optimizer at the end of
    /// an epoch, or by Ctrl-C inside one): its weights, optimizer state, seed, lr and optimizer
    /// settings, from the next step on, with the same batches and losses as an uninterrupted run.
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum OptimizerChoice {
    /// SGD with momentum (--momentum, --nesterov, --weight-decay as L2).
    Sgd,
    /// Adam (--beta1, --beta2, --eps, --weight-decay as L2).
    Adam,
    /// AdamW: Adam with decoupled weight decay.
    Adamw,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ScheduleChoice {
    /// The same lr throughout.
    Constant,
    /// Multiply the lr by --lr-gamma every --lr-step-size epochs (StepLR).
    Step,
    /// Cosine annealing from the lr to 0 over the whole run, per step (CosineAnnealingLR).
    Cosine,
}

/// The optimizer flags: they become one [`OptimConfig`].
#[derive(Args, Debug)]
pub(crate) struct OptimArgs {
    /// The update rule.
    #[arg(long, value_enum, default_value_t = OptimizerChoice::Sgd)]
    pub(crate) optimizer: OptimizerChoice,
    /// SGD momentum, in [0, 1) [default: 0.9].
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) momentum: Option<f32>,
    /// SGD: Nesterov momentum.
    #[arg(long)]
    pub(crate) nesterov: bool,
    /// Weight decay, ≥ 0: L2 added to the gradient for SGD and Adam, decoupled for AdamW
    /// [default: 0 for SGD and Adam, 0.01 for AdamW, as PyTorch].
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) weight_decay: Option<f32>,
    /// Adam/AdamW β1, in [0, 1) [default: 0.9].
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) beta1: Option<f64>,
    /// Adam/AdamW β2, in [0, 1) [default: 0.999].
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) beta2: Option<f64>,
    /// Adam/AdamW ε, > 0 [default: 1e-8].
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) eps: Option<f32>,
    /// How the learning rate changes over the run.
    #[arg(long, value_enum, default_value_t = ScheduleChoice::Constant)]
    pub(crate) lr_schedule: ScheduleChoice,
    /// --lr-schedule step: decay every this many epochs [default: 1].
    #[arg(long, value_name = "EPOCHS")]
    pub(crate) lr_step_size: Option<usize>,
    /// --lr-schedule step: the decay factor, in (0, 1] [default: 0.1].
    #[arg(long, allow_negative_numbers = true)]
    pub(crate) lr_gamma: Option<f32>,
    /// Ramp the lr up linearly over the first N steps: step s (from 0) uses (s + 1)/N of it.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub(crate) warmup_steps: usize,
    /// Clip the gradients to this global L2 norm before each update (clip_grad_norm_).
    #[arg(long, value_name = "MAX", allow_negative_numbers = true)]
    pub(crate) clip_grad_norm: Option<f32>,
}

impl OptimArgs {
    /// The configuration the flags ask for. A flag of another optimizer or schedule is refused
    /// (exit 2) rather than ignored.
    pub(crate) fn config(&self) -> Result<OptimConfig, Failure> {
        let only = |flag: &str, given: bool, what: &str| {
            if given {
                Err(Failure::usage(format!("{flag} applies to {what} only")))
            } else {
                Ok(())
            }
        };
        let adam = |decoupled: bool, default_wd: f32| Optimizer::Adam {
            beta1: self.beta1.unwrap_or(0.9),
            beta2: self.beta2.unwrap_or(0.999),
            eps: self.eps.unwrap_or(1e-8),
            weight_decay: self.weight_decay.unwrap_or(default_wd),
            decoupled,
        };
        let optimizer = match self.optimizer {
            OptimizerChoice::Sgd => {
                let adam_flag = [
                    ("--beta1", self.beta1.is_some()),
                    ("--beta2", self.beta2.is_some()),
                    ("--eps", self.eps.is_some()),
                ];
                for (flag, given) in adam_flag {
                    only(flag, given, "--optimizer adam and adamw")?;
                }
                Optimizer::Sgd {
                    momentum: self.momentum.unwrap_or(0.9),
                    nesterov: self.nesterov,
                    weight_decay: self.weight_decay.unwrap_or(0.0),
                }
            }
            choice => {
                only("--momentum", self.momentum.is_some(), "--optimizer sgd")?;
                only("--nesterov", self.nesterov, "--optimizer sgd")?;
                if choice == OptimizerChoice::Adamw {
                    adam(true, 0.01)
                } else {
                    adam(false, 0.0)
                }
            }
        };
        let schedule = match self.lr_schedule {
            ScheduleChoice::Step => LrSchedule::Step {
                epochs: self.lr_step_size.unwrap_or(1),
                gamma: self.lr_gamma.unwrap_or(0.1),
            },
            other => {
                let what = "--lr-schedule step";
                only("--lr-step-size", self.lr_step_size.is_some(), what)?;
                only("--lr-gamma", self.lr_gamma.is_some(), what)?;
                if other == ScheduleChoice::Cosine {
                    LrSchedule::Cosine
                } else {
                    LrSchedule::Constant
                }
            }
        };
        Ok(OptimConfig {
            optimizer,
            schedule,
            warmup_steps: self.warmup_steps,
            clip_grad_norm: self.clip_grad_norm,
        })
    }

    /// Whether any optimizer flag differs from its default (with --resume, they must then
    /// describe the checkpoint's settings).
    fn any_given(&self) -> bool {
        self.optimizer != OptimizerChoice::Sgd
            || self.momentum.is_some()
            || self.nesterov
            || self.weight_decay.is_some()
            || self.beta1.is_some()
            || self.beta2.is_some()
            || self.eps.is_some()
            || self.lr_schedule != ScheduleChoice::Constant
            || self.lr_step_size.is_some()
            || self.lr_gamma.is_some()
            || self.warmup_steps != 0
            || self.clip_grad_norm.is_some()
    }
}

pub(crate) fn train_command(args: &TrainArgs, fault: Option<Fault>) -> Result<(), Failure> {
    // Refuse bad values before any work.
    let resume = match &args.resume {
        Some(path) => Some(load_resume(path)?),
        None => None,
    };
    let mut cfg = TrainConfig {
        epochs: args.epochs,
        batch_size: args.batch_size,
        lr: args.lr,
        optim: args.optim.config()?,
        seed: args.seed,
        log_interval: args.log_interval,
        max_steps: args.max_steps,
        eval_every_epoch: args.metrics.is_some(),
        augment: args.augment(),
        shuffle: !args.no_shuffle,
        ..TrainConfig::default()
    };
    if let Some((_, state)) = &resume {
        // The command Ctrl-C prints repeats the run's flags: the same settings are fine,
        // others would silently change the run.
        if args.optim.any_given() && cfg.optim != state.optim {
            return Err(Failure::usage(format!(
                "the optimizer flags given with --resume ({}) differ from the checkpoint's ({}): \
                 drop them to continue with the checkpoint's settings",
                cfg.optim.describe(),
                state.optim.describe()
            )));
        }
        cfg.seed = state.seed;
        cfg.lr = state.lr;
        cfg.optim = state.optim;
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
        (Some(path), _) => {
            Some(checkpoint::load(path, &ModelSpec::simple_cnn()).map_err(Failure::usage)?)
        }
        (None, Some((ckpt, _))) => Some(ckpt),
        (None, None) => None,
    };
    // The backend is chosen once, here: a fault later in the run ends it with an error (the
    // last checkpoint intact), never with a switch to another backend.
    match open_backend(&args.device)? {
        Chosen::Cpu(b) => {
            if let Some(f @ Fault::DeviceLost { .. }) = fault {
                return Err(Failure::usage(format!(
                    "{FAULT_ENV}={f:?} needs the GPU backend"
                )));
            }
            train_on(&b, None, args, &cfg, init.as_ref(), fault, &|| {})
        }
        Chosen::Gpu(b) => {
            let adapter = b.describe();
            train_on(&b, Some(adapter), args, &cfg, init.as_ref(), fault, &|| {
                b.lose_device_for_test()
            })
        }
    }
}

/// A checkpoint to resume from: it must hold the training state and the optimizer state that
/// its optimizer needs (momentum buffers, or Adam's two moments).
pub(crate) fn load_resume(path: &Path) -> Result<(Checkpoint, TrainState), Failure> {
    let ckpt = checkpoint::load(path, &ModelSpec::simple_cnn()).map_err(Failure::usage)?;
    let state = ckpt.train_state();
    match (&ckpt.velocity, state) {
        (Some(_), Some(state))
            if state.optim.optimizer.has_second_moment() == ckpt.exp_avg_sq.is_some() =>
        {
            Ok((ckpt, state))
        }
        _ => Err(Failure::usage(format!(
            "{}: no optimizer state to resume from (save it with --save-optimizer), or use \
             --init to start from its weights",
            path.display()
        ))),
    }
}

/// Where a resumed run starts inside `cfg.first_epoch`: None at its start, else the steps of
/// it done and the loss window, from the checkpoint's state. Refuses a checkpoint whose steps
/// do not fit epochs of `steps_per_epoch` (another batch size or dataset).
fn resume_point(
    state: &TrainState,
    train_images: usize,
    batch_size: usize,
) -> Result<Option<MidEpoch>, Failure> {
    let then = (state.batch_size, state.train_images);
    if then.0.is_some_and(|b| b != batch_size) || then.1.is_some_and(|n| n != train_images) {
        return Err(Failure::usage(format!(
            "the checkpoint was trained at batch size {} on {} images, this run has batch size \
             {batch_size} and {train_images} images: resume with the batch size and data it \
             was trained with",
            then.0.unwrap_or(batch_size),
            then.1.unwrap_or(train_images),
        )));
    }
    let steps_per_epoch = train_images.div_ceil(batch_size);
    let in_epoch = state
        .step
        .checked_sub(state.epoch * steps_per_epoch)
        .filter(|&s| s < steps_per_epoch);
    match (in_epoch, state.loss_window) {
        (Some(0), _) => Ok(None),
        (Some(steps_done), Some(window)) => Ok(Some(MidEpoch { steps_done, window })),
        (Some(_), None) => Err(Failure::usage(format!(
            "the checkpoint was saved inside epoch {} without its loss window (it was not \
             written by an interrupted run); resume from one saved at the end of an epoch",
            state.epoch + 1
        ))),
        (None, _) => Err(Failure::usage(format!(
            "the checkpoint's {} steps do not fit {} epochs of {steps_per_epoch} steps at batch \
             size {batch_size}: resume with the batch size and dataset it was trained with",
            state.step, state.epoch
        ))),
    }
}

/// Loads MNIST, trains SimpleCNN on `b` (the GPU `adapter`, or the CPU when None) and prints
/// the results. Ctrl-C stops it after the step in progress (saving a checkpoint to resume
/// from, with --save); a second Ctrl-C exits at once. `lose_device` serves the test-only
/// device-lost fault.
pub(crate) fn train_on<B: Backend>(
    b: &B,
    adapter: Option<String>,
    args: &TrainArgs,
    cfg: &TrainConfig,
    init: Option<&Checkpoint>,
    fault: Option<Fault>,
    lose_device: &dyn Fn(),
) -> Result<(), Failure> {
    let mnist = args.data.load()?;
    cfg.validate_for(mnist.train.labels.len())
        .map_err(Failure::config)?;
    let mut cfg = cfg.clone();
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
    let spec = ModelSpec::simple_cnn();
    let mut model = match init {
        Some(ckpt) => Model::with_params(b, spec, &ckpt.params),
        None => Model::new(b, spec, cfg.seed),
    }
    .map_err(run_failure)?;
    // Resuming: the momentum too, and where in the epoch the checkpoint stopped.
    let steps_per_epoch = mnist.train.labels.len().div_ceil(cfg.batch_size);
    let mut steps_before = (cfg.first_epoch - 1) * steps_per_epoch;
    if let Some(state) = init
        .filter(|_| args.resume.is_some())
        .and_then(|c| c.train_state())
    {
        cfg.resume_within = resume_point(&state, mnist.train.len(), cfg.batch_size)?;
        steps_before = state.step;
        let ckpt = init.expect("resuming has a checkpoint");
        if let Some(velocity) = &ckpt.velocity {
            model.set_velocity(b, velocity).map_err(run_failure)?;
        }
        if let Some(v) = &ckpt.exp_avg_sq {
            model.set_exp_avg_sq(b, v).map_err(run_failure)?;
        }
        let at = match &cfg.resume_within {
            Some(mid) => format!("epoch {}, step {}", cfg.first_epoch, mid.steps_done + 1),
            None => format!("epoch {}", cfg.first_epoch),
        };
        println!(
            "Resuming at {at} (seed {}, lr {}, {})",
            cfg.seed,
            cfg.lr,
            cfg.optim.describe()
        );
    }
    let state = |epoch: usize, step: usize, loss_window: Option<LossWindow>| TrainState {
        epoch,
        step,
        seed: cfg.seed,
        lr: cfg.lr,
        optim: cfg.optim,
        loss_window,
        batch_size: Some(cfg.batch_size),
        train_images: Some(mnist.train.len()),
    };
    // What was last saved, for the message when the run fails later.
    let saved: Cell<Option<(usize, usize)>> = Cell::new(None);
    let save = |m: &Model<B>, path: &Path, st: TrainState, optimizer: bool| {
        checkpoint::save_model(b, m, path, optimizer, Some(&st))?;
        println!(
            "Saved checkpoint {} (epoch {}, step {})",
            path.display(),
            st.epoch,
            st.step
        );
        saved.set(Some((st.epoch, st.step)));
        cnn_gpu::Result::Ok(())
    };
    let interrupted = Arc::new(AtomicBool::new(false));
    watch_ctrl_c(&interrupted)?;
    let mut hook = |event: &Event, m: &Model<B>| -> cnn_gpu::Result<Flow> {
        match *event {
            Event::Step { total, .. } => {
                if let Some(f) = &fault {
                    f.after_step(total, &interrupted, lose_device);
                }
            }
            Event::EpochEnd { epoch, total } => match (&args.save, args.save_every) {
                // The last epoch's checkpoint is written after training.
                (Some(path), Some(n)) if epoch.is_multiple_of(n) && epoch < cfg.epochs => {
                    let st = state(epoch, steps_before + total, None);
                    save(m, path, st, args.save_optimizer)?
                }
                _ => {}
            },
            Event::Stopped { epoch, at } => {
                if let Some(path) = &args.save {
                    // Everything resuming needs: the momentum whatever --save-optimizer says.
                    let done = (epoch - 1) * steps_per_epoch + at.steps_done;
                    let st = if at.steps_done == steps_per_epoch {
                        state(epoch, done, None)
                    } else {
                        state(epoch - 1, done, Some(at.window))
                    };
                    save(m, path, st, true)?;
                }
            }
        }
        Ok(if interrupted.load(Ordering::SeqCst) {
            Flow::Stop
        } else {
            Flow::Continue
        })
    };
    let mut run = |reporter: &mut dyn Reporter| {
        train::train_with(
            b,
            &mut model,
            &mnist.train,
            &mnist.test,
            &cfg,
            reporter,
            &mut hook,
        )
    };
    let result = match metrics_writer {
        Some(writer) => {
            let kind = if adapter.is_some() { "gpu" } else { "cpu" };
            let mut reporter = MetricsReporter::new(printer, writer, kind, adapter);
            let result = run(&mut reporter);
            // Close the metrics file whatever happened: an interrupted run keeps its lines.
            let finished = reporter.finish();
            if result.is_ok() {
                finished.map_err(Failure::other)?;
            }
            result
        }
        None => run(&mut { printer }),
    };
    let summary = match result {
        Ok(summary) => summary,
        Err(cnn_gpu::Error::Interrupted { epoch, step }) => {
            let message = match &args.save {
                Some(path) => format!(
                    "interrupted after step {step} of epoch {epoch}; saved {} with the \
                     optimizer state; resume with: {}",
                    path.display(),
                    resume_command(path)
                ),
                None => format!(
                    "interrupted after step {step} of epoch {epoch}; nothing saved (train \
                     with --save PATH to be able to resume)"
                ),
            };
            return Err(Failure { code: 130, message });
        }
        Err(e) => {
            let mut f = run_failure(e);
            if let (Some(path), Some((epoch, step))) = (&args.save, saved.get()) {
                f.message.push_str(&format!(
                    "; the last checkpoint, {} (epoch {epoch}, step {step}), is intact",
                    path.display()
                ));
            }
            return Err(f);
        }
    };

    if let Some(path) = &args.save {
        let epoch = summary.fit.epochs.last().map_or(0, |e| e.epoch);
        let step = steps_before + summary.fit.epochs.iter().map(|e| e.steps).sum::<usize>();
        save(&model, path, state(epoch, step, None), args.save_optimizer).map_err(run_failure)?;
    }
    println!(
        "Steady state: {:.0} images/s (the first step, with start-up, took {:.3} s)",
        summary.fit.steady_images_per_sec, summary.fit.first_step_seconds
    );
    Ok(())
}

/// Ctrl-C (SIGINT) sets `flag`, which the training hook checks after every step; a second
/// Ctrl-C, with the flag already set, exits at once with code 130 (registered first, so it
/// sees the flag before the first signal sets it).
fn watch_ctrl_c(flag: &Arc<AtomicBool>) -> Result<(), Failure> {
    use signal_hook::consts::SIGINT;
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, Arc::clone(flag))
        .and_then(|_| signal_hook::flag::register(SIGINT, Arc::clone(flag)))
        .map(|_| ())
        .map_err(|e| Failure::other(format!("cannot install the Ctrl-C handler: {e}")))
}

/// The command line that resumes this run from `checkpoint`: this one without --init or
/// --resume, plus `--resume checkpoint`, quoted for a POSIX shell.
fn resume_command(checkpoint: &Path) -> String {
    let mut words: Vec<String> = Vec::new();
    // args_os: std::env::args panics on an argument that is not UTF-8.
    let mut args = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    words.extend(args.next());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--init" | "--resume" => {
                args.next();
            }
            _ if a.starts_with("--init=") || a.starts_with("--resume=") => {}
            _ => words.push(a),
        }
    }
    words.push("--resume".into());
    words.push(checkpoint.display().to_string());
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn words_are_quoted_for_a_posix_shell_only_when_needed() {
        assert_eq!(shell_quote("--data-dir=/a/b_c.st"), "--data-dir=/a/b_c.st");
        assert_eq!(shell_quote("my run.st"), "'my run.st'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
