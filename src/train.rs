//! The training loop and evaluation, generic over the backend.
//!
//! The datasets are uploaded once ([`ResidentDataset`]); each epoch writes one permutation into
//! a resident buffer, and each step writes its learning rate (and Adam's bias corrections) into a
//! small resident buffer and records ops: gather → forward → loss → backward → update → flush.
//! The loss is accumulated on the backend and read back only at log intervals (and once per
//! epoch, to time it); a NaN or infinite loss stops the run with [`Error::Diverged`], naming the
//! first such step, which the backend records as it goes. Printing goes through a [`Reporter`],
//! so the math never prints.

use std::time::Instant;

use crate::backend::{Backend, Gather, GatherAffine, SoftmaxXent, StepScalars, AFFINE_LEN};
use crate::data::augment::Augment;
use crate::data::{shuffled_indices, Dataset};
use crate::model::{Model, ModelSpec, Workspace};
use crate::optim::{OptimConfig, RunLength};
use crate::{Error, Result};

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

/// The running loss window: the sum of the step losses since the last loss line (accumulated
/// on the backend) and how many steps it holds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossWindow {
    pub sum: f32,
    pub steps: usize,
}

/// Where a run stands inside an epoch it stopped in (see [`Event::Stopped`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MidEpoch {
    /// Steps of the epoch done (at least 1, fewer than the epoch has).
    pub steps_done: usize,
    pub window: LossWindow,
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
                "epochs {}..={} is empty: the run already has {} epochs; ask for more with --epochs",
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

    /// [`Self::validate`] plus the checks that need the training set's size.
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
            let steps = train_len.div_ceil(self.batch_size);
            if mid.steps_done == 0 || mid.steps_done >= steps || mid.window.steps > mid.steps_done {
                return Err(Error::InvalidParams(format!(
                    "cannot resume after step {} of an epoch of {steps} steps with a loss \
                     window of {} steps",
                    mid.steps_done, mid.window.steps
                )));
            }
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

/// The mean loss over one log interval.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LossRecord {
    /// 1-based.
    pub epoch: usize,
    /// 1-based index of the last batch of the interval within its epoch.
    pub batch: usize,
    pub loss: f32,
}

/// Wall time of one epoch.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EpochStats {
    /// 1-based.
    pub epoch: usize,
    pub steps: usize,
    pub images: usize,
    pub seconds: f64,
    pub images_per_sec: f64,
    /// The mean training loss over the epoch's steps.
    pub loss: f64,
}

/// The outcome of an evaluation pass.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EvalResult {
    pub correct: usize,
    pub total: usize,
}

impl EvalResult {
    /// Accuracy in percent.
    pub fn accuracy_percent(&self) -> f64 {
        if self.total == 0 {
            0.0
        } else {
            100.0 * self.correct as f64 / self.total as f64
        }
    }
}

/// What [`fit`] measured.
#[derive(Clone, Debug, PartialEq)]
pub struct FitSummary {
    pub epochs: Vec<EpochStats>,
    pub losses: Vec<LossRecord>,
    /// Wall time of the very first step, waited for: it includes start-up work such as shader
    /// builds on the GPU.
    pub first_step_seconds: f64,
    /// Images per second over every step but the first (steady state).
    pub steady_images_per_sec: f64,
}

/// What [`train`] measured: the fit and the final evaluation.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSummary {
    pub fit: FitSummary,
    pub eval: EvalResult,
}

/// Where the loop reports progress. The loop never prints by itself.
pub trait Reporter {
    /// Once, before the first step.
    fn start(&mut self, _backend: &str, _train_images: usize, _params: usize) {}
    /// Before an epoch's first step: its 1-based number, its steps, and the steps the run took
    /// before it (earlier epochs, including those of a resumed run).
    fn epoch_start(&mut self, _epoch: usize, _steps: usize, _steps_before: usize) {}
    /// After each step is recorded (not waited for): its 1-based batch within the epoch and its
    /// images. Cheap; for progress bars.
    fn step(&mut self, _epoch: usize, _batch: usize, _images: usize) {}
    fn loss(&mut self, _rec: &LossRecord) {}
    fn first_step(&mut self, _seconds: f64) {}
    fn epoch(&mut self, _stats: &EpochStats) {}
    /// The test-set evaluation after an epoch, when [`TrainConfig::eval_every_epoch`] is set.
    fn epoch_eval(&mut self, _epoch: usize, _report: &EvalReport) {}
    fn eval(&mut self, _eval: &EvalResult) {}
}

/// Reports nothing (tests, benchmarks).
pub struct QuietReporter;

impl Reporter for QuietReporter {}

/// Prints the tutorial's lines to stdout; with [`PrintReporter::with_progress_bar`], also a
/// progress bar per epoch (images/s and ETA), the lines printed above it.
#[derive(Default)]
pub struct PrintReporter {
    /// Some when a bar is wanted; the bar of the running epoch.
    bar: Option<Option<indicatif::ProgressBar>>,
    batch_size: usize,
}

impl PrintReporter {
    /// The tutorial's plain lines only (logs, pipes, tests).
    pub fn plain() -> Self {
        PrintReporter::default()
    }

    /// Plain lines and a progress bar per epoch: for a terminal.
    pub fn with_progress_bar(batch_size: usize) -> Self {
        PrintReporter {
            bar: Some(None),
            batch_size,
        }
    }

    fn println(&self, line: String) {
        match &self.bar {
            Some(Some(bar)) => bar.println(line),
            _ => println!("{line}"),
        }
    }
}

impl Reporter for PrintReporter {
    fn start(&mut self, backend: &str, train_images: usize, params: usize) {
        self.println(format!(
            "Training on {backend}: {train_images} images, {params} parameters"
        ));
    }
    fn epoch_start(&mut self, epoch: usize, steps: usize, _steps_before: usize) {
        if let Some(slot) = &mut self.bar {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some((steps * self.batch_size) as u64),
                indicatif::ProgressDrawTarget::stdout(),
            )
            .with_style(
                indicatif::ProgressStyle::with_template(
                    "Epoch {prefix} [{bar:30}] {human_pos}/{human_len} images, {per_sec}, ETA {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(epoch.to_string());
            *slot = Some(bar);
        }
    }
    fn step(&mut self, _epoch: usize, _batch: usize, images: usize) {
        if let Some(Some(bar)) = &self.bar {
            bar.inc(images as u64);
        }
    }
    fn loss(&mut self, rec: &LossRecord) {
        self.println(format!(
            "[Epoch {}, Batch {}] loss: {:.3}",
            rec.epoch, rec.batch, rec.loss
        ));
    }
    fn first_step(&mut self, seconds: f64) {
        self.println(format!("First step: {seconds:.3} s (includes start-up)"));
    }
    fn epoch(&mut self, s: &EpochStats) {
        if let Some(slot) = &mut self.bar {
            if let Some(bar) = slot.take() {
                bar.finish_and_clear();
            }
        }
        self.println(format!(
            "Epoch {} done in {:.2} s ({:.0} images/s, mean loss {:.3})",
            s.epoch, s.seconds, s.images_per_sec, s.loss
        ));
    }
    fn epoch_eval(&mut self, epoch: usize, r: &EvalReport) {
        self.println(format!(
            "Epoch {epoch}: test accuracy {:.2}%, test loss {:.4}",
            r.eval.accuracy_percent(),
            r.mean_loss
        ));
    }
    fn eval(&mut self, e: &EvalResult) {
        self.println(format!(
            "Accuracy of the network on the {} test images: {:.2}%",
            e.total,
            e.accuracy_percent()
        ));
    }
}

/// A dataset uploaded to the backend once: packed u8 images and u32 labels.
pub struct ResidentDataset<B: Backend> {
    pub images: B::Buffer,
    pub labels: B::Buffer,
    pub len: usize,
    /// Pixels per image.
    pub image_len: usize,
    /// Pixels per image row.
    pub cols: usize,
}

impl<B: Backend> ResidentDataset<B> {
    /// Uploads `ds`, refusing labels outside `0..classes` (a bad label would index outside the
    /// logits on the device).
    pub fn upload(b: &B, ds: &Dataset, classes: usize, label: &str) -> Result<Self> {
        let image_len = ds.rows * ds.cols;
        let len = ds.labels.len();
        if ds.images.len() != len * image_len {
            return Err(Error::InvalidParams(format!(
                "{label} set has {} pixels for {len} labels of {}×{} images",
                ds.images.len(),
                ds.rows,
                ds.cols
            )));
        }
        if let Some(&bad) = ds.labels.iter().find(|&&l| l as usize >= classes) {
            return Err(Error::InvalidParams(format!(
                "{label} set has label {bad}, but the model has {classes} classes"
            )));
        }
        let labels: Vec<u32> = ds.labels.iter().map(|&l| l as u32).collect();
        Ok(ResidentDataset {
            images: b.upload_u32(&ds.packed_images(), &format!("{label}.images"))?,
            labels: b.upload_u32(&labels, &format!("{label}.labels"))?,
            len,
            image_len,
            cols: ds.cols,
        })
    }
}

/// Builds the model from `spec` (initialised from `cfg.seed`), trains it on `train_set` and
/// evaluates it on `test_set`.
pub fn run<B: Backend>(
    b: &B,
    spec: ModelSpec,
    train_set: &Dataset,
    test_set: &Dataset,
    cfg: &TrainConfig,
    rep: &mut dyn Reporter,
) -> Result<(Model<B>, TrainSummary)> {
    cfg.validate_for(train_set.labels.len())?;
    let mut model = Model::new(b, spec, cfg.seed)?;
    let summary = train(b, &mut model, train_set, test_set, cfg, rep)?;
    Ok((model, summary))
}

/// Uploads both sets, trains `model` for `cfg.epochs` epochs and evaluates it.
pub fn train<B: Backend>(
    b: &B,
    model: &mut Model<B>,
    train_set: &Dataset,
    test_set: &Dataset,
    cfg: &TrainConfig,
    rep: &mut dyn Reporter,
) -> Result<TrainSummary> {
    train_with(b, model, train_set, test_set, cfg, rep, &mut |_, _| {
        Ok(Flow::Continue)
    })
}

/// [`train`] with `hook` called after every step and epoch (see [`fit_with`]).
pub fn train_with<B: Backend>(
    b: &B,
    model: &mut Model<B>,
    train_set: &Dataset,
    test_set: &Dataset,
    cfg: &TrainConfig,
    rep: &mut dyn Reporter,
    hook: &mut Hook<'_, B>,
) -> Result<TrainSummary> {
    cfg.validate_for(train_set.labels.len())?;
    let classes = model.classes();
    let train_res = ResidentDataset::upload(b, train_set, classes, "train")?;
    let test_res = ResidentDataset::upload(b, test_set, classes, "test")?;
    let fit = fit_inner(b, model, &train_res, Some(&test_res), cfg, rep, hook)?;
    let eval = evaluate(b, model, &test_res, cfg.eval_batch_size)?;
    rep.eval(&eval);
    Ok(TrainSummary { fit, eval })
}

/// The largest batch whose every activation buffer fits the backend's buffer limit.
pub fn max_batch<B: Backend>(b: &B, model: &Model<B>) -> usize {
    let per_sample = model
        .shapes()
        .iter()
        .map(|s| s.numel())
        .max()
        .unwrap_or(1)
        .max(1);
    b.max_buffer_len() / per_sample
}

/// Refuses a training batch that would need a buffer larger than the backend can bind.
fn check_batch_fits<B: Backend>(b: &B, model: &Model<B>, batch: usize) -> Result<()> {
    let max = max_batch(b, model);
    if batch > max {
        return Err(Error::Limit(format!(
            "batch size {batch} needs activation buffers larger than {} can bind ({} MiB); \
             the largest batch that fits is {max}",
            b.describe(),
            b.max_buffer_len() / (1 << 18)
        )));
    }
    Ok(())
}

fn check_input(model: &Model<impl Backend>, image_len: usize) -> Result<()> {
    if model.input_len() != image_len {
        return Err(Error::InvalidParams(format!(
            "the model takes {} values per sample but the images have {image_len} pixels",
            model.input_len()
        )));
    }
    Ok(())
}

/// What [`fit_with`] tells its [`Hook`] about.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Event {
    /// A step was recorded (not waited for): `step` is 1-based within `epoch`, `total` counts
    /// this run's steps. Returning [`Flow::Stop`] ends training after it.
    Step {
        epoch: usize,
        step: usize,
        total: usize,
    },
    /// An epoch ended (the last, and one cut short by `max_steps`, included) after `total`
    /// steps of this run.
    EpochEnd { epoch: usize, total: usize },
    /// Training stops inside `epoch` because the hook asked; `at` is what resuming needs
    /// (the model holds the parameters and momentum). [`fit_with`] then returns
    /// [`Error::Interrupted`]. When the stop falls on an epoch's last step, `EpochEnd` comes
    /// first and `at.steps_done` is the epoch's step count.
    Stopped { epoch: usize, at: MidEpoch },
}

/// Whether training goes on after a [`Hook`] call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    Continue,
    Stop,
}

/// Called by [`fit_with`] after every step and epoch with the model, e.g. to save a
/// checkpoint or to stop on Ctrl-C. An error from it stops training and is returned.
pub type Hook<'a, B> = dyn FnMut(&Event, &Model<B>) -> Result<Flow> + 'a;

/// Trains `model` on a resident dataset for `cfg.epochs` epochs. Every batch is used, the
/// last one partial when the set does not divide (as PyTorch's DataLoader with
/// drop_last=False).
pub fn fit<B: Backend>(
    b: &B,
    model: &mut Model<B>,
    data: &ResidentDataset<B>,
    cfg: &TrainConfig,
    rep: &mut dyn Reporter,
) -> Result<FitSummary> {
    fit_with(b, model, data, cfg, rep, &mut |_, _| Ok(Flow::Continue))
}

/// [`fit`], calling `hook` after every step and epoch (see [`Event`]). With
/// `cfg.resume_within`, the first epoch starts at the step after the ones done, with the loss
/// window restored, so it prints what an uninterrupted run prints.
pub fn fit_with<B: Backend>(
    b: &B,
    model: &mut Model<B>,
    data: &ResidentDataset<B>,
    cfg: &TrainConfig,
    rep: &mut dyn Reporter,
    hook: &mut Hook<'_, B>,
) -> Result<FitSummary> {
    fit_inner(b, model, data, None, cfg, rep, hook)
}

/// [`fit_with`], evaluating on `test` after each epoch when `cfg.eval_every_epoch` is set.
fn fit_inner<B: Backend>(
    b: &B,
    model: &mut Model<B>,
    data: &ResidentDataset<B>,
    test: Option<&ResidentDataset<B>>,
    cfg: &TrainConfig,
    rep: &mut dyn Reporter,
    hook: &mut Hook<'_, B>,
) -> Result<FitSummary> {
    cfg.validate_for(data.len)?;
    check_input(model, data.image_len)?;
    check_batch_fits(b, model, cfg.batch_size.min(data.len))?;
    let n = data.len;
    let bs = cfg.batch_size;
    let steps = n.div_ceil(bs);
    let tail = n % bs;

    let mut ws_full = Workspace::new(b, model, bs)?;
    let mut ws_tail = if tail > 0 {
        Some(Workspace::new(b, model, tail)?)
    } else {
        None
    };
    let mut perm = b.zeros(n, "permutation")?;
    let mut loss_sum = b.zeros(1, "loss_sum")?;
    let mut scalars = b.zeros(StepScalars::LEN, "step scalars")?;
    let mut first_nonfinite = b.zeros(1, "first non-finite step")?;
    let run = cfg.run_length(n);
    let mut affine = match cfg.augment {
        Some(_) => Some(b.zeros(n * AFFINE_LEN, "augment.affine")?),
        None => None,
    };

    rep.start(&b.describe(), n, model.num_params());
    let mut summary = FitSummary {
        epochs: Vec::new(),
        losses: Vec::new(),
        first_step_seconds: 0.0,
        steady_images_per_sec: 0.0,
    };
    let mut steady_seconds = 0.0;
    let mut steady_images = 0;
    let mut total_steps = 0;
    for epoch in cfg.first_epoch..=cfg.epochs {
        let t0 = Instant::now();
        // Stream `epoch` (1-based) of the seed's ChaCha8 generator: stream 0 drew the initial
        // parameters (`ModelSpec::init_params`), so no shuffle reuses those bits.
        if cfg.shuffle {
            b.write_u32(&mut perm, &shuffled_indices(n, cfg.seed, epoch))?;
        } else if epoch == cfg.first_epoch {
            b.write_u32(&mut perm, &(0..n as u32).collect::<Vec<_>>())?;
        }
        if let (Some(aug), Some(buf)) = (&cfg.augment, &mut affine) {
            let rows = data.image_len / data.cols;
            b.write_f32(buf, &aug.transforms(n, rows, data.cols, cfg.seed, epoch))?;
        }
        let (first_step, window) = match &cfg.resume_within {
            Some(mid) if epoch == cfg.first_epoch => (mid.steps_done, mid.window),
            _ => (0, LossWindow { sum: 0.0, steps: 0 }),
        };
        b.write_f32(&mut loss_sum, &[window.sum])?;
        rep.epoch_start(epoch, steps, (epoch - 1) * steps);
        // The sum of the per-step mean losses read back so far this epoch (a resumed epoch's
        // includes the restored window's steps, counted in `loss_steps`).
        let mut epoch_loss = 0.0f64;
        let mut in_interval = window.steps;
        let mut images = 0;
        let mut steps_done = 0;
        let mut stop = false;
        for step in first_step..steps {
            // The step's 1-based number over the whole run (resumed runs included).
            let t = (epoch - 1) * steps + step + 1;
            b.write_f32(&mut scalars, &cfg.optim.scalars(cfg.lr, t, run).words())?;
            let ws = gather_batch(
                b,
                data,
                &perm,
                affine.as_ref(),
                step * bs,
                &mut ws_full,
                &mut ws_tail,
            )?;
            model.train_step(b, ws, &mut loss_sum, &cfg.optim, &mut scalars)?;
            b.record_nonfinite(&loss_sum, &scalars, &mut first_nonfinite)?;
            b.flush()?;
            in_interval += 1;
            images += ws.batch();
            steps_done += 1;
            total_steps += 1;
            rep.step(epoch, step + 1, ws.batch());

            if epoch == cfg.first_epoch && step == first_step {
                let sum = b.read_f32(&loss_sum)?[0]; // waits for it
                check_finite(b, sum, &first_nonfinite, steps)?;
                summary.first_step_seconds = t0.elapsed().as_secs_f64();
                rep.first_step(summary.first_step_seconds);
            }
            if (step + 1) % cfg.log_interval == 0 {
                let sum = b.read_f32(&loss_sum)?[0];
                check_finite(b, sum, &first_nonfinite, steps)?;
                epoch_loss += sum as f64;
                let rec = LossRecord {
                    epoch,
                    batch: step + 1,
                    loss: sum / in_interval as f32,
                };
                rep.loss(&rec);
                summary.losses.push(rec);
                b.fill_zero(&mut loss_sum)?;
                in_interval = 0;
            }
            let event = Event::Step {
                epoch,
                step: step + 1,
                total: total_steps,
            };
            if hook(&event, model)? == Flow::Stop {
                stop = true;
            }
            if stop || cfg.max_steps == Some(total_steps) {
                break;
            }
        }
        // Waits for the epoch's last step before timing it and before the hook saves anything;
        // the window is what a stop saves.
        let window_sum = b.read_f32(&loss_sum)?[0];
        check_finite(b, window_sum, &first_nonfinite, steps)?;
        epoch_loss += window_sum as f64;
        let seconds = t0.elapsed().as_secs_f64();
        let stats = EpochStats {
            epoch,
            steps: steps_done,
            images,
            seconds,
            images_per_sec: images as f64 / seconds,
            loss: epoch_loss / (steps_done + window.steps).max(1) as f64,
        };
        if epoch == cfg.first_epoch {
            steady_seconds += seconds - summary.first_step_seconds;
            steady_images += images - ws_full.batch().min(images);
        } else {
            steady_seconds += seconds;
            steady_images += images;
        }
        let at = MidEpoch {
            steps_done: first_step + steps_done,
            window: LossWindow {
                sum: window_sum,
                steps: in_interval,
            },
        };
        if at.steps_done == steps || !stop {
            rep.epoch(&stats);
            summary.epochs.push(stats);
            if let (true, Some(test)) = (cfg.eval_every_epoch, test) {
                let report = evaluate_detailed(b, model, test, cfg.eval_batch_size)?;
                rep.epoch_eval(epoch, &report);
            }
            let event = Event::EpochEnd {
                epoch,
                total: total_steps,
            };
            if hook(&event, model)? == Flow::Stop {
                stop = true;
            }
        }
        if stop {
            hook(&Event::Stopped { epoch, at }, model)?;
            return Err(Error::Interrupted {
                epoch,
                step: at.steps_done,
            });
        }
        if cfg.max_steps == Some(total_steps) {
            break;
        }
    }
    summary.steady_images_per_sec = if steady_seconds > 0.0 {
        steady_images as f64 / steady_seconds
    } else {
        0.0
    };
    Ok(summary)
}

/// Stops a diverged run: `loss_sum` (just read) holds the loss of every step since it was last
/// reset, so it is finite unless one of them was not; then the backend's record names the
/// first such step. `steps` is the number of steps per epoch.
fn check_finite<B: Backend>(
    b: &B,
    loss_sum: f32,
    first_nonfinite: &B::Buffer,
    steps: usize,
) -> Result<()> {
    if loss_sum.is_finite() {
        return Ok(());
    }
    let step = b.read_u32(first_nonfinite)?[0] as usize;
    Err(Error::Diverged {
        step,
        epoch: step.saturating_sub(1) / steps + 1,
        batch: step.saturating_sub(1) % steps + 1,
        value: if loss_sum.is_nan() { "NaN" } else { "infinite" },
    })
}

/// Gathers the batch that starts at `offset` of the permutation into its workspace, `full`, or
/// `tail` for the last, partial batch, and returns that workspace. With `affine`, each image is
/// resampled through its transform (augmentation).
fn gather_batch<'w, B: Backend>(
    b: &B,
    data: &ResidentDataset<B>,
    perm: &B::Buffer,
    affine: Option<&B::Buffer>,
    offset: usize,
    full: &'w mut Workspace<B>,
    tail: &'w mut Option<Workspace<B>>,
) -> Result<&'w mut Workspace<B>> {
    let ws = if offset + full.batch() <= data.len {
        full
    } else {
        tail.as_mut().expect("a partial batch has its workspace")
    };
    let g = Gather {
        batch: ws.batch(),
        image_len: data.image_len,
        offset,
    };
    let (x, y) = ws.input_and_labels_mut();
    match affine {
        Some(affine) => {
            let p = GatherAffine {
                gather: g,
                cols: data.cols,
            };
            b.gather_batch_affine(&p, &data.images, &data.labels, perm, affine, x, y)?
        }
        None => b.gather_batch(&g, &data.images, &data.labels, perm, x, y)?,
    }
    Ok(ws)
}

/// What an evaluation pass walks a resident dataset with: its batch size, the workspaces for
/// full batches and the last partial one, and the identity permutation.
struct EvalPass<B: Backend> {
    batch: usize,
    full: Workspace<B>,
    tail: Option<Workspace<B>>,
    perm: B::Buffer,
}

impl<B: Backend> EvalPass<B> {
    /// Checks the arguments and builds the pass; None for an empty dataset.
    fn new(
        b: &B,
        model: &Model<B>,
        data: &ResidentDataset<B>,
        batch: usize,
    ) -> Result<Option<Self>> {
        check_input(model, data.image_len)?;
        if batch == 0 {
            return Err(Error::InvalidParams(
                "evaluation batch size must be at least 1".into(),
            ));
        }
        let n = data.len;
        if n == 0 {
            return Ok(None);
        }
        // Evaluation batches are ours to choose: split them to what the backend can hold.
        let batch = batch.min(n).min(max_batch(b, model).max(1));
        let tail = n % batch;
        let identity: Vec<u32> = (0..n as u32).collect();
        Ok(Some(EvalPass {
            batch,
            full: Workspace::inference(b, model, batch)?,
            tail: if tail > 0 {
                Some(Workspace::inference(b, model, tail)?)
            } else {
                None
            },
            perm: b.upload_u32(&identity, "eval.permutation")?,
        }))
    }

    /// The workspace of the batch at `offset`, filled.
    fn gather(
        &mut self,
        b: &B,
        data: &ResidentDataset<B>,
        offset: usize,
    ) -> Result<&mut Workspace<B>> {
        gather_batch(
            b,
            data,
            &self.perm,
            None,
            offset,
            &mut self.full,
            &mut self.tail,
        )
    }
}

/// Counts the correctly classified images of a resident dataset, in batches of `batch`
/// (the remainder in one smaller batch). One readback at the end.
pub fn evaluate<B: Backend>(
    b: &B,
    model: &Model<B>,
    data: &ResidentDataset<B>,
    batch: usize,
) -> Result<EvalResult> {
    let n = data.len;
    let Some(mut pass) = EvalPass::new(b, model, data, batch)? else {
        return Ok(EvalResult {
            correct: 0,
            total: 0,
        });
    };
    let mut correct = b.zeros(1, "correct")?;
    for offset in (0..n).step_by(pass.batch) {
        let ws = pass.gather(b, data, offset)?;
        model.forward(b, ws)?;
        model.count_correct(b, ws, &mut correct)?;
        b.flush()?;
    }
    let correct = b.read_u32(&correct)?[0] as usize;
    Ok(EvalResult { correct, total: n })
}

/// A detailed evaluation: accuracy, mean loss and the confusion matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct EvalReport {
    /// Correct (the confusion matrix's trace) and total.
    pub eval: EvalResult,
    /// The mean softmax cross-entropy over every sample.
    pub mean_loss: f64,
    pub classes: usize,
    /// `confusion[true_class * classes + predicted]` counts; predicted is the first maximum
    /// logit.
    pub confusion: Vec<usize>,
}

impl EvalReport {
    /// (correct, total) for the samples of class `c`.
    pub fn class_counts(&self, c: usize) -> (usize, usize) {
        let row = &self.confusion[c * self.classes..(c + 1) * self.classes];
        (row[c], row.iter().sum())
    }
}

/// Evaluates `model` on a resident dataset in batches of `batch`: the loss is summed on the
/// backend (one readback at the end); the logits and labels are read back once per batch to
/// fill the confusion matrix on the host (evaluation is not the hot loop).
pub fn evaluate_detailed<B: Backend>(
    b: &B,
    model: &Model<B>,
    data: &ResidentDataset<B>,
    batch: usize,
) -> Result<EvalReport> {
    let classes = model.classes();
    let n = data.len;
    let mut confusion = vec![0usize; classes * classes];
    let Some(mut pass) = EvalPass::new(b, model, data, batch)? else {
        return Ok(EvalReport {
            eval: EvalResult {
                correct: 0,
                total: 0,
            },
            mean_loss: 0.0,
            classes,
            confusion,
        });
    };
    let bs = pass.batch;
    let tail = n % bs;
    // The loss adds each batch's mean: full batches and the tail are summed apart and weighted.
    let mut loss_full = b.zeros(1, "eval.loss_full")?;
    let mut loss_tail = b.zeros(1, "eval.loss_tail")?;
    let mut dlogits_full = b.zeros(bs * classes, "eval.dlogits")?;
    let mut dlogits_tail = b.zeros(tail.max(1) * classes, "eval.dlogits_tail")?;
    for offset in (0..n).step_by(bs) {
        let ws = pass.gather(b, data, offset)?;
        model.forward(b, ws)?;
        let m = ws.batch();
        let p = SoftmaxXent { batch: m, classes };
        let (sum, dl) = if m == bs {
            (&mut loss_full, &mut dlogits_full)
        } else {
            (&mut loss_tail, &mut dlogits_tail)
        };
        b.softmax_cross_entropy(&p, ws.logits(), ws.labels(), sum, dl)?;
        b.flush()?;
        let logits = b.read_f32(ws.logits())?;
        let labels = b.read_u32(ws.labels())?;
        for (row, &label) in logits.chunks_exact(classes).zip(&labels) {
            let mut best = 0;
            for (j, &v) in row.iter().enumerate() {
                if v > row[best] {
                    best = j;
                }
            }
            confusion[label as usize * classes + best] += 1;
        }
    }
    // Each batch added its mean: weight the sums by their batch sizes.
    let mean_loss = (b.read_f32(&loss_full)?[0] as f64 * bs as f64
        + b.read_f32(&loss_tail)?[0] as f64 * tail as f64)
        / n as f64;
    let correct = (0..classes).map(|c| confusion[c * classes + c]).sum();
    Ok(EvalReport {
        eval: EvalResult { correct, total: n },
        mean_loss,
        classes,
        confusion,
    })
}
