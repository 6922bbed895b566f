//! The training loop on the GPU backend only: a batch too large for the adapter is refused with
//! the largest that fits, buffers do not grow from epoch to epoch, and a lost device fails every
//! later call cleanly.

use cnn_gpu::backend::Backend;
use cnn_gpu::model::Model;
use cnn_gpu::train::{fit, FitOptions, ResidentDataset, TrainConfig};
use cnn_gpu::Error;

use crate::common;
use crate::{small_cnn, synthetic_images};

/// A batch whose activations exceed what the adapter can bind is refused before any work, with
/// the largest batch that fits; evaluation splits its batches to fit on its own.
#[test]
fn batch_too_large_for_the_adapter_is_refused_with_the_largest_that_fits() {
    use cnn_gpu::backend::gpu::GpuOptions;
    // small_cnn's largest activation is conv1's output, 4·8·8 = 256 floats a sample: a 10 KiB
    // limit holds 10 samples.
    let options = GpuOptions {
        max_buffer_bytes: Some(10 * 256 * 4),
        ..GpuOptions::default()
    };
    common::with_gpu_options(options, |gpu| {
        let train = synthetic_images(1, 100, 8, 8);
        let cfg = TrainConfig {
            batch_size: 11,
            epochs: 1,
            ..TrainConfig::default()
        };
        let mut model = Model::new(gpu, small_cnn(), 2).unwrap();
        let err = cnn_gpu::train::train(gpu, &mut model, &train, &train, &cfg, FitOptions::quiet())
            .expect_err("batch 11 does not fit");
        assert!(matches!(err, cnn_gpu::Error::Limit(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("the largest batch that fits is 10"),
            "{err}"
        );

        let cfg = TrainConfig {
            batch_size: 10,
            epochs: 1,
            eval_batch_size: 64,
            ..cfg
        };
        let summary =
            cnn_gpu::train::train(gpu, &mut model, &train, &train, &cfg, FitOptions::quiet())
                .expect("batch 10 fits, and evaluation splits its batches of 64");
        assert_eq!(summary.eval.total, 100);
    });
}

/// The GPU backend holds as many buffers after every epoch as after the first: nothing leaks
/// per step or per epoch (uniforms, bind groups and staging buffers are cached).
#[test]
fn gpu_buffers_do_not_grow_from_epoch_to_epoch() {
    use cnn_gpu::train::{Event, Flow};
    common::with_gpu(|gpu| {
        let train = synthetic_images(1, 100, 8, 8);
        let cfg = TrainConfig {
            epochs: 4,
            batch_size: 16,
            log_interval: 2,
            ..TrainConfig::default()
        };
        let res = ResidentDataset::upload(gpu, &train, 3, "train").unwrap();
        let mut model = Model::new(gpu, small_cnn(), 1).unwrap();
        let before = gpu.live_buffers();
        let mut counts = Vec::new();
        fit(
            gpu,
            &mut model,
            &res,
            &cfg,
            FitOptions::quiet().hook(&mut |e, _| {
                if let Event::EpochEnd { .. } = e {
                    counts.push(gpu.live_buffers());
                }
                Ok(Flow::Continue)
            }),
        )
        .unwrap();
        assert!(counts[0] > before, "the loop's workspaces are counted");
        assert_eq!(counts, vec![counts[0]; 4], "{counts:?}");
    });
}

/// A GPU device lost during a run (a driver reset, a removed card): every later call is an
/// `Error::Gpu` naming the loss, never a panic or a hang.
#[test]
fn a_lost_gpu_device_fails_every_later_call_cleanly() {
    common::with_gpu(|gpu| {
        let mut buf = gpu.upload_f32(&[1.0, 2.0], "x").unwrap();
        assert_eq!(gpu.read_f32(&buf).unwrap(), [1.0, 2.0]);
        gpu.lose_device_for_test();
        let lost = |r: cnn_gpu::Result<()>, what: &str| match r {
            Err(Error::Gpu(m)) => assert!(m.contains("lost"), "{what}: {m}"),
            other => panic!("{what}: {other:?}"),
        };
        lost(gpu.flush(), "flush");
        lost(gpu.read_f32(&buf).map(|_| ()), "read");
        lost(gpu.write_f32(&mut buf, &[3.0, 4.0]), "write");
        lost(gpu.zeros(4, "y").map(|_| ()), "allocation");
    });
}
