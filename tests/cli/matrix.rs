//! The fault matrix: SIGINT, SIGTERM, SIGHUP and SIGKILL, each at random moments of a short
//! run (saving every 3 steps) on each backend. Whatever was left — a checkpoint saved on the
//! way out, the last periodic one after a SIGKILL, or none — the run resumed from it (or
//! started again) ends with exactly the weights and momentum of a run never stopped, and no
//! temporary file remains. The moments are drawn from a seed it prints
//! (`CNN_GPU_MATRIX_SEED=N` repeats a draw; `CNN_GPU_MATRIX_MOMENTS=N` sets the moments per
//! signal, 3 by default).

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use rand::{Rng, SeedableRng};

use crate::common::{cnn_gpu, cnn_gpu_command, stderr};
use crate::{mnist_like_dir, no_adapter, strs};

use cnn_gpu::checkpoint::{self, Checkpoint};
use cnn_gpu::model::ModelSpec;

/// 96 images in batches of 16: 6 steps an epoch, 2 epochs.
const STEPS: usize = 12;

fn args(backend: &str, d: &str, save: &Path, extra: &[&str]) -> Vec<String> {
    let save = save.to_str().unwrap();
    let run = [
        "train",
        "--backend",
        backend,
        "--data-dir",
        d,
        "--batch-size",
        "16",
        "--log-interval",
        "2",
        "--epochs",
        "2",
        "--seed",
        "3",
        "--save",
        save,
        "--save-every-steps",
        "3",
    ];
    run.iter().chain(extra).map(|s| s.to_string()).collect()
}

fn load(path: &Path) -> Checkpoint {
    checkpoint::load(path, &ModelSpec::simple_cnn()).unwrap()
}

/// How one interrupted run ended, and what finished it.
#[derive(Debug)]
struct Case {
    backend: &'static str,
    signal: &'static str,
    delay_ms: u64,
    code: Option<i32>,
    /// The step of the checkpoint left (None: none).
    left_at: Option<usize>,
}

#[test]
fn every_stop_at_random_moments_resumes_to_the_weights_of_an_uninterrupted_run() {
    let seed: u64 = std::env::var("CNN_GPU_MATRIX_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    let moments: usize = std::env::var("CNN_GPU_MATRIX_MOMENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3);
    eprintln!("fault matrix: CNN_GPU_MATRIX_SEED={seed}, {moments} moments per signal");
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let dir = mnist_like_dir(96, 20);
    let d = dir.path().to_str().unwrap();
    let signals = [
        ("SIGINT", libc::SIGINT),
        ("SIGTERM", libc::SIGTERM),
        ("SIGHUP", libc::SIGHUP),
        ("SIGKILL", libc::SIGKILL),
    ];
    let mut cases = Vec::new();
    for backend in ["cpu", "gpu"] {
        let whole = dir.path().join(format!("{backend}-whole.safetensors"));
        let out = cnn_gpu(&strs(&args(backend, d, &whole, &["--save-optimizer"])));
        if no_adapter(&out) {
            continue;
        }
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let whole = load(&whole);
        // How long a run slowed as the interrupted ones are goes on after its first loss line
        // (signal 0 only checks that the process is there).
        let scratch = dir.path().join(format!("{backend}-timed.safetensors"));
        let (code, span) = interrupt(&args(backend, d, &scratch, &[]), 0, 0);
        assert_eq!(code, Some(0));
        std::fs::remove_file(&scratch).unwrap();
        let span_ms = span.as_millis() as u64;
        eprintln!("{backend}: {span_ms} ms from the first loss line to the end");
        for &(signal, sig) in &signals {
            for _ in 0..moments {
                // The moments cover the rest of training, the final save and evaluation, and
                // a little after.
                let delay_ms = rng.random_range(0..span_ms + span_ms / 10 + 1);
                let ckpt = dir.path().join(format!("{backend}-run.safetensors"));
                let _ = std::fs::remove_file(&ckpt);
                let (code, _) = interrupt(&args(backend, d, &ckpt, &[]), sig, delay_ms);
                let expected = match sig {
                    libc::SIGKILL => None,
                    s => Some(128 + s),
                };
                assert!(
                    code == Some(0) || code == expected,
                    "{backend} {signal} after {delay_ms} ms: exit {code:?}"
                );
                let left_at = ckpt
                    .exists()
                    .then(|| load(&ckpt).train_state().unwrap().step);
                match left_at {
                    Some(STEPS) => {}
                    Some(_) => {
                        let resume = ["--resume", ckpt.to_str().unwrap(), "--save-optimizer"];
                        let out = cnn_gpu(&strs(&args(backend, d, &ckpt, &resume)));
                        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
                    }
                    None => {
                        let out = cnn_gpu(&strs(&args(backend, d, &ckpt, &["--save-optimizer"])));
                        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
                    }
                }
                let done = load(&ckpt);
                let case = Case {
                    backend,
                    signal,
                    delay_ms,
                    code,
                    left_at,
                };
                assert_eq!(done.params, whole.params, "{case:?}: the weights");
                if left_at != Some(STEPS) {
                    // A run that ended normally saved the momentum only with --save-optimizer.
                    assert_eq!(done.velocity, whole.velocity, "{case:?}: the momentum");
                }
                assert_eq!(
                    done.train_state().unwrap().step,
                    STEPS,
                    "{case:?}: complete"
                );
                let left: Vec<String> = std::fs::read_dir(dir.path())
                    .unwrap()
                    .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .filter(|n| n.ends_with(".partial"))
                    .collect();
                assert!(left.is_empty(), "{case:?}: temporary files {left:?}");
                cases.push(case);
            }
        }
    }
    for c in &cases {
        eprintln!(
            "  {:<3} {:<7} at {:>3} ms: exit {:<4} left {}",
            c.backend,
            c.signal,
            c.delay_ms,
            c.code.map_or("kill".into(), |c| c.to_string()),
            c.left_at
                .map_or("no checkpoint".into(), |s| format!("step {s}"))
        );
    }
    eprintln!("fault matrix: {} cases, every one exact", cases.len());
    assert!(cases.len() >= 4 * moments, "the CPU half at least ran");
}

/// Runs the binary with `args`, slowed to at least 40 ms a step, and sends it `sig` `delay_ms`
/// after it prints its first loss line, after step 2 (counting from there leaves out the GPU's
/// first step, which takes seconds on lavapipe to build the pipelines); returns its exit code
/// (None: killed by a signal) and how long it ran after that line.
fn interrupt(args: &[String], sig: libc::c_int, delay_ms: u64) -> (Option<i32>, Duration) {
    let mut child = cnn_gpu_command(&strs(args))
        .env("CNN_GPU_FAULT", "slow:40")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cnn-gpu");
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut err = child.stderr.take().unwrap();
    let drain_err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut line = String::new();
    loop {
        line.clear();
        if out.read_line(&mut line).unwrap() == 0 {
            panic!(
                "cnn-gpu ended before a loss line: {}",
                drain_err.join().unwrap()
            );
        }
        if line.starts_with("[Epoch 1, Batch 2] loss: ") {
            break;
        }
    }
    let marked = std::time::Instant::now();
    let drain_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    std::thread::sleep(Duration::from_millis(delay_ms));
    // SAFETY: kill(2) on our own child, not yet waited for (so the pid is still ours); it may
    // have exited already, which kill reports and we ignore.
    unsafe { libc::kill(child.id() as libc::pid_t, sig) };
    let status = child.wait().unwrap();
    let span = marked.elapsed();
    drain_out.join().unwrap();
    drain_err.join().unwrap();
    (status.code(), span)
}
