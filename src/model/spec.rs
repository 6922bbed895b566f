//! A model's description: the per-sample input shape, the layers in order and how their
//! parameters are named; shape inference, parameter names and shapes, the presets and
//! PyTorch's default initialisation.

use std::fmt;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::state::NamedTensor;
use super::Layer;
use crate::{Error, Result};

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

    /// (C, H, W) of a feature map, or why `what` cannot take this input.
    pub(crate) fn map(&self, what: &str) -> std::result::Result<(usize, usize, usize), String> {
        match *self {
            Shape::Map { c, h, w } => Ok((c, h, w)),
            Shape::Flat(n) => Err(format!(
                "needs a C,H,W input for {what}, got {n} flat features"
            )),
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

/// How parameters are named (see the module docs of [`crate::model`]).
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
        Self::from_toml(include_str!("../../models/simple-cnn.toml"))
            .expect("models/simple-cnn.toml is a valid model (tests/model_file.rs)")
    }

    /// LeNet-5 as commonly written for 28×28 MNIST in PyTorch (`models/lenet5.toml`), with
    /// ReLU rather than tanh: conv(1→6, 5×5, pad 2) → ReLU → maxpool 2 → conv(6→16, 5×5) →
    /// ReLU → maxpool 2 → flatten → linear(400→120) → ReLU → linear(120→84) → ReLU →
    /// linear(84→10). 61,706 parameters.
    pub fn lenet5() -> Self {
        Self::from_toml(include_str!("../../models/lenet5.toml"))
            .expect("models/lenet5.toml is a valid model (tests/model_file.rs)")
    }

    /// The Fashion-MNIST recipe's network (`models/fashion-cnn.toml`): SimpleCNN's
    /// convolutions each followed by batch norm, then dropout 0.25 → linear(3136→128) →
    /// BatchNorm1d → ReLU → dropout 0.5 → linear(128→10), named as an `nn.Sequential`.
    /// 422,090 parameters.
    pub fn fashion_cnn() -> Self {
        Self::from_toml(include_str!("../../models/fashion-cnn.toml"))
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
            let out = layer
                .output(input)
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
            let (weight, bias) = layer
                .param_shapes()
                .expect("only layers with parameters have names");
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
            .filter_map(|(layer, name)| {
                let features = layer.norm_features()?;
                Some((name.expect("a batch norm has a name"), features))
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
