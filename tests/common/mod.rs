//! Helpers shared by the op tests: tolerance comparison, seeded random data, finite-difference
//! gradient checks through the [`Backend`] trait, and [`backend_test!`], which turns one generic
//! test body into a CPU and a GPU test.
#![allow(dead_code)]

use std::process::{Command, Output};

use cnn_gpu::backend::cpu::CpuBackend;
use cnn_gpu::backend::gpu::{GpuBackend, GpuOptions, RuntimeChecks};
use cnn_gpu::backend::Backend;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

/// `mod $name { cpu(), gpu() }`: runs the generic `fn $body<B: Backend>(b: &B)` once per backend.
#[macro_export]
macro_rules! backend_test {
    ($name:ident, $body:ident) => {
        mod $name {
            #[test]
            fn cpu() {
                super::$body(&super::common::cpu())
            }
            #[test]
            fn gpu() {
                super::common::with_gpu(|b| super::$body(b))
            }
        }
    };
}

/// The CPU backend on two threads, so the multi-threaded paths run even where one core would
/// be found.
pub fn cpu() -> CpuBackend {
    CpuBackend::new(Some(2)).expect("CPU backend")
}

/// Runs `f` on the GPU backend, built with naga's runtime checks on (the checked build the
/// kernels' indexing is proven with). Without an adapter it prints a notice and returns, unless
/// `CNN_GPU_REQUIRE_GPU=1` (as CI sets it), where a missing adapter fails the test.
pub fn with_gpu(f: impl FnOnce(&GpuBackend)) {
    let options = GpuOptions {
        runtime_checks: RuntimeChecks::On,
        ..GpuOptions::default()
    };
    with_gpu_options(options, f)
}

/// [`with_gpu`] with other options (the adapter still comes from `CNN_GPU_ADAPTER`).
pub fn with_gpu_options(mut options: GpuOptions, f: impl FnOnce(&GpuBackend)) {
    options.adapter = std::env::var("CNN_GPU_ADAPTER").ok();
    match GpuBackend::new(&options) {
        Ok(gpu) => f(&gpu),
        Err(e) => gpu_unavailable(e),
    }
}

/// The GPU options of a test: `runtime_checks`, on the adapter `CNN_GPU_ADAPTER` names.
pub fn gpu_options(runtime_checks: RuntimeChecks) -> GpuOptions {
    GpuOptions {
        adapter: std::env::var("CNN_GPU_ADAPTER").ok(),
        runtime_checks,
        ..GpuOptions::default()
    }
}

/// What a test does when the GPU backend cannot be opened: prints a notice (the test then
/// returns), or fails under `CNN_GPU_REQUIRE_GPU=1`, as CI sets it.
#[track_caller]
pub fn gpu_unavailable(e: cnn_gpu::Error) {
    if std::env::var("CNN_GPU_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        panic!("CNN_GPU_REQUIRE_GPU=1 but the GPU backend could not be opened: {e}")
    }
    eprintln!("skipped: no GPU backend ({e}); set CNN_GPU_REQUIRE_GPU=1 to fail instead")
}

/// Checks `|got − want| ≤ atol + rtol·|want|` element-wise; on failure panics with the largest
/// difference and the first few mismatching indices with their values.
#[track_caller]
pub fn assert_close(got: &[f32], want: &[f32], atol: f32, rtol: f32, what: &str) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} but expected {}",
        got.len(),
        want.len()
    );
    let mut max_diff = 0.0f32;
    let mut max_at = 0;
    let mut bad = Vec::new();
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let diff = (g - w).abs();
        // NaN anywhere counts as a mismatch.
        if diff.is_nan() || diff > atol + rtol * w.abs() {
            bad.push(i);
        }
        if diff > max_diff || diff.is_nan() {
            max_diff = diff;
            max_at = i;
        }
    }
    if !bad.is_empty() {
        let shown: Vec<String> = bad
            .iter()
            .take(8)
            .map(|&i| format!("[{i}] got {} want {}", got[i], want[i]))
            .collect();
        panic!(
            "{what}: {} of {} elements differ by more than {atol} + {rtol}·|want|; max |diff| {max_diff} \
             at [{max_at}]; first: {}",
            bad.len(),
            got.len(),
            shown.join(", ")
        );
    }
}

pub fn rng(seed: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(seed)
}

/// `len` values uniform in [lo, hi), from `seed` (the self-test's inputs, drawn alike).
pub fn rand_vec(seed: u64, len: usize, lo: f32, hi: f32) -> Vec<f32> {
    cnn_gpu::selftest::rand_vec(seed, len, lo, hi)
}

/// `len` distinct values spaced `gap` apart, shuffled, centred on zero: no ties, and no two
/// values closer than `gap` (so a perturbation smaller than gap/2 never changes an arg-max).
pub fn distinct_vec(seed: u64, len: usize, gap: f32) -> Vec<f32> {
    let mut v: Vec<f32> = (0..len)
        .map(|i| (i as f32 - len as f32 / 2.0) * gap)
        .collect();
    v.shuffle(&mut rng(seed));
    v
}

/// Σ r·v in f64.
pub fn dot(r: &[f32], v: &[f32]) -> f64 {
    assert_eq!(r.len(), v.len());
    r.iter().zip(v).map(|(&a, &b)| a as f64 * b as f64).sum()
}

/// Up to `max` indices of 0..len, spread by a seeded shuffle (all of them when len ≤ max), sorted.
pub fn sample_indices(seed: u64, len: usize, max: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..len).collect();
    if len > max {
        all.shuffle(&mut rng(seed));
        all.truncate(max);
        all.sort_unstable();
    }
    all
}

/// Compares `analytic`, the gradient of `loss` at `at`, with central differences
/// `(loss(at + eps·e_i) − loss(at − eps·e_i)) / 2eps` at up to 48 indices (all of them for small
/// tensors). `loss` runs the forward op through a backend and reduces on the host in f64.
/// Indices that are not sampled take the analytic value, so a failure names true indices.
#[track_caller]
pub fn check_gradient(
    what: &str,
    at: &[f32],
    analytic: &[f32],
    eps: f32,
    atol: f32,
    rtol: f32,
    mut loss: impl FnMut(&[f32]) -> f64,
) {
    assert_eq!(at.len(), analytic.len(), "{what}: gradient length");
    let mut numeric = analytic.to_vec();
    let mut v = at.to_vec();
    for i in sample_indices(at.len() as u64, at.len(), 48) {
        v[i] = at[i] + eps;
        let plus = loss(&v);
        v[i] = at[i] - eps;
        let minus = loss(&v);
        v[i] = at[i];
        // The step actually taken in f32, not the nominal 2·eps.
        let step = (at[i] + eps) as f64 - (at[i] - eps) as f64;
        numeric[i] = ((plus - minus) / step) as f32;
    }
    assert_close(
        analytic,
        &numeric,
        atol,
        rtol,
        &format!("{what} vs finite differences"),
    );
}

/// Asserts that an op's result is `Err(Error::Shape { .. })`.
#[track_caller]
pub fn assert_shape_error(result: cnn_gpu::Result<()>, what: &str) {
    match result {
        Err(cnn_gpu::Error::Shape { .. }) => {}
        other => panic!("{what}: expected Err(Error::Shape), got {other:?}"),
    }
}

pub fn upload<B: Backend>(b: &B, data: &[f32], label: &str) -> B::Buffer {
    b.upload_f32(data, label).expect("upload")
}

pub fn upload_u32<B: Backend>(b: &B, data: &[u32], label: &str) -> B::Buffer {
    b.upload_u32(data, label).expect("upload")
}

pub fn zeros<B: Backend>(b: &B, len: usize, label: &str) -> B::Buffer {
    b.zeros(len, label).expect("zeros")
}

pub fn read<B: Backend>(b: &B, buf: &B::Buffer) -> Vec<f32> {
    b.read_f32(buf).expect("read back")
}

// ---- the binary ----------------------------------------------------------------------------

/// Runs the `cnn-gpu` binary as a user would, away from any developer's MNIST and the network.
pub fn cnn_gpu(args: &[&str]) -> Output {
    cnn_gpu_command(args).output().expect("run cnn-gpu")
}

/// The binary with `args`, in the tests' environment (see [`test_env`]).
pub fn cnn_gpu_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cnn-gpu"));
    test_env(&mut cmd);
    cmd.args(args);
    cmd
}

/// The environment every run of the binary gets.
pub fn test_env(cmd: &mut Command) {
    // Keep the tests independent of where a developer keeps MNIST.
    cmd.env_remove("CNN_GPU_DATA_DIR")
        // Only the tests that ask for a test-only fault get one.
        .env_remove("CNN_GPU_FAULT")
        // Missing data is downloaded: any test that gets that far must not reach the internet.
        .env("CNN_GPU_MNIST_MIRROR", "http://127.0.0.1:9/");
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Exit code 2, nothing on stdout, and exactly one `error: …` line that mentions `what`.
#[track_caller]
pub fn assert_refused(args: &[&str], what: &str) {
    let out = cnn_gpu(args);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{args:?}: one error line in {err:?}");
    assert!(
        errors[0].contains(what),
        "{args:?}: {:?} should mention {what:?}",
        errors[0]
    );
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(
        stdout(&out).is_empty(),
        "{args:?}: no work before the refusal"
    );
}
