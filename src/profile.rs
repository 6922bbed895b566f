//! Per-layer timing of a training step, as Caffe's `caffe time`: the `cnn-gpu time` command.
//! On the GPU the times come from timestamp queries around each kernel (the wall clock, with a
//! wait at each layer, where the adapter has none); on the CPU from the wall clock.

use web_time::Instant;

use rand::{Rng, SeedableRng};

use crate::backend::Backend;
use crate::model::{scope_names, Model, ModelSpec, Workspace};
use crate::optim::{OptimConfig, RunLength};
use crate::train::max_batch;
use crate::{Error, Result};

/// One layer's mean time per step, in seconds.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerTime {
    pub index: usize,
    /// The layer as the model describes it, e.g. "Conv2d(1→32, 3×3, stride 1, padding 1)".
    pub layer: String,
    pub forward: f64,
    pub backward: f64,
    /// The layer whose ops run this one in training (a ReLU fused into the max-pool after it),
    /// whose times then include it; this layer's own times are 0.
    pub fused_into: Option<usize>,
}

/// What [`time_layers`] measured, per step.
#[derive(Clone, Debug, PartialEq)]
pub struct StepTiming {
    pub batch: usize,
    pub iterations: usize,
    pub layers: Vec<LayerTime>,
    /// Softmax cross-entropy and its gradient.
    pub loss: f64,
    /// The SGD update of every parameter.
    pub update: f64,
    /// The sum of everything above: time spent in ops.
    pub total: f64,
    /// Wall time per step of the same steps without profiling (ops plus every overhead).
    pub wall: f64,
}

impl StepTiming {
    /// Images per second at the unprofiled wall time.
    pub fn images_per_sec(&self) -> f64 {
        self.batch as f64 / self.wall
    }
}

/// Times `iterations` training steps of `spec` at `batch` on random inputs: one warm-up step
/// (pipeline and bind-group builds), then the profiled steps, then the same number unprofiled.
pub fn time_layers<B: Backend>(
    b: &B,
    spec: ModelSpec,
    batch: usize,
    iterations: usize,
    seed: u64,
) -> Result<StepTiming> {
    if batch == 0 || iterations == 0 {
        return Err(Error::InvalidParams(format!(
            "batch size and iterations must be at least 1, got {batch} and {iterations}"
        )));
    }
    let mut model = Model::new(b, spec, seed)?;
    let largest = max_batch(b, &model);
    if batch > largest {
        return Err(Error::Limit(format!(
            "batch size {batch} does not fit {}; the largest batch that fits is {largest}",
            b.describe()
        )));
    }
    let mut ws = Workspace::new(b, &model, batch)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let x: Vec<f32> = (0..batch * model.input_len())
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let y: Vec<u32> = (0..batch)
        .map(|_| rng.random_range(0..model.classes() as u32))
        .collect();
    let (xs, ys) = ws.input_and_labels_mut();
    b.write_f32(xs, &x)?;
    b.write_u32(ys, &y)?;
    let mut loss_sum = b.zeros(1, "loss_sum")?;
    // A tiny step keeps repeated updates on the same random batch finite.
    // The tutorial's SGD; the step scalars stay as written (constant lr, no clipping).
    let optim = OptimConfig::default();
    let run = RunLength {
        steps_per_epoch: 1,
        total_steps: 1,
    };
    let mut scalars = b.upload_f32(&optim.scalars(1e-4, 1, run).words(), "step scalars")?;

    model.train_step(b, &mut ws, &mut loss_sum, &optim, &mut scalars)?;
    b.read_f32(&loss_sum)?;

    b.start_profile()?;
    for _ in 0..iterations {
        model.train_step(b, &mut ws, &mut loss_sum, &optim, &mut scalars)?;
        b.flush()?;
    }
    let scopes = b.finish_profile()?;

    let t0 = Instant::now();
    for _ in 0..iterations {
        model.train_step(b, &mut ws, &mut loss_sum, &optim, &mut scalars)?;
        b.flush()?;
    }
    b.read_f32(&loss_sum)?;
    let wall = t0.elapsed().as_secs_f64() / iterations as f64;

    let per_step = |name: &str| {
        scopes
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |(_, t)| t / iterations as f64)
    };
    let layers: Vec<LayerTime> = model
        .spec()
        .layers
        .iter()
        .enumerate()
        .map(|(i, layer)| {
            let (f, bw) = scope_names(i);
            LayerTime {
                index: i,
                layer: layer.to_string(),
                forward: per_step(&f),
                backward: per_step(&bw),
                fused_into: model.fused_into_next(i).then_some(i + 1),
            }
        })
        .collect();
    let (loss, update) = (per_step("loss"), per_step("update"));
    let total = scopes.iter().map(|(_, t)| t).sum::<f64>() / iterations as f64;
    Ok(StepTiming {
        batch,
        iterations,
        layers,
        loss,
        update,
        total,
        wall,
    })
}
