//! `Linear`: y = x·Wᵀ + b with W stored [out, in] as PyTorch stores it: the forward pass is one
//! [`Backend::matmul_bias`] (with the ReLU after the layer when training runs it fused), the
//! weight and bias gradients one [`Backend::matmul_row_sums`], the input gradient a
//! [`Backend::matmul`] (or [`Backend::matmul_relu_backward`] through a fused ReLU before it).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::layer::{Backward, Forward, LayerKind, Pass};
use super::{Layer, Shape};
use crate::backend::{Backend, Matmul};
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
        // + b, and the ReLU after the layer when training runs it here.
        cx.b.matmul_bias(&mm, cx.relu, x, &w.value, &bias.value, y)
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
        // and db[out] = Σ_n dy[n, out], the row sums of dyᵀ.
        cx.b.matmul_row_sums(&mm, pass.dy, pass.x, &mut w.grad, &mut bias.grad)?;
        if let Some(dx) = pass.dx {
            // dx[n, in] = dy[n, out] · W[out, in]
            let mm = Matmul {
                m: n,
                k: out_features,
                n: in_features,
                trans_a: false,
                trans_b: false,
            };
            if cx.relu_before {
                // Through the ReLU before the layer, whose output is this layer's input.
                cx.b.matmul_relu_backward(&mm, pass.dy, &w.value, pass.x, dx)?;
            } else {
                cx.b.matmul(&mm, pass.dy, &w.value, dx)?;
            }
        }
        Ok(())
    }
}
