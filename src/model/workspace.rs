//! A [`Workspace`]: every activation and activation gradient of one model at one batch size.

use super::Model;
use crate::backend::Backend;
use crate::{Error, Result};

/// Every activation buffer (and, for training, every activation-gradient buffer) of one model
/// at one batch size, plus the batch's input and labels. Built once, reused every step.
pub struct Workspace<B: Backend> {
    pub(super) batch: usize,
    pub(super) input_len: usize,
    /// Activations by slot; slot 0 is the input batch [N, C, H, W].
    pub(super) acts: Vec<B::Buffer>,
    /// Activation gradients by slot; `None` for the input, and everywhere in an inference
    /// workspace.
    pub(super) grads: Vec<Option<B::Buffer>>,
    /// The batch's labels, u32 [N].
    pub(super) labels: B::Buffer,
}

impl<B: Backend> Workspace<B> {
    /// A training workspace (activations and their gradients) for `batch` samples.
    pub fn new(b: &B, model: &Model<B>, batch: usize) -> Result<Self> {
        Self::build(b, model, batch, true)
    }

    /// An inference workspace (activations only) for `batch` samples.
    pub fn inference(b: &B, model: &Model<B>, batch: usize) -> Result<Self> {
        Self::build(b, model, batch, false)
    }

    fn build(b: &B, model: &Model<B>, batch: usize, train: bool) -> Result<Self> {
        if batch == 0 {
            return Err(Error::InvalidParams(
                "a workspace needs a batch of at least 1".into(),
            ));
        }
        if train {
            model.check_train_batch(batch)?;
        }
        let mut acts = Vec::new();
        let mut grads = Vec::new();
        for (a, shape) in model.shapes.iter().enumerate() {
            if a > 0 && model.slots[a] == model.slots[a - 1] {
                continue; // shares the previous activation's buffer
            }
            let len = batch * shape.numel();
            acts.push(b.zeros(len, &format!("act{a}"))?);
            grads.push(if train && a > 0 {
                Some(b.zeros(len, &format!("grad{a}"))?)
            } else {
                None
            });
        }
        Ok(Workspace {
            batch,
            input_len: model.input_len(),
            acts,
            grads,
            labels: b.zeros(batch, "labels")?,
        })
    }

    pub fn batch(&self) -> usize {
        self.batch
    }

    /// The input batch [N, C, H, W] and the labels [N], to be filled (e.g. by `gather_batch`).
    pub fn input_and_labels_mut(&mut self) -> (&mut B::Buffer, &mut B::Buffer) {
        (&mut self.acts[0], &mut self.labels)
    }

    pub fn input(&self) -> &B::Buffer {
        &self.acts[0]
    }

    pub fn labels(&self) -> &B::Buffer {
        &self.labels
    }

    /// The logits [N, classes] of the last forward pass.
    pub fn logits(&self) -> &B::Buffer {
        self.acts.last().expect("never empty")
    }
}
