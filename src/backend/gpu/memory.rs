//! Buffers and the traffic between host and GPU: allocation (checked against the adapter's
//! limits and for running out of memory), writes, readback through cached staging buffers, and
//! submitting what was recorded.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use super::context::Context;
use super::GpuBackend;
use crate::backend::expect_len;
use crate::{Error, Result};

/// A buffer on the GPU: `len` 32-bit words, at `offset` bytes into a wgpu buffer that it has
/// to itself or shares with the other views of a packed allocation
/// ([`crate::backend::Backend::zeros_packed`]).
pub struct GpuBuffer {
    pub(super) buffer: wgpu::Buffer,
    /// Where the view starts in `buffer`, in bytes: a multiple of the adapter's storage-offset
    /// alignment (0 for a buffer of its own).
    pub(super) offset: u64,
    pub(super) len: usize,
    /// Unique within its backend: what the bind-group cache knows the buffer by.
    pub(super) id: u64,
    pub(super) _live: LiveToken,
}

impl GpuBuffer {
    /// Size in bytes (at least 4: wgpu cannot bind an empty buffer).
    fn bytes(&self) -> u64 {
        (self.len.max(1) * 4) as u64
    }

    /// The range of its wgpu buffer that a bind group binds.
    pub(super) fn binding(&self) -> wgpu::BindingResource<'_> {
        wgpu::BindingResource::Buffer(wgpu::BufferBinding {
            buffer: &self.buffer,
            offset: self.offset,
            size: std::num::NonZeroU64::new(self.bytes()),
        })
    }
}

/// Counts a buffer in its backend's [`GpuBackend::live_buffers`] while it exists.
pub(super) struct LiveToken(Arc<AtomicUsize>);

impl LiveToken {
    pub(super) fn new(count: &Arc<AtomicUsize>) -> Self {
        count.fetch_add(1, Ordering::Relaxed);
        LiveToken(Arc::clone(count))
    }
}

impl Drop for LiveToken {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The largest buffer we allocate: one that can also be bound whole as storage.
pub(super) fn buffer_limit(ctx: &Context) -> u64 {
    ctx.limits
        .max_storage_buffer_binding_size
        .min(ctx.limits.max_buffer_size)
}

/// A zeroed storage buffer of `len` words (wgpu zero-initialises new buffers).
pub(super) fn create_buffer(ctx: &Context, len: usize, label: &str, id: u64) -> Result<GpuBuffer> {
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
    let desc = wgpu::BufferDescriptor {
        label: Some(label),
        size: bytes,
        usage: wgpu::BufferUsages::STORAGE
            | wgpu::BufferUsages::COPY_SRC
            | wgpu::BufferUsages::COPY_DST,
        mapped_at_creation: false,
    };
    // A browser resolves an error scope only after control returns to its event loop, so
    // blocking on one there never returns: on the web an out-of-memory error reaches the error
    // sink instead, and the next submit or readback reports it.
    #[cfg(target_arch = "wasm32")]
    let buffer = ctx.device.create_buffer(&desc);
    #[cfg(not(target_arch = "wasm32"))]
    let buffer = {
        let scope = ctx.device.push_error_scope(wgpu::ErrorFilter::OutOfMemory);
        let buffer = ctx.device.create_buffer(&desc);
        if let Some(e) = pollster::block_on(scope.pop()) {
            return Err(Error::Gpu(format!(
                "out of GPU memory allocating '{label}' ({} MiB): {e}",
                bytes >> 20
            )));
        }
        buffer
    };
    Ok(GpuBuffer {
        buffer,
        offset: 0,
        len,
        id,
        _live: LiveToken::new(&ctx.live_buffers),
    })
}

impl GpuBackend {
    /// Flushes pending work, waits for it and returns the buffer's contents as f32: what
    /// [`crate::backend::Backend::read_f32`] blocks on, for callers that can await instead
    /// (the web). Counts as a read in [`crate::backend::Backend::counters`].
    pub async fn read_f32_async(&self, buf: &GpuBuffer) -> Result<Vec<f32>> {
        Ok(bytemuck::cast_vec(self.read_u32_async(buf).await?))
    }

    /// [`Self::read_f32_async`] of u32 words.
    pub async fn read_u32_async(&self, buf: &GpuBuffer) -> Result<Vec<u32>> {
        self.counters.read();
        self.submit()?;
        let bytes = self.read_back(&buf.buffer, buf.offset, buf.bytes()).await?;
        Ok(bytemuck::cast_slice::<u8, u32>(&bytes)[..buf.len].to_vec())
    }

    /// A new id for a buffer or uniform.
    pub(super) fn fresh_id(&self) -> u64 {
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        id
    }

    pub(super) fn new_buffer(&self, len: usize, label: &str) -> Result<GpuBuffer> {
        create_buffer(&self.ctx, len, label, self.fresh_id())
    }

    /// One zeroed allocation holding a view of each length, each view starting at a multiple
    /// of the adapter's storage-offset alignment, and a view over the whole allocation (what
    /// [`crate::backend::Backend::zeros_packed`] returns).
    pub(super) fn new_packed(
        &self,
        lens: &[usize],
        label: &str,
    ) -> Result<crate::backend::Packed<GpuBuffer>> {
        let align = (self.ctx.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
        let mut offsets = Vec::with_capacity(lens.len());
        let mut end = 0usize;
        for &len in lens {
            let start = end.next_multiple_of(align);
            offsets.push(start);
            end = start + len;
        }
        let whole = self.new_buffer(end, label)?;
        let parts = offsets
            .iter()
            .zip(lens)
            .map(|(&start, &len)| GpuBuffer {
                buffer: whole.buffer.clone(),
                offset: (start * 4) as u64,
                len,
                id: self.fresh_id(),
                _live: LiveToken::new(&self.ctx.live_buffers),
            })
            .collect();
        Ok(crate::backend::Packed {
            parts,
            whole: Some(whole),
        })
    }

    /// Overwrites the whole buffer, ordered after every op recorded before.
    pub(super) fn write_words(&self, buf: &mut GpuBuffer, data: &[u32]) -> Result<()> {
        expect_len("write", "data", data.len(), buf.len)?;
        // queue.write_buffer lands before the next submission's commands: submit what was
        // recorded so far first, so the write is ordered after it.
        self.submit()?;
        if !data.is_empty() {
            self.ctx
                .queue
                .write_buffer(&buf.buffer, buf.offset, bytemuck::cast_slice(data));
        }
        Ok(())
    }

    /// The scratch buffer of `len` words (split-K partial sums), made on first use.
    pub(super) fn scratch(&self, len: usize) -> Result<std::cell::RefMut<'_, GpuBuffer>> {
        if !self.scratch.borrow().contains_key(&len) {
            let buf = self.new_buffer(len, "split-K partial sums")?;
            self.scratch.borrow_mut().insert(len, buf);
        }
        Ok(std::cell::RefMut::map(self.scratch.borrow_mut(), |s| {
            s.get_mut(&len).expect("inserted")
        }))
    }

    /// Copies `bytes` bytes of `src` (a COPY_SRC buffer) from `offset` on to the host once the
    /// GPU has done everything submitted before.
    pub(super) async fn read_back(
        &self,
        src: &wgpu::Buffer,
        offset: u64,
        bytes: u64,
    ) -> Result<Vec<u8>> {
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
        encoder.copy_buffer_to_buffer(src, offset, &staging, 0, bytes);
        self.ctx.queue.submit([encoder.finish()]);
        let (sender, receiver) = futures_intrusive::channel::shared::oneshot_channel();
        staging.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            let _ = sender.send(r);
        });
        self.wait()?;
        match receiver.receive().await {
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
    pub(super) fn wait(&self) -> Result<()> {
        self.ctx
            .device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU: {e}")))?;
        self.ctx.errors.check()
    }

    /// Ends the open pass and submits the recorded work, without waiting.
    pub(super) fn submit(&self) -> Result<()> {
        if let Some(mut rec) = self.recording.borrow_mut().take() {
            rec.end_pass();
            self.ctx.queue.submit([rec.encoder.finish()]);
        }
        self.ctx.errors.check()
    }
}
