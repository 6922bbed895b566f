//! The optimiser of a training run as one value, [`OptimConfig`]: the update rule
//! ([`Optimizer`]: SGD or Adam/AdamW with their hyper-parameters), the learning-rate schedule
//! ([`LrSchedule`] with an optional linear warm-up) and gradient clipping by global norm.
//!
//! The math runs on the backend ([`crate::backend::Backend::sgd_step`], `adam_step`,
//! `sum_squares`); this module only computes what changes per step on the host — the learning
//! rate and Adam's bias corrections, [`OptimConfig::scalars`] — which the trainer writes into a
//! small resident buffer once per step. It also turns the configuration into checkpoint metadata
//! and back, so that `--resume` continues with the same optimiser.

use std::collections::HashMap;

use crate::backend::check::{in_unit, non_negative, positive_finite};
use crate::backend::{Adam, Sgd, StepScalars};
use crate::{Error, Result};

/// The update rule and its hyper-parameters (PyTorch's semantics and defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    /// `torch.optim.SGD(momentum, nesterov, weight_decay)`, no dampening.
    Sgd {
        momentum: f32,
        nesterov: bool,
        /// L2: `weight_decay · param` is added to the gradient.
        weight_decay: f32,
    },
    /// `torch.optim.Adam` (`decoupled` false: L2 added to the gradient) or `torch.optim.AdamW`
    /// (`decoupled` true: the weights decay by `lr · weight_decay` directly).
    Adam {
        /// f64, as PyTorch holds them (see [`Adam`]).
        beta1: f64,
        beta2: f64,
        eps: f32,
        weight_decay: f32,
        decoupled: bool,
    },
}

impl Optimizer {
    /// The tutorial's SGD: momentum 0.9, no Nesterov, no weight decay.
    pub fn sgd(momentum: f32) -> Self {
        Optimizer::Sgd {
            momentum,
            nesterov: false,
            weight_decay: 0.0,
        }
    }

    /// `sgd`, `adam` or `adamw` (the `--optimizer` value).
    pub fn name(&self) -> &'static str {
        match self {
            Optimizer::Sgd { .. } => "sgd",
            Optimizer::Adam {
                decoupled: false, ..
            } => "adam",
            Optimizer::Adam {
                decoupled: true, ..
            } => "adamw",
        }
    }

    /// Whether the update needs a second state buffer per parameter (Adam's exp_avg_sq).
    pub fn has_second_moment(&self) -> bool {
        matches!(self, Optimizer::Adam { .. })
    }

    /// The backend parameters of an SGD update over `len` values (None for Adam).
    pub fn sgd_params(&self, len: usize, max_norm: Option<f32>) -> Option<Sgd> {
        match *self {
            Optimizer::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => Some(Sgd {
                len,
                momentum,
                nesterov,
                weight_decay,
                max_norm,
            }),
            Optimizer::Adam { .. } => None,
        }
    }

    /// The backend parameters of an Adam update over `len` values (None for SGD).
    pub fn adam_params(&self, len: usize, max_norm: Option<f32>) -> Option<Adam> {
        match *self {
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled,
            } => Some(Adam {
                len,
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled,
                max_norm,
            }),
            Optimizer::Sgd { .. } => None,
        }
    }
}

/// How the learning rate changes over the run (multiplied by the warm-up factor).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum LrSchedule {
    Constant,
    /// × `gamma` every `epochs` epochs: `torch.optim.lr_scheduler.StepLR` stepped once per
    /// epoch (step size in epochs).
    Step {
        epochs: usize,
        gamma: f32,
    },
    /// `CosineAnnealingLR(T_max = the run's steps, eta_min = 0)` stepped once per batch:
    /// lr · (1 + cos(π·s / T)) / 2 for 0-based step s.
    Cosine,
}

impl LrSchedule {
    /// `constant`, `step` or `cosine` (the `--lr-schedule` value).
    pub fn name(&self) -> &'static str {
        match self {
            LrSchedule::Constant => "constant",
            LrSchedule::Step { .. } => "step",
            LrSchedule::Cosine => "cosine",
        }
    }
}

/// The length of a run, which the schedules need.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunLength {
    pub steps_per_epoch: usize,
    /// Every step of the run, the epochs before a resume included.
    pub total_steps: usize,
}

/// Everything about how a run updates its parameters. [`Default`] is the tutorial's SGD with
/// momentum 0.9 at a constant learning rate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct OptimConfig {
    pub optimizer: Optimizer,
    pub schedule: LrSchedule,
    /// Linear warm-up: the lr of 0-based step s < N is multiplied by (s + 1) / N
    /// (`LinearLR(start_factor = 1/N, total_iters = N − 1)`), on top of the schedule.
    pub warmup_steps: usize,
    /// Clip the gradients to this global L2 norm first (`clip_grad_norm_`); None: never.
    pub clip_grad_norm: Option<f32>,
}

impl Default for OptimConfig {
    fn default() -> Self {
        OptimConfig {
            optimizer: Optimizer::sgd(0.9),
            schedule: LrSchedule::Constant,
            warmup_steps: 0,
            clip_grad_norm: None,
        }
    }
}

impl OptimConfig {
    /// Refuses impossible values, with a one-line message naming the flag.
    pub fn validate(&self) -> Result<()> {
        match self.optimizer {
            Optimizer::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                in_unit("--momentum", momentum)?;
                non_negative("--weight-decay", weight_decay)?;
                if nesterov && momentum == 0.0 {
                    return Err(Error::InvalidParams(
                        "--nesterov needs a --momentum above 0".into(),
                    ));
                }
            }
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => {
                in_unit("--beta1", beta1)?;
                in_unit("--beta2", beta2)?;
                positive_finite("--eps", eps)?;
                non_negative("--weight-decay", weight_decay)?;
            }
        }
        if let LrSchedule::Step { epochs, gamma } = self.schedule {
            if epochs == 0 {
                return Err(Error::InvalidParams(
                    "--lr-step-size must be at least 1 (epochs)".into(),
                ));
            }
            if !(gamma.is_finite() && gamma > 0.0 && gamma <= 1.0) {
                return Err(Error::InvalidParams(format!(
                    "--lr-gamma must be in (0, 1], got {gamma}"
                )));
            }
        }
        if let Some(max) = self.clip_grad_norm {
            positive_finite("--clip-grad-norm", max)?;
        }
        Ok(())
    }

    /// [`Self::validate`] plus the checks that need the run's length.
    pub fn validate_for(&self, run: RunLength) -> Result<()> {
        self.validate()?;
        if self.warmup_steps > run.total_steps {
            return Err(Error::InvalidParams(format!(
                "--warmup-steps {} is longer than the run ({} steps)",
                self.warmup_steps, run.total_steps
            )));
        }
        Ok(())
    }

    /// The learning rate of 0-based step `s`: `base` × warm-up × schedule, computed in f64 as
    /// PyTorch's schedulers do.
    pub fn lr_at(&self, base: f32, s: usize, run: RunLength) -> f64 {
        let warmup = if s < self.warmup_steps {
            (s + 1) as f64 / self.warmup_steps as f64
        } else {
            1.0
        };
        let schedule = match self.schedule {
            LrSchedule::Constant => 1.0,
            LrSchedule::Step { epochs, gamma } => {
                let period = (epochs * run.steps_per_epoch).max(1);
                (gamma as f64).powi((s / period) as i32)
            }
            LrSchedule::Cosine => {
                let t = run.total_steps.max(1) as f64;
                (1.0 + (std::f64::consts::PI * s as f64 / t).cos()) / 2.0
            }
        };
        base as f64 * warmup * schedule
    }

    /// The per-step values of update `t` (1-based: the optimiser's step count).
    pub fn scalars(&self, base: f32, t: usize, run: RunLength) -> StepScalars {
        let lr = self.lr_at(base, t.saturating_sub(1), run);
        let (step_size, bc2_sqrt) = match self.optimizer {
            Optimizer::Adam { beta1, beta2, .. } => {
                let bc1 = 1.0 - beta1.powi(t as i32);
                let bc2 = 1.0 - beta2.powi(t as i32);
                (lr / bc1, bc2.sqrt())
            }
            Optimizer::Sgd { .. } => (lr, 1.0),
        };
        StepScalars {
            lr: lr as f32,
            step_size: step_size as f32,
            bias_correction2_sqrt: bc2_sqrt as f32,
            step: u32::try_from(t).unwrap_or(u32::MAX),
        }
    }

    /// A one-line summary, e.g. `adam (beta1 0.9, beta2 0.999, eps 0.00000001, weight decay
    /// 0), cosine schedule, 100 warm-up steps, gradients clipped to norm 1`.
    pub fn describe(&self) -> String {
        let mut s = match self.optimizer {
            Optimizer::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => format!(
                "sgd (momentum {momentum}{}, weight decay {weight_decay})",
                if nesterov { ", nesterov" } else { "" }
            ),
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => format!(
                "{} (beta1 {beta1}, beta2 {beta2}, eps {eps}, weight decay {weight_decay})",
                self.optimizer.name()
            ),
        };
        match self.schedule {
            LrSchedule::Constant => {}
            LrSchedule::Step { epochs, gamma } => {
                s += &format!(", lr ×{gamma} every {epochs} epochs")
            }
            LrSchedule::Cosine => s += ", cosine schedule",
        }
        if self.warmup_steps > 0 {
            s += &format!(", {} warm-up steps", self.warmup_steps);
        }
        if let Some(max) = self.clip_grad_norm {
            s += &format!(", gradients clipped to norm {max}");
        }
        s
    }

    /// Adds the configuration to checkpoint metadata: `optimizer`, its hyper-parameters
    /// (`momentum`, `nesterov`, `weight_decay` or `beta1`, `beta2`, `eps`, `weight_decay`),
    /// `lr_schedule` (with `lr_step_size`, `lr_gamma`), `warmup_steps` and, when set,
    /// `clip_grad_norm`.
    pub fn to_metadata(&self, meta: &mut HashMap<String, String>) {
        let mut put = |k: &str, v: String| {
            meta.insert(k.to_string(), v);
        };
        put("optimizer", self.optimizer.name().into());
        match self.optimizer {
            Optimizer::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                put("momentum", momentum.to_string());
                put("nesterov", nesterov.to_string());
                put("weight_decay", weight_decay.to_string());
            }
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => {
                put("beta1", beta1.to_string());
                put("beta2", beta2.to_string());
                put("eps", eps.to_string());
                put("weight_decay", weight_decay.to_string());
            }
        }
        put("lr_schedule", self.schedule.name().into());
        if let LrSchedule::Step { epochs, gamma } = self.schedule {
            put("lr_step_size", epochs.to_string());
            put("lr_gamma", gamma.to_string());
        }
        put("warmup_steps", self.warmup_steps.to_string());
        if let Some(max) = self.clip_grad_norm {
            put("clip_grad_norm", max.to_string());
        }
    }

    /// Reads what [`Self::to_metadata`] wrote. A checkpoint from before optimisers were
    /// configurable has only `momentum`: SGD with that momentum, constant lr. None when a value
    /// is missing or does not parse.
    pub fn from_metadata(meta: &HashMap<String, String>) -> Option<Self> {
        fn get<T: std::str::FromStr>(meta: &HashMap<String, String>, k: &str) -> Option<T> {
            meta.get(k)?.parse().ok()
        }
        let or_default = |k: &str, d: &str| meta.get(k).map_or(d.to_string(), String::clone);
        let optimizer = match or_default("optimizer", "sgd").as_str() {
            "sgd" => Optimizer::Sgd {
                momentum: get(meta, "momentum")?,
                nesterov: or_default("nesterov", "false").parse().ok()?,
                weight_decay: or_default("weight_decay", "0").parse().ok()?,
            },
            name @ ("adam" | "adamw") => Optimizer::Adam {
                beta1: get(meta, "beta1")?,
                beta2: get(meta, "beta2")?,
                eps: get(meta, "eps")?,
                weight_decay: get(meta, "weight_decay")?,
                decoupled: name == "adamw",
            },
            _ => return None,
        };
        let schedule = match or_default("lr_schedule", "constant").as_str() {
            "constant" => LrSchedule::Constant,
            "step" => LrSchedule::Step {
                epochs: get(meta, "lr_step_size")?,
                gamma: get(meta, "lr_gamma")?,
            },
            "cosine" => LrSchedule::Cosine,
            _ => return None,
        };
        Some(OptimConfig {
            optimizer,
            schedule,
            warmup_steps: or_default("warmup_steps", "0").parse().ok()?,
            clip_grad_norm: match meta.get("clip_grad_norm") {
                Some(v) => Some(v.parse().ok()?),
                None => None,
            },
        })
    }
}
