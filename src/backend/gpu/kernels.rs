//! The WGSL sources (one file per op family in shaders/, embedded at compile time) and the
//! `#[repr(C)]` parameter structs that mirror each file's uniform struct field by field.

use bytemuck::{Pod, Zeroable};

/// One WGSL module.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Shader {
    Matmul,
    Conv2d,
    Pool,
    Elementwise,
    Bias,
    Loss,
    Optim,
    Data,
    Dropout,
    BatchNorm,
}

impl Shader {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Shader::Matmul => "matmul.wgsl",
            Shader::Conv2d => "conv2d.wgsl",
            Shader::Pool => "pool.wgsl",
            Shader::Elementwise => "elementwise.wgsl",
            Shader::Bias => "bias.wgsl",
            Shader::Loss => "loss.wgsl",
            Shader::Optim => "optim.wgsl",
            Shader::Data => "data.wgsl",
            Shader::Dropout => "dropout.wgsl",
            Shader::BatchNorm => "batchnorm.wgsl",
        }
    }

    pub(crate) fn source(self) -> &'static str {
        macro_rules! shader {
            ($($file:literal),+) => {
                concat!($(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $file))),+)
            };
        }
        match self {
            Shader::Matmul => shader!("gemm_tile.wgsl", "matmul.wgsl"),
            Shader::Conv2d => shader!("gemm_tile.wgsl", "conv2d.wgsl"),
            Shader::Pool => shader!("pool.wgsl"),
            Shader::Elementwise => shader!("elementwise.wgsl"),
            Shader::Bias => shader!("bias.wgsl"),
            Shader::Loss => shader!("loss.wgsl"),
            Shader::Optim => shader!("optim.wgsl"),
            Shader::Data => shader!("data.wgsl"),
            Shader::Dropout => shader!("dropout.wgsl"),
            Shader::BatchNorm => shader!("batchnorm.wgsl"),
        }
    }
}

/// One entry point of a module. With the values of its override constants it names a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Kernel {
    pub shader: Shader,
    pub entry: &'static str,
}

impl Kernel {
    pub(crate) const fn new(shader: Shader, entry: &'static str) -> Self {
        Kernel { shader, entry }
    }
}

/// Values of a module's override constants, by name.
pub(crate) type Constants = Vec<(&'static str, u32)>;

pub(crate) const MATMUL: Kernel = Kernel::new(Shader::Matmul, "matmul");
/// conv2d.wgsl's MODE override picks the pass.
pub(crate) const CONV_GEMM: Kernel = Kernel::new(Shader::Conv2d, "conv2d_gemm");
pub(crate) const CONV_FORWARD: u32 = 0;
pub(crate) const CONV_BACKWARD_INPUT: u32 = 1;
pub(crate) const CONV_BACKWARD_WEIGHT: u32 = 2;
pub(crate) const SPLITK_REDUCE: Kernel = Kernel::new(Shader::Conv2d, "splitk_reduce");
pub(crate) const MAXPOOL_FORWARD: Kernel = Kernel::new(Shader::Pool, "maxpool_forward");
pub(crate) const MAXPOOL_BACKWARD: Kernel = Kernel::new(Shader::Pool, "maxpool_backward");
pub(crate) const AVGPOOL_FORWARD: Kernel = Kernel::new(Shader::Pool, "avgpool_forward");
pub(crate) const AVGPOOL_BACKWARD: Kernel = Kernel::new(Shader::Pool, "avgpool_backward");
pub(crate) const RELU_FORWARD: Kernel = Kernel::new(Shader::Elementwise, "relu_forward");
pub(crate) const RELU_BACKWARD: Kernel = Kernel::new(Shader::Elementwise, "relu_backward");
pub(crate) const FILL_ZERO: Kernel = Kernel::new(Shader::Elementwise, "fill_zero");
pub(crate) const BIAS_ADD: Kernel = Kernel::new(Shader::Bias, "bias_add");
pub(crate) const CHANNEL_SUM: Kernel = Kernel::new(Shader::Bias, "channel_sum");
pub(crate) const SOFTMAX_XENT: Kernel = Kernel::new(Shader::Loss, "softmax_xent");
pub(crate) const COUNT_CORRECT: Kernel = Kernel::new(Shader::Loss, "count_correct");
pub(crate) const SGD_STEP: Kernel = Kernel::new(Shader::Optim, "sgd_step");
pub(crate) const ADAM_STEP: Kernel = Kernel::new(Shader::Optim, "adam_step");
pub(crate) const SUM_SQUARES: Kernel = Kernel::new(Shader::Optim, "sum_squares");
pub(crate) const RECORD_NONFINITE: Kernel = Kernel::new(Shader::Optim, "record_nonfinite");
pub(crate) const GATHER_BATCH: Kernel = Kernel::new(Shader::Data, "gather_batch");
pub(crate) const GATHER_BATCH_AFFINE: Kernel = Kernel::new(Shader::Data, "gather_batch_affine");
pub(crate) const DROPOUT: Kernel = Kernel::new(Shader::Dropout, "dropout");
pub(crate) const BN_STATS: Kernel = Kernel::new(Shader::BatchNorm, "batch_norm_stats");
pub(crate) const BN_FORWARD: Kernel = Kernel::new(Shader::BatchNorm, "batch_norm_forward");
pub(crate) const BN_BACKWARD_PARAMS: Kernel =
    Kernel::new(Shader::BatchNorm, "batch_norm_backward_params");
pub(crate) const BN_BACKWARD_INPUT: Kernel =
    Kernel::new(Shader::BatchNorm, "batch_norm_backward_input");

/// Threads per workgroup of every 1-d kernel.
pub(crate) const WORKGROUP: usize = 256;

/// Outputs per thread along one side of the GEMM tile (gemm_tile.wgsl's TM or TN): the largest
/// of 4, 2, 1 whose tile (16 threads × it) the dimension still fills by more than half.
pub(crate) fn gemm_per_thread(len: usize) -> u32 {
    if len > 32 {
        4
    } else if len > 16 {
        2
    } else {
        1
    }
}

/// The smallest number of 128×128 tiles for which [`matmul_per_thread`] picks them: four
/// waves of workgroups on a 132-SM GPU, so that the last wave's idle SMs cost little.
pub(crate) const BIG_TILES_MIN: usize = 4 * 128;

/// TM and TN of a matrix product: 8×8 a thread (128×128 tiles, which reached 26.5 TFLOP/s at
/// 4096³ on an H200 where 64×64 tiles reached 18.5; ../shared/docs/PERFORMANCE.md) when the
/// product has at least [`BIG_TILES_MIN`] of them, else [`gemm_per_thread`] of each side.
pub(crate) fn matmul_per_thread(m: usize, n: usize) -> (u32, u32) {
    if m >= 128 && n >= 128 && (m / 128) * (n / 128) >= BIG_TILES_MIN {
        (8, 8)
    } else {
        (gemm_per_thread(m), gemm_per_thread(n))
    }
}

// ---- uniform structs: each mirrors the WGSL struct of the same name ------------------------

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct MatmulParams {
    pub m: u32,
    pub k: u32,
    pub n: u32,
    pub trans_a: u32,
    pub trans_b: u32,
    pub _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct ConvParams {
    pub batch: u32,
    pub splits: u32,
    pub k_chunk: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct PoolParams {
    pub planes: u32,
    pub _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct ElementwiseParams {
    pub len: u32,
    pub _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct ChannelParams {
    pub outer: u32,
    pub channels: u32,
    pub inner: u32,
    pub _pad: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct LossParams {
    pub batch: u32,
    pub classes: u32,
    pub _pad: [u32; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct OptimParams {
    pub len: u32,
    pub momentum: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    /// 0: no clipping.
    pub max_norm: f32,
    /// SGD: Nesterov; Adam: decoupled weight decay (AdamW).
    pub flag: u32,
    pub _pad: [u32; 3],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct GatherParams {
    pub batch: u32,
    pub image_len: u32,
    pub offset: u32,
    /// Image width: gather_batch_affine only.
    pub cols: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct DropoutParams {
    pub len: u32,
    pub threshold: u32,
    pub scale: f32,
    pub seed: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Pod, Zeroable)]
pub(crate) struct BnParams {
    pub outer: u32,
    pub channels: u32,
    pub inner: u32,
    pub eps: f32,
    pub momentum: f32,
    pub _pad: [u32; 3],
}
