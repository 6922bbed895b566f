//! Evaluation and inference: a model run forward over a resident dataset in batches, counting
//! the correct answers, summing the loss and filling the confusion matrix, or handing each
//! batch's outputs to the caller.

use crate::backend::{Backend, SoftmaxXent};
use crate::data::Dataset;
use crate::model::{Model, Workspace};
use crate::{Error, Result};

use super::step::{check_input, gather_batch, max_batch, ResidentDataset};

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

/// Runs `model` forward over a resident dataset in batches of `batch` (as the evaluation does)
/// and hands `visit` each batch's offset and workspace after its forward pass, to read back what
/// it needs (the logits, activations): inference on images that are not a test set.
pub fn forward_batches<B: Backend>(
    b: &B,
    model: &Model<B>,
    data: &ResidentDataset<B>,
    batch: usize,
    mut visit: impl FnMut(usize, &Workspace<B>) -> Result<()>,
) -> Result<()> {
    let Some(mut pass) = EvalPass::new(b, model, data, batch)? else {
        return Ok(());
    };
    for offset in (0..data.len).step_by(pass.batch) {
        let ws = pass.gather(b, data, offset)?;
        model.forward(b, ws)?;
        visit(offset, ws)?;
    }
    Ok(())
}

/// Uploads `pixels` (u8 images of `model`'s input size, one after another) without labels
/// (all 0), for [`forward_batches`].
pub fn upload_unlabelled<B: Backend>(
    b: &B,
    model: &Model<B>,
    pixels: &[u8],
) -> Result<ResidentDataset<B>> {
    let (c, h, w) = model.spec().input;
    if c != 1 || pixels.is_empty() || !pixels.len().is_multiple_of(h * w) {
        return Err(Error::InvalidParams(format!(
            "{} pixels are not whole {h}×{w} grey images for a [{c}, {h}, {w}] model input",
            pixels.len()
        )));
    }
    let n = pixels.len() / (h * w);
    let ds = Dataset::new(pixels.to_vec(), vec![0; n], h, w)?;
    ResidentDataset::upload(b, &ds, model.classes(), "images")
}

/// The class probabilities (softmax of the logits, computed in f64) of each of the u8 images
/// in `pixels` (see [`upload_unlabelled`]), one row per image.
pub fn classify<B: Backend>(b: &B, model: &Model<B>, pixels: &[u8]) -> Result<Vec<Vec<f64>>> {
    let data = upload_unlabelled(b, model, pixels)?;
    let classes = model.classes();
    let mut probs = Vec::with_capacity(data.len);
    forward_batches(b, model, &data, data.len, |_, ws| {
        let logits = b.read_f32(ws.logits())?;
        probs.extend(logits.chunks_exact(classes).map(softmax));
        Ok(())
    })?;
    Ok(probs)
}

/// exp(x_i − max) / Σ exp(x_j − max), in f64.
pub fn softmax(logits: &[f32]) -> Vec<f64> {
    let max = logits
        .iter()
        .fold(f64::NEG_INFINITY, |m, &x| m.max(x as f64));
    let e: Vec<f64> = logits.iter().map(|&x| (x as f64 - max).exp()).collect();
    let sum: f64 = e.iter().sum();
    e.iter().map(|v| v / sum).collect()
}

/// Counts the correctly classified images of a resident dataset, in batches of `batch`
/// (the remainder in one smaller batch). One readback at the end.
pub fn evaluate<B: Backend>(
    b: &B,
    model: &Model<B>,
    data: &ResidentDataset<B>,
    batch: usize,
) -> Result<EvalResult> {
    evaluate_until(b, model, data, batch, &mut never).map(|r| r.expect("never stopped"))
}

/// Asked after every batch of an evaluation: true abandons it.
pub(super) type StopCheck<'a> = dyn FnMut() -> Result<bool> + 'a;

fn never() -> Result<bool> {
    Ok(false)
}

/// [`evaluate`], asking `stop` after every batch: None when it said stop.
pub(super) fn evaluate_until<B: Backend>(
    b: &B,
    model: &Model<B>,
    data: &ResidentDataset<B>,
    batch: usize,
    stop: &mut StopCheck<'_>,
) -> Result<Option<EvalResult>> {
    let Some(correct) = record_correct_until(b, model, data, batch, stop)? else {
        return Ok(None);
    };
    let correct = b.read_u32(&correct)?[0] as usize;
    Ok(Some(EvalResult {
        correct,
        total: data.len,
    }))
}

/// Records [`evaluate`]'s passes without reading anything back: the returned one-word buffer
/// holds the count of correct answers once the backend has run them (the web reads it back
/// asynchronously).
pub fn record_correct<B: Backend>(
    b: &B,
    model: &Model<B>,
    data: &ResidentDataset<B>,
    batch: usize,
) -> Result<B::Buffer> {
    record_correct_until(b, model, data, batch, &mut never).map(|r| r.expect("never stopped"))
}

/// [`record_correct`], asking `stop` after every batch: None when it said stop.
fn record_correct_until<B: Backend>(
    b: &B,
    model: &Model<B>,
    data: &ResidentDataset<B>,
    batch: usize,
    stop: &mut StopCheck<'_>,
) -> Result<Option<B::Buffer>> {
    let mut correct = b.zeros(1, "correct")?;
    let Some(mut pass) = EvalPass::new(b, model, data, batch)? else {
        return Ok(Some(correct));
    };
    for offset in (0..data.len).step_by(pass.batch) {
        let ws = pass.gather(b, data, offset)?;
        model.forward(b, ws)?;
        model.count_correct(b, ws, &mut correct)?;
        b.flush()?;
        if stop()? {
            return Ok(None);
        }
    }
    Ok(Some(correct))
}

/// Records `model`'s forward pass over all of `data` in one batch and returns its workspace,
/// nothing read back: the caller reads [`Workspace::logits`] however it can (the web awaits).
pub fn forward_all<B: Backend>(
    b: &B,
    model: &Model<B>,
    data: &ResidentDataset<B>,
) -> Result<Workspace<B>> {
    let mut pass = EvalPass::new(b, model, data, data.len.max(1))?
        .ok_or_else(|| Error::InvalidParams("there are no images to classify".into()))?;
    if pass.batch < data.len {
        return Err(Error::Limit(format!(
            "{} images do not fit one batch on {}",
            data.len,
            b.describe()
        )));
    }
    pass.gather(b, data, 0)?;
    model.forward(b, &mut pass.full)?;
    b.flush()?;
    Ok(pass.full)
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
    evaluate_detailed_until(b, model, data, batch, &mut never).map(|r| r.expect("never stopped"))
}

/// [`evaluate_detailed`], asking `stop` after every batch: None when it said stop.
pub(super) fn evaluate_detailed_until<B: Backend>(
    b: &B,
    model: &Model<B>,
    data: &ResidentDataset<B>,
    batch: usize,
    stop: &mut StopCheck<'_>,
) -> Result<Option<EvalReport>> {
    let classes = model.classes();
    let n = data.len;
    let mut confusion = vec![0usize; classes * classes];
    let Some(mut pass) = EvalPass::new(b, model, data, batch)? else {
        return Ok(Some(EvalReport {
            eval: EvalResult {
                correct: 0,
                total: 0,
            },
            mean_loss: 0.0,
            classes,
            confusion,
        }));
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
        if stop()? {
            return Ok(None);
        }
    }
    // Each batch added its mean: weight the sums by their batch sizes.
    let mean_loss = (b.read_f32(&loss_full)?[0] as f64 * bs as f64
        + b.read_f32(&loss_tail)?[0] as f64 * tail as f64)
        / n as f64;
    let correct = (0..classes).map(|c| confusion[c * classes + c]).sum();
    Ok(Some(EvalReport {
        eval: EvalResult { correct, total: n },
        mean_loss,
        classes,
        confusion,
    }))
}
