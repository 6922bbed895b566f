//! Checkpoints in [safetensors](https://huggingface.co/docs/safetensors) format, under the names
//! of PyTorch's `state_dict` (`conv1.weight`, `fc1.bias` …), f32 little-endian, so that
//! `model.load_state_dict(safetensors.torch.load_file(path))` loads the weights in PyTorch and a
//! file made that way loads here.
//!
//! A file written by [`save`] may also hold the optimiser's state under PyTorch's state names:
//! SGD's momentum buffers as `optimizer.<name>.momentum_buffer`, or Adam's moments as
//! `optimizer.<name>.exp_avg` and `optimizer.<name>.exp_avg_sq` (Adam's step count is the
//! `step` below); and a `__metadata__` map: `format` = `cnn-gpu`, `architecture` (see
//! [`architecture`]), and with a [`TrainState`] `epoch`, `step`, `seed`, `lr`, the optimiser
//! settings (see [`OptimConfig::to_metadata`]), `batch_size`, `train_images` and, for a
//! checkpoint written inside an epoch, `loss_window_sum` and `loss_window_steps`.
//!
//! Every write is atomic (a temporary file in the same directory, synced, then renamed), so a
//! crash never leaves a half-written checkpoint under the final name. Loading checks everything
//! (the file, its format, every tensor's dtype and shape, missing or extra tensors and, when the
//! metadata names one, the architecture) and reports each problem as [`Error::Data`] naming the
//! file.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::backend::Backend;
use crate::model::{Model, ModelSpec, NamedTensor};
use crate::optim::OptimConfig;
use crate::train::LossWindow;
use crate::{Error, Result};

/// The `format` metadata value of files this crate writes.
pub const FORMAT: &str = "cnn-gpu";

/// The prefix of an optimiser state tensor's name, before its parameter's name.
const STATE_PREFIX: &str = "optimizer.";
/// The suffixes after it: SGD's momentum buffer, Adam's first and second moments.
const MOMENTUM_SUFFIX: &str = ".momentum_buffer";
const EXP_AVG_SUFFIX: &str = ".exp_avg";
const EXP_AVG_SQ_SUFFIX: &str = ".exp_avg_sq";
const STATE_SUFFIXES: [&str; 3] = [MOMENTUM_SUFFIX, EXP_AVG_SUFFIX, EXP_AVG_SQ_SUFFIX];

/// Where training stood when a checkpoint was written (saved as metadata).
#[derive(Clone, Debug, PartialEq)]
pub struct TrainState {
    /// Epochs completed (1-based count).
    pub epoch: usize,
    /// Training steps completed in all.
    pub step: usize,
    pub seed: u64,
    /// The base learning rate.
    pub lr: f32,
    /// The optimiser, schedule and clipping.
    pub optim: OptimConfig,
    /// The running loss window of a checkpoint written inside an epoch (on Ctrl-C): with it a
    /// resumed run prints the loss lines of an uninterrupted one.
    pub loss_window: Option<LossWindow>,
    /// The batch size and training-set size the steps were counted in (files from before
    /// these were recorded lack them): resuming needs the same ones.
    pub batch_size: Option<usize>,
    pub train_images: Option<usize>,
}

/// What a checkpoint file holds.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Every parameter, in [`ModelSpec::param_shapes`] order.
    pub params: Vec<NamedTensor>,
    /// Every parameter's momentum buffer (SGD) or first moment (Adam's exp_avg), named like the
    /// parameter, when the file has them.
    pub velocity: Option<Vec<NamedTensor>>,
    /// Every parameter's second moment (Adam's exp_avg_sq), when the file has them.
    pub exp_avg_sq: Option<Vec<NamedTensor>>,
    /// The `__metadata__` map (empty for a file without one, e.g. from PyTorch).
    pub metadata: HashMap<String, String>,
}

impl Checkpoint {
    /// The training state recorded in the metadata, when all of it is there and parses.
    pub fn train_state(&self) -> Option<TrainState> {
        let get = |k: &str| self.metadata.get(k);
        // Absent: Some(None); present but not a number: None (the state is unusable).
        let optional = |k: &str| match get(k) {
            None => Some(None),
            Some(v) => v.parse().ok().map(Some),
        };
        let loss_window = match (get("loss_window_sum"), get("loss_window_steps")) {
            (None, None) => None,
            (sum, steps) => Some(LossWindow {
                sum: sum?.parse().ok()?,
                steps: steps?.parse().ok()?,
            }),
        };
        Some(TrainState {
            epoch: get("epoch")?.parse().ok()?,
            step: get("step")?.parse().ok()?,
            seed: get("seed")?.parse().ok()?,
            lr: get("lr")?.parse().ok()?,
            optim: OptimConfig::from_metadata(&self.metadata)?,
            loss_window,
            batch_size: optional("batch_size")?,
            train_images: optional("train_images")?,
        })
    }
}

/// A one-line description of a model's architecture: the input shape and every layer, e.g.
/// `input [1, 28, 28] → Conv2d(1→32, 3×3, stride 1, padding 1) → ReLU → …`.
pub fn architecture(spec: &ModelSpec) -> String {
    let (c, h, w) = spec.input;
    let mut s = format!("input [{c}, {h}, {w}]");
    for layer in &spec.layers {
        s.push_str(" → ");
        s.push_str(&layer.to_string());
    }
    s
}

/// An optimiser's state tensors, each list named like the parameters.
#[derive(Clone, Copy, Debug, Default)]
pub struct OptimizerTensors<'a> {
    /// SGD's momentum buffers, or Adam's first moments when `exp_avg_sq` is given.
    pub velocity: Option<&'a [NamedTensor]>,
    /// Adam's second moments.
    pub exp_avg_sq: Option<&'a [NamedTensor]>,
}

/// Writes `params` (and the optimiser's state tensors, when given) of a model of `spec` to
/// `path`, atomically. `state` adds the training state to the metadata.
pub fn save(
    path: &Path,
    spec: &ModelSpec,
    params: &[NamedTensor],
    optimizer: OptimizerTensors<'_>,
    state: Option<&TrainState>,
) -> Result<()> {
    let expected = spec.param_shapes()?;
    let check = |ts: &[NamedTensor], what: &str| -> Result<()> {
        for (name, shape) in &expected {
            let t = ts.iter().find(|t| &t.name == name).ok_or_else(|| {
                Error::InvalidParams(format!("checkpoint {what}: no tensor for {name}"))
            })?;
            if &t.shape != shape || t.data.len() != shape.iter().product::<usize>() {
                return Err(Error::InvalidParams(format!(
                    "checkpoint {what}: {name} has shape {:?} with {} values, expected {shape:?}",
                    t.shape,
                    t.data.len()
                )));
            }
        }
        if ts.len() != expected.len() {
            return Err(Error::InvalidParams(format!(
                "checkpoint {what}: {} tensors for {} parameters",
                ts.len(),
                expected.len()
            )));
        }
        Ok(())
    };
    check(params, "parameters")?;
    let first_suffix = if optimizer.exp_avg_sq.is_some() {
        EXP_AVG_SUFFIX
    } else {
        MOMENTUM_SUFFIX
    };
    let states: Vec<(&[NamedTensor], &str)> = [
        (optimizer.velocity, first_suffix),
        (optimizer.exp_avg_sq, EXP_AVG_SQ_SUFFIX),
    ]
    .into_iter()
    .filter_map(|(ts, suffix)| Some((ts?, suffix)))
    .collect();
    for (ts, suffix) in &states {
        check(ts, &format!("optimizer state {}", &suffix[1..]))?;
    }

    let mut named: Vec<(String, Vec<u8>, Vec<usize>)> = params
        .iter()
        .map(|t| (t.name.clone(), le_bytes(&t.data), t.shape.clone()))
        .collect();
    for (ts, suffix) in &states {
        named.extend(ts.iter().map(|t| {
            (
                format!("{STATE_PREFIX}{}{suffix}", t.name),
                le_bytes(&t.data),
                t.shape.clone(),
            )
        }));
    }
    let views = named
        .iter()
        .map(|(name, bytes, shape)| {
            TensorView::new(Dtype::F32, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::data(path, format!("cannot encode tensor {name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;

    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("architecture".to_string(), architecture(spec));
    if let Some(s) = state {
        meta.insert("epoch".to_string(), s.epoch.to_string());
        meta.insert("step".to_string(), s.step.to_string());
        meta.insert("seed".to_string(), s.seed.to_string());
        meta.insert("lr".to_string(), s.lr.to_string());
        s.optim.to_metadata(&mut meta);
        for (key, value) in [
            ("batch_size", s.batch_size),
            ("train_images", s.train_images),
        ] {
            if let Some(v) = value {
                meta.insert(key.to_string(), v.to_string());
            }
        }
        if let Some(w) = &s.loss_window {
            // Rust prints an f32 with the fewest digits that parse back to the same value.
            meta.insert("loss_window_sum".to_string(), w.sum.to_string());
            meta.insert("loss_window_steps".to_string(), w.steps.to_string());
        }
    }
    let bytes = safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::data(path, format!("cannot encode the checkpoint: {e}")))?;
    write_atomic(path, &bytes)
}

/// Reads `model`'s parameters (and, with `with_velocity`, its optimiser state: the momentum
/// buffers, and Adam's second moments when the model has them) and saves them to `path` (see
/// [`save`]).
pub fn save_model<B: Backend>(
    b: &B,
    model: &Model<B>,
    path: &Path,
    with_velocity: bool,
    state: Option<&TrainState>,
) -> Result<()> {
    let params = model.read_params(b)?;
    let (velocity, exp_avg_sq) = if with_velocity {
        (Some(model.read_velocity(b)?), model.read_exp_avg_sq(b)?)
    } else {
        (None, None)
    };
    let optimizer = OptimizerTensors {
        velocity: velocity.as_deref(),
        exp_avg_sq: exp_avg_sq.as_deref(),
    };
    save(path, model.spec(), &params, optimizer, state)
}

/// Reads and checks a checkpoint for a model of `spec`. Every problem is an [`Error::Data`]
/// naming `path`.
pub fn load(path: &Path, spec: &ModelSpec) -> Result<Checkpoint> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::data(path, format!("cannot read the checkpoint: {e}")))?;
    parse(&bytes, path, spec)
}

/// Parses and checks a checkpoint held in memory, as [`load`] does a file; `path` is the file
/// named in errors. This is the entry point the fuzz targets (`fuzz/`) drive.
pub fn parse(bytes: &[u8], path: &Path, spec: &ModelSpec) -> Result<Checkpoint> {
    let bad = |msg: String| Error::data(path, msg);
    let not_st = |e: safetensors::SafeTensorError| {
        bad(format!(
            "not a safetensors checkpoint ({} bytes): {e}",
            bytes.len()
        ))
    };
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(not_st)?;
    let tensors = SafeTensors::deserialize(bytes).map_err(not_st)?;
    let metadata = header.metadata().clone().unwrap_or_default();

    let ours = architecture(spec);
    if let Some(theirs) = metadata.get("architecture") {
        if *theirs != ours {
            return Err(bad(format!(
                "the checkpoint is of another architecture: it holds `{theirs}`, \
                 but the model is `{ours}`"
            )));
        }
    }

    let expected = spec.param_shapes()?;
    let is_param = |n: &str| expected.iter().any(|(e, _)| e == n);
    // Refuse anything unknown first: a typo'd or foreign name is the likeliest mistake.
    let mut names: Vec<&str> = tensors.names();
    names.sort_unstable();
    for name in &names {
        let known = is_param(name)
            || name.strip_prefix(STATE_PREFIX).is_some_and(|n| {
                STATE_SUFFIXES
                    .iter()
                    .any(|s| n.strip_suffix(s).is_some_and(is_param))
            });
        if !known {
            return Err(bad(format!(
                "unexpected tensor `{name}` (the model's parameters are {})",
                expected
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    }
    let read = |name: &str, shape: &[usize]| -> Result<Option<NamedTensor>> {
        let view = match tensors.tensor(name) {
            Ok(v) => v,
            Err(_) => return Ok(None),
        };
        if view.dtype() != Dtype::F32 {
            return Err(bad(format!(
                "tensor `{name}` has dtype {:?}, expected F32",
                view.dtype()
            )));
        }
        if view.shape() != shape {
            return Err(bad(format!(
                "tensor `{name}` has shape {:?}, expected {shape:?}",
                view.shape()
            )));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        // A NaN or infinite weight poisons every output: the file is corrupt (or a diverged
        // run was saved), and training or evaluating from it would only print NaN.
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(bad(format!(
                "tensor `{name}` holds {} at index {i}: a corrupt file or a diverged run",
                data[i]
            )));
        }
        Ok(Some(NamedTensor {
            name: name.to_string(),
            shape: shape.to_vec(),
            data,
        }))
    };

    let mut params = Vec::with_capacity(expected.len());
    for (name, shape) in &expected {
        let t =
            read(name, shape)?.ok_or_else(|| bad(format!("missing parameter tensor `{name}`")))?;
        params.push(t);
    }
    // Each kind of state must be there for every parameter or for none.
    let state = |suffix: &str| -> Result<Option<Vec<NamedTensor>>> {
        let mut found = Vec::new();
        for (name, shape) in &expected {
            if let Some(mut t) = read(&format!("{STATE_PREFIX}{name}{suffix}"), shape)? {
                t.name = name.clone();
                found.push(t);
            }
        }
        match found.len() {
            0 => Ok(None),
            n if n == expected.len() => Ok(Some(found)),
            n => Err(bad(format!(
                "the checkpoint has `{}` buffers for {n} of the {} parameters",
                &suffix[1..],
                expected.len()
            ))),
        }
    };
    let momentum = state(MOMENTUM_SUFFIX)?;
    let exp_avg = state(EXP_AVG_SUFFIX)?;
    let exp_avg_sq = state(EXP_AVG_SQ_SUFFIX)?;
    let velocity = match (momentum, exp_avg, &exp_avg_sq) {
        (m, None, None) => m,
        (None, Some(m), Some(_)) => Some(m),
        _ => {
            return Err(bad(
                "the checkpoint's optimizer state is inconsistent: it needs either \
                 `momentum_buffer` (SGD) or both `exp_avg` and `exp_avg_sq` (Adam)"
                    .into(),
            ))
        }
    };
    Ok(Checkpoint {
        params,
        velocity,
        exp_avg_sq,
        metadata,
    })
}

/// Builds a model of `spec` on `b` with the weights of the checkpoint at `path` (momentum
/// buffers start at zero), and returns it with the checkpoint it came from.
pub fn load_model<B: Backend>(
    b: &B,
    spec: ModelSpec,
    path: &Path,
) -> Result<(Model<B>, Checkpoint)> {
    let ckpt = load(path, &spec)?;
    let model = Model::with_params(b, spec, &ckpt.params)?;
    Ok((model, ckpt))
}

/// The directory a file at `path` goes in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks that a `what` (say "checkpoint") can be written to `path`, by creating and deleting
/// a temporary file in its directory: a bad path then fails before training, not after it.
pub fn check_writable(path: &Path, what: &str) -> Result<()> {
    if path.is_dir() {
        return Err(Error::data(
            path,
            format!("is a directory; give the {what}'s file name"),
        ));
    }
    let dir = parent_dir(path);
    let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| {
        Error::data(
            path,
            format!("cannot write a {what} in {}: {}", dir.display(), plain(&e)),
        )
    })?;
    tmp.close().map_err(|e| {
        Error::data(
            path,
            format!(
                "cannot remove a test file in {}: {}",
                dir.display(),
                plain(&e)
            ),
        )
    })
}

/// Writes `bytes` to `path` atomically: a temporary file in the same directory, written,
/// synced, then renamed over `path`. On failure nothing is left behind.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = parent_dir(path);
    let fail = |what: &str, e: std::io::Error| {
        Error::data(
            path,
            format!(
                "cannot write the checkpoint ({what} in {}): {}",
                dir.display(),
                plain(&e)
            ),
        )
    };
    // tempfile creates 0600 files; a checkpoint gets the usual 0666 less the umask, as any
    // file the user writes.
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder
        .tempfile_in(&dir)
        .map_err(|e| fail("creating a temporary file", e))?;
    tmp.write_all(bytes).map_err(|e| fail("writing", e))?;
    tmp.as_file().sync_all().map_err(|e| fail("syncing", e))?;
    tmp.persist(path)
        .map_err(|e| fail("renaming into place", e.error))?;
    Ok(())
}

/// An I/O error without the temporary file's name that tempfile adds (the message names the
/// directory instead).
fn plain(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.split_once(" at path ") {
        Some((head, _)) => head.to_string(),
        None => s,
    }
}

fn le_bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|x| x.to_le_bytes()).collect()
}
