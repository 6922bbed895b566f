//! The launchers of every op family, one file each, named as in `cpu/` and `shaders/`. A file
//! holds its family's WGSL module and entry points (each named after the [`Backend`] method it
//! implements), the `#[repr(C)]` uniform struct that mirrors the WGSL one field by field, the
//! binding slots by name, and one function per [`Backend`] method, which checks the buffers'
//! lengths and records the dispatch.
//!
//! [`Backend`]: crate::backend::Backend

pub(super) mod batch_norm;
pub(super) mod bias;
pub(super) mod conv2d;
pub(super) mod dropout;
pub(super) mod elementwise;
pub(super) mod gather;
pub(super) mod loss;
pub(super) mod matmul;
pub(super) mod optim;
pub(super) mod pool2d;

use crate::{Error, Result};

/// `v` as a kernel's u32 index, or [`Error::Limit`] naming `what`.
pub(super) fn to_u32(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::Limit(format!(
            "{what} = {v} does not fit the GPU's 32-bit indices"
        ))
    })
}
