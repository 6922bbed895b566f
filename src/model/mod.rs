//! Sequential models built from layers: a [`ModelSpec`] (input shape + [`Layer`]s, with shape
//! inference), a [`Model`] holding every parameter's value and gradient, its optimiser state
//! and its batch-norm statistics on a backend, and a [`Workspace`] per batch size holding every
//! activation and activation gradient.
//!
//! Everything is allocated once; [`Model::forward`], [`Model::loss`], [`Model::backward`] and
//! [`Model::update`] only record backend ops, so a training step allocates nothing and reads
//! nothing back.
//!
//! Each layer kind is one file (`conv2d.rs`, `relu.rs`, `pool2d.rs`, `flatten.rs`, `linear.rs`,
//! `dropout.rs`, `batch_norm.rs`): its shape rule, parameters, model-file table, forward and
//! backward together, registered in `layer.rs`. This file runs them in order.
//!
//! Parameter names follow PyTorch's `state_dict` (see [`Naming`]): with [`Naming::Numbered`]
//! (the presets) as the tutorial module's attributes, convolutions `conv1`, `conv2` …, linear
//! layers `fc1`, `fc2` …, batch norms `bn1` … (each kind numbered separately, in layer order);
//! with [`Naming::Sequential`] (model files) as an `nn.Sequential` held in an attribute
//! `layers`: `layers.<layer index>`. Each has `.weight` and `.bias`; a batch norm also has the
//! buffers `.running_mean`, `.running_var` and `.num_batches_tracked` ([`ModelSpec::buffer_names`]).
//!
//! Dropout and batch norm behave differently in training ([`Model::forward_train`], used by
//! [`Model::train_step`]) and in evaluation ([`Model::forward`]), as PyTorch's `train()` and
//! `eval()` modes. Linear weights are stored `[out, in]` as PyTorch stores them, so
//! the forward pass is `y = x·Wᵀ + b`.

mod batch_norm;
mod conv2d;
mod dropout;
pub mod file;
mod flatten;
mod layer;
mod linear;
mod params;
mod pool2d;
mod relu;
mod spec;
mod state;
mod workspace;

pub use layer::Layer;
pub use spec::{ModelSpec, Naming, Shape};
pub use state::{NamedTensor, NormBuffers, Param};
pub use workspace::Workspace;

use layer::{Backward, Forward, NormAccess, Pass};
use state::NormState;

use crate::backend::{Backend, SoftmaxXent};
use crate::optim::{OptimConfig, OptimState, Whole};
use crate::{Error, Result};

/// A sequential model whose parameters live on a backend.
pub struct Model<B: Backend> {
    spec: ModelSpec,
    /// Per-sample shapes: the input, then each layer's output.
    shapes: Vec<Shape>,
    /// For each activation (0 = input, i + 1 = output of layer i), the workspace buffer that
    /// holds it. Flatten's output shares its input's buffer.
    slots: Vec<usize>,
    /// For each layer, the range of its weight and bias in `params` (empty for layers without).
    layer_params: Vec<std::ops::Range<usize>>,
    /// The index of the first layer with parameters: layers at or before it need no input
    /// gradient.
    first_param_layer: usize,
    params: Vec<Param<B>>,
    /// Every parameter's value and gradient as one buffer each (views over the same memory as
    /// `params`), where the backend packs them ([`Backend::zeros_packed`]).
    whole: Option<(B::Buffer, B::Buffer)>,
    /// The optimiser's buffers, one set per parameter.
    optim: OptimState<B>,
    /// Each layer's profiling scopes (see [`scope_names`]), built once.
    scopes: Vec<(String, String)>,
    /// Each batch-norm layer's statistics (None for other layers).
    norms: Vec<Option<NormState<B>>>,
    /// For each layer, whether it is a ReLU that training runs fused into the max-pool after
    /// it ([`Backend::relu_maxpool2d_forward`]): one pass over the feature map instead of
    /// three, forward and backward. Evaluation runs every layer on its own, so
    /// [`Self::activation`] has every output.
    relu_into_pool: Vec<bool>,
    /// For each layer, whether it is a ReLU right after a linear layer that training runs in
    /// that layer's epilogue ([`Backend::matmul_bias`]): the linear layer writes the ReLU's
    /// output, and its own output buffer is left unwritten.
    relu_after_linear: Vec<bool>,
    /// For each layer, whether it is a ReLU right before a linear layer whose backward pass
    /// runs the ReLU's ([`Backend::matmul_relu_backward`]): the linear layer writes the
    /// gradient with respect to the ReLU's input, and the one with respect to its output is
    /// left unwritten.
    relu_before_linear: Vec<bool>,
    /// Seeds the dropout masks (see [`Model::set_rng`]).
    rng_seed: u64,
    /// Training forward passes so far: the step that keys the next dropout mask.
    train_steps: u64,
    /// [1] u32: the step of the last training forward pass, read by the dropout kernels.
    step_buf: B::Buffer,
}

/// The profiling scopes of layer `i` (`cnn-gpu time` reports per scope): "i forward" and
/// "i backward". The loss and the update are "loss" and "update".
pub fn scope_names(i: usize) -> (String, String) {
    (format!("{i} forward"), format!("{i} backward"))
}

impl<B: Backend> Model<B> {
    /// Builds the model and uploads PyTorch-style initial parameters drawn from `seed`
    /// (see [`ModelSpec::init_params`]).
    pub fn new(b: &B, spec: ModelSpec, seed: u64) -> Result<Self> {
        let init = spec.init_params(seed)?;
        let mut model = Self::with_params(b, spec, &init)?;
        model.set_rng(seed, 0);
        Ok(model)
    }

    /// Builds the model with the given parameters (every tensor of [`ModelSpec::param_shapes`],
    /// by name); its optimiser state is zero and its batch norms have PyTorch's initial
    /// statistics.
    pub fn with_params(b: &B, spec: ModelSpec, init: &[NamedTensor]) -> Result<Self> {
        let shapes = spec.infer_shapes()?;
        let mut slots = vec![0];
        for layer in &spec.layers {
            let last = *slots.last().expect("slot 0 is always there");
            slots.push(if *layer == Layer::Flatten {
                last
            } else {
                last + 1
            });
        }
        let mut sources = Vec::new();
        let mut layer_params = Vec::new();
        let mut names = spec.param_shapes()?.into_iter();
        for layer in &spec.layers {
            let start = sources.len();
            if layer.has_params() {
                for _ in ["weight", "bias"] {
                    let (name, shape) = names.next().expect("param_shapes lists every parameter");
                    let src = init.iter().find(|t| t.name == name).ok_or_else(|| {
                        Error::InvalidParams(format!("no initial value for parameter {name}"))
                    })?;
                    src.check(&name, &shape)?;
                    sources.push((name, shape, src));
                }
            }
            layer_params.push(start..sources.len());
        }
        // Values and gradients packed, so that the optimiser updates them all in one op.
        let lens: Vec<usize> = sources.iter().map(|(_, _, src)| src.data.len()).collect();
        let values = b.zeros_packed(&lens, "parameters")?;
        let grads = b.zeros_packed(&lens, "gradients")?;
        let mut params = Vec::with_capacity(sources.len());
        for (((name, shape, src), mut value), grad) in
            sources.into_iter().zip(values.parts).zip(grads.parts)
        {
            b.write_f32(&mut value, &src.data)?;
            params.push(Param {
                value,
                grad,
                name,
                shape,
            });
        }
        let whole = values.whole.zip(grads.whole);
        if let Some(extra) = init
            .iter()
            .find(|t| !params.iter().any(|p| p.name == t.name))
        {
            return Err(Error::InvalidParams(format!(
                "the model has no parameter named {}",
                extra.name
            )));
        }
        let first_param_layer = spec
            .layers
            .iter()
            .position(Layer::has_params)
            .expect("infer_shapes checked");
        let scopes = (0..spec.layers.len()).map(scope_names).collect();
        let mut norms = Vec::with_capacity(spec.layers.len());
        for (layer, name) in spec.layers.iter().zip(spec.layer_names()) {
            norms.push(match layer.norm_features() {
                Some(features) => Some(NormState::new(
                    b,
                    name.expect("a batch norm has a name"),
                    features,
                )?),
                None => None,
            });
        }
        let relu_into_pool = (0..spec.layers.len())
            .map(|i| {
                spec.layers[i] == Layer::Relu
                    && matches!(spec.layers.get(i + 1), Some(Layer::MaxPool2d { .. }))
            })
            .collect::<Vec<bool>>();
        let is_linear = |i: usize| matches!(spec.layers.get(i), Some(Layer::Linear { .. }));
        let relu_after_linear = (0..spec.layers.len())
            .map(|i| spec.layers[i] == Layer::Relu && i > 0 && is_linear(i - 1))
            .collect();
        // Only where the ReLU's input gradient is needed: after the first parameter layer.
        let relu_before_linear = (0..spec.layers.len())
            .map(|i| spec.layers[i] == Layer::Relu && i > first_param_layer && is_linear(i + 1))
            .collect();
        Ok(Model {
            whole,
            relu_into_pool,
            relu_after_linear,
            relu_before_linear,
            optim: OptimState::new(b, &params)?,
            spec,
            shapes,
            slots,
            layer_params,
            first_param_layer,
            params,
            scopes,
            norms,
            rng_seed: 0,
            train_steps: 0,
            step_buf: b.zeros(1, "dropout step")?,
        })
    }

    /// Keys the dropout masks: the mask of the next training step is drawn from (`seed`,
    /// `step`, layer, element), and `step` counts up by one per training forward pass.
    /// [`Model::new`] sets (its seed, 0); a resumed run sets the steps already taken.
    pub fn set_rng(&mut self, seed: u64, step: u64) {
        self.rng_seed = seed;
        self.train_steps = step;
    }

    /// Refuses a training batch that gives a batch norm one value per channel (no variance;
    /// PyTorch refuses it too), before any step: a training workspace checks it when built.
    fn check_train_batch(&self, batch: usize) -> Result<()> {
        for (i, layer) in self.spec.layers.iter().enumerate() {
            if let Some(p) = layer.batch_norm_params(self.shapes[i], batch) {
                if p.per_channel() < 2 {
                    return Err(Error::InvalidParams(format!(
                        "a training batch of {batch} gives layer {i} ({layer}) one value per \
                         channel, which has no variance; use a batch size that leaves no batch \
                         of 1 (the last batch of an epoch holds what remains)"
                    )));
                }
            }
        }
        Ok(())
    }

    pub fn spec(&self) -> &ModelSpec {
        &self.spec
    }

    /// Per-sample shapes of the input and of every layer's output.
    pub fn shapes(&self) -> &[Shape] {
        &self.shapes
    }

    /// Elements per input sample (C·H·W).
    pub fn input_len(&self) -> usize {
        self.shapes[0].numel()
    }

    /// The number of outputs per sample (the logits' width).
    pub fn classes(&self) -> usize {
        self.shapes.last().expect("never empty").numel()
    }

    pub fn params(&self) -> &[Param<B>] {
        &self.params
    }

    /// Total number of parameters.
    pub fn num_params(&self) -> usize {
        self.params.iter().map(Param::len).sum()
    }

    fn check_workspace(&self, ws: &Workspace<B>) -> Result<()> {
        if ws.acts.len() != *self.slots.last().expect("never empty") + 1
            || ws.input_len != self.input_len()
        {
            return Err(Error::InvalidParams(
                "the workspace was built for another model".into(),
            ));
        }
        Ok(())
    }

    /// Runs every layer on `ws`'s input in evaluation mode (dropout is the identity, batch
    /// norms use their running statistics), leaving every activation (and the logits) in `ws`.
    pub fn forward(&self, b: &B, ws: &mut Workspace<B>) -> Result<()> {
        self.run_forward(b, ws, false, &mut [])
    }

    /// [`Self::forward`] in training mode, as [`Self::backward`] expects: dropout draws the
    /// mask of this step, batch norms normalise with the batch's statistics and update their
    /// running ones. Counts one training step.
    pub fn forward_train(&mut self, b: &B, ws: &mut Workspace<B>) -> Result<()> {
        self.check_workspace(ws)?;
        if self
            .spec
            .layers
            .iter()
            .any(|l| matches!(l, Layer::Dropout { .. }))
        {
            // Wraps after 2³² steps, which only repeats masks.
            b.write_u32(&mut self.step_buf, &[self.train_steps as u32])?;
        }
        let mut norms = std::mem::take(&mut self.norms);
        let result = self.run_forward(b, ws, true, &mut norms);
        self.norms = norms;
        result?;
        for n in self.norms.iter_mut().flatten() {
            n.tracked += 1;
        }
        self.train_steps += 1;
        Ok(())
    }

    /// The forward pass. In training, `norms` holds the batch norms' state (taken out of
    /// `self.norms` for the pass); in evaluation it holds nothing and the layers read
    /// `self.norms`.
    fn run_forward(
        &self,
        b: &B,
        ws: &mut Workspace<B>,
        train: bool,
        norms: &mut [Option<NormState<B>>],
    ) -> Result<()> {
        self.check_workspace(ws)?;
        let n = ws.batch;
        for (i, layer) in self.spec.layers.iter().enumerate() {
            let (si, so) = (self.slots[i], self.slots[i + 1]);
            if si == so {
                continue; // Flatten
            }
            if train && (self.relu_into_pool[i] || self.relu_after_linear[i]) {
                continue; // the max-pool after it, or the linear layer before it, runs it
            }
            b.scope(&self.scopes[i].0);
            if train && i > 0 && self.relu_into_pool[i - 1] {
                // A max-pool after a ReLU: read the ReLU's input (activation i − 1).
                let (x, y) = read_write(&mut ws.acts, self.slots[i - 1], so);
                b.relu_maxpool2d_forward(&layer.pool(self.shapes[i], n), x, y)?;
                continue;
            }
            // A linear layer followed by a ReLU writes the ReLU's output (activation i + 2).
            let relu = train && self.relu_after_linear.get(i + 1) == Some(&true);
            let out = if relu { self.slots[i + 2] } else { so };
            let (x, y) = read_write(&mut ws.acts, si, out);
            let norm = if train {
                norms[i].as_mut().map(NormAccess::Train)
            } else {
                self.norms[i].as_ref().map(NormAccess::Eval)
            };
            let mut cx = Forward {
                b,
                index: i,
                batch: n,
                input: self.shapes[i],
                params: &self.params[self.layer_params[i].clone()],
                train,
                relu,
                norm,
                dropout_seed: self.rng_seed,
                step: &self.step_buf,
            };
            layer.forward(&mut cx, x, y)?;
        }
        Ok(())
    }

    /// The layer whose ops run layer `i` in training, so that it has no ops, nor times, of its
    /// own: `i + 1` for a ReLU fused into the max-pool after it; `i − 1` for a ReLU between two
    /// linear layers (its forward pass runs in the one before it, its backward pass in the one
    /// after it, `i + 1`). None for a layer that runs its own ops.
    pub fn fused_into(&self, i: usize) -> Option<usize> {
        let at = |v: &[bool]| v.get(i).copied().unwrap_or(false);
        if at(&self.relu_into_pool) {
            Some(i + 1)
        } else if at(&self.relu_after_linear) && at(&self.relu_before_linear) {
            Some(i - 1)
        } else {
            None
        }
    }

    /// Activation `i` of the last forward pass on `ws`: 0 is the input, `i + 1` the output of
    /// layer `i`, [N, shape] as [`Self::shapes`] gives it. After [`Self::forward`] every
    /// activation is there; a training pass ([`Self::forward_train`]) leaves the output of a
    /// ReLU that runs fused into the max-pool after it unwritten, and that of a linear layer
    /// whose ReLU runs fused into it.
    pub fn activation<'w>(&self, ws: &'w Workspace<B>, i: usize) -> Result<&'w B::Buffer> {
        self.check_workspace(ws)?;
        let slot = *self.slots.get(i).ok_or_else(|| {
            Error::InvalidParams(format!(
                "activation {i} of a model with {} layers",
                self.spec.layers.len()
            ))
        })?;
        Ok(&ws.acts[slot])
    }

    /// Softmax cross-entropy of the logits against `ws`'s labels: adds the batch mean to
    /// `loss_sum[0]` and writes the logits' gradient into `ws` (ready for [`Self::backward`]).
    pub fn loss(&self, b: &B, ws: &mut Workspace<B>, loss_sum: &mut B::Buffer) -> Result<()> {
        self.check_workspace(ws)?;
        let last = *self.slots.last().expect("never empty");
        let p = SoftmaxXent {
            batch: ws.batch,
            classes: self.classes(),
        };
        b.scope("loss");
        let dlogits = ws.grads[last].as_mut().ok_or_else(|| {
            Error::InvalidParams("loss needs a training workspace (Workspace::new)".into())
        })?;
        b.softmax_cross_entropy(&p, &ws.acts[last], &ws.labels, loss_sum, dlogits)
    }

    /// Adds the number of samples whose arg-max logit equals the label to `correct[0]`.
    pub fn count_correct(&self, b: &B, ws: &Workspace<B>, correct: &mut B::Buffer) -> Result<()> {
        self.check_workspace(ws)?;
        let last = *self.slots.last().expect("never empty");
        let p = SoftmaxXent {
            batch: ws.batch,
            classes: self.classes(),
        };
        b.count_correct(&p, &ws.acts[last], &ws.labels, correct)
    }

    /// Back-propagates the logits' gradient left by [`Self::loss`] through every layer,
    /// overwriting every parameter gradient. Needs the activations of the last
    /// [`Self::forward_train`] on the same workspace (or of [`Self::forward`] for a model
    /// without dropout or batch norm).
    pub fn backward(&mut self, b: &B, ws: &mut Workspace<B>) -> Result<()> {
        self.check_workspace(ws)?;
        if ws.grads.iter().all(Option::is_none) {
            return Err(Error::InvalidParams(
                "backward needs a training workspace (Workspace::new)".into(),
            ));
        }
        let n = ws.batch;
        for (i, layer) in self.spec.layers.iter().enumerate().rev() {
            let (si, so) = (self.slots[i], self.slots[i + 1]);
            if si == so {
                continue; // Flatten: the gradient buffer is shared too
            }
            if self.relu_into_pool[i] || self.relu_before_linear[i] {
                continue; // the layer after it ran its backward pass
            }
            b.scope(&self.scopes[i].1);
            if i > 0 && self.relu_into_pool[i - 1] {
                // A max-pool after a ReLU: the gradient with respect to the ReLU's input.
                if i - 1 > self.first_param_layer {
                    let sr = self.slots[i - 1];
                    let (dy, dx) = read_write(&mut ws.grads, so, sr);
                    let dy = dy.as_ref().expect("every activation has a gradient");
                    let dx = dx
                        .as_mut()
                        .expect("activations after a parameter layer too");
                    let p = layer.pool(self.shapes[i], n);
                    b.relu_maxpool2d_backward(&p, &ws.acts[sr], dy, dx)?;
                }
                continue;
            }
            let need_dx = i > self.first_param_layer;
            // A linear layer after a fused ReLU writes the ReLU's input gradient (i − 1).
            let relu_before = i > 0 && self.relu_before_linear[i - 1];
            let dx_slot = if relu_before { self.slots[i - 1] } else { si };
            let (dy, dx) = read_write(&mut ws.grads, so, dx_slot);
            let pass = Pass {
                x: &ws.acts[si],
                y: &ws.acts[so],
                dy: dy
                    .as_ref()
                    .expect("every activation after the input has a gradient"),
                dx: if need_dx {
                    Some(
                        dx.as_mut()
                            .expect("activations after a parameter layer have a gradient"),
                    )
                } else {
                    None
                },
            };
            let mut cx = Backward {
                b,
                index: i,
                batch: n,
                input: self.shapes[i],
                params: &mut self.params[self.layer_params[i].clone()],
                norm: self.norms[i].as_ref(),
                dropout_seed: self.rng_seed,
                step: &self.step_buf,
                relu_before,
            };
            layer.backward(&mut cx, pass)?;
        }
        Ok(())
    }

    /// One training step on the batch already in `ws` (see [`Workspace::input_and_labels_mut`]):
    /// forward, loss (added to `loss_sum[0]`), backward and an update (see [`Self::update`]).
    /// Only records ops; nothing is read back.
    pub fn train_step(
        &mut self,
        b: &B,
        ws: &mut Workspace<B>,
        loss_sum: &mut B::Buffer,
        optim: &OptimConfig,
        scalars: &mut B::Buffer,
    ) -> Result<()> {
        self.forward_train(b, ws)?;
        self.loss(b, ws, loss_sum)?;
        self.backward(b, ws)?;
        self.update(b, optim, scalars)
    }

    /// One optimiser update of every parameter from its current gradient (see
    /// [`OptimState::update`]).
    pub fn update(&mut self, b: &B, optim: &OptimConfig, scalars: &mut B::Buffer) -> Result<()> {
        let whole = self
            .whole
            .as_mut()
            .map(|(values, grads)| Whole { values, grads });
        self.optim
            .update(b, optim, &mut self.params, whole, scalars)
    }
}

/// Borrows `v[r]` shared and `v[w]` exclusively (`r != w`).
fn read_write<T>(v: &mut [T], r: usize, w: usize) -> (&T, &mut T) {
    assert_ne!(r, w, "read_write needs two different elements");
    if r < w {
        let (a, b) = v.split_at_mut(w);
        (&a[r], &mut b[0])
    } else {
        let (a, b) = v.split_at_mut(r);
        (&b[0], &mut a[w])
    }
}
