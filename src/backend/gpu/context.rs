//! Finding adapters, choosing one, and opening a device with the adapter's own limits and an
//! error sink that turns wgpu's validation, out-of-memory and device-lost reports into errors.

use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};

use crate::{Error, Result};

/// What `cnn-gpu info` shows of an adapter.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Position in enumeration order: what `--adapter N` selects.
    pub index: usize,
    pub name: String,
    pub backend: String,
    pub device_type: String,
    pub driver: String,
    pub driver_info: String,
    pub max_buffer_size: u64,
    pub max_storage_buffer_binding_size: u64,
    pub max_compute_workgroups_per_dimension: u32,
    pub max_compute_workgroup_storage_size: u32,
    pub timestamp_query: bool,
    pub timestamp_query_inside_passes: bool,
}

impl AdapterSummary {
    fn of(index: usize, adapter: &wgpu::Adapter) -> Self {
        let info = adapter.get_info();
        let limits = adapter.limits();
        let features = adapter.features();
        AdapterSummary {
            index,
            name: info.name,
            backend: format!("{:?}", info.backend),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver,
            driver_info: info.driver_info,
            max_buffer_size: limits.max_buffer_size,
            max_storage_buffer_binding_size: limits.max_storage_buffer_binding_size,
            max_compute_workgroups_per_dimension: limits.max_compute_workgroups_per_dimension,
            max_compute_workgroup_storage_size: limits.max_compute_workgroup_storage_size,
            timestamp_query: features.contains(wgpu::Features::TIMESTAMP_QUERY),
            timestamp_query_inside_passes: features
                .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES),
        }
    }

    /// A one-line description: "llvmpipe (LLVM 15.0.6, 256 bits) (Cpu, Vulkan)". Browsers
    /// hide the adapter's name: "unnamed adapter (Cpu, BrowserWebGpu)".
    pub fn describe(&self) -> String {
        let name = if self.name.trim().is_empty() {
            "unnamed adapter"
        } else {
            &self.name
        };
        format!("{name} ({}, {})", self.device_type, self.backend)
    }
}

/// Vulkan, Metal and DX12 (OpenGL only when asked for with WGPU_BACKEND=gl: its compute
/// support is patchy and probing it prints EGL noise on headless machines).
fn backends() -> wgpu::Backends {
    wgpu::Backends::from_env().unwrap_or(wgpu::Backends::PRIMARY)
}

fn instance() -> wgpu::Instance {
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle().with_env();
    desc.backends = backends();
    wgpu::Instance::new(desc)
}

async fn enumerate(instance: &wgpu::Instance) -> Vec<wgpu::Adapter> {
    instance.enumerate_adapters(backends()).await
}

/// How much `auto` prefers an adapter: lower is better. Real GPUs first, then software ones;
/// Vulkan, Metal and DX12 before OpenGL.
fn rank(adapter: &wgpu::Adapter) -> (u8, u8) {
    let info = adapter.get_info();
    let kind = match info.device_type {
        wgpu::DeviceType::DiscreteGpu => 0,
        wgpu::DeviceType::IntegratedGpu => 1,
        wgpu::DeviceType::VirtualGpu => 2,
        wgpu::DeviceType::Cpu => 3,
        wgpu::DeviceType::Other => 4,
    };
    let api = match info.backend {
        wgpu::Backend::Vulkan | wgpu::Backend::Metal | wgpu::Backend::Dx12 => 0,
        _ => 1,
    };
    (kind, api)
}

/// Every adapter wgpu finds, with the index `auto` would pick (None when there is none).
pub fn list_adapters() -> (Vec<AdapterSummary>, Option<usize>) {
    let adapters = pollster::block_on(enumerate(&instance()));
    let pick = auto_pick(&adapters);
    let list = adapters
        .iter()
        .enumerate()
        .map(|(i, a)| AdapterSummary::of(i, a))
        .collect();
    (list, pick)
}

fn auto_pick(adapters: &[wgpu::Adapter]) -> Option<usize> {
    (0..adapters.len()).min_by_key(|&i| (rank(&adapters[i]), i))
}

/// Picks an adapter: `selector` is an index from `cnn-gpu info` or a case-insensitive part of
/// the adapter's name; None picks the best one (see [`list_adapters`]).
fn choose(adapters: &[wgpu::Adapter], selector: Option<&str>) -> Result<usize> {
    if adapters.is_empty() {
        return Err(Error::NoAdapter(
            "wgpu found no Vulkan, Metal, DX12 or OpenGL adapter on this machine; install a GPU \
             driver (or Mesa's lavapipe: apt-get install mesa-vulkan-drivers), or train on the \
             CPU backend"
                .into(),
        ));
    }
    let names = || {
        adapters
            .iter()
            .enumerate()
            .map(|(i, a)| format!("{i}: {}", a.get_info().name))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let index = match selector {
        None => auto_pick(adapters).expect("non-empty"),
        Some(s) => match s.parse::<usize>() {
            Ok(i) if i < adapters.len() => i,
            Ok(i) => {
                return Err(Error::NoAdapter(format!(
                    "there is no adapter {i}; the adapters are {}",
                    names()
                )))
            }
            Err(_) => {
                let want = s.to_lowercase();
                adapters
                    .iter()
                    .position(|a| a.get_info().name.to_lowercase().contains(&want))
                    .ok_or_else(|| {
                        Error::NoAdapter(format!(
                            "no adapter's name contains {s:?}; the adapters are {}",
                            names()
                        ))
                    })?
            }
        },
    };
    Ok(index)
}

/// The first error the device reported (uncaptured validation or out-of-memory errors, or the
/// device's loss); every flush and readback checks it.
#[derive(Clone, Default)]
pub(crate) struct ErrorSink(Arc<Mutex<Option<String>>>);

impl ErrorSink {
    fn record(&self, message: String) {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(message);
        }
    }
    pub(crate) fn check(&self) -> Result<()> {
        let slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &*slot {
            None => Ok(()),
            Some(message) => Err(Error::Gpu(message.clone())),
        }
    }
}

/// An open device and what we know of it.
pub(crate) struct Context {
    pub device: wgpu::Device,
    pub queue: wgpu::Queue,
    pub summary: AdapterSummary,
    pub limits: wgpu::Limits,
    pub errors: ErrorSink,
    /// How many `GpuBuffer`s exist (see `GpuBackend::live_buffers`).
    pub live_buffers: Arc<AtomicUsize>,
}

impl Context {
    /// Finds the adapters, picks the one `selector` names (see [`choose`]) and opens a device
    /// on it (`GpuBackend::new` blocks on this; the web awaits it).
    pub(crate) async fn open(selector: Option<&str>) -> Result<Context> {
        let instance = instance();
        let adapters = enumerate(&instance).await;
        let index = choose(&adapters, selector)?;
        let adapter = &adapters[index];
        let summary = AdapterSummary::of(index, adapter);
        // The adapter's own limits, not wgpu's conservative defaults: MNIST alone is 47 MB and
        // large batches need more than the default 128 MiB storage binding.
        let limits = adapter.limits();
        let wanted =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES;
        let features = adapter.features() & wanted;
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("cnn-gpu"),
                required_features: features,
                required_limits: limits.clone(),
                memory_hints: wgpu::MemoryHints::Performance,
                ..Default::default()
            })
            .await
            .map_err(|e| Error::NoAdapter(format!("could not open {}: {e}", summary.describe())))?;

        let errors = ErrorSink::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| sink.record(e.to_string())));
        let sink = errors.clone();
        // `Destroyed` too: when the device is dropped nothing checks the sink any more, and a
        // device destroyed while in use (`GpuBackend::lose_device_for_test`) must fail the run.
        device.set_device_lost_callback(move |reason, message| {
            sink.record(format!("the GPU device was lost ({reason:?}): {message}"));
        });
        Ok(Context {
            device,
            queue,
            summary,
            limits,
            errors,
            live_buffers: Arc::default(),
        })
    }
}
