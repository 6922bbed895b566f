//! Sequential models built from layers: a [`ModelSpec`] (input shape + [`Layer`]s, with shape
//! inference), a [`Model`] holding every parameter's value, gradient and optimiser state on a
//! backend, and a [`Workspace`] per batch size holding every activation and activation gradient.
//!
//! Everything is allocated once; [`Model::forward`], [`Model::loss`], [`Model::backward`] and
//! [`Model::update`] only record backend ops, so a training step allocates nothing and reads
//! nothing back.
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

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::backend::{
    pcg_hash, Backend, BatchNorm, Channels, Conv2d, Dropout, Matmul, Pool2d, SoftmaxXent,
};
use crate::optim::{OptimConfig, Optimizer};
use crate::{Error, Result};

/// One layer of a sequential model. Sizes are per sample; the batch size comes from the
/// [`Workspace`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Layer {
    Conv2d {
        in_channels: usize,
        out_channels: usize,
        kernel_h: usize,
        kernel_w: usize,
        stride: usize,
        padding: usize,
    },
    Relu,
    MaxPool2d {
        kernel: usize,
        stride: usize,
    },
    AvgPool2d {
        kernel: usize,
        stride: usize,
    },
    /// C,H,W → C·H·W features; a no-op on the buffer (N,C,H,W is contiguous per sample).
    Flatten,
    Linear {
        in_features: usize,
        out_features: usize,
    },
    /// Inverted dropout: in training each value is zeroed with probability `p` and the others
    /// scaled by 1/(1 − p); the identity in evaluation.
    Dropout {
        p: f32,
    },
    /// PyTorch's BatchNorm2d over a C,H,W map (C = `features`): batch statistics in training,
    /// running statistics in evaluation; eps 1e-5, momentum 0.1, affine.
    BatchNorm2d {
        features: usize,
    },
    /// PyTorch's BatchNorm1d over flat features, as [`Layer::BatchNorm2d`].
    BatchNorm1d {
        features: usize,
    },
}

impl Layer {
    /// This layer's convolution at `batch` on a per-sample `input` (None for other layers or a
    /// flat input): the one place a layer becomes backend parameters.
    pub fn conv2d_params(&self, input: Shape, batch: usize) -> Option<Conv2d> {
        match (*self, input) {
            (
                Layer::Conv2d {
                    in_channels,
                    out_channels,
                    kernel_h,
                    kernel_w,
                    stride,
                    padding,
                },
                Shape::Map { h, w, .. },
            ) => Some(Conv2d {
                batch,
                in_channels,
                in_h: h,
                in_w: w,
                out_channels,
                kernel_h,
                kernel_w,
                stride,
                padding,
            }),
            _ => None,
        }
    }

    /// This layer's pooling window at `batch` on a per-sample `input` (None for other layers
    /// or a flat input).
    pub fn pool2d_params(&self, input: Shape, batch: usize) -> Option<Pool2d> {
        match (*self, input) {
            (
                Layer::MaxPool2d { kernel, stride } | Layer::AvgPool2d { kernel, stride },
                Shape::Map { c, h, w },
            ) => Some(Pool2d {
                batch,
                channels: c,
                in_h: h,
                in_w: w,
                kernel,
                stride,
            }),
            _ => None,
        }
    }

    /// This layer's batch norm at `batch` (None for other layers).
    pub fn batch_norm_params(&self, input: Shape, batch: usize) -> Option<BatchNorm> {
        let shape = match (*self, input) {
            (Layer::BatchNorm2d { .. }, Shape::Map { c, h, w }) => Channels {
                outer: batch,
                channels: c,
                inner: h * w,
            },
            (Layer::BatchNorm1d { .. }, Shape::Flat(n)) => Channels {
                outer: batch,
                channels: n,
                inner: 1,
            },
            _ => return None,
        };
        Some(BatchNorm::new(shape))
    }

    /// Whether the layer has a weight and a bias.
    pub fn has_params(&self) -> bool {
        matches!(
            self,
            Layer::Conv2d { .. }
                | Layer::Linear { .. }
                | Layer::BatchNorm2d { .. }
                | Layer::BatchNorm1d { .. }
        )
    }

    /// The attribute name [`Naming::Numbered`] gives this kind of layer (`conv`, `fc`, `bn`).
    fn numbered_prefix(&self) -> Option<&'static str> {
        match self {
            Layer::Conv2d { .. } => Some("conv"),
            Layer::Linear { .. } => Some("fc"),
            Layer::BatchNorm2d { .. } | Layer::BatchNorm1d { .. } => Some("bn"),
            _ => None,
        }
    }
}

impl fmt::Display for Layer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Layer::Conv2d { in_channels, out_channels, kernel_h, kernel_w, stride, padding } => write!(
                f,
                "Conv2d({in_channels}→{out_channels}, {kernel_h}×{kernel_w}, stride {stride}, padding {padding})"
            ),
            Layer::Relu => write!(f, "ReLU"),
            Layer::MaxPool2d { kernel, stride } => write!(f, "MaxPool2d({kernel}, stride {stride})"),
            Layer::AvgPool2d { kernel, stride } => write!(f, "AvgPool2d({kernel}, stride {stride})"),
            Layer::Flatten => write!(f, "Flatten"),
            Layer::Linear { in_features, out_features } => {
                write!(f, "Linear({in_features}→{out_features})")
            }
            Layer::Dropout { p } => write!(f, "Dropout(p {p})"),
            Layer::BatchNorm2d { features } => write!(f, "BatchNorm2d({features})"),
            Layer::BatchNorm1d { features } => write!(f, "BatchNorm1d({features})"),
        }
    }
}

/// The shape of one sample's activation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Shape {
    /// A C,H,W feature map.
    Map { c: usize, h: usize, w: usize },
    /// A vector of features.
    Flat(usize),
}

impl Shape {
    /// Elements per sample.
    pub fn numel(&self) -> usize {
        match *self {
            Shape::Map { c, h, w } => c * h * w,
            Shape::Flat(n) => n,
        }
    }
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Shape::Map { c, h, w } => write!(f, "[{c}, {h}, {w}]"),
            Shape::Flat(n) => write!(f, "[{n}]"),
        }
    }
}

/// How parameters are named (see the module docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Naming {
    /// `conv1`, `fc1`, `bn1` …: each kind numbered in layer order, as the tutorial's module
    /// names its attributes (the presets).
    #[default]
    Numbered,
    /// `layers.<index>`: the layer's index in the model, as an `nn.Sequential` stored in an
    /// attribute `layers` names it (the default for model files).
    Sequential,
}

/// A sequential model: the per-sample input shape (C,H,W), the layers in order and how their
/// parameters are named.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelSpec {
    pub input: (usize, usize, usize),
    pub layers: Vec<Layer>,
    pub naming: Naming,
}

impl Default for ModelSpec {
    fn default() -> Self {
        Self::simple_cnn()
    }
}

impl ModelSpec {
    /// The tutorial's SimpleCNN for 1×28×28 images and 10 classes (`models/simple-cnn.toml`):
    /// conv(1→32, 3×3, pad 1) → ReLU → maxpool 2 → conv(32→64, 3×3, pad 1) → ReLU → maxpool 2 →
    /// flatten → linear(3136→64) → ReLU → linear(64→10). 220,234 parameters.
    pub fn simple_cnn() -> Self {
        Self::from_toml(include_str!("../models/simple-cnn.toml"))
            .expect("models/simple-cnn.toml is a valid model (tests/model_file.rs)")
    }

    /// LeNet-5 as commonly written for 28×28 MNIST in PyTorch (`models/lenet5.toml`), with
    /// ReLU rather than tanh: conv(1→6, 5×5, pad 2) → ReLU → maxpool 2 → conv(6→16, 5×5) →
    /// ReLU → maxpool 2 → flatten → linear(400→120) → ReLU → linear(120→84) → ReLU →
    /// linear(84→10). 61,706 parameters.
    pub fn lenet5() -> Self {
        Self::from_toml(include_str!("../models/lenet5.toml"))
            .expect("models/lenet5.toml is a valid model (tests/model_file.rs)")
    }

    /// The Fashion-MNIST recipe's network (`models/fashion-cnn.toml`): SimpleCNN's
    /// convolutions each followed by batch norm, then dropout 0.25 → linear(3136→128) →
    /// BatchNorm1d → ReLU → dropout 0.5 → linear(128→10), named as an `nn.Sequential`.
    /// 422,090 parameters.
    pub fn fashion_cnn() -> Self {
        Self::from_toml(include_str!("../models/fashion-cnn.toml"))
            .expect("models/fashion-cnn.toml is a valid model (tests/model_file.rs)")
    }

    /// The preset called `name` (one of [`Self::PRESETS`]).
    pub fn preset(name: &str) -> Option<Self> {
        match name {
            "simple-cnn" => Some(Self::simple_cnn()),
            "lenet5" => Some(Self::lenet5()),
            "fashion-cnn" => Some(Self::fashion_cnn()),
            _ => None,
        }
    }

    /// The names of the presets, for messages.
    pub const PRESETS: [&'static str; 3] = ["simple-cnn", "lenet5", "fashion-cnn"];

    /// The per-sample shapes of the input and of every layer's output (`layers.len() + 1`
    /// entries), or an error naming the first layer that does not fit its input.
    pub fn infer_shapes(&self) -> Result<Vec<Shape>> {
        let (c, h, w) = self.input;
        if c == 0 || h == 0 || w == 0 {
            return Err(Error::InvalidParams(format!(
                "model input shape [{c}, {h}, {w}] has a zero size"
            )));
        }
        let mut shapes = vec![Shape::Map { c, h, w }];
        for (i, layer) in self.layers.iter().enumerate() {
            let input = *shapes.last().expect("the input shape is always there");
            let out = layer_output(layer, input)
                .map_err(|why| Error::InvalidParams(format!("layer {i} ({layer}): {why}")))?;
            shapes.push(out);
        }
        if !self.layers.iter().any(Layer::has_params) {
            return Err(Error::InvalidParams(
                "the model has no layer with parameters".into(),
            ));
        }
        Ok(shapes)
    }

    /// The PyTorch module name of every layer with parameters (None for the others), by
    /// [`Self::naming`].
    pub fn layer_names(&self) -> Vec<Option<String>> {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        self.layers
            .iter()
            .enumerate()
            .map(|(i, layer)| {
                let prefix = layer.numbered_prefix()?;
                Some(match self.naming {
                    Naming::Sequential => format!("layers.{i}"),
                    Naming::Numbered => {
                        let n = match counts.iter_mut().find(|(p, _)| *p == prefix) {
                            Some((_, n)) => {
                                *n += 1;
                                *n
                            }
                            None => {
                                counts.push((prefix, 1));
                                1
                            }
                        };
                        format!("{prefix}{n}")
                    }
                })
            })
            .collect()
    }

    /// Names and shapes of every parameter tensor, in initialisation order.
    pub fn param_shapes(&self) -> Result<Vec<(String, Vec<usize>)>> {
        self.infer_shapes()?;
        let mut out = Vec::new();
        for (layer, name) in self.layers.iter().zip(self.layer_names()) {
            let Some(name) = name else { continue };
            let (weight, bias) = match *layer {
                Layer::Conv2d {
                    in_channels,
                    out_channels,
                    kernel_h,
                    kernel_w,
                    ..
                } => (
                    vec![out_channels, in_channels, kernel_h, kernel_w],
                    out_channels,
                ),
                Layer::Linear {
                    in_features,
                    out_features,
                } => (vec![out_features, in_features], out_features),
                Layer::BatchNorm2d { features } | Layer::BatchNorm1d { features } => {
                    (vec![features], features)
                }
                _ => unreachable!("only layers with parameters have names"),
            };
            out.push((format!("{name}.weight"), weight));
            out.push((format!("{name}.bias"), vec![bias]));
        }
        Ok(out)
    }

    /// The module names of the batch-norm layers, whose buffers PyTorch's `state_dict` holds as
    /// `<name>.running_mean`, `<name>.running_var` (f32 [features]) and
    /// `<name>.num_batches_tracked` (an i64 scalar).
    pub fn buffer_names(&self) -> Vec<(String, usize)> {
        self.layers
            .iter()
            .zip(self.layer_names())
            .filter_map(|(layer, name)| match *layer {
                Layer::BatchNorm2d { features } | Layer::BatchNorm1d { features } => {
                    Some((name.expect("a batch norm has a name"), features))
                }
                _ => None,
            })
            .collect()
    }

    /// Total number of parameters.
    pub fn num_params(&self) -> Result<usize> {
        Ok(self
            .param_shapes()?
            .iter()
            .map(|(_, s)| s.iter().product::<usize>())
            .sum())
    }

    /// PyTorch's default initialisation, drawn on the host: every convolution and linear
    /// weight and bias uniform in ±1/√fan_in (fan_in = in_channels·kh·kw or in_features), from
    /// a ChaCha8 stream seeded with `seed`, tensor by tensor in [`Self::param_shapes`] order
    /// (weight before bias), elements in row-major order. Batch-norm weights are 1 and biases
    /// 0, as PyTorch's, and draw nothing from the stream.
    pub fn init_params(&self, seed: u64) -> Result<Vec<NamedTensor>> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::new();
        let norms: Vec<String> = self.buffer_names().into_iter().map(|(n, _)| n).collect();
        for (name, shape) in self.param_shapes()? {
            let module = name.rsplit_once('.').map_or("", |(m, _)| m);
            if norms.iter().any(|n| n == module) {
                let value = if name.ends_with(".weight") { 1.0 } else { 0.0 };
                let data = vec![value; shape.iter().product()];
                out.push(NamedTensor { name, shape, data });
                continue;
            }
            // Weights are [out, in, (kh, kw)]: fan_in is everything after the first dimension.
            // A bias shares its layer's fan_in, which is the weight pushed just before it.
            let fan_in: usize = if name.ends_with(".bias") {
                let w: &NamedTensor = out.last().expect("a bias follows its weight");
                w.shape[1..].iter().product()
            } else {
                shape[1..].iter().product()
            };
            let bound = 1.0 / (fan_in as f32).sqrt();
            let len: usize = shape.iter().product();
            let data = (0..len).map(|_| rng.random_range(-bound..bound)).collect();
            out.push(NamedTensor { name, shape, data });
        }
        Ok(out)
    }
}

/// The per-sample output shape of `layer` for `input`, or why it does not fit.
fn layer_output(layer: &Layer, input: Shape) -> std::result::Result<Shape, String> {
    let map = |what: &str| match input {
        Shape::Map { c, h, w } => Ok((c, h, w)),
        Shape::Flat(n) => Err(format!(
            "needs a C,H,W input for {what}, got {n} flat features"
        )),
    };
    match *layer {
        Layer::Conv2d {
            in_channels,
            out_channels,
            kernel_h,
            kernel_w,
            stride,
            padding,
        } => {
            let (c, h, w) = map("a convolution")?;
            if c != in_channels {
                return Err(format!(
                    "expects {in_channels} input channels, got {c} ({input})"
                ));
            }
            if out_channels == 0 || kernel_h == 0 || kernel_w == 0 || stride == 0 {
                return Err("has a zero size or stride".into());
            }
            if kernel_h > h + 2 * padding || kernel_w > w + 2 * padding {
                return Err(format!(
                    "kernel {kernel_h}×{kernel_w} is larger than the padded input {}×{}",
                    h + 2 * padding,
                    w + 2 * padding
                ));
            }
            let oh = (h + 2 * padding - kernel_h) / stride + 1;
            let ow = (w + 2 * padding - kernel_w) / stride + 1;
            Ok(Shape::Map {
                c: out_channels,
                h: oh,
                w: ow,
            })
        }
        Layer::Relu => Ok(input),
        Layer::MaxPool2d { kernel, stride } | Layer::AvgPool2d { kernel, stride } => {
            let (c, h, w) = map("pooling")?;
            if kernel == 0 || stride == 0 {
                return Err("has a zero window or stride".into());
            }
            if kernel > h || kernel > w {
                return Err(format!("window {kernel} is larger than the input {h}×{w}"));
            }
            Ok(Shape::Map {
                c,
                h: (h - kernel) / stride + 1,
                w: (w - kernel) / stride + 1,
            })
        }
        Layer::Flatten => Ok(Shape::Flat(input.numel())),
        Layer::Dropout { p } => {
            if (0.0..1.0).contains(&p) {
                Ok(input)
            } else {
                Err(format!("drop probability must be in [0, 1), got {p}"))
            }
        }
        Layer::BatchNorm2d { features } => match input {
            Shape::Map { c, .. } if c == features => Ok(input),
            Shape::Map { c, .. } => Err(format!("expects {features} channels, got {c} ({input})")),
            Shape::Flat(n) => Err(format!(
                "needs a C,H,W input, got {n} flat features (use BatchNorm1d after a flatten)"
            )),
        },
        Layer::BatchNorm1d { features } => match input {
            Shape::Flat(n) if n == features => Ok(input),
            Shape::Flat(n) => Err(format!("expects {features} features, got {n}")),
            Shape::Map { .. } => Err(format!(
                "needs flat features, got {input} (use BatchNorm2d on a feature map)"
            )),
        },
        Layer::Linear {
            in_features,
            out_features,
        } => match input {
            Shape::Flat(n) if n == in_features => {
                if out_features == 0 {
                    Err("has zero output features".into())
                } else {
                    Ok(Shape::Flat(out_features))
                }
            }
            Shape::Flat(n) => Err(format!("expects {in_features} input features, got {n}")),
            Shape::Map { .. } => Err(format!(
                "needs a flat input, got {input} (add a Flatten layer before it)"
            )),
        },
    }
}

/// A host copy of one named tensor (a parameter or its gradient), row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// One parameter tensor on the backend: its value, its gradient (overwritten by every
/// backward pass) and its optimiser state.
pub struct Param<B: Backend> {
    pub name: String,
    pub shape: Vec<usize>,
    pub value: B::Buffer,
    pub grad: B::Buffer,
    /// SGD's momentum buffer, or Adam's first moment (exp_avg).
    pub velocity: B::Buffer,
    /// Adam's second moment (exp_avg_sq): allocated, zero, by the first Adam update or
    /// [`Model::set_exp_avg_sq`]; None until then.
    pub exp_avg_sq: Option<B::Buffer>,
}

impl<B: Backend> Param<B> {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A sequential model whose parameters live on a backend.
pub struct Model<B: Backend> {
    spec: ModelSpec,
    /// Per-sample shapes: the input, then each layer's output.
    shapes: Vec<Shape>,
    /// For each activation (0 = input, i + 1 = output of layer i), the workspace buffer that
    /// holds it. Flatten's output shares its input's buffer.
    slots: Vec<usize>,
    /// For each layer with parameters, the indices of its weight and bias in `params`.
    layer_params: Vec<Option<(usize, usize)>>,
    /// The index of the first layer with parameters: layers at or before it need no input
    /// gradient.
    first_param_layer: usize,
    params: Vec<Param<B>>,
    /// Each layer's profiling scopes (see [`scope_names`]), built once.
    scopes: Vec<(String, String)>,
    /// Each batch-norm layer's statistics (None for other layers).
    norms: Vec<Option<NormState<B>>>,
    /// For each layer, whether it is a ReLU that training runs fused into the max-pool after
    /// it ([`Backend::relu_maxpool2d_forward`]): one pass over the feature map instead of
    /// three, forward and backward. Evaluation runs every layer on its own, so
    /// [`Self::activation`] has every output.
    relu_into_pool: Vec<bool>,
    /// Seeds the dropout masks (see [`Model::set_rng`]).
    rng_seed: u64,
    /// Training forward passes so far: the step that keys the next dropout mask.
    train_steps: u64,
    /// [1] u32: the step of the last training forward pass, read by the dropout kernels.
    step_buf: B::Buffer,
}

/// One batch-norm layer's statistics: the running ones (PyTorch's buffers) and those of the
/// last training batch (for the backward pass). Both are [means; variances].
struct NormState<B: Backend> {
    name: String,
    features: usize,
    running: B::Buffer,
    batch: B::Buffer,
    /// PyTorch's `num_batches_tracked`: training forward passes through this layer.
    tracked: i64,
}

/// A batch-norm layer's buffers on the host, named as in PyTorch's `state_dict`.
#[derive(Clone, Debug, PartialEq)]
pub struct NormBuffers {
    /// The module name, e.g. `bn1` or `layers.1`.
    pub name: String,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
    pub num_batches_tracked: i64,
}

impl NormBuffers {
    /// PyTorch's initial values: means 0, variances 1, nothing tracked.
    pub fn initial(name: &str, features: usize) -> Self {
        NormBuffers {
            name: name.to_string(),
            running_mean: vec![0.0; features],
            running_var: vec![1.0; features],
            num_batches_tracked: 0,
        }
    }
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

    /// Builds the model with a checkpoint's parameters and batch-norm statistics (its momentum
    /// buffers are left at zero).
    pub fn from_checkpoint(
        b: &B,
        spec: ModelSpec,
        ckpt: &crate::checkpoint::Checkpoint,
    ) -> Result<Self> {
        let mut model = Self::with_params(b, spec, &ckpt.params)?;
        model.set_norm_buffers(b, &ckpt.norms)?;
        Ok(model)
    }

    /// Builds the model with the given parameters (every tensor of [`ModelSpec::param_shapes`],
    /// by name).
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
        let mut params = Vec::new();
        let mut layer_params = Vec::new();
        let names = spec.param_shapes()?;
        let mut names = names.into_iter();
        for layer in &spec.layers {
            if !layer.has_params() {
                layer_params.push(None);
                continue;
            }
            let mut idx = [0; 2];
            for slot in &mut idx {
                let (name, shape) = names.next().expect("param_shapes lists every parameter");
                let src = init.iter().find(|t| t.name == name).ok_or_else(|| {
                    Error::InvalidParams(format!("no initial value for parameter {name}"))
                })?;
                check_tensor(src, &name, &shape)?;
                let len = src.data.len();
                *slot = params.len();
                params.push(Param {
                    value: b.upload_f32(&src.data, &name)?,
                    grad: b.zeros(len, &format!("{name}.grad"))?,
                    velocity: b.zeros(len, &format!("{name}.velocity"))?,
                    exp_avg_sq: None,
                    name,
                    shape,
                });
            }
            layer_params.push(Some((idx[0], idx[1])));
        }
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
        let names = spec.layer_names();
        let mut norms = Vec::with_capacity(spec.layers.len());
        for (layer, name) in spec.layers.iter().zip(names) {
            norms.push(match *layer {
                Layer::BatchNorm2d { features } | Layer::BatchNorm1d { features } => {
                    let name = name.expect("a batch norm has a name");
                    let init = NormBuffers::initial(&name, features);
                    Some(NormState {
                        running: b.upload_f32(
                            &[init.running_mean, init.running_var].concat(),
                            &format!("{name}.running"),
                        )?,
                        batch: b.zeros(2 * features, &format!("{name}.batch_stats"))?,
                        name,
                        features,
                        tracked: 0,
                    })
                }
                _ => None,
            });
        }
        let relu_into_pool = (0..spec.layers.len())
            .map(|i| {
                spec.layers[i] == Layer::Relu
                    && matches!(spec.layers.get(i + 1), Some(Layer::MaxPool2d { .. }))
            })
            .collect();
        Ok(Model {
            relu_into_pool,
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

    /// The dropout parameters of layer `i` at `batch`: its seed mixes the model's seed with
    /// the layer index, pcg(lo ⊕ pcg(hi ⊕ pcg(i))) of the seed's 32-bit halves, so two dropout
    /// layers never share a mask.
    fn dropout_params(&self, i: usize, p: f32, batch: usize) -> Dropout {
        let (lo, hi) = (self.rng_seed as u32, (self.rng_seed >> 32) as u32);
        Dropout {
            len: batch * self.shapes[i].numel(),
            p,
            seed: pcg_hash(lo ^ pcg_hash(hi ^ pcg_hash(i as u32))),
        }
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

    fn norm_params(&self, layer: usize, batch: usize) -> BatchNorm {
        self.spec.layers[layer]
            .batch_norm_params(self.shapes[layer], batch)
            .expect("shape inference gave a batch norm its input")
    }

    /// Every batch-norm layer's running statistics, read back.
    pub fn read_norm_buffers(&self, b: &B) -> Result<Vec<NormBuffers>> {
        self.norms
            .iter()
            .flatten()
            .map(|n| {
                let mut mean = b.read_f32(&n.running)?;
                let var = mean.split_off(n.features);
                Ok(NormBuffers {
                    name: n.name.clone(),
                    running_mean: mean,
                    running_var: var,
                    num_batches_tracked: n.tracked,
                })
            })
            .collect()
    }

    /// Overwrites the named batch-norm layers' running statistics (any subset).
    pub fn set_norm_buffers(&mut self, b: &B, buffers: &[NormBuffers]) -> Result<()> {
        for buf in buffers {
            let n = self
                .norms
                .iter_mut()
                .flatten()
                .find(|n| n.name == buf.name)
                .ok_or_else(|| {
                    Error::InvalidParams(format!("the model has no batch norm named {}", buf.name))
                })?;
            if buf.running_mean.len() != n.features || buf.running_var.len() != n.features {
                return Err(Error::InvalidParams(format!(
                    "batch norm {} has {} features, got {} means and {} variances",
                    buf.name,
                    n.features,
                    buf.running_mean.len(),
                    buf.running_var.len()
                )));
            }
            b.write_f32(
                &mut n.running,
                &[buf.running_mean.as_slice(), &buf.running_var].concat(),
            )?;
            n.tracked = buf.num_batches_tracked;
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

    /// Reads every parameter back to the host, in initialisation order.
    pub fn read_params(&self, b: &B) -> Result<Vec<NamedTensor>> {
        self.read_each(b, |p| &p.value)
    }

    /// Reads every parameter's gradient (from the last [`Self::backward`]) back to the host.
    pub fn read_grads(&self, b: &B) -> Result<Vec<NamedTensor>> {
        self.read_each(b, |p| &p.grad)
    }

    fn read_each(
        &self,
        b: &B,
        which: impl Fn(&Param<B>) -> &B::Buffer,
    ) -> Result<Vec<NamedTensor>> {
        self.params
            .iter()
            .map(|p| {
                Ok(NamedTensor {
                    name: p.name.clone(),
                    shape: p.shape.clone(),
                    data: b.read_f32(which(p))?,
                })
            })
            .collect()
    }

    /// Reads every second-moment buffer (Adam's exp_avg_sq) back to the host, named like its
    /// parameter; None when the model has none (it was never updated by Adam).
    pub fn read_exp_avg_sq(&self, b: &B) -> Result<Option<Vec<NamedTensor>>> {
        if self.params.iter().any(|p| p.exp_avg_sq.is_none()) {
            return Ok(None);
        }
        self.read_each(b, |p| p.exp_avg_sq.as_ref().expect("checked above"))
            .map(Some)
    }

    /// Overwrites the second-moment buffers (Adam's exp_avg_sq) of the named parameters (any
    /// subset; each must exist with the same shape), allocating them first where needed.
    pub fn set_exp_avg_sq(&mut self, b: &B, tensors: &[NamedTensor]) -> Result<()> {
        self.ensure_exp_avg_sq(b)?;
        self.write_each(b, tensors, |p| {
            p.exp_avg_sq.as_mut().expect("allocated above")
        })
    }

    /// Allocates every missing second-moment buffer, zero-filled.
    fn ensure_exp_avg_sq(&mut self, b: &B) -> Result<()> {
        for p in &mut self.params {
            if p.exp_avg_sq.is_none() {
                p.exp_avg_sq = Some(b.zeros(p.len(), &format!("{}.exp_avg_sq", p.name))?);
            }
        }
        Ok(())
    }

    /// Reads every momentum buffer (SGD's velocity, Adam's exp_avg) back to the host, named
    /// like its parameter.
    pub fn read_velocity(&self, b: &B) -> Result<Vec<NamedTensor>> {
        self.read_each(b, |p| &p.velocity)
    }

    /// Overwrites the named parameters (any subset; each must exist with the same shape).
    /// Momentum buffers are left as they are.
    pub fn set_params(&mut self, b: &B, tensors: &[NamedTensor]) -> Result<()> {
        self.write_each(b, tensors, |p| &mut p.value)
    }

    /// Overwrites the momentum buffers of the named parameters (any subset; each must exist
    /// with the same shape), e.g. from a checkpoint.
    pub fn set_velocity(&mut self, b: &B, tensors: &[NamedTensor]) -> Result<()> {
        self.write_each(b, tensors, |p| &mut p.velocity)
    }

    fn write_each(
        &mut self,
        b: &B,
        tensors: &[NamedTensor],
        which: impl Fn(&mut Param<B>) -> &mut B::Buffer,
    ) -> Result<()> {
        // Check everything before writing anything.
        let mut targets = Vec::with_capacity(tensors.len());
        for t in tensors {
            let i = self
                .params
                .iter()
                .position(|p| p.name == t.name)
                .ok_or_else(|| {
                    Error::InvalidParams(format!("the model has no parameter named {}", t.name))
                })?;
            check_tensor(t, &self.params[i].name, &self.params[i].shape)?;
            targets.push(i);
        }
        for (t, i) in tensors.iter().zip(targets) {
            b.write_f32(which(&mut self.params[i]), &t.data)?;
        }
        Ok(())
    }

    /// Sets every optimiser state buffer to zero.
    pub fn reset_velocity(&mut self, b: &B) -> Result<()> {
        for p in &mut self.params {
            b.fill_zero(&mut p.velocity)?;
            if let Some(v) = &mut p.exp_avg_sq {
                b.fill_zero(v)?;
            }
        }
        Ok(())
    }

    fn conv_params(&self, layer: usize, batch: usize) -> Conv2d {
        self.spec.layers[layer]
            .conv2d_params(self.shapes[layer], batch)
            .expect("shape inference gave a conv a feature map")
    }

    fn pool_params(&self, layer: usize, batch: usize) -> Pool2d {
        self.spec.layers[layer]
            .pool2d_params(self.shapes[layer], batch)
            .expect("shape inference gave a pool a feature map")
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
        self.run_forward(b, ws, None)
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
        let result = self.run_forward(b, ws, Some(&mut norms));
        self.norms = norms;
        result?;
        for n in self.norms.iter_mut().flatten() {
            n.tracked += 1;
        }
        self.train_steps += 1;
        Ok(())
    }

    /// The forward pass; training mode when given the batch norms' state (taken out of
    /// `self.norms` for the pass).
    fn run_forward(
        &self,
        b: &B,
        ws: &mut Workspace<B>,
        mut train: Option<&mut [Option<NormState<B>>]>,
    ) -> Result<()> {
        self.check_workspace(ws)?;
        let n = ws.batch;
        for (i, layer) in self.spec.layers.iter().enumerate() {
            let (si, so) = (self.slots[i], self.slots[i + 1]);
            if si == so {
                continue; // Flatten
            }
            if train.is_some() && self.relu_into_pool[i] {
                continue; // the max-pool after it runs it
            }
            b.scope(&self.scopes[i].0);
            if train.is_some() && i > 0 && self.relu_into_pool[i - 1] {
                // A max-pool after a ReLU: read the ReLU's input (activation i − 1).
                let (x, y) = read_write(&mut ws.acts, self.slots[i - 1], so);
                b.relu_maxpool2d_forward(&self.pool_params(i, n), x, y)?;
                continue;
            }
            let (x, y) = read_write(&mut ws.acts, si, so);
            match *layer {
                Layer::Conv2d { .. } => {
                    let (wi, bi) = self.layer_params[i].expect("a conv has params");
                    let p = self.conv_params(i, n);
                    b.conv2d_forward(&p, x, &self.params[wi].value, &self.params[bi].value, y)?;
                }
                Layer::Relu => b.relu_forward(n * self.shapes[i].numel(), x, y)?,
                Layer::MaxPool2d { .. } => b.maxpool2d_forward(&self.pool_params(i, n), x, y)?,
                Layer::AvgPool2d { .. } => b.avgpool2d_forward(&self.pool_params(i, n), x, y)?,
                Layer::Linear {
                    in_features,
                    out_features,
                } => {
                    let (wi, bi) = self.layer_params[i].expect("a linear layer has params");
                    // y[n, out] = x[n, in] · W[out, in]ᵀ
                    let mm = Matmul {
                        m: n,
                        k: in_features,
                        n: out_features,
                        trans_a: false,
                        trans_b: true,
                    };
                    b.matmul(&mm, x, &self.params[wi].value, y)?;
                    let ch = Channels {
                        outer: n,
                        channels: out_features,
                        inner: 1,
                    };
                    b.bias_add(&ch, &self.params[bi].value, y)?;
                }
                Layer::Dropout { p } => {
                    // In evaluation, p = 0 keeps every value with scale 1: an exact copy.
                    let p = if train.is_some() { p } else { 0.0 };
                    b.dropout_forward(&self.dropout_params(i, p, n), &self.step_buf, x, y)?;
                }
                Layer::BatchNorm2d { .. } | Layer::BatchNorm1d { .. } => {
                    let (wi, bi) = self.layer_params[i].expect("a batch norm has params");
                    let p = self.norm_params(i, n);
                    let (w, bias) = (&self.params[wi].value, &self.params[bi].value);
                    match train.as_deref_mut() {
                        Some(norms) => {
                            let s = norms[i].as_mut().expect("a batch norm has its state");
                            b.batch_norm_stats(&p, x, &mut s.batch, &mut s.running)?;
                            b.batch_norm_forward(&p, x, &s.batch, w, bias, y)?;
                        }
                        None => {
                            let s = self.norms[i].as_ref().expect("a batch norm has its state");
                            b.batch_norm_forward(&p, x, &s.running, w, bias, y)?;
                        }
                    }
                }
                Layer::Flatten => unreachable!("Flatten shares its input's slot"),
            }
        }
        Ok(())
    }

    /// Whether training runs layer `i` inside layer `i + 1`'s ops (a ReLU fused into the
    /// max-pool after it), so that it has no ops, nor times, of its own.
    pub fn fused_into_next(&self, i: usize) -> bool {
        self.relu_into_pool.get(i).copied().unwrap_or(false)
    }

    /// Activation `i` of the last forward pass on `ws`: 0 is the input, `i + 1` the output of
    /// layer `i`, [N, shape] as [`Self::shapes`] gives it. After [`Self::forward`] every
    /// activation is there; a training pass ([`Self::forward_train`]) leaves the output of a
    /// ReLU that runs fused into the max-pool after it unwritten.
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
            if self.relu_into_pool[i] {
                continue; // the max-pool after it ran its backward pass
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
                    b.relu_maxpool2d_backward(&self.pool_params(i, n), &ws.acts[sr], dy, dx)?;
                }
                continue;
            }
            let need_dx = i > self.first_param_layer;
            let x = &ws.acts[si];
            let y = &ws.acts[so];
            let (dy, dx) = read_write(&mut ws.grads, so, si);
            let dy = dy
                .as_ref()
                .expect("every activation after the input has a gradient");
            let dx = if need_dx {
                Some(
                    dx.as_mut()
                        .expect("activations after a parameter layer have a gradient"),
                )
            } else {
                None
            };
            match *layer {
                Layer::Conv2d { .. } => {
                    let (wi, bi) = self.layer_params[i].expect("a conv has params");
                    let p = self.conv_params(i, n);
                    b.conv2d_backward_weight(&p, x, dy, &mut self.params[wi].grad)?;
                    b.conv2d_backward_bias(&p, dy, &mut self.params[bi].grad)?;
                    if let Some(dx) = dx {
                        b.conv2d_backward_input(&p, dy, &self.params[wi].value, dx)?;
                    }
                }
                Layer::Relu => {
                    if let Some(dx) = dx {
                        b.relu_backward(n * self.shapes[i].numel(), y, dy, dx)?;
                    }
                }
                Layer::MaxPool2d { .. } => {
                    if let Some(dx) = dx {
                        b.maxpool2d_backward(&self.pool_params(i, n), x, dy, dx)?;
                    }
                }
                Layer::AvgPool2d { .. } => {
                    if let Some(dx) = dx {
                        b.avgpool2d_backward(&self.pool_params(i, n), dy, dx)?;
                    }
                }
                Layer::Linear {
                    in_features,
                    out_features,
                } => {
                    let (wi, bi) = self.layer_params[i].expect("a linear layer has params");
                    // dW[out, in] = dy[n, out]ᵀ · x[n, in]
                    let mm = Matmul {
                        m: out_features,
                        k: n,
                        n: in_features,
                        trans_a: true,
                        trans_b: false,
                    };
                    b.matmul(&mm, dy, x, &mut self.params[wi].grad)?;
                    let ch = Channels {
                        outer: n,
                        channels: out_features,
                        inner: 1,
                    };
                    b.channel_sum(&ch, dy, &mut self.params[bi].grad)?;
                    if let Some(dx) = dx {
                        // dx[n, in] = dy[n, out] · W[out, in]
                        let mm = Matmul {
                            m: n,
                            k: out_features,
                            n: in_features,
                            trans_a: false,
                            trans_b: false,
                        };
                        b.matmul(&mm, dy, &self.params[wi].value, dx)?;
                    }
                }
                Layer::Dropout { p } => {
                    if let Some(dx) = dx {
                        let d = self.dropout_params(i, p, n);
                        b.dropout_backward(&d, &self.step_buf, dy, dx)?;
                    }
                }
                Layer::BatchNorm2d { .. } | Layer::BatchNorm1d { .. } => {
                    let (wi, bi) = self.layer_params[i].expect("a batch norm has params");
                    let p = self.norm_params(i, n);
                    let stats = &self.norms[i]
                        .as_ref()
                        .expect("a batch norm has its state")
                        .batch;
                    let (w, bias) = two_mut(&mut self.params, wi, bi);
                    b.batch_norm_backward_params(&p, x, dy, stats, &mut w.grad, &mut bias.grad)?;
                    if let Some(dx) = dx {
                        b.batch_norm_backward_input(
                            &p, x, dy, stats, &w.value, &w.grad, &bias.grad, dx,
                        )?;
                    }
                }
                Layer::Flatten => unreachable!("Flatten shares its input's slot"),
            }
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

    /// One optimiser update of every parameter from its current gradient. `scalars` holds the
    /// step's [`crate::backend::StepScalars`] (written by the host beforehand, its sum of
    /// squares 0); with clipping, every gradient's sum of squares is added to it first, on the
    /// backend, and the update ops scale the gradients by the global norm.
    pub fn update(&mut self, b: &B, optim: &OptimConfig, scalars: &mut B::Buffer) -> Result<()> {
        b.scope("update");
        let clip = optim.clip_grad_norm;
        if clip.is_some() {
            for p in &self.params {
                b.sum_squares(p.len(), &p.grad, scalars)?;
            }
        }
        if optim.optimizer.has_second_moment() {
            self.ensure_exp_avg_sq(b)?;
        }
        for p in &mut self.params {
            let len = p.len();
            match optim.optimizer {
                Optimizer::Sgd { .. } => {
                    let sgd = optim.optimizer.sgd_params(len, clip).expect("SGD");
                    b.sgd_step(&sgd, scalars, &mut p.value, &p.grad, &mut p.velocity)?;
                }
                Optimizer::Adam { .. } => {
                    let adam = optim.optimizer.adam_params(len, clip).expect("Adam");
                    let v = p.exp_avg_sq.as_mut().expect("allocated above");
                    b.adam_step(&adam, scalars, &mut p.value, &p.grad, &mut p.velocity, v)?;
                }
            }
        }
        Ok(())
    }
}

fn check_tensor(t: &NamedTensor, name: &str, shape: &[usize]) -> Result<()> {
    let len: usize = shape.iter().product();
    if t.shape != shape || t.data.len() != len {
        return Err(Error::InvalidParams(format!(
            "parameter {name} should have shape {shape:?}, got shape {:?} with {} values",
            t.shape,
            t.data.len()
        )));
    }
    Ok(())
}

/// Borrows `v[i]` and `v[j]` exclusively (`i < j`).
fn two_mut<T>(v: &mut [T], i: usize, j: usize) -> (&mut T, &mut T) {
    assert!(i < j, "two_mut needs i < j");
    let (a, b) = v.split_at_mut(j);
    (&mut a[i], &mut b[0])
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

/// Every activation buffer (and, for training, every activation-gradient buffer) of one model
/// at one batch size, plus the batch's input and labels. Built once, reused every step.
pub struct Workspace<B: Backend> {
    batch: usize,
    input_len: usize,
    /// Activations by slot; slot 0 is the input batch [N, C, H, W].
    acts: Vec<B::Buffer>,
    /// Activation gradients by slot; `None` for the input, and everywhere in an inference
    /// workspace.
    grads: Vec<Option<B::Buffer>>,
    /// The batch's labels, u32 [N].
    labels: B::Buffer,
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
