//! Training through the binary: a short run printing the same loss lines on both backends,
//! `--save` then `eval` and `--init`, a diverging run keeping the last good checkpoint, LeNet-5
//! and the batch-norm + dropout model file.

use crate::common::{assert_refused, cnn_gpu, stderr, stdout};
use crate::{loss_lines, mnist_like_dir, no_adapter, tensor_names, train_then_eval};

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
