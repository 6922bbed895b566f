//! What the two bench binaries share: the size setting, the command-line filter, opening the GPU
//! backend, and number formatting. Criterion-free on purpose: we want rates (GFLOP/s, GB/s,
//! images/s) printed one line per case, and a binary that runs the same on the device machine.

#![allow(dead_code)] // each bench uses a different part of this module

use cnn_gpu::backend::gpu::{GemmVariant, GpuBackend, GpuOptions};

/// `CNN_GPU_BENCH_SIZES`: `small` keeps lavapipe (a few GFLOP/s on the CPU) and slow machines
/// within a few minutes; `full` runs every size. Unset: each bench picks per backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sizes {
    Small,
    Full,
}

pub const SIZES_VAR: &str = "CNN_GPU_BENCH_SIZES";

/// The sizes asked for through [`SIZES_VAR`], or None when it is unset or empty. Any other value
/// is a usage error: the process exits with status 2.
pub fn sizes_from_env() -> Option<Sizes> {
    match std::env::var(SIZES_VAR).as_deref().map(str::trim) {
        Err(_) | Ok("") => None,
        Ok("small") => Some(Sizes::Small),
        Ok("full") => Some(Sizes::Full),
        Ok(other) => {
            eprintln!("error: {SIZES_VAR}={other:?}: expected `small` or `full`");
            std::process::exit(2);
        }
    }
}

/// Substring filters from the command line: `cargo bench --bench kernels -- conv2 gpu`.
/// A case runs when its full name (op, shape and backend, as printed) contains every filter.
/// Flags (`--bench`, which cargo passes, and anything else starting with `-`) are ignored.
pub struct Filter(Vec<String>);

impl Filter {
    pub fn from_args() -> Filter {
        Filter(
            std::env::args()
                .skip(1)
                .filter(|a| !a.starts_with('-'))
                .collect(),
        )
    }

    pub fn matches(&self, name: &str) -> bool {
        self.0.iter().all(|f| name.contains(f.as_str()))
    }

    pub fn describe(&self) -> String {
        if self.0.is_empty() {
            "none".into()
        } else {
            self.0.join(" & ")
        }
    }
}

/// The default GPU adapter with the GEMM core `gemm` (None: `$CNN_GPU_GEMM` or the default),
/// or None after printing why the GPU part is skipped.
pub fn open_gpu_with(gemm: Option<GemmVariant>) -> Option<GpuBackend> {
    let options = GpuOptions {
        gemm,
        ..GpuOptions::default()
    };
    match GpuBackend::new(&options) {
        Ok(b) => Some(b),
        Err(e) => {
            println!("gpu: skipped (no usable adapter: {e})");
            None
        }
    }
}

/// The GEMM cores to bench: the one `$CNN_GPU_GEMM` names, else every one
/// ([`GemmVariant::ALL`], the default first).
pub fn gemm_variants() -> cnn_gpu::Result<Vec<GemmVariant>> {
    Ok(match GemmVariant::from_env()? {
        Some(v) => vec![v],
        None => GemmVariant::ALL.to_vec(),
    })
}

/// Whether the GPU backend runs on a software adapter (lavapipe/llvmpipe): its times are CPU
/// times and must never be read as GPU figures.
pub fn is_software(b: &GpuBackend) -> bool {
    b.adapter().device_type == "Cpu"
}

/// Seconds as a short fixed-width string in a suitable unit.
pub fn fmt_time(s: f64) -> String {
    if s >= 1.0 {
        format!("{s:.3} s")
    } else if s >= 1e-3 {
        format!("{:.3} ms", s * 1e3)
    } else {
        format!("{:.2} µs", s * 1e6)
    }
}

/// The 1, 5 and 15-minute load averages ("load 0.12 0.30 0.25"), where /proc/loadavg exists:
/// other work on the machine skews CPU and lavapipe figures, so every run prints it.
pub fn load() -> String {
    match std::fs::read_to_string("/proc/loadavg") {
        Ok(s) => {
            let l: Vec<&str> = s.split_whitespace().take(3).collect();
            format!("load {}", l.join(" "))
        }
        Err(_) => "load ?".into(),
    }
}
