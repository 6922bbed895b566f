//! Model files: any sequential CNN of the supported layers, described in TOML (see
//! docs/model-files.md, and `models/`). [`ModelSpec::from_toml`] parses and checks a
//! description, [`ModelSpec::to_toml`] writes one (checkpoints keep it in their metadata as
//! `model`).
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
//! `batchnorm2d` / `batchnorm1d` (`num_features`). Each kind's table is defined in its layer's
//! file ([`super::layer::LayerKind::File`]). Unknown keys and kinds are refused.

use serde::{Deserialize, Serialize};

use super::layer::{parse_layer, FileLayer, KIND_NAMES};
use super::{ModelSpec, Naming};
use crate::{Error, Result};

/// A model file as written.
#[derive(Serialize)]
struct FileSpec<'a> {
    input: [usize; 3],
    naming: FileNaming,
    #[serde(rename = "layer")]
    layers: Vec<FileLayer<'a>>,
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

/// One `[[layer]]` table as a layer, or serde's words for what is wrong with it.
fn parse_table(value: toml::Value) -> std::result::Result<super::Layer, String> {
    let toml::Value::Table(mut table) = value else {
        return Err(format!(
            "invalid type: {}, expected a table",
            value.type_str()
        ));
    };
    let kind = match table.remove("kind") {
        Some(toml::Value::String(kind)) => kind,
        Some(other) => {
            return Err(format!(
                "invalid type: {}, expected a layer kind (a string)",
                other.type_str()
            ))
        }
        None => return Err("missing field `kind`".into()),
    };
    match parse_layer(&kind, toml::Value::Table(table)) {
        Some(layer) => layer.map_err(|e| e.message().trim().to_string()),
        None => {
            let names: Vec<String> = KIND_NAMES.iter().map(|n| format!("`{n}`")).collect();
            Err(format!(
                "unknown variant `{kind}`, expected one of {}",
                names.join(", ")
            ))
        }
    }
}

/// `msg` with its control characters escaped (`\n` for a newline): the messages quote names
/// from the file, which TOML's escapes can fill with anything, and an error is one line.
fn one_line(msg: &str) -> String {
    msg.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_debug().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

impl ModelSpec {
    /// Parses and checks a TOML model description: unknown keys and layer kinds are refused
    /// by name, with the line and the layer they are in; shapes are inferred, and the first
    /// layer that does not fit is named with its index and kind. Errors are
    /// [`Error::InvalidParams`], one line each.
    pub fn from_toml(text: &str) -> Result<ModelSpec> {
        Self::parse_toml(text).map_err(|e| match e {
            Error::InvalidParams(msg) => Error::InvalidParams(one_line(&msg)),
            other => other,
        })
    }

    fn parse_toml(text: &str) -> Result<ModelSpec> {
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
            let layer = parse_table(value)
                .map_err(|e| Error::InvalidParams(format!("{line}layer {i}{kind}: {e}")))?;
            layers.push(layer);
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
    #[cfg(feature = "native")]
    pub fn from_file(path: &std::path::Path) -> Result<ModelSpec> {
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
            layers: self.layers.iter().map(FileLayer).collect(),
        };
        toml::to_string(&file).expect("a model spec always serialises")
    }
}
