//! The optimiser configuration as checkpoint metadata and back, so that a resumed run continues
//! with the same optimiser.

use std::collections::HashMap;

use super::{LrSchedule, OptimConfig, Optimizer};

impl OptimConfig {
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
