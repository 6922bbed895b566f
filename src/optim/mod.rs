//! The optimiser of a training run as one value, [`OptimConfig`]: the update rule
//! ([`Optimizer`]: SGD or Adam/AdamW with their hyper-parameters), the learning-rate schedule
//! ([`LrSchedule`] with an optional linear warm-up) and gradient clipping by global norm.
//!
//! The math runs on the backend ([`crate::backend::Backend::sgd_step`], `adam_step`,
//! `sum_squares`); this module only computes what changes per step on the host — the learning
//! rate and Adam's bias corrections, [`OptimConfig::scalars`] — which the trainer writes into a
//! small resident buffer once per step. It also turns the configuration into checkpoint metadata
//! and back, so that a resumed run continues with the same optimiser. The optimiser's state
//! (momentum and second-moment buffers) and the update of every parameter are [`OptimState`].

mod metadata;
mod schedule;
mod state;

pub use schedule::{LrSchedule, RunLength};
pub use state::{OptimState, Parameter, Whole};

use crate::backend::{Adam, Sgd};
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
    /// Refuses impossible values, with a one-line [`Error::Setting`] naming the value.
    pub fn validate(&self) -> Result<()> {
        match self.optimizer {
            Optimizer::Sgd {
                momentum,
                nesterov,
                weight_decay,
            } => {
                in_unit("momentum", momentum)?;
                non_negative("weight_decay", weight_decay)?;
                if nesterov && momentum == 0.0 {
                    return Err(Error::setting("nesterov", "needs a momentum above 0"));
                }
            }
            Optimizer::Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                ..
            } => {
                in_unit("beta1", beta1)?;
                in_unit("beta2", beta2)?;
                positive_finite("eps", eps)?;
                non_negative("weight_decay", weight_decay)?;
            }
        }
        if let LrSchedule::Step { epochs, gamma } = self.schedule {
            if epochs == 0 {
                return Err(Error::setting(
                    "lr_step_size",
                    "must be at least 1 (epochs)",
                ));
            }
            if !(gamma.is_finite() && gamma > 0.0 && gamma <= 1.0) {
                return Err(Error::setting(
                    "lr_gamma",
                    format!("must be in (0, 1], got {gamma}"),
                ));
            }
        }
        if let Some(max) = self.clip_grad_norm {
            positive_finite("clip_grad_norm", max)?;
        }
        Ok(())
    }

    /// [`Self::validate`] plus the checks that need the run's length.
    pub fn validate_for(&self, run: RunLength) -> Result<()> {
        self.validate()?;
        if self.warmup_steps > run.total_steps {
            return Err(Error::setting(
                "warmup_steps",
                format!(
                    "{} is longer than the run ({} steps)",
                    self.warmup_steps, run.total_steps
                ),
            ));
        }
        Ok(())
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
}

fn positive_finite(name: &'static str, v: f32) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::setting(
            name,
            format!("must be a positive finite number, got {v}"),
        ))
    }
}

fn in_unit(name: &'static str, v: impl Into<f64>) -> Result<()> {
    let v = v.into();
    if (0.0..1.0).contains(&v) {
        Ok(())
    } else {
        Err(Error::setting(name, format!("must be in [0, 1), got {v}")))
    }
}

fn non_negative(name: &'static str, v: f32) -> Result<()> {
    if v.is_finite() && v >= 0.0 {
        Ok(())
    } else {
        Err(Error::setting(
            name,
            format!("must be a finite number ≥ 0, got {v}"),
        ))
    }
}
