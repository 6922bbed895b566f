//! Element-wise ops: ReLU forward and backward.

use rayon::prelude::*;

use super::PAR_MIN_LEN;
use crate::backend::check;
use crate::Result;

/// y = max(x, 0). x, y: [len].
pub fn relu_forward(len: usize, x: &[f32], y: &mut [f32]) -> Result<()> {
    check::elementwise("relu_forward", len, &[x.len(), y.len()])?;
    let kernel = |(y, x): (&mut [f32], &[f32])| {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = if x > 0.0 { x } else { 0.0 };
        }
    };
    if len < PAR_MIN_LEN {
        kernel((y, x));
    } else {
        y.par_chunks_mut(PAR_MIN_LEN / 4)
            .zip(x.par_chunks(PAR_MIN_LEN / 4))
            .for_each(kernel);
    }
    Ok(())
}

/// dx = dy where y > 0, else 0 (y is the forward output). y, dy, dx: [len].
pub fn relu_backward(len: usize, y: &[f32], dy: &[f32], dx: &mut [f32]) -> Result<()> {
    check::elementwise("relu_backward", len, &[y.len(), dy.len(), dx.len()])?;
    let kernel = |(dx, (y, dy)): (&mut [f32], (&[f32], &[f32]))| {
        for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
            *dx = if y > 0.0 { dy } else { 0.0 };
        }
    };
    if len < PAR_MIN_LEN {
        kernel((dx, (y, dy)));
    } else {
        let chunk = PAR_MIN_LEN / 4;
        dx.par_chunks_mut(chunk)
            .zip(y.par_chunks(chunk).zip(dy.par_chunks(chunk)))
            .for_each(kernel);
    }
    Ok(())
}
