//! The WGSL backend (being written).
