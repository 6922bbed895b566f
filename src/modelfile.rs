//! Model files: any sequential CNN of the supported layers, described in TOML (see README,
//! "Model files", and `models/`). [`ModelSpec::from_toml`] parses and checks a description,
//! [`ModelSpec::to_toml`] writes one (checkpoints keep it in their metadata as `model`).
//!
//! ```toml
//! input = [1, 28, 28]        # C, H, W (the default)
//! naming = "sequential"      # parameter names layers.<i>.weight (the default) or
//!                            # "numbered": conv1, fc1, bn1 … as the presets
//! [[layer]]
//! kind = "conv2d"
//! in_channels = 1
//! out_channels = 6
//! kernel = 5                 # or [kh, kw]
//! padding = 2                # default 0; stride default 1
//! [[layer]]
//! kind = "relu"
//! ```
//!
//! Kinds: `conv2d`, `relu`, `maxpool2d` / `avgpool2d` (`kernel`, `stride` default = kernel),
//! `flatten`, `linear` (`in_features`, `out_features`), `dropout` (`p`, default 0.5),
//! `batchnorm2d` / `batchnorm1d` (`num_features`). Unknown keys and kinds are refused.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::{Layer, ModelSpec, Naming};
use crate::{Error, Result};

/// A model file as written.
#[derive(Serialize)]
struct FileSpec {
    input: [usize; 3],
    naming: FileNaming,
    #[serde(rename = "layer")]
    layers: Vec<FileLayer>,
}

/// A model file as read: each layer is parsed on its own, so that an error names its layer.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[serde(default = "default_input")]
    input: [usize; 3],
    #[serde(default)]
    naming: FileNaming,
    #[serde(rename = "layer", default)]
    layers: Vec<toml::Value>,
}

fn default_input() -> [usize; 3] {
    [1, 28, 28]
}

#[derive(Serialize, Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum FileNaming {
    #[default]
    Sequential,
    Numbered,
}

/// A kernel: `3` or `[3, 5]` (height, width).
#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(untagged)]
enum Kernel {
    Square(usize),
    Rect([usize; 2]),
}

fn one() -> usize {
    1
}

fn half() -> f32 {
    0.5
}

fn is_zero(v: &usize) -> bool {
    *v == 0
}

#[derive(Serialize, Deserialize)]
#[serde(tag = "kind", deny_unknown_fields)]
enum FileLayer {
    #[serde(rename = "conv2d")]
    Conv2d {
        in_channels: usize,
        out_channels: usize,
        kernel: Kernel,
        #[serde(default = "one")]
        stride: usize,
        #[serde(default, skip_serializing_if = "is_zero")]
        padding: usize,
    },
    #[serde(rename = "relu")]
    Relu {},
    #[serde(rename = "maxpool2d")]
    MaxPool2d {
        kernel: usize,
        stride: Option<usize>,
    },
    #[serde(rename = "avgpool2d")]
    AvgPool2d {
        kernel: usize,
        stride: Option<usize>,
    },
    #[serde(rename = "flatten")]
    Flatten {},
    #[serde(rename = "linear")]
    Linear {
        in_features: usize,
        out_features: usize,
    },
    #[serde(rename = "dropout")]
    Dropout {
        #[serde(default = "half")]
        p: f32,
    },
    #[serde(rename = "batchnorm2d")]
    BatchNorm2d { num_features: usize },
    #[serde(rename = "batchnorm1d")]
    BatchNorm1d { num_features: usize },
}

impl From<&FileLayer> for Layer {
    fn from(l: &FileLayer) -> Layer {
        match *l {
            FileLayer::Conv2d {
                in_channels,
                out_channels,
                kernel,
                stride,
                padding,
            } => {
                let [kernel_h, kernel_w] = match kernel {
                    Kernel::Square(k) => [k, k],
                    Kernel::Rect(hw) => hw,
                };
                Layer::Conv2d {
                    in_channels,
                    out_channels,
                    kernel_h,
                    kernel_w,
                    stride,
                    padding,
                }
            }
            FileLayer::Relu {} => Layer::Relu,
            FileLayer::MaxPool2d { kernel, stride } => Layer::MaxPool2d {
                kernel,
                stride: stride.unwrap_or(kernel),
            },
            FileLayer::AvgPool2d { kernel, stride } => Layer::AvgPool2d {
                kernel,
                stride: stride.unwrap_or(kernel),
            },
            FileLayer::Flatten {} => Layer::Flatten,
            FileLayer::Linear {
                in_features,
                out_features,
            } => Layer::Linear {
                in_features,
                out_features,
            },
            FileLayer::Dropout { p } => Layer::Dropout { p },
            FileLayer::BatchNorm2d { num_features } => Layer::BatchNorm2d {
                features: num_features,
            },
            FileLayer::BatchNorm1d { num_features } => Layer::BatchNorm1d {
                features: num_features,
            },
        }
    }
}

impl From<&Layer> for FileLayer {
    fn from(l: &Layer) -> FileLayer {
        match *l {
            Layer::Conv2d {
                in_channels,
                out_channels,
                kernel_h,
                kernel_w,
                stride,
                padding,
            } => FileLayer::Conv2d {
                in_channels,
                out_channels,
                kernel: if kernel_h == kernel_w {
                    Kernel::Square(kernel_h)
                } else {
                    Kernel::Rect([kernel_h, kernel_w])
                },
                stride,
                padding,
            },
            Layer::Relu => FileLayer::Relu {},
            Layer::MaxPool2d { kernel, stride } => FileLayer::MaxPool2d {
                kernel,
                stride: Some(stride),
            },
            Layer::AvgPool2d { kernel, stride } => FileLayer::AvgPool2d {
                kernel,
                stride: Some(stride),
            },
            Layer::Flatten => FileLayer::Flatten {},
            Layer::Linear {
                in_features,
                out_features,
            } => FileLayer::Linear {
                in_features,
                out_features,
            },
            Layer::Dropout { p } => FileLayer::Dropout { p },
            Layer::BatchNorm2d { features } => FileLayer::BatchNorm2d {
                num_features: features,
            },
            Layer::BatchNorm1d { features } => FileLayer::BatchNorm1d {
                num_features: features,
            },
        }
    }
}

impl ModelSpec {
    /// Parses and checks a TOML model description: unknown keys and layer kinds are refused
    /// by name, with the line and the layer they are in; shapes are inferred, and the first
    /// layer that does not fit is named with its index and kind. Errors are
    /// [`Error::InvalidParams`], one line each.
    pub fn from_toml(text: &str) -> Result<ModelSpec> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let file: RawSpec = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map_or(String::new(), |s| format!("line {}: ", line_of(s.start)));
            Error::InvalidParams(format!("{at}{}", e.message().trim()))
        })?;
        let mut layers = Vec::with_capacity(file.layers.len());
        for (i, value) in file.layers.into_iter().enumerate() {
            let kind = match value.get("kind").and_then(toml::Value::as_str) {
                Some(k) => format!(", {k}"),
                None => String::new(),
            };
            // The i-th `[[layer]]` header, when the file writes its layers that way.
            let line = text
                .match_indices("[[layer]]")
                .nth(i)
                .map_or(String::new(), |(at, _)| format!("line {}, ", line_of(at)));
            let layer = FileLayer::deserialize(value).map_err(|e| {
                Error::InvalidParams(format!("{line}layer {i}{kind}: {}", e.message().trim()))
            })?;
            layers.push(Layer::from(&layer));
        }
        if layers.is_empty() {
            return Err(Error::InvalidParams(
                "the model has no layers (add [[layer]] tables)".into(),
            ));
        }
        let spec = ModelSpec {
            input: (file.input[0], file.input[1], file.input[2]),
            layers,
            naming: match file.naming {
                FileNaming::Sequential => Naming::Sequential,
                FileNaming::Numbered => Naming::Numbered,
            },
        };
        spec.infer_shapes()?;
        Ok(spec)
    }

    /// Reads a model file (see [`Self::from_toml`]); errors name the file.
    pub fn from_file(path: &Path) -> Result<ModelSpec> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::data(path, format!("cannot read the model file: {e}")))?;
        Self::from_toml(&text).map_err(|e| match e {
            Error::InvalidParams(msg) => Error::data(path, msg),
            other => other,
        })
    }

    /// The TOML description that [`Self::from_toml`] reads back as this spec.
    pub fn to_toml(&self) -> String {
        let file = FileSpec {
            input: [self.input.0, self.input.1, self.input.2],
            naming: match self.naming {
                Naming::Sequential => FileNaming::Sequential,
                Naming::Numbered => FileNaming::Numbered,
            },
            layers: self.layers.iter().map(FileLayer::from).collect(),
        };
        toml::to_string(&file).expect("a model spec always serialises")
    }
}
