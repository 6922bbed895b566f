//! What the binary refuses, each with exit code 2, one `error:` line naming the flag or file,
//! and no work done: nonsense values, missing or truncated data, an unknown adapter, unwritable
//! outputs, bad checkpoints and models, settings that only the data or a checkpoint shows to be
//! wrong, optimizer flags; and `info`'s adapter list.

use std::path::Path;

use cnn_gpu::data::TRAIN_IMAGES;

use crate::common::{assert_refused, cnn_gpu, cnn_gpu_command, stderr, stdout};
use crate::{error_line, interrupt_at, mnist_like_dir, strs};

#[test]
fn nonsense_values_are_refused_before_any_work() {
    // A data directory that does not exist: a refusal here comes before any data is read.
    let root = tempfile::tempdir().unwrap();
    let absent = root.path().join("absent");
    let cpu = [
        "train",
        "--backend",
        "cpu",
        "--data-dir",
        absent.to_str().unwrap(),
    ];
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

/// A start prints no `error:` line that is not ours: where XDG_RUNTIME_DIR is unset (a server,
/// CI), libwayland, probed by Mesa's device-selection layer, would print two.
#[test]
fn a_start_without_a_desktop_prints_no_error_line() {
    let out = cnn_gpu_command(&["info"])
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("NODEVICE_SELECT")
        .env_remove("MESA_VK_DEVICE_SELECT")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("error"), "{}", stderr(&out));
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
    for (flag, value) in [
        ("--save-every-steps", "0"),
        ("--save-every-minutes", "0"),
        ("--save-every-minutes", "-1"),
        ("--save-every-minutes", "NaN"),
        ("--time-limit", "0s"),
        ("--time-limit", "soon"),
        ("--time-limit", "-5m"),
    ] {
        assert_refused(&strs(&with(&["--save", &ckpt, flag, value])), flag);
    }
    // The periodic checkpoints are of --save's file (clap names it on the next line).
    let out = cnn_gpu(&strs(&with(&["--save-every-steps", "5"])));
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("required arguments were not provided:\n  --save <PATH>"),
        "{}",
        stderr(&out)
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
    // The step plan lists GPU dispatches.
    assert_refused(
        &["time", "--plan", "--backend", "cpu"],
        "needs the GPU backend",
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

/// Impossible optimizer settings, and flags of another optimizer or schedule, exit 2 with one
/// line naming the flag, before any work.
#[test]
fn optimizer_flags_are_checked_before_any_work() {
    // A data directory that does not exist: a refusal here comes before any data is read.
    let root = tempfile::tempdir().unwrap();
    let absent = root.path().join("absent");
    let cpu = [
        "train",
        "--backend",
        "cpu",
        "--data-dir",
        absent.to_str().unwrap(),
    ];
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
