//! The `cnn-gpu` binary as a user runs it: messages and exit codes, and a short training run
//! on both backends printing the same loss lines.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{assert_refused, cnn_gpu, cnn_gpu_command, stderr, stdout, test_env};

use cnn_gpu::data::{
    write_idx_images, write_idx_labels, Compression, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES,
    TRAIN_LABELS,
};

#[test]
fn nonsense_values_are_refused_before_any_work() {
    let cpu = ["train", "--backend", "cpu", "--data-dir", "/nonexistent"];
    for (flag, value, what) in [
        ("--batch-size", "0", "batch size"),
        ("--lr", "0", "learning rate"),
        ("--lr", "-1", "learning rate"),
        ("--lr", "NaN", "learning rate"),
        ("--epochs", "0", "epochs"),
        ("--momentum", "1", "momentum"),
        ("--log-interval", "0", "log interval"),
        ("--max-steps", "0", "max steps"),
        ("--threads", "0", "--threads"),
        ("--augment-rotate", "-5", "--augment-rotate"),
        ("--augment-translate", "-1", "--augment-translate"),
        ("--augment-scale", "1.2:1.1", "--augment-scale"),
        ("--augment-scale", "0.9", "--augment-scale"),
    ] {
        let mut args = cpu.to_vec();
        args.extend([flag, value]);
        assert_refused(&args, what);
    }
}

#[test]
fn missing_data_names_the_files_and_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let args = [
        "train",
        "--backend",
        "cpu",
        "--data-dir",
        d,
        "--no-download",
    ];
    assert_refused(&args, TRAIN_IMAGES);
    let err = stderr(&cnn_gpu(&args));
    assert!(err.contains("--data-dir") && err.contains(d), "{err}");
}

#[test]
fn truncated_data_names_the_file() {
    let dir = mnist_like_dir(32, 8);
    let path = dir.path().join(TRAIN_IMAGES);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let d = dir.path().to_str().unwrap();
    assert_refused(
        &["train", "--backend", "cpu", "--data-dir", d],
        TRAIN_IMAGES,
    );
}

#[test]
fn unknown_adapter_is_refused_naming_the_cpu_backend() {
    let args = [
        "train",
        "--backend",
        "gpu",
        "--adapter",
        "no-such-adapter-xyz",
        "--data-dir",
        "/x",
    ];
    assert_refused(&args, "--backend cpu");
}

#[test]
fn info_lists_adapters_or_says_there_are_none() {
    let out = cnn_gpu(&["info"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let listed = text.contains("<- picked by --backend") && text.contains("max storage binding");
    assert!(listed || text.contains("No GPU adapter found"), "{text}");
    if std::env::var("CNN_GPU_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        assert!(
            listed,
            "CNN_GPU_REQUIRE_GPU=1 but `info` lists no adapter: {text}"
        );
    }
}

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

/// A short run through the CLI on each backend: the tutorial's lines, and (on a GPU, lavapipe
/// in CI) the same losses as the CPU within print rounding.
#[test]
fn short_training_run_prints_the_same_loss_lines_on_both_backends() {
    let dir = mnist_like_dir(72, 20);
    let d = dir.path().to_str().unwrap();
    let run = |backend: &str| {
        cnn_gpu(&[
            "train",
            "--backend",
            backend,
            "--data-dir",
            d,
            "--epochs",
            "2",
            "--batch-size",
            "16",
            "--log-interval",
            "2",
            "--seed",
            "7",
        ])
    };
    let cpu = run("cpu");
    assert_eq!(cpu.status.code(), Some(0), "{}", stderr(&cpu));
    let cpu_text = stdout(&cpu);
    let cpu_losses = loss_lines(&cpu_text);
    // 72 images in batches of 16 are 5 steps an epoch (the last of 8): batches 2 and 4 logged.
    let heads: Vec<&str> = cpu_losses.iter().map(|(h, _)| h.as_str()).collect();
    assert_eq!(
        heads,
        [
            "Epoch 1, Batch 2",
            "Epoch 1, Batch 4",
            "Epoch 2, Batch 2",
            "Epoch 2, Batch 4"
        ]
    );
    assert!(
        cpu_text.contains("Accuracy of the network on the 20 test images: "),
        "{cpu_text}"
    );
    assert!(cpu_text.contains("Epoch 2 done in "), "{cpu_text}");

    let gpu = run("gpu");
    if no_adapter(&gpu) {
        return;
    }
    assert_eq!(gpu.status.code(), Some(0), "{}", stderr(&gpu));
    let gpu_losses = loss_lines(&stdout(&gpu));
    assert_eq!(gpu_losses.len(), cpu_losses.len());
    for ((head, c), (_, g)) in cpu_losses.iter().zip(&gpu_losses) {
        assert!((c - g).abs() <= 0.0015, "{head}: CPU {c}, GPU {g}");
    }
}

#[test]
fn save_into_a_missing_directory_is_refused_before_training() {
    let dir = mnist_like_dir(32, 8);
    let d = dir.path().to_str().unwrap();
    let ckpt = dir.path().join("no/such/dir/m.safetensors");
    let c = ckpt.to_str().unwrap();
    assert_refused(
        &["train", "--backend", "cpu", "--data-dir", d, "--save", c],
        c,
    );
}

#[test]
fn metrics_into_a_missing_directory_is_refused_before_training() {
    let dir = mnist_like_dir(32, 8);
    let d = dir.path().to_str().unwrap();
    let metrics = dir.path().join("no/such/dir/m.jsonl");
    let m = metrics.to_str().unwrap();
    assert_refused(
        &["train", "--backend", "cpu", "--data-dir", d, "--metrics", m],
        m,
    );
}

#[test]
fn bad_checkpoints_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.safetensors");
    std::fs::write(&bad, b"not a checkpoint").unwrap();
    let b = bad.to_str().unwrap();
    assert_refused(
        &[
            "eval",
            "--backend",
            "cpu",
            "--checkpoint",
            b,
            "--data-dir",
            "/x",
        ],
        b,
    );
    assert_refused(
        &["train", "--backend", "cpu", "--init", b, "--data-dir", "/x"],
        b,
    );
}

/// `train --save` (and `--save-every`) writes a checkpoint that `eval --checkpoint` reads, and
/// `train --init` starts from.
#[test]
fn save_then_eval_and_init() {
    let dir = mnist_like_dir(48, 20);
    let d = dir.path().to_str().unwrap();
    let ckpt = dir.path().join("m.safetensors");
    let c = ckpt.to_str().unwrap();
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--backend",
            "cpu",
            "--data-dir",
            d,
            "--batch-size",
            "16",
            "--save",
            c,
        ];
        args.extend(extra);
        cnn_gpu(&args)
    };
    let out = train(&["--epochs", "2", "--save-every", "1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!("Saved checkpoint {c} (epoch 1, step 3)")),
        "{text}"
    );
    assert!(
        text.contains(&format!("Saved checkpoint {c} (epoch 2, step 6)")),
        "{text}"
    );
    let names = tensor_names(&ckpt);
    assert_eq!(
        names.len(),
        8,
        "weights only by default, for strict load_state_dict: {names:?}"
    );
    let trained_acc = text
        .lines()
        .find(|l| l.starts_with("Accuracy of the network"))
        .unwrap()
        .to_string();

    let out = cnn_gpu(&[
        "eval",
        "--backend",
        "cpu",
        "--checkpoint",
        c,
        "--data-dir",
        d,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("(epoch 2, step 6)"), "{text}");
    assert!(
        text.contains(&trained_acc),
        "the same accuracy as training's: {text}"
    );
    assert!(text.contains("Mean loss: "), "{text}");
    for k in 0..10 {
        assert!(text.contains(&format!("Accuracy of class {k}: ")), "{text}");
    }
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("Confusion matrix"))
        .expect("a confusion matrix");
    let mut total = 0;
    for (t, row) in lines[at + 2..at + 12].iter().enumerate() {
        let nums: Vec<usize> = row.split_whitespace().map(|x| x.parse().unwrap()).collect();
        assert_eq!(nums.len(), 11, "{row}");
        assert_eq!(nums[0], t);
        total += nums[1..].iter().sum::<usize>();
    }
    assert_eq!(total, 20, "the matrix counts every test image: {text}");

    let out = train(&["--init", c, "--epochs", "1", "--save-optimizer"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let names = tensor_names(&ckpt);
    assert_eq!(names.len(), 16, "{names:?}");
    assert!(names.contains(&"optimizer.fc2.bias.momentum_buffer".to_string()));
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

/// `--resume` continues a run saved at the end of an epoch: the later epochs print exactly the
/// loss lines of an uninterrupted run with the same seed.
#[test]
fn resume_reproduces_an_uninterrupted_run() {
    let (dir, ckpt) = data_and_checkpoint(72, 20);
    let (d, c) = (dir.path().to_str().unwrap(), ckpt.to_str().unwrap());
    let common = cpu_train_16(d);
    let run = |extra: &[&str]| {
        let mut args = common.to_vec();
        args.extend(extra);
        let out = cnn_gpu(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        loss_lines(&stdout(&out))
    };
    let whole = run(&["--epochs", "3", "--seed", "5"]);
    let first = run(&[
        "--epochs",
        "1",
        "--seed",
        "5",
        "--save",
        c,
        "--save-optimizer",
    ]);
    // The seed comes from the checkpoint: a different --seed must not change the run.
    let rest = run(&["--epochs", "3", "--seed", "99", "--resume", c]);
    assert_eq!(whole.len(), 6);
    assert_eq!(first, whole[..2]);
    assert_eq!(rest, whole[2..], "epochs 2 and 3 after resuming");

    // Nothing left to do (the checkpoint holds 1 epoch), and a weights-only checkpoint, are
    // refused before any work.
    assert_refused(
        &[&common[..], &["--epochs", "1", "--resume", c]].concat(),
        "--epochs",
    );
    let weights = dir.path().join("weights.safetensors");
    run(&["--epochs", "1", "--save", weights.to_str().unwrap()]);
    let args = [&common[..], &["--resume", weights.to_str().unwrap()]].concat();
    assert_refused(&args, "--save-optimizer");
}

/// Runs `cmd` with the test-only fault `fault` (see src/cli/fault.rs), waits until it prints
/// `marker` on stderr, sends it SIGINT once per entry of `pauses` (sleeping that long after
/// each, so two signals are not merged into one), and returns its output.
fn interrupt_at(mut cmd: Command, fault: &str, marker: &str, pauses: &[u64]) -> Output {
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
        assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
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
        line.contains("interrupted after step 3 of epoch 2")
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
        line.contains("interrupted after step 1 of epoch 1") && line.contains("--save PATH"),
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

/// Nonsense that needs the data or a checkpoint to be seen is refused before training too.
#[test]
fn nonsense_against_the_data_and_checkpoints_is_refused() {
    let dir = mnist_like_dir(48, 8);
    let d = dir.path().to_str().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let train = ["train", "--backend", "cpu", "--data-dir", d];
    let with = |extra: &[&str]| -> Vec<String> {
        train.iter().chain(extra).map(|s| s.to_string()).collect()
    };
    assert_refused(
        &strs(&with(&["--batch-size", "49"])),
        "larger than the training set (48",
    );
    let ckpt = p("m.safetensors");
    assert_refused(
        &strs(&with(&["--save", &ckpt, "--save-every", "0"])),
        "--save-every",
    );
    assert_refused(&strs(&with(&["--save", d])), "is a directory");
    assert_refused(
        &[
            "eval",
            "--backend",
            "cpu",
            "--checkpoint",
            &ckpt,
            "--batch-size",
            "0",
        ],
        "--batch-size",
    );
    assert_refused(
        &["time", "--backend", "cpu", "--iterations", "0"],
        "at least 1",
    );
    let out = cnn_gpu_command(&strs(&with(&["--epochs", "1"])))
        .env("CNN_GPU_FAULT", "device-lost@step:1")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(error_line(&out).contains("needs the GPU backend"));

    // A checkpoint of another architecture (16 first-layer channels).
    let mut spec = cnn_gpu::model::ModelSpec::simple_cnn();
    for (i, (cin, cout)) in [(0, (1, 16)), (3, (16, 64))] {
        spec.layers[i] = cnn_gpu::model::Layer::Conv2d {
            in_channels: cin,
            out_channels: cout,
            kernel_h: 3,
            kernel_w: 3,
            stride: 1,
            padding: 1,
        };
    }
    let params = spec.init_params(0).unwrap();
    let other = p("other.safetensors");
    let momentum = cnn_gpu::checkpoint::OptimizerTensors {
        velocity: Some(&params),
        exp_avg_sq: None,
    };
    cnn_gpu::checkpoint::save(Path::new(&other), &spec, &params, momentum, None).unwrap();
    // Without --model a resumed run rebuilds the checkpoint's own model from its metadata;
    // naming another model must be refused.
    assert_refused(
        &strs(&with(&["--model", "simple-cnn", "--resume", &other])),
        "another architecture",
    );

    // A checkpoint saved inside an epoch resumes only at the batch size it was saved with.
    let out = interrupt_at(
        cnn_gpu_command(&strs(&with(&["--batch-size", "16", "--save", &ckpt]))),
        "pause@step:2",
        "fault: paused after step 2",
        &[0],
    );
    assert_eq!(out.status.code(), Some(130), "{}", stderr(&out));
    assert_refused(
        &strs(&with(&["--batch-size", "8", "--resume", &ckpt])),
        "batch size",
    );
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

/// Impossible optimizer settings, and flags of another optimizer or schedule, exit 2 with one
/// line naming the flag, before any work.
#[test]
fn optimizer_flags_are_checked_before_any_work() {
    let cpu = ["train", "--backend", "cpu", "--data-dir", "/nonexistent"];
    let cases: [(&[&str], &str); 13] = [
        (&["--optimizer", "adam", "--beta1", "1"], "--beta1"),
        (&["--optimizer", "adam", "--beta2", "-0.5"], "--beta2"),
        (&["--optimizer", "adamw", "--eps", "0"], "--eps"),
        (&["--clip-grad-norm", "0"], "--clip-grad-norm"),
        (&["--clip-grad-norm", "-1"], "--clip-grad-norm"),
        (&["--weight-decay", "-0.1"], "--weight-decay"),
        (&["--lr-schedule", "step", "--lr-gamma", "0"], "--lr-gamma"),
        (
            &["--lr-schedule", "step", "--lr-step-size", "0"],
            "--lr-step-size",
        ),
        (&["--beta1", "0.5"], "--beta1 applies to --optimizer adam"),
        (
            &["--optimizer", "adam", "--momentum", "0.5"],
            "--momentum applies",
        ),
        (
            &["--optimizer", "adamw", "--nesterov"],
            "--nesterov applies",
        ),
        (
            &["--lr-gamma", "0.5"],
            "--lr-gamma applies to --lr-schedule step",
        ),
        (&["--nesterov", "--momentum", "0"], "--nesterov"),
    ];
    for (extra, what) in cases {
        assert_refused(&[&cpu[..], extra].concat(), what);
    }
    // The run's length needs the data: 32 images in batches of 16 for 1 epoch are 2 steps.
    let dir = mnist_like_dir(32, 8);
    let d = dir.path().to_str().unwrap();
    let args = [
        "train",
        "--backend",
        "cpu",
        "--data-dir",
        d,
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--warmup-steps",
        "3",
    ];
    assert_refused(&args, "--warmup-steps 3 is longer than the run (2 steps)");
}

/// Adam with warm-up, a cosine schedule and clipping: its moments and step count go into the
/// checkpoint under PyTorch's names, and `--resume` (with the checkpoint's optimizer settings)
/// prints exactly the loss lines of an uninterrupted run.
#[test]
fn adam_run_resumes_like_an_uninterrupted_one() {
    let dir = mnist_like_dir(72, 20);
    let d = dir.path().to_str().unwrap();
    let ckpt = dir.path().join("adam.safetensors");
    let c = ckpt.to_str().unwrap();
    let common = [
        "train",
        "--backend",
        "cpu",
        "--data-dir",
        d,
        "--batch-size",
        "16",
        "--log-interval",
        "2",
        "--seed",
        "5",
    ];
    let optim = [
        "--optimizer",
        "adam",
        "--lr",
        "0.002",
        "--beta2",
        "0.99",
        "--lr-schedule",
        "cosine",
        "--warmup-steps",
        "3",
        "--clip-grad-norm",
        "1",
    ];
    let run = |extra: &[&str]| {
        let args = [&common[..], extra].concat();
        let out = cnn_gpu(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        (loss_lines(&stdout(&out)), stdout(&out))
    };
    let (whole, _) = run(&[&optim[..], &["--epochs", "3"]].concat());
    // Stopped by --max-steps at the end of epoch 1 (5 steps of 16 in 72 images): the cosine
    // still spans the 3 epochs asked for.
    let save = [
        "--epochs",
        "3",
        "--max-steps",
        "5",
        "--save",
        c,
        "--save-optimizer",
    ];
    let (first, _) = run(&[&optim[..], &save[..]].concat());
    let names = tensor_names(&ckpt);
    assert!(
        names.contains(&"optimizer.fc1.weight.exp_avg".to_string()),
        "{names:?}"
    );
    assert!(names.contains(&"optimizer.fc1.weight.exp_avg_sq".to_string()));
    let (rest, text) = run(&["--epochs", "3", "--resume", c]);
    assert!(text.contains("Resuming at epoch 2"), "{text}");
    assert!(text.contains("adam (beta1 0.9, beta2 0.99"), "{text}");
    assert_eq!(whole.len(), 6);
    assert_eq!(first, whole[..2]);
    assert_eq!(rest, whole[2..], "epochs 2 and 3 after resuming");
    // The run's own optimizer flags repeated (as the command printed on Ctrl-C does) are fine.
    let (again, _) = run(&[&optim[..], &["--epochs", "3", "--resume", c]].concat());
    assert_eq!(again, whole[2..], "the same flags repeated");

    let args = [
        &common[..],
        &[
            "--resume",
            c,
            "--epochs",
            "3",
            "--optimizer",
            "sgd",
            "--clip-grad-norm",
            "2",
        ],
    ]
    .concat();
    assert_refused(&args, "--resume");
}

/// A diverging run (an absurd lr) exits 2 naming the step, and the checkpoint it was to
/// overwrite stays as the last good run left it.
#[test]
fn divergence_exits_2_and_keeps_the_last_good_checkpoint() {
    let dir = mnist_like_dir(72, 20);
    let d = dir.path().to_str().unwrap();
    let ckpt = dir.path().join("good.safetensors");
    let c = ckpt.to_str().unwrap();
    let train = |lr: &str| {
        cnn_gpu(&[
            "train",
            "--backend",
            "cpu",
            "--data-dir",
            d,
            "--batch-size",
            "16",
            "--epochs",
            "1",
            "--lr",
            lr,
            "--save",
            c,
        ])
    };
    let out = train("0.001");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let good = std::fs::read(&ckpt).unwrap();
    // Near f32's largest value: the weights overflow within a few steps.
    let out = train("3e38");
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(
        errors[0].contains("the loss became")
            && errors[0].contains(" at step ")
            && errors[0].contains("lower --lr"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(
        std::fs::read(&ckpt).unwrap(),
        good,
        "the good checkpoint stays"
    );
    let leftovers = std::fs::read_dir(dir.path()).unwrap().count();
    assert_eq!(
        leftovers, 5,
        "four MNIST files and the checkpoint, no temporary file"
    );
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

/// `--model lenet5`: a short run trains LeNet-5 (61,706 parameters) and saves it; `eval` takes
/// the model from the checkpoint's metadata without `--model`, and refuses the checkpoint for
/// `--model simple-cnn`; `time --model lenet5` times its twelve layers.
#[test]
fn lenet5_short_run_through_the_cli() {
    let (dir, ckpt, text) = train_then_eval("lenet5", &["--log-interval", "1", "--max-steps", "3"]);
    assert!(text.contains("48 images, 61706 parameters"), "{text}");
    assert_eq!(loss_lines(&text).len(), 3, "{text}");
    let names = tensor_names(&ckpt);
    assert!(names.contains(&"fc3.weight".to_string()), "{names:?}");
    let d = dir.path().to_str().unwrap();
    assert_refused(
        &[
            "eval",
            "--backend",
            "cpu",
            "--data-dir",
            d,
            "--checkpoint",
            ckpt.to_str().unwrap(),
            "--model",
            "simple-cnn",
        ],
        "another architecture",
    );

    let out = cnn_gpu(&[
        "time",
        "--backend",
        "cpu",
        "--model",
        "lenet5",
        "--batch-size",
        "4",
        "--iterations",
        "2",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("lenet5, batch 4, 2 steps on cpu"),
        "{text}"
    );
    assert!(text.contains("Linear(84→10)"), "{text}");
}

/// `--model` refusals: an unknown name lists the presets; a model file that does not fit names
/// the file, the layer and why; a model whose output is not 10 classes is refused; all exit 2
/// before any work.
#[test]
fn bad_models_are_refused() {
    assert_refused(
        &["train", "--model", "lenet7", "--backend", "cpu"],
        "--model lenet7: no such preset or file; give simple-cnn, lenet5",
    );
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[layer]]\nkind = \"flatten\"\n[[layer]]\nkind = \"linear\"\nin_features = 748\n\
         out_features = 10\n",
    )
    .unwrap();
    let b = bad.to_str().unwrap();
    assert_refused(
        &["train", "--model", b, "--backend", "cpu"],
        "layer 1 (Linear(748→10)): expects 748 input features, got 784",
    );
    assert_refused(&["time", "--model", b, "--backend", "cpu"], "bad.toml");
    let seven = dir.path().join("seven.toml");
    std::fs::write(
        &seven,
        "[[layer]]\nkind = \"flatten\"\n[[layer]]\nkind = \"linear\"\nin_features = 784\n\
         out_features = 7\n",
    )
    .unwrap();
    assert_refused(
        &[
            "train",
            "--model",
            seven.to_str().unwrap(),
            "--backend",
            "cpu",
        ],
        "the model gives 7 outputs per image, but the MNIST-format datasets have 10 classes",
    );
}

/// The committed batch-norm + dropout example trains an epoch through the CLI, its checkpoint
/// holds the batch norms' buffers under nn.Sequential names, and it evaluates.
#[test]
fn bn_cnn_model_file_trains_and_evaluates() {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/models/bn-cnn.toml");
    let (_dir, ckpt, _) = train_then_eval(model, &["--epochs", "1"]);
    let names = tensor_names(&ckpt);
    for n in [
        "layers.1.running_mean",
        "layers.10.num_batches_tracked",
        "layers.13.bias",
    ] {
        assert!(names.contains(&n.to_string()), "{n} in {names:?}");
    }
}

/// Resuming a batch-norm + dropout model (tests/fixtures/bn_small.toml) reproduces the
/// uninterrupted run: the same loss lines (the dropout masks follow the seed and the step) and
/// the same test accuracy (evaluation uses the running statistics the checkpoint restored). The
/// resumed run takes its model from the checkpoint, without --model.
#[test]
fn resume_with_batch_norm_and_dropout_reproduces_an_uninterrupted_run() {
    let dir = mnist_like_dir(72, 20);
    let d = dir.path().to_str().unwrap();
    let ckpt = dir.path().join("run.safetensors");
    let c = ckpt.to_str().unwrap();
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bn_small.toml");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "--log-interval",
            "2",
            "--lr",
            "0.05",
            "--seed",
            "5",
        ];
        args.extend(extra);
        let text = run_cpu_ok(d, &args);
        let accuracy = text
            .lines()
            .find(|l| l.starts_with("Accuracy of the network"))
            .unwrap()
            .to_string();
        (loss_lines(&text), accuracy)
    };
    let (whole, whole_accuracy) = run(&["--model", model, "--epochs", "3"]);
    let (first, _) = run(&[
        "--model",
        model,
        "--epochs",
        "1",
        "--save",
        c,
        "--save-optimizer",
    ]);
    let (rest, rest_accuracy) = run(&["--epochs", "3", "--resume", c]);
    assert_eq!(whole.len(), 6);
    assert_eq!(first, whole[..2]);
    assert_eq!(rest, whole[2..], "epochs 2 and 3 after resuming");
    assert_eq!(rest_accuracy, whole_accuracy);
}
