//! The lines `cnn-gpu train` prints as it goes, and its progress bars.

use cnn_gpu::train::{EpochStats, EvalReport, EvalResult, LossRecord, Reporter};

/// Prints the tutorial's lines to stdout; with [`PrintReporter::with_progress_bar`], also a
/// progress bar per epoch (images/s and ETA), the lines printed above it.
#[derive(Default)]
pub(crate) struct PrintReporter {
    /// Some when a bar is wanted; the bar of the running epoch.
    bar: Option<Option<indicatif::ProgressBar>>,
    batch_size: usize,
}

impl PrintReporter {
    /// The tutorial's plain lines only (logs, pipes, tests).
    pub(crate) fn plain() -> Self {
        PrintReporter::default()
    }

    /// Plain lines and a progress bar per epoch: for a terminal.
    pub(crate) fn with_progress_bar(batch_size: usize) -> Self {
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
