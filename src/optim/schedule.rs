//! The learning-rate schedules ([`LrSchedule`], with the linear warm-up of
//! [`OptimConfig::warmup_steps`]) and the per-step values the update ops read
//! ([`OptimConfig::scalars`]).

use super::{OptimConfig, Optimizer};
use crate::backend::StepScalars;

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

impl OptimConfig {
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
}
