//! The pieces of one training step: the dataset resident on the backend, the batch gather
//! (with its augmentation), the check that a loss read back is finite, and the batch-size
//! limits the backend sets.

use crate::backend::{Backend, Gather, GatherAffine, StepScalars, AFFINE_LEN};
use crate::data::{shuffled_indices, Dataset};
use crate::model::{Model, Workspace};
use crate::optim::RunLength;
use crate::{Error, Result};

use super::TrainConfig;

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

/// What a run trains with, allocated once for its dataset and configuration: the workspaces
/// of full batches and of the last, partial one, the epoch's permutation (and augmentation
/// transforms), the running loss sum, the step's scalars (learning rate, Adam's bias
/// corrections) and the backend's record of the first non-finite loss.
pub(super) struct Trainer<'d, B: Backend> {
    pub(super) data: &'d ResidentDataset<B>,
    pub(super) cfg: &'d TrainConfig,
    /// The whole run's length, for the learning-rate schedule.
    run: RunLength,
    /// Steps per epoch.
    pub(super) steps: usize,
    full: Workspace<B>,
    tail: Option<Workspace<B>>,
    perm: B::Buffer,
    loss_sum: B::Buffer,
    scalars: B::Buffer,
    first_nonfinite: B::Buffer,
    affine: Option<B::Buffer>,
}

impl<'d, B: Backend> Trainer<'d, B> {
    /// Checks that `data` fits `model` and the backend, and allocates. `cfg` is already
    /// validated for `data`.
    pub(super) fn new(
        b: &B,
        model: &Model<B>,
        data: &'d ResidentDataset<B>,
        cfg: &'d TrainConfig,
    ) -> Result<Self> {
        check_input(model, data.image_len)?;
        check_batch_fits(b, model, cfg.batch_size.min(data.len))?;
        let n = data.len;
        let bs = cfg.batch_size;
        let tail = n % bs;
        let full = Workspace::new(b, model, bs)?;
        let tail = if tail > 0 {
            Some(Workspace::new(b, model, tail)?)
        } else {
            None
        };
        Ok(Trainer {
            data,
            cfg,
            run: cfg.run_length(n),
            steps: n.div_ceil(bs),
            full,
            tail,
            perm: b.zeros(n, "permutation")?,
            loss_sum: b.zeros(1, "loss_sum")?,
            scalars: b.zeros(StepScalars::LEN, "step scalars")?,
            first_nonfinite: b.zeros(1, "first non-finite step")?,
            affine: match cfg.augment {
                Some(_) => Some(b.zeros(n * AFFINE_LEN, "augment.affine")?),
                None => None,
            },
        })
    }

    /// The batch size of the full batches.
    pub(super) fn full_batch(&self) -> usize {
        self.full.batch()
    }

    /// Writes `epoch`'s (1-based) order of the images and, augmenting, their transforms.
    pub(super) fn begin_epoch(&mut self, b: &B, epoch: usize) -> Result<()> {
        let (cfg, data, n) = (self.cfg, self.data, self.data.len);
        // Stream `epoch` (1-based) of the seed's ChaCha8 generator: stream 0 drew the initial
        // parameters (`ModelSpec::init_params`), so no shuffle reuses those bits.
        if cfg.shuffle {
            b.write_u32(&mut self.perm, &shuffled_indices(n, cfg.seed, epoch))?;
        } else if epoch == cfg.first_epoch {
            b.write_u32(&mut self.perm, &(0..n as u32).collect::<Vec<_>>())?;
        }
        if let (Some(aug), Some(buf)) = (&cfg.augment, &mut self.affine) {
            let rows = data.image_len / data.cols;
            b.write_f32(buf, &aug.transforms(n, rows, data.cols, cfg.seed, epoch))?;
        }
        Ok(())
    }

    /// Records training step `t` (1-based over the whole run) on the batch at `offset` of the
    /// permutation: gather → forward → loss → backward → update, then a flush. Its loss is
    /// added to the running sum on the backend. Returns the batch's size.
    pub(super) fn step(
        &mut self,
        b: &B,
        model: &mut Model<B>,
        t: usize,
        offset: usize,
    ) -> Result<usize> {
        let optim = &self.cfg.optim;
        b.write_f32(
            &mut self.scalars,
            &optim.scalars(self.cfg.lr, t, self.run).words(),
        )?;
        let ws = gather_batch(
            b,
            self.data,
            &self.perm,
            self.affine.as_ref(),
            offset,
            &mut self.full,
            &mut self.tail,
        )?;
        model.train_step(b, ws, &mut self.loss_sum, optim, &mut self.scalars)?;
        b.record_nonfinite(&self.loss_sum, &self.scalars, &mut self.first_nonfinite)?;
        b.flush()?;
        Ok(ws.batch())
    }

    /// Reads the running loss sum back, waiting for the steps recorded, and stops a diverged
    /// run ([`check_finite`]).
    pub(super) fn read_loss(&self, b: &B) -> Result<f32> {
        let sum = b.read_f32(&self.loss_sum)?[0];
        check_finite(b, sum, &self.first_nonfinite, self.steps)?;
        Ok(sum)
    }

    /// The running loss sum on the backend.
    pub(super) fn loss_sum(&self) -> &B::Buffer {
        &self.loss_sum
    }

    /// Sets the running loss sum at an epoch's start: 0, or a resumed epoch's window.
    pub(super) fn write_loss(&mut self, b: &B, sum: f32) -> Result<()> {
        b.write_f32(&mut self.loss_sum, &[sum])
    }

    /// Zeroes the running loss sum after a loss line.
    pub(super) fn zero_loss(&mut self, b: &B) -> Result<()> {
        b.fill_zero(&mut self.loss_sum)
    }
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
pub(super) fn check_batch_fits<B: Backend>(b: &B, model: &Model<B>, batch: usize) -> Result<()> {
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

pub(super) fn check_input(model: &Model<impl Backend>, image_len: usize) -> Result<()> {
    if model.input_len() != image_len {
        return Err(Error::InvalidParams(format!(
            "the model takes {} values per sample but the images have {image_len} pixels",
            model.input_len()
        )));
    }
    Ok(())
}

/// Stops a diverged run: `loss_sum` (just read) holds the loss of every step since it was last
/// reset, so it is finite unless one of them was not; then the backend's record names the
/// first such step. `steps` is the number of steps per epoch.
pub(super) fn check_finite<B: Backend>(
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
pub(super) fn gather_batch<'w, B: Backend>(
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
