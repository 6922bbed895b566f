//! The optimiser's state on the backend — a momentum buffer per parameter (SGD's velocity,
//! Adam's exp_avg) and, for Adam, a second moment (exp_avg_sq) — and the update that reads it.

use super::{OptimConfig, Optimizer};
use crate::backend::Backend;
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
    velocity: Vec<B::Buffer>,
    /// Adam's second moment (exp_avg_sq): allocated, zero, by the first Adam update or
    /// [`Self::set_exp_avg_sq`]; None until then.
    exp_avg_sq: Option<Vec<B::Buffer>>,
}

impl<B: Backend> OptimState<B> {
    /// Zero momentum for each parameter.
    pub fn new(b: &B, params: &[impl Parameter<B>]) -> Result<Self> {
        let velocity = params
            .iter()
            .map(|p| b.zeros(p.len(), &format!("{}.velocity", p.name())))
            .collect::<Result<_>>()?;
        Ok(OptimState {
            velocity,
            exp_avg_sq: None,
        })
    }

    /// Each parameter's momentum buffer.
    pub fn velocity(&self) -> &[B::Buffer] {
        &self.velocity
    }

    pub fn velocity_mut(&mut self) -> &mut [B::Buffer] {
        &mut self.velocity
    }

    /// Each parameter's second moment, once there are any.
    pub fn exp_avg_sq(&self) -> Option<&[B::Buffer]> {
        self.exp_avg_sq.as_deref()
    }

    /// Each parameter's second moment, allocated (zero) first if there are none yet.
    pub fn exp_avg_sq_mut(
        &mut self,
        b: &B,
        params: &[impl Parameter<B>],
    ) -> Result<&mut [B::Buffer]> {
        if self.exp_avg_sq.is_none() {
            let v = params
                .iter()
                .map(|p| b.zeros(p.len(), &format!("{}.exp_avg_sq", p.name())))
                .collect::<Result<_>>()?;
            self.exp_avg_sq = Some(v);
        }
        Ok(self.exp_avg_sq.as_mut().expect("allocated above"))
    }

    /// Sets every state buffer to zero.
    pub fn reset(&mut self, b: &B) -> Result<()> {
        for v in self
            .velocity
            .iter_mut()
            .chain(self.exp_avg_sq.iter_mut().flatten())
        {
            b.fill_zero(v)?;
        }
        Ok(())
    }

    /// One optimiser update of every parameter from its current gradient. `scalars` holds the
    /// step's [`crate::backend::StepScalars`] (written by the host beforehand, its sum of
    /// squares 0); with clipping, every gradient's sum of squares is added to it first, on the
    /// backend, and the update ops scale the gradients by the global norm.
    pub fn update(
        &mut self,
        b: &B,
        optim: &OptimConfig,
        params: &mut [impl Parameter<B>],
        scalars: &mut B::Buffer,
    ) -> Result<()> {
        b.scope("update");
        let clip = optim.clip_grad_norm;
        if clip.is_some() {
            for p in params.iter() {
                b.sum_squares(p.len(), p.grad(), scalars)?;
            }
        }
        match optim.optimizer {
            Optimizer::Sgd { .. } => {
                for (p, m) in params.iter_mut().zip(&mut self.velocity) {
                    let sgd = optim.optimizer.sgd_params(p.len(), clip).expect("SGD");
                    let (value, grad) = p.value_and_grad();
                    b.sgd_step(&sgd, scalars, value, grad, m)?;
                }
            }
            Optimizer::Adam { .. } => {
                self.exp_avg_sq_mut(b, params)?;
                let v = self.exp_avg_sq.as_mut().expect("allocated above");
                for ((p, m), v) in params.iter_mut().zip(&mut self.velocity).zip(v) {
                    let adam = optim.optimizer.adam_params(p.len(), clip).expect("Adam");
                    let (value, grad) = p.value_and_grad();
                    b.adam_step(&adam, scalars, value, grad, m, v)?;
                }
            }
        }
        Ok(())
    }
}
