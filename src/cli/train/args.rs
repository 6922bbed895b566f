//! `cnn-gpu train`'s flags, and the [`TrainConfig`] they ask for.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use cnn_gpu::data::augment::Augment;
use cnn_gpu::optim::{LrSchedule, OptimConfig, Optimizer};
use cnn_gpu::train::TrainConfig;

use crate::cli::{DataArgs, DeviceArgs, Failure, ModelArgs};

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
    /// Also write the --save checkpoint, resumable (with the optimizer state), every N
    /// training steps (counted over the whole run): a run killed outright (SIGKILL, a power
    /// cut) loses at most N steps.
    #[arg(long, value_name = "N", requires = "save")]
    pub(crate) save_every_steps: Option<usize>,
    /// Also write the --save checkpoint, resumable, after the first step that ends M minutes
    /// (a decimal, e.g. 0.5) after the last save.
    #[arg(
        long,
        value_name = "M",
        requires = "save",
        allow_negative_numbers = true
    )]
    pub(crate) save_every_minutes: Option<f64>,
    /// Stop after the first step that ends this long after the start (e.g. 90m, 1h30m, 45s),
    /// saving the --save checkpoint to resume from, and exit 75: set it a few minutes inside a
    /// scheduler's limit.
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true)]
    pub(crate) time_limit: Option<std::time::Duration>,
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

/// `--time-limit DURATION`: humantime's units (s, m, h, d …), more than zero.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s)
        .map_err(|e| format!("{e}: expected a duration such as 90m, 1h30m or 45s"))?;
    if d.is_zero() {
        return Err("the time limit must be more than zero".into());
    }
    Ok(d)
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
    /// The run the flags ask for (a resumed run then takes the checkpoint's settings).
    pub(super) fn config(&self) -> Result<TrainConfig, Failure> {
        Ok(TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            optim: self.optim.config()?,
            seed: self.seed,
            log_interval: self.log_interval,
            max_steps: self.max_steps,
            eval_every_epoch: self.metrics.is_some(),
            augment: self.augment(),
            shuffle: !self.no_shuffle,
            ..TrainConfig::default()
        })
    }

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
    pub(super) fn any_given(&self) -> bool {
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
