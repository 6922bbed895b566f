//! Batch normalisation (BatchNorm2d and BatchNorm1d), forward in training and evaluation and
//! backward, on both backends: against PyTorch's values from `scripts/batchnorm_reference.py`
//! (torch 2.15, its printed values pasted below), by finite differences, and its argument checks.
//! The GPU against the CPU on random inputs, folded grids too, is `tests/gpu_vs_cpu.rs`'s.

mod common;

use cnn_gpu::backend::{Backend, BatchNorm, Channels};
use common::*;

/// The reference script's inputs: x[i] = ((37 i) mod 23 − 11) / 8 and
/// dy[i] = ((17 i) mod 13 − 6) / 4, exact in f32.
fn inputs(len: usize) -> (Vec<f32>, Vec<f32>) {
    let x = (0..len)
        .map(|i| ((37 * i) % 23) as f32 / 8.0 - 11.0 / 8.0)
        .collect();
    let dy = (0..len)
        .map(|i| ((17 * i) % 13) as f32 / 4.0 - 6.0 / 4.0)
        .collect();
    (x, dy)
}

/// One case of the script: its shape as [outer, channels, inner], affine parameters and every
/// value PyTorch printed.
struct Case {
    shape: Channels,
    weight: &'static [f32],
    bias: &'static [f32],
    y_train: &'static [f32],
    running_mean: &'static [f32],
    running_var: &'static [f32],
    dx: &'static [f32],
    dweight: &'static [f32],
    dbias: &'static [f32],
    y_eval: &'static [f32],
}

/// BatchNorm2d(2) on [3, 2, 2, 2].
const BN2D: Case = Case {
    shape: Channels {
        outer: 3,
        channels: 2,
        inner: 4,
    },
    weight: &[1.5, -0.5],
    bias: &[0.25, -1.0],
    y_train: &[
        -2.4202094,
        0.63145846,
        -1.330328,
        1.7213398,
        -1.0913174,
        -0.38686863,
        -1.4826779,
        -0.77822906,
        1.9393162,
        -0.02247034,
        -1.9842567,
        1.0674111,
        -0.85650116,
        -1.9523104,
        -1.2478616,
        -0.5434128,
        1.2853873,
        -0.6763992,
        2.3752687,
        0.4134822,
        -0.6216849,
        -1.7174941,
        -1.0130453,
        -0.30859655,
    ],
    running_mean: &[0.015625, -0.027083335],
    running_var: &[0.9807173, 0.9695549],
    dx: &[
        -1.0538803,
        -1.3856593,
        1.6924582,
        1.360679,
        0.35166493,
        -0.27019596,
        -0.9030861,
        0.51012725,
        -1.4032925,
        1.674825,
        -0.91444063,
        -1.2462195,
        -0.58616155,
        0.8160226,
        0.1941617,
        -0.4276992,
        1.6571918,
        -0.9320736,
        -1.2638527,
        1.8142645,
        0.51108634,
        -0.12180387,
        -0.7436648,
        0.66954863,
    ],
    dweight: &[7.0206523, -0.058704067],
    dbias: &[1.75, -2.25],
    y_eval: &[
        -1.8563335,
        0.7943334,
        -0.9096668,
        1.7410002,
        -0.95027924,
        -0.37901884,
        -1.2676461,
        -0.69638574,
        1.9303335,
        0.22633334,
        -1.4776669,
        1.1730001,
        -0.7598591,
        -1.6484864,
        -1.0772259,
        -0.5059656,
        1.3623334,
        -0.3416667,
        2.3090003,
        0.605,
        -0.56943893,
        -1.4580662,
        -0.88680583,
        -0.31554547,
    ],
};

/// BatchNorm1d(3) on [4, 3].
const BN1D: Case = Case {
    shape: Channels {
        outer: 4,
        channels: 3,
        inner: 1,
    },
    weight: &[0.5, 2.0, -1.0],
    bias: &[0.0, 1.0, 0.5],
    y_train: &[
        -0.7940027,
        3.6832385,
        1.2085686,
        0.5469796,
        1.8944128,
        1.723891,
        0.26466757,
        0.105587065,
        -0.72389114,
        -0.017644504,
        -1.6832387,
        -0.20856854,
    ],
    running_mean: &[0.003125, -0.0375, -0.00625],
    running_var: &[1.0045573, 0.94166666, 1.0255208],
    dx: &[
        -0.12236028,
        4.2968797e-05,
        -0.2336074,
        -0.18860902,
        1.4314047e-05,
        0.13524266,
        0.04078676,
        -1.4314047e-05,
        -0.13524266,
        0.27018255,
        -4.2968797e-05,
        0.2336074,
    ],
    dweight: &[4.649327, 1.1180161, -0.8373992],
    dbias: &[2.25, -3.5, 0.5],
    y_eval: &[
        -0.6874943,
        1.8501647,
        1.2344338,
        0.49730313,
        0.81966203,
        1.7281708,
        0.24787208,
        -0.21084052,
        -0.6170799,
        -0.001558944,
        -1.241343,
        -0.12334293,
    ],
};

/// Training forward, backward and evaluation forward of one case, against PyTorch.
fn against_pytorch<B: Backend>(b: &B, c: &Case) {
    let p = BatchNorm::new(c.shape);
    let n = c.shape.len();
    let ch = c.shape.channels;
    let (x, dy) = inputs(n);
    let (xb, dyb) = (upload(b, &x, "x"), upload(b, &dy, "dy"));
    let (w, bias) = (upload(b, c.weight, "w"), upload(b, c.bias, "b"));
    let mut stats = zeros(b, 2 * ch, "stats");
    let initial = [vec![0.0; ch], vec![1.0; ch]].concat();
    let mut running = upload(b, &initial, "running");
    let mut y = zeros(b, n, "y");
    b.batch_norm_stats(&p, &xb, &mut stats, &mut running)
        .unwrap();
    b.batch_norm_forward(&p, &xb, &stats, &w, &bias, &mut y)
        .unwrap();
    assert_close(&read(b, &y), c.y_train, 1e-5, 1e-5, "training forward");
    let r = read(b, &running);
    assert_close(&r[..ch], c.running_mean, 1e-6, 1e-5, "running mean");
    assert_close(
        &r[ch..],
        c.running_var,
        1e-6,
        1e-5,
        "running var (unbiased)",
    );

    let (mut dw, mut db, mut dx) = (zeros(b, ch, "dw"), zeros(b, ch, "db"), zeros(b, n, "dx"));
    b.batch_norm_backward_params(&p, &xb, &dyb, &stats, &mut dw, &mut db)
        .unwrap();
    b.batch_norm_backward_input(&p, &xb, &dyb, &stats, &w, &dw, &db, &mut dx)
        .unwrap();
    assert_close(&read(b, &dw), c.dweight, 1e-5, 1e-5, "dweight");
    assert_close(&read(b, &db), c.dbias, 1e-5, 1e-5, "dbias");
    assert_close(&read(b, &dx), c.dx, 2e-5, 1e-4, "dx");

    // Evaluation: the running statistics PyTorch updated normalise.
    b.batch_norm_forward(&p, &xb, &running, &w, &bias, &mut y)
        .unwrap();
    assert_close(&read(b, &y), c.y_eval, 1e-5, 1e-5, "evaluation forward");
}

fn batchnorm2d_matches_pytorch<B: Backend>(b: &B) {
    against_pytorch(b, &BN2D);
}
backend_test!(batchnorm2d_pytorch, batchnorm2d_matches_pytorch);

fn batchnorm1d_matches_pytorch<B: Backend>(b: &B) {
    against_pytorch(b, &BN1D);
}
backend_test!(batchnorm1d_pytorch, batchnorm1d_matches_pytorch);

/// Σ r·y of a training-mode forward (batch statistics), in f64.
fn train_loss<B: Backend>(
    b: &B,
    p: &BatchNorm,
    x: &[f32],
    w: &[f32],
    bias: &[f32],
    r: &[f32],
) -> f64 {
    let ch = p.shape.channels;
    let mut stats = zeros(b, 2 * ch, "stats");
    let mut running = zeros(b, 2 * ch, "running");
    let mut y = zeros(b, x.len(), "y");
    let (xb, wb, bb) = (upload(b, x, "x"), upload(b, w, "w"), upload(b, bias, "b"));
    b.batch_norm_stats(p, &xb, &mut stats, &mut running)
        .unwrap();
    b.batch_norm_forward(p, &xb, &stats, &wb, &bb, &mut y)
        .unwrap();
    dot(r, &read(b, &y))
}

/// Every gradient of a training-mode batch norm against central differences, on a shape whose
/// channel is no multiple of the workgroup (outer 5, 3 channels, inner 7 × 11).
fn finite_differences<B: Backend>(b: &B) {
    let p = BatchNorm::new(Channels {
        outer: 5,
        channels: 3,
        inner: 77,
    });
    let n = p.shape.len();
    let x = rand_vec(1, n, -2.0, 2.0);
    let r = rand_vec(2, n, -1.0, 1.0);
    let w = vec![0.7, -1.3, 2.0];
    let bias = vec![0.1, 0.2, -0.3];
    let (xb, rb) = (upload(b, &x, "x"), upload(b, &r, "r"));
    let mut stats = zeros(b, 6, "stats");
    let mut running = zeros(b, 6, "running");
    b.batch_norm_stats(&p, &xb, &mut stats, &mut running)
        .unwrap();
    let wb = upload(b, &w, "w");
    let (mut dw, mut db, mut dx) = (zeros(b, 3, "dw"), zeros(b, 3, "db"), zeros(b, n, "dx"));
    b.batch_norm_backward_params(&p, &xb, &rb, &stats, &mut dw, &mut db)
        .unwrap();
    b.batch_norm_backward_input(&p, &xb, &rb, &stats, &wb, &dw, &db, &mut dx)
        .unwrap();
    check_gradient("dx", &x, &read(b, &dx), 1e-2, 2e-3, 2e-2, |v| {
        train_loss(b, &p, v, &w, &bias, &r)
    });
    check_gradient("dweight", &w, &read(b, &dw), 1e-2, 2e-3, 2e-2, |v| {
        train_loss(b, &p, &x, v, &bias, &r)
    });
    check_gradient("dbias", &bias, &read(b, &db), 1e-2, 2e-3, 2e-2, |v| {
        train_loss(b, &p, &x, &w, v, &r)
    });
}
backend_test!(finite_differences_t, finite_differences);

/// One value per channel has no variance: refused in training as PyTorch refuses it, and wrong
/// buffer lengths are shape errors.
fn checks<B: Backend>(b: &B) {
    let one = BatchNorm::new(Channels {
        outer: 1,
        channels: 4,
        inner: 1,
    });
    let x = upload(b, &[1.0, 2.0, 3.0, 4.0], "x");
    let (mut stats, mut running) = (zeros(b, 8, "stats"), zeros(b, 8, "running"));
    match b.batch_norm_stats(&one, &x, &mut stats, &mut running) {
        Err(cnn_gpu::Error::InvalidParams(msg)) => {
            assert!(msg.contains("more than one value per channel"), "{msg}")
        }
        other => panic!("expected InvalidParams, got {other:?}"),
    }
    let p = BatchNorm::new(Channels {
        outer: 2,
        channels: 2,
        inner: 1,
    });
    let mut short = zeros(b, 3, "short");
    assert_shape_error(
        b.batch_norm_stats(&p, &x, &mut short, &mut running),
        "stats of the wrong length",
    );
    let w = upload(b, &[1.0, 1.0], "w");
    let mut y = zeros(b, 4, "y");
    assert_shape_error(
        b.batch_norm_forward(&p, &x, &stats, &w, &x, &mut y),
        "bias of the wrong length",
    );
}
backend_test!(argument_checks, checks);
