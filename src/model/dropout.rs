//! `Dropout`: inverted dropout in training, the identity (an exact copy) in evaluation
//! ([`Backend::dropout_forward`], [`Backend::dropout_backward`]). The mask is never stored: it
//! is a hash of (the model's seed, the layer, the step, the element), recomputed backward.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::layer::{Backward, Forward, LayerKind, Pass};
use super::{Layer, Shape};
use crate::backend::{pcg_hash, Backend, Dropout};
use crate::Result;

pub(crate) struct DropoutKind;

fn half() -> f32 {
    0.5
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {
    #[serde(default = "half")]
    p: f32,
}

fn prob(layer: &Layer) -> f32 {
    let Layer::Dropout { p } = *layer else {
        unreachable!("a Dropout")
    };
    p
}

/// The dropout parameters of layer `index` at `batch`: its seed mixes the model's seed with
/// the layer index, pcg(lo ⊕ pcg(hi ⊕ pcg(i))) of the seed's 32-bit halves, so two dropout
/// layers never share a mask.
fn params(seed: u64, index: usize, input: Shape, p: f32, batch: usize) -> Dropout {
    let (lo, hi) = (seed as u32, (seed >> 32) as u32);
    Dropout {
        len: batch * input.numel(),
        p,
        seed: pcg_hash(lo ^ pcg_hash(hi ^ pcg_hash(index as u32))),
    }
}

impl LayerKind for DropoutKind {
    const NAME: &'static str = "dropout";
    type File = File;

    fn to_file(&self, layer: &Layer) -> File {
        File { p: prob(layer) }
    }
    fn to_layer(&self, f: File) -> Layer {
        Layer::Dropout { p: f.p }
    }
    fn fmt(&self, layer: &Layer, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Dropout(p {})", prob(layer))
    }
    fn output(&self, layer: &Layer, input: Shape) -> std::result::Result<Shape, String> {
        let p = prob(layer);
        if (0.0..1.0).contains(&p) {
            Ok(input)
        } else {
            Err(format!("drop probability must be in [0, 1), got {p}"))
        }
    }

    fn forward<B: Backend>(
        &self,
        layer: &Layer,
        cx: &mut Forward<'_, B>,
        x: &B::Buffer,
        y: &mut B::Buffer,
    ) -> Result<()> {
        // In evaluation, p = 0 keeps every value with scale 1: an exact copy.
        let p = if cx.train { prob(layer) } else { 0.0 };
        let d = params(cx.dropout_seed, cx.index, cx.input, p, cx.batch);
        cx.b.dropout_forward(&d, cx.step, x, y)
    }

    fn backward<B: Backend>(
        &self,
        layer: &Layer,
        cx: &mut Backward<'_, B>,
        pass: Pass<'_, B>,
    ) -> Result<()> {
        match pass.dx {
            Some(dx) => {
                let d = params(cx.dropout_seed, cx.index, cx.input, prob(layer), cx.batch);
                cx.b.dropout_backward(&d, cx.step, pass.dy, dx)
            }
            None => Ok(()),
        }
    }
}
