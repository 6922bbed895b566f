//! `MaxPool2d` and `AvgPool2d`: a window of `kernel`×`kernel` every `stride` pixels, no padding
//! ([`Backend::maxpool2d_forward`], [`Backend::avgpool2d_forward`] and their backward ops).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::layer::{Backward, Forward, LayerKind, Pass};
use super::{Layer, Shape};
use crate::backend::{Backend, Pool2d};
use crate::Result;

pub(crate) struct MaxPool2dKind;
pub(crate) struct AvgPool2dKind;

/// `kernel`, and `stride` (default: the kernel).
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    kernel: usize,
    stride: Option<usize>,
}

impl Layer {
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

    /// [`Self::pool2d_params`] of a pooling layer, whose input shape inference checked.
    pub(crate) fn pool(&self, input: Shape, batch: usize) -> Pool2d {
        self.pool2d_params(input, batch)
            .expect("shape inference gave a pool a feature map")
    }
}

fn window(layer: &Layer) -> (usize, usize) {
    match *layer {
        Layer::MaxPool2d { kernel, stride } | Layer::AvgPool2d { kernel, stride } => {
            (kernel, stride)
        }
        _ => unreachable!("a pooling layer"),
    }
}

fn file(layer: &Layer) -> File {
    let (kernel, stride) = window(layer);
    File {
        kernel,
        stride: Some(stride),
    }
}

fn output(layer: &Layer, input: Shape) -> std::result::Result<Shape, String> {
    let (kernel, stride) = window(layer);
    let (c, h, w) = input.map("pooling")?;
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

/// The two kinds differ in their name, their variant and their ops.
macro_rules! pool_kind {
    ($kind:ident, $variant:ident, $name:literal, $fwd:ident, |$b:ident, $p:ident, $pass:ident, $dx:ident| $bwd:expr) => {
        impl LayerKind for $kind {
            const NAME: &'static str = $name;
            type File = File;

            fn to_file(&self, layer: &Layer) -> File {
                file(layer)
            }
            fn to_layer(&self, f: File) -> Layer {
                Layer::$variant {
                    kernel: f.kernel,
                    stride: f.stride.unwrap_or(f.kernel),
                }
            }
            fn fmt(&self, layer: &Layer, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let (kernel, stride) = window(layer);
                write!(f, "{}({kernel}, stride {stride})", stringify!($variant))
            }
            fn output(&self, layer: &Layer, input: Shape) -> std::result::Result<Shape, String> {
                output(layer, input)
            }

            fn forward<B: Backend>(
                &self,
                layer: &Layer,
                cx: &mut Forward<'_, B>,
                x: &B::Buffer,
                y: &mut B::Buffer,
            ) -> Result<()> {
                cx.b.$fwd(&layer.pool(cx.input, cx.batch), x, y)
            }

            fn backward<B: Backend>(
                &self,
                layer: &Layer,
                cx: &mut Backward<'_, B>,
                $pass: Pass<'_, B>,
            ) -> Result<()> {
                let ($b, $p) = (cx.b, layer.pool(cx.input, cx.batch));
                match $pass.dx {
                    Some($dx) => $bwd,
                    None => Ok(()),
                }
            }
        }
    };
}

pool_kind!(
    MaxPool2dKind,
    MaxPool2d,
    "maxpool2d",
    maxpool2d_forward,
    |b, p, pass, dx| b.maxpool2d_backward(&p, pass.x, pass.dy, dx)
);
pool_kind!(
    AvgPool2dKind,
    AvgPool2d,
    "avgpool2d",
    avgpool2d_forward,
    |b, p, pass, dx| b.avgpool2d_backward(&p, pass.dy, dx)
);
