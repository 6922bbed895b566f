//! ReLU forward and backward: hand values, a large random case (the parallel path), finite
//! differences, shape errors.

mod common;

use cnn_gpu::backend::Backend;
use common::*;

fn relu<B: Backend>(b: &B, x: &[f32]) -> Vec<f32> {
    let xb = upload(b, x, "x");
    let mut y = zeros(b, x.len(), "y");
    b.relu_forward(x.len(), &xb, &mut y).expect("relu_forward");
    read(b, &y)
}

fn relu_grad<B: Backend>(b: &B, y: &[f32], dy: &[f32]) -> Vec<f32> {
    let (yb, dyb) = (upload(b, y, "y"), upload(b, dy, "dy"));
    let mut dx = zeros(b, y.len(), "dx");
    b.relu_backward(y.len(), &yb, &dyb, &mut dx)
        .expect("relu_backward");
    read(b, &dx)
}

/// max(x, 0) of [−2, −0.5, 0, 0.5, 3] is [0, 0, 0, 0.5, 3]; the gradient passes where the
/// output is positive: dy = [1, 2, 3, 4, 5] gives [0, 0, 0, 4, 5] (zero at x = 0, as PyTorch).
fn hand<B: Backend>(b: &B) {
    let y = relu(b, &[-2.0, -0.5, 0.0, 0.5, 3.0]);
    assert_close(&y, &[0.0, 0.0, 0.0, 0.5, 3.0], 0.0, 0.0, "relu");
    let dx = relu_grad(b, &y, &[1., 2., 3., 4., 5.]);
    assert_close(&dx, &[0.0, 0.0, 0.0, 4.0, 5.0], 0.0, 0.0, "relu gradient");
}
backend_test!(hand_values, hand);

/// A length that is no multiple of any workgroup or chunk size, large enough for the parallel
/// path, against the definition.
fn large<B: Backend>(b: &B) {
    let len = 100_003;
    let x = rand_vec(1, len, -1.0, 1.0);
    let dy = rand_vec(2, len, -1.0, 1.0);
    let y = relu(b, &x);
    let want: Vec<f32> = x.iter().map(|&v| v.max(0.0)).collect();
    assert_close(&y, &want, 0.0, 0.0, "relu, large");
    let want: Vec<f32> = x
        .iter()
        .zip(&dy)
        .map(|(&v, &d)| if v > 0.0 { d } else { 0.0 })
        .collect();
    assert_close(
        &relu_grad(b, &y, &dy),
        &want,
        0.0,
        0.0,
        "relu gradient, large",
    );
}
backend_test!(large_random_matches_definition, large);

/// relu_backward against central differences of loss = Σ r·relu(x), at points at least 0.1
/// from the kink at 0 (a step of 0.01 never crosses it).
fn finite_differences<B: Backend>(b: &B) {
    let x: Vec<f32> = rand_vec(3, 40, -1.0, 1.0)
        .iter()
        .map(|&v| if v >= 0.0 { v + 0.1 } else { v - 0.1 })
        .collect();
    let r = rand_vec(4, 40, -1.0, 1.0);
    let dx = relu_grad(b, &relu(b, &x), &r);
    check_gradient("relu dx", &x, &dx, 0.01, 1e-3, 1e-3, |x| {
        dot(&r, &relu(b, x))
    });
}
backend_test!(backward_matches_finite_differences, finite_differences);

fn wrong_lengths<B: Backend>(b: &B) {
    let (x, short) = (zeros(b, 10, "x"), zeros(b, 9, "short"));
    let (mut y, mut bad) = (zeros(b, 10, "y"), zeros(b, 11, "bad"));
    assert_shape_error(b.relu_forward(10, &short, &mut y), "relu_forward, short x");
    assert_shape_error(b.relu_forward(10, &x, &mut bad), "relu_forward, long y");
    assert_shape_error(
        b.relu_backward(10, &short, &x, &mut y),
        "relu_backward, short y",
    );
    assert_shape_error(
        b.relu_backward(10, &x, &short, &mut y),
        "relu_backward, short dy",
    );
    assert_shape_error(
        b.relu_backward(10, &x, &x, &mut bad),
        "relu_backward, long dx",
    );
}
backend_test!(wrong_buffer_length_is_a_shape_error, wrong_lengths);
