//! Stops other than Ctrl-C, and the saves that keep a run from being lost: SIGTERM and SIGHUP
//! (exit 143 and 129), a stop in the final evaluation, the periodic checkpoints a SIGKILL
//! falls back on, `--time-limit`, and a metrics file that cannot be written.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{cnn_gpu, cnn_gpu_command, stderr, stdout, test_env};
use crate::{cpu_train_16, error_line, loss_lines, mnist_like_dir, signal_at, strs};

use cnn_gpu::checkpoint::{self, Checkpoint};
use cnn_gpu::model::ModelSpec;

/// 72 images in batches of 16 (5 steps an epoch), 3 epochs, seed 5, losses logged after
/// batches 2 and 4, saving to `save`, plus `extra`.
fn run_args(d: &str, save: &Path, extra: &[&str]) -> Vec<String> {
    let save = save.to_str().unwrap();
    let run = ["--epochs", "3", "--seed", "5", "--save", save];
    cpu_train_16(d)
        .iter()
        .chain(&run)
        .chain(extra)
        .map(|s| s.to_string())
        .collect()
}

fn load(path: &Path) -> Checkpoint {
    checkpoint::load(path, &ModelSpec::simple_cnn()).unwrap()
}

/// The run never stopped: its stdout and checkpoint, `whole.safetensors` in `dir`.
fn whole_run(dir: &Path) -> (String, PathBuf) {
    let ckpt = dir.join("whole.safetensors");
    let out = cnn_gpu(&strs(&run_args(dir.to_str().unwrap(), &ckpt, &[])));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    (stdout(&out), ckpt)
}

/// Runs `command` (a line the binary printed) through a shell and returns its stdout.
fn run_printed(command: &str) -> String {
    let mut sh = Command::new("sh");
    test_env(&mut sh);
    let out = sh.args(["-c", command]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{command}: {}", stderr(&out));
    stdout(&out)
}

/// The names in `dir` that are not the data files: checkpoints, metrics and anything left.
fn outputs(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.contains("-ubyte"))
        .collect();
    names.sort();
    names
}

fn accuracy(text: &str) -> Option<String> {
    text.lines()
        .find(|l| l.starts_with("Accuracy of the network"))
        .map(str::to_string)
}

/// SIGTERM (what systemd, Kubernetes, Slurm and `timeout` send) and SIGHUP (a closed
/// terminal) stop a run as Ctrl-C does: the step finishes, the resumable checkpoint is saved,
/// the resume command printed, and the exit code is 128 + the signal's number; the resumed run
/// ends with the weights of a run never stopped.
#[test]
fn sigterm_and_sighup_save_resumably_and_exit_as_shells_expect() {
    let dir = mnist_like_dir(72, 20);
    let d = dir.path().to_str().unwrap();
    let (whole_text, whole) = whole_run(dir.path());
    for (sig, name, code) in [
        (libc::SIGTERM, "SIGTERM", 143),
        (libc::SIGHUP, "SIGHUP", 129),
    ] {
        let ckpt = dir.path().join(format!("{name}.safetensors"));
        let cmd = cnn_gpu_command(&strs(&run_args(d, &ckpt, &[])));
        let first = signal_at(cmd, "pause@step:8", "fault: paused after step 8", sig, &[0]);
        assert_eq!(first.status.code(), Some(code), "{}", stderr(&first));
        let line = error_line(&first);
        assert!(
            line.contains(&format!(
                "interrupted by {name} after step 3 of epoch 2; saved {}",
                ckpt.display()
            )),
            "{line}"
        );
        let state = load(&ckpt).train_state().unwrap();
        assert_eq!((state.epoch, state.step), (1, 8));
        let (_, command) = line.split_once("resume with: ").expect("a resume command");
        let rest = run_printed(command);
        let mut losses = loss_lines(&stdout(&first));
        losses.extend(loss_lines(&rest));
        assert_eq!(losses, loss_lines(&whole_text), "{name}");
        assert_eq!(load(&ckpt).params, load(&whole).params, "{name}");
    }
    assert_eq!(
        outputs(dir.path()),
        [
            "SIGHUP.safetensors",
            "SIGTERM.safetensors",
            "whole.safetensors"
        ],
        "no temporary file left"
    );
}

/// A stop in the final evaluation stops it; the trained checkpoint was written before it
/// began, and the printed `eval` command gives the accuracy the run would have printed.
#[test]
fn a_stop_in_the_final_evaluation_keeps_the_trained_checkpoint() {
    let dir = mnist_like_dir(72, 20);
    let d = dir.path().to_str().unwrap();
    let (whole_text, whole) = whole_run(dir.path());
    let ckpt = dir.path().join("run.safetensors");
    let cmd = cnn_gpu_command(&strs(&run_args(d, &ckpt, &[])));
    let marker = "fault: paused in the final evaluation";
    let out = signal_at(cmd, "pause@eval", marker, libc::SIGTERM, &[0]);
    assert_eq!(out.status.code(), Some(143), "{}", stderr(&out));
    let text = stdout(&out);
    assert_eq!(accuracy(&text), None, "{text}");
    assert_eq!(loss_lines(&text), loss_lines(&whole_text));
    let line = error_line(&out);
    assert!(
        line.contains("interrupted by SIGTERM in the evaluation after the last epoch")
            && line.contains("training was complete"),
        "{line}"
    );
    assert_eq!(load(&ckpt).params, load(&whole).params);
    assert_eq!(load(&ckpt).train_state(), load(&whole).train_state());
    let (_, command) = line
        .split_once("evaluate it with: ")
        .expect("an eval command");
    let eval = run_printed(command);
    assert!(accuracy(&whole_text).is_some());
    assert_eq!(accuracy(&eval), accuracy(&whole_text));

    // Without --save it says that nothing was kept.
    let mut args = cpu_train_16(d).to_vec();
    args.extend(["--epochs", "1"]);
    let out = signal_at(
        cnn_gpu_command(&args),
        "pause@eval",
        marker,
        libc::SIGINT,
        &[0],
    );
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(error_line(&out).contains("nothing was saved"));
}

/// `--save-every-steps N` writes a resumable checkpoint every N steps of the run: a run
/// killed outright (SIGKILL) resumes from the last one to the weights of a run never stopped,
/// and leaves no temporary file.
#[test]
fn a_killed_run_resumes_from_its_last_periodic_checkpoint() {
    let dir = mnist_like_dir(72, 20);
    let d = dir.path().to_str().unwrap();
    let (whole_text, whole) = whole_run(dir.path());
    let ckpt = dir.path().join("run.safetensors");
    let every = ["--save-every-steps", "4"];
    let cmd = cnn_gpu_command(&strs(&run_args(d, &ckpt, &every)));
    let out = signal_at(
        cmd,
        "pause@step:10",
        "fault: paused after step 10",
        libc::SIGKILL,
        &[0],
    );
    assert_eq!(out.status.code(), None, "killed");
    let text = stdout(&out);
    for (epoch, step) in [(0, 4), (1, 8)] {
        assert!(
            text.contains(&format!(
                "Saved checkpoint {} (epoch {epoch}, step {step})",
                ckpt.display()
            )),
            "{text}"
        );
    }
    let state = load(&ckpt).train_state().unwrap();
    assert_eq!((state.epoch, state.step), (1, 8));
    assert_eq!(
        state.loss_window.map(|w| w.steps),
        Some(1),
        "inside a loss window"
    );

    let resumed = cnn_gpu(&strs(&run_args(
        d,
        &ckpt,
        &["--resume", ckpt.to_str().unwrap()],
    )));
    assert_eq!(resumed.status.code(), Some(0), "{}", stderr(&resumed));
    let rest = stdout(&resumed);
    assert!(rest.contains("Resuming at epoch 2, step 4"), "{rest}");
    assert_eq!(load(&ckpt).params, load(&whole).params);
    assert_eq!(accuracy(&rest), accuracy(&whole_text));
    // The losses after the checkpoint are those of the run never stopped.
    let whole_losses = loss_lines(&whole_text);
    assert_eq!(loss_lines(&rest), whole_losses[whole_losses.len() - 3..]);
    assert_eq!(
        outputs(dir.path()),
        ["run.safetensors", "whole.safetensors"]
    );

    // By the clock: a period shorter than a step saves after (nearly) every step.
    let timed = dir.path().join("timed.safetensors");
    let args = run_args(d, &timed, &["--save-every-minutes", "0.0001"]);
    let out = cnn_gpu_command(&strs(&args))
        .env("CNN_GPU_FAULT", "slow:20")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let saves = stdout(&out).matches("Saved checkpoint").count();
    assert!((10..=15).contains(&saves), "{saves} saves");
    assert_eq!(
        load(&timed).params,
        load(&whole).params,
        "saving changes nothing"
    );
}

/// `--time-limit` stops after the first step past the limit, saves a resumable checkpoint and
/// exits 75; the printed command resumes to the weights of a run never stopped.
#[test]
fn the_time_limit_stops_with_a_resumable_checkpoint() {
    let dir = mnist_like_dir(72, 20);
    let d = dir.path().to_str().unwrap();
    let (whole_text, whole) = whole_run(dir.path());
    let ckpt = dir.path().join("run.safetensors");
    // 15 steps of at least 400 ms each: the limit falls inside training.
    let args = run_args(d, &ckpt, &["--time-limit", "2s"]);
    let out = cnn_gpu_command(&strs(&args))
        .env("CNN_GPU_FAULT", "slow:400")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(75), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains("stopped at the time limit (2s) after step"),
        "{line}"
    );
    let state = load(&ckpt).train_state().unwrap();
    assert!((1..15).contains(&state.step), "{state:?}");
    let (_, command) = line.split_once("resume with: ").expect("a resume command");
    // The printed command repeats --time-limit; the resumed run gets its own 2 s.
    let rest = run_printed(&command.replace("--time-limit 2s", "--time-limit 1h"));
    let mut losses = loss_lines(&stdout(&out));
    losses.extend(loss_lines(&rest));
    assert_eq!(losses, loss_lines(&whole_text));
    assert_eq!(load(&ckpt).params, load(&whole).params);
}

/// A metrics file that cannot be written stops the run at the first record, not at its end:
/// the checkpoint is saved resumably and the error names the file. Records already written
/// survive a SIGKILL: each is flushed as it is written.
#[test]
fn metrics_that_cannot_be_written_stop_the_run_at_once() {
    let dir = mnist_like_dir(72, 20);
    let d = dir.path().to_str().unwrap();
    let ckpt = dir.path().join("run.safetensors");
    // A full disk, reached through a path inside the test's own directory.
    let full = Path::new("/dev/full");
    if !full.exists() {
        eprintln!("skipped the full-disk half: this machine has no /dev/full");
    } else {
        let metrics = dir.path().join("metrics.jsonl");
        std::os::unix::fs::symlink(full, &metrics).unwrap();
        let args = run_args(d, &ckpt, &["--metrics", metrics.to_str().unwrap()]);
        let out = cnn_gpu(&strs(&args));
        assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
        let line = error_line(&out);
        assert!(
            line.contains("cannot write the metrics file")
                && line.contains("No space left on device")
                && line.contains("(epoch 0, step 2), is intact; resume with: "),
            "{line}"
        );
        let text = stdout(&out);
        assert_eq!(
            loss_lines(&text).len(),
            1,
            "stopped at the first record: {text}"
        );
        assert_eq!(load(&ckpt).train_state().unwrap().step, 2);
    }

    let metrics = dir.path().join("killed.jsonl");
    let args = run_args(d, &ckpt, &["--metrics", metrics.to_str().unwrap()]);
    let cmd = cnn_gpu_command(&strs(&args));
    let out = signal_at(
        cmd,
        "pause@step:9",
        "fault: paused after step 9",
        libc::SIGKILL,
        &[0],
    );
    assert_eq!(out.status.code(), None, "killed");
    let records = cnn_gpu::metrics::read_metrics(&metrics).unwrap();
    // Log records after steps 2, 4, 7 and 9, the epoch record of epoch 1.
    assert_eq!(records.len(), 5, "{records:?}");
}
