//! Recording one dispatch: the WGSL modules and their entry points, the caches of shader
//! modules, pipelines, uniforms and bind groups, the workgroup grids, and the open compute pass
//! that every op is recorded into until the next submit.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};

use bytemuck::Pod;

use super::memory::{GpuBuffer, LiveToken};
use super::GpuBackend;
use crate::{Error, Result};

/// One WGSL module: a file of shaders/ (with any helper files it needs prepended), embedded at
/// compile time. Made with [`shader!`]; two are the same module when their names are equal.
#[derive(Clone, Copy, Debug)]
pub(super) struct Shader {
    pub name: &'static str,
    pub source: &'static str,
}

impl PartialEq for Shader {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl Eq for Shader {}

impl Hash for Shader {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

/// `shader!("f.wgsl")` embeds shaders/f.wgsl; `shader!("f.wgsl", after "h.wgsl")` prepends
/// shaders/h.wgsl to it (a helper whose functions f.wgsl calls); `…, named "f.wgsl+v"` names
/// the module otherwise than its file (one file on another helper is another module).
macro_rules! shader {
    ($file:literal $(, after $helper:literal)?) => {
        shader!($file $(, after $helper)?, named $file)
    };
    ($file:literal $(, after $helper:literal)?, named $name:literal) => {
        $crate::backend::gpu::dispatch::Shader {
            name: $name,
            source: concat!(
                $(include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $helper)),)?
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/shaders/", $file))
            ),
        }
    };
}
pub(super) use shader;

/// One entry point of a module. With the values of its override constants it names a pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct Kernel {
    pub shader: Shader,
    pub entry: &'static str,
}

impl Kernel {
    pub(super) const fn new(shader: Shader, entry: &'static str) -> Self {
        Kernel { shader, entry }
    }
}

/// Most override constants one pipeline sets (conv2d.wgsl's 13).
const MAX_CONSTANTS: usize = 16;

/// Values of a module's override constants, by name: a fixed array, so that building the cache
/// key of a dispatch allocates nothing.
#[derive(Clone, Copy, Debug)]
pub(super) struct Constants {
    len: usize,
    items: [(&'static str, u32); MAX_CONSTANTS],
}

impl Constants {
    /// No constants.
    pub(super) const NONE: Constants = Constants {
        len: 0,
        items: [("", 0); MAX_CONSTANTS],
    };

    /// These `items`, in order.
    pub(super) fn of(items: &[(&'static str, u32)]) -> Constants {
        let mut c = Constants::NONE;
        c.extend(items);
        c
    }

    /// Appends `items`. Panics past [`MAX_CONSTANTS`] (a programming error: the kernels' sets
    /// are fixed).
    pub(super) fn extend(&mut self, items: &[(&'static str, u32)]) {
        assert!(
            self.len + items.len() <= MAX_CONSTANTS,
            "more than {MAX_CONSTANTS} override constants"
        );
        self.items[self.len..self.len + items.len()].copy_from_slice(items);
        self.len += items.len();
    }

    pub(super) fn as_slice(&self) -> &[(&'static str, u32)] {
        &self.items[..self.len]
    }
}

impl PartialEq for Constants {
    fn eq(&self, other: &Self) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for Constants {}

impl Hash for Constants {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_slice().hash(state);
    }
}

/// Most buffers one bind group binds, the uniform included.
const MAX_BINDINGS: usize = 8;

/// Threads per workgroup of every 1-d kernel.
pub(super) const WORKGROUP: usize = 256;

/// A pipeline: an entry point and the values of its override constants.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct PipelineKey {
    kernel: Kernel,
    constants: Constants,
}

/// A bind group: the pipeline whose layout it follows, and the ids of the uniform and the
/// buffers bound.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct BindKey {
    pipeline: PipelineKey,
    /// The uniform's id, then each buffer's; 0 past the last.
    buffers: [u64; MAX_BINDINGS],
}

/// What the backend caches so that a step that repeats the last one builds nothing.
#[derive(Default)]
pub(super) struct Caches {
    modules: HashMap<Shader, wgpu::ShaderModule>,
    pipelines: HashMap<PipelineKey, wgpu::ComputePipeline>,
    /// By the uniform's bytes.
    uniforms: HashMap<Vec<u8>, GpuBuffer>,
    bind_groups: HashMap<BindKey, wgpu::BindGroup>,
}

/// The command encoder and its open compute pass, while ops are being recorded.
pub(super) struct Recording {
    pub encoder: wgpu::CommandEncoder,
    pass: Option<wgpu::ComputePass<'static>>,
}

impl Recording {
    fn new(device: &wgpu::Device) -> Self {
        let encoder = device.create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("step"),
        });
        Recording {
            encoder,
            pass: None,
        }
    }

    /// Ends the open pass, if any (before a pass of its own, or the submit).
    pub(super) fn end_pass(&mut self) {
        drop(self.pass.take());
    }

    /// The pass that untimed dispatches share, begun on first use.
    fn shared_pass(&mut self) -> &mut wgpu::ComputePass<'static> {
        let encoder = &mut self.encoder;
        self.pass.get_or_insert_with(|| {
            encoder
                .begin_compute_pass(&wgpu::ComputePassDescriptor {
                    label: Some("ops"),
                    timestamp_writes: None,
                })
                .forget_lifetime()
        })
    }
}

/// Sets `pipeline` and `bind_group` on `pass` and dispatches `groups`.
fn encode(
    pass: &mut wgpu::ComputePass<'_>,
    pipeline: &wgpu::ComputePipeline,
    bind_group: &wgpu::BindGroup,
    groups: [u32; 3],
) {
    pass.set_pipeline(pipeline);
    pass.set_bind_group(0, bind_group, &[]);
    pass.dispatch_workgroups(groups[0], groups[1], groups[2]);
}

impl GpuBackend {
    /// Records one dispatch of `kernel` with `params` in binding 0 and `buffers` in the
    /// bindings listed beside them.
    pub(super) fn dispatch<P: Pod>(
        &self,
        kernel: Kernel,
        params: &P,
        buffers: &[(u32, &GpuBuffer)],
        groups: [u32; 3],
    ) -> Result<()> {
        self.dispatch_with(kernel, Constants::NONE, params, buffers, groups)
    }

    /// [`Self::dispatch`] of a pipeline specialised by override `constants`.
    pub(super) fn dispatch_with<P: Pod>(
        &self,
        kernel: Kernel,
        constants: Constants,
        params: &P,
        buffers: &[(u32, &GpuBuffer)],
        groups: [u32; 3],
    ) -> Result<()> {
        self.check_groups(kernel, groups)?;
        if groups.contains(&0) {
            return Ok(());
        }
        let key = PipelineKey { kernel, constants };
        let pipeline = self.pipeline(&key);
        let bind_group = self.bind_group(key, &pipeline, params, buffers)?;
        self.record(kernel, &pipeline, &bind_group, groups);
        self.dispatches.set(self.dispatches.get() + 1);
        self.note_planned(kernel, &constants, buffers, groups);
        Ok(())
    }

    /// Refuses a grid past the adapter's per-dimension limit.
    fn check_groups(&self, kernel: Kernel, groups: [u32; 3]) -> Result<()> {
        let max = self.max_workgroups();
        if groups.iter().any(|&g| g > max) {
            return Err(Error::Limit(format!(
                "{}: dispatch {groups:?} exceeds {}'s limit of {max} workgroups per dimension",
                kernel.entry, self.ctx.summary.name
            )));
        }
        Ok(())
    }

    /// Appends the dispatch to the open recording (begun here if there is none): into the
    /// shared pass, or while timestamping into a pass of its own.
    fn record(
        &self,
        kernel: Kernel,
        pipeline: &wgpu::ComputePipeline,
        bind_group: &wgpu::BindGroup,
        groups: [u32; 3],
    ) {
        let mut recording = self.recording.borrow_mut();
        let rec = recording.get_or_insert_with(|| Recording::new(&self.ctx.device));
        if let Some(index) = self.next_timestamp() {
            rec.end_pass();
            let mut pass = self.timestamped_pass(&mut rec.encoder, kernel.entry, index);
            encode(&mut pass, pipeline, bind_group, groups);
        } else {
            encode(rec.shared_pass(), pipeline, bind_group, groups);
        }
    }

    /// The shader module, built on first use.
    fn module(&self, shader: Shader) -> wgpu::ShaderModule {
        self.caches
            .borrow_mut()
            .modules
            .entry(shader)
            .or_insert_with(|| {
                let desc = wgpu::ShaderModuleDescriptor {
                    label: Some(shader.name),
                    source: wgpu::ShaderSource::Wgsl(shader.source.into()),
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

    /// The pipeline, built on first use.
    fn pipeline(&self, key: &PipelineKey) -> wgpu::ComputePipeline {
        if let Some(p) = self.caches.borrow().pipelines.get(key) {
            return p.clone();
        }
        let kernel = key.kernel;
        let module = self.module(kernel.shader);
        let constants: Vec<(&str, f64)> = key
            .constants
            .as_slice()
            .iter()
            .map(|&(n, v)| (n, v as f64))
            .collect();
        let label = format!(
            "{}::{} {:?}",
            kernel.shader.name,
            kernel.entry,
            key.constants.as_slice()
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
        self.caches
            .borrow_mut()
            .pipelines
            .insert(key.clone(), pipeline.clone());
        pipeline
    }

    /// The uniform buffer holding `params`, made on first use of these bytes: its id and
    /// buffer.
    fn uniform<P: Pod>(&self, params: &P) -> Result<(u64, wgpu::Buffer)> {
        let bytes = bytemuck::bytes_of(params);
        if let Some(b) = self.caches.borrow().uniforms.get(bytes) {
            return Ok((b.id, b.buffer.clone()));
        }
        let id = self.fresh_id();
        let buffer = self.ctx.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("params"),
            size: bytes.len() as u64,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.ctx.queue.write_buffer(&buffer, 0, bytes);
        let out = (id, buffer.clone());
        self.caches.borrow_mut().uniforms.insert(
            bytes.to_vec(),
            GpuBuffer {
                buffer,
                offset: 0,
                len: 0,
                id,
                _live: LiveToken::new(&self.ctx.live_buffers),
            },
        );
        Ok(out)
    }

    /// The bind group of `params` and `buffers` in `pipeline`'s layout, made on first use.
    fn bind_group<P: Pod>(
        &self,
        pipeline_key: PipelineKey,
        pipeline: &wgpu::ComputePipeline,
        params: &P,
        buffers: &[(u32, &GpuBuffer)],
    ) -> Result<wgpu::BindGroup> {
        let (uniform_id, uniform) = self.uniform(params)?;
        let label = pipeline_key.kernel.entry;
        if buffers.len() >= MAX_BINDINGS {
            return Err(Error::InvalidParams(format!(
                "{label}: {} buffers exceed the {} a bind group may hold",
                buffers.len(),
                MAX_BINDINGS - 1
            )));
        }
        let mut ids = [0; MAX_BINDINGS];
        ids[0] = uniform_id;
        for (id, (_, b)) in ids[1..].iter_mut().zip(buffers) {
            *id = b.id;
        }
        let key = BindKey {
            pipeline: pipeline_key,
            buffers: ids,
        };
        let mut caches = self.caches.borrow_mut();
        let bind_group = caches.bind_groups.entry(key).or_insert_with(|| {
            let mut entries = vec![wgpu::BindGroupEntry {
                binding: 0,
                resource: uniform.as_entire_binding(),
            }];
            entries.extend(buffers.iter().map(|(binding, b)| wgpu::BindGroupEntry {
                binding: *binding,
                resource: b.binding(),
            }));
            self.ctx
                .device
                .create_bind_group(&wgpu::BindGroupDescriptor {
                    label: Some(label),
                    layout: &pipeline.get_bind_group_layout(0),
                    entries: &entries,
                })
        });
        Ok(bind_group.clone())
    }

    /// A 1-d grid of `threads` threads in workgroups of 256, split over y when x would pass the
    /// adapter's per-dimension limit (kernels index `gid.x + gid.y · groups.x · 256`).
    pub(super) fn grid(&self, threads: usize) -> Result<[u32; 3]> {
        self.grid_groups(threads.div_ceil(WORKGROUP))
    }

    /// A grid of `groups` workgroups, split over y as [`Self::grid`] splits it.
    pub(super) fn grid_groups(&self, groups: usize) -> Result<[u32; 3]> {
        let max = self.max_workgroups() as usize;
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
}
