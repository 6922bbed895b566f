//! What the page does, generic over the backend: load a dataset, train step by step, evaluate,
//! draw conv1, classify a drawn digit, save and load checkpoints. Every readback is awaited
//! ([`Host::read`]), so nothing blocks the browser's event loop.

use std::path::Path;

use cnn_gpu::backend::cpu::CpuBackend;
use cnn_gpu::backend::gpu::GpuBackend;
use cnn_gpu::backend::Backend;
use cnn_gpu::checkpoint::{self, OptimizerTensors};
use cnn_gpu::data::{parse_idx, Dataset, IdxKind};
use cnn_gpu::digit::{mnist_pixels, GreyImage};
use cnn_gpu::matrix::{self, Matrix, Pending, PoolKind};
use cnn_gpu::model::{Model, ModelSpec, NamedTensor};
use cnn_gpu::optim::{OptimConfig, Optimizer};
use cnn_gpu::train::{
    forward_all, record_correct, softmax, upload_unlabelled, ResidentDataset, Stepwise, TrainConfig,
};
use cnn_gpu::{Error, Result};
use serde::{Deserialize, Serialize};
use web_time::Instant;

/// A backend whose buffers the page can read back without blocking.
pub trait Host: Backend + 'static {
    /// The buffer's contents, once the backend has computed them.
    fn read(&self, buf: &Self::Buffer) -> impl std::future::Future<Output = Result<Vec<f32>>>;
}

impl Host for CpuBackend {
    async fn read(&self, buf: &Self::Buffer) -> Result<Vec<f32>> {
        self.read_f32(buf)
    }
}

impl Host for GpuBackend {
    async fn read(&self, buf: &Self::Buffer) -> Result<Vec<f32>> {
        self.read_f32_async(buf).await
    }
}

/// The settings of a run, as the page's form gives them.
#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    pub preset: String,
    pub optimizer: String,
    pub batch_size: usize,
    pub lr: f32,
    pub epochs: usize,
    pub seed: u64,
    /// Print a loss line every this many batches.
    pub log_interval: usize,
    /// Train on the first this many training images (0: all).
    pub train_limit: usize,
}

/// The models the page offers: those without batch norm (whose running statistics the web
/// cannot read back without blocking yet).
pub const PRESETS: [&str; 2] = ["simple-cnn", "lenet5"];

impl Settings {
    /// The model and the run's configuration, or a message naming the bad setting.
    pub fn config(&self) -> Result<(ModelSpec, TrainConfig)> {
        let bad = |m: String| Error::InvalidParams(m);
        if !PRESETS.contains(&self.preset.as_str()) {
            return Err(bad(format!(
                "unknown model {:?}; the page trains {}",
                self.preset,
                PRESETS.join(" or ")
            )));
        }
        let spec = ModelSpec::preset(&self.preset).expect("a known preset");
        let optimizer = match self.optimizer.as_str() {
            "sgd" => Optimizer::sgd(0.9),
            "adam" => Optimizer::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
                decoupled: false,
            },
            o => return Err(bad(format!("unknown optimiser {o:?}: sgd or adam"))),
        };
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 10.0) {
            return Err(bad(format!("learning rate {} is not in (0, 10]", self.lr)));
        }
        if self.batch_size == 0 || self.batch_size > 4096 {
            return Err(bad(format!(
                "batch size {} is not in 1..=4096",
                self.batch_size
            )));
        }
        if self.epochs == 0 || self.epochs > 100 {
            return Err(bad(format!("{} epochs is not in 1..=100", self.epochs)));
        }
        let cfg = TrainConfig {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            optim: OptimConfig {
                optimizer,
                ..Default::default()
            },
            seed: self.seed,
            log_interval: self.log_interval.max(1),
            ..Default::default()
        };
        cfg.validate()?;
        Ok((spec, cfg))
    }
}

/// What one [`Engine::tick`] did, for the page to draw.
#[derive(Debug, Default, Serialize)]
pub struct Tick {
    /// The tutorial's lines, `[Epoch 1, Batch 100] loss: 0.123`.
    pub lines: Vec<String>,
    /// (step over the run, mean loss) of each loss line.
    pub losses: Vec<(usize, f32)>,
    /// (epoch, correct, total) of each epoch ended.
    pub accuracy: Vec<(usize, usize, usize)>,
    pub steps_done: usize,
    pub total_steps: usize,
    pub images_per_sec: f64,
    pub finished: bool,
}

/// The model, the data and the run in progress on one backend.
pub struct Engine<B: Host> {
    pub b: B,
    train: Option<Dataset>,
    test: Option<ResidentDataset<B>>,
    test_len: usize,
    model: Option<Model<B>>,
    run: Option<Stepwise<B>>,
}

/// Parses a pair of IDX files (images, labels) held in memory, gzipped or not.
pub fn parse_pair(images: &[u8], labels: &[u8], what: &str) -> Result<Dataset> {
    let gz = |b: &[u8]| b.starts_with(&[0x1f, 0x8b]);
    let ipath = format!("{what} images");
    let lpath = format!("{what} labels");
    let (h, pixels) = parse_idx(images, IdxKind::Images, gz(images), Path::new(&ipath))?;
    let (_, labs) = parse_idx(labels, IdxKind::Labels, gz(labels), Path::new(&lpath))?;
    let (rows, cols) = (h.rows as usize, h.cols as usize);
    if labs.len() * rows * cols != pixels.len() {
        return Err(Error::InvalidParams(format!(
            "the {what} set has {} images but {} labels",
            pixels.len() / (rows * cols).max(1),
            labs.len()
        )));
    }
    Dataset::new(pixels, labs, rows, cols)
}

impl<B: Host> Engine<B> {
    pub fn new(b: B) -> Self {
        Engine {
            b,
            train: None,
            test: None,
            test_len: 0,
            model: None,
            run: None,
        }
    }

    /// Keeps the training set on the host (uploaded when a run starts, cut to its limit) and
    /// uploads the test set.
    pub fn load_data(&mut self, train: Dataset, test: Dataset) -> Result<()> {
        if train.image_len() != 28 * 28 || test.image_len() != 28 * 28 {
            return Err(Error::InvalidParams(format!(
                "the images are {}×{} and {}×{}; the models take 28×28",
                train.rows, train.cols, test.rows, test.cols
            )));
        }
        self.run = None;
        self.test_len = test.len();
        self.test = Some(ResidentDataset::upload(&self.b, &test, 10, "test")?);
        self.train = Some(train);
        Ok(())
    }

    pub fn has_data(&self) -> bool {
        self.train.is_some()
    }

    /// Starts a fresh run of `settings` (a new model from its seed).
    pub fn start(&mut self, settings: &Settings) -> Result<()> {
        let (spec, cfg) = settings.config()?;
        let train = self
            .train
            .as_ref()
            .ok_or_else(|| Error::InvalidParams("load a dataset first".into()))?;
        let n = match settings.train_limit {
            0 => train.len(),
            l => l.min(train.len()),
        };
        let cut = Dataset::new(
            train.images[..n * train.image_len()].to_vec(),
            train.labels[..n].to_vec(),
            train.rows,
            train.cols,
        )?;
        self.run = None;
        let model = Model::new(&self.b, spec, cfg.seed)?;
        let data = ResidentDataset::upload(&self.b, &cut, model.classes(), "train")?;
        self.run = Some(Stepwise::new(&self.b, &model, data, cfg)?);
        self.model = Some(model);
        Ok(())
    }

    /// Ends the run (the model stays).
    pub fn stop(&mut self) {
        self.run = None;
    }

    /// Records steps for about `budget_ms`, reading back the loss lines due and evaluating
    /// after each epoch, then waits for the device to catch up.
    pub async fn tick(&mut self, budget_ms: f64) -> Result<Tick> {
        let mut out = Tick::default();
        let (Some(run), Some(model)) = (self.run.as_mut(), self.model.as_mut()) else {
            out.finished = true;
            return Ok(out);
        };
        let started = Instant::now();
        let mut images = 0;
        loop {
            let Some(rec) = run.step(&self.b, model)? else {
                out.finished = true;
                break;
            };
            images += rec.images;
            if rec.loss_line {
                let sum = self.b.read(run.loss_sum()).await?[0];
                let loss = run.loss_line(&self.b, sum)?;
                out.lines.push(format!(
                    "[Epoch {}, Batch {}] loss: {loss:.3}",
                    rec.epoch, rec.batch
                ));
                out.losses.push((run.steps_done(), loss));
            }
            if rec.epoch_end {
                if let Some(test) = &self.test {
                    let correct = record_correct(&self.b, model, test, 500)?;
                    let c = self.b.read(&correct).await?[0].to_bits() as usize;
                    out.accuracy.push((rec.epoch, c, self.test_len));
                }
            }
            if started.elapsed().as_secs_f64() * 1000.0 > budget_ms {
                break;
            }
        }
        // The device's work is done once its loss sum reads back: time it all.
        self.b.read(run.loss_sum()).await?;
        out.images_per_sec = images as f64 / started.elapsed().as_secs_f64().max(1e-9);
        out.steps_done = run.steps_done();
        out.total_steps = run.total_steps();
        if out.finished {
            self.run = None;
        }
        Ok(out)
    }

    fn model(&self) -> Result<&Model<B>> {
        self.model
            .as_ref()
            .ok_or_else(|| Error::InvalidParams("train or load a model first".into()))
    }

    /// Every parameter, read back.
    async fn params(&self) -> Result<Vec<NamedTensor>> {
        let model = self.model()?;
        let mut out = Vec::new();
        for p in model.params() {
            out.push(NamedTensor {
                name: p.name.clone(),
                shape: p.shape.clone(),
                data: self.b.read(&p.value).await?,
            });
        }
        Ok(out)
    }

    /// The first layer's weights: (shape, values).
    pub async fn conv1(&self) -> Result<(Vec<usize>, Vec<f32>)> {
        let model = self.model()?;
        let p = &model.params()[0];
        Ok((p.shape.clone(), self.b.read(&p.value).await?))
    }

    /// The model's checkpoint: the bytes `cnn-gpu train --save` writes for its weights.
    pub async fn checkpoint(&self) -> Result<Vec<u8>> {
        let params = self.params().await?;
        let spec = self.model()?.spec();
        checkpoint::to_bytes(spec, &params, OptimizerTensors::default(), &[], None)
    }

    /// Replaces the model by a checkpoint's (stopping any run).
    pub fn load_checkpoint(&mut self, bytes: &[u8]) -> Result<String> {
        let path = Path::new("the checkpoint");
        let spec = checkpoint::model_of_bytes(bytes, path)?.unwrap_or_else(ModelSpec::simple_cnn);
        if !spec.buffer_names().is_empty() {
            return Err(Error::InvalidParams(
                "this checkpoint's model has batch norm, which the page does not run yet".into(),
            ));
        }
        let ckpt = checkpoint::parse(bytes, path, &spec)?;
        let model = checkpoint::build_model(&self.b, spec, &ckpt)?;
        self.run = None;
        let arch = checkpoint::architecture(model.spec());
        self.model = Some(model);
        Ok(arch)
    }

    /// Evaluates the model on the test set: (correct, total).
    pub async fn evaluate(&self) -> Result<(usize, usize)> {
        let model = self.model()?;
        let test = self
            .test
            .as_ref()
            .ok_or_else(|| Error::InvalidParams("load a dataset first".into()))?;
        let correct = record_correct(&self.b, model, test, 500)?;
        let c = self.b.read(&correct).await?[0].to_bits() as usize;
        Ok((c, self.test_len))
    }

    /// The class probabilities of a digit picture (PNG bytes, light ink on dark), prepared as
    /// `cnn-gpu predict` prepares its images, and the 28×28 pixels the model saw.
    pub async fn predict(&self, png: &[u8]) -> Result<(Vec<f64>, Vec<u8>)> {
        let model = self.model()?;
        let img = GreyImage::decode(png).map_err(Error::InvalidParams)?;
        // The canvas is light ink on black, as MNIST is: no inversion.
        let pixels = mnist_pixels(&img, false)?;
        let data = upload_unlabelled(&self.b, model, &pixels)?;
        let ws = forward_all(&self.b, model, &data)?;
        let logits = self.b.read(ws.logits()).await?;
        Ok((softmax(&logits), pixels))
    }

    /// The playground's convolution (`matrix::convolve`), read back without blocking.
    pub async fn convolve(
        &self,
        input: &Matrix,
        kernel: &Matrix,
        stride: usize,
        padding: usize,
    ) -> Result<Matrix> {
        let out = matrix::record_convolve(&self.b, input, kernel, stride, padding)?;
        self.matrix(out).await
    }

    /// The playground's pooling (`matrix::pool`), read back without blocking.
    pub async fn pool(
        &self,
        input: &Matrix,
        kind: PoolKind,
        size: usize,
        stride: usize,
    ) -> Result<Matrix> {
        let out = matrix::record_pool(&self.b, input, kind, size, stride)?;
        self.matrix(out).await
    }

    async fn matrix(&self, m: Pending<B>) -> Result<Matrix> {
        let data = self.b.read(&m.buffer).await?;
        Ok(Matrix::new(m.rows, m.cols, data))
    }
}
