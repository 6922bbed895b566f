//! Training throughput of SimpleCNN: whole steps (gather, forward, loss, backward, SGD) through
//! `cnn_gpu::train::fit`, the loop `cnn-gpu train` runs, on a synthetic dataset uploaded once
//! (no MNIST needed), on the CPU backend and on the GPU backend (skipped with a line when no
//! adapter opens).
//!
//! ```text
//! cargo bench --bench step                 # every backend and batch size
//! cargo bench --bench step -- gpu b1024    # filters: every one must occur in the case's name
//! CNN_GPU_BENCH_SIZES=small|full cargo bench --bench step
//! ```
//!
//! Full sizes are batch 64, 256 and 1024, each run for about [`TARGET_S`] seconds of steady
//! state (at least [`MIN_STEPS`] steps); small sizes (the default on a software adapter such as
//! lavapipe, where one batch-64 step takes seconds) are batch 64 only, for [`SMALL_STEPS`] steps.
//! Unset, `CNN_GPU_BENCH_SIZES` means full on the CPU backend and on real GPUs.
//!
//! A full-size case first runs a probe of [`PROBE_STEPS`] steps on a fresh model: its first step
//! (waited for) is the start-up figure — shader and pipeline builds, uniforms, bind groups,
//! first-touch allocation; pipelines are cached per backend, so a later batch size reuses what
//! an earlier one built and its new shapes add their own. The probe's steady rate sizes the
//! measured run: a second `fit` on another fresh model over a dataset of up to
//! [`MAX_DATASET`] images (more epochs when more images are wanted), whose steady images/s
//! (every step but its first, which is printed as the warm first step) is the throughput. As in
//! training, each epoch writes a new permutation and reads the loss once at its end.
//!
//! The GPU part runs once per GEMM core (`GemmVariant::ALL`, or only the one `CNN_GPU_GEMM`
//! names); each section's header names its core (`, gemm vec4` past the default).
//!
//! On the GPU each batch size also prints a `plan gpu` line: the dispatches of one step and the
//! host's time to record and submit it (CPU time, the GPU not waited for; see
//! `cnn_gpu::profile::plan_step`).

mod common;

use std::time::Instant;

use cnn_gpu::backend::cpu::CpuBackend;
use cnn_gpu::backend::Backend;
use cnn_gpu::data::Dataset;
use cnn_gpu::model::{Model, ModelSpec};
use cnn_gpu::profile::{gemm_flops_per_image, plan_step};
use cnn_gpu::train::{fit, FitOptions, ResidentDataset, TrainConfig};
use cnn_gpu::Result;
use common::{fmt_time, Filter, Sizes};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Seconds of steady state each full-size case aims at.
const TARGET_S: f64 = 2.0;
/// Steady steps of a full-size case at least.
const MIN_STEPS: usize = 3;
/// Steps of the probe that measures start-up and sizes the run.
const PROBE_STEPS: usize = 3;
/// Images in the largest synthetic dataset (a multiple of every batch size: no partial batch).
const MAX_DATASET: usize = 16384;
/// Steps of a small-size case (the first is start-up; the rest are timed).
const SMALL_STEPS: usize = 3;
const CLASSES: usize = 10;
/// Steps whose host-side recording and submit `plan gpu` times.
const HOST_STEPS: usize = 5;

/// `len` random 28×28 images and labels.
fn synthetic(len: usize) -> Result<Dataset> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut images = vec![0u8; len * 28 * 28];
    rng.fill(&mut images[..]);
    let labels = (0..len)
        .map(|_| rng.random_range(0..CLASSES as u8))
        .collect();
    Dataset::new(images, labels, 28, 28)
}

struct Case {
    batch: usize,
    /// Size the measured run from a probe (full sizes), or run [`SMALL_STEPS`] steps (small).
    probe: bool,
}

/// Runs `fit` for `epochs` epochs over `data` on a fresh model.
fn fit_epochs<B: Backend>(
    b: &B,
    data: &ResidentDataset<B>,
    batch: usize,
    epochs: usize,
) -> Result<cnn_gpu::train::FitSummary> {
    let cfg = TrainConfig {
        epochs,
        batch_size: batch,
        // No loss readback inside an epoch; fit still reads once per epoch to time it.
        log_interval: usize::MAX,
        ..TrainConfig::default()
    };
    let mut model = Model::new(b, ModelSpec::simple_cnn(), cfg.seed)?;
    fit(b, &mut model, data, &cfg, FitOptions::quiet())
}

fn run_backend<B: Backend>(
    b: &B,
    tag: &str,
    cases: &[Case],
    filter: &Filter,
    note: &str,
    flops: f64,
) -> Result<usize> {
    let name = b.describe();
    println!("== {name} [{tag}]: sizes {note}");
    let mut ran = 0;
    for case in cases {
        let label = format!("step {tag} b{}", case.batch);
        if !filter.matches(&format!("{label} {name}")) {
            continue;
        }
        let upload = |images| ResidentDataset::upload(b, &synthetic(images)?, CLASSES, "synthetic");
        let (first, images, epochs) = if case.probe {
            let probe = fit_epochs(b, &upload(PROBE_STEPS * case.batch)?, case.batch, 1)?;
            let rate = probe.steady_images_per_sec.max(1.0);
            let steps = ((TARGET_S * rate / case.batch as f64).ceil() as usize).max(MIN_STEPS);
            // One epoch of steps + 1 (the first step is not timed) when that fits, else
            // several epochs of the largest dataset.
            let images = (steps + 1) * case.batch;
            if images <= MAX_DATASET {
                (probe.first_step_seconds, images, 1)
            } else {
                let epochs = images.div_ceil(MAX_DATASET).min(10_000);
                (probe.first_step_seconds, MAX_DATASET, epochs)
            }
        } else {
            (f64::NAN, SMALL_STEPS * case.batch, 1)
        };
        let steps_per_epoch = images / case.batch;
        let run = fit_epochs(b, &upload(images)?, case.batch, epochs)?;
        let first = if first.is_nan() {
            run.first_step_seconds
        } else {
            first
        };
        let steady_steps = epochs * steps_per_epoch - 1;
        let rate = run.steady_images_per_sec;
        let secs = run.epochs.iter().map(|e| e.seconds).sum::<f64>() - run.first_step_seconds;
        println!(
            "{label:<16} {:>9.0} images/s  {:>8.2} GFLOP/s  {:>10}/step  start-up (first step) \
             {:>10}  [{steady_steps} steps in {:.2} s, warm first step {}]  {name}",
            rate,
            rate * flops / 1e9,
            fmt_time(case.batch as f64 / rate),
            fmt_time(first),
            secs,
            fmt_time(run.first_step_seconds),
        );
        ran += 1;
    }
    Ok(ran)
}

fn cases(sizes: Sizes) -> Vec<Case> {
    match sizes {
        Sizes::Full => [64, 256, 1024]
            .into_iter()
            .map(|batch| Case { batch, probe: true })
            .collect(),
        Sizes::Small => vec![Case {
            batch: 64,
            probe: false,
        }],
    }
}

fn main() -> Result<()> {
    let t0 = Instant::now();
    let filter = Filter::from_args();
    let forced = common::sizes_from_env();
    let flops = gemm_flops_per_image(&ModelSpec::simple_cnn())?;
    println!(
        "step bench: SimpleCNN ({:.1} MFLOP per training image), synthetic resident data, \
         filter {}, {}={}, {}",
        flops / 1e6,
        filter.describe(),
        common::SIZES_VAR,
        forced.map_or("unset".to_string(), |s| format!("{s:?}").to_lowercase()),
        common::load()
    );
    let mut total = 0;

    let cpu = CpuBackend::new(None)?;
    let sizes = forced.unwrap_or(Sizes::Full);
    total += run_backend(
        &cpu,
        "cpu",
        &cases(sizes),
        &filter,
        &format!("{sizes:?}"),
        flops,
    )?;
    drop(cpu);

    // Once per GEMM core (the section header names it: ", gemm vec4").
    for gemm in common::gemm_variants()? {
        let Some(gpu) = common::open_gpu_with(Some(gemm)) else {
            break;
        };
        let software = common::is_software(&gpu);
        let sizes = forced.unwrap_or(if software { Sizes::Small } else { Sizes::Full });
        let note = if software {
            format!("{sizes:?} (software adapter: CPU times, not GPU figures)")
        } else {
            format!("{sizes:?}")
        };
        total += run_backend(&gpu, "gpu", &cases(sizes), &filter, &note, flops)?;
        for case in cases(sizes) {
            let label = format!("plan gpu b{}", case.batch);
            if !filter.matches(&format!("{label} {}", gpu.describe())) {
                continue;
            }
            let plan = plan_step(&gpu, ModelSpec::simple_cnn(), case.batch, 0, HOST_STEPS)?;
            println!(
                "{label:<16} {:>4} dispatches/step  host record + submit {:>8.0} µs/step \
                 (CPU side, median of {HOST_STEPS})",
                plan.dispatches.len(),
                plan.record_submit * 1e6
            );
        }
    }

    println!(
        "step bench: {total} cases in {:.1} s ({})",
        t0.elapsed().as_secs_f64(),
        common::load()
    );
    Ok(())
}
