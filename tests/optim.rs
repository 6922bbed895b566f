//! SGD with momentum: two steps by hand, plain SGD, a large random case, shape errors.

mod common;

use cnn_gpu::backend::{Backend, Sgd};
use common::*;

/// lr 0.1, μ 0.9, p0 = [1, −2, 0.5], g1 = [0.5, 1, −1], g2 = [1, 0, 2]:
/// step 1: v1 = g1 = [0.5, 1, −1]; p1 = p0 − 0.1·v1 = [0.95, −2.1, 0.6];
/// step 2: v2 = 0.9·v1 + g2 = [0.45 + 1, 0.9 + 0, −0.9 + 2] = [1.45, 0.9, 1.1];
///         p2 = p1 − 0.1·v2 = [0.95 − 0.145, −2.1 − 0.09, 0.6 − 0.11] = [0.805, −2.19, 0.49].
fn two_steps<B: Backend>(b: &B) {
    let p = Sgd {
        len: 3,
        lr: 0.1,
        momentum: 0.9,
    };
    let mut param = upload(b, &[1.0, -2.0, 0.5], "param");
    let mut v = zeros(b, 3, "velocity");
    let g1 = upload(b, &[0.5, 1.0, -1.0], "g1");
    let g2 = upload(b, &[1.0, 0.0, 2.0], "g2");
    b.sgd_momentum(&p, &mut param, &g1, &mut v).unwrap();
    assert_close(&read(b, &v), &[0.5, 1.0, -1.0], 0.0, 1e-6, "v1");
    assert_close(&read(b, &param), &[0.95, -2.1, 0.6], 0.0, 1e-6, "p1");
    b.sgd_momentum(&p, &mut param, &g2, &mut v).unwrap();
    assert_close(&read(b, &v), &[1.45, 0.9, 1.1], 0.0, 1e-6, "v2");
    assert_close(&read(b, &param), &[0.805, -2.19, 0.49], 0.0, 1e-6, "p2");
}
backend_test!(momentum_two_steps_by_hand, two_steps);

/// Momentum 0 is plain SGD: p ← p − lr·g, and v holds the last gradient.
fn plain<B: Backend>(b: &B) {
    let p = Sgd {
        len: 2,
        lr: 0.5,
        momentum: 0.0,
    };
    let mut param = upload(b, &[1.0, 2.0], "param");
    let mut v = upload(b, &[100.0, 100.0], "velocity");
    b.sgd_momentum(&p, &mut param, &upload(b, &[2.0, -4.0], "g"), &mut v)
        .unwrap();
    assert_close(&read(b, &param), &[0.0, 4.0], 0.0, 0.0, "plain SGD step");
    assert_close(&read(b, &v), &[2.0, -4.0], 0.0, 0.0, "plain SGD velocity");
}
backend_test!(zero_momentum_is_plain_sgd, plain);

/// A large odd length (the parallel path) against the definition, from a non-zero velocity.
fn large<B: Backend>(b: &B) {
    let len = 70_001;
    let p = Sgd {
        len,
        lr: 0.01,
        momentum: 0.9,
    };
    let (p0, g, v0) = (
        rand_vec(1, len, -1.0, 1.0),
        rand_vec(2, len, -1.0, 1.0),
        rand_vec(3, len, -1.0, 1.0),
    );
    let (mut param, mut v) = (upload(b, &p0, "param"), upload(b, &v0, "velocity"));
    b.sgd_momentum(&p, &mut param, &upload(b, &g, "grad"), &mut v)
        .unwrap();
    let want_v: Vec<f32> = v0.iter().zip(&g).map(|(&v, &g)| 0.9 * v + g).collect();
    let want_p: Vec<f32> = p0
        .iter()
        .zip(&want_v)
        .map(|(&p, &v)| p - 0.01 * v)
        .collect();
    assert_close(&read(b, &v), &want_v, 1e-6, 1e-6, "velocity, large");
    assert_close(&read(b, &param), &want_p, 1e-6, 1e-6, "param, large");
}
backend_test!(large_random_matches_definition, large);

fn wrong_lengths<B: Backend>(b: &B) {
    let p = Sgd {
        len: 4,
        lr: 0.1,
        momentum: 0.9,
    };
    let (g, short) = (zeros(b, 4, "g"), zeros(b, 3, "short"));
    let (mut param, mut v, mut bad) = (zeros(b, 4, "param"), zeros(b, 4, "v"), zeros(b, 5, "bad"));
    assert_shape_error(b.sgd_momentum(&p, &mut bad, &g, &mut v), "long param");
    assert_shape_error(b.sgd_momentum(&p, &mut param, &short, &mut v), "short grad");
    assert_shape_error(
        b.sgd_momentum(&p, &mut param, &g, &mut bad),
        "long velocity",
    );
}
backend_test!(wrong_buffer_length_is_a_shape_error, wrong_lengths);
