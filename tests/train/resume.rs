//! Resuming inside an epoch: a run stopped by the hook and resumed with `resume_within` equals
//! an uninterrupted one; resume points outside the epoch are refused.

use cnn_gpu::backend::Backend;
use cnn_gpu::model::Model;
use cnn_gpu::train::{fit, FitOptions, ResidentDataset, TrainConfig};
use cnn_gpu::Error;

use crate::backend_test;
use crate::common;
use crate::{small_cnn, synthetic_images};

/// Stopping inside an epoch (the hook's Flow::Stop) hands out the steps done and the running
/// loss window; a model rebuilt from the parameters and momentum then, resumed with
/// `resume_within`, logs exactly the losses of a run never stopped and ends with the same
/// parameters (to f32 rounding of the separate runs: none, bit for bit, on one backend).
fn stop_and_resume_mid_epoch_equals_an_uninterrupted_run<B: Backend>(b: &B) {
    use cnn_gpu::train::{Event, Flow, MidEpoch};
    let train = synthetic_images(5, 100, 8, 8);
    // 100 images in batches of 16: 7 steps an epoch, losses after batches 3 and 6.
    let cfg = TrainConfig {
        epochs: 2,
        batch_size: 16,
        lr: 0.02,
        log_interval: 3,
        seed: 9,
        ..TrainConfig::default()
    };
    let res = ResidentDataset::upload(b, &train, 3, "train").unwrap();
    let mut whole = Model::new(b, small_cnn(), cfg.seed).unwrap();
    let all = fit(b, &mut whole, &res, &cfg, FitOptions::quiet()).unwrap();
    assert_eq!(all.losses.len(), 4);

    // Stop after step 11 in all: step 4 of epoch 2, one step into a loss window.
    let mut model = Model::new(b, small_cnn(), cfg.seed).unwrap();
    let mut stopped = None;
    let err = fit(
        b,
        &mut model,
        &res,
        &cfg,
        FitOptions::quiet().hook(&mut |e, _| {
            match *e {
                Event::Step { total: 11, .. } => return Ok(Flow::Stop),
                Event::Stopped { epoch, at } => stopped = Some((epoch, at)),
                _ => {}
            }
            Ok(Flow::Continue)
        }),
    )
    .expect_err("stopped");
    assert!(
        matches!(err, Error::Interrupted { epoch: 2, step: 4 }),
        "{err:?}"
    );
    let (epoch, at) = stopped.expect("the hook saw the stop");
    assert_eq!((epoch, at.steps_done, at.window.steps), (2, 4, 1));
    assert!(at.window.sum > 0.0);

    let mut resumed = Model::with_params(b, small_cnn(), &model.read_params(b).unwrap()).unwrap();
    resumed
        .set_velocity(b, &model.read_velocity(b).unwrap())
        .unwrap();
    let rest_cfg = TrainConfig {
        first_epoch: 2,
        resume_within: Some(MidEpoch {
            steps_done: at.steps_done,
            window: at.window,
        }),
        ..cfg.clone()
    };
    let rest = fit(b, &mut resumed, &res, &rest_cfg, FitOptions::quiet()).unwrap();
    assert_eq!(rest.epochs.len(), 1);
    assert_eq!(rest.epochs[0].steps, 3, "steps 5 to 7 of epoch 2");
    assert_eq!(
        rest.losses,
        all.losses[3..],
        "the batch-6 line, window included"
    );
    assert_eq!(
        resumed.read_params(b).unwrap(),
        whole.read_params(b).unwrap()
    );
}
backend_test!(
    stop_and_resume_mid_epoch_equals_an_uninterrupted_run_t,
    stop_and_resume_mid_epoch_equals_an_uninterrupted_run
);

/// A resume point that does not fit the epoch is refused.
#[test]
fn resume_points_outside_the_epoch_are_refused() {
    use cnn_gpu::train::{LossWindow, MidEpoch};
    let window = LossWindow { sum: 1.0, steps: 1 };
    for (steps_done, steps) in [(0, 0), (7, 1), (3, 4)] {
        let cfg = TrainConfig {
            batch_size: 16,
            resume_within: Some(MidEpoch {
                steps_done,
                window: LossWindow { steps, ..window },
            }),
            ..TrainConfig::default()
        };
        // 100 images: 7 steps an epoch.
        let err = cfg.validate_for(100).unwrap_err().to_string();
        assert!(err.contains("cannot resume after step"), "{err}");
    }
}
