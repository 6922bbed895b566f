//! `Linear`: y = x·Wᵀ + b with W stored [out, in] as PyTorch stores it ([`Backend::matmul`],
//! [`Backend::bias_add`], and [`Backend::channel_sum`] for the bias gradient).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::layer::{Backward, Forward, LayerKind, Pass};
use super::{Layer, Shape};
use crate::backend::{Backend, Channels, Matmul};
use crate::Result;

pub(crate) struct LinearKind;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    in_features: usize,
    out_features: usize,
}

fn features(layer: &Layer) -> (usize, usize) {
    let Layer::Linear {
        in_features,
        out_features,
    } = *layer
    else {
        unreachable!("a Linear")
    };
    (in_features, out_features)
}

impl LayerKind for LinearKind {
    const NAME: &'static str = "linear";
    type File = File;

    fn to_file(&self, layer: &Layer) -> File {
        let (in_features, out_features) = features(layer);
        File {
            in_features,
            out_features,
        }
    }
    fn to_layer(&self, f: File) -> Layer {
        Layer::Linear {
            in_features: f.in_features,
            out_features: f.out_features,
        }
    }
    fn fmt(&self, layer: &Layer, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (in_features, out_features) = features(layer);
        write!(f, "Linear({in_features}→{out_features})")
    }

    fn output(&self, layer: &Layer, input: Shape) -> std::result::Result<Shape, String> {
        let (in_features, out_features) = features(layer);
        match input {
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
        }
    }

    fn param_shapes(&self, layer: &Layer) -> Option<(Vec<usize>, usize)> {
        let (in_features, out_features) = features(layer);
        Some((vec![out_features, in_features], out_features))
    }

    fn numbered_prefix(&self) -> Option<&'static str> {
        Some("fc")
    }

    fn forward<B: Backend>(
        &self,
        layer: &Layer,
        cx: &mut Forward<'_, B>,
        x: &B::Buffer,
        y: &mut B::Buffer,
    ) -> Result<()> {
        let (in_features, out_features) = features(layer);
        let [w, bias] = cx.params else {
            unreachable!("a linear layer has a weight and a bias")
        };
        // y[n, out] = x[n, in] · W[out, in]ᵀ
        let mm = Matmul {
            m: cx.batch,
            k: in_features,
            n: out_features,
            trans_a: false,
            trans_b: true,
        };
        cx.b.matmul(&mm, x, &w.value, y)?;
        let ch = Channels {
            outer: cx.batch,
            channels: out_features,
            inner: 1,
        };
        cx.b.bias_add(&ch, &bias.value, y)
    }

    fn backward<B: Backend>(
        &self,
        layer: &Layer,
        cx: &mut Backward<'_, B>,
        pass: Pass<'_, B>,
    ) -> Result<()> {
        let (in_features, out_features) = features(layer);
        let n = cx.batch;
        let [w, bias] = &mut *cx.params else {
            unreachable!("a linear layer has a weight and a bias")
        };
        // dW[out, in] = dy[n, out]ᵀ · x[n, in]
        let mm = Matmul {
            m: out_features,
            k: n,
            n: in_features,
            trans_a: true,
            trans_b: false,
        };
        cx.b.matmul(&mm, pass.dy, pass.x, &mut w.grad)?;
        let ch = Channels {
            outer: n,
            channels: out_features,
            inner: 1,
        };
        cx.b.channel_sum(&ch, pass.dy, &mut bias.grad)?;
        if let Some(dx) = pass.dx {
            // dx[n, in] = dy[n, out] · W[out, in]
            let mm = Matmul {
                m: n,
                k: out_features,
                n: in_features,
                trans_a: false,
                trans_b: false,
            };
            cx.b.matmul(&mm, pass.dy, &w.value, dx)?;
        }
        Ok(())
    }
}
