//! Per-layer timing of a training step, as Caffe's `caffe time`: the `cnn-gpu time` command.
//! On the GPU the times come from timestamp queries around each kernel (the wall clock, with a
//! wait at each layer, where the adapter has none); on the CPU from the wall clock. Also the
//! step plan (`cnn-gpu time --plan`): one step's dispatches as the GPU backend records them.

use web_time::Instant;

use rand::{Rng, SeedableRng};

use crate::backend::gpu::{GpuBackend, PlannedDispatch};
use crate::backend::Backend;
use crate::model::{scope_names, Layer, Model, ModelSpec, Workspace};
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
    /// The layer whose ops run this one in training (a ReLU fused into the max-pool after it,
    /// or into the linear layer before it, whose backward pass then runs in the linear layer
    /// after it), whose times then include it; this layer's own times are 0.
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
    let mut rig = Rig::new(b, spec, batch, seed)?;
    rig.step(b)?;
    b.read_f32(&rig.loss_sum)?;

    b.start_profile()?;
    for _ in 0..iterations {
        rig.step(b)?;
        b.flush()?;
    }
    let scopes = b.finish_profile()?;

    let t0 = Instant::now();
    for _ in 0..iterations {
        rig.step(b)?;
        b.flush()?;
    }
    b.read_f32(&rig.loss_sum)?;
    let wall = t0.elapsed().as_secs_f64() / iterations as f64;

    let per_step = |name: &str| {
        scopes
            .iter()
            .find(|(n, _)| n == name)
            .map_or(0.0, |(_, t)| t / iterations as f64)
    };
    let model = &rig.model;
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
                fused_into: model.fused_into(i),
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

/// Floating-point work per training image of `spec` in its matrix products (the step bench's
/// GFLOP/s, and what the step plan's GEMM dispatches add up to): for each convolution and
/// linear layer, its forward pass and weight gradient, and its input gradient unless it is the
/// first layer with parameters (`Model::backward` skips that one), each pass costing the
/// forward's multiply-adds.
pub fn gemm_flops_per_image(spec: &ModelSpec) -> Result<f64> {
    let shapes = spec.infer_shapes()?;
    let first = spec.layers.iter().position(Layer::has_params);
    let mut macs = 0.0;
    for (i, (layer, out)) in spec.layers.iter().zip(&shapes[1..]).enumerate() {
        let forward = match *layer {
            Layer::Conv2d {
                in_channels,
                kernel_h,
                kernel_w,
                ..
            } => out.numel() * in_channels * kernel_h * kernel_w,
            Layer::Linear {
                in_features,
                out_features,
            } => in_features * out_features,
            _ => continue,
        };
        let passes = if Some(i) == first { 2.0 } else { 3.0 };
        macs += passes * forward as f64;
    }
    Ok(2.0 * macs)
}

/// One training step's model, workspace and inputs: a random batch, and the tutorial's SGD.
struct Rig<B: Backend> {
    model: Model<B>,
    ws: Workspace<B>,
    loss_sum: B::Buffer,
    optim: OptimConfig,
    scalars: B::Buffer,
}

impl<B: Backend> Rig<B> {
    fn new(b: &B, spec: ModelSpec, batch: usize, seed: u64) -> Result<Self> {
        let model = Model::new(b, spec, seed)?;
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
        let loss_sum = b.zeros(1, "loss_sum")?;
        // A tiny step keeps repeated updates on the same random batch finite.
        // The tutorial's SGD; the step scalars stay as written (constant lr, no clipping).
        let optim = OptimConfig::default();
        let run = RunLength {
            steps_per_epoch: 1,
            total_steps: 1,
        };
        let scalars = b.upload_f32(&optim.scalars(1e-4, 1, run).words(), "step scalars")?;
        Ok(Rig {
            model,
            ws,
            loss_sum,
            optim,
            scalars,
        })
    }

    /// Records one training step.
    fn step(&mut self, b: &B) -> Result<()> {
        self.model.train_step(
            b,
            &mut self.ws,
            &mut self.loss_sum,
            &self.optim,
            &mut self.scalars,
        )
    }
}

/// One training step as the GPU backend records it: see [`plan_step`].
#[derive(Clone, Debug)]
pub struct StepPlan {
    pub batch: usize,
    /// Every dispatch of one step, in order.
    pub dispatches: Vec<PlannedDispatch>,
    /// The host's time to record one step and submit it (the median of the timed steps), in
    /// seconds: CPU time, with the GPU's execution not waited for.
    pub record_submit: f64,
}

impl StepPlan {
    pub fn total_flops(&self) -> f64 {
        self.dispatches.iter().map(|d| d.flops).sum()
    }
    pub fn total_bytes(&self) -> f64 {
        self.dispatches.iter().map(|d| d.bytes).sum()
    }
}

/// Records one training step of `spec` at `batch` on random inputs after a warm-up step (so
/// every pipeline, uniform and bind group exists) and logs its dispatches through the backend's
/// own dispatch path; then times recording and submitting `timed` more steps on the host,
/// waiting for the GPU after each outside the timed span.
pub fn plan_step(
    gpu: &GpuBackend,
    spec: ModelSpec,
    batch: usize,
    seed: u64,
    timed: usize,
) -> Result<StepPlan> {
    if batch == 0 {
        return Err(Error::InvalidParams("batch size must be at least 1".into()));
    }
    let mut rig = Rig::new(gpu, spec, batch, seed)?;
    rig.step(gpu)?;
    gpu.read_f32(&rig.loss_sum)?;
    gpu.start_plan();
    let planned = rig.step(gpu).and_then(|()| gpu.flush());
    let dispatches = gpu.finish_plan();
    planned?;
    gpu.read_f32(&rig.loss_sum)?;
    let mut times = Vec::with_capacity(timed);
    for _ in 0..timed {
        let t0 = Instant::now();
        rig.step(gpu)?;
        gpu.flush()?;
        times.push(t0.elapsed().as_secs_f64());
        gpu.read_f32(&rig.loss_sum)?;
    }
    times.sort_by(f64::total_cmp);
    let record_submit = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    Ok(StepPlan {
        batch,
        dispatches,
        record_submit,
    })
}
