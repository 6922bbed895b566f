//! Training one step at a time, for hosts that cannot block on a readback (a browser): each
//! call records work and returns, the caller reads back the buffers named here however it can
//! (the web awaits `GpuBackend::read_f32_async`) and schedules the next call. The steps, the
//! shuffles and the loss lines are [`super::fit`]'s: the same batches, the same losses.

use std::mem::ManuallyDrop;

use crate::backend::Backend;
use crate::model::Model;
use crate::{Error, Result};

use super::step::{ResidentDataset, Trainer};
use super::TrainConfig;

/// What [`Stepwise::step`] recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// The step's epoch and its 1-based batch within it.
    pub epoch: usize,
    pub batch: usize,
    /// Images in the batch.
    pub images: usize,
    /// A loss line is due after this step (every `log_interval` batches): read
    /// [`Stepwise::loss_sum`] and call [`Stepwise::loss_line`].
    pub loss_line: bool,
    /// The step ended its epoch.
    pub epoch_end: bool,
}

/// A run driven step by step. Owns its dataset and configuration (the trainer borrows them).
pub struct Stepwise<B: Backend + 'static> {
    // Borrows `*data` and `*cfg`: dropped first (see `Drop`).
    trainer: ManuallyDrop<Trainer<'static, B>>,
    data: *mut ResidentDataset<B>,
    cfg: *mut TrainConfig,
    /// The epoch of the next step and its 0-based step within it.
    epoch: usize,
    step: usize,
    /// Steps whose losses the running sum holds.
    in_interval: usize,
    done: usize,
}

impl<B: Backend + 'static> Stepwise<B> {
    /// Checks `cfg` for `data` and `model` and allocates the run (as [`super::fit`] does). A
    /// resumed epoch (`cfg.resume_within`) is not supported here.
    pub fn new(
        b: &B,
        model: &Model<B>,
        data: ResidentDataset<B>,
        cfg: TrainConfig,
    ) -> Result<Self> {
        cfg.validate_for(data.len)?;
        if cfg.resume_within.is_some() {
            return Err(Error::InvalidParams(
                "step-by-step training starts at an epoch's beginning".into(),
            ));
        }
        let (epoch, data, cfg) = (
            cfg.first_epoch,
            Box::into_raw(Box::new(data)),
            Box::into_raw(Box::new(cfg)),
        );
        // SAFETY: `data` and `cfg` are live heap allocations that nothing else mutates or
        // frees until `Drop`, which drops the trainer (their only borrower) first.
        let trainer = match Trainer::new(b, model, unsafe { &*data }, unsafe { &*cfg }) {
            Ok(t) => t,
            Err(e) => {
                // SAFETY: made by `Box::into_raw` above and borrowed by nothing now.
                unsafe {
                    drop(Box::from_raw(data));
                    drop(Box::from_raw(cfg));
                }
                return Err(e);
            }
        };
        Ok(Stepwise {
            trainer: ManuallyDrop::new(trainer),
            data,
            cfg,
            epoch,
            step: 0,
            in_interval: 0,
            done: 0,
        })
    }

    /// The run's configuration.
    pub fn config(&self) -> &TrainConfig {
        // SAFETY: see `new`.
        unsafe { &*self.cfg }
    }

    /// Steps per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        self.trainer.steps
    }

    /// Steps of the whole run, and those recorded so far.
    pub fn total_steps(&self) -> usize {
        let cfg = self.config();
        let all = (cfg.epochs + 1 - cfg.first_epoch) * self.trainer.steps;
        cfg.max_steps.map_or(all, |m| m.min(all))
    }
    pub fn steps_done(&self) -> usize {
        self.done
    }

    /// Records the run's next step (with its epoch's shuffle before its first); None once the
    /// run is over.
    pub fn step(&mut self, b: &B, model: &mut Model<B>) -> Result<Option<Recorded>> {
        if self.done >= self.total_steps() {
            return Ok(None);
        }
        let (epoch, step, steps) = (self.epoch, self.step, self.trainer.steps);
        if step == 0 {
            self.trainer.begin_epoch(b, epoch)?;
            self.trainer.write_loss(b, 0.0)?;
            self.in_interval = 0;
        }
        let bs = self.config().batch_size;
        let log_interval = self.config().log_interval;
        let t = (epoch - 1) * steps + step + 1;
        let images = self.trainer.step(b, model, t, step * bs)?;
        self.in_interval += 1;
        self.done += 1;
        let epoch_end = step + 1 == steps;
        if epoch_end {
            self.epoch += 1;
            self.step = 0;
        } else {
            self.step += 1;
        }
        Ok(Some(Recorded {
            epoch,
            batch: step + 1,
            images,
            loss_line: (step + 1) % log_interval == 0,
            epoch_end,
        }))
    }

    /// The one-word running loss sum on the backend: the losses of the steps since the last
    /// loss line.
    pub fn loss_sum(&self) -> &B::Buffer {
        self.trainer.loss_sum()
    }

    /// Turns `sum` (just read from [`Self::loss_sum`]) into the loss line's mean loss and
    /// starts the next window. A non-finite sum stops the run.
    pub fn loss_line(&mut self, b: &B, sum: f32) -> Result<f32> {
        if !sum.is_finite() {
            return Err(Error::InvalidParams(format!(
                "the loss became {} by step {}: the run diverged; lower the learning rate",
                if sum.is_nan() { "NaN" } else { "infinite" },
                self.done
            )));
        }
        let mean = sum / self.in_interval.max(1) as f32;
        self.trainer.zero_loss(b)?;
        self.in_interval = 0;
        Ok(mean)
    }
}

impl<B: Backend + 'static> Drop for Stepwise<B> {
    fn drop(&mut self) {
        // SAFETY: the trainer is dropped once, here, before what it borrows; the boxes came
        // from `Box::into_raw` in `new` and are freed once.
        unsafe {
            ManuallyDrop::drop(&mut self.trainer);
            drop(Box::from_raw(self.data));
            drop(Box::from_raw(self.cfg));
        }
    }
}
