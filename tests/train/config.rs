//! Training configuration: the defaults, and every invalid setting refused with one line naming
//! it, against the size of the training set too.

use cnn_gpu::optim::{OptimConfig, Optimizer};
use cnn_gpu::train::TrainConfig;

// ---- (d) configuration -----------------------------------------------------------------------

/// The default optimiser settings with SGD momentum `momentum`.
fn sgd(momentum: f32) -> OptimConfig {
    OptimConfig {
        optimizer: Optimizer::sgd(momentum),
        ..OptimConfig::default()
    }
}

#[test]
fn config_validation() {
    let ok = TrainConfig::default();
    assert_eq!(
        (
            ok.epochs,
            ok.batch_size,
            ok.lr,
            ok.optim.optimizer,
            ok.log_interval
        ),
        (5, 64, 0.001, Optimizer::sgd(0.9), 100)
    );
    ok.validate().unwrap();
    ok.validate_for(60_000).unwrap();
    ok.validate_for(64).unwrap();

    let cases: Vec<(TrainConfig, &str)> = vec![
        (
            TrainConfig {
                epochs: 0,
                ..ok.clone()
            },
            "epochs",
        ),
        (
            TrainConfig {
                batch_size: 0,
                ..ok.clone()
            },
            "batch size",
        ),
        (
            TrainConfig {
                eval_batch_size: 0,
                ..ok.clone()
            },
            "evaluation batch",
        ),
        (
            TrainConfig {
                lr: 0.0,
                ..ok.clone()
            },
            "learning rate",
        ),
        (
            TrainConfig {
                lr: -0.1,
                ..ok.clone()
            },
            "learning rate",
        ),
        (
            TrainConfig {
                lr: f32::NAN,
                ..ok.clone()
            },
            "learning rate",
        ),
        (
            TrainConfig {
                lr: f32::INFINITY,
                ..ok.clone()
            },
            "learning rate",
        ),
        (
            TrainConfig {
                optim: sgd(1.0),
                ..ok.clone()
            },
            "momentum",
        ),
        (
            TrainConfig {
                optim: sgd(-0.1),
                ..ok.clone()
            },
            "momentum",
        ),
        (
            TrainConfig {
                optim: sgd(f32::NAN),
                ..ok.clone()
            },
            "momentum",
        ),
        (
            TrainConfig {
                log_interval: 0,
                ..ok.clone()
            },
            "log interval",
        ),
        (
            TrainConfig {
                max_steps: Some(0),
                ..ok.clone()
            },
            "max steps",
        ),
        (
            TrainConfig {
                optim: OptimConfig {
                    clip_grad_norm: Some(0.0),
                    ..OptimConfig::default()
                },
                ..ok.clone()
            },
            "clip_grad_norm",
        ),
        (
            TrainConfig {
                optim: OptimConfig {
                    optimizer: Optimizer::Adam {
                        beta1: 0.9,
                        beta2: 1.0,
                        eps: 1e-8,
                        weight_decay: 0.0,
                        decoupled: false,
                    },
                    ..OptimConfig::default()
                },
                ..ok.clone()
            },
            "beta2",
        ),
    ];
    for (cfg, what) in cases {
        let err = cfg.validate().expect_err(what).to_string();
        assert!(err.contains(what), "{what}: {err}");
        // The library names values; only the CLI knows its flags.
        assert!(!err.contains("--"), "{what} names a flag: {err}");
        assert!(!err.contains('\n'), "one line: {err}");
    }
    TrainConfig {
        optim: sgd(0.0),
        ..ok.clone()
    }
    .validate()
    .unwrap();
    let err = ok.validate_for(63).unwrap_err().to_string();
    assert!(
        err.contains("batch size 64 is larger than the training set (63"),
        "{err}"
    );
    assert!(ok.validate_for(0).is_err());
    // Warm-up longer than the run: 2 epochs of 64 images in batches of 64, or 1 max step.
    let warm = TrainConfig {
        epochs: 2,
        optim: OptimConfig {
            warmup_steps: 3,
            ..OptimConfig::default()
        },
        ..ok.clone()
    };
    let err = warm.validate_for(64).unwrap_err().to_string();
    assert!(
        err.contains("warmup_steps 3 is longer than the run (2 steps)"),
        "{err}"
    );
    warm.validate_for(65).unwrap();
    let short = TrainConfig {
        max_steps: Some(1),
        ..warm
    };
    short
        .validate_for(65)
        .expect("max steps cuts the run short without changing its schedule");
}
