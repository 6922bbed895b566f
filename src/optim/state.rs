//! The optimiser's state on the backend — a momentum buffer per parameter (SGD's velocity,
//! Adam's exp_avg) and, for Adam, a second moment (exp_avg_sq) — and the update that reads it.
//! Each state is packed as the model packs its values and gradients
//! ([`Backend::zeros_packed`]): where the backend keeps the tensors in one allocation, the
//! update of every parameter is one op over the whole.

use super::{OptimConfig, Optimizer};
use crate::backend::{Backend, Packed};
use crate::Result;

/// What the optimiser updates: one parameter tensor, its value and its gradient (the model's
/// [`crate::model::Param`]).
#[allow(clippy::len_without_is_empty)] // a parameter tensor is never empty
pub trait Parameter<B: Backend> {
    /// The name its state buffers are labelled with.
    fn name(&self) -> &str;
    /// Its number of values (never 0: every tensor of a model has a size).
    fn len(&self) -> usize;
    fn grad(&self) -> &B::Buffer;
    /// The value to update and the gradient to update it from.
    fn value_and_grad(&mut self) -> (&mut B::Buffer, &B::Buffer);
}

/// The optimiser state of a model's parameters, in the model's parameter order.
pub struct OptimState<B: Backend> {
    /// SGD's momentum buffer, or Adam's first moment (exp_avg).
    velocity: Packed<B::Buffer>,
    /// Adam's second moment (exp_avg_sq): allocated, zero, by the first Adam update or
    /// [`Self::exp_avg_sq_mut`]; None until then.
    exp_avg_sq: Option<Packed<B::Buffer>>,
}

/// Every parameter's value and gradient as one buffer each, where the backend packed them
/// ([`Packed::whole`]): what lets [`OptimState::update`] update them all in one op.
pub struct Whole<'a, B: Backend> {
    pub values: &'a mut B::Buffer,
    pub grads: &'a B::Buffer,
}

/// The lengths of `params`, the layout their state is packed in.
fn lens<B: Backend>(params: &[impl Parameter<B>]) -> Vec<usize> {
    params.iter().map(|p| p.len()).collect()
}

impl<B: Backend> OptimState<B> {
    /// Zero momentum for each parameter.
    pub fn new(b: &B, params: &[impl Parameter<B>]) -> Result<Self> {
        Ok(OptimState {
            velocity: b.zeros_packed(&lens(params), "velocity")?,
            exp_avg_sq: None,
        })
    }

    /// Each parameter's momentum buffer.
    pub fn velocity(&self) -> &[B::Buffer] {
        &self.velocity.parts
    }

    pub fn velocity_mut(&mut self) -> &mut [B::Buffer] {
        &mut self.velocity.parts
    }

    /// Each parameter's second moment, once there are any.
    pub fn exp_avg_sq(&self) -> Option<&[B::Buffer]> {
        self.exp_avg_sq.as_ref().map(|p| &p.parts[..])
    }

    /// Each parameter's second moment, allocated (zero) first if there are none yet.
    pub fn exp_avg_sq_mut(
        &mut self,
        b: &B,
        params: &[impl Parameter<B>],
    ) -> Result<&mut [B::Buffer]> {
        if self.exp_avg_sq.is_none() {
            self.exp_avg_sq = Some(b.zeros_packed(&lens(params), "exp_avg_sq")?);
        }
        Ok(&mut self.exp_avg_sq.as_mut().expect("allocated above").parts)
    }

    /// Sets every state buffer to zero.
    pub fn reset(&mut self, b: &B) -> Result<()> {
        for v in self
            .velocity
            .parts
            .iter_mut()
            .chain(self.exp_avg_sq.iter_mut().flat_map(|p| &mut p.parts))
        {
            b.fill_zero(v)?;
        }
        Ok(())
    }

    /// One optimiser update of every parameter from its current gradient. `scalars` holds the
    /// step's [`crate::backend::StepScalars`] (written by the host beforehand, its sum of
    /// squares 0); with clipping, every gradient's sum of squares is added to it first, on the
    /// backend, and the update ops scale the gradients by the global norm. With `whole` (the
    /// parameters packed in one buffer, as their state is) the update is one op over it all,
    /// else one per parameter; element by element the two compute the same.
    pub fn update(
        &mut self,
        b: &B,
        optim: &OptimConfig,
        params: &mut [impl Parameter<B>],
        whole: Option<Whole<'_, B>>,
        scalars: &mut B::Buffer,
    ) -> Result<()> {
        b.scope("update");
        let clip = optim.clip_grad_norm;
        if clip.is_some() {
            for p in params.iter() {
                b.sum_squares(p.len(), p.grad(), scalars)?;
            }
        }
        if optim.optimizer.has_second_moment() {
            self.exp_avg_sq_mut(b, params)?;
        }
        if let (Some(w), Some(m)) = (whole, self.velocity.whole.as_mut()) {
            let len = b.len(w.values);
            match optim.optimizer {
                Optimizer::Sgd { .. } => {
                    let sgd = optim.optimizer.sgd_params(len, clip).expect("SGD");
                    return b.sgd_step(&sgd, scalars, w.values, w.grads, m);
                }
                Optimizer::Adam { .. } => {
                    let v = self.exp_avg_sq.as_mut().expect("allocated above");
                    if let Some(v) = v.whole.as_mut() {
                        let adam = optim.optimizer.adam_params(len, clip).expect("Adam");
                        return b.adam_step(&adam, scalars, w.values, w.grads, m, v);
                    }
                }
            }
        }
        match optim.optimizer {
            Optimizer::Sgd { .. } => {
                for (p, m) in params.iter_mut().zip(&mut self.velocity.parts) {
                    let sgd = optim.optimizer.sgd_params(p.len(), clip).expect("SGD");
                    let (value, grad) = p.value_and_grad();
                    b.sgd_step(&sgd, scalars, value, grad, m)?;
                }
            }
            Optimizer::Adam { .. } => {
                let v = &mut self.exp_avg_sq.as_mut().expect("allocated above").parts;
                for ((p, m), v) in params.iter_mut().zip(&mut self.velocity.parts).zip(v) {
                    let adam = optim.optimizer.adam_params(p.len(), clip).expect("Adam");
                    let (value, grad) = p.value_and_grad();
                    b.adam_step(&adam, scalars, value, grad, m, v)?;
                }
            }
        }
        Ok(())
    }
}
