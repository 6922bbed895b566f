//! Checkpoints in [safetensors](https://huggingface.co/docs/safetensors) format, under the names
//! of PyTorch's `state_dict` (`conv1.weight`, `fc1.bias` …), f32 little-endian, so that
//! `model.load_state_dict(safetensors.torch.load_file(path))` loads the weights in PyTorch and a
//! file made that way loads here.
//!
//! A file written by [`save`] may also hold the optimiser's state under PyTorch's state names:
//! SGD's momentum buffers as `optimizer.<name>.momentum_buffer`, or Adam's moments as
//! `optimizer.<name>.exp_avg` and `optimizer.<name>.exp_avg_sq` (Adam's step count is the
//! `step` below); and a `__metadata__` map: `format` = `cnn-gpu`, `architecture` (see
//! [`architecture`]), `model` (the model's TOML description, see [`ModelSpec::to_toml`], from
//! which `eval` and `train --init/--resume` rebuild the model), and with a [`TrainState`]
//! `epoch`, `step`, `seed`, `lr`, the optimiser settings (see
//! [`crate::optim::OptimConfig::to_metadata`]), `batch_size`, `train_images` and, for a
//! checkpoint written inside an epoch, `loss_window_sum` and `loss_window_steps`.
//!
//! Batch-norm layers add PyTorch's buffers: `<name>.running_mean` and `<name>.running_var`
//! (F32 [features]) and `<name>.num_batches_tracked`, an I64 scalar (shape []) as PyTorch
//! writes it. It is kept as an i64 counter on the host ([`NormBuffers`]), never converted to
//! f32; it counts training batches and, with PyTorch's fixed momentum 0.1, changes no result.
//!
//! Every write is atomic (a temporary file in the same directory, synced, then renamed), so a
//! crash never leaves a half-written checkpoint under the final name. Loading checks everything
//! (the file, its format, every tensor's dtype and shape, missing or extra tensors and, when the
//! metadata names one, the architecture) and reports each problem as [`Error::Data`] naming the
//! file. The file functions are thin wrappers: [`to_bytes`], [`model_to_bytes`], [`parse`] and
//! [`model_of_bytes`] do the same work on bytes in memory.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use crate::backend::Backend;
use crate::model::{Model, ModelSpec, NamedTensor, Naming, NormBuffers};
use crate::{Error, Result};

mod state;

pub use state::{LossWindow, TrainState};

/// The `format` metadata value of files this crate writes.
pub const FORMAT: &str = "cnn-gpu";

/// The prefix of an optimiser state tensor's name, before its parameter's name.
const STATE_PREFIX: &str = "optimizer.";
/// The suffixes after it: SGD's momentum buffer, Adam's first and second moments.
const MOMENTUM_SUFFIX: &str = ".momentum_buffer";
const EXP_AVG_SUFFIX: &str = ".exp_avg";
const EXP_AVG_SQ_SUFFIX: &str = ".exp_avg_sq";
const STATE_SUFFIXES: [&str; 3] = [MOMENTUM_SUFFIX, EXP_AVG_SUFFIX, EXP_AVG_SQ_SUFFIX];

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
    /// Every batch-norm layer's running statistics, in layer order.
    pub norms: Vec<NormBuffers>,
}

impl Checkpoint {
    /// The training state recorded in the metadata, when all of it is there and parses.
    pub fn train_state(&self) -> Option<TrainState> {
        TrainState::from_metadata(&self.metadata)
    }
}

/// A one-line description of a model's architecture: the input shape and every layer, e.g.
/// `input [1, 28, 28] → Conv2d(1→32, 3×3, stride 1, padding 1) → ReLU → …`, followed by
/// `; parameters named layers.<i>` for [`Naming::Sequential`].
pub fn architecture(spec: &ModelSpec) -> String {
    let (c, h, w) = spec.input;
    let mut s = format!("input [{c}, {h}, {w}]");
    for layer in &spec.layers {
        s.push_str(" → ");
        s.push_str(&layer.to_string());
    }
    if spec.naming == Naming::Sequential {
        s.push_str("; parameters named layers.<i>");
    }
    s
}

#[cfg(feature = "native")]
/// The model a checkpoint describes in its `model` metadata (written by [`save`]), if any;
/// None for files without it (PyTorch's, or older ones). Reads only the header.
pub fn model_of(path: &Path) -> Result<Option<ModelSpec>> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::data(path, format!("cannot read the checkpoint: {e}")))?;
    model_of_bytes(&bytes, path)
}

/// [`model_of`] for a checkpoint held in memory; `path` is the file named in errors.
pub fn model_of_bytes(bytes: &[u8], path: &Path) -> Result<Option<ModelSpec>> {
    let bad = |msg: String| Error::data(path, msg);
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| {
        bad(format!(
            "not a safetensors checkpoint ({} bytes): {e}",
            bytes.len()
        ))
    })?;
    match header.metadata().as_ref().and_then(|m| m.get("model")) {
        Some(text) => ModelSpec::from_toml(text).map(Some).map_err(|e| {
            bad(format!(
                "its `model` metadata does not describe a model: {e}"
            ))
        }),
        None => Ok(None),
    }
}

const RUNNING_MEAN: &str = ".running_mean";
const RUNNING_VAR: &str = ".running_var";
const TRACKED: &str = ".num_batches_tracked";

/// An optimiser's state tensors, each list named like the parameters.
#[derive(Clone, Copy, Debug, Default)]
pub struct OptimizerTensors<'a> {
    /// SGD's momentum buffers, or Adam's first moments when `exp_avg_sq` is given.
    pub velocity: Option<&'a [NamedTensor]>,
    /// Adam's second moments.
    pub exp_avg_sq: Option<&'a [NamedTensor]>,
}

#[cfg(feature = "native")]
/// Writes `params` (and the optimiser's state tensors, when given) of a model of `spec` to
/// `path`, atomically, with any batch-norm statistics at PyTorch's initial values (see
/// [`save_with_norms`]). `state` adds the training state to the metadata.
pub fn save(
    path: &Path,
    spec: &ModelSpec,
    params: &[NamedTensor],
    optimizer: OptimizerTensors<'_>,
    state: Option<&TrainState>,
) -> Result<()> {
    let norms: Vec<NormBuffers> = spec
        .buffer_names()
        .iter()
        .map(|(name, features)| NormBuffers::initial(name, *features))
        .collect();
    save_with_norms(path, spec, params, optimizer, &norms, state)
}

#[cfg(feature = "native")]
/// [`save`] with the batch-norm layers' statistics (one per batch-norm layer of `spec`).
pub fn save_with_norms(
    path: &Path,
    spec: &ModelSpec,
    params: &[NamedTensor],
    optimizer: OptimizerTensors<'_>,
    norms: &[NormBuffers],
    state: Option<&TrainState>,
) -> Result<()> {
    write_atomic(path, &to_bytes(spec, params, optimizer, norms, state)?)
}

/// The checkpoint [`save_with_norms`] writes, as the bytes of a safetensors file.
pub fn to_bytes(
    spec: &ModelSpec,
    params: &[NamedTensor],
    optimizer: OptimizerTensors<'_>,
    norms: &[NormBuffers],
    state: Option<&TrainState>,
) -> Result<Vec<u8>> {
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
    let expected_norms = spec.buffer_names();
    let norms_match = norms.len() == expected_norms.len()
        && norms.iter().zip(&expected_norms).all(|(n, (name, f))| {
            &n.name == name && n.running_mean.len() == *f && n.running_var.len() == *f
        });
    if !norms_match {
        return Err(Error::InvalidParams(format!(
            "checkpoint batch-norm statistics do not match the model's batch norms {:?}",
            expected_norms
        )));
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
    let mut named: Vec<(String, Dtype, Vec<u8>, Vec<usize>)> = named
        .into_iter()
        .map(|(n, bytes, shape)| (n, Dtype::F32, bytes, shape))
        .collect();
    for n in norms {
        let f = n.running_mean.len();
        named.push((
            format!("{}{RUNNING_MEAN}", n.name),
            Dtype::F32,
            le_bytes(&n.running_mean),
            vec![f],
        ));
        named.push((
            format!("{}{RUNNING_VAR}", n.name),
            Dtype::F32,
            le_bytes(&n.running_var),
            vec![f],
        ));
        named.push((
            format!("{}{TRACKED}", n.name),
            Dtype::I64,
            n.num_batches_tracked.to_le_bytes().to_vec(),
            vec![],
        ));
    }
    let views = named
        .iter()
        .map(|(name, dtype, bytes, shape)| {
            TensorView::new(*dtype, shape.clone(), bytes)
                .map(|v| (name.clone(), v))
                .map_err(|e| {
                    Error::InvalidParams(format!("cannot encode checkpoint tensor {name}: {e}"))
                })
        })
        .collect::<Result<Vec<_>>>()?;

    let mut meta = HashMap::new();
    meta.insert("format".to_string(), FORMAT.to_string());
    meta.insert("architecture".to_string(), architecture(spec));
    meta.insert("model".to_string(), spec.to_toml());
    if let Some(s) = state {
        s.to_metadata(&mut meta);
    }
    safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::InvalidParams(format!("cannot encode the checkpoint: {e}")))
}

#[cfg(feature = "native")]
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
    write_atomic(path, &model_to_bytes(b, model, with_velocity, state)?)
}

/// The checkpoint [`save_model`] writes, as the bytes of a safetensors file.
pub fn model_to_bytes<B: Backend>(
    b: &B,
    model: &Model<B>,
    with_velocity: bool,
    state: Option<&TrainState>,
) -> Result<Vec<u8>> {
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
    let norms = model.read_norm_buffers(b)?;
    to_bytes(model.spec(), &params, optimizer, &norms, state)
}

#[cfg(feature = "native")]
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
    let norm_names = spec.buffer_names();
    let is_param = |n: &str| expected.iter().any(|(e, _)| e == n);
    let is_buffer = |n: &str| {
        [RUNNING_MEAN, RUNNING_VAR, TRACKED].iter().any(|suffix| {
            n.strip_suffix(suffix)
                .is_some_and(|m| norm_names.iter().any(|(b, _)| b == m))
        })
    };
    // Refuse anything unknown first: a typo'd or foreign name is the likeliest mistake.
    let mut names: Vec<&str> = tensors.names();
    names.sort_unstable();
    for name in &names {
        let known = is_param(name)
            || is_buffer(name)
            || name.strip_prefix(STATE_PREFIX).is_some_and(|n| {
                STATE_SUFFIXES
                    .iter()
                    .any(|s| n.strip_suffix(s).is_some_and(is_param))
            });
        if !known {
            return Err(bad(format!(
                "unexpected tensor `{name}` (the model's parameters are {}{})",
                expected
                    .iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                if norm_names.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", with the batch-norm buffers of {}",
                        norm_names
                            .iter()
                            .map(|(n, _)| n.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                }
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
    let mut norms = Vec::with_capacity(norm_names.len());
    for (name, features) in &norm_names {
        let f32s = |suffix: &str| -> Result<Vec<f32>> {
            let t = format!("{name}{suffix}");
            Ok(read(&t, &[*features])?
                .ok_or_else(|| bad(format!("missing batch-norm tensor `{t}`")))?
                .data)
        };
        let t = format!("{name}{TRACKED}");
        let view = tensors
            .tensor(&t)
            .map_err(|_| bad(format!("missing batch-norm tensor `{t}`")))?;
        if view.dtype() != Dtype::I64 || view.data().len() != 8 {
            return Err(bad(format!(
                "tensor `{t}` has dtype {:?} and shape {:?}, expected an I64 scalar (as PyTorch \
                 writes it)",
                view.dtype(),
                view.shape()
            )));
        }
        let tracked = i64::from_le_bytes(view.data().try_into().expect("8 bytes"));
        norms.push(NormBuffers {
            name: name.clone(),
            running_mean: f32s(RUNNING_MEAN)?,
            running_var: f32s(RUNNING_VAR)?,
            num_batches_tracked: tracked,
        });
    }
    Ok(Checkpoint {
        params,
        velocity,
        exp_avg_sq,
        metadata,
        norms,
    })
}

#[cfg(feature = "native")]
/// Builds a model of `spec` on `b` with the weights of the checkpoint at `path` (momentum
/// buffers start at zero), and returns it with the checkpoint it came from.
pub fn load_model<B: Backend>(
    b: &B,
    spec: ModelSpec,
    path: &Path,
) -> Result<(Model<B>, Checkpoint)> {
    let ckpt = load(path, &spec)?;
    let model = build_model(b, spec, &ckpt)?;
    Ok((model, ckpt))
}

/// Builds a model of `spec` on `b` with `ckpt`'s parameters and batch-norm statistics
/// (momentum buffers start at zero; resuming restores them, see `train::Resume`).
pub fn build_model<B: Backend>(b: &B, spec: ModelSpec, ckpt: &Checkpoint) -> Result<Model<B>> {
    let mut model = Model::with_params(b, spec, &ckpt.params)?;
    model.set_norm_buffers(b, &ckpt.norms)?;
    Ok(model)
}

#[cfg(feature = "native")]
/// Checks that a `what` (say "checkpoint") can be written to `path` (see
/// [`crate::output::check_writable`]): a bad path then fails before training, not after it.
pub use crate::output::check_writable;

#[cfg(feature = "native")]
/// Writes `bytes` to `path` atomically (see [`crate::output::write_atomic`]).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::output::write_atomic(path, bytes, "checkpoint")
}

fn le_bytes(data: &[f32]) -> Vec<u8> {
    data.iter().flat_map(|x| x.to_le_bytes()).collect()
}
