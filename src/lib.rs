//! cnn-gpu: a convolutional-network trainer whose kernels are WGSL compute shaders run through
//! wgpu, with a CPU backend that is both the fallback and the reference every GPU kernel is
//! checked against.
//!
//! The pieces: [`backend`] (the [`backend::Backend`] trait and its CPU and GPU implementations),
//! [`data`] (MNIST-family IDX files), [`model`] (sequential models of layers, the SimpleCNN
//! and LeNet-5 presets), [`modelfile`] (their TOML descriptions) and [`train`] (the training
//! loop and evaluation).

pub mod backend;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod metrics;
pub mod model;
pub mod modelfile;
pub mod optim;
pub mod profile;
pub mod train;

pub use error::{Error, Result};
