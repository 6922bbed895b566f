//! Named parameters of every op. Each struct knows the sizes of the buffers its op reads and
//! writes, and `validate` refuses shapes that make no sense before anything is recorded.

use crate::{Error, Result};

/// A 2-d convolution over N,C,H,W tensors (square stride and padding, any kernel shape).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Conv2d {
    pub batch: usize,
    pub in_channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub out_channels: usize,
    pub kernel_h: usize,
    pub kernel_w: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Conv2d {
    pub fn out_h(&self) -> usize {
        (self.in_h + 2 * self.padding).saturating_sub(self.kernel_h) / self.stride.max(1) + 1
    }
    pub fn out_w(&self) -> usize {
        (self.in_w + 2 * self.padding).saturating_sub(self.kernel_w) / self.stride.max(1) + 1
    }
    pub fn input_len(&self) -> usize {
        self.batch * self.in_channels * self.in_h * self.in_w
    }
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.in_channels * self.kernel_h * self.kernel_w
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.out_channels * self.out_h() * self.out_w()
    }
    /// Multiply-adds of the forward pass (each backward pass costs the same).
    pub fn macs(&self) -> usize {
        self.output_len() * self.in_channels * self.kernel_h * self.kernel_w
    }
    pub fn validate(&self) -> Result<()> {
        let all = [
            self.batch,
            self.in_channels,
            self.in_h,
            self.in_w,
            self.out_channels,
            self.kernel_h,
            self.kernel_w,
            self.stride,
        ];
        if all.contains(&0) {
            return Err(Error::InvalidParams(format!(
                "conv2d with a zero size: {self:?}"
            )));
        }
        if self.kernel_h > self.in_h + 2 * self.padding
            || self.kernel_w > self.in_w + 2 * self.padding
        {
            return Err(Error::InvalidParams(format!(
                "conv2d kernel {}x{} is larger than the padded input {}x{}",
                self.kernel_h,
                self.kernel_w,
                self.in_h + 2 * self.padding,
                self.in_w + 2 * self.padding
            )));
        }
        Ok(())
    }
}

/// A 2-d pooling window (no padding; output size rounds down, as PyTorch's default).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Pool2d {
    pub batch: usize,
    pub channels: usize,
    pub in_h: usize,
    pub in_w: usize,
    pub kernel: usize,
    pub stride: usize,
}

impl Pool2d {
    pub fn out_h(&self) -> usize {
        self.in_h.saturating_sub(self.kernel) / self.stride.max(1) + 1
    }
    pub fn out_w(&self) -> usize {
        self.in_w.saturating_sub(self.kernel) / self.stride.max(1) + 1
    }
    pub fn input_len(&self) -> usize {
        self.batch * self.channels * self.in_h * self.in_w
    }
    pub fn output_len(&self) -> usize {
        self.batch * self.channels * self.out_h() * self.out_w()
    }
    pub fn validate(&self) -> Result<()> {
        let all = [
            self.batch,
            self.channels,
            self.in_h,
            self.in_w,
            self.kernel,
            self.stride,
        ];
        if all.contains(&0) {
            return Err(Error::InvalidParams(format!(
                "pool2d with a zero size: {self:?}"
            )));
        }
        if self.kernel > self.in_h || self.kernel > self.in_w {
            return Err(Error::InvalidParams(format!(
                "pool2d window {} is larger than the input {}x{}",
                self.kernel, self.in_h, self.in_w
            )));
        }
        Ok(())
    }
}

/// c[m,n] = op(a)[m,k] · op(b)[k,n].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Matmul {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    /// a is stored [k, m] and used transposed.
    pub trans_a: bool,
    /// b is stored [n, k] and used transposed.
    pub trans_b: bool,
}

impl Matmul {
    pub fn flops(&self) -> usize {
        2 * self.m * self.k * self.n
    }
    pub fn validate(&self) -> Result<()> {
        if self.m == 0 || self.k == 0 || self.n == 0 {
            return Err(Error::InvalidParams(format!(
                "matmul with a zero size: {self:?}"
            )));
        }
        Ok(())
    }
}

/// A tensor seen as [outer, channels, inner]: for a linear layer's [rows, features] output,
/// outer = rows, channels = features, inner = 1; for an N,C,H,W map, outer = N, channels = C,
/// inner = H·W.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Channels {
    pub outer: usize,
    pub channels: usize,
    pub inner: usize,
}

impl Channels {
    pub fn len(&self) -> usize {
        self.outer * self.channels * self.inner
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Softmax cross-entropy and accuracy over a [batch, classes] logits matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct SoftmaxXent {
    pub batch: usize,
    pub classes: usize,
}

/// One SGD update over `len` parameters, in PyTorch's form (no dampening):
/// `g ← scale·grad + weight_decay·param; v ← momentum·v + g;
/// param ← param − lr·(nesterov ? g + momentum·v : v)`, where `lr` and the clipping `scale`
/// come from the step's [`StepScalars`] buffer.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    pub len: usize,
    pub momentum: f32,
    pub nesterov: bool,
    /// L2 penalty added to the gradient (PyTorch's SGD `weight_decay`).
    pub weight_decay: f32,
    /// Clip the gradients to this global norm (see [`StepScalars`]); None: no clipping.
    pub max_norm: Option<f32>,
}

/// One Adam or AdamW update over `len` parameters, in PyTorch's form (single-tensor path):
/// `g ← scale·grad (+ weight_decay·param for Adam); param ← param·(1 − lr·weight_decay) for
/// AdamW; m ← m + (1 − β1)(g − m) (PyTorch's lerp); v ← β2·v + (1 − β2)·g²;
/// param ← param − step_size · m / (√v / bias_correction2_sqrt + eps)`, where the step's
/// [`StepScalars`] give lr, step_size = lr / (1 − β1^t) and bias_correction2_sqrt = √(1 − β2^t).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    pub len: usize,
    /// β1 and β2 in f64, as PyTorch holds them (Python floats): 1 − β and the bias corrections
    /// are computed in f64 and only then rounded to f32, so they match PyTorch's.
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f32,
    pub weight_decay: f32,
    /// AdamW: decay the weights directly instead of adding an L2 term to the gradient.
    pub decoupled: bool,
    /// Clip the gradients to this global norm (see [`StepScalars`]); None: no clipping.
    pub max_norm: Option<f32>,
}

/// What changes from one training step to the next, kept in a small resident buffer of
/// [`StepScalars::LEN`] words that the host overwrites once per step (so no per-step uniform
/// is ever created). Word layout (f32 unless noted):
///
/// | word | value |
/// | --- | --- |
/// | 0 | `lr`, this step's learning rate |
/// | 1 | `step_size` = lr / (1 − β1^t) (Adam) |
/// | 2 | `bias_correction2_sqrt` = √(1 − β2^t) (Adam) |
/// | 3 | the sum of squares of every gradient: the host writes 0, [`super::Backend::sum_squares`] adds to it; the update ops scale gradients by min(1, max_norm / (√sum + 1e-6)) as `clip_grad_norm_` does |
/// | 4 | the step number t (1-based), as `u32` bits |
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepScalars {
    pub lr: f32,
    pub step_size: f32,
    pub bias_correction2_sqrt: f32,
    pub step: u32,
}

impl Adam {
    /// (1 − β1, β2, 1 − β2) as the f32 factors the update multiplies by.
    pub fn factors(&self) -> (f32, f32, f32) {
        (
            (1.0 - self.beta1) as f32,
            self.beta2 as f32,
            (1.0 - self.beta2) as f32,
        )
    }
}

impl StepScalars {
    pub const LEN: usize = 5;
    /// The index of the gradients' sum of squares.
    pub const GRAD_SQ_SUM: usize = 3;
    /// The index of the step number.
    pub const STEP: usize = 4;

    /// A fixed learning rate for SGD (step 1; Adam's corrections unused).
    pub fn sgd(lr: f32) -> Self {
        StepScalars {
            lr,
            step_size: lr,
            bias_correction2_sqrt: 1.0,
            step: 1,
        }
    }

    /// The words to write into the buffer (the sum of squares reset to 0).
    pub fn words(&self) -> [f32; Self::LEN] {
        [
            self.lr,
            self.step_size,
            self.bias_correction2_sqrt,
            0.0,
            f32::from_bits(self.step),
        ]
    }
}

/// The factor `clip_grad_norm_` multiplies every gradient by, given the gradients' sum of
/// squares: min(1, max_norm / (√sum + 1e-6)); 1 without clipping.
pub fn clip_scale(max_norm: Option<f32>, sum_squares: f32) -> f32 {
    match max_norm {
        // Written as a comparison so that a NaN norm gives 1 on every backend.
        Some(max) => {
            let coef = max / (sum_squares.sqrt() + 1e-6);
            if coef < 1.0 {
                coef
            } else {
                1.0
            }
        }
        None => 1.0,
    }
}

/// Maps a pixel to the network's input exactly as torchvision's `ToTensor()` followed by
/// `Normalize((0.5,), (0.5,))` does, in the same order of f32 operations: 0 → −1, 255 → 1.
/// Both backends' gathers use it (the GPU through a table built from it).
pub fn normalize_pixel(p: u8) -> f32 {
    normalize_value(p as f32)
}

/// [`normalize_pixel`] of a value between pixels, as a bilinear resampling gives: the one
/// definition of the normalisation, `(v / 255 − 0.5) / 0.5` in that order of f32 operations.
pub fn normalize_value(v: f32) -> f32 {
    ((v / 255.0) - 0.5) / 0.5
}

/// Batch gathering from a resident dataset (see [`super::Backend::gather_batch`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gather {
    pub batch: usize,
    /// Pixels per image (784 for MNIST).
    pub image_len: usize,
    /// Where in the permutation this batch starts.
    pub offset: usize,
}

/// Values per permutation entry in the affine buffer of [`GatherAffine`]: the inverse map
/// `[a, b, c, d, e, f]` that takes output pixel (u, v) (column, row) to the source point
/// (a·u + b·v + c, d·u + e·v + f).
pub const AFFINE_LEN: usize = 6;

/// Gathering through a per-image affine resampling (augmentation): [`Gather`] plus the image
/// width, which the sampling needs (the height is `image_len / cols`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GatherAffine {
    pub gather: Gather,
    pub cols: usize,
}

/// Inverted dropout over `len` elements (see [`super::Backend::dropout_forward`]): each element
/// is kept with probability 1 − p and scaled by 1/(1 − p), or zeroed. Which elements are kept
/// depends only on (`seed`, the step in the step buffer, the element's index), through
/// [`dropout_hash`], so the backward pass and every backend draw the same mask.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dropout {
    pub len: usize,
    /// The probability of zeroing an element, in [0, 1).
    pub p: f32,
    pub seed: u32,
}

impl Dropout {
    /// Elements whose hash is below this are dropped: round(p · 2³²).
    pub fn threshold(&self) -> u32 {
        (self.p as f64 * 4_294_967_296.0)
            .round()
            .min(u32::MAX as f64) as u32
    }
    /// The scale of kept elements, 1/(1 − p), computed in f32 as PyTorch does.
    pub fn scale(&self) -> f32 {
        1.0 / (1.0 - self.p)
    }
    pub fn validate(&self) -> Result<()> {
        if !(0.0..1.0).contains(&self.p) {
            return Err(Error::InvalidParams(format!(
                "dropout probability must be in [0, 1), got {}",
                self.p
            )));
        }
        Ok(())
    }
}

/// One round of the PCG hash (Jarzyński and Olano, "Hash Functions for GPU Rendering", 2020);
/// shaders/dropout.wgsl computes the same in u32 arithmetic.
pub fn pcg_hash(v: u32) -> u32 {
    let s = v.wrapping_mul(747_796_405).wrapping_add(2_891_336_453);
    let w = ((s >> ((s >> 28) + 4)) ^ s).wrapping_mul(277_803_737);
    (w >> 22) ^ w
}

/// The dropout draw of element `index` at `step`: pcg(pcg(pcg(seed) ^ step) ^ index). The
/// element is dropped when this is below [`Dropout::threshold`].
pub fn dropout_hash(seed: u32, step: u32, index: u32) -> u32 {
    pcg_hash(pcg_hash(pcg_hash(seed) ^ step) ^ index)
}

/// Batch normalisation over a tensor seen as [outer, channels, inner] (BatchNorm2d: N, C, H·W;
/// BatchNorm1d: N, features, 1), per channel, with PyTorch's eps and momentum.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BatchNorm {
    pub shape: Channels,
    /// Added to the variance before the square root (PyTorch: 1e-5).
    pub eps: f32,
    /// The running statistics' update weight (PyTorch: 0.1).
    pub momentum: f32,
}

impl BatchNorm {
    /// PyTorch's defaults (eps 1e-5, momentum 0.1) over `shape`.
    pub fn new(shape: Channels) -> Self {
        BatchNorm {
            shape,
            eps: 1e-5,
            momentum: 0.1,
        }
    }
    /// Values per channel: outer · inner.
    pub fn per_channel(&self) -> usize {
        self.shape.outer * self.shape.inner
    }
    pub fn validate(&self) -> Result<()> {
        if self.shape.is_empty() {
            return Err(Error::InvalidParams(format!(
                "batch norm with a zero size: {self:?}"
            )));
        }
        Ok(())
    }
}
