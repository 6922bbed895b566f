//! cnn-gpu: a convolutional-network trainer whose kernels are WGSL compute shaders run through
//! wgpu, with a CPU backend that is both the fallback and the reference every GPU kernel is
//! checked against.
//!
//! The pieces: [`backend`] (the [`backend::Backend`] trait and its CPU and GPU implementations),
//! [`data`] (MNIST-family IDX files), [`model`] (sequential models of layers, one file per layer
//! kind, the presets and their TOML model files), [`optim`] (optimizers,
//! schedules, clipping) and [`train`] (the training loop and evaluation). Around them:
//! [`digit`] (digit pictures to MNIST images), [`matrix`] (one convolution or pooling of a small
//! matrix), [`picture`] (pictures of kernels, activations and training curves), [`metrics`] and
//! [`output`] (atomic writes of every output file), and [`selftest`] (every GPU kernel against
//! the CPU reference: `cnn-gpu check`).
//!
//! Without the default feature `native` the library builds for `wasm32-unknown-unknown`: the
//! backends, models, optimisers, checkpoints (as bytes) and the training step, without the
//! CLI, downloads, the file system, progress bars, signals and pictures' file output.

pub mod backend;
pub mod checkpoint;
pub mod data;
pub mod digit;
pub mod error;
pub mod matrix;
#[cfg(feature = "native")]
pub mod metrics;
pub mod model;
pub mod optim;
#[cfg(feature = "native")]
pub mod output;
#[cfg(feature = "native")]
pub mod picture;
pub mod profile;
pub mod selftest;
pub mod train;

pub use error::{Error, Result};
