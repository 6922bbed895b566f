//! `cnn-gpu time`: per-layer timing of a training step, on both backends.

mod common;

use cnn_gpu::backend::Backend;
use cnn_gpu::model::{Layer, ModelSpec, Naming};
use cnn_gpu::profile::time_layers;

fn small_cnn() -> ModelSpec {
    ModelSpec {
        naming: Naming::Numbered,
        input: (1, 8, 6),
        layers: vec![
            Layer::Conv2d {
                in_channels: 1,
                out_channels: 3,
                kernel_h: 3,
                kernel_w: 3,
                stride: 1,
                padding: 1,
            },
            Layer::Relu,
            Layer::MaxPool2d {
                kernel: 2,
                stride: 2,
            },
            Layer::Flatten,
            Layer::Linear {
                in_features: 36,
                out_features: 4,
            },
        ],
    }
}

/// Every layer that runs ops gets a forward time (and a backward time where a gradient flows),
/// Flatten none, the ReLU none of its own (it runs fused into the max-pool after it, layer 2),
/// and the total is the sum of the parts.
fn times_every_layer<B: Backend>(b: &B) {
    let t = time_layers(b, small_cnn(), 5, 3, 1).expect("timing runs");
    assert_eq!((t.batch, t.iterations, t.layers.len()), (5, 3, 5));
    let names: Vec<&str> = t.layers.iter().map(|l| l.layer.as_str()).collect();
    assert_eq!(names[0], "Conv2d(1→3, 3×3, stride 1, padding 1)");
    let fused: Vec<Option<usize>> = t.layers.iter().map(|l| l.fused_into).collect();
    assert_eq!(fused, [None, Some(2), None, None, None]);
    for l in &t.layers {
        if l.layer == "Flatten" || l.fused_into.is_some() {
            assert_eq!((l.forward, l.backward), (0.0, 0.0));
        } else {
            assert!(l.forward > 0.0, "{} forward timed: {t:?}", l.layer);
            assert!(l.backward > 0.0, "{} backward timed: {t:?}", l.layer);
        }
    }
    assert!(t.loss > 0.0 && t.update > 0.0, "{t:?}");
    let parts: f64 =
        t.layers.iter().map(|l| l.forward + l.backward).sum::<f64>() + t.loss + t.update;
    assert!(
        (parts - t.total).abs() <= 1e-9 + 1e-6 * t.total,
        "{parts} vs {}",
        t.total
    );
    assert!(t.wall > 0.0 && t.images_per_sec() > 0.0);
    // Profiling is over: the backend runs on without it.
    assert_eq!(b.finish_profile().expect("nothing to finish"), vec![]);
}
backend_test!(times_every_layer_t, times_every_layer);

fn refuses_zero_sizes<B: Backend>(b: &B) {
    assert!(time_layers(b, small_cnn(), 0, 3, 1).is_err());
    assert!(time_layers(b, small_cnn(), 5, 0, 1).is_err());
}
backend_test!(refuses_zero_sizes_t, refuses_zero_sizes);
