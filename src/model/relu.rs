//! `ReLU`: y = max(x, 0) ([`Backend::relu_forward`], [`Backend::relu_backward`]). In training
//! a ReLU followed by a max-pool runs inside the pool's ops (see [`super::Model`]).

use std::fmt;

use serde::{Deserialize, Serialize};

use super::layer::{Backward, Forward, LayerKind, Pass};
use super::{Layer, Shape};
use crate::backend::Backend;
use crate::Result;

pub(crate) struct ReluKind;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {}

impl LayerKind for ReluKind {
    const NAME: &'static str = "relu";
    type File = File;

    fn to_file(&self, _layer: &Layer) -> File {
        File {}
    }
    fn to_layer(&self, _f: File) -> Layer {
        Layer::Relu
    }
    fn fmt(&self, _layer: &Layer, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReLU")
    }
    fn output(&self, _layer: &Layer, input: Shape) -> std::result::Result<Shape, String> {
        Ok(input)
    }

    fn forward<B: Backend>(
        &self,
        _layer: &Layer,
        cx: &mut Forward<'_, B>,
        x: &B::Buffer,
        y: &mut B::Buffer,
    ) -> Result<()> {
        cx.b.relu_forward(cx.batch * cx.input.numel(), x, y)
    }

    fn backward<B: Backend>(
        &self,
        _layer: &Layer,
        cx: &mut Backward<'_, B>,
        pass: Pass<'_, B>,
    ) -> Result<()> {
        match pass.dx {
            Some(dx) => {
                cx.b.relu_backward(cx.batch * cx.input.numel(), pass.y, pass.dy, dx)
            }
            None => Ok(()),
        }
    }
}
