//! `Conv2d`: a 2-d convolution with a weight [out, in, kh, kw] and a bias [out]
//! ([`Backend::conv2d_forward`] and its three backward ops).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::layer::{Backward, Forward, LayerKind, Pass};
use super::{Layer, Shape};
use crate::backend::{Backend, Conv2d};
use crate::Result;

pub(crate) struct Conv2dKind;

/// A kernel: `3` or `[3, 5]` (height, width).
#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(untagged)]
pub(crate) enum Kernel {
    Square(usize),
    Rect([usize; 2]),
}

fn one() -> usize {
    1
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    in_channels: usize,
    out_channels: usize,
    kernel: Kernel,
    #[serde(default = "one")]
    stride: usize,
    #[serde(default, skip_serializing_if = "is_zero")]
    padding: usize,
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
}

/// A `Layer::Conv2d`'s fields.
struct Fields {
    in_channels: usize,
    out_channels: usize,
    kernel_h: usize,
    kernel_w: usize,
    stride: usize,
    padding: usize,
}

fn fields(layer: &Layer) -> Fields {
    let Layer::Conv2d {
        in_channels,
        out_channels,
        kernel_h,
        kernel_w,
        stride,
        padding,
    } = *layer
    else {
        unreachable!("a Conv2d")
    };
    Fields {
        in_channels,
        out_channels,
        kernel_h,
        kernel_w,
        stride,
        padding,
    }
}

fn conv(layer: &Layer, input: Shape, batch: usize) -> Conv2d {
    layer
        .conv2d_params(input, batch)
        .expect("shape inference gave a conv a feature map")
}

impl LayerKind for Conv2dKind {
    const NAME: &'static str = "conv2d";
    type File = File;

    fn to_file(&self, layer: &Layer) -> File {
        let l = fields(layer);
        File {
            in_channels: l.in_channels,
            out_channels: l.out_channels,
            kernel: if l.kernel_h == l.kernel_w {
                Kernel::Square(l.kernel_h)
            } else {
                Kernel::Rect([l.kernel_h, l.kernel_w])
            },
            stride: l.stride,
            padding: l.padding,
        }
    }

    fn to_layer(&self, f: File) -> Layer {
        let [kernel_h, kernel_w] = match f.kernel {
            Kernel::Square(k) => [k, k],
            Kernel::Rect(hw) => hw,
        };
        Layer::Conv2d {
            in_channels: f.in_channels,
            out_channels: f.out_channels,
            kernel_h,
            kernel_w,
            stride: f.stride,
            padding: f.padding,
        }
    }

    fn fmt(&self, layer: &Layer, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let l = fields(layer);
        write!(
            f,
            "Conv2d({}→{}, {}×{}, stride {}, padding {})",
            l.in_channels, l.out_channels, l.kernel_h, l.kernel_w, l.stride, l.padding
        )
    }

    fn output(&self, layer: &Layer, input: Shape) -> std::result::Result<Shape, String> {
        let l = fields(layer);
        let (c, h, w) = input.map("a convolution")?;
        if c != l.in_channels {
            return Err(format!(
                "expects {} input channels, got {c} ({input})",
                l.in_channels
            ));
        }
        if l.out_channels == 0 || l.kernel_h == 0 || l.kernel_w == 0 || l.stride == 0 {
            return Err("has a zero size or stride".into());
        }
        let (ph, pw) = (h + 2 * l.padding, w + 2 * l.padding);
        if l.kernel_h > ph || l.kernel_w > pw {
            return Err(format!(
                "kernel {}×{} is larger than the padded input {ph}×{pw}",
                l.kernel_h, l.kernel_w
            ));
        }
        Ok(Shape::Map {
            c: l.out_channels,
            h: (ph - l.kernel_h) / l.stride + 1,
            w: (pw - l.kernel_w) / l.stride + 1,
        })
    }

    fn param_shapes(&self, layer: &Layer) -> Option<(Vec<usize>, usize)> {
        let l = fields(layer);
        let weight = vec![l.out_channels, l.in_channels, l.kernel_h, l.kernel_w];
        Some((weight, l.out_channels))
    }

    fn numbered_prefix(&self) -> Option<&'static str> {
        Some("conv")
    }

    fn forward<B: Backend>(
        &self,
        layer: &Layer,
        cx: &mut Forward<'_, B>,
        x: &B::Buffer,
        y: &mut B::Buffer,
    ) -> Result<()> {
        let p = conv(layer, cx.input, cx.batch);
        let [w, bias] = cx.params else {
            unreachable!("a conv has a weight and a bias")
        };
        cx.b.conv2d_forward(&p, x, &w.value, &bias.value, y)
    }

    fn backward<B: Backend>(
        &self,
        layer: &Layer,
        cx: &mut Backward<'_, B>,
        pass: Pass<'_, B>,
    ) -> Result<()> {
        let p = conv(layer, cx.input, cx.batch);
        let [w, bias] = &mut *cx.params else {
            unreachable!("a conv has a weight and a bias")
        };
        cx.b.conv2d_backward_params(&p, pass.x, pass.dy, &mut w.grad, &mut bias.grad)?;
        if let Some(dx) = pass.dx {
            cx.b.conv2d_backward_input(&p, pass.dy, &w.value, dx)?;
        }
        Ok(())
    }
}
