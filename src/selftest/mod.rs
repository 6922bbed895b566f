//! The GPU self-test: every GPU kernel against the CPU reference on random inputs and
//! asymmetric shapes, as `cnn-gpu check` runs it on a user's adapter and `tests/gpu_vs_cpu.rs`
//! runs it in CI.
//!
//! A [`Case`] is one op family on one shape ([`Op`]) with its tolerance; running it gives one
//! output per kernel it exercises (a convolution case checks the forward pass and the three
//! gradients), each compared element-wise with `|gpu − ref| ≤ atol + rtol·|ref|` into a
//! [`Comparison`]. [`cases`] is the table: H≠W, batch 1 and odd batches, stride 1 and 2,
//! padding 0/1/2, kernels 1/3/5 and non-square, channel counts that are not multiples of 4,
//! sizes that are not multiples of the workgroup (256) or GEMM tile (64), every matmul operand
//! layout, the K-split and big-tile products, and grids folded past a lowered per-dimension
//! workgroup limit. [`SelfTest`] runs cases on a reference backend and on GPU backends opened
//! with each of a list of [`GpuOptions`] (checked and unchecked builds, …).

mod cases;
mod layers;
mod training;

use rand::{Rng, SeedableRng};

use crate::backend::gpu::{GpuBackend, GpuOptions};
use crate::backend::SoftmaxXent;
use crate::backend::{Backend, BatchNorm, Channels, Conv2d, Dropout, Gather, Matmul, Pool2d};
use crate::optim::Optimizer;
use crate::{Error, Result};

pub use cases::cases;

/// What a run gives: each kernel's name (its [`Backend`] method, with the output in brackets
/// when it has several) and its output.
pub type Outputs = Vec<(String, Vec<f32>)>;

/// The op families, as [`Op::family`] names them, in the table's order.
pub const FAMILIES: [&str; 10] = [
    "conv2d",
    "matmul",
    "pool2d",
    "elementwise",
    "bias",
    "loss",
    "optim",
    "gather",
    "batch_norm",
    "dropout",
];

/// One op family on one shape: what a [`Case`] runs.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    /// The forward pass and the three gradients.
    Conv2d(Conv2d),
    Matmul(Matmul),
    /// Max, average and ReLU + max pooling, forward and backward.
    Pool2d(Pool2d),
    /// ReLU forward and backward, and zero-filling, over `len` elements.
    Elementwise {
        len: usize,
    },
    /// Views of one packed allocation, of these lengths (a model's parameters, gradients and
    /// optimiser state live in such views).
    Packed {
        lens: [usize; 5],
    },
    /// A channel sum and a bias add.
    Bias(Channels),
    /// Softmax cross-entropy and the count of correct predictions.
    Loss(SoftmaxXent),
    /// Three optimiser steps over two tensors (`len` and `len / 3 + 1`) with gradient
    /// clipping, and the non-finite-loss record.
    Optim {
        optimizer: Optimizer,
        len: usize,
    },
    /// Gathering a batch from `items` packed images.
    Gather {
        gather: Gather,
        items: usize,
    },
    /// Augmented gathering of `rows`×`cols` images.
    GatherAffine {
        rows: usize,
        cols: usize,
    },
    /// Batch statistics, normalisation and both gradients.
    BatchNorm(BatchNorm),
    Dropout(Dropout),
}

impl Op {
    /// The op family, as the backend's files name it (conv2d, matmul, pool2d …).
    pub fn family(&self) -> &'static str {
        match self {
            Op::Conv2d(_) => "conv2d",
            Op::Matmul(_) => "matmul",
            Op::Pool2d(_) => "pool2d",
            Op::Elementwise { .. } | Op::Packed { .. } => "elementwise",
            Op::Bias(_) => "bias",
            Op::Loss(_) => "loss",
            Op::Optim { .. } => "optim",
            Op::Gather { .. } | Op::GatherAffine { .. } => "gather",
            Op::BatchNorm(_) => "batch_norm",
            Op::Dropout(_) => "dropout",
        }
    }

    /// The shape in a few words, e.g. `n2 5×8×11 → 7, 5×5 s1 p2` for a convolution.
    pub fn shape(&self) -> String {
        match self {
            Op::Conv2d(p) => format!(
                "n{} {}×{}×{} → {}, {}×{} s{} p{}",
                p.batch,
                p.in_channels,
                p.in_h,
                p.in_w,
                p.out_channels,
                p.kernel_h,
                p.kernel_w,
                p.stride,
                p.padding
            ),
            Op::Matmul(p) => {
                let t = |on: bool| if on { "ᵀ" } else { "" };
                let (a, b) = (t(p.trans_a), t(p.trans_b));
                format!("{}×{}×{} A{a}·B{b}", p.m, p.k, p.n)
            }
            Op::Pool2d(p) => format!(
                "n{} {}×{}×{}, {}×{} s{}",
                p.batch, p.channels, p.in_h, p.in_w, p.kernel, p.kernel, p.stride
            ),
            Op::Elementwise { len } => format!("len {len}"),
            Op::Packed { lens } => format!("views {lens:?}"),
            Op::Bias(c) | Op::BatchNorm(BatchNorm { shape: c, .. }) => {
                format!("{}×{}×{}", c.outer, c.channels, c.inner)
            }
            Op::Loss(p) => format!("{}×{}", p.batch, p.classes),
            Op::Optim { optimizer, len } => {
                format!("{} len {len} + {}", optimizer.name(), len / 3 + 1)
            }
            Op::Gather { gather: g, items } => {
                format!("{} of {items}×{} px at {}", g.batch, g.image_len, g.offset)
            }
            Op::GatherAffine { rows, cols } => format!("37 of 50×{rows}×{cols}"),
            Op::Dropout(d) => format!("len {} p {}", d.len, d.p),
        }
    }

    /// Runs the op on `b` with inputs drawn from `seed`, and reads every output back.
    pub fn run<B: Backend>(&self, b: &B, seed: u64) -> Result<Outputs> {
        match *self {
            Op::Conv2d(ref p) => layers::conv2d(b, p, seed),
            Op::Matmul(ref p) => layers::matmul(b, p, seed),
            Op::Pool2d(ref p) => layers::pool2d(b, p, seed),
            Op::Elementwise { len } => layers::elementwise(b, len, seed),
            Op::Packed { lens } => layers::packed(b, &lens, seed),
            Op::Bias(ref p) => layers::bias(b, p, seed),
            Op::Loss(ref p) => training::loss(b, p, seed),
            Op::Optim { optimizer, len } => training::optim(b, optimizer, len, seed),
            Op::Gather { ref gather, items } => training::gather(b, gather, items),
            Op::GatherAffine { rows, cols } => training::gather_affine(b, rows, cols, seed),
            Op::BatchNorm(ref p) => layers::batch_norm(b, p, seed),
            Op::Dropout(ref p) => layers::dropout(b, p, seed),
        }
    }
}

/// One op on one shape, its seed and tolerance.
#[derive(Clone, Copy, Debug)]
pub struct Case {
    pub op: Op,
    pub seed: u64,
    pub atol: f32,
    pub rtol: f32,
    /// A per-dimension workgroup limit below the adapter's (Some(3): at most 3 workgroups in
    /// x, y and z), so that this case's grids fold as large batches fold past 65,535.
    pub max_workgroups: Option<u32>,
    /// Slow on a software adapter: left out of `cnn-gpu check` without `--full`.
    pub large: bool,
    /// What the case is there for, when its shape does not say ("split-K", "big tiles" …).
    pub note: &'static str,
}

impl Case {
    /// [`Op::shape`], with the workgroup limit and the note.
    pub fn describe(&self) -> String {
        let mut s = self.op.shape();
        if let Some(max) = self.max_workgroups {
            s += &format!(", grid ≤ {max}");
        }
        if !self.note.is_empty() {
            s += &format!(" ({})", self.note);
        }
        s
    }

    /// The tolerance as a formula: `1e-4 + 1e-4·|ref|`, or `exact`.
    pub fn tolerance(&self) -> String {
        let (a, r) = (self.atol, self.rtol);
        if a == 0.0 && r == 0.0 {
            "exact".into()
        } else if r == 0.0 {
            format!("{a:e}")
        } else {
            format!("{a:e} + {r:e}·|ref|")
        }
    }
}

/// `len` values uniform in [lo, hi), from `seed` (ChaCha8): the inputs of every case.
pub fn rand_vec(seed: u64, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    (0..len).map(|_| r.random_range(lo..hi)).collect()
}

/// How one kernel's GPU output compares with the reference's.
#[derive(Clone, Debug)]
pub struct Comparison {
    pub kernel: String,
    /// The reference's length, and the GPU output's when it differs.
    pub len: usize,
    pub got_len: usize,
    /// The largest |gpu − ref| (infinite where either is NaN), and at which index.
    pub max_abs: f32,
    pub max_at: usize,
    /// The largest |gpu − ref| / |ref| over elements with ref ≠ 0.
    pub max_rel: f32,
    /// The largest |gpu − ref| / (atol + rtol·|ref|): the share of the tolerance used (above 1
    /// fails; infinite for an inexact value under an exact tolerance).
    pub used: f32,
    /// Elements outside the tolerance.
    pub mismatches: usize,
    /// The first few of them: (index, gpu, ref).
    pub first: Vec<(usize, f32, f32)>,
}

impl Comparison {
    /// Compares `got` with `want` element-wise: `|got − want| ≤ atol + rtol·|want|`, NaN
    /// never within it.
    pub fn new(kernel: String, got: &[f32], want: &[f32], atol: f32, rtol: f32) -> Self {
        let mut c = Comparison {
            kernel,
            len: want.len(),
            got_len: got.len(),
            max_abs: 0.0,
            max_at: 0,
            max_rel: 0.0,
            used: 0.0,
            mismatches: got.len().abs_diff(want.len()),
            first: Vec::new(),
        };
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let diff = match (g - w).abs() {
                d if d.is_nan() => f32::INFINITY,
                d => d,
            };
            let allowed = atol + rtol * w.abs();
            if diff > c.max_abs {
                (c.max_abs, c.max_at) = (diff, i);
            }
            if w != 0.0 {
                c.max_rel = c.max_rel.max(diff / w.abs());
            } else if diff > 0.0 {
                c.max_rel = f32::INFINITY;
            }
            if diff > 0.0 {
                c.used = c.used.max(diff / allowed);
            }
            if diff > allowed {
                c.mismatches += 1;
                if c.first.len() < 8 {
                    c.first.push((i, g, w));
                }
            }
        }
        c
    }

    pub fn passed(&self) -> bool {
        self.mismatches == 0
    }

    /// What failed, for a message after the kernel's name: the mismatching count, the largest difference and the first
    /// mismatching indices with both values.
    pub fn detail(&self) -> String {
        if self.got_len != self.len {
            return format!("{} values but the reference has {}", self.got_len, self.len);
        }
        let first: Vec<String> = self
            .first
            .iter()
            .map(|(i, g, w)| format!("[{i}] gpu {g} ref {w}"))
            .collect();
        format!(
            "{} of {} values outside the tolerance; max |diff| {:e} at [{}]; first: {}",
            self.mismatches,
            self.len,
            self.max_abs,
            self.max_at,
            first.join(", ")
        )
    }
}

/// One case on one GPU configuration: every kernel's comparison, or the error the GPU run
/// returned (a failure too).
#[derive(Debug)]
pub struct CaseReport {
    /// The index of the configuration in [`SelfTest::new`]'s list.
    pub config: usize,
    pub outcome: std::result::Result<Vec<Comparison>, Error>,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.outcome
            .as_ref()
            .is_ok_and(|c| c.iter().all(Comparison::passed))
    }
}

/// Runs cases on a reference backend and on the GPU backend under each of a list of
/// configurations, opening each (configuration, workgroup limit) once, when first needed.
pub struct SelfTest<'r, R: Backend> {
    reference: &'r R,
    configs: Vec<GpuOptions>,
    opened: Vec<(usize, Option<u32>, GpuBackend)>,
    corrupt: Option<String>,
}

impl<'r, R: Backend> SelfTest<'r, R> {
    /// Nothing is opened yet: see [`SelfTest::gpu`].
    pub fn new(reference: &'r R, configs: Vec<GpuOptions>) -> Self {
        SelfTest {
            reference,
            configs,
            opened: Vec::new(),
            corrupt: None,
        }
    }

    /// Test-only fault: adds 1 to the first value of `kernel`'s GPU output before it is
    /// compared, so that a mismatch can be shown on a correct GPU.
    pub fn corrupt_for_test(&mut self, kernel: &str) {
        self.corrupt = Some(kernel.to_string());
    }

    /// The GPU backend of configuration `config` with the per-dimension workgroup limit
    /// `max_workgroups` (below the configuration's own, if it has one), opened on first use:
    /// opening configuration 0 first tells whether there is an adapter at all.
    pub fn gpu(&mut self, config: usize, max_workgroups: Option<u32>) -> Result<&GpuBackend> {
        let at = self
            .opened
            .iter()
            .position(|(c, m, _)| (*c, *m) == (config, max_workgroups));
        let at = match at {
            Some(at) => at,
            None => {
                let mut options = self.configs[config].clone();
                options.max_workgroups_per_dimension =
                    match (options.max_workgroups_per_dimension, max_workgroups) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    };
                let gpu = GpuBackend::new(&options)?;
                self.opened.push((config, max_workgroups, gpu));
                self.opened.len() - 1
            }
        };
        Ok(&self.opened[at].2)
    }

    /// Runs `case` on the reference, then under every configuration: one report each. Fails
    /// only when the reference fails or a GPU backend cannot be opened; a GPU run's error (a
    /// validation error, a lost device) is its report's outcome, and its backend is closed.
    pub fn run(&mut self, case: &Case) -> Result<Vec<CaseReport>> {
        let want = case.op.run(self.reference, case.seed)?;
        let mut reports = Vec::new();
        for config in 0..self.configs.len() {
            let corrupt = self.corrupt.clone();
            let gpu = self.gpu(config, case.max_workgroups)?;
            let outcome = case.op.run(gpu, case.seed).map(|mut got| {
                for (kernel, values) in &mut got {
                    if Some(&*kernel) == corrupt.as_ref() && !values.is_empty() {
                        values[0] += 1.0;
                    }
                }
                compare(&got, &want, case)
            });
            if outcome.is_err() {
                // A device keeps reporting its first error at every read: the next case opens
                // a fresh one, so that one failing kernel does not fail every case after it.
                let key = (config, case.max_workgroups);
                self.opened.retain(|(c, m, _)| (*c, *m) != key);
            }
            reports.push(CaseReport { config, outcome });
        }
        Ok(reports)
    }
}

/// Each kernel's comparison, pairing outputs by position (both runs name them alike).
fn compare(got: &Outputs, want: &Outputs, case: &Case) -> Vec<Comparison> {
    want.iter()
        .zip(got)
        .map(|((kernel, w), (_, g))| Comparison::new(kernel.clone(), g, w, case.atol, case.rtol))
        .collect()
}
