//! A model's tensors to and from the host: parameters, gradients, the optimiser's buffers and
//! the batch norms' running statistics (for checkpoints, tests and pictures).

use super::{Model, NamedTensor, NormBuffers, Param};
use crate::backend::Backend;
use crate::{Error, Result};

impl<B: Backend> Model<B> {
    /// Reads every parameter back to the host, in initialisation order.
    pub fn read_params(&self, b: &B) -> Result<Vec<NamedTensor>> {
        self.read_each(b, self.params.iter().map(|p| &p.value))
    }

    /// Reads every parameter's gradient (from the last [`Self::backward`]) back to the host.
    pub fn read_grads(&self, b: &B) -> Result<Vec<NamedTensor>> {
        self.read_each(b, self.params.iter().map(|p| &p.grad))
    }

    /// Reads every momentum buffer (SGD's velocity, Adam's exp_avg) back to the host, named
    /// like its parameter.
    pub fn read_velocity(&self, b: &B) -> Result<Vec<NamedTensor>> {
        self.read_each(b, self.optim.velocity().iter())
    }

    /// Reads every second-moment buffer (Adam's exp_avg_sq) back to the host, named like its
    /// parameter; None when the model has none (it was never updated by Adam).
    pub fn read_exp_avg_sq(&self, b: &B) -> Result<Option<Vec<NamedTensor>>> {
        match self.optim.exp_avg_sq() {
            Some(v) => self.read_each(b, v.iter()).map(Some),
            None => Ok(None),
        }
    }

    /// `bufs` (one per parameter, in order) read back, each named and shaped like its parameter.
    fn read_each<'a>(
        &self,
        b: &B,
        bufs: impl Iterator<Item = &'a B::Buffer>,
    ) -> Result<Vec<NamedTensor>>
    where
        B::Buffer: 'a,
    {
        self.params
            .iter()
            .zip(bufs)
            .map(|(p, buf)| {
                Ok(NamedTensor {
                    name: p.name.clone(),
                    shape: p.shape.clone(),
                    data: b.read_f32(buf)?,
                })
            })
            .collect()
    }

    /// Overwrites the named parameters (any subset; each must exist with the same shape).
    /// Momentum buffers are left as they are.
    pub fn set_params(&mut self, b: &B, tensors: &[NamedTensor]) -> Result<()> {
        let targets = self.targets(tensors)?;
        for (t, i) in tensors.iter().zip(targets) {
            b.write_f32(&mut self.params[i].value, &t.data)?;
        }
        Ok(())
    }

    /// Overwrites the momentum buffers of the named parameters (any subset; each must exist
    /// with the same shape), e.g. from a checkpoint.
    pub fn set_velocity(&mut self, b: &B, tensors: &[NamedTensor]) -> Result<()> {
        let targets = self.targets(tensors)?;
        let v = self.optim.velocity_mut();
        for (t, i) in tensors.iter().zip(targets) {
            b.write_f32(&mut v[i], &t.data)?;
        }
        Ok(())
    }

    /// Overwrites the second-moment buffers (Adam's exp_avg_sq) of the named parameters (any
    /// subset; each must exist with the same shape), allocating them first where needed.
    pub fn set_exp_avg_sq(&mut self, b: &B, tensors: &[NamedTensor]) -> Result<()> {
        let targets = self.targets(tensors)?;
        let v = self.optim.exp_avg_sq_mut(b, &self.params)?;
        for (t, i) in tensors.iter().zip(targets) {
            b.write_f32(&mut v[i], &t.data)?;
        }
        Ok(())
    }

    /// The parameter index of each tensor, all checked before anything is written.
    fn targets(&self, tensors: &[NamedTensor]) -> Result<Vec<usize>> {
        tensors
            .iter()
            .map(|t| {
                let i = self
                    .params
                    .iter()
                    .position(|p: &Param<B>| p.name == t.name)
                    .ok_or_else(|| {
                        Error::InvalidParams(format!("the model has no parameter named {}", t.name))
                    })?;
                t.check(&self.params[i].name, &self.params[i].shape)?;
                Ok(i)
            })
            .collect()
    }

    /// Sets every optimiser state buffer to zero.
    pub fn reset_velocity(&mut self, b: &B) -> Result<()> {
        self.optim.reset(b)
    }

    /// Every batch-norm layer's running statistics, read back.
    pub fn read_norm_buffers(&self, b: &B) -> Result<Vec<NormBuffers>> {
        self.norms.iter().flatten().map(|n| n.read(b)).collect()
    }

    /// Overwrites the named batch-norm layers' running statistics (any subset).
    pub fn set_norm_buffers(&mut self, b: &B, buffers: &[NormBuffers]) -> Result<()> {
        for buf in buffers {
            let n = self
                .norms
                .iter_mut()
                .flatten()
                .find(|n| n.name == buf.name)
                .ok_or_else(|| {
                    Error::InvalidParams(format!("the model has no batch norm named {}", buf.name))
                })?;
            n.write(b, buf)?;
        }
        Ok(())
    }
}
