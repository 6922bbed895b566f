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
//!   recorded; validation, out-of-memory and device-lost reports surface as [`Error::Gpu`] at the
//!   next flush or read.

mod context;
mod kernels;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use super::{
    check, Adam, Backend, BatchNorm, Channels, Conv2d, Dropout, Gather, GatherAffine, Matmul,
    Pool2d, Sgd, SoftmaxXent,
};
use crate::{Error, Result};
use context::Context;
pub use context::{list_adapters, AdapterSummary};
use kernels::*;

/// A buffer on the GPU: `len` 32-bit words.
pub struct GpuBuffer {
    buffer: wgpu::Buffer,
    len: usize,
    id: u64,
    _live: LiveToken,
}

/// Counts a buffer in its backend's [`GpuBackend::live_buffers`] while it exists.
struct LiveToken(Arc<AtomicUsize>);

impl LiveToken {
    fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        LiveToken(Arc::clone(count))
    }
}

impl Drop for LiveToken {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl GpuBuffer {
    /// Size in bytes (at least 4: wgpu cannot bind an empty buffer).
    fn bytes(&self) -> u64 {
        self.buffer.size()
    }
}

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

/// How to open the GPU backend.
#[derive(Clone, Debug, Default)]
pub struct GpuOptions {
    /// An index from `cnn-gpu info` or part of an adapter's name; None picks the best adapter.
    pub adapter: Option<String>,
    pub runtime_checks: RuntimeChecks,
    /// Use at most this many workgroups per dispatch dimension (below the adapter's limit):
    /// lets tests exercise the grid folding that large batches need, on small shapes.
    pub max_workgroups_per_dimension: Option<u32>,
    /// Allocate no buffer larger than this many bytes (below the adapter's limit): lets tests
    /// reach the batch-size limit on small data.
    pub max_buffer_bytes: Option<u64>,
}

/// A pipeline: an entry point and the values of its override constants.
#[derive(Clone, PartialEq, Eq, Hash)]
struct PipelineKey {
    kernel: Kernel,
    constants: Constants,
}

/// A bind group: the pipeline whose layout it follows, and the ids of the uniform and the
/// buffers bound.
#[derive(Clone, PartialEq, Eq, Hash)]
struct BindKey {
    pipeline: PipelineKey,
    buffers: Vec<u64>,
}

/// The command encoder and its open compute pass, while ops are being recorded.
struct Recording {
    encoder: wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
}

pub struct GpuBackend {
    ctx: Context,
    checked: bool,
    modules: RefCell<HashMap<Shader, wgpu::ShaderModule>>,
    pipelines: RefCell<HashMap<PipelineKey, wgpu::ComputePipeline>>,
    uniforms: RefCell<HashMap<Vec<u8>, GpuBuffer>>,
    bind_groups: RefCell<HashMap<BindKey, wgpu::BindGroup>>,
    /// Split-K partial sums of weight gradients, by length.
    scratch: RefCell<HashMap<usize, GpuBuffer>>,
    /// Mapped-read staging buffers, by size.
    staging: RefCell<HashMap<u64, wgpu::Buffer>>,
    recording: RefCell<Option<Recording>>,
    next_id: Cell<u64>,
    /// The 256 normalised pixel values, computed on the host with [`crate::data::normalize_pixel`].
    norm_table: GpuBuffer,
    dispatches: Cell<u64>,
    profile: RefCell<Option<Profile>>,
    counters: super::CounterCells,
}

/// Per-scope timing for `cnn-gpu time`.
enum Profile {
    /// Each dispatch in a pass of its own that writes begin and end timestamps.
    Timestamps {
        query_set: wgpu::QuerySet,
        /// The scope of each timed dispatch (queries 2i and 2i + 1).
        scopes: Vec<String>,
        current: String,
    },
    /// No timestamp queries: wait for the GPU at each scope change and read the wall clock.
    Clock(super::ScopeClock),
}

/// Timestamps one profile holds (wgpu's largest query set): 2048 dispatches.
const PROFILE_QUERIES: u32 = 4096;

fn to_u32(what: &str, v: usize) -> Result<u32> {
    u32::try_from(v).map_err(|_| {
        Error::Limit(format!(
            "{what} = {v} does not fit the GPU's 32-bit indices"
        ))
    })
}

impl GpuBackend {
    /// Opens the chosen adapter (see [`GpuOptions`]) and uploads the normalisation table.
    pub fn new(options: &GpuOptions) -> Result<GpuBackend> {
        let mut ctx = Context::open(options.adapter.as_deref())?;
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
        let table: Vec<f32> = (0..=255u8).map(crate::data::normalize_pixel).collect();
        let norm_table = Self::create_buffer(&ctx, 256, "normalisation table", 0)?;
        ctx.queue
            .write_buffer(&norm_table.buffer, 0, bytemuck::cast_slice(&table));
        let backend = GpuBackend {
            ctx,
            checked,
            modules: RefCell::default(),
            pipelines: RefCell::default(),
            uniforms: RefCell::default(),
            bind_groups: RefCell::default(),
            scratch: RefCell::default(),
            staging: RefCell::default(),
            recording: RefCell::new(None),
            next_id: Cell::new(1),
            norm_table,
            dispatches: Cell::new(0),
            profile: RefCell::new(None),
            counters: Default::default(),
        };
        Ok(backend)
    }

    /// The adapter this backend runs on.
    pub fn adapter(&self) -> &AdapterSummary {
        &self.ctx.summary
    }

    /// Whether shaders were built with naga's runtime checks.
    pub fn runtime_checks(&self) -> bool {
        self.checked
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
    /// later flush, read or allocation fails with [`Error::Gpu`] saying the device was lost.
    pub fn lose_device_for_test(&self) {
        self.ctx.device.destroy();
        // Let wgpu run its device-lost callback now (a real loss reports at the next poll).
        let _ = self.ctx.device.poll(wgpu::PollType::Poll);
    }

    fn create_buffer(ctx: &Context, len: usize, label: &str, id: u64) -> Result<GpuBuffer> {
        // A lost device hands out invalid buffers without an error: say so here instead.
        ctx.errors.check()?;
        let bytes = (len.max(1) * 4) as u64;
        let limit = buffer_limit(ctx);
        if bytes > limit {
            return Err(Error::Limit(format!(
                "buffer '{label}' needs {} MiB but {} binds at most {} MiB; use a smaller batch",
                bytes >> 20,
                ctx.summary.name,
                limit >> 20
            )));
        }
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: wgpu::BufferUsages::STORAGE
                | wgpu::BufferUsages::COPY_SRC
                | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!(
                "out of GPU memory allocating '{label}' ({} MiB): {e}",
                bytes >> 20
            )));
        }
        Ok(GpuBuffer {
            buffer,
            len,
            id,
            _live: LiveToken::new(&ctx.live_buffers),
        })
    }

    fn new_buffer(&self, len: usize, label: &str) -> Result<GpuBuffer> {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        Self::create_buffer(&self.ctx, len, label, id)
    }

    fn module(&self, shader: Shader) -> wgpu::ShaderModule {
        self.modules
            .borrow_mut()
            .entry(shader)
            .or_insert_with(|| {
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name()),
                    source: wgpu::ShaderSource::Wgsl(shader.source().into()),
                };
                if self.checked {
                    self.ctx.device.create_shader_module(desc)
                } else {
                    // SAFETY: every kernel guards its own indexing; the kernel tests run the
                    // same shaders with the checks on (lavapipe) and compare every output with
                    // the CPU backend on shapes that are not multiples of the workgroup or tile.
                    unsafe {
                        self.ctx.device.create_shader_module_trusted(
                            desc,
                            wgpu::ShaderRuntimeChecks::unchecked(),
                        )
                    }
                }
            })
            .clone()
    }

    fn pipeline(&self, key: &PipelineKey) -> wgpu::ComputePipeline {
        if let Some(p) = self.pipelines.borrow().get(key) {
            return p.clone();
        }
        let kernel = key.kernel;
        let module = self.module(kernel.shader);
        let constants: Vec<(&str, f64)> =
            key.constants.iter().map(|&(n, v)| (n, v as f64)).collect();
        let label = format!(
            "{}::{} {:?}",
            kernel.shader.name(),
            kernel.entry,
            key.constants
        );
        let pipeline = self
            .ctx
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(&label),
                layout: None,
                module: &module,
                entry_point: Some(kernel.entry),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    // Our kernels write workgroup memory before reading it.
                    zero_initialize_workgroup_memory: self.checked,
                },
                cache: None,
            });
        self.pipelines
            .borrow_mut()
            .insert(key.clone(), pipeline.clone());
        pipeline
    }

    fn uniform<P: Pod>(&self, params: &P) -> Result<(u64, wgpu::Buffer)> {
        let bytes = bytemuck::bytes_of(params);
        if let Some(b) = self.uniforms.borrow().get(bytes) {
            return Ok((b.id, b.buffer.clone()));
        }
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let buffer = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: bytes.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.ctx.queue.write_buffer(&buffer, 0, bytes);
        let out = (id, buffer.clone());
        self.uniforms.borrow_mut().insert(
            bytes.to_vec(),
            GpuBuffer {
                buffer,
                len: 0,
                id,
                _live: LiveToken::new(&self.ctx.live_buffers),
            },
        );
        Ok(out)
    }

    /// A 1-d grid of `threads` threads in workgroups of 256, split over y when x would pass the
    /// adapter's per-dimension limit (kernels index `gid.x + gid.y · groups.x · 256`).
    fn grid(&self, threads: usize) -> Result<[u32; 3]> {
        self.grid_groups(threads.div_ceil(WORKGROUP))
    }

    fn grid_groups(&self, groups: usize) -> Result<[u32; 3]> {
        let max = self.ctx.limits.max_compute_workgroups_per_dimension as usize;
        let groups = groups.max(1);
        if groups <= max {
            return Ok([groups as u32, 1, 1]);
        }
        let y = groups.div_ceil(max);
        if y > max {
            return Err(Error::Limit(format!(
                "{groups} workgroups exceed {}'s limit of {max}×{max}",
                self.ctx.summary.name
            )));
        }
        Ok([max as u32, y as u32, 1])
    }

    /// Records one dispatch of `kernel` with `params` in binding 0 and `buffers` in the
    /// bindings listed beside them.
    fn dispatch<P: Pod>(
        &self,
        kernel: Kernel,
        params: &P,
        buffers: &[(u32, &GpuBuffer)],
        groups: [u32; 3],
    ) -> Result<()> {
        self.dispatch_with(kernel, Vec::new(), params, buffers, groups)
    }

    /// [`Self::dispatch`] of a pipeline specialised by override `constants`.
    fn dispatch_with<P: Pod>(
        &self,
        kernel: Kernel,
        constants: Constants,
        params: &P,
        buffers: &[(u32, &GpuBuffer)],
        groups: [u32; 3],
    ) -> Result<()> {
        let max = self.ctx.limits.max_compute_workgroups_per_dimension;
        if groups.iter().any(|&g| g > max) {
            return Err(Error::Limit(format!(
                "{}: dispatch {groups:?} exceeds {}'s limit of {max} workgroups per dimension",
                kernel.entry, self.ctx.summary.name
            )));
        }
        if groups.contains(&0) {
            return Ok(());
        }
        let pipeline_key = PipelineKey { kernel, constants };
        let pipeline = self.pipeline(&pipeline_key);
        let (uniform_id, uniform) = self.uniform(params)?;
        let key = BindKey {
            pipeline: pipeline_key,
            buffers: std::iter::once(uniform_id)
                .chain(buffers.iter().map(|(_, b)| b.id))
                .collect(),
        };
        let bind_group = {
            let mut cache = self.bind_groups.borrow_mut();
            cache
                .entry(key)
                .or_insert_with(|| {
                    let mut entries = vec![wgpu::BindGroupEntry {
                        binding: 0,
                        resource: uniform.as_entire_binding(),
                    }];
                    entries.extend(buffers.iter().map(|(binding, b)| wgpu::BindGroupEntry {
                        binding: *binding,
                        resource: b.buffer.as_entire_binding(),
                    }));
                    self.ctx
                        .device
                        .create_bind_group(&wgpu::BindGroupDescriptor {
                            label: Some(kernel.entry),
                            layout: &pipeline.get_bind_group_layout(0),
                            entries: &entries,
                        })
                })
                .clone()
        };
        let mut recording = self.recording.borrow_mut();
        let rec = recording.get_or_insert_with(|| {
            let encoder = self
                .ctx
                .device
                .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                    label: Some("step"),
                });
            Recording {
                encoder,
                pass: None,
            }
        });
        if let Some(index) = self.next_timestamp(kernel) {
            // Profiling: this dispatch gets a pass of its own, timestamped at both ends.
            let profile = self.profile.borrow();
            let Some(Profile::Timestamps { query_set, .. }) = profile.as_ref() else {
                unreachable!("next_timestamp returns an index only while timestamping")
            };
            drop(rec.pass.take());
            let mut pass = rec
                .encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some(kernel.entry),
                    timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                        query_set,
                        beginning_of_pass_write_index: Some(index),
                        end_of_pass_write_index: Some(index + 1),
                    }),
                });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        } else {
            let pass = rec.pass.get_or_insert_with(|| {
                rec.encoder
                    .begin_compute_pass(&wgpu::ComputePassDescriptor {
                        label: Some("ops"),
                        timestamp_writes: None,
                    })
                    .forget_lifetime()
            });
            pass.set_pipeline(&pipeline);
            pass.set_bind_group(0, &bind_group, &[]);
            pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
        }
        self.dispatches.set(self.dispatches.get() + 1);
        Ok(())
    }

    /// While timestamping, the first of the two query indices the next dispatch writes (None
    /// when not timestamping or when the query set is full).
    fn next_timestamp(&self, _kernel: Kernel) -> Option<u32> {
        let mut profile = self.profile.borrow_mut();
        let Some(Profile::Timestamps {
            scopes, current, ..
        }) = profile.as_mut()
        else {
            return None;
        };
        let index = 2 * scopes.len() as u32;
        if index + 2 > PROFILE_QUERIES {
            return None;
        }
        scopes.push(current.clone());
        Some(index)
    }

    /// Copies `bytes` bytes of `src` (a COPY_SRC buffer) to the host, waiting for the GPU.
    fn read_back(&self, src: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let staging = self
            .staging
            .borrow_mut()
            .entry(bytes)
            .or_insert_with(|| {
                self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("readback"),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                })
            })
            .clone();
        let mut encoder = self
            .ctx
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                label: Some("readback"),
            });
        encoder.copy_buffer_to_buffer(src, 0, &staging, 0, bytes);
        self.ctx.queue.submit([encoder.finish()]);
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = sender.send(r);
        });
        self.wait()?;
        match pollster::block_on(receiver.receive()) {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(Error::Gpu(format!("reading back a buffer: {e}"))),
            None => {
                return Err(Error::Gpu(
                    "reading back a buffer: the map was dropped".into(),
                ))
            }
        }
        let out = staging
            .slice(..)
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("reading back a buffer: {e}")))?
            .to_vec();
        staging.unmap();
        Ok(out)
    }

    /// Waits until the GPU has finished everything submitted.
    fn wait(&self) -> Result<()> {
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        self.ctx.errors.check()
    }

    /// Ends the open pass and submits the recorded work, without waiting.
    fn submit(&self) -> Result<()> {
        if let Some(mut rec) = self.recording.borrow_mut().take() {
            drop(rec.pass.take());
            self.ctx.queue.submit([rec.encoder.finish()]);
        }
        self.ctx.errors.check()
    }

    fn read_words(&self, buf: &GpuBuffer) -> Result<Vec<u32>> {
        self.submit()?;
        let bytes = self.read_back(&buf.buffer, buf.bytes())?;
        Ok(bytemuck::cast_slice::<u8, u32>(&bytes)[..buf.len].to_vec())
    }

    fn write_words(&self, buf: &mut GpuBuffer, data: &[u32]) -> Result<()> {
        super::expect_len("write", "data", data.len(), buf.len)?;
        // queue.write_buffer lands before the next submission's commands: submit what was
        // recorded so far first, so the write is ordered after it.
        self.submit()?;
        if !data.is_empty() {
            self.ctx
                .queue
                .write_buffer(&buf.buffer, 0, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    fn scratch(&self, len: usize) -> Result<std::cell::RefMut<'_, GpuBuffer>> {
        if !self.scratch.borrow().contains_key(&len) {
            let buf = self.new_buffer(len, "split-K partial sums")?;
            self.scratch.borrow_mut().insert(len, buf);
        }
        Ok(std::cell::RefMut::map(self.scratch.borrow_mut(), |s| {
            s.get_mut(&len).expect("inserted")
        }))
    }

    /// Records one conv2d.wgsl GEMM pass (`mode`) over an M×N output with K split `splits`
    /// ways in chunks of `k_chunk`.
    #[allow(clippy::too_many_arguments)]
    fn conv_gemm(
        &self,
        mode: u32,
        p: &Conv2d,
        (m, n): (usize, usize),
        (splits, k_chunk): (usize, usize),
        bufs: &[(u32, &GpuBuffer)],
    ) -> Result<()> {
        let (tm, tn) = (gemm_per_thread(m), gemm_per_thread(n));
        let mut constants = conv_constants(p)?;
        constants.extend([("MODE", mode), ("TM", tm), ("TN", tn)]);
        let params = ConvParams {
            batch: to_u32("batch", p.batch)?,
            splits: to_u32("splits", splits)?,
            k_chunk: to_u32("k_chunk", k_chunk)?,
            _pad: 0,
        };
        let grid = gemm_grid(
            m,
            n,
            tm,
            tn,
            splits,
            self.ctx.limits.max_compute_workgroups_per_dimension,
        )?;
        self.dispatch_with(CONV_GEMM, constants, &params, bufs, grid)
    }

    /// A pooling kernel; `relu` fuses the ReLU before a max-pool (pool.wgsl's RELU).
    fn pool(
        &self,
        kernel: Kernel,
        p: &Pool2d,
        relu: bool,
        threads: usize,
        bufs: &[(u32, &GpuBuffer)],
    ) -> Result<()> {
        let constants = vec![
            ("H", to_u32("in_h", p.in_h)?),
            ("W", to_u32("in_w", p.in_w)?),
            ("KERNEL", to_u32("kernel", p.kernel)?),
            ("STRIDE", to_u32("stride", p.stride)?),
            ("OH", to_u32("out_h", p.out_h())?),
            ("OW", to_u32("out_w", p.out_w())?),
            ("RELU", u32::from(relu)),
        ];
        let params = PoolParams {
            planes: to_u32("batch·channels", p.batch * p.channels)?,
            _pad: [0; 3],
        };
        self.dispatch_with(kernel, constants, &params, bufs, self.grid(threads)?)
    }

    /// Max-pool forward (fused with the ReLU before it with `relu`), lengths checked for `op`.
    fn maxpool_forward(
        &self,
        op: &'static str,
        p: &Pool2d,
        relu: bool,
        x: &GpuBuffer,
        out: &GpuBuffer,
    ) -> Result<()> {
        check::pool2d(op, p, x.len, out.len)?;
        let bufs = [(1, x), (3, out)];
        self.pool(MAXPOOL_FORWARD, p, relu, p.output_len(), &bufs)
    }

    /// Max-pool backward (fused with the ReLU before it with `relu`), lengths checked for `op`.
    fn maxpool_backward(
        &self,
        op: &'static str,
        p: &Pool2d,
        relu: bool,
        x: &GpuBuffer,
        dout: &GpuBuffer,
        dx: &GpuBuffer,
    ) -> Result<()> {
        check::pool2d(op, p, x.len, dout.len)?;
        check::pool2d(op, p, dx.len, dout.len)?;
        let bufs = [(1, x), (2, dout), (3, dx)];
        self.pool(MAXPOOL_BACKWARD, p, relu, p.input_len(), &bufs)
    }

    /// dst = src through dropout's mask and scale (both directions).
    fn dropout(
        &self,
        p: &Dropout,
        step: &GpuBuffer,
        src: &GpuBuffer,
        dst: &GpuBuffer,
    ) -> Result<()> {
        let params = DropoutParams {
            len: to_u32("len", p.len)?,
            threshold: p.threshold(),
            scale: p.scale(),
            seed: p.seed,
        };
        let bufs = [(1, step), (2, src), (3, dst)];
        self.dispatch(DROPOUT, &params, &bufs, self.grid(p.len)?)
    }

    fn elementwise(&self, kernel: Kernel, len: usize, bufs: &[(u32, &GpuBuffer)]) -> Result<()> {
        let params = ElementwiseParams {
            len: to_u32("len", len)?,
            _pad: [0; 3],
        };
        self.dispatch(kernel, &params, bufs, self.grid(len)?)
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
        format!("{}{checks}", self.ctx.summary.describe())
    }

    fn zeros(&self, len: usize, label: &str) -> Result<GpuBuffer> {
        // wgpu zero-initialises new buffers.
        self.new_buffer(len, label)
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
        self.elementwise(FILL_ZERO, buf.len, &[(3, buf)])
    }

    fn read_f32(&self, buf: &GpuBuffer) -> Result<Vec<f32>> {
        self.counters.read();
        Ok(bytemuck::cast_vec(self.read_words(buf)?))
    }

    fn read_u32(&self, buf: &GpuBuffer) -> Result<Vec<u32>> {
        self.counters.read();
        self.read_words(buf)
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

    fn counters(&self) -> super::Counters {
        self.counters.get()
    }

    fn start_profile(&self) -> Result<()> {
        self.submit()?;
        let timestamps = self.ctx.summary.timestamp_query
            && std::env::var("CNN_GPU_PROFILE_CLOCK").map_or(true, |v| v != "1");
        let profile = if timestamps {
            Profile::Timestamps {
                query_set: self.ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                    label: Some("profile"),
                    ty: wgpu::QueryType::Timestamp,
                    count: PROFILE_QUERIES,
                }),
                scopes: Vec::new(),
                current: String::new(),
            }
        } else {
            Profile::Clock(Default::default())
        };
        *self.profile.borrow_mut() = Some(profile);
        Ok(())
    }

    fn scope(&self, name: &str) {
        let mut profile = self.profile.borrow_mut();
        match profile.as_mut() {
            None => {}
            Some(Profile::Timestamps { current, .. }) => name.clone_into(current),
            Some(Profile::Clock(clock)) => {
                // Errors surface at the next flush or read.
                let _ = self.submit().and_then(|()| self.wait());
                clock.enter(name);
            }
        }
    }

    fn finish_profile(&self) -> Result<Vec<(String, f64)>> {
        let profile = self.profile.borrow_mut().take();
        self.submit()?;
        match profile {
            None => Ok(Vec::new()),
            Some(Profile::Clock(clock)) => {
                self.wait()?;
                Ok(clock.finish())
            }
            Some(Profile::Timestamps {
                query_set, scopes, ..
            }) => {
                if scopes.is_empty() {
                    return Ok(Vec::new());
                }
                let count = 2 * scopes.len() as u32;
                let bytes = count as u64 * 8;
                let resolved = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some("profile timestamps"),
                    size: bytes,
                    usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
                    mapped_at_creation: false,
                });
                let mut encoder =
                    self.ctx
                        .device
                        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
                            label: Some("resolve"),
                        });
                encoder.resolve_query_set(&query_set, 0..count, &resolved, 0);
                self.ctx.queue.submit([encoder.finish()]);
                let raw = self.read_back(&resolved, bytes)?;
                let ticks: &[u64] = bytemuck::cast_slice(&raw);
                let ns_per_tick = self.ctx.queue.get_timestamp_period() as f64;
                let mut totals = Vec::new();
                for (i, scope) in scopes.iter().enumerate() {
                    let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * ns_per_tick;
                    super::add_time(&mut totals, scope, dt * 1e-9);
                }
                Ok(totals)
            }
        }
    }

    fn gather_batch(
        &self,
        p: &Gather,
        images: &GpuBuffer,
        labels: &GpuBuffer,
        perm: &GpuBuffer,
        x: &mut GpuBuffer,
        y: &mut GpuBuffer,
    ) -> Result<()> {
        check::gather_batch(p, images.len, labels.len, perm.len, x.len, y.len)?;
        let params = GatherParams {
            batch: to_u32("batch", p.batch)?,
            image_len: to_u32("image_len", p.image_len)?,
            offset: to_u32("offset", p.offset)?,
            cols: 0,
        };
        let bufs = [
            (1, images),
            (2, labels),
            (3, perm),
            (4, &self.norm_table),
            (5, &*x),
            (6, &*y),
        ];
        self.dispatch(
            GATHER_BATCH,
            &params,
            &bufs,
            self.grid(p.batch * p.image_len)?,
        )
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
        check::gather_batch_affine(
            p, images.len, labels.len, perm.len, affine.len, x.len, y.len,
        )?;
        let g = &p.gather;
        let params = GatherParams {
            batch: to_u32("batch", g.batch)?,
            image_len: to_u32("image_len", g.image_len)?,
            offset: to_u32("offset", g.offset)?,
            cols: to_u32("cols", p.cols)?,
        };
        let bufs = [
            (1, images),
            (2, labels),
            (3, perm),
            (5, &*x),
            (6, &*y),
            (7, affine),
        ];
        self.dispatch(
            GATHER_BATCH_AFFINE,
            &params,
            &bufs,
            self.grid(g.batch * g.image_len)?,
        )
    }

    fn conv2d_forward(
        &self,
        p: &Conv2d,
        x: &GpuBuffer,
        w: &GpuBuffer,
        bias: &GpuBuffer,
        out: &mut GpuBuffer,
    ) -> Result<()> {
        check::conv2d_forward(p, x.len, w.len, bias.len, out.len)?;
        let mn = (p.out_channels, p.batch * p.out_h() * p.out_w());
        self.conv_gemm(
            CONV_FORWARD,
            p,
            mn,
            (1, 0),
            &[(1, w), (2, x), (3, bias), (4, &*out)],
        )
    }

    fn conv2d_backward_input(
        &self,
        p: &Conv2d,
        dout: &GpuBuffer,
        w: &GpuBuffer,
        dx: &mut GpuBuffer,
    ) -> Result<()> {
        check::conv2d_backward_input(p, dout.len, w.len, dx.len)?;
        let mn = (p.in_channels, p.batch * p.in_h * p.in_w);
        // aux (binding 3) is unused in this mode; w stands in for it.
        self.conv_gemm(
            CONV_BACKWARD_INPUT,
            p,
            mn,
            (1, 0),
            &[(1, w), (2, dout), (3, w), (4, &*dx)],
        )
    }

    fn conv2d_backward_weight(
        &self,
        p: &Conv2d,
        x: &GpuBuffer,
        dout: &GpuBuffer,
        dw: &mut GpuBuffer,
    ) -> Result<()> {
        check::conv2d_backward_weight(p, x.len, dout.len, dw.len)?;
        // K = batch·OH·OW is large and M×N = Cout × Cin·KH·KW small: split K over enough
        // workgroups to fill the GPU (≥ 256 each), then add the slices up.
        let (m, n) = (p.out_channels, p.in_channels * p.kernel_h * p.kernel_w);
        let k = p.batch * p.out_h() * p.out_w();
        let tiles = m.div_ceil(16 * gemm_per_thread(m) as usize)
            * n.div_ceil(16 * gemm_per_thread(n) as usize);
        let wanted = (512 / tiles).max(1);
        let k_chunk = k.div_ceil(wanted).max(256).next_multiple_of(16);
        let splits = k.div_ceil(k_chunk);
        if splits == 1 {
            let bufs = [(1, dout), (2, x), (3, dout), (4, &*dw)];
            return self.conv_gemm(CONV_BACKWARD_WEIGHT, p, (m, n), (1, k_chunk), &bufs);
        }
        let partial = self.scratch(splits * m * n)?;
        let bufs = [(1, dout), (2, x), (3, dout), (4, &*partial)];
        self.conv_gemm(CONV_BACKWARD_WEIGHT, p, (m, n), (splits, k_chunk), &bufs)?;
        let params = ConvParams {
            batch: to_u32("batch", p.batch)?,
            splits: splits as u32,
            k_chunk: 0,
            _pad: 0,
        };
        let reduce = [(1, &*partial), (4, &*dw)];
        self.dispatch_with(
            SPLITK_REDUCE,
            conv_constants(p)?,
            &params,
            &reduce,
            self.grid(m * n)?,
        )
    }

    fn conv2d_backward_bias(
        &self,
        p: &Conv2d,
        dout: &GpuBuffer,
        dbias: &mut GpuBuffer,
    ) -> Result<()> {
        check::conv2d_backward_bias(p, dout.len, dbias.len)?;
        let c = Channels {
            outer: p.batch,
            channels: p.out_channels,
            inner: p.out_h() * p.out_w(),
        };
        self.channel_sum(&c, dout, dbias)
    }

    fn maxpool2d_forward(&self, p: &Pool2d, x: &GpuBuffer, out: &mut GpuBuffer) -> Result<()> {
        self.maxpool_forward("maxpool2d_forward", p, false, x, out)
    }

    fn maxpool2d_backward(
        &self,
        p: &Pool2d,
        x: &GpuBuffer,
        dout: &GpuBuffer,
        dx: &mut GpuBuffer,
    ) -> Result<()> {
        self.maxpool_backward("maxpool2d_backward", p, false, x, dout, dx)
    }

    fn relu_maxpool2d_forward(&self, p: &Pool2d, x: &GpuBuffer, out: &mut GpuBuffer) -> Result<()> {
        self.maxpool_forward("relu_maxpool2d_forward", p, true, x, out)
    }

    fn relu_maxpool2d_backward(
        &self,
        p: &Pool2d,
        x: &GpuBuffer,
        dout: &GpuBuffer,
        dx: &mut GpuBuffer,
    ) -> Result<()> {
        self.maxpool_backward("relu_maxpool2d_backward", p, true, x, dout, dx)
    }

    fn avgpool2d_forward(&self, p: &Pool2d, x: &GpuBuffer, out: &mut GpuBuffer) -> Result<()> {
        check::pool2d("avgpool2d_forward", p, x.len, out.len)?;
        let bufs = [(1, x), (3, &*out)];
        self.pool(AVGPOOL_FORWARD, p, false, p.output_len(), &bufs)
    }

    fn avgpool2d_backward(&self, p: &Pool2d, dout: &GpuBuffer, dx: &mut GpuBuffer) -> Result<()> {
        check::pool2d("avgpool2d_backward", p, dx.len, dout.len)?;
        let bufs = [(2, dout), (3, &*dx)];
        self.pool(AVGPOOL_BACKWARD, p, false, p.input_len(), &bufs)
    }

    fn relu_forward(&self, len: usize, x: &GpuBuffer, y: &mut GpuBuffer) -> Result<()> {
        check::elementwise("relu_forward", len, &[x.len, y.len])?;
        self.elementwise(RELU_FORWARD, len, &[(1, x), (3, &*y)])
    }

    fn relu_backward(
        &self,
        len: usize,
        y: &GpuBuffer,
        dy: &GpuBuffer,
        dx: &mut GpuBuffer,
    ) -> Result<()> {
        check::elementwise("relu_backward", len, &[y.len, dy.len, dx.len])?;
        self.elementwise(RELU_BACKWARD, len, &[(1, y), (2, dy), (3, &*dx)])
    }

    fn dropout_forward(
        &self,
        p: &Dropout,
        step: &GpuBuffer,
        x: &GpuBuffer,
        y: &mut GpuBuffer,
    ) -> Result<()> {
        check::dropout("dropout_forward", p, step.len, x.len, y.len)?;
        self.dropout(p, step, x, y)
    }

    fn dropout_backward(
        &self,
        p: &Dropout,
        step: &GpuBuffer,
        dy: &GpuBuffer,
        dx: &mut GpuBuffer,
    ) -> Result<()> {
        check::dropout("dropout_backward", p, step.len, dy.len, dx.len)?;
        self.dropout(p, step, dy, dx)
    }

    fn batch_norm_stats(
        &self,
        p: &BatchNorm,
        x: &GpuBuffer,
        stats: &mut GpuBuffer,
        running: &mut GpuBuffer,
    ) -> Result<()> {
        check::batch_norm_stats(p, x.len, stats.len, running.len)?;
        let bufs = [(1, x), (9, &*stats), (10, &*running)];
        self.dispatch(
            BN_STATS,
            &bn_params(p)?,
            &bufs,
            self.grid_groups(p.shape.channels)?,
        )
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
        check::batch_norm(
            "batch_norm_forward",
            p,
            &[x.len, y.len],
            &[stats.len],
            &[weight.len, bias.len],
        )?;
        let bufs = [(1, x), (3, stats), (4, weight), (5, bias), (8, &*y)];
        self.dispatch(BN_FORWARD, &bn_params(p)?, &bufs, self.grid(p.shape.len())?)
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
        check::batch_norm(
            "batch_norm_backward_params",
            p,
            &[x.len, dy.len],
            &[stats.len],
            &[dweight.len, dbias.len],
        )?;
        let bufs = [(1, x), (2, dy), (3, stats), (11, &*dweight), (12, &*dbias)];
        let groups = self.grid_groups(p.shape.channels)?;
        self.dispatch(BN_BACKWARD_PARAMS, &bn_params(p)?, &bufs, groups)
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
        check::batch_norm(
            "batch_norm_backward_input",
            p,
            &[x.len, dy.len, dx.len],
            &[stats.len],
            &[weight.len, dweight.len, dbias.len],
        )?;
        let bufs = [
            (1, x),
            (2, dy),
            (3, stats),
            (4, weight),
            (6, dweight),
            (7, dbias),
            (8, &*dx),
        ];
        let grid = self.grid(p.shape.len())?;
        self.dispatch(BN_BACKWARD_INPUT, &bn_params(p)?, &bufs, grid)
    }

    fn matmul(&self, p: &Matmul, a: &GpuBuffer, b: &GpuBuffer, c: &mut GpuBuffer) -> Result<()> {
        check::matmul(p, a.len, b.len, c.len)?;
        let params = MatmulParams {
            m: to_u32("m", p.m)?,
            k: to_u32("k", p.k)?,
            n: to_u32("n", p.n)?,
            trans_a: p.trans_a as u32,
            trans_b: p.trans_b as u32,
            _pad: [0; 3],
        };
        let (tm, tn) = matmul_per_thread(p.m, p.n);
        let grid = gemm_grid(
            p.m,
            p.n,
            tm,
            tn,
            1,
            self.ctx.limits.max_compute_workgroups_per_dimension,
        )?;
        self.dispatch_with(
            MATMUL,
            vec![("TM", tm), ("TN", tn)],
            &params,
            &[(1, a), (2, b), (3, &*c)],
            grid,
        )
    }

    fn bias_add(&self, p: &Channels, bias: &GpuBuffer, x: &mut GpuBuffer) -> Result<()> {
        check::channels("bias_add", p, bias.len, x.len)?;
        let params = channel_params(p)?;
        self.dispatch(
            BIAS_ADD,
            &params,
            &[(1, bias), (2, &*x)],
            self.grid(p.len())?,
        )
    }

    fn channel_sum(&self, p: &Channels, x: &GpuBuffer, out: &mut GpuBuffer) -> Result<()> {
        check::channels("channel_sum", p, out.len, x.len)?;
        let params = channel_params(p)?;
        self.dispatch(
            CHANNEL_SUM,
            &params,
            &[(1, x), (2, &*out)],
            self.grid_groups(p.channels)?,
        )
    }

    fn softmax_cross_entropy(
        &self,
        p: &SoftmaxXent,
        logits: &GpuBuffer,
        labels: &GpuBuffer,
        loss_sum: &mut GpuBuffer,
        dlogits: &mut GpuBuffer,
    ) -> Result<()> {
        check::softmax_xent("softmax_cross_entropy", p, logits.len, labels.len)?;
        super::expect_len("softmax_cross_entropy", "loss_sum", loss_sum.len, 1)?;
        super::expect_len("softmax_cross_entropy", "dlogits", dlogits.len, logits.len)?;
        let params = loss_params(p)?;
        let bufs = [(1, logits), (2, labels), (3, &*loss_sum), (4, &*dlogits)];
        self.dispatch(SOFTMAX_XENT, &params, &bufs, [1, 1, 1])
    }

    fn count_correct(
        &self,
        p: &SoftmaxXent,
        logits: &GpuBuffer,
        labels: &GpuBuffer,
        correct: &mut GpuBuffer,
    ) -> Result<()> {
        check::softmax_xent("count_correct", p, logits.len, labels.len)?;
        super::expect_len("count_correct", "correct", correct.len, 1)?;
        let params = loss_params(p)?;
        self.dispatch(
            COUNT_CORRECT,
            &params,
            &[(1, logits), (2, labels), (5, &*correct)],
            [1, 1, 1],
        )
    }

    fn sgd_step(
        &self,
        p: &Sgd,
        scalars: &GpuBuffer,
        param: &mut GpuBuffer,
        grad: &GpuBuffer,
        velocity: &mut GpuBuffer,
    ) -> Result<()> {
        check::sgd(p, scalars.len, param.len, grad.len, velocity.len)?;
        let params = OptimParams {
            len: to_u32("len", p.len)?,
            momentum: p.momentum,
            weight_decay: p.weight_decay,
            max_norm: p.max_norm.unwrap_or(0.0),
            flag: p.nesterov as u32,
            ..OptimParams::zeroed()
        };
        let bufs = [(1, grad), (2, &*param), (3, &*velocity), (5, scalars)];
        self.dispatch(SGD_STEP, &params, &bufs, self.grid(p.len)?)
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
        check::adam(p, scalars.len, param.len, grad.len, m.len, v.len)?;
        let (one_minus_beta1, beta2, one_minus_beta2) = p.factors();
        let params = OptimParams {
            len: to_u32("len", p.len)?,
            one_minus_beta1,
            beta2,
            one_minus_beta2,
            eps: p.eps,
            weight_decay: p.weight_decay,
            max_norm: p.max_norm.unwrap_or(0.0),
            flag: p.decoupled as u32,
            ..OptimParams::zeroed()
        };
        let bufs = [(1, grad), (2, &*param), (3, &*m), (4, &*v), (5, scalars)];
        self.dispatch(ADAM_STEP, &params, &bufs, self.grid(p.len)?)
    }

    fn sum_squares(&self, len: usize, x: &GpuBuffer, scalars: &mut GpuBuffer) -> Result<()> {
        check::sum_squares(len, x.len, scalars.len)?;
        let params = OptimParams {
            len: to_u32("len", len)?,
            ..OptimParams::zeroed()
        };
        self.dispatch(SUM_SQUARES, &params, &[(1, x), (7, &*scalars)], [1, 1, 1])
    }

    fn record_nonfinite(
        &self,
        loss_sum: &GpuBuffer,
        scalars: &GpuBuffer,
        record: &mut GpuBuffer,
    ) -> Result<()> {
        check::record_nonfinite(loss_sum.len, scalars.len, record.len)?;
        let params = OptimParams {
            len: 1,
            ..OptimParams::zeroed()
        };
        let bufs = [(5, scalars), (8, loss_sum), (9, &*record)];
        self.dispatch(RECORD_NONFINITE, &params, &bufs, [1, 1, 1])
    }
}

fn bn_params(p: &BatchNorm) -> Result<BnParams> {
    let s = p.shape;
    to_u32("batch-norm tensor length", s.len())?;
    Ok(BnParams {
        outer: to_u32("outer", s.outer)?,
        channels: to_u32("channels", s.channels)?,
        inner: to_u32("inner", s.inner)?,
        eps: p.eps,
        momentum: p.momentum,
        _pad: [0; 3],
    })
}

fn channel_params(p: &Channels) -> Result<ChannelParams> {
    Ok(ChannelParams {
        outer: to_u32("outer", p.outer)?,
        channels: to_u32("channels", p.channels)?,
        inner: to_u32("inner", p.inner)?,
        _pad: 0,
    })
}

fn loss_params(p: &SoftmaxXent) -> Result<LossParams> {
    Ok(LossParams {
        batch: to_u32("batch", p.batch)?,
        classes: to_u32("classes", p.classes)?,
        _pad: [0; 2],
    })
}

/// The workgroup grid of an M×N GEMM with tiles of (16·tm)×(16·tn) and K split `splits` ways.
/// Without a K-split, column tiles past the per-dimension limit fold over z (the kernels take
/// tile `wg.x + wg.z · groups.x`), so large batches need no special case.
fn gemm_grid(m: usize, n: usize, tm: u32, tn: u32, splits: usize, max: u32) -> Result<[u32; 3]> {
    let cols = n.div_ceil(16 * tn as usize);
    let rows = to_u32("GEMM row tiles", m.div_ceil(16 * tm as usize))?;
    let max = max as usize;
    let (x, z) = if splits == 1 && cols > max {
        (max, cols.div_ceil(max))
    } else {
        (cols, splits)
    };
    Ok([to_u32("GEMM column tiles", x)?, rows, to_u32("GEMM z", z)?])
}

/// The largest buffer we allocate: one that can also be bound whole as storage.
fn buffer_limit(ctx: &Context) -> u64 {
    ctx.limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size)
}

/// conv2d.wgsl's shape constants.
fn conv_constants(p: &Conv2d) -> Result<Constants> {
    Ok(vec![
        ("CIN", to_u32("in_channels", p.in_channels)?),
        ("H", to_u32("in_h", p.in_h)?),
        ("W", to_u32("in_w", p.in_w)?),
        ("COUT", to_u32("out_channels", p.out_channels)?),
        ("KH", to_u32("kernel_h", p.kernel_h)?),
        ("KW", to_u32("kernel_w", p.kernel_w)?),
        ("STRIDE", to_u32("stride", p.stride)?),
        ("PAD", to_u32("padding", p.padding)?),
        ("OH", to_u32("out_h", p.out_h())?),
        ("OW", to_u32("out_w", p.out_w())?),
    ])
}
