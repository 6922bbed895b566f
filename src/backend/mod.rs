//! The backend interface: every op of the trainer, forward and backward, behind one trait that
//! the CPU reference backend ([`cpu::CpuBackend`]) and the WGSL backend ([`gpu::GpuBackend`])
//! both implement, so one test body checks every op on both.
//!
//! Conventions (the same on every backend):
//! - A [`Backend::Buffer`] is a flat array of 32-bit words that lives on the backend's device.
//!   Most hold `f32`; labels, permutations and packed `u8` images hold `u32`.
//! - Tensors are dense, row-major, N,C,H,W for images. Shapes travel in the named parameter
//!   structs of [`params`], never as rows of positional integers; every op checks the lengths of
//!   the buffers it is given against its parameters and returns [`Error::Shape`] on a mismatch.
//! - Outputs are overwritten, never accumulated, except where an op says so (`loss_sum` and
//!   `correct` are running accumulators, read at log intervals).
//! - Ops may be recorded and run later (the GPU backend records a whole step into one command
//!   encoder); [`Backend::flush`] submits what was recorded, and the `read_*` methods flush and
//!   wait. Writes through `write_*` are ordered after every op recorded before them.
//!
//! The ops come in families, one section of the trait each (gather, conv2d, pool2d,
//! elementwise, dropout, batch_norm, matmul, bias, loss, optim). A family `F` lives under one
//! name everywhere: its CPU twin is `cpu/F.rs`, its WGSL kernels `shaders/F.wgsl` (each entry
//! point named after the trait method it implements) and their launchers `gpu/ops/F.rs`.

pub mod check;
pub mod cpu;
pub mod gpu;
pub mod params;

pub use params::*;

use crate::{Error, Result};

/// One implementation of every op the trainer needs. See the module docs for conventions.
pub trait Backend {
    /// A device buffer of 32-bit words.
    type Buffer;

    /// A short human description: "cpu (2 threads)" or "NVIDIA H200 (Vulkan)".
    fn describe(&self) -> String;

    // ---- memory -------------------------------------------------------------------------

    /// A zero-filled buffer of `len` words. `label` names it in GPU error messages.
    fn zeros(&self, len: usize, label: &str) -> Result<Self::Buffer>;
    /// Zero-filled buffers of the lengths `lens`, which the backend may keep in one
    /// allocation: the GPU backend does, as consecutive views (each aligned for binding) and
    /// a view over them all in [`Packed::whole`], so that an element-wise op over the whole
    /// (the optimiser's update of every parameter) is one dispatch. The CPU backend keeps
    /// separate buffers and no whole. Between the parts the whole holds zeros, which no op on
    /// the parts writes; an update of a zero value from a zero gradient and zero state
    /// ([`Backend::sgd_step`], [`Backend::adam_step`]) leaves them zero. One op may write
    /// several parts, but must not read a part while it writes another of the same allocation
    /// (WebGPU refuses a buffer bound read-only and read-write in one dispatch).
    fn zeros_packed(&self, lens: &[usize], label: &str) -> Result<Packed<Self::Buffer>> {
        let parts = lens
            .iter()
            .enumerate()
            .map(|(i, &len)| self.zeros(len, &format!("{label}[{i}]")))
            .collect::<Result<_>>()?;
        Ok(Packed { parts, whole: None })
    }
    fn upload_f32(&self, data: &[f32], label: &str) -> Result<Self::Buffer>;
    fn upload_u32(&self, data: &[u32], label: &str) -> Result<Self::Buffer>;
    /// Overwrites the whole buffer (`data.len()` must equal its length).
    fn write_f32(&self, buf: &mut Self::Buffer, data: &[f32]) -> Result<()>;
    fn write_u32(&self, buf: &mut Self::Buffer, data: &[u32]) -> Result<()>;
    /// Sets every word of the buffer to zero (recorded like an op).
    fn fill_zero(&self, buf: &mut Self::Buffer) -> Result<()>;
    /// Flushes pending work, waits for it and returns the buffer's contents.
    fn read_f32(&self, buf: &Self::Buffer) -> Result<Vec<f32>>;
    fn read_u32(&self, buf: &Self::Buffer) -> Result<Vec<u32>>;
    /// Length in words.
    fn len(&self, buf: &Self::Buffer) -> usize;
    /// The longest buffer this backend can hold and bind, in words (the GPU's storage-binding
    /// limit; unbounded on the CPU). Callers size batches with it before allocating.
    fn max_buffer_len(&self) -> usize {
        usize::MAX
    }
    /// Submits the work recorded so far without waiting for it (a no-op on the CPU).
    fn flush(&self) -> Result<()>;
    /// How many `read_*` and [`Backend::flush`] calls this backend has served since it was
    /// made: the trainer's tests check with it that a step reads nothing back.
    fn counters(&self) -> Counters;

    // ---- profiling (`cnn-gpu time`) -----------------------------------------------------

    /// Starts timing ops per scope: from now on each op's time counts towards the scope named
    /// by the last [`Backend::scope`] call (GPU timestamps where the adapter has them, else the
    /// wall clock with a wait at each scope change).
    fn start_profile(&self) -> Result<()>;
    /// Names the scope of the ops that follow, e.g. "conv1 forward" (free when not profiling).
    fn scope(&self, name: &str);
    /// Stops profiling; returns each scope's total seconds, in order of first appearance.
    fn finish_profile(&self) -> Result<Vec<(String, f64)>>;

    // ---- gather -------------------------------------------------------------------------

    /// Gathers `p.batch` images and labels from a resident dataset through a permutation:
    /// sample `i` of the batch is dataset item `perm[p.offset + i]`. `images` holds the dataset's
    /// `u8` pixels packed four to a little-endian `u32` word (image `j` pixel `q` is byte
    /// `j * p.image_len + q`); `x[i, q] =` [`normalize_pixel`]`(pixel)`, as
    /// torchvision's ToTensor + Normalize compute it; `y[i] = labels[perm[p.offset + i]]`.
    fn gather_batch(
        &self,
        p: &Gather,
        images: &Self::Buffer,
        labels: &Self::Buffer,
        perm: &Self::Buffer,
        x: &mut Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    /// [`Backend::gather_batch`] through a per-image affine resampling, for data
    /// augmentation. Sample `i` is item `j = perm[o]`, `o = p.gather.offset + i`, resampled:
    /// output pixel (u, v) (column, row) reads the source point (sx, sy) =
    /// (a·u + b·v + c, d·u + e·v + f), `[a…f] = affine[o·6 .. o·6 + 6]`, bilinearly from the four
    /// pixels around it (those outside the image count as 0, the background), and
    /// `x[i, v·cols + u] =` [`normalize_value`]`(value)`. The identity map gives
    /// [`Backend::gather_batch`]'s values (to rounding). `affine`: [≥ perm.len · 6] f32.
    #[allow(clippy::too_many_arguments)] // the gather's buffers, and the transforms
    fn gather_batch_affine(
        &self,
        p: &GatherAffine,
        images: &Self::Buffer,
        labels: &Self::Buffer,
        perm: &Self::Buffer,
        affine: &Self::Buffer,
        x: &mut Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;

    // ---- conv2d -------------------------------------------------------------------------

    /// `out[n,co,oh,ow] = bias[co] + Σ_{ci,kh,kw} w[co,ci,kh,kw] · x[n,ci,oh·s−pad+kh,ow·s−pad+kw]`
    /// (zero outside the input). x: [N,Cin,H,W], w: [Cout,Cin,KH,KW], bias: [Cout],
    /// out: [N,Cout,OH,OW].
    fn conv2d_forward(
        &self,
        p: &Conv2d,
        x: &Self::Buffer,
        w: &Self::Buffer,
        bias: &Self::Buffer,
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// dx = ∂L/∂x given dout = ∂L/∂out. dout: [N,Cout,OH,OW], w: [Cout,Cin,KH,KW], dx: [N,Cin,H,W].
    fn conv2d_backward_input(
        &self,
        p: &Conv2d,
        dout: &Self::Buffer,
        w: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// dw = ∂L/∂w. x: [N,Cin,H,W], dout: [N,Cout,OH,OW], dw: [Cout,Cin,KH,KW].
    fn conv2d_backward_weight(
        &self,
        p: &Conv2d,
        x: &Self::Buffer,
        dout: &Self::Buffer,
        dw: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`Backend::conv2d_backward_weight`] and [`Backend::conv2d_backward_bias`] in one:
    /// the GPU backend sums the bias gradient in the weight gradient's GEMM (a column of ones
    /// beside the im2col columns), so the gradient is read once.
    fn conv2d_backward_params(
        &self,
        p: &Conv2d,
        x: &Self::Buffer,
        dout: &Self::Buffer,
        dw: &mut Self::Buffer,
        dbias: &mut Self::Buffer,
    ) -> Result<()>;
    /// dbias[co] = Σ_{n,oh,ow} dout[n,co,oh,ow].
    fn conv2d_backward_bias(
        &self,
        p: &Conv2d,
        dout: &Self::Buffer,
        dbias: &mut Self::Buffer,
    ) -> Result<()>;

    // ---- pool2d -------------------------------------------------------------------------

    /// Max over each window; x: [N,C,H,W], out: [N,C,OH,OW].
    fn maxpool2d_forward(&self, p: &Pool2d, x: &Self::Buffer, out: &mut Self::Buffer)
        -> Result<()>;
    /// Sends each dout element to its window's arg-max in `x` (the first maximum in row-major
    /// window order on ties, as PyTorch does); contributions of overlapping windows add up.
    fn maxpool2d_backward(
        &self,
        p: &Pool2d,
        x: &Self::Buffer,
        dout: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// `out = maxpool2d(relu(x))` without writing `relu(x)`: a ReLU followed by a max-pool in
    /// one pass, as the trainer runs them in training. `x` is the ReLU's input; each window
    /// value is `relu(v)` (`v` if `v > 0`, else 0) before the max, so the result equals
    /// [`Backend::relu_forward`] then [`Backend::maxpool2d_forward`], bit for bit.
    fn relu_maxpool2d_forward(
        &self,
        p: &Pool2d,
        x: &Self::Buffer,
        out: &mut Self::Buffer,
    ) -> Result<()>;
    /// The gradient of [`Backend::relu_maxpool2d_forward`] with respect to `x` (the ReLU's
    /// input): each dout element goes to its window's arg-max of `relu(x)` (the first on
    /// ties), and only where that maximum is positive; equal, bit for bit, to
    /// [`Backend::maxpool2d_backward`] on `relu(x)` then [`Backend::relu_backward`].
    fn relu_maxpool2d_backward(
        &self,
        p: &Pool2d,
        x: &Self::Buffer,
        dout: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    /// Mean over each window.
    fn avgpool2d_forward(&self, p: &Pool2d, x: &Self::Buffer, out: &mut Self::Buffer)
        -> Result<()>;
    /// Spreads each dout element evenly over its window; overlapping windows add up.
    fn avgpool2d_backward(
        &self,
        p: &Pool2d,
        dout: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;

    // ---- elementwise --------------------------------------------------------------------

    /// y = max(x, 0) over `len` elements.
    fn relu_forward(&self, len: usize, x: &Self::Buffer, y: &mut Self::Buffer) -> Result<()>;
    /// dx = dy where y > 0, else 0 (y is the forward output).
    fn relu_backward(
        &self,
        len: usize,
        y: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;

    // ---- dropout ------------------------------------------------------------------------

    /// Inverted dropout (PyTorch's `F.dropout` in training): `y[i] = x[i] · 1/(1 − p)` when
    /// `dropout_hash(seed, step[0], i) ≥ threshold(p)` (see [`Dropout`]), else 0. `step` is a
    /// [1] u32 buffer the trainer writes before each step, so a new step needs no new uniform.
    fn dropout_forward(
        &self,
        p: &Dropout,
        step: &Self::Buffer,
        x: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;
    /// `dx = dy` through the same mask and scale as [`Backend::dropout_forward`] at the same
    /// seed and step (the mask is recomputed, never stored).
    fn dropout_backward(
        &self,
        p: &Dropout,
        step: &Self::Buffer,
        dy: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;
    // ---- batch_norm ---------------------------------------------------------------------

    /// Training-mode batch statistics of x ([outer, channels, inner]) per channel over outer
    /// and inner (M = outer·inner values, M ≥ 2): `stats = [mean; var]` with the biased
    /// variance (what normalises), and the running statistics `running = [mean; var]` updated
    /// as PyTorch does: `r ← (1 − momentum)·r + momentum·s`, with the unbiased variance
    /// var·M/(M − 1).
    fn batch_norm_stats(
        &self,
        p: &BatchNorm,
        x: &Self::Buffer,
        stats: &mut Self::Buffer,
        running: &mut Self::Buffer,
    ) -> Result<()>;
    /// `y[o,c,i] = (x[o,c,i] − mean[c]) / √(var[c] + eps) · weight[c] + bias[c]` with
    /// `stats = [mean; var]`: the batch's in training, the running ones in evaluation.
    fn batch_norm_forward(
        &self,
        p: &BatchNorm,
        x: &Self::Buffer,
        stats: &Self::Buffer,
        weight: &Self::Buffer,
        bias: &Self::Buffer,
        y: &mut Self::Buffer,
    ) -> Result<()>;
    /// The affine parameters' gradients: `dbias[c] = Σ dy`, `dweight[c] = Σ dy · x̂` over the
    /// channel's values, with `x̂ = (x − mean)/√(var + eps)` from the training forward's stats.
    fn batch_norm_backward_params(
        &self,
        p: &BatchNorm,
        x: &Self::Buffer,
        dy: &Self::Buffer,
        stats: &Self::Buffer,
        dweight: &mut Self::Buffer,
        dbias: &mut Self::Buffer,
    ) -> Result<()>;
    /// The input gradient of training-mode batch norm, given the sums that
    /// [`Backend::batch_norm_backward_params`] left in `dweight` and `dbias`:
    /// `dx = weight/√(var + eps) · (dy − dbias/M − x̂ · dweight/M)`.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm_backward_input(
        &self,
        p: &BatchNorm,
        x: &Self::Buffer,
        dy: &Self::Buffer,
        stats: &Self::Buffer,
        weight: &Self::Buffer,
        dweight: &Self::Buffer,
        dbias: &Self::Buffer,
        dx: &mut Self::Buffer,
    ) -> Result<()>;

    // ---- matmul -------------------------------------------------------------------------

    /// c[m,n] = Σ_k op(a)[m,k] · op(b)[k,n]; a is stored [m,k] or, with `trans_a`, [k,m];
    /// b is stored [k,n] or, with `trans_b`, [n,k].
    fn matmul(
        &self,
        p: &Matmul,
        a: &Self::Buffer,
        b: &Self::Buffer,
        c: &mut Self::Buffer,
    ) -> Result<()>;
    /// `c[m,n] = act(Σ_k op(a)[m,k] · op(b)[k,n] + bias[n])`, act the ReLU when `relu` (else
    /// the identity): [`Backend::matmul`], [`Backend::bias_add`] over the columns and
    /// [`Backend::relu_forward`] in one pass (a linear layer's forward, and the ReLU after it).
    /// bias: [n].
    fn matmul_bias(
        &self,
        p: &Matmul,
        relu: bool,
        a: &Self::Buffer,
        b: &Self::Buffer,
        bias: &Self::Buffer,
        c: &mut Self::Buffer,
    ) -> Result<()>;
    /// `c[m,n] = Σ_k op(a)[m,k] · op(b)[k,n]` where `y[m,n] > 0`, else 0: [`Backend::matmul`]
    /// then [`Backend::relu_backward`] with the ReLU's output `y` (a linear layer's input
    /// gradient through the ReLU before it). y: [m, n].
    fn matmul_relu_backward(
        &self,
        p: &Matmul,
        a: &Self::Buffer,
        b: &Self::Buffer,
        y: &Self::Buffer,
        c: &mut Self::Buffer,
    ) -> Result<()>;
    /// [`Backend::matmul`], and `sums[m] = Σ_k op(a)[m,k]` (a linear layer's weight gradient
    /// and its bias gradient, [`Backend::channel_sum`] of the output gradient, in one pass).
    /// sums: [m].
    fn matmul_row_sums(
        &self,
        p: &Matmul,
        a: &Self::Buffer,
        b: &Self::Buffer,
        c: &mut Self::Buffer,
        sums: &mut Self::Buffer,
    ) -> Result<()>;
    // ---- bias ---------------------------------------------------------------------------

    /// x[o,c,i] += bias[c] for x of shape [outer, channels, inner] (in place).
    fn bias_add(&self, p: &Channels, bias: &Self::Buffer, x: &mut Self::Buffer) -> Result<()>;
    /// out[c] = Σ_{o,i} x[o,c,i] for x of shape [outer, channels, inner] (bias gradients).
    fn channel_sum(&self, p: &Channels, x: &Self::Buffer, out: &mut Self::Buffer) -> Result<()>;

    // ---- loss ---------------------------------------------------------------------------

    /// Softmax + cross-entropy averaged over the batch, as `nn.CrossEntropyLoss`:
    /// `loss_sum[0] += mean_i (logsumexp(logits[i]) − logits[i, labels[i]])` (accumulated),
    /// `dlogits[i,j] = (softmax(logits[i])_j − [j == labels[i]]) / batch` (overwritten).
    /// logits: [batch, classes] f32, labels: [batch] u32, loss_sum: [1] f32.
    /// Labels must be below `classes`: the CPU backend refuses others, a GPU kernel does not
    /// check them (the trainer refuses such datasets when it uploads them).
    fn softmax_cross_entropy(
        &self,
        p: &SoftmaxXent,
        logits: &Self::Buffer,
        labels: &Self::Buffer,
        loss_sum: &mut Self::Buffer,
        dlogits: &mut Self::Buffer,
    ) -> Result<()>;
    /// `correct[0] += #{i : argmax_j logits[i,j] == labels[i]}` (first maximum on ties);
    /// correct: [1] u32, accumulated.
    fn count_correct(
        &self,
        p: &SoftmaxXent,
        logits: &Self::Buffer,
        labels: &Self::Buffer,
        correct: &mut Self::Buffer,
    ) -> Result<()>;
    // ---- optim --------------------------------------------------------------------------

    /// One SGD update (see [`Sgd`]) of `param` from `grad`, with lr and the clipping factor
    /// from the step's [`StepScalars`] buffer. With `velocity` starting at zero the first step
    /// gives v = g, as PyTorch's does.
    fn sgd_step(
        &self,
        p: &Sgd,
        scalars: &Self::Buffer,
        param: &mut Self::Buffer,
        grad: &Self::Buffer,
        velocity: &mut Self::Buffer,
    ) -> Result<()>;
    /// One Adam or AdamW update (see [`Adam`]) of `param` from `grad` with the moment buffers
    /// `m` (PyTorch's exp_avg) and `v` (exp_avg_sq), the lr, bias corrections and clipping
    /// factor from the step's [`StepScalars`] buffer.
    fn adam_step(
        &self,
        p: &Adam,
        scalars: &Self::Buffer,
        param: &mut Self::Buffer,
        grad: &Self::Buffer,
        m: &mut Self::Buffer,
        v: &mut Self::Buffer,
    ) -> Result<()>;
    /// `scalars[StepScalars::GRAD_SQ_SUM] += Σ x²` over `len` elements (accumulated): called on
    /// every gradient, it gives the global norm that gradient clipping needs, on the device.
    fn sum_squares(&self, len: usize, x: &Self::Buffer, scalars: &mut Self::Buffer) -> Result<()>;
    /// If `record[0]` is 0 and `loss_sum[0]` is NaN or infinite, sets `record[0]` to the step
    /// number in `scalars[StepScalars::STEP]`: called after every step's loss, it keeps the
    /// first step whose loss was not finite (a running sum stays non-finite once it is) until
    /// the host reads it with the loss. record: [1] u32.
    fn record_nonfinite(
        &self,
        loss_sum: &Self::Buffer,
        scalars: &Self::Buffer,
        record: &mut Self::Buffer,
    ) -> Result<()>;
}

/// Buffers from [`Backend::zeros_packed`]: one per length asked for, and, where the backend
/// keeps them in one allocation, a buffer spanning that allocation.
#[derive(Debug)]
pub struct Packed<T> {
    pub parts: Vec<T>,
    pub whole: Option<T>,
}

/// Host–device round trips a backend has served (see [`Backend::counters`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    /// `read_f32` and `read_u32` calls (each flushes and waits).
    pub reads: usize,
    /// [`Backend::flush`] calls.
    pub flushes: usize,
}

/// The counters behind [`Backend::counters`], kept by each backend.
#[derive(Debug, Default)]
pub(crate) struct CounterCells {
    reads: std::sync::atomic::AtomicUsize,
    flushes: std::sync::atomic::AtomicUsize,
}

impl CounterCells {
    pub(crate) fn read(&self) {
        self.reads
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    pub(crate) fn flush(&self) {
        self.flushes
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    pub(crate) fn get(&self) -> Counters {
        Counters {
            reads: self.reads.load(std::sync::atomic::Ordering::Relaxed),
            flushes: self.flushes.load(std::sync::atomic::Ordering::Relaxed),
        }
    }
}

/// Wall-clock time per scope, for ops that have finished when their call returns (the CPU) or
/// a backend that waits at each scope change.
#[derive(Debug, Default)]
pub(crate) struct ScopeClock {
    current: Option<(String, web_time::Instant)>,
    totals: Vec<(String, f64)>,
}

impl ScopeClock {
    pub(crate) fn enter(&mut self, name: &str) {
        self.close();
        self.current = Some((name.to_string(), web_time::Instant::now()));
    }
    fn close(&mut self) {
        if let Some((name, start)) = self.current.take() {
            add_time(&mut self.totals, &name, start.elapsed().as_secs_f64());
        }
    }
    pub(crate) fn finish(mut self) -> Vec<(String, f64)> {
        self.close();
        self.totals
    }
}

/// Adds `seconds` to `name`'s total, keeping first-appearance order.
pub(crate) fn add_time(totals: &mut Vec<(String, f64)>, name: &str, seconds: f64) {
    match totals.iter_mut().find(|(n, _)| n == name) {
        Some(entry) => entry.1 += seconds,
        None => totals.push((name.to_string(), seconds)),
    }
}

/// Checks that a buffer holds exactly `want` words.
pub(crate) fn expect_len(op: &'static str, what: &str, have: usize, want: usize) -> Result<()> {
    if have == want {
        Ok(())
    } else {
        Err(Error::shape(
            op,
            format!("{what} has {have} elements, expected {want}"),
        ))
    }
}
