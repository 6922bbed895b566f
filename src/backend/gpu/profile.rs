//! Per-scope timing for `cnn-gpu time`: GPU timestamps around each dispatch where the adapter
//! has them, else the wall clock with a wait at each scope change.

use super::GpuBackend;
use crate::backend::{add_time, ScopeClock};
use crate::Result;

/// Timestamps one profile holds (wgpu's largest query set): 2048 dispatches.
const PROFILE_QUERIES: u32 = 4096;

/// How the backend is profiling.
pub(super) enum Profile {
    /// Each dispatch in a pass of its own that writes begin and end timestamps.
    Timestamps {
        query_set: wgpu::QuerySet,
        /// The scope of each timed dispatch (queries 2i and 2i + 1).
        scopes: Vec<String>,
        current: String,
    },
    /// No timestamp queries: wait for the GPU at each scope change and read the wall clock.
    Clock(ScopeClock),
}

/// See [`crate::backend::Backend::start_profile`].
pub(super) fn start(gpu: &GpuBackend) -> Result<()> {
    gpu.submit()?;
    let timestamps = gpu.ctx.summary.timestamp_query
        && std::env::var("CNN_GPU_PROFILE_CLOCK").map_or(true, |v| v != "1");
    let profile = if timestamps {
        Profile::Timestamps {
            query_set: gpu.ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
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
    *gpu.profile.borrow_mut() = Some(profile);
    Ok(())
}

/// See [`crate::backend::Backend::scope`].
pub(super) fn scope(gpu: &GpuBackend, name: &str) {
    let mut profile = gpu.profile.borrow_mut();
    match profile.as_mut() {
        None => {}
        Some(Profile::Timestamps { current, .. }) => name.clone_into(current),
        Some(Profile::Clock(clock)) => {
            // Errors surface at the next flush or read.
            let _ = gpu.submit().and_then(|()| gpu.wait());
            clock.enter(name);
        }
    }
}

/// See [`crate::backend::Backend::finish_profile`].
pub(super) fn finish(gpu: &GpuBackend) -> Result<Vec<(String, f64)>> {
    let profile = gpu.profile.borrow_mut().take();
    gpu.submit()?;
    match profile {
        None => Ok(Vec::new()),
        Some(Profile::Clock(clock)) => {
            gpu.wait()?;
            Ok(clock.finish())
        }
        Some(Profile::Timestamps {
            query_set, scopes, ..
        }) => pollster::block_on(scope_times(gpu, &query_set, &scopes)),
    }
}

/// Each scope's total from the timestamps of its dispatches.
async fn scope_times(
    gpu: &GpuBackend,
    query_set: &wgpu::QuerySet,
    scopes: &[String],
) -> Result<Vec<(String, f64)>> {
    if scopes.is_empty() {
        return Ok(Vec::new());
    }
    let count = 2 * scopes.len() as u32;
    let bytes = count as u64 * 8;
    let resolved = gpu.ctx.device.create_buffer(&wgpu::BufferDescriptor {
        label: Some("profile timestamps"),
        size: bytes,
        usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
        mapped_at_creation: false,
    });
    let mut encoder = gpu
        .ctx
        .device
        .create_command_encoder(&wgpu::CommandEncoderDescriptor {
            label: Some("resolve"),
        });
    encoder.resolve_query_set(query_set, 0..count, &resolved, 0);
    gpu.ctx.queue.submit([encoder.finish()]);
    let raw = gpu.read_back(&resolved, 0, bytes).await?;
    let ticks: &[u64] = bytemuck::cast_slice(&raw);
    let ns_per_tick = gpu.ctx.queue.get_timestamp_period() as f64;
    let mut totals = Vec::new();
    for (i, scope) in scopes.iter().enumerate() {
        let dt = ticks[2 * i + 1].saturating_sub(ticks[2 * i]) as f64 * ns_per_tick;
        add_time(&mut totals, scope, dt * 1e-9);
    }
    Ok(totals)
}

impl GpuBackend {
    /// While timestamping, the first of the two query indices the next dispatch writes (None
    /// when not timestamping or when the query set is full).
    pub(super) fn next_timestamp(&self) -> Option<u32> {
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

    /// Profiling: a pass of its own for one dispatch, timestamped at both ends (queries
    /// `index` and `index + 1`, from [`Self::next_timestamp`]).
    pub(super) fn timestamped_pass<'e>(
        &self,
        encoder: &'e mut wgpu::CommandEncoder,
        label: &str,
        index: u32,
    ) -> wgpu::ComputePass<'e> {
        let profile = self.profile.borrow();
        let Some(Profile::Timestamps { query_set, .. }) = profile.as_ref() else {
            unreachable!("next_timestamp returns an index only while timestamping")
        };
        encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(label),
            timestamp_writes: Some(wgpu::ComputePassTimestampWrites {
                query_set,
                beginning_of_pass_write_index: Some(index),
                end_of_pass_write_index: Some(index + 1),
            }),
        })
    }
}
