//! Where a run starts — from the seed, from a checkpoint's weights, or resuming the run a
//! checkpoint stopped — and the training state its checkpoints record, so that a resumed run
//! goes on at the next step with the batches, dropout masks and loss lines of an uninterrupted
//! one. Writing the checkpoints is the caller's (the command line saves files; see
//! [`crate::checkpoint::model_to_bytes`] for bytes).

use crate::backend::Backend;
use crate::checkpoint::{self, Checkpoint, TrainState};
use crate::data::Dataset;
use crate::model::{Model, ModelSpec};
use crate::{Error, Result};

use super::epochs;
use super::eval::evaluate_until;
use super::report::{FitSummary, TrainSummary};
use super::step::ResidentDataset;
use super::{Event, FitOptions, Flow, LossWindow, MidEpoch, TrainConfig};

/// A checkpoint a run can be continued from: it holds the training state and the optimiser
/// state its optimiser needs (momentum buffers, or Adam's two moments).
pub struct Resume {
    checkpoint: Checkpoint,
    state: TrainState,
}

impl Resume {
    /// None when `checkpoint` lacks its training state or its optimiser state (its weights
    /// can still start a run: [`Start::Weights`]).
    pub fn new(checkpoint: Checkpoint) -> Option<Self> {
        let state = checkpoint.train_state()?;
        let complete = checkpoint.velocity.is_some()
            && state.optim.optimizer.has_second_moment() == checkpoint.exp_avg_sq.is_some();
        complete.then_some(Resume { checkpoint, state })
    }

    /// Where the checkpoint's run stood.
    pub fn state(&self) -> &TrainState {
        &self.state
    }

    /// Sets `cfg` to continue the checkpoint's run: its seed, learning rate and optimiser
    /// settings, from the epoch after its last complete one.
    pub fn configure(&self, cfg: &mut TrainConfig) {
        cfg.seed = self.state.seed;
        cfg.lr = self.state.lr;
        cfg.optim = self.state.optim;
        cfg.first_epoch = self.state.epoch + 1;
    }

    /// Where the resumed run starts inside its first epoch: None at its start, else the steps
    /// of it done and the loss window. Refuses a checkpoint whose steps do not fit epochs of
    /// `train_images` at `batch_size` (another batch size or dataset).
    fn within(&self, train_images: usize, batch_size: usize) -> Result<Option<MidEpoch>> {
        let state = &self.state;
        let bad = |msg: String| Err(Error::InvalidParams(msg));
        let then = (state.batch_size, state.train_images);
        if then.0.is_some_and(|b| b != batch_size) || then.1.is_some_and(|n| n != train_images) {
            return bad(format!(
                "the checkpoint was trained at batch size {} on {} images, this run has batch \
                 size {batch_size} and {train_images} images: resume with the batch size and \
                 data it was trained with",
                then.0.unwrap_or(batch_size),
                then.1.unwrap_or(train_images),
            ));
        }
        let steps_per_epoch = train_images.div_ceil(batch_size);
        let in_epoch = state
            .step
            .checked_sub(state.epoch * steps_per_epoch)
            .filter(|&s| s < steps_per_epoch);
        match (in_epoch, state.loss_window) {
            (Some(0), _) => Ok(None),
            (Some(steps_done), Some(window)) => Ok(Some(MidEpoch { steps_done, window })),
            (Some(_), None) => bad(format!(
                "the checkpoint was saved inside epoch {} without its loss window (it was not \
                 written by an interrupted run); resume from one saved at the end of an epoch",
                state.epoch + 1
            )),
            (None, _) => bad(format!(
                "the checkpoint's {} steps do not fit {} epochs of {steps_per_epoch} steps at \
                 batch size {batch_size}: resume with the batch size and dataset it was trained \
                 with",
                state.step, state.epoch
            )),
        }
    }
}

/// What a run starts from.
pub enum Start {
    /// The parameters the seed draws.
    Fresh,
    /// A checkpoint's weights (and batch-norm statistics); the optimiser state starts at zero.
    Weights(Checkpoint),
    /// The run a checkpoint stopped, continued ([`Resume::configure`] gives its settings).
    Resume(Resume),
}

/// A training run checked and ready: its configuration (validated for the training set, once),
/// its training and test sets, and where it starts. It builds the model to train
/// ([`Self::model`]), runs ([`Self::run`]) and says what a checkpoint should record at each
/// point of the run ([`Self::state_at_epoch_end`] …).
pub struct Session<'d> {
    cfg: TrainConfig,
    train_set: &'d Dataset,
    test_set: &'d Dataset,
    start: Start,
    steps_per_epoch: usize,
    /// The run's steps before this session's first: earlier epochs, and a resumed epoch's.
    steps_before: usize,
}

impl<'d> Session<'d> {
    /// Checks `cfg` for `train_set` ([`TrainConfig::validate_for`]: the run's one check) and,
    /// resuming, finds where in its epoch the checkpoint stopped; refuses a checkpoint trained
    /// at another batch size or on another training set.
    pub fn new(
        mut cfg: TrainConfig,
        train_set: &'d Dataset,
        test_set: &'d Dataset,
        start: Start,
    ) -> Result<Self> {
        let n = train_set.len();
        cfg.validate_for(n)?;
        let steps_per_epoch = n.div_ceil(cfg.batch_size);
        let mut steps_before = (cfg.first_epoch - 1) * steps_per_epoch;
        if let Start::Resume(resume) = &start {
            cfg.resume_within = resume.within(n, cfg.batch_size)?;
            if let Some(mid) = &cfg.resume_within {
                mid.check(steps_per_epoch)?;
            }
            steps_before = resume.state.step;
        }
        Ok(Session {
            cfg,
            train_set,
            test_set,
            start,
            steps_per_epoch,
            steps_before,
        })
    }

    /// The configuration the run trains with (a resumed one's `resume_within` filled in).
    pub fn config(&self) -> &TrainConfig {
        &self.cfg
    }

    /// Whether the run continues a checkpoint's.
    pub fn resuming(&self) -> bool {
        matches!(self.start, Start::Resume(_))
    }

    /// The model of `spec` the run starts from, on `b`: drawn from the seed, or the checkpoint's
    /// weights (a resumed run's with its optimiser state). Its dropout masks follow the seed and
    /// the step, so a resumed run draws the same ones.
    pub fn model<B: Backend>(&self, b: &B, spec: ModelSpec) -> Result<Model<B>> {
        let mut model = match &self.start {
            Start::Fresh => Model::new(b, spec, self.cfg.seed)?,
            Start::Weights(ckpt) => checkpoint::build_model(b, spec, ckpt)?,
            Start::Resume(resume) => {
                let ckpt = &resume.checkpoint;
                let mut model = checkpoint::build_model(b, spec, ckpt)?;
                if let Some(velocity) = &ckpt.velocity {
                    model.set_velocity(b, velocity)?;
                }
                if let Some(v) = &ckpt.exp_avg_sq {
                    model.set_exp_avg_sq(b, v)?;
                }
                model
            }
        };
        model.set_rng(self.cfg.seed, self.steps_before as u64);
        Ok(model)
    }

    /// Uploads both sets, trains `model` for the run's epochs (evaluating it on the test set
    /// after each when `eval_every_epoch` is set) and evaluates it on the test set.
    pub fn run<B: Backend>(
        &self,
        b: &B,
        model: &mut Model<B>,
        opts: FitOptions<'_, B>,
    ) -> Result<TrainSummary> {
        let classes = model.classes();
        let train = ResidentDataset::upload(b, self.train_set, classes, "train")?;
        let test = ResidentDataset::upload(b, self.test_set, classes, "test")?;
        opts.with(|rep, hook| {
            let fit = epochs::run(b, model, &train, Some(&test), &self.cfg, rep, hook)?;
            let model = &*model;
            let mut asked = || Ok(hook(&Event::Evaluating { epoch: None }, model)? == Flow::Stop);
            let bs = self.cfg.eval_batch_size;
            let Some(eval) = evaluate_until(b, model, &test, bs, &mut asked)? else {
                let last = fit.epochs.last();
                return Err(Error::Interrupted {
                    epoch: last.map_or(0, |e| e.epoch),
                    step: last.map_or(0, |e| e.steps),
                });
            };
            rep.eval(&eval);
            Ok(TrainSummary { fit, eval })
        })
    }

    /// The number, over the whole run (a resumed run's earlier steps included), of the step
    /// this session's [`super::Event::Step`] counts as `total`.
    pub fn run_step(&self, total: usize) -> usize {
        self.steps_before + total
    }

    /// Whether this session's step `total` is the run's last (of its last epoch, or the
    /// `max_steps`th).
    pub fn is_last_step(&self, total: usize) -> bool {
        self.cfg.max_steps == Some(total)
            || self.run_step(total) == self.cfg.epochs * self.steps_per_epoch
    }

    /// The state to record after `epoch` ended at [`super::Event::EpochEnd`], `total` steps
    /// into this session.
    pub fn state_at_epoch_end(&self, epoch: usize, total: usize) -> TrainState {
        self.state(epoch, self.steps_before + total, None)
    }

    /// The state to record at [`super::Event::Stopped`] or [`super::Event::Checkpoint`]:
    /// everything resuming needs, the loss window of a point inside the epoch included.
    pub fn state_at(&self, epoch: usize, at: &MidEpoch) -> TrainState {
        let done = (epoch - 1) * self.steps_per_epoch + at.steps_done;
        if at.steps_done == self.steps_per_epoch {
            self.state(epoch, done, None)
        } else {
            self.state(epoch - 1, done, Some(at.window))
        }
    }

    /// The state to record at the end of the run, which measured `fit`.
    pub fn state_at_end(&self, fit: &FitSummary) -> TrainState {
        let epoch = fit.epochs.last().map_or(0, |e| e.epoch);
        let step = self.steps_before + fit.epochs.iter().map(|e| e.steps).sum::<usize>();
        self.state(epoch, step, None)
    }

    /// The training state after `step` steps in all, with `epoch` epochs complete.
    fn state(&self, epoch: usize, step: usize, loss_window: Option<LossWindow>) -> TrainState {
        TrainState {
            epoch,
            step,
            seed: self.cfg.seed,
            lr: self.cfg.lr,
            optim: self.cfg.optim,
            loss_window,
            batch_size: Some(self.cfg.batch_size),
            train_images: Some(self.train_set.len()),
        }
    }
}
