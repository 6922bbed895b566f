//! What a run reports as it goes, and to whom: the records (loss lines, epoch times, the
//! evaluation) and the [`Reporter`] they are handed to. The loop never prints by itself; the
//! command line's reporter prints the lines and draws the progress bars, a metrics reporter
//! writes JSON lines ([`crate::metrics`]).

use super::eval::{EvalReport, EvalResult};
use crate::Error;

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

/// What [`super::fit`] measured.
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

/// What [`super::train`] measured: the fit and the final evaluation.
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
    /// The test-set evaluation after an epoch, when [`super::TrainConfig::eval_every_epoch`]
    /// is set.
    fn epoch_eval(&mut self, _epoch: usize, _report: &EvalReport) {}
    fn eval(&mut self, _eval: &EvalResult) {}
    /// An error the reporter met, handed over once (e.g. its file could not be written). The
    /// loop asks after every step and epoch report: training then stops at once, as when the
    /// hook asks ([`super::Event::Stopped`], so what resuming needs can be saved), and returns
    /// this error.
    fn failure(&mut self) -> Option<Error> {
        None
    }
}

/// Reports nothing (tests, benchmarks).
pub struct QuietReporter;

impl Reporter for QuietReporter {}
