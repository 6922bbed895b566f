//! `Flatten`: C,H,W → C·H·W features. It has no ops: its output shares its input's buffer
//! (and so does its gradient), which [`super::Model`] arranges.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::layer::{Backward, Forward, LayerKind, Pass};
use super::{Layer, Shape};
use crate::backend::Backend;
use crate::Result;

pub(crate) struct FlattenKind;

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct File {}

impl LayerKind for FlattenKind {
    const NAME: &'static str = "flatten";
    type File = File;

    fn to_file(&self, _layer: &Layer) -> File {
        File {}
    }
    fn to_layer(&self, _f: File) -> Layer {
        Layer::Flatten
    }
    fn fmt(&self, _layer: &Layer, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flatten")
    }
    fn output(&self, _layer: &Layer, input: Shape) -> std::result::Result<Shape, String> {
        Ok(Shape::Flat(input.numel()))
    }

    fn forward<B: Backend>(
        &self,
        _layer: &Layer,
        _cx: &mut Forward<'_, B>,
        _x: &B::Buffer,
        _y: &mut B::Buffer,
    ) -> Result<()> {
        unreachable!("Flatten shares its input's slot")
    }

    fn backward<B: Backend>(
        &self,
        _layer: &Layer,
        _cx: &mut Backward<'_, B>,
        _pass: Pass<'_, B>,
    ) -> Result<()> {
        unreachable!("Flatten shares its input's slot")
    }
}
