//! The training state a checkpoint records in its metadata: where the run stood, with what
//! settings, so that it can be resumed. Plain data that knows no training loop: `train` fills
//! it in when it saves and reads it back when it resumes.

use std::collections::HashMap;

use crate::optim::OptimConfig;

/// Where training stood when a checkpoint was written (saved as metadata).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    /// Epochs completed (1-based count).
    pub epoch: usize,
    /// Training steps completed in all.
    pub step: usize,
    pub seed: u64,
    /// The base learning rate.
    pub lr: f32,
    /// The optimiser, schedule and clipping.
    pub optim: OptimConfig,
    /// The running loss window of a checkpoint written inside an epoch (on Ctrl-C): with it a
    /// resumed run prints the loss lines of an uninterrupted one.
    pub loss_window: Option<LossWindow>,
    /// The batch size and training-set size the steps were counted in (files from before
    /// these were recorded lack them): resuming needs the same ones.
    pub batch_size: Option<usize>,
    pub train_images: Option<usize>,
}

/// The running loss window of a run stopped inside an epoch: the sum of the step losses since
/// its last loss line, and how many steps that sum holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossWindow {
    pub sum: f32,
    pub steps: usize,
}

impl TrainState {
    /// Adds this state to a checkpoint's metadata.
    pub(super) fn to_metadata(&self, meta: &mut HashMap<String, String>) {
        meta.insert("epoch".to_string(), self.epoch.to_string());
        meta.insert("step".to_string(), self.step.to_string());
        meta.insert("seed".to_string(), self.seed.to_string());
        meta.insert("lr".to_string(), self.lr.to_string());
        self.optim.to_metadata(meta);
        for (key, value) in [
            ("batch_size", self.batch_size),
            ("train_images", self.train_images),
        ] {
            if let Some(v) = value {
                meta.insert(key.to_string(), v.to_string());
            }
        }
        if let Some(w) = &self.loss_window {
            // Rust prints an f32 with the fewest digits that parse back to the same value.
            meta.insert("loss_window_sum".to_string(), w.sum.to_string());
            meta.insert("loss_window_steps".to_string(), w.steps.to_string());
        }
    }

    /// The state [`Self::to_metadata`] wrote, when all of it is there and parses.
    pub(super) fn from_metadata(meta: &HashMap<String, String>) -> Option<TrainState> {
        let get = |k: &str| meta.get(k);
        // Absent: Some(None); present but not a number: None (the state is unusable).
        let optional = |k: &str| match get(k) {
            None => Some(None),
            Some(v) => v.parse().ok().map(Some),
        };
        let loss_window = match (get("loss_window_sum"), get("loss_window_steps")) {
            (None, None) => None,
            (sum, steps) => Some(LossWindow {
                sum: sum?.parse().ok()?,
                steps: steps?.parse().ok()?,
            }),
        };
        Some(TrainState {
            epoch: get("epoch")?.parse().ok()?,
            step: get("step")?.parse().ok()?,
            seed: get("seed")?.parse().ok()?,
            lr: get("lr")?.parse().ok()?,
            optim: OptimConfig::from_metadata(meta)?,
            loss_window,
            batch_size: optional("batch_size")?,
            train_images: optional("train_images")?,
        })
    }
}
