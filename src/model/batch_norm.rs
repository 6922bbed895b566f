//! `BatchNorm2d` and `BatchNorm1d`: PyTorch's batch norm over C,H,W maps or flat features,
//! with a weight and a bias [features] and the running statistics as buffers
//! ([`Backend::batch_norm_stats`], `batch_norm_forward` and the two backward ops).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::layer::{Backward, Forward, LayerKind, NormAccess, Pass};
use super::{Layer, Shape};
use crate::backend::{Backend, BatchNorm, Channels};
use crate::Result;

pub(crate) struct BatchNorm2dKind;
pub(crate) struct BatchNorm1dKind;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    num_features: usize,
}

impl Layer {
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

    /// The features of a batch norm (None for other layers).
    pub(crate) fn norm_features(&self) -> Option<usize> {
        match *self {
            Layer::BatchNorm2d { features } | Layer::BatchNorm1d { features } => Some(features),
            _ => None,
        }
    }
}

fn features(layer: &Layer) -> usize {
    layer.norm_features().expect("a batch norm")
}

fn norm(layer: &Layer, input: Shape, batch: usize) -> BatchNorm {
    layer
        .batch_norm_params(input, batch)
        .expect("shape inference gave a batch norm its input")
}

/// Both kinds' forward pass: batch statistics (updating the running ones) in training, the
/// running statistics in evaluation.
fn forward<B: Backend>(
    layer: &Layer,
    cx: &mut Forward<'_, B>,
    x: &B::Buffer,
    y: &mut B::Buffer,
) -> Result<()> {
    let p = norm(layer, cx.input, cx.batch);
    let [w, bias] = cx.params else {
        unreachable!("a batch norm has a weight and a bias")
    };
    match cx.norm.as_mut().expect("a batch norm has its state") {
        NormAccess::Train(s) => {
            cx.b.batch_norm_stats(&p, x, &mut s.batch, &mut s.running)?;
            cx.b.batch_norm_forward(&p, x, &s.batch, &w.value, &bias.value, y)
        }
        NormAccess::Eval(s) => {
            cx.b.batch_norm_forward(&p, x, &s.running, &w.value, &bias.value, y)
        }
    }
}

fn backward<B: Backend>(layer: &Layer, cx: &mut Backward<'_, B>, pass: Pass<'_, B>) -> Result<()> {
    let p = norm(layer, cx.input, cx.batch);
    let stats = &cx.norm.expect("a batch norm has its state").batch;
    let [w, bias] = &mut *cx.params else {
        unreachable!("a batch norm has a weight and a bias")
    };
    cx.b.batch_norm_backward_params(&p, pass.x, pass.dy, stats, &mut w.grad, &mut bias.grad)?;
    if let Some(dx) = pass.dx {
        cx.b.batch_norm_backward_input(
            &p, pass.x, pass.dy, stats, &w.value, &w.grad, &bias.grad, dx,
        )?;
    }
    Ok(())
}

/// The kinds differ in their input (a map or flat features), their name and their display.
macro_rules! batch_norm_kind {
    ($kind:ident, $variant:ident, $name:literal, $check:expr) => {
        impl LayerKind for $kind {
            const NAME: &'static str = $name;
            type File = File;

            fn to_file(&self, layer: &Layer) -> File {
                File {
                    num_features: features(layer),
                }
            }
            fn to_layer(&self, f: File) -> Layer {
                Layer::$variant {
                    features: f.num_features,
                }
            }
            fn fmt(&self, layer: &Layer, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($variant), features(layer))
            }
            fn output(&self, layer: &Layer, input: Shape) -> std::result::Result<Shape, String> {
                let check: fn(usize, Shape) -> std::result::Result<Shape, String> = $check;
                check(features(layer), input)
            }
            fn param_shapes(&self, layer: &Layer) -> Option<(Vec<usize>, usize)> {
                let n = features(layer);
                Some((vec![n], n))
            }
            fn numbered_prefix(&self) -> Option<&'static str> {
                Some("bn")
            }
            fn forward<B: Backend>(
                &self,
                layer: &Layer,
                cx: &mut Forward<'_, B>,
                x: &B::Buffer,
                y: &mut B::Buffer,
            ) -> Result<()> {
                forward(layer, cx, x, y)
            }
            fn backward<B: Backend>(
                &self,
                layer: &Layer,
                cx: &mut Backward<'_, B>,
                pass: Pass<'_, B>,
            ) -> Result<()> {
                backward(layer, cx, pass)
            }
        }
    };
}

batch_norm_kind!(
    BatchNorm2dKind,
    BatchNorm2d,
    "batchnorm2d",
    |features, input| match input {
        Shape::Map { c, .. } if c == features => Ok(input),
        Shape::Map { c, .. } => Err(format!("expects {features} channels, got {c} ({input})")),
        Shape::Flat(n) => Err(format!(
            "needs a C,H,W input, got {n} flat features (use BatchNorm1d after a flatten)"
        )),
    }
);

batch_norm_kind!(
    BatchNorm1dKind,
    BatchNorm1d,
    "batchnorm1d",
    |features, input| match input {
        Shape::Flat(n) if n == features => Ok(input),
        Shape::Flat(n) => Err(format!("expects {features} features, got {n}")),
        Shape::Map { .. } => Err(format!(
            "needs flat features, got {input} (use BatchNorm2d on a feature map)"
        )),
    }
);
