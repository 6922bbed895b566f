//! Training, generic over the backend: the configuration, the epoch loop and its steps,
//! evaluation, reporting, and starting from (or resuming) a checkpoint.
//!
//! The datasets are uploaded once ([`ResidentDataset`]); each epoch writes one permutation into
//! a resident buffer, and each step writes its learning rate (and Adam's bias corrections) into a
//! small resident buffer and records ops: gather → forward → loss → backward → update → flush.
//! The loss is accumulated on the backend and read back only at log intervals (and once per
//! epoch, to time it); a NaN or infinite loss stops the run with [`Error::Diverged`], naming the
//! first such step, which the backend records as it goes. Printing goes through a [`Reporter`],
//! so the math never prints; a [`Hook`] sees every step and epoch, to save or to stop.
//!
//! Two ways in: [`fit`] trains on a dataset already resident on the backend; a [`Session`]
//! (or [`train`], its plain form) uploads a training and a test set, starts fresh, from a
//! checkpoint's weights or resuming one ([`Start`]), trains and evaluates.
//!
//! The files: `step` (the resident dataset, one step's ops, the limits), `epochs` (the loop),
//! `eval` (evaluation and inference), `report` (what a run reports), `resume` (where a run
//! starts and the training state its checkpoints record).

use crate::backend::Backend;
use crate::data::augment::Augment;
use crate::data::Dataset;
use crate::model::Model;
use crate::optim::{OptimConfig, RunLength};
use crate::{Error, Result};

mod epochs;
mod eval;
mod report;
mod resume;
mod step;
mod stepwise;

/// The running loss window, as checkpoints record it.
pub use crate::checkpoint::LossWindow;
pub use eval::{
    classify, evaluate, evaluate_detailed, forward_all, forward_batches, record_correct, softmax,
    upload_unlabelled, EvalReport, EvalResult,
};
pub use report::{EpochStats, FitSummary, LossRecord, QuietReporter, Reporter, TrainSummary};
pub use resume::{Resume, Session, Start};
pub use step::{max_batch, ResidentDataset};
pub use stepwise::{Recorded, Stepwise};

/// Hyper-parameters of a training run. [`Default`] gives the tutorial's values.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    /// The base learning rate (the schedule in `optim` scales it per step).
    pub lr: f32,
    /// The optimiser, learning-rate schedule and gradient clipping.
    pub optim: OptimConfig,
    /// Seeds the parameter initialisation and every epoch's shuffle.
    pub seed: u64,
    /// Print the mean loss every this many batches.
    pub log_interval: usize,
    /// Batch size of the evaluation pass (any size works; the remainder gets its own batch).
    pub eval_batch_size: usize,
    /// Stop after this many training steps in all (None: run every epoch to its end).
    pub max_steps: Option<usize>,
    /// The first epoch to run (1-based): above 1 when resuming a run whose earlier epochs a
    /// checkpoint holds. The shuffles depend only on the seed and the epoch, so a resumed run
    /// sees the same batches as an uninterrupted one.
    pub first_epoch: usize,
    /// Evaluate on the test set after every epoch and report it
    /// ([`Reporter::epoch_eval`]); off by default (it costs a pass over the test set).
    pub eval_every_epoch: bool,
    /// Resample every training image through a random affine transform, drawn per image and
    /// epoch from these ranges ([`Augment`]); None trains on the images as they are.
    pub augment: Option<Augment>,
    /// Visit the training set in a new random order every epoch (PyTorch's `shuffle=True`);
    /// false keeps the file's order.
    pub shuffle: bool,
    /// Resuming inside `first_epoch`: the steps of it already done and the running loss
    /// window, so the run goes on at the next step with the loss lines of an uninterrupted one.
    pub resume_within: Option<MidEpoch>,
}

/// Where a run stands inside an epoch it stopped in (see [`Event::Stopped`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MidEpoch {
    /// Steps of the epoch done (at least 1, fewer than the epoch has).
    pub steps_done: usize,
    pub window: LossWindow,
}

impl MidEpoch {
    /// Refuses a point that is not inside an epoch of `steps` steps, or a window holding more
    /// steps than were done.
    fn check(&self, steps: usize) -> Result<()> {
        if self.steps_done == 0 || self.steps_done >= steps || self.window.steps > self.steps_done {
            return Err(Error::InvalidParams(format!(
                "cannot resume after step {} of an epoch of {steps} steps with a loss \
                 window of {} steps",
                self.steps_done, self.window.steps
            )));
        }
        Ok(())
    }
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 5,
            batch_size: 64,
            lr: 0.001,
            optim: OptimConfig::default(),
            seed: 0,
            log_interval: 100,
            eval_batch_size: 1000,
            max_steps: None,
            first_epoch: 1,
            eval_every_epoch: false,
            augment: None,
            shuffle: true,
            resume_within: None,
        }
    }
}

impl TrainConfig {
    /// Refuses values that make no sense, with a one-line message naming the value.
    pub fn validate(&self) -> Result<()> {
        let bad = |msg: String| Err(Error::InvalidParams(msg));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return bad("batch size must be at least 1".into());
        }
        if self.first_epoch == 0 || self.first_epoch > self.epochs {
            return bad(format!(
                "epochs {}..={} is empty: the run already has {} epochs",
                self.first_epoch,
                self.epochs,
                self.first_epoch.saturating_sub(1)
            ));
        }
        if self.max_steps == Some(0) {
            return bad("max steps must be at least 1".into());
        }
        if self.eval_batch_size == 0 {
            return bad("evaluation batch size must be at least 1".into());
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!(
                "learning rate must be a positive finite number, got {}",
                self.lr
            ));
        }
        self.optim.validate()?;
        if self.log_interval == 0 {
            return bad("log interval must be at least 1".into());
        }
        if let Some(aug) = &self.augment {
            aug.validate()?;
        }
        Ok(())
    }

    /// [`Self::validate`] plus the checks that need the training set's size: the one check of
    /// a run, made by [`fit`] or [`Session::new`] before any work.
    pub fn validate_for(&self, train_len: usize) -> Result<()> {
        self.validate()?;
        if train_len == 0 {
            return Err(Error::InvalidParams("the training set is empty".into()));
        }
        if self.batch_size > train_len {
            return Err(Error::InvalidParams(format!(
                "batch size {} is larger than the training set ({train_len} images)",
                self.batch_size
            )));
        }
        if let Some(mid) = &self.resume_within {
            mid.check(train_len.div_ceil(self.batch_size))?;
        }
        self.optim.validate_for(self.run_length(train_len))
    }

    /// The length of the whole run on a training set of `train_len` images: every step of
    /// `epochs` epochs, those before `first_epoch` included. `max_steps` cuts a run short
    /// without changing its schedule, so a run stopped early and resumed follows the same lr.
    pub fn run_length(&self, train_len: usize) -> RunLength {
        let steps_per_epoch = train_len.div_ceil(self.batch_size.max(1));
        RunLength {
            steps_per_epoch,
            total_steps: self.epochs * steps_per_epoch,
        }
    }
}

/// What the loop tells its [`Hook`] about.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// A step was recorded (not waited for): `step` is 1-based within `epoch`, `total` counts
    /// this run's steps. Returning [`Flow::Stop`] ends training after it; [`Flow::Checkpoint`]
    /// asks for an [`Event::Checkpoint`] now.
    Step {
        epoch: usize,
        step: usize,
        total: usize,
    },
    /// Where the run stands after the step the hook answered with [`Flow::Checkpoint`]: what
    /// resuming needs, as [`Event::Stopped`] gives it (the model holds the parameters and
    /// momentum). Reading the loss window back waits for the step.
    Checkpoint { epoch: usize, at: MidEpoch },
    /// An epoch ended (the last, and one cut short by `max_steps`, included) after `total`
    /// steps of this run; `last` when it is the run's last epoch (the final evaluation, if
    /// any, follows).
    EpochEnd {
        epoch: usize,
        total: usize,
        last: bool,
    },
    /// A batch of an evaluation on the test set was recorded: the one after `epoch` (Some),
    /// or the final one (None). Returning [`Flow::Stop`] abandons it: after an epoch the run
    /// stops as at the epoch's end ([`Event::Stopped`] follows); the final one returns
    /// [`Error::Interrupted`].
    Evaluating { epoch: Option<usize> },
    /// Training stops inside `epoch` because the hook asked (or the reporter failed:
    /// [`Reporter::failure`]); `at` is what resuming needs (the model holds the parameters and
    /// momentum). Training then returns [`Error::Interrupted`] (or the reporter's error). When
    /// the stop falls on an epoch's last step, `EpochEnd` comes first and `at.steps_done` is
    /// the epoch's step count.
    Stopped { epoch: usize, at: MidEpoch },
}

/// Whether training goes on after a [`Hook`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    /// After [`Event::Step`]: hand the hook an [`Event::Checkpoint`], then go on (elsewhere it
    /// means [`Flow::Continue`]).
    Checkpoint,
    Stop,
}

/// Called by the loop after every step and epoch with the model, e.g. to save a
/// checkpoint or to stop on Ctrl-C. An error from it stops training and is returned.
pub type Hook<'a, B> = dyn FnMut(&Event, &Model<B>) -> Result<Flow> + 'a;

/// Who a run talks to as it goes, for [`fit`] and [`Session::run`]: a [`Reporter`] (none:
/// quiet) and a [`Hook`] (none: the run goes to its end).
pub struct FitOptions<'a, B: Backend> {
    reporter: Option<&'a mut dyn Reporter>,
    hook: Option<&'a mut Hook<'a, B>>,
}

impl<B: Backend> Default for FitOptions<'_, B> {
    fn default() -> Self {
        Self::quiet()
    }
}

impl<'a, B: Backend> FitOptions<'a, B> {
    /// Reports nothing, and never stops early.
    pub fn quiet() -> Self {
        FitOptions {
            reporter: None,
            hook: None,
        }
    }

    /// Reports to `reporter`.
    pub fn reporting(reporter: &'a mut dyn Reporter) -> Self {
        FitOptions {
            reporter: Some(reporter),
            hook: None,
        }
    }

    /// Calls `hook` after every step and epoch (see [`Event`]).
    pub fn hook(self, hook: &'a mut Hook<'a, B>) -> Self {
        FitOptions {
            hook: Some(hook),
            ..self
        }
    }

    /// Calls `f` with the reporter and the hook, standing in for the missing ones.
    fn with<T>(self, f: impl FnOnce(&mut dyn Reporter, &mut Hook<'_, B>) -> T) -> T {
        let mut quiet = QuietReporter;
        let mut go_on = |_: &Event, _: &Model<B>| Ok(Flow::Continue);
        let reporter: &mut dyn Reporter = match self.reporter {
            Some(r) => r,
            None => &mut quiet,
        };
        let hook: &mut Hook<'_, B> = match self.hook {
            Some(h) => h,
            None => &mut go_on,
        };
        f(reporter, hook)
    }
}

/// Trains `model` on a resident dataset for the epochs of `cfg` (checked first, with
/// [`TrainConfig::validate_for`]). Every batch is used, the last one partial when the set does
/// not divide (as PyTorch's DataLoader with drop_last=False). With `cfg.resume_within`, the
/// first epoch starts at the step after the ones done, with the loss window restored, so it
/// prints what an uninterrupted run prints. A stop asked by the hook returns
/// [`Error::Interrupted`] after [`Event::Stopped`].
pub fn fit<B: Backend>(
    b: &B,
    model: &mut Model<B>,
    data: &ResidentDataset<B>,
    cfg: &TrainConfig,
    opts: FitOptions<'_, B>,
) -> Result<FitSummary> {
    cfg.validate_for(data.len)?;
    opts.with(|rep, hook| epochs::run(b, model, data, None, cfg, rep, hook))
}

/// Trains `model` on `train_set` from where it stands and evaluates it on `test_set`: a
/// [`Session`] started [`Start::Fresh`] with the caller's model.
pub fn train<B: Backend>(
    b: &B,
    model: &mut Model<B>,
    train_set: &Dataset,
    test_set: &Dataset,
    cfg: &TrainConfig,
    opts: FitOptions<'_, B>,
) -> Result<TrainSummary> {
    Session::new(cfg.clone(), train_set, test_set, Start::Fresh)?.run(b, model, opts)
}
