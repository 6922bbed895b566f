//! The optimiser: SGD with momentum.

use rayon::prelude::*;

use super::PAR_MIN_LEN;
use crate::backend::{check, Sgd};
use crate::Result;

/// PyTorch's SGD with momentum (no dampening, no Nesterov, no weight decay):
/// `v ← μ·v + g; param ← param − lr·v`. param, grad, velocity: [len].
pub fn sgd_momentum(p: &Sgd, param: &mut [f32], grad: &[f32], velocity: &mut [f32]) -> Result<()> {
    check::sgd(p, param.len(), grad.len(), velocity.len())?;
    let (lr, mu) = (p.lr, p.momentum);
    let kernel = |((param, v), g): ((&mut [f32], &mut [f32]), &[f32])| {
        for ((param, v), &g) in param.iter_mut().zip(v.iter_mut()).zip(g) {
            *v = mu * *v + g;
            *param -= lr * *v;
        }
    };
    if p.len < PAR_MIN_LEN {
        kernel(((param, velocity), grad));
    } else {
        let chunk = PAR_MIN_LEN / 4;
        param
            .par_chunks_mut(chunk)
            .zip(velocity.par_chunks_mut(chunk))
            .zip(grad.par_chunks(chunk))
            .for_each(kernel);
    }
    Ok(())
}
