//! What every layer kind provides, and the registry of kinds.
//!
//! A [`Layer`] is plain data (its variant's fields). Everything a kind *does* — its shape rule,
//! its parameters, its model-file form, its forward and backward passes — lives in the kind's
//! own file (`conv2d.rs`, `linear.rs` …) as an implementation of [`LayerKind`]. The one place
//! that ties a variant to its kind is [`for_each_kind!`]'s list below: adding a layer kind is
//! its variant in [`Layer`], its file, and one line in that list.

use std::fmt;

use serde::{de::DeserializeOwned, Serialize};

use super::state::{NormState, Param};
use super::Shape;
use crate::backend::Backend;
use crate::Result;

/// One layer of a sequential model. Sizes are per sample; the batch size comes from the
/// [`super::Workspace`].
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

/// The registry: every variant of [`Layer`] with the kind that implements it. Calls
/// `$then!` with the list, so that each dispatch below is generated from this one list.
macro_rules! for_each_kind {
    ($then:ident) => {
        $then! {
            Conv2d => super::conv2d::Conv2dKind,
            Relu => super::relu::ReluKind,
            MaxPool2d => super::pool2d::MaxPool2dKind,
            AvgPool2d => super::pool2d::AvgPool2dKind,
            Flatten => super::flatten::FlattenKind,
            Linear => super::linear::LinearKind,
            Dropout => super::dropout::DropoutKind,
            BatchNorm2d => super::batch_norm::BatchNorm2dKind,
            BatchNorm1d => super::batch_norm::BatchNorm1dKind,
        }
    };
}

/// What a layer kind provides. Each method gets the [`Layer`] it is called for, always of the
/// kind's own variant.
pub(crate) trait LayerKind {
    /// The `kind` of its model-file table (`conv2d`, `relu` …).
    const NAME: &'static str;
    /// Its model-file table, less `kind` (serde, unknown keys refused).
    type File: Serialize + DeserializeOwned;

    fn to_file(&self, layer: &Layer) -> Self::File;
    fn to_layer(&self, file: Self::File) -> Layer;
    /// As `Conv2d(1→32, 3×3, stride 1, padding 1)`.
    fn fmt(&self, layer: &Layer, f: &mut fmt::Formatter<'_>) -> fmt::Result;
    /// The per-sample output shape for `input`, or why the layer does not fit it.
    fn output(&self, layer: &Layer, input: Shape) -> std::result::Result<Shape, String>;
    /// The weight's shape and the bias's length, for a layer with parameters.
    fn param_shapes(&self, _layer: &Layer) -> Option<(Vec<usize>, usize)> {
        None
    }
    /// The attribute name [`super::Naming::Numbered`] gives the kind (`conv`, `fc`, `bn`).
    fn numbered_prefix(&self) -> Option<&'static str> {
        None
    }
    /// Records the forward pass from `x` into `y`.
    fn forward<B: Backend>(
        &self,
        layer: &Layer,
        cx: &mut Forward<'_, B>,
        x: &B::Buffer,
        y: &mut B::Buffer,
    ) -> Result<()>;
    /// Records the backward pass: every parameter gradient (overwritten), and `dx` when given.
    fn backward<B: Backend>(
        &self,
        layer: &Layer,
        cx: &mut Backward<'_, B>,
        pass: Pass<'_, B>,
    ) -> Result<()>;
}

/// What a layer's forward pass works with besides its input and output.
pub(crate) struct Forward<'a, B: Backend> {
    pub b: &'a B,
    /// The layer's index in the model.
    pub index: usize,
    pub batch: usize,
    /// The per-sample input shape.
    pub input: Shape,
    /// The layer's weight and bias (empty for a layer without parameters).
    pub params: &'a [Param<B>],
    /// Training mode (dropout draws a mask, batch norm uses and updates batch statistics).
    pub train: bool,
    /// Apply the ReLU to the output too: the ReLU after this layer runs fused into it (a
    /// linear layer's epilogue), and `y` is that ReLU's output.
    pub relu: bool,
    /// A batch norm's statistics (None for other layers).
    pub norm: Option<NormAccess<'a, B>>,
    /// The dropout masks' key: the model's seed and the [1] u32 step buffer.
    pub dropout_seed: u64,
    pub step: &'a B::Buffer,
}

/// A batch norm's statistics in a forward pass: updated in training, read in evaluation.
pub(crate) enum NormAccess<'a, B: Backend> {
    Train(&'a mut NormState<B>),
    Eval(&'a NormState<B>),
}

/// What a layer's backward pass works with.
pub(crate) struct Backward<'a, B: Backend> {
    pub b: &'a B,
    pub index: usize,
    pub batch: usize,
    pub input: Shape,
    /// The layer's weight and bias, whose gradients the pass writes.
    pub params: &'a mut [Param<B>],
    pub norm: Option<&'a NormState<B>>,
    pub dropout_seed: u64,
    pub step: &'a B::Buffer,
    /// The ReLU before this layer runs its backward pass here: `dx` is the gradient with
    /// respect to that ReLU's input, masked where the ReLU's output (this layer's `x`) is not
    /// positive.
    pub relu_before: bool,
}

/// The buffers of one layer's backward pass: its input and output of the training forward pass,
/// the output's gradient, and the input's gradient to write (None for the layers before the
/// first one with parameters, which need none).
pub(crate) struct Pass<'a, B: Backend> {
    pub x: &'a B::Buffer,
    pub y: &'a B::Buffer,
    pub dy: &'a B::Buffer,
    pub dx: Option<&'a mut B::Buffer>,
}

macro_rules! impl_dispatch {
    ($($variant:ident => $kind:path,)*) => {
        impl Layer {
            pub(crate) fn output(&self, input: Shape) -> std::result::Result<Shape, String> {
                match self { $(Layer::$variant { .. } => $kind.output(self, input),)* }
            }
            pub(crate) fn param_shapes(&self) -> Option<(Vec<usize>, usize)> {
                match self { $(Layer::$variant { .. } => $kind.param_shapes(self),)* }
            }
            pub(crate) fn numbered_prefix(&self) -> Option<&'static str> {
                match self { $(Layer::$variant { .. } => $kind.numbered_prefix(),)* }
            }
            pub(crate) fn forward<B: Backend>(
                &self,
                cx: &mut Forward<'_, B>,
                x: &B::Buffer,
                y: &mut B::Buffer,
            ) -> Result<()> {
                match self { $(Layer::$variant { .. } => $kind.forward(self, cx, x, y),)* }
            }
            pub(crate) fn backward<B: Backend>(
                &self,
                cx: &mut Backward<'_, B>,
                pass: Pass<'_, B>,
            ) -> Result<()> {
                match self { $(Layer::$variant { .. } => $kind.backward(self, cx, pass),)* }
            }
        }

        impl fmt::Display for Layer {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self { $(Layer::$variant { .. } => $kind.fmt(self, f),)* }
            }
        }

        /// Every kind's model-file name, in registry order.
        pub(crate) const KIND_NAMES: &[&str] = &[$(<$kind as LayerKind>::NAME,)*];

        /// Parses a model-file layer table of kind `name` (the table without its `kind`).
        /// None for an unknown kind.
        pub(crate) fn parse_layer(
            name: &str,
            table: toml::Value,
        ) -> Option<std::result::Result<Layer, toml::de::Error>> {
            $(if name == <$kind as LayerKind>::NAME {
                return Some(
                    <<$kind as LayerKind>::File>::deserialize(table).map(|f| $kind.to_layer(f)),
                );
            })*
            None
        }

        /// A layer as its model-file table, `kind` first.
        pub(crate) struct FileLayer<'a>(pub &'a Layer);

        impl Serialize for FileLayer<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
                match self.0 {
                    $(layer @ Layer::$variant { .. } => Tagged {
                        kind: <$kind as LayerKind>::NAME,
                        fields: $kind.to_file(layer),
                    }
                    .serialize(s),)*
                }
            }
        }
    };
}

use serde::Deserialize as _;

#[derive(Serialize)]
struct Tagged<T> {
    kind: &'static str,
    #[serde(flatten)]
    fields: T,
}

for_each_kind!(impl_dispatch);

impl Layer {
    /// Whether the layer has a weight and a bias.
    pub fn has_params(&self) -> bool {
        self.param_shapes().is_some()
    }
}
