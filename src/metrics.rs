//! Training metrics as JSON lines: `train --metrics PATH` writes one [`Record`] per log interval
//! and one per epoch; `plot` reads them back with [`read_metrics`].
//!
//! Each line is a JSON object tagged by `"event"`:
//!
//! ```text
//! {"event":"log","epoch":1,"batch":100,"step":100,"loss":1.93,"images_per_sec":1650.2,"elapsed_s":3.9,"backend":"cpu","adapter":null}
//! {"event":"epoch","epoch":1,"step":938,"loss":0.61,"test_loss":0.21,"test_accuracy":93.8,"images_per_sec":1671.0,"seconds":35.9,"backend":"cpu","adapter":null}
//! ```
//!
//! The file is written line by line and flushed after each line, so a run that stops early
//! leaves every record it reached, each one whole.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::train::{EpochStats, EvalReport, EvalResult, LossRecord, Reporter};
use crate::{Error, Result};

/// One line of a metrics file.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case", deny_unknown_fields)]
pub enum Record {
    /// The mean training loss over one log interval.
    Log {
        /// 1-based epoch.
        epoch: usize,
        /// 1-based index, within the epoch, of the interval's last batch.
        batch: usize,
        /// Training steps since the start of the run (1-based, across epochs).
        step: usize,
        loss: f64,
        /// Images per second over the interval.
        images_per_sec: f64,
        /// Seconds since training started.
        elapsed_s: f64,
        /// "cpu" or "gpu".
        backend: String,
        /// The GPU adapter's description (None on the CPU).
        adapter: Option<String>,
    },
    /// The end of an epoch, with an evaluation on the test set.
    Epoch {
        epoch: usize,
        /// Training steps since the start of the run, at the end of this epoch.
        step: usize,
        /// The mean training loss over the epoch's steps.
        loss: f64,
        /// The mean cross-entropy over the test set.
        test_loss: f64,
        /// Test accuracy in percent.
        test_accuracy: f64,
        images_per_sec: f64,
        /// Wall time of the epoch's training steps (the evaluation excluded).
        seconds: f64,
        backend: String,
        adapter: Option<String>,
    },
}

/// Reads a metrics file. Errors name the file and the line.
pub fn read_metrics(path: &Path) -> Result<Vec<Record>> {
    let file = File::open(path).map_err(|e| Error::data(path, format!("cannot open: {e}")))?;
    let mut records = Vec::new();
    for (i, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::data(path, format!("line {}: {e}", i + 1)))?;
        if line.trim().is_empty() {
            continue;
        }
        let record = serde_json::from_str(&line)
            .map_err(|e| Error::data(path, format!("line {}: not a metrics record: {e}", i + 1)))?;
        records.push(record);
    }
    if records.is_empty() {
        return Err(Error::data(
            path,
            "holds no metrics records (write one with `cnn-gpu train --metrics PATH`)",
        ));
    }
    Ok(records)
}

/// Appends records to a metrics file, one flushed line each.
pub struct MetricsWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsWriter {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path)
            .map_err(|e| Error::data(path, format!("cannot create the metrics file: {e}")))?;
        Ok(MetricsWriter {
            path: path.to_path_buf(),
            out: BufWriter::new(file),
        })
    }

    pub fn write(&mut self, record: &Record) -> Result<()> {
        let line = serde_json::to_string(record).expect("a record serialises");
        writeln!(self.out, "{line}")
            .and_then(|_| self.out.flush())
            .map_err(|e| Error::data(&self.path, format!("cannot write the metrics file: {e}")))
    }
}

/// A [`Reporter`] that writes metrics records and passes every event on to `inner` (the
/// printing reporter). Training asks for an evaluation after every epoch when it is used
/// (`TrainConfig::eval_every_epoch`); an epoch record is written once that evaluation arrives.
pub struct MetricsReporter<R: Reporter> {
    inner: R,
    writer: MetricsWriter,
    backend: String,
    adapter: Option<String>,
    started: Instant,
    interval_start: Instant,
    interval_images: usize,
    /// Steps of the run so far, and the batch size, learned from [`Reporter::step`].
    step: usize,
    pending_epoch: Option<EpochStats>,
    /// The first write error, for [`Reporter::failure`] (which stops the run) or [`Self::finish`].
    error: Option<Error>,
}

impl<R: Reporter> MetricsReporter<R> {
    pub fn new(inner: R, writer: MetricsWriter, backend: &str, adapter: Option<String>) -> Self {
        let now = Instant::now();
        MetricsReporter {
            inner,
            writer,
            backend: backend.to_string(),
            adapter,
            started: now,
            interval_start: now,
            interval_images: 0,
            step: 0,
            pending_epoch: None,
            error: None,
        }
    }

    /// The first error met while writing, if any (and not yet handed to the loop by
    /// [`Reporter::failure`]).
    pub fn finish(self) -> Result<()> {
        self.error.map_or(Ok(()), Err)
    }

    fn write(&mut self, record: Record) {
        if self.error.is_none() {
            if let Err(e) = self.writer.write(&record) {
                self.error = Some(e);
            }
        }
    }
}

impl<R: Reporter> Reporter for MetricsReporter<R> {
    fn start(&mut self, backend: &str, train_images: usize, params: usize) {
        self.started = Instant::now();
        self.interval_start = self.started;
        self.inner.start(backend, train_images, params);
    }
    fn epoch_start(&mut self, epoch: usize, steps: usize, first_step: usize) {
        self.step = first_step;
        self.interval_start = Instant::now();
        self.interval_images = 0;
        self.inner.epoch_start(epoch, steps, first_step);
    }
    fn step(&mut self, epoch: usize, batch: usize, images: usize) {
        self.step += 1;
        self.interval_images += images;
        self.inner.step(epoch, batch, images);
    }
    fn loss(&mut self, rec: &LossRecord) {
        // The loss was just read back, so the interval's work is done: its wall time is real.
        let now = Instant::now();
        let seconds = now.duration_since(self.interval_start).as_secs_f64();
        let record = Record::Log {
            epoch: rec.epoch,
            batch: rec.batch,
            step: self.step,
            loss: rec.loss as f64,
            images_per_sec: if seconds > 0.0 {
                self.interval_images as f64 / seconds
            } else {
                0.0
            },
            elapsed_s: now.duration_since(self.started).as_secs_f64(),
            backend: self.backend.clone(),
            adapter: self.adapter.clone(),
        };
        self.write(record);
        self.interval_start = now;
        self.interval_images = 0;
        self.inner.loss(rec);
    }
    fn first_step(&mut self, seconds: f64) {
        self.inner.first_step(seconds);
    }
    fn epoch(&mut self, stats: &EpochStats) {
        self.pending_epoch = Some(*stats);
        self.inner.epoch(stats);
    }
    fn epoch_eval(&mut self, epoch: usize, report: &EvalReport) {
        if let Some(s) = self.pending_epoch.take().filter(|s| s.epoch == epoch) {
            let record = Record::Epoch {
                epoch,
                step: self.step,
                loss: s.loss,
                test_loss: report.mean_loss,
                test_accuracy: report.eval.accuracy_percent(),
                images_per_sec: s.images_per_sec,
                seconds: s.seconds,
                backend: self.backend.clone(),
                adapter: self.adapter.clone(),
            };
            self.write(record);
        }
        self.inner.epoch_eval(epoch, report);
    }
    fn eval(&mut self, eval: &EvalResult) {
        self.inner.eval(eval);
    }
    /// A write that failed stops the run at once (its checkpoint saved), rather than at the end.
    fn failure(&mut self) -> Option<Error> {
        self.error.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log(step: usize) -> Record {
        Record::Log {
            epoch: 1,
            batch: step,
            step,
            loss: 0.5,
            images_per_sec: 100.0,
            elapsed_s: 1.0,
            backend: "cpu".into(),
            adapter: None,
        }
    }

    #[test]
    fn written_records_read_back_equal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let mut w = MetricsWriter::create(&path).unwrap();
        let epoch = Record::Epoch {
            epoch: 1,
            step: 2,
            loss: 0.25,
            test_loss: 0.125,
            test_accuracy: 97.5,
            images_per_sec: 3.0,
            seconds: 4.0,
            backend: "gpu".into(),
            adapter: Some("llvmpipe".into()),
        };
        for r in [log(1), log(2), epoch.clone()] {
            w.write(&r).unwrap();
        }
        assert_eq!(read_metrics(&path).unwrap(), vec![log(1), log(2), epoch]);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with(r#"{"event":"log","epoch":1,"batch":1,"step":1,"loss":0.5,"#));
    }

    #[test]
    fn bad_files_are_refused_naming_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.jsonl");
        let good = serde_json::to_string(&log(1)).unwrap();
        let cases = [
            (String::new(), "holds no metrics records"),
            (
                format!("{good}\n{{\"event\":\"log\"\n"),
                "line 2: not a metrics record",
            ),
            (
                format!("{good}\n{{\"event\":\"party\"}}\n"),
                "line 2: not a metrics record",
            ),
            (
                "\u{0}\u{1}garbage".to_string(),
                "line 1: not a metrics record",
            ),
        ];
        for (text, want) in cases {
            std::fs::write(&path, text).unwrap();
            let err = read_metrics(&path).unwrap_err().to_string();
            assert!(err.contains(want) && err.contains("m.jsonl"), "{err}");
        }
        let missing = read_metrics(&dir.path().join("nope.jsonl")).unwrap_err();
        assert!(missing.to_string().contains("cannot open"), "{missing}");
    }
}
