//! Interruptions and failures through the test-only faults (src/cli/fault.rs): Ctrl-C saves and
//! prints a command that resumes as if never stopped, a second Ctrl-C exits at once, Ctrl-C
//! without --save says how to make a run resumable, a panic is one line, and a lost GPU device
//! fails cleanly keeping the last checkpoint.

use std::path::Path;
use std::process::Command;

use crate::common::{cnn_gpu, cnn_gpu_command, stderr, stdout, test_env};
use crate::{
    cpu_train_16, data_and_checkpoint, error_line, interrupt_at, loss_lines, mnist_like_dir,
    no_adapter, strs,
};

/// Ctrl-C in the middle of an epoch finishes the step, saves a checkpoint with the optimizer
/// state (without --save-optimizer), prints the command that resumes, and exits 130; that
/// command prints exactly the loss lines, accuracy and weights of a run never stopped.
#[test]
fn ctrl_c_saves_and_the_printed_command_resumes_as_if_never_stopped() {
    let dir = mnist_like_dir(72, 20);
    let d = dir.path().to_str().unwrap();
    let ckpt = dir.path().join("run.safetensors");
    let whole_ckpt = dir.path().join("whole.safetensors");
    // 72 images in batches of 16: 5 steps an epoch, losses logged after batches 2 and 4.
    let args = |save: &Path| -> Vec<String> {
        let save = save.to_str().unwrap();
        let run = ["--epochs", "3", "--seed", "5", "--save", save];
        cpu_train_16(d)
            .iter()
            .chain(&run)
            .map(|s| s.to_string())
            .collect()
    };
    let whole = cnn_gpu(&strs(&args(&whole_ckpt)));
    assert_eq!(whole.status.code(), Some(0), "{}", stderr(&whole));
    let whole_text = stdout(&whole);

    // Step 8 is step 3 of epoch 2: one step after the batch-2 line, inside a loss window.
    let first = interrupt_at(
        cnn_gpu_command(&strs(&args(&ckpt))),
        "pause@step:8",
        "fault: paused after step 8",
        &[0],
    );
    assert_eq!(first.status.code(), Some(130), "{}", stderr(&first));
    let line = error_line(&first);
    assert!(
        line.contains("interrupted by SIGINT after step 3 of epoch 2")
            && line.contains("with the optimizer state"),
        "{line}"
    );
    let saved = cnn_gpu::checkpoint::load(&ckpt, &cnn_gpu::model::ModelSpec::simple_cnn()).unwrap();
    assert!(saved.velocity.is_some(), "the momentum, for resuming");
    let state = saved.train_state().unwrap();
    assert_eq!((state.epoch, state.step), (1, 8));
    assert_eq!(state.loss_window.map(|w| w.steps), Some(1));
    let first_text = stdout(&first);
    assert!(!first_text.contains("Accuracy"), "{first_text}");

    let (_, command) = line
        .split_once("resume with: ")
        .expect("the resume command");
    assert!(
        command.ends_with(&format!("--resume {}", ckpt.display())),
        "{command}"
    );
    // The command as printed, through a shell (it is quoted for one).
    let mut sh = Command::new("sh");
    test_env(&mut sh);
    let rest = sh.args(["-c", command]).output().unwrap();
    assert_eq!(rest.status.code(), Some(0), "{}", stderr(&rest));
    let rest_text = stdout(&rest);
    assert!(
        rest_text.contains("Resuming at epoch 2, step 4"),
        "{rest_text}"
    );

    let mut resumed = loss_lines(&first_text);
    resumed.extend(loss_lines(&rest_text));
    let whole_losses = loss_lines(&whole_text);
    assert_eq!(whole_losses.len(), 6);
    assert_eq!(resumed, whole_losses);
    let accuracy = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("Accuracy of the network"))
            .map(str::to_string)
    };
    assert!(accuracy(&whole_text).is_some());
    assert_eq!(accuracy(&rest_text), accuracy(&whole_text));
    let spec = cnn_gpu::model::ModelSpec::simple_cnn();
    let a = cnn_gpu::checkpoint::load(&ckpt, &spec).unwrap();
    let b = cnn_gpu::checkpoint::load(&whole_ckpt, &spec).unwrap();
    assert_eq!(a.params, b.params, "the same weights, bit for bit");
    assert_eq!(a.train_state(), b.train_state());
}

/// A second Ctrl-C while the first is being handled (here: a step that hangs) exits at once
/// with 130, writing nothing.
#[test]
fn a_second_ctrl_c_exits_at_once() {
    let (dir, ckpt) = data_and_checkpoint(48, 8);
    let (d, c) = (dir.path().to_str().unwrap(), ckpt.to_str().unwrap());
    let cmd = cnn_gpu_command(&[&cpu_train_16(d)[..], &["--save", c]].concat());
    let out = interrupt_at(cmd, "hang@step:2", "fault: hanging after step 2", &[300, 0]);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert!(
        !stdout(&out).contains("Saved checkpoint"),
        "{}",
        stdout(&out)
    );
    assert!(!ckpt.exists(), "nothing written");
}

/// Ctrl-C without --save stops as well, and says nothing was saved and how to make a run
/// resumable.
#[test]
fn ctrl_c_without_save_says_how_to_make_a_run_resumable() {
    let dir = mnist_like_dir(48, 8);
    let cmd = cnn_gpu_command(&cpu_train_16(dir.path().to_str().unwrap()));
    let out = interrupt_at(cmd, "pause@step:1", "fault: paused after step 1", &[0]);
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains("interrupted by SIGINT after step 1 of epoch 1")
            && line.contains("--save PATH"),
        "{line}"
    );
}

/// A panic never shows a backtrace: one `internal error` line and exit code 1.
#[test]
fn a_panic_is_one_internal_error_line() {
    let out = cnn_gpu_command(&["info"])
        .env("CNN_GPU_FAULT", "panic")
        .env("RUST_BACKTRACE", "1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with("error: internal error: CNN_GPU_FAULT asked for a panic at src/main.rs:")
            && err.contains("please report"),
        "{err}"
    );
    assert!(!err.contains("backtrace"), "{err}");

    let out = cnn_gpu_command(&["info"])
        .env("CNN_GPU_FAULT", "panic@step:3")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(error_line(&out).contains("is not a fault"));
}

/// A GPU device lost in the middle of a run: a clear error (exit 1) that says the last
/// checkpoint is intact, which then resumes (here on the CPU). `--backend auto` on a GPU
/// does not fall back to the CPU mid-run.
#[test]
fn device_loss_fails_cleanly_and_keeps_the_last_checkpoint() {
    let (dir, ckpt) = data_and_checkpoint(72, 20);
    let (d, c) = (dir.path().to_str().unwrap(), ckpt.to_str().unwrap());
    let run = |backend: &str| {
        cnn_gpu_command(&[
            "train",
            "--backend",
            backend,
            "--adapter",
            "0",
            "--data-dir",
            d,
            "--batch-size",
            "16",
            "--epochs",
            "3",
            "--save",
            c,
            "--save-every",
            "1",
            "--save-optimizer",
        ])
        .env("CNN_GPU_FAULT", "device-lost@step:7")
        .output()
        .unwrap()
    };
    let out = run("gpu");
    if no_adapter(&out) {
        return;
    }
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains("GPU error")
            && line.contains("lost")
            && line.contains(&format!(
                "the last checkpoint, {c} (epoch 1, step 5), is intact"
            )),
        "{line}"
    );
    let spec = cnn_gpu::model::ModelSpec::simple_cnn();
    let state = cnn_gpu::checkpoint::load(&ckpt, &spec)
        .unwrap()
        .train_state()
        .unwrap();
    assert_eq!((state.epoch, state.step), (1, 5));
    let out = cnn_gpu(&[&cpu_train_16(d)[..], &["--epochs", "3", "--resume", c]].concat());
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // auto with an adapter opens the GPU, and stays on it when the device is lost.
    std::fs::remove_file(&ckpt).unwrap();
    let out = run("auto");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(error_line(&out).contains("lost"));
    let text = stdout(&out);
    assert_eq!(text.matches("Training on ").count(), 1, "{text}");
    assert!(!text.contains("Training on cpu"), "{text}");
    assert!(
        !stderr(&out).contains("running on the CPU"),
        "{}",
        stderr(&out)
    );
}
