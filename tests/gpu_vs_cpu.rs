//! Every GPU kernel against the CPU reference on random inputs and asymmetric shapes: the
//! cases of [`cnn_gpu::selftest`] (the table `cnn-gpu check` runs; its docs list what the
//! shapes cover), one test per op family, each case on the GPU built with naga's runtime checks
//! and without them (as real GPUs run it), every output within atol + rtol·|ref|.

mod common;

use cnn_gpu::backend::gpu::{GemmVariant, GpuOptions, RuntimeChecks};
use cnn_gpu::selftest::{cases, Case, SelfTest, FAMILIES};
use common::{cpu, gpu_options, gpu_unavailable};

/// The builds every case runs on, in [`cnn_gpu::selftest::CaseReport::config`]'s order: each
/// GEMM core of [`GemmVariant::ALL`], checked and unchecked.
fn builds() -> Vec<(String, RuntimeChecks, GemmVariant)> {
    let mut all = Vec::new();
    for &gemm in GemmVariant::ALL {
        for (name, checks) in [
            ("checked", RuntimeChecks::On),
            ("unchecked", RuntimeChecks::Off),
        ] {
            all.push((format!("{gemm} {name}"), checks, gemm));
        }
    }
    all
}

/// Runs the cases `pick` selects (at least one) on both builds; fails naming every kernel
/// that does not match, with its largest difference and first mismatches.
fn all_match(pick: impl Fn(&Case) -> bool) {
    let picked: Vec<Case> = cases().into_iter().filter(|c| pick(c)).collect();
    assert!(!picked.is_empty(), "no case picked");
    let reference = cpu();
    // The GEMM cores matter to matmul and the convolutions only.
    let gemm = picked
        .iter()
        .any(|c| matches!(c.op.family(), "conv2d" | "matmul"));
    let builds: Vec<_> = builds()
        .into_iter()
        .filter(|b| gemm || b.2 == GemmVariant::default())
        .collect();
    let configs = builds
        .iter()
        .map(|(_, checks, gemm)| GpuOptions {
            gemm: Some(*gemm),
            ..gpu_options(*checks)
        })
        .collect();
    let mut test = SelfTest::new(&reference, configs);
    if let Err(e) = test.gpu(0, None) {
        return gpu_unavailable(e);
    }
    let mut failures = Vec::new();
    for case in &picked {
        let what = format!("{} {}", case.op.family(), case.describe());
        for report in test
            .run(case)
            .expect("the reference runs and the GPU opens")
        {
            let build = &builds[report.config].0;
            match &report.outcome {
                Err(e) => failures.push(format!("{what} ({build}): {e}")),
                Ok(kernels) => failures.extend(
                    kernels
                        .iter()
                        .filter(|k| !k.passed())
                        .map(|k| format!("{what} ({build}): {} {}", k.kernel, k.detail())),
                ),
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// The unfolded cases of `family`.
fn family(name: &'static str) -> impl Fn(&Case) -> bool {
    move |c| c.op.family() == name && c.max_workgroups.is_none()
}

/// Each of the [`FAMILIES`] has its test below.
#[test]
fn every_family_has_a_test() {
    assert_eq!(
        FAMILIES.len(),
        10,
        "a family was added: give it a test here"
    );
}

#[test]
fn conv2d_gpu_matches_cpu() {
    all_match(family("conv2d"))
}

#[test]
fn matmul_gpu_matches_cpu() {
    all_match(|c| family("matmul")(c) && !c.large)
}

/// The products on 128×128 tiles, 8×8 outputs a thread.
#[test]
fn big_tile_matmul_gpu_matches_cpu() {
    all_match(|c| family("matmul")(c) && c.large)
}

#[test]
fn pool_gpu_matches_cpu() {
    all_match(family("pool2d"))
}

#[test]
fn elementwise_gpu_matches_cpu() {
    all_match(family("elementwise"))
}

#[test]
fn bias_gpu_matches_cpu() {
    all_match(family("bias"))
}

#[test]
fn loss_gpu_matches_cpu() {
    all_match(family("loss"))
}

#[test]
fn optimizers_gpu_match_cpu() {
    all_match(family("optim"))
}

#[test]
fn gather_gpu_matches_cpu() {
    all_match(family("gather"))
}

#[test]
fn batch_norm_gpu_matches_cpu() {
    all_match(family("batch_norm"))
}

/// Both backends draw the same mask: equal outputs.
#[test]
fn dropout_gpu_matches_cpu() {
    all_match(family("dropout"))
}

/// Every family's grids folded under a lowered per-dimension workgroup limit.
#[test]
fn grids_past_the_dispatch_limit_gpu_match_cpu() {
    all_match(|c| c.max_workgroups.is_some())
}

/// Every GEMM core has a name that `--gemm` and `$CNN_GPU_GEMM` take back, the default first.
#[test]
fn gemm_variants_are_named() {
    assert_eq!(GemmVariant::ALL[0], GemmVariant::default());
    for &v in GemmVariant::ALL {
        assert_eq!(GemmVariant::parse(v.name()), Some(v));
        assert_eq!(v.to_string(), v.name());
    }
    assert_eq!(GemmVariant::parse("nope"), None);
}
