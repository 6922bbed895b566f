//! What a model holds on its backend besides its description: each parameter's value and
//! gradient ([`Param`]), each batch norm's statistics ([`NormState`]), and their host copies
//! ([`NamedTensor`], [`NormBuffers`]). The optimiser's state is [`crate::optim::OptimState`].

use crate::backend::Backend;
use crate::optim::Parameter;
use crate::{Error, Result};

/// A host copy of one named tensor (a parameter or its gradient), row-major.
#[derive(Clone, Debug, PartialEq)]
pub struct NamedTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

impl NamedTensor {
    /// Refuses a tensor whose shape or length is not `shape` (`name` is the model's tensor).
    pub(crate) fn check(&self, name: &str, shape: &[usize]) -> Result<()> {
        let len: usize = shape.iter().product();
        if self.shape != shape || self.data.len() != len {
            return Err(Error::InvalidParams(format!(
                "parameter {name} should have shape {shape:?}, got shape {:?} with {} values",
                self.shape,
                self.data.len()
            )));
        }
        Ok(())
    }
}

/// One parameter tensor on the backend: its value and its gradient (overwritten by every
/// backward pass).
pub struct Param<B: Backend> {
    pub name: String,
    pub shape: Vec<usize>,
    pub value: B::Buffer,
    pub grad: B::Buffer,
}

impl<B: Backend> Param<B> {
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<B: Backend> Parameter<B> for Param<B> {
    fn name(&self) -> &str {
        &self.name
    }
    fn len(&self) -> usize {
        Param::len(self)
    }
    fn grad(&self) -> &B::Buffer {
        &self.grad
    }
    fn value_and_grad(&mut self) -> (&mut B::Buffer, &B::Buffer) {
        (&mut self.value, &self.grad)
    }
}

/// One batch-norm layer's statistics: the running ones (PyTorch's buffers) and those of the
/// last training batch (for the backward pass). Both are [means; variances].
pub(crate) struct NormState<B: Backend> {
    pub name: String,
    pub features: usize,
    pub running: B::Buffer,
    pub batch: B::Buffer,
    /// PyTorch's `num_batches_tracked`: training forward passes through this layer.
    pub tracked: i64,
}

impl<B: Backend> NormState<B> {
    /// PyTorch's initial statistics for the batch norm `name`.
    pub fn new(b: &B, name: String, features: usize) -> Result<Self> {
        let init = NormBuffers::initial(&name, features);
        Ok(NormState {
            running: b.upload_f32(
                &[init.running_mean, init.running_var].concat(),
                &format!("{name}.running"),
            )?,
            batch: b.zeros(2 * features, &format!("{name}.batch_stats"))?,
            name,
            features,
            tracked: 0,
        })
    }

    /// The running statistics, read back.
    pub fn read(&self, b: &B) -> Result<NormBuffers> {
        let mut mean = b.read_f32(&self.running)?;
        let var = mean.split_off(self.features);
        Ok(NormBuffers {
            name: self.name.clone(),
            running_mean: mean,
            running_var: var,
            num_batches_tracked: self.tracked,
        })
    }

    /// Overwrites the running statistics.
    pub fn write(&mut self, b: &B, buf: &NormBuffers) -> Result<()> {
        if buf.running_mean.len() != self.features || buf.running_var.len() != self.features {
            return Err(Error::InvalidParams(format!(
                "batch norm {} has {} features, got {} means and {} variances",
                buf.name,
                self.features,
                buf.running_mean.len(),
                buf.running_var.len()
            )));
        }
        b.write_f32(
            &mut self.running,
            &[buf.running_mean.as_slice(), &buf.running_var].concat(),
        )?;
        self.tracked = buf.num_batches_tracked;
        Ok(())
    }
}

/// A batch-norm layer's buffers on the host, named as in PyTorch's `state_dict`.
#[derive(Clone, Debug, PartialEq)]
pub struct NormBuffers {
    /// The module name, e.g. `bn1` or `layers.1`.
    pub name: String,
    pub running_mean: Vec<f32>,
    pub running_var: Vec<f32>,
    pub num_batches_tracked: i64,
}

impl NormBuffers {
    /// PyTorch's initial values: means 0, variances 1, nothing tracked.
    pub fn initial(name: &str, features: usize) -> Self {
        NormBuffers {
            name: name.to_string(),
            running_mean: vec![0.0; features],
            running_var: vec![1.0; features],
            num_batches_tracked: 0,
        }
    }
}
