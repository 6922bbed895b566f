//! The WGSL backend: every op of [`Backend`] as a compute kernel from shaders/, run through wgpu
//! on Vulkan, Metal or DX12.
//!
//! How work reaches the GPU:
//! - Pipelines are built once per (module, entry point, override) and cached; shader modules are
//!   built with naga's runtime checks on software adapters and in tests, without them on real
//!   GPUs (they cost up to 50× on the register-tiled GEMM; see PERFORMANCE.md).
//! - Each op's parameters become a uniform buffer, cached by content, and its bind group is
//!   cached by (kernel, uniform, buffers): a training loop that calls the same ops on the same
//!   buffers every step builds every uniform and bind group during its first step only.
//! - Ops are recorded into one open compute pass of one command encoder; [`Backend::flush`]
//!   submits it without waiting. Reads and writes flush first, so they are ordered after every
//!   op recorded before them.
//! - Every buffer and dispatch is checked against the adapter's limits before anything is
//!   recorded; validation, out-of-memory and device-lost reports surface as
//!   [`crate::Error::Gpu`] at the next flush or read.
//!
//! The files: `context` opens the adapter and device; `memory` holds buffers, writes, readback
//! and submit; `dispatch` the module, pipeline, uniform and bind-group caches, the grids and the
//! recording of a dispatch; `plan` the log of dispatches behind `cnn-gpu time --plan`; `profile` the per-scope timing; `ops/<family>.rs` each op family's
//! launchers, uniform structs and binding slots. The [`Backend`] impl below only delegates.

mod context;
mod dispatch;
mod memory;
mod ops;
mod plan;
mod profile;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::Ordering;

use super::{
    Adam, Backend, BatchNorm, Channels, Conv2d, CounterCells, Counters, Dropout, Gather,
    GatherAffine, Matmul, Packed, Pool2d, Sgd, SoftmaxXent,
};
use crate::Result;
use context::Context;
pub use context::{list_adapters, AdapterSummary};
use dispatch::{Caches, Recording};
pub use memory::GpuBuffer;
use memory::{buffer_limit, create_buffer};
use ops::matmul::Epilogue;
use ops::*;
pub use plan::PlannedDispatch;
use profile::Profile;

/// Whether shader modules keep naga's runtime checks (bounds clamping, loop bounding, zeroed
/// workgroup memory).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RuntimeChecks {
    /// On for software adapters (lavapipe) or when `CNN_GPU_CHECKED=1`, off on real GPUs.
    #[default]
    Auto,
    On,
    Off,
}

/// The register-tiled GEMM core that matmul and the three convolution passes run on (the
/// `gemm_*.wgsl` helper prepended to shaders/matmul.wgsl and shaders/conv2d.wgsl). Every variant
/// computes the same sums in the same order per output, so they agree with each other and with
/// the CPU backend within the GEMM tolerances; they differ in how a workgroup stages its tiles.
/// Chosen by [`GpuOptions::gemm`], else `$CNN_GPU_GEMM` (a [`GemmVariant::name`]), else
/// [`GemmVariant::default`]. Loop over [`GemmVariant::ALL`] to test or time each.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum GemmVariant {
    /// shaders/gemm_tile.wgsl: 16×16 threads, TM×TN outputs a thread strided by 16, scalar
    /// workgroup loads, one K-tile of 16 in workgroup memory at a time.
    #[default]
    Baseline,
    /// shaders/gemm_vec4.wgsl: the same tiles with contiguous outputs a thread read from
    /// workgroup memory as vec4s, a swizzled (bank-conflict-free) A tile, and the next K-tile
    /// prefetched into registers while the current one is multiplied.
    Vec4,
}

impl GemmVariant {
    /// Every variant, the default first.
    pub const ALL: &'static [GemmVariant] = &[GemmVariant::Baseline, GemmVariant::Vec4];

    /// The environment variable that picks the variant when [`GpuOptions::gemm`] is None.
    pub const ENV: &'static str = "CNN_GPU_GEMM";

    /// Its name in `$CNN_GPU_GEMM`, flags and reports: `baseline` ….
    pub fn name(self) -> &'static str {
        match self {
            GemmVariant::Baseline => "baseline",
            GemmVariant::Vec4 => "vec4",
        }
    }

    /// The variant called `name` (see [`Self::name`]).
    pub fn parse(name: &str) -> Option<GemmVariant> {
        Self::ALL.iter().copied().find(|v| v.name() == name)
    }

    /// The variant `$CNN_GPU_GEMM` names (None when unset or empty); an unknown name is an
    /// [`crate::Error::Setting`] that lists the known ones.
    pub fn from_env() -> Result<Option<GemmVariant>> {
        match std::env::var(Self::ENV) {
            Ok(v) if !v.is_empty() => Self::parse(&v).map(Some).ok_or_else(|| {
                let known: Vec<&str> = Self::ALL.iter().map(|v| v.name()).collect();
                crate::Error::setting(
                    "gemm",
                    format!(
                        "{v:?} (from ${}) is not one of {}",
                        Self::ENV,
                        known.join(", ")
                    ),
                )
            }),
            _ => Ok(None),
        }
    }
}

impl std::fmt::Display for GemmVariant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How to open the GPU backend.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// An index from `cnn-gpu info` or part of an adapter's name; None picks the best adapter.
    pub adapter: Option<String>,
    pub runtime_checks: RuntimeChecks,
    /// The GEMM core; None: `$CNN_GPU_GEMM`, else [`GemmVariant::default`].
    pub gemm: Option<GemmVariant>,
    /// Use at most this many workgroups per dispatch dimension (below the adapter's limit):
    /// lets tests exercise the grid folding that large batches need, on small shapes.
    pub max_workgroups_per_dimension: Option<u32>,
    /// Allocate no buffer larger than this many bytes (below the adapter's limit): lets tests
    /// reach the batch-size limit on small data.
    pub max_buffer_bytes: Option<u64>,
}

pub struct GpuBackend {
    ctx: Context,
    checked: bool,
    gemm: GemmVariant,
    caches: RefCell<Caches>,
    /// Split-K partial sums of weight gradients, by length.
    scratch: RefCell<HashMap<usize, GpuBuffer>>,
    /// Mapped-read staging buffers, by size.
    staging: RefCell<HashMap<u64, wgpu::Buffer>>,
    recording: RefCell<Option<Recording>>,
    next_id: Cell<u64>,
    /// The 256 normalised pixel values, computed on the host with [`crate::backend::normalize_pixel`].
    norm_table: GpuBuffer,
    /// One word bound read-write where a kernel's layout has a binding that the dispatch does
    /// not use (a product without row sums); nothing writes it.
    stand_in: GpuBuffer,
    dispatches: Cell<u64>,
    /// The dispatches logged while planning (see `plan`).
    plan: RefCell<Option<Vec<PlannedDispatch>>>,
    /// The exact FLOPs of the next dispatch, when its launcher knows them.
    next_flops: Cell<Option<f64>>,
    profile: RefCell<Option<Profile>>,
    counters: CounterCells,
}

impl GpuBackend {
    /// Opens the chosen adapter (see [`GpuOptions`]) and uploads the normalisation table,
    /// blocking on [`GpuBackend::new_async`].
    pub fn new(options: &GpuOptions) -> Result<GpuBackend> {
        pollster::block_on(Self::new_async(options))
    }

    /// [`GpuBackend::new`] for callers that can await instead of blocking (the web).
    pub async fn new_async(options: &GpuOptions) -> Result<GpuBackend> {
        let gemm = match options.gemm {
            Some(v) => v,
            None => GemmVariant::from_env()?.unwrap_or_default(),
        };
        let mut ctx = Context::open(options.adapter.as_deref()).await?;
        if let Some(max) = options.max_workgroups_per_dimension {
            let limit = &mut ctx.limits.max_compute_workgroups_per_dimension;
            *limit = (*limit).min(max.max(1));
        }
        if let Some(max) = options.max_buffer_bytes {
            let limit = &mut ctx.limits.max_storage_buffer_binding_size;
            *limit = (*limit).min(max.max(4));
        }
        let software = ctx.summary.device_type == format!("{:?}", wgpu::DeviceType::Cpu);
        let forced = std::env::var("CNN_GPU_CHECKED").is_ok_and(|v| v == "1");
        let checked = match options.runtime_checks {
            RuntimeChecks::Auto => software || forced,
            RuntimeChecks::On => true,
            RuntimeChecks::Off => false,
        };
        let table: Vec<f32> = (0..=255u8).map(crate::backend::normalize_pixel).collect();
        let norm_table = create_buffer(&ctx, 256, "normalisation table", 0)?;
        ctx.queue
            .write_buffer(&norm_table.buffer, 0, bytemuck::cast_slice(&table));
        let stand_in = create_buffer(&ctx, 1, "unused binding", u64::MAX)?;
        Ok(GpuBackend {
            stand_in,
            ctx,
            checked,
            gemm,
            caches: RefCell::default(),
            scratch: RefCell::default(),
            staging: RefCell::default(),
            recording: RefCell::new(None),
            next_id: Cell::new(1),
            norm_table,
            dispatches: Cell::new(0),
            plan: RefCell::new(None),
            next_flops: Cell::new(None),
            profile: RefCell::new(None),
            counters: Default::default(),
        })
    }

    /// The adapter this backend runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.ctx.summary
    }

    /// Whether shaders were built with naga's runtime checks.
    pub fn runtime_checks(&self) -> bool {
        self.checked
    }

    /// The stand-in for an unused read-write binding.
    pub(super) fn stand_in(&self) -> &GpuBuffer {
        &self.stand_in
    }

    /// The GEMM core its matmul and convolution kernels run on.
    pub fn gemm_variant(&self) -> GemmVariant {
        self.gemm
    }

    /// Dispatches recorded since the backend was opened.
    pub fn dispatch_count(&self) -> u64 {
        self.dispatches.get()
    }

    /// GPU buffers alive now: every storage and uniform buffer this backend made that has not
    /// been dropped (including its caches), plus the cached readback staging buffers. A
    /// training run that does not leak holds it constant from epoch to epoch.
    pub fn live_buffers(&self) -> usize {
        self.ctx.live_buffers.load(Ordering::Relaxed) + self.staging.borrow().len()
    }

    /// Test-only fault: destroys the device, as a driver reset or a removed GPU would. Every
    /// later flush, read or allocation fails with [`crate::Error::Gpu`] saying the device was
    /// lost.
    pub fn lose_device_for_test(&self) {
        self.ctx.device.destroy();
        // Let wgpu run its device-lost callback now (a real loss reports at the next poll).
        let _ = self.ctx.device.poll(wgpu::PollType::Poll);
    }

    /// The adapter's limit (or [`GpuOptions`]'s lower one) on workgroups per dispatch
    /// dimension.
    pub(super) fn max_workgroups(&self) -> u32 {
        self.ctx.limits.max_compute_workgroups_per_dimension
    }
}

impl Backend for GpuBackend {
    type Buffer = GpuBuffer;

    fn describe(&self) -> String {
        let checks = if self.checked {
            ", runtime checks on"
        } else {
            ""
        };
        let gemm = if self.gemm == GemmVariant::default() {
            String::new()
        } else {
            format!(", gemm {}", self.gemm)
        };
        format!("{}{checks}{gemm}", self.ctx.summary.describe())
    }

    // ---- memory -------------------------------------------------------------------------

    fn zeros(&self, len: usize, label: &str) -> Result<GpuBuffer> {
        // wgpu zero-initialises new buffers.
        self.new_buffer(len, label)
    }
    fn zeros_packed(&self, lens: &[usize], label: &str) -> Result<Packed<GpuBuffer>> {
        self.new_packed(lens, label)
    }
    fn upload_f32(&self, data: &[f32], label: &str) -> Result<GpuBuffer> {
        self.upload_u32(bytemuck::cast_slice(data), label)
    }
    fn upload_u32(&self, data: &[u32], label: &str) -> Result<GpuBuffer> {
        let mut buf = self.new_buffer(data.len(), label)?;
        self.write_words(&mut buf, data)?;
        Ok(buf)
    }
    fn write_f32(&self, buf: &mut GpuBuffer, data: &[f32]) -> Result<()> {
        self.write_words(buf, bytemuck::cast_slice(data))
    }
    fn write_u32(&self, buf: &mut GpuBuffer, data: &[u32]) -> Result<()> {
        self.write_words(buf, data)
    }
    fn fill_zero(&self, buf: &mut GpuBuffer) -> Result<()> {
        elementwise::fill_zero(self, buf)
    }
    fn read_f32(&self, buf: &GpuBuffer) -> Result<Vec<f32>> {
        pollster::block_on(self.read_f32_async(buf))
    }
    fn read_u32(&self, buf: &GpuBuffer) -> Result<Vec<u32>> {
        pollster::block_on(self.read_u32_async(buf))
    }
    fn len(&self, buf: &GpuBuffer) -> usize {
        buf.len
    }
    fn max_buffer_len(&self) -> usize {
        (buffer_limit(&self.ctx) / 4) as usize
    }
    fn flush(&self) -> Result<()> {
        self.counters.flush();
        self.submit()
    }
    fn counters(&self) -> Counters {
        self.counters.get()
    }

    // ---- profiling (`cnn-gpu time`) -----------------------------------------------------

    fn start_profile(&self) -> Result<()> {
        profile::start(self)
    }
    fn scope(&self, name: &str) {
        profile::scope(self, name)
    }
    fn finish_profile(&self) -> Result<Vec<(String, f64)>> {
        profile::finish(self)
    }

    // ---- gather -------------------------------------------------------------------------

    fn gather_batch(
        &self,
        p: &Gather,
        images: &GpuBuffer,
        labels: &GpuBuffer,
        perm: &GpuBuffer,
        x: &mut GpuBuffer,
        y: &mut GpuBuffer,
    ) -> Result<()> {
        gather::gather_batch(self, p, images, labels, perm, x, y)
    }
    fn gather_batch_affine(
        &self,
        p: &GatherAffine,
        images: &GpuBuffer,
        labels: &GpuBuffer,
        perm: &GpuBuffer,
        affine: &GpuBuffer,
        x: &mut GpuBuffer,
        y: &mut GpuBuffer,
    ) -> Result<()> {
        gather::gather_batch_affine(self, p, images, labels, perm, affine, x, y)
    }

    // ---- conv2d -------------------------------------------------------------------------

    fn conv2d_forward(
        &self,
        p: &Conv2d,
        x: &GpuBuffer,
        w: &GpuBuffer,
        bias: &GpuBuffer,
        out: &mut GpuBuffer,
    ) -> Result<()> {
        conv2d::conv2d_forward(self, p, x, w, bias, out)
    }
    fn conv2d_backward_input(
        &self,
        p: &Conv2d,
        dout: &GpuBuffer,
        w: &GpuBuffer,
        dx: &mut GpuBuffer,
    ) -> Result<()> {
        conv2d::conv2d_backward_input(self, p, dout, w, dx)
    }
    fn conv2d_backward_weight(
        &self,
        p: &Conv2d,
        x: &GpuBuffer,
        dout: &GpuBuffer,
        dw: &mut GpuBuffer,
    ) -> Result<()> {
        conv2d::conv2d_backward_weight(self, p, x, dout, dw)
    }
    fn conv2d_backward_params(
        &self,
        p: &Conv2d,
        x: &GpuBuffer,
        dout: &GpuBuffer,
        dw: &mut GpuBuffer,
        dbias: &mut GpuBuffer,
    ) -> Result<()> {
        conv2d::conv2d_backward_params(self, p, x, dout, dw, dbias)
    }
    fn conv2d_backward_bias(
        &self,
        p: &Conv2d,
        dout: &GpuBuffer,
        dbias: &mut GpuBuffer,
    ) -> Result<()> {
        conv2d::conv2d_backward_bias(self, p, dout, dbias)
    }

    // ---- pool2d -------------------------------------------------------------------------

    fn maxpool2d_forward(&self, p: &Pool2d, x: &GpuBuffer, out: &mut GpuBuffer) -> Result<()> {
        pool2d::maxpool2d_forward(self, p, x, out)
    }
    fn maxpool2d_backward(
        &self,
        p: &Pool2d,
        x: &GpuBuffer,
        dout: &GpuBuffer,
        dx: &mut GpuBuffer,
    ) -> Result<()> {
        pool2d::maxpool2d_backward(self, p, x, dout, dx)
    }
    fn relu_maxpool2d_forward(&self, p: &Pool2d, x: &GpuBuffer, out: &mut GpuBuffer) -> Result<()> {
        pool2d::relu_maxpool2d_forward(self, p, x, out)
    }
    fn relu_maxpool2d_backward(
        &self,
        p: &Pool2d,
        x: &GpuBuffer,
        dout: &GpuBuffer,
        dx: &mut GpuBuffer,
    ) -> Result<()> {
        pool2d::relu_maxpool2d_backward(self, p, x, dout, dx)
    }
    fn avgpool2d_forward(&self, p: &Pool2d, x: &GpuBuffer, out: &mut GpuBuffer) -> Result<()> {
        pool2d::avgpool2d_forward(self, p, x, out)
    }
    fn avgpool2d_backward(&self, p: &Pool2d, dout: &GpuBuffer, dx: &mut GpuBuffer) -> Result<()> {
        pool2d::avgpool2d_backward(self, p, dout, dx)
    }

    // ---- elementwise --------------------------------------------------------------------

    fn relu_forward(&self, len: usize, x: &GpuBuffer, y: &mut GpuBuffer) -> Result<()> {
        elementwise::relu_forward(self, len, x, y)
    }
    fn relu_backward(
        &self,
        len: usize,
        y: &GpuBuffer,
        dy: &GpuBuffer,
        dx: &mut GpuBuffer,
    ) -> Result<()> {
        elementwise::relu_backward(self, len, y, dy, dx)
    }

    // ---- dropout ------------------------------------------------------------------------

    fn dropout_forward(
        &self,
        p: &Dropout,
        step: &GpuBuffer,
        x: &GpuBuffer,
        y: &mut GpuBuffer,
    ) -> Result<()> {
        dropout::dropout_forward(self, p, step, x, y)
    }
    fn dropout_backward(
        &self,
        p: &Dropout,
        step: &GpuBuffer,
        dy: &GpuBuffer,
        dx: &mut GpuBuffer,
    ) -> Result<()> {
        dropout::dropout_backward(self, p, step, dy, dx)
    }

    // ---- batch_norm ---------------------------------------------------------------------

    fn batch_norm_stats(
        &self,
        p: &BatchNorm,
        x: &GpuBuffer,
        stats: &mut GpuBuffer,
        running: &mut GpuBuffer,
    ) -> Result<()> {
        batch_norm::batch_norm_stats(self, p, x, stats, running)
    }
    fn batch_norm_forward(
        &self,
        p: &BatchNorm,
        x: &GpuBuffer,
        stats: &GpuBuffer,
        weight: &GpuBuffer,
        bias: &GpuBuffer,
        y: &mut GpuBuffer,
    ) -> Result<()> {
        batch_norm::batch_norm_forward(self, p, x, stats, weight, bias, y)
    }
    fn batch_norm_backward_params(
        &self,
        p: &BatchNorm,
        x: &GpuBuffer,
        dy: &GpuBuffer,
        stats: &GpuBuffer,
        dweight: &mut GpuBuffer,
        dbias: &mut GpuBuffer,
    ) -> Result<()> {
        batch_norm::batch_norm_backward_params(self, p, x, dy, stats, dweight, dbias)
    }
    fn batch_norm_backward_input(
        &self,
        p: &BatchNorm,
        x: &GpuBuffer,
        dy: &GpuBuffer,
        stats: &GpuBuffer,
        weight: &GpuBuffer,
        dweight: &GpuBuffer,
        dbias: &GpuBuffer,
        dx: &mut GpuBuffer,
    ) -> Result<()> {
        batch_norm::batch_norm_backward_input(self, p, x, dy, stats, weight, dweight, dbias, dx)
    }

    // ---- matmul -------------------------------------------------------------------------

    fn matmul(&self, p: &Matmul, a: &GpuBuffer, b: &GpuBuffer, c: &mut GpuBuffer) -> Result<()> {
        matmul::matmul(self, p, Epilogue::None, a, b, c)
    }
    fn matmul_bias(
        &self,
        p: &Matmul,
        relu: bool,
        a: &GpuBuffer,
        b: &GpuBuffer,
        bias: &GpuBuffer,
        c: &mut GpuBuffer,
    ) -> Result<()> {
        matmul::matmul(self, p, Epilogue::Bias { bias, relu }, a, b, c)
    }
    fn matmul_relu_backward(
        &self,
        p: &Matmul,
        a: &GpuBuffer,
        b: &GpuBuffer,
        y: &GpuBuffer,
        c: &mut GpuBuffer,
    ) -> Result<()> {
        matmul::matmul(self, p, Epilogue::ReluMask { y }, a, b, c)
    }
    fn matmul_row_sums(
        &self,
        p: &Matmul,
        a: &GpuBuffer,
        b: &GpuBuffer,
        c: &mut GpuBuffer,
        sums: &mut GpuBuffer,
    ) -> Result<()> {
        matmul::matmul(self, p, Epilogue::RowSums { sums }, a, b, c)
    }

    // ---- bias ---------------------------------------------------------------------------

    fn bias_add(&self, p: &Channels, bias: &GpuBuffer, x: &mut GpuBuffer) -> Result<()> {
        bias::bias_add(self, p, bias, x)
    }
    fn channel_sum(&self, p: &Channels, x: &GpuBuffer, out: &mut GpuBuffer) -> Result<()> {
        bias::channel_sum(self, p, x, out)
    }

    // ---- loss ---------------------------------------------------------------------------

    fn softmax_cross_entropy(
        &self,
        p: &SoftmaxXent,
        logits: &GpuBuffer,
        labels: &GpuBuffer,
        loss_sum: &mut GpuBuffer,
        dlogits: &mut GpuBuffer,
    ) -> Result<()> {
        loss::softmax_cross_entropy(self, p, logits, labels, loss_sum, dlogits)
    }
    fn count_correct(
        &self,
        p: &SoftmaxXent,
        logits: &GpuBuffer,
        labels: &GpuBuffer,
        correct: &mut GpuBuffer,
    ) -> Result<()> {
        loss::count_correct(self, p, logits, labels, correct)
    }

    // ---- optim --------------------------------------------------------------------------

    fn sgd_step(
        &self,
        p: &Sgd,
        scalars: &GpuBuffer,
        param: &mut GpuBuffer,
        grad: &GpuBuffer,
        velocity: &mut GpuBuffer,
    ) -> Result<()> {
        optim::sgd_step(self, p, scalars, param, grad, velocity)
    }
    fn adam_step(
        &self,
        p: &Adam,
        scalars: &GpuBuffer,
        param: &mut GpuBuffer,
        grad: &GpuBuffer,
        m: &mut GpuBuffer,
        v: &mut GpuBuffer,
    ) -> Result<()> {
        optim::adam_step(self, p, scalars, param, grad, m, v)
    }
    fn sum_squares(&self, len: usize, x: &GpuBuffer, scalars: &mut GpuBuffer) -> Result<()> {
        optim::sum_squares(self, len, x, scalars)
    }
    fn record_nonfinite(
        &self,
        loss_sum: &GpuBuffer,
        scalars: &GpuBuffer,
        record: &mut GpuBuffer,
    ) -> Result<()> {
        optim::record_nonfinite(self, loss_sum, scalars, record)
    }
}
