//! The `cnn-gpu` binary as a user runs it, one test target in topical modules:
//! - `check`: `cnn-gpu check`, the GPU self-test: passing, a corrupted kernel, no adapter;
//! - `messages`: refusals (exit 2, one line naming the flag or file, before any work) and `info`;
//! - `train`: short training runs (the same loss lines on both backends), saving, `eval`,
//!   `--init`, other models, and divergence;
//! - `resume`: `--resume` reproducing an uninterrupted run (SGD, Adam, batch norm + dropout);
//! - `faults`: Ctrl-C, a panic and a lost GPU device, through the test-only faults;
//! - `stops`: SIGTERM and SIGHUP, a stop in the evaluation, the periodic checkpoints, the time
//!   limit and a metrics file that cannot be written;
//! - `matrix`: the fault matrix, every stopping signal and SIGKILL at random moments, on both
//!   backends.
//!
//! This file holds the helpers the modules share: MNIST-like data, loss-line parsing, running
//! the binary.

#[path = "../common/mod.rs"]
mod common;

mod check;
mod faults;
mod matrix;
mod messages;
mod resume;
mod stops;
mod train;

use std::path::Path;
use std::process::{Command, Output};

use common::{cnn_gpu, stderr, stdout};

use cnn_gpu::data::{
    write_idx_images, write_idx_labels, Compression, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES,
    TRAIN_LABELS,
};

/// [`mnist_like_dir`] and the path of a checkpoint in it, `run.safetensors`.
fn data_and_checkpoint(train: usize, test: usize) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = mnist_like_dir(train, test);
    let ckpt = dir.path().join("run.safetensors");
    (dir, ckpt)
}

/// A temporary directory holding [`write_mnist_like`]'s files.
fn mnist_like_dir(train: usize, test: usize) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_mnist_like(dir.path(), train, test);
    dir
}

/// 28×28 MNIST-format files: class c has a bright bar at row 2c + 2.
fn write_mnist_like(dir: &Path, train: usize, test: usize) {
    let make = |n: usize, salt: usize| {
        let mut images = vec![0u8; n * 784];
        let labels: Vec<u8> = (0..n).map(|i| ((i * 3 + salt) % 10) as u8).collect();
        for (i, &c) in labels.iter().enumerate() {
            let img = &mut images[i * 784..(i + 1) * 784];
            for (q, px) in img.iter_mut().enumerate() {
                *px = ((q * 13 + i * 7 + salt) % 50) as u8;
            }
            for col in 4..24 {
                img[(2 * c as usize + 2) * 28 + col] = 250;
            }
        }
        (images, labels)
    };
    let (images, labels) = make(train, 0);
    write_idx_images(&dir.join(TRAIN_IMAGES), 28, 28, &images, Compression::Raw).unwrap();
    write_idx_labels(&dir.join(TRAIN_LABELS), &labels, Compression::Raw).unwrap();
    let (images, labels) = make(test, 1);
    write_idx_images(
        &dir.join(format!("{TEST_IMAGES}.gz")),
        28,
        28,
        &images,
        Compression::Gzip,
    )
    .unwrap();
    write_idx_labels(
        &dir.join(format!("{TEST_LABELS}.gz")),
        &labels,
        Compression::Gzip,
    )
    .unwrap();
}

/// Whether a `--backend gpu` run found no adapter (the GPU half of a test is then skipped,
/// which CNN_GPU_REQUIRE_GPU=1 turns into a failure).
#[track_caller]
fn no_adapter(out: &Output) -> bool {
    if out.status.code() == Some(2) && stderr(out).contains("no GPU adapter") {
        assert!(
            std::env::var("CNN_GPU_REQUIRE_GPU").map_or(true, |v| v != "1"),
            "CNN_GPU_REQUIRE_GPU=1 but: {}",
            stderr(out)
        );
        eprintln!("skipped the GPU part: {}", stderr(out));
        return true;
    }
    false
}

/// The `[Epoch E, Batch B] loss: X` lines, parsed.
fn loss_lines(text: &str) -> Vec<(String, f32)> {
    text.lines()
        .filter_map(|l| {
            let (head, loss) = l.split_once("] loss: ")?;
            Some((
                head.trim_start_matches('[').to_string(),
                loss.trim().parse().ok()?,
            ))
        })
        .collect()
}

/// The tensor names in a safetensors file's header (8-byte LE length, then JSON).
fn tensor_names(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let json: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    json.as_object()
        .unwrap()
        .keys()
        .filter(|k| *k != "__metadata__")
        .cloned()
        .collect()
}

/// `train` on the CPU from `data_dir` at batch size 16, logging every 2 batches.
fn cpu_train_16(data_dir: &str) -> [&str; 9] {
    [
        "train",
        "--backend",
        "cpu",
        "--data-dir",
        data_dir,
        "--batch-size",
        "16",
        "--log-interval",
        "2",
    ]
}

/// Runs `cmd` with the test-only fault `fault` (see src/cli/fault.rs), waits until it prints
/// `marker` on stderr, sends it SIGINT once per entry of `pauses` (sleeping that long after
/// each, so two signals are not merged into one), and returns its output.
fn interrupt_at(cmd: Command, fault: &str, marker: &str, pauses: &[u64]) -> Output {
    signal_at(cmd, fault, marker, libc::SIGINT, pauses)
}

/// [`interrupt_at`] with the signal `sig`.
fn signal_at(
    mut cmd: Command,
    fault: &str,
    marker: &str,
    sig: libc::c_int,
    pauses: &[u64],
) -> Output {
    use std::io::{BufRead, BufReader, Read};
    use std::process::Stdio;
    let mut child = cmd
        .env("CNN_GPU_FAULT", fault)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run cnn-gpu");
    let mut err = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            panic!("cnn-gpu ended before {marker:?}: {seen}");
        }
        seen.push_str(&line);
        if line.contains(marker) {
            break;
        }
    }
    for &ms in pauses {
        let pid = child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child, which has not been waited for (so the pid is ours).
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
    err.read_to_string(&mut seen).unwrap();
    let mut out = child.wait_with_output().unwrap();
    out.stderr = seen.into_bytes();
    out
}

fn strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The one `error: …` line of `out`.
#[track_caller]
fn error_line(out: &Output) -> String {
    let err = stderr(out);
    let lines: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(lines.len(), 1, "one error line in {err:?}");
    assert!(!err.contains("panicked"), "{err}");
    lines[0].to_string()
}

/// Runs `cnn-gpu args` on the CPU backend with batch size 16 and `--data-dir dir`, requires
/// success and returns its stdout.
fn run_cpu_ok(dir: &str, args: &[&str]) -> String {
    let mut all = vec![args[0], "--backend", "cpu", "--data-dir", dir];
    if args[0] == "train" {
        all.extend(["--batch-size", "16"]);
    }
    all.extend(&args[1..]);
    let out = cnn_gpu(&all);
    assert_eq!(out.status.code(), Some(0), "{all:?}: {}", stderr(&out));
    stdout(&out)
}

/// Trains `model` on a small MNIST-like set through the CLI (CPU, batch 16, `extra` flags),
/// saving a checkpoint, then evaluates it with `eval` and no `--model` (the model comes from
/// the checkpoint's metadata). Returns the directory, the checkpoint and `train`'s stdout.
fn train_then_eval(model: &str, extra: &[&str]) -> (tempfile::TempDir, std::path::PathBuf, String) {
    let dir = mnist_like_dir(48, 20);
    let d = dir.path().to_str().unwrap().to_string();
    let ckpt = dir.path().join("model.safetensors");
    let c = ckpt.to_str().unwrap();
    let mut args = vec!["train", "--model", model, "--save", c];
    args.extend(extra);
    let text = run_cpu_ok(&d, &args);
    assert!(
        text.contains("Accuracy of the network on the 20 test images: "),
        "{text}"
    );
    let eval = run_cpu_ok(&d, &["eval", "--checkpoint", c]);
    assert!(
        eval.contains("Accuracy of the network on the 20 test images: "),
        "{eval}"
    );
    (dir, ckpt, text)
}
