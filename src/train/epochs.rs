//! The epoch loop: every step of every epoch of a run, with its reports and its hook calls.
//!
//! Each epoch writes its permutation, then records its steps ([`Trainer::step`]); the loss is
//! accumulated on the backend and read back only at log intervals (and once per epoch, to time
//! it). After every step and epoch the hook may stop the run ([`Event`]).

use web_time::Instant;

use crate::backend::Backend;
use crate::model::Model;
use crate::{Error, Result};

use super::eval::evaluate_detailed_until;
use super::report::{EpochStats, FitSummary, LossRecord, Reporter};
use super::step::{ResidentDataset, Trainer};
use super::{Event, Flow, Hook, LossWindow, MidEpoch, TrainConfig};

/// Trains `model` on `data` for the epochs of `cfg`, which the caller has validated for it,
/// evaluating on `test` after each epoch when `cfg.eval_every_epoch` is set. Every batch is
/// used, the last one partial when the set does not divide (as PyTorch's DataLoader with
/// drop_last=False).
pub(super) fn run<B: Backend>(
    b: &B,
    model: &mut Model<B>,
    data: &ResidentDataset<B>,
    test: Option<&ResidentDataset<B>>,
    cfg: &TrainConfig,
    rep: &mut dyn Reporter,
    hook: &mut Hook<'_, B>,
) -> Result<FitSummary> {
    let mut trainer = Trainer::new(b, model, data, cfg)?;
    rep.start(&b.describe(), data.len, model.num_params());
    let mut tally = Tally {
        summary: FitSummary {
            epochs: Vec::new(),
            losses: Vec::new(),
            first_step_seconds: 0.0,
            steady_images_per_sec: 0.0,
        },
        steady_seconds: 0.0,
        steady_images: 0,
        total_steps: 0,
    };
    let mut looper = Epochs {
        b,
        model,
        trainer: &mut trainer,
        test,
        rep,
        hook,
        tally: &mut tally,
    };
    for epoch in cfg.first_epoch..=cfg.epochs {
        let done = looper.steps(epoch)?;
        looper.end(epoch, done)?;
        if cfg.max_steps == Some(looper.tally.total_steps) {
            break;
        }
    }
    let mut summary = tally.summary;
    summary.steady_images_per_sec = if tally.steady_seconds > 0.0 {
        tally.steady_images as f64 / tally.steady_seconds
    } else {
        0.0
    };
    Ok(summary)
}

/// What the loop has counted so far.
struct Tally {
    summary: FitSummary,
    /// Wall time and images of every step but the run's first.
    steady_seconds: f64,
    steady_images: usize,
    /// Steps of this run (a resumed run's earlier ones not included).
    total_steps: usize,
}

/// How an epoch's steps went, for [`Epochs::end`].
struct EpochSteps {
    started: Instant,
    /// The step the epoch started at (after a resumed epoch's done ones), and the steps done.
    first_step: usize,
    steps_done: usize,
    images: usize,
    /// The window the epoch started with (a resumed one's), the steps in the running window,
    /// and the sum of the losses read back so far this epoch.
    window: LossWindow,
    in_interval: usize,
    epoch_loss: f64,
    /// The hook asked to stop.
    stop: bool,
    /// The reporter failed ([`Reporter::failure`]): the run stops and returns this.
    failure: Option<Error>,
}

impl EpochSteps {
    /// Where the run stands after these steps, with `sum` the running window's loss sum.
    fn at(&self, sum: f32) -> MidEpoch {
        MidEpoch {
            steps_done: self.first_step + self.steps_done,
            window: LossWindow {
                sum,
                steps: self.in_interval,
            },
        }
    }
}

/// The loop's borrowed parts, so each epoch's two halves are methods.
struct Epochs<'r, 'd, B: Backend> {
    b: &'r B,
    model: &'r mut Model<B>,
    trainer: &'r mut Trainer<'d, B>,
    test: Option<&'r ResidentDataset<B>>,
    rep: &'r mut dyn Reporter,
    hook: &'r mut Hook<'r, B>,
    tally: &'r mut Tally,
}

impl<B: Backend> Epochs<'_, '_, B> {
    /// Runs `epoch`'s steps, until its end, `max_steps`, or the hook's stop.
    fn steps(&mut self, epoch: usize) -> Result<EpochSteps> {
        let (b, cfg, steps) = (self.b, self.trainer.cfg, self.trainer.steps);
        let started = Instant::now();
        self.trainer.begin_epoch(b, epoch)?;
        let (first_step, window) = match &cfg.resume_within {
            Some(mid) if epoch == cfg.first_epoch => (mid.steps_done, mid.window),
            _ => (0, LossWindow { sum: 0.0, steps: 0 }),
        };
        self.trainer.write_loss(b, window.sum)?;
        self.rep.epoch_start(epoch, steps, (epoch - 1) * steps);
        let mut done = EpochSteps {
            started,
            first_step,
            steps_done: 0,
            images: 0,
            window,
            // A resumed epoch's window counts the restored steps.
            in_interval: window.steps,
            epoch_loss: 0.0,
            stop: false,
            failure: None,
        };
        for step in first_step..steps {
            // The step's 1-based number over the whole run (resumed runs included).
            let t = (epoch - 1) * steps + step + 1;
            let batch = self.trainer.step(b, self.model, t, step * cfg.batch_size)?;
            done.in_interval += 1;
            done.images += batch;
            done.steps_done += 1;
            self.tally.total_steps += 1;
            self.rep.step(epoch, step + 1, batch);

            if epoch == cfg.first_epoch && step == first_step {
                self.trainer.read_loss(b)?; // waits for it
                self.tally.summary.first_step_seconds = started.elapsed().as_secs_f64();
                self.rep.first_step(self.tally.summary.first_step_seconds);
            }
            if (step + 1) % cfg.log_interval == 0 {
                let sum = self.trainer.read_loss(b)?;
                done.epoch_loss += sum as f64;
                let rec = LossRecord {
                    epoch,
                    batch: step + 1,
                    loss: sum / done.in_interval as f32,
                };
                self.rep.loss(&rec);
                self.tally.summary.losses.push(rec);
                self.trainer.zero_loss(b)?;
                done.in_interval = 0;
            }
            let event = Event::Step {
                epoch,
                step: step + 1,
                total: self.tally.total_steps,
            };
            match (self.hook)(&event, self.model)? {
                Flow::Stop => done.stop = true,
                Flow::Checkpoint => {
                    let at = self.standing(&done)?;
                    (self.hook)(&Event::Checkpoint { epoch, at }, self.model)?;
                }
                Flow::Continue => {}
            }
            if let Some(e) = self.rep.failure() {
                done.failure = Some(e);
                done.stop = true;
            }
            if done.stop || cfg.max_steps == Some(self.tally.total_steps) {
                break;
            }
        }
        Ok(done)
    }

    /// Where the run stands after the steps of `done`: the steps of the epoch done and the
    /// running loss window, read back (which waits for the last step).
    fn standing(&self, done: &EpochSteps) -> Result<MidEpoch> {
        Ok(done.at(self.trainer.read_loss(self.b)?))
    }

    /// Ends `epoch`: times it, reports it (with its evaluation) unless a stop cut it short, and
    /// hands a stop to the hook, returning [`Error::Interrupted`].
    fn end(&mut self, epoch: usize, done: EpochSteps) -> Result<()> {
        let (b, cfg, steps) = (self.b, self.trainer.cfg, self.trainer.steps);
        // Waits for the epoch's last step before timing it and before the hook saves anything;
        // the window is what a stop saves.
        let window_sum = self.trainer.read_loss(b)?;
        let epoch_loss = done.epoch_loss + window_sum as f64;
        let seconds = done.started.elapsed().as_secs_f64();
        let stats = EpochStats {
            epoch,
            steps: done.steps_done,
            images: done.images,
            seconds,
            images_per_sec: done.images as f64 / seconds,
            loss: epoch_loss / (done.steps_done + done.window.steps).max(1) as f64,
        };
        let tally = &mut *self.tally;
        if epoch == cfg.first_epoch {
            tally.steady_seconds += seconds - tally.summary.first_step_seconds;
            tally.steady_images += done.images - self.trainer.full_batch().min(done.images);
        } else {
            tally.steady_seconds += seconds;
            tally.steady_images += done.images;
        }
        let at = done.at(window_sum);
        let mut stop = done.stop;
        let mut failure = done.failure;
        if at.steps_done == steps || !stop {
            self.rep.epoch(&stats);
            tally.summary.epochs.push(stats);
            if let (true, Some(test)) = (cfg.eval_every_epoch, self.test) {
                let (hook, model) = (&mut *self.hook, &*self.model);
                let mut asked = || {
                    let event = Event::Evaluating { epoch: Some(epoch) };
                    Ok(hook(&event, model)? == Flow::Stop)
                };
                match evaluate_detailed_until(b, model, test, cfg.eval_batch_size, &mut asked)? {
                    Some(report) => self.rep.epoch_eval(epoch, &report),
                    None => stop = true,
                }
            }
            failure = failure.or_else(|| self.rep.failure());
            let event = Event::EpochEnd {
                epoch,
                total: tally.total_steps,
                last: epoch == cfg.epochs || cfg.max_steps == Some(tally.total_steps),
            };
            if (self.hook)(&event, self.model)? == Flow::Stop || failure.is_some() {
                stop = true;
            }
        }
        if stop {
            (self.hook)(&Event::Stopped { epoch, at }, self.model)?;
            return Err(failure.unwrap_or(Error::Interrupted {
                epoch,
                step: at.steps_done,
            }));
        }
        Ok(())
    }
}
