//! The CPU reference backend: every op of [`Backend`] as plain slice arithmetic, one file per op
//! family, each free function named after its trait method so it reads as the reference math
//! that the GPU kernels are checked against. Work runs on a dedicated rayon pool; convolutions
//! and matrix products go through im2col and the `gemm` crate.
//!
//! The free functions check their own arguments (parameters first, then every slice length) and
//! return [`crate::Error::Shape`] on a mismatch, so they can be called directly as well as
//! through the trait.

pub mod batch_norm;
pub mod bias;
pub mod conv2d;
pub mod dropout;
pub mod elementwise;
pub mod gather;
pub mod loss;
pub mod matmul;
pub mod optim;
pub mod pool2d;

use super::{
    expect_len, Adam, Backend, BatchNorm, Channels, Conv2d, Dropout, Gather, GatherAffine, Matmul,
    Pool2d, Sgd, SoftmaxXent,
};
use crate::{Error, Result};

/// Element-wise ops shorter than this run on the calling thread: splitting them costs more
/// than it saves.
pub(crate) const PAR_MIN_LEN: usize = 1 << 15;

/// The CPU backend: a rayon pool of its own, so that its thread count is what was asked for
/// whatever else in the process uses rayon.
pub struct CpuBackend {
    pool: std::sync::Arc<rayon::ThreadPool>,
    /// Per-scope wall time while `cnn-gpu time` profiles (ops finish before they return).
    profile: std::sync::Mutex<Option<super::ScopeClock>>,
    counters: super::CounterCells,
}

/// A CPU "device" buffer: 32-bit words stored as `f32`; `u32` content (labels, permutations,
/// packed pixels, counters) is kept bit for bit and viewed through `bytemuck::cast_slice`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CpuBuffer {
    data: Vec<f32>,
}

impl CpuBuffer {
    pub fn as_f32(&self) -> &[f32] {
        &self.data
    }
    pub fn as_f32_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }
    pub fn as_u32(&self) -> &[u32] {
        bytemuck::cast_slice(&self.data)
    }
    pub fn as_u32_mut(&mut self) -> &mut [u32] {
        bytemuck::cast_slice_mut(&mut self.data)
    }
    pub fn len(&self) -> usize {
        self.data.len()
    }
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

impl CpuBackend {
    /// A backend running on `threads` threads (`None`: one per available core).
    pub fn new(threads: Option<usize>) -> Result<CpuBackend> {
        let threads = match threads {
            Some(0) => {
                return Err(Error::InvalidParams(
                    "the CPU backend needs at least one thread".into(),
                ))
            }
            Some(n) => n,
            None => std::thread::available_parallelism().map_or(1, |n| n.get()),
        };
        let builder = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("cnn-cpu-{i}"));
        #[cfg(not(target_arch = "wasm32"))]
        let pool = std::sync::Arc::new(builder.build().map_err(|e| {
            Error::Io(std::io::Error::other(format!(
                "cannot start {threads} CPU threads: {e}"
            )))
        })?);
        // A browser's wasm has no threads to spawn: there the pool is the calling thread alone,
        // which can belong to one pool only, so every backend of that thread shares it.
        #[cfg(target_arch = "wasm32")]
        let pool = {
            thread_local! {
                static POOL: std::cell::OnceCell<std::sync::Arc<rayon::ThreadPool>> =
                    const { std::cell::OnceCell::new() };
            }
            let _ = threads;
            POOL.with(|p| -> Result<_> {
                if p.get().is_none() {
                    let pool = builder
                        .num_threads(1)
                        .use_current_thread()
                        .build()
                        .map_err(|e| {
                            Error::Io(std::io::Error::other(format!(
                                "cannot make the page's thread a CPU pool: {e}"
                            )))
                        })?;
                    let _ = p.set(std::sync::Arc::new(pool));
                }
                Ok(p.get().expect("set").clone())
            })?
        };
        Ok(CpuBackend {
            pool,
            profile: Default::default(),
            counters: Default::default(),
        })
    }

    /// The number of threads ops run on.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        self.pool.install(f)
    }
}

impl Backend for CpuBackend {
    type Buffer = CpuBuffer;

    fn describe(&self) -> String {
        let n = self.threads();
        format!("cpu ({n} thread{})", if n == 1 { "" } else { "s" })
    }

    // ---- memory -------------------------------------------------------------------------

    fn zeros(&self, len: usize, _label: &str) -> Result<CpuBuffer> {
        Ok(CpuBuffer {
            data: vec![0.0; len],
        })
    }
    fn upload_f32(&self, data: &[f32], _label: &str) -> Result<CpuBuffer> {
        Ok(CpuBuffer {
            data: data.to_vec(),
        })
    }
    fn upload_u32(&self, data: &[u32], _label: &str) -> Result<CpuBuffer> {
        Ok(CpuBuffer {
            data: bytemuck::cast_slice(data).to_vec(),
        })
    }
    fn write_f32(&self, buf: &mut CpuBuffer, data: &[f32]) -> Result<()> {
        expect_len("write_f32", "data", data.len(), buf.len())?;
        buf.data.copy_from_slice(data);
        Ok(())
    }
    fn write_u32(&self, buf: &mut CpuBuffer, data: &[u32]) -> Result<()> {
        expect_len("write_u32", "data", data.len(), buf.len())?;
        buf.as_u32_mut().copy_from_slice(data);
        Ok(())
    }
    fn fill_zero(&self, buf: &mut CpuBuffer) -> Result<()> {
        buf.data.fill(0.0);
        Ok(())
    }
    fn read_f32(&self, buf: &CpuBuffer) -> Result<Vec<f32>> {
        self.counters.read();
        Ok(buf.data.clone())
    }
    fn read_u32(&self, buf: &CpuBuffer) -> Result<Vec<u32>> {
        self.counters.read();
        Ok(buf.as_u32().to_vec())
    }
    fn len(&self, buf: &CpuBuffer) -> usize {
        buf.len()
    }
    fn flush(&self) -> Result<()> {
        self.counters.flush();
        Ok(())
    }
    fn counters(&self) -> super::Counters {
        self.counters.get()
    }

    fn start_profile(&self) -> Result<()> {
        *self.profile.lock().unwrap_or_else(|e| e.into_inner()) = Some(Default::default());
        Ok(())
    }

    fn scope(&self, name: &str) {
        if let Some(clock) = self
            .profile
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_mut()
        {
            clock.enter(name);
        }
    }

    fn finish_profile(&self) -> Result<Vec<(String, f64)>> {
        let clock = self
            .profile
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        Ok(clock.map(super::ScopeClock::finish).unwrap_or_default())
    }

    // ---- gather -------------------------------------------------------------------------

    fn gather_batch(
        &self,
        p: &Gather,
        images: &CpuBuffer,
        labels: &CpuBuffer,
        perm: &CpuBuffer,
        x: &mut CpuBuffer,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        let (images, labels, perm) = (images.as_u32(), labels.as_u32(), perm.as_u32());
        let y = bytemuck::cast_slice_mut(&mut y.data);
        self.run(|| gather::gather_batch(p, images, labels, perm, &mut x.data, y))
    }

    fn gather_batch_affine(
        &self,
        p: &GatherAffine,
        images: &CpuBuffer,
        labels: &CpuBuffer,
        perm: &CpuBuffer,
        affine: &CpuBuffer,
        x: &mut CpuBuffer,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        let (images, labels, perm) = (images.as_u32(), labels.as_u32(), perm.as_u32());
        let y = bytemuck::cast_slice_mut(&mut y.data);
        let affine = &affine.data;
        self.run(|| gather::gather_batch_affine(p, images, labels, perm, affine, &mut x.data, y))
    }

    // ---- conv2d -------------------------------------------------------------------------

    fn conv2d_forward(
        &self,
        p: &Conv2d,
        x: &CpuBuffer,
        w: &CpuBuffer,
        bias: &CpuBuffer,
        out: &mut CpuBuffer,
    ) -> Result<()> {
        self.run(|| conv2d::conv2d_forward(p, &x.data, &w.data, &bias.data, &mut out.data))
    }
    fn conv2d_backward_input(
        &self,
        p: &Conv2d,
        dout: &CpuBuffer,
        w: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        self.run(|| conv2d::conv2d_backward_input(p, &dout.data, &w.data, &mut dx.data))
    }
    fn conv2d_backward_weight(
        &self,
        p: &Conv2d,
        x: &CpuBuffer,
        dout: &CpuBuffer,
        dw: &mut CpuBuffer,
    ) -> Result<()> {
        self.run(|| conv2d::conv2d_backward_weight(p, &x.data, &dout.data, &mut dw.data))
    }
    fn conv2d_backward_params(
        &self,
        p: &Conv2d,
        x: &CpuBuffer,
        dout: &CpuBuffer,
        dw: &mut CpuBuffer,
        dbias: &mut CpuBuffer,
    ) -> Result<()> {
        self.run(|| {
            conv2d::conv2d_backward_params(p, &x.data, &dout.data, &mut dw.data, &mut dbias.data)
        })
    }
    fn conv2d_backward_bias(
        &self,
        p: &Conv2d,
        dout: &CpuBuffer,
        dbias: &mut CpuBuffer,
    ) -> Result<()> {
        self.run(|| conv2d::conv2d_backward_bias(p, &dout.data, &mut dbias.data))
    }

    // ---- pool2d -------------------------------------------------------------------------

    fn maxpool2d_forward(&self, p: &Pool2d, x: &CpuBuffer, out: &mut CpuBuffer) -> Result<()> {
        self.run(|| pool2d::maxpool2d_forward(p, &x.data, &mut out.data))
    }
    fn maxpool2d_backward(
        &self,
        p: &Pool2d,
        x: &CpuBuffer,
        dout: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        self.run(|| pool2d::maxpool2d_backward(p, &x.data, &dout.data, &mut dx.data))
    }
    fn relu_maxpool2d_forward(&self, p: &Pool2d, x: &CpuBuffer, out: &mut CpuBuffer) -> Result<()> {
        self.run(|| pool2d::relu_maxpool2d_forward(p, &x.data, &mut out.data))
    }
    fn relu_maxpool2d_backward(
        &self,
        p: &Pool2d,
        x: &CpuBuffer,
        dout: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        self.run(|| pool2d::relu_maxpool2d_backward(p, &x.data, &dout.data, &mut dx.data))
    }
    fn avgpool2d_forward(&self, p: &Pool2d, x: &CpuBuffer, out: &mut CpuBuffer) -> Result<()> {
        self.run(|| pool2d::avgpool2d_forward(p, &x.data, &mut out.data))
    }
    fn avgpool2d_backward(&self, p: &Pool2d, dout: &CpuBuffer, dx: &mut CpuBuffer) -> Result<()> {
        self.run(|| pool2d::avgpool2d_backward(p, &dout.data, &mut dx.data))
    }

    // ---- elementwise --------------------------------------------------------------------

    fn relu_forward(&self, len: usize, x: &CpuBuffer, y: &mut CpuBuffer) -> Result<()> {
        self.run(|| elementwise::relu_forward(len, &x.data, &mut y.data))
    }
    fn relu_backward(
        &self,
        len: usize,
        y: &CpuBuffer,
        dy: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        self.run(|| elementwise::relu_backward(len, &y.data, &dy.data, &mut dx.data))
    }

    // ---- dropout ------------------------------------------------------------------------

    fn dropout_forward(
        &self,
        p: &Dropout,
        step: &CpuBuffer,
        x: &CpuBuffer,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        expect_len("dropout_forward", "step", step.len(), 1)?;
        let step = step.as_u32()[0];
        self.run(|| dropout::dropout_forward(p, step, &x.data, &mut y.data))
    }
    fn dropout_backward(
        &self,
        p: &Dropout,
        step: &CpuBuffer,
        dy: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        expect_len("dropout_backward", "step", step.len(), 1)?;
        let step = step.as_u32()[0];
        self.run(|| dropout::dropout_backward(p, step, &dy.data, &mut dx.data))
    }
    // ---- batch_norm ---------------------------------------------------------------------

    fn batch_norm_stats(
        &self,
        p: &BatchNorm,
        x: &CpuBuffer,
        stats: &mut CpuBuffer,
        running: &mut CpuBuffer,
    ) -> Result<()> {
        self.run(|| batch_norm::batch_norm_stats(p, &x.data, &mut stats.data, &mut running.data))
    }
    fn batch_norm_forward(
        &self,
        p: &BatchNorm,
        x: &CpuBuffer,
        stats: &CpuBuffer,
        weight: &CpuBuffer,
        bias: &CpuBuffer,
        y: &mut CpuBuffer,
    ) -> Result<()> {
        self.run(|| {
            batch_norm::batch_norm_forward(
                p,
                &x.data,
                &stats.data,
                &weight.data,
                &bias.data,
                &mut y.data,
            )
        })
    }
    fn batch_norm_backward_params(
        &self,
        p: &BatchNorm,
        x: &CpuBuffer,
        dy: &CpuBuffer,
        stats: &CpuBuffer,
        dweight: &mut CpuBuffer,
        dbias: &mut CpuBuffer,
    ) -> Result<()> {
        self.run(|| {
            batch_norm::batch_norm_backward_params(
                p,
                &x.data,
                &dy.data,
                &stats.data,
                &mut dweight.data,
                &mut dbias.data,
            )
        })
    }
    fn batch_norm_backward_input(
        &self,
        p: &BatchNorm,
        x: &CpuBuffer,
        dy: &CpuBuffer,
        stats: &CpuBuffer,
        weight: &CpuBuffer,
        dweight: &CpuBuffer,
        dbias: &CpuBuffer,
        dx: &mut CpuBuffer,
    ) -> Result<()> {
        self.run(|| {
            batch_norm::batch_norm_backward_input(
                p,
                &x.data,
                &dy.data,
                &stats.data,
                &weight.data,
                &dweight.data,
                &dbias.data,
                &mut dx.data,
            )
        })
    }

    // ---- matmul -------------------------------------------------------------------------

    fn matmul(&self, p: &Matmul, a: &CpuBuffer, b: &CpuBuffer, c: &mut CpuBuffer) -> Result<()> {
        self.run(|| matmul::matmul(p, &a.data, &b.data, &mut c.data))
    }
    fn matmul_bias(
        &self,
        p: &Matmul,
        relu: bool,
        a: &CpuBuffer,
        b: &CpuBuffer,
        bias: &CpuBuffer,
        c: &mut CpuBuffer,
    ) -> Result<()> {
        self.run(|| matmul::matmul_bias(p, relu, &a.data, &b.data, &bias.data, &mut c.data))
    }
    fn matmul_relu_backward(
        &self,
        p: &Matmul,
        a: &CpuBuffer,
        b: &CpuBuffer,
        y: &CpuBuffer,
        c: &mut CpuBuffer,
    ) -> Result<()> {
        self.run(|| matmul::matmul_relu_backward(p, &a.data, &b.data, &y.data, &mut c.data))
    }
    fn matmul_row_sums(
        &self,
        p: &Matmul,
        a: &CpuBuffer,
        b: &CpuBuffer,
        c: &mut CpuBuffer,
        sums: &mut CpuBuffer,
    ) -> Result<()> {
        self.run(|| matmul::matmul_row_sums(p, &a.data, &b.data, &mut c.data, &mut sums.data))
    }
    // ---- bias ---------------------------------------------------------------------------

    fn bias_add(&self, p: &Channels, bias: &CpuBuffer, x: &mut CpuBuffer) -> Result<()> {
        self.run(|| bias::bias_add(p, &bias.data, &mut x.data))
    }
    fn channel_sum(&self, p: &Channels, x: &CpuBuffer, out: &mut CpuBuffer) -> Result<()> {
        self.run(|| bias::channel_sum(p, &x.data, &mut out.data))
    }

    // ---- loss ---------------------------------------------------------------------------

    fn softmax_cross_entropy(
        &self,
        p: &SoftmaxXent,
        logits: &CpuBuffer,
        labels: &CpuBuffer,
        loss_sum: &mut CpuBuffer,
        dlogits: &mut CpuBuffer,
    ) -> Result<()> {
        let labels = labels.as_u32();
        self.run(|| {
            loss::softmax_cross_entropy(
                p,
                &logits.data,
                labels,
                &mut loss_sum.data,
                &mut dlogits.data,
            )
        })
    }
    fn count_correct(
        &self,
        p: &SoftmaxXent,
        logits: &CpuBuffer,
        labels: &CpuBuffer,
        correct: &mut CpuBuffer,
    ) -> Result<()> {
        let labels = labels.as_u32();
        let correct = bytemuck::cast_slice_mut(&mut correct.data);
        self.run(|| loss::count_correct(p, &logits.data, labels, correct))
    }
    // ---- optim --------------------------------------------------------------------------

    fn sgd_step(
        &self,
        p: &Sgd,
        scalars: &CpuBuffer,
        param: &mut CpuBuffer,
        grad: &CpuBuffer,
        velocity: &mut CpuBuffer,
    ) -> Result<()> {
        self.run(|| {
            optim::sgd_step(
                p,
                &scalars.data,
                &mut param.data,
                &grad.data,
                &mut velocity.data,
            )
        })
    }
    fn adam_step(
        &self,
        p: &Adam,
        scalars: &CpuBuffer,
        param: &mut CpuBuffer,
        grad: &CpuBuffer,
        m: &mut CpuBuffer,
        v: &mut CpuBuffer,
    ) -> Result<()> {
        self.run(|| {
            optim::adam_step(
                p,
                &scalars.data,
                &mut param.data,
                &grad.data,
                &mut m.data,
                &mut v.data,
            )
        })
    }
    fn sum_squares(&self, len: usize, x: &CpuBuffer, scalars: &mut CpuBuffer) -> Result<()> {
        self.run(|| optim::sum_squares(len, &x.data, &mut scalars.data))
    }
    fn record_nonfinite(
        &self,
        loss_sum: &CpuBuffer,
        scalars: &CpuBuffer,
        record: &mut CpuBuffer,
    ) -> Result<()> {
        optim::record_nonfinite(&loss_sum.data, &scalars.data, record.as_u32_mut())
    }
}
