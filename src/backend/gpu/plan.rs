//! The step plan (`cnn-gpu time --plan`): while planning, every dispatch the backend records is
//! also logged here with its kernel, override constants, workgroup grid and estimated cost, so
//! the plan is the dispatch path itself, not a table kept beside it.

use super::memory::GpuBuffer;
use super::{dispatch::Constants, dispatch::Kernel, GpuBackend};

/// One recorded dispatch.
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedDispatch {
    /// The WGSL file, e.g. "conv2d.wgsl".
    pub shader: &'static str,
    pub entry: &'static str,
    /// The override constants, "NAME=value" separated by spaces.
    pub constants: String,
    pub groups: [u32; 3],
    /// Floating-point operations: 2·M·N·K for the GEMM kernels (matmul, the convolution
    /// passes), else an estimate of one per 4-byte word bound (those kernels are memory-bound).
    pub flops: f64,
    /// Bytes of every storage buffer bound: the least the dispatch can move if it reads or
    /// writes each once.
    pub bytes: f64,
}

impl PlannedDispatch {
    /// Workgroups in the grid.
    pub fn workgroups(&self) -> u64 {
        self.groups.iter().map(|&g| g as u64).product()
    }

    /// Whether the dispatch does enough work to matter (≥ 1 MFLOP or ≥ 1 MB) yet runs fewer
    /// than `units` workgroups: some of a GPU with `units` compute units (132 SMs on an
    /// H100/H200) would sit idle through it.
    pub fn starves(&self, units: u64) -> bool {
        (self.flops >= 1e6 || self.bytes >= 1e6) && self.workgroups() < units
    }
}

impl GpuBackend {
    /// Starts logging dispatches (dropping any earlier log).
    pub fn start_plan(&self) {
        *self.plan.borrow_mut() = Some(Vec::new());
    }

    /// Stops logging and returns every dispatch recorded since [`Self::start_plan`], in order.
    pub fn finish_plan(&self) -> Vec<PlannedDispatch> {
        self.plan.borrow_mut().take().unwrap_or_default()
    }

    /// The exact FLOPs of the next dispatch (GEMM launchers set it before dispatching).
    pub(super) fn next_flops(&self, flops: f64) {
        self.next_flops.set(Some(flops));
    }

    /// Logs a dispatch while planning; forgets [`Self::next_flops`] either way.
    pub(super) fn note_planned(
        &self,
        kernel: Kernel,
        constants: &Constants,
        buffers: &[(u32, &GpuBuffer)],
        groups: [u32; 3],
    ) {
        let flops = self.next_flops.take();
        let mut plan = self.plan.borrow_mut();
        let Some(plan) = plan.as_mut() else {
            return;
        };
        let words: usize = buffers.iter().map(|(_, b)| b.len).sum();
        let constants = constants
            .as_slice()
            .iter()
            .map(|(n, v)| format!("{n}={v}"))
            .collect::<Vec<_>>()
            .join(" ");
        plan.push(PlannedDispatch {
            shader: kernel.shader.name,
            entry: kernel.entry,
            constants,
            groups,
            flops: flops.unwrap_or(words as f64),
            bytes: 4.0 * words as f64,
        });
    }
}
