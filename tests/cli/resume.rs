//! `--resume` through the binary: a run saved at the end of an epoch, an Adam run with warm-up,
//! cosine schedule and clipping, and a batch-norm + dropout model each continue with exactly the
//! loss lines of an uninterrupted run.

use crate::common::{assert_refused, cnn_gpu, stderr, stdout};
use crate::{
    cpu_train_16, data_and_checkpoint, loss_lines, mnist_like_dir, run_cpu_ok, tensor_names,
};

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
