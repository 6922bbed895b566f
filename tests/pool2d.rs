//! Max and average pooling, forward and backward: hand-checked cases (the tutorial's 4×4),
//! tie-breaking, overlapping windows, direct loops on random data, finite differences, shape
//! errors; max pooling fused with the ReLU before it, against the two ops run one after the
//! other.

mod common;

use cnn_gpu::backend::{Backend, Pool2d};
use common::*;

fn pool(batch: usize, channels: usize, h: usize, w: usize, kernel: usize, stride: usize) -> Pool2d {
    Pool2d {
        batch,
        channels,
        in_h: h,
        in_w: w,
        kernel,
        stride,
    }
}

fn max_forward<B: Backend>(b: &B, p: &Pool2d, x: &[f32]) -> Vec<f32> {
    let x = upload(b, x, "x");
    let mut out = zeros(b, p.output_len(), "out");
    b.maxpool2d_forward(p, &x, &mut out)
        .expect("maxpool2d_forward");
    read(b, &out)
}

fn avg_forward<B: Backend>(b: &B, p: &Pool2d, x: &[f32]) -> Vec<f32> {
    let x = upload(b, x, "x");
    let mut out = zeros(b, p.output_len(), "out");
    b.avgpool2d_forward(p, &x, &mut out)
        .expect("avgpool2d_forward");
    read(b, &out)
}

fn max_backward<B: Backend>(b: &B, p: &Pool2d, x: &[f32], dout: &[f32]) -> Vec<f32> {
    let (x, dout) = (upload(b, x, "x"), upload(b, dout, "dout"));
    let mut dx = zeros(b, p.input_len(), "dx");
    b.maxpool2d_backward(p, &x, &dout, &mut dx)
        .expect("maxpool2d_backward");
    read(b, &dx)
}

fn avg_backward<B: Backend>(b: &B, p: &Pool2d, dout: &[f32]) -> Vec<f32> {
    let dout = upload(b, dout, "dout");
    let mut dx = zeros(b, p.input_len(), "dx");
    b.avgpool2d_backward(p, &dout, &mut dx)
        .expect("avgpool2d_backward");
    read(b, &dx)
}

/// The definition as direct loops: (max, mean) of every window.
fn reference_forward(p: &Pool2d, x: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (mut max, mut avg) = (Vec::new(), Vec::new());
    for plane in x.chunks(p.in_h * p.in_w) {
        for oh in 0..p.out_h() {
            for ow in 0..p.out_w() {
                let window: Vec<f32> = (0..p.kernel * p.kernel)
                    .map(|k| {
                        plane
                            [(oh * p.stride + k / p.kernel) * p.in_w + ow * p.stride + k % p.kernel]
                    })
                    .collect();
                max.push(window.iter().copied().fold(f32::NEG_INFINITY, f32::max));
                avg.push(
                    (window.iter().map(|&v| v as f64).sum::<f64>() / window.len() as f64) as f32,
                );
            }
        }
    }
    (max, avg)
}

/// The tutorial's 4×4 matrix 1..16 with 2×2 windows, stride 2: the windows are {1,2,5,6},
/// {3,4,7,8}, {9,10,13,14}, {11,12,15,16}, so max gives [[6,8],[14,16]] and the mean
/// [[3.5,5.5],[11.5,13.5]].
fn tutorial<B: Backend>(b: &B) {
    let p = pool(1, 1, 4, 4, 2, 2);
    let x: Vec<f32> = (1..=16).map(|v| v as f32).collect();
    assert_close(
        &max_forward(b, &p, &x),
        &[6., 8., 14., 16.],
        0.0,
        0.0,
        "tutorial max pool",
    );
    assert_close(
        &avg_forward(b, &p, &x),
        &[3.5, 5.5, 11.5, 13.5],
        0.0,
        1e-6,
        "tutorial avg pool",
    );
}
backend_test!(tutorial_4x4, tutorial);

/// Backward on the same 4×4 with dout = [[1,2],[3,4]]: max pooling sends each to its window's
/// maximum (6 at (1,1), 8 at (1,3), 14 at (3,1), 16 at (3,3)); average pooling gives every
/// element of a window a quarter of its dout.
fn tutorial_backward<B: Backend>(b: &B) {
    let p = pool(1, 1, 4, 4, 2, 2);
    let x: Vec<f32> = (1..=16).map(|v| v as f32).collect();
    let dout = [1., 2., 3., 4.];
    #[rustfmt::skip]
    let want_max = [
        0., 0., 0., 0.,
        0., 1., 0., 2.,
        0., 0., 0., 0.,
        0., 3., 0., 4.,
    ];
    assert_close(
        &max_backward(b, &p, &x, &dout),
        &want_max,
        0.0,
        0.0,
        "tutorial max pool dx",
    );
    #[rustfmt::skip]
    let want_avg = [
        0.25, 0.25, 0.5, 0.5,
        0.25, 0.25, 0.5, 0.5,
        0.75, 0.75, 1.0, 1.0,
        0.75, 0.75, 1.0, 1.0,
    ];
    assert_close(
        &avg_backward(b, &p, &dout),
        &want_avg,
        0.0,
        1e-6,
        "tutorial avg pool dx",
    );
}
backend_test!(tutorial_4x4_backward, tutorial_backward);

/// Ties go to the first maximum in row-major window order (PyTorch's rule):
/// - a window of four 5s sends its gradient to its top-left element;
/// - in [[1,3],[3,2]] the 3 at (0,1) comes before the 3 at (1,0).
fn ties<B: Backend>(b: &B) {
    let p = pool(2, 1, 2, 2, 2, 2);
    let x = [5., 5., 5., 5., 1., 3., 3., 2.];
    assert_close(&max_forward(b, &p, &x), &[5., 3.], 0.0, 0.0, "tied max");
    let dx = max_backward(b, &p, &x, &[10., 20.]);
    assert_close(
        &dx,
        &[10., 0., 0., 0., 0., 20., 0., 0.],
        0.0,
        0.0,
        "gradient to the first maximum",
    );
}
backend_test!(max_pool_tie_goes_to_first_maximum, ties);

/// Overlapping windows add up. x = [[1,9,2],[3,4,5]], 2×2 windows at stride 1: both windows'
/// maximum is the 9 at (0,1), so dx there is dout0 + dout1 = 1 + 10. Average pooling: the middle
/// column is in both windows, so it gets (1 + 10)/4, the outer columns 1/4 and 10/4.
fn overlap<B: Backend>(b: &B) {
    let p = pool(1, 1, 2, 3, 2, 1);
    let x = [1., 9., 2., 3., 4., 5.];
    let dout = [1., 10.];
    assert_close(
        &max_forward(b, &p, &x),
        &[9., 9.],
        0.0,
        0.0,
        "overlapping max",
    );
    assert_close(
        &max_backward(b, &p, &x, &dout),
        &[0., 11., 0., 0., 0., 0.],
        0.0,
        0.0,
        "overlapping max dx",
    );
    assert_close(
        &avg_forward(b, &p, &x),
        &[17. / 4., 20. / 4.],
        0.0,
        1e-6,
        "overlapping avg",
    );
    let want = [0.25, 2.75, 2.5, 0.25, 2.75, 2.5];
    assert_close(
        &avg_backward(b, &p, &dout),
        &want,
        0.0,
        1e-6,
        "overlapping avg dx",
    );
}
backend_test!(overlapping_windows_add_up, overlap);

/// Asymmetric shapes: (batch, channels, h, w, kernel, stride), with leftover rows or columns
/// and overlapping windows.
fn shapes() -> Vec<Pool2d> {
    vec![
        pool(2, 3, 6, 5, 2, 2),
        pool(3, 2, 7, 6, 3, 2),
        pool(2, 3, 5, 4, 2, 1),
        pool(1, 5, 8, 9, 3, 3),
        pool(2, 2, 3, 7, 3, 1),
        pool(2, 2, 5, 7, 2, 2), // odd H and W: a row and a column left over
    ]
}

fn forward_matches_loops<B: Backend>(b: &B) {
    for (s, p) in shapes().iter().enumerate() {
        let x = rand_vec(100 + s as u64, p.input_len(), -2.0, 2.0);
        let (max, avg) = reference_forward(p, &x);
        assert_close(
            &max_forward(b, p, &x),
            &max,
            0.0,
            0.0,
            &format!("max pool {p:?}"),
        );
        assert_close(
            &avg_forward(b, p, &x),
            &avg,
            1e-6,
            1e-6,
            &format!("avg pool {p:?}"),
        );
    }
}
backend_test!(forward_matches_direct_loops, forward_matches_loops);

/// Backward against central differences of loss = Σ r·out (dout = r). The inputs are distinct
/// values 0.1 apart, so a ±0.01 step never changes which element is a window's maximum and max
/// pooling is linear around them; both losses are then exact up to f32 rounding.
fn backward_matches_finite_differences<B: Backend>(b: &B) {
    let (eps, atol, rtol) = (0.01, 2e-3, 2e-3);
    for (s, p) in shapes().iter().enumerate() {
        let s = s as u64;
        let x = distinct_vec(200 + s, p.input_len(), 0.1);
        let r = rand_vec(300 + s, p.output_len(), -1.0, 1.0);
        let dx = max_backward(b, p, &x, &r);
        check_gradient(
            &format!("max pool dx of {p:?}"),
            &x,
            &dx,
            eps,
            atol,
            rtol,
            |x| dot(&r, &max_forward(b, p, x)),
        );
        let dx = avg_backward(b, p, &r);
        check_gradient(
            &format!("avg pool dx of {p:?}"),
            &x,
            &dx,
            eps,
            atol,
            rtol,
            |x| dot(&r, &avg_forward(b, p, x)),
        );
    }
}
backend_test!(
    backward_matches_finite_differences_all,
    backward_matches_finite_differences
);

/// dx is overwritten: backward into a buffer full of 7s gives the same as into zeros, also in
/// the rows and columns that no window covers.
fn backward_overwrites<B: Backend>(b: &B) {
    for p in [
        pool(2, 3, 5, 4, 2, 1),
        pool(2, 2, 5, 7, 2, 2),
        pool(1, 2, 7, 8, 3, 2),
    ] {
        let x = upload(b, &distinct_vec(5, p.input_len(), 0.1), "x");
        let dout = upload(b, &rand_vec(6, p.output_len(), -1.0, 1.0), "dout");
        let used = || upload(b, &vec![7.0; p.input_len()], "dx");
        let (mut max_used, mut max_fresh) = (used(), zeros(b, p.input_len(), "dx"));
        b.maxpool2d_backward(&p, &x, &dout, &mut max_used).unwrap();
        b.maxpool2d_backward(&p, &x, &dout, &mut max_fresh).unwrap();
        let what = format!("max pool dx into a used buffer, {p:?}");
        assert_close(&read(b, &max_used), &read(b, &max_fresh), 0.0, 0.0, &what);
        let (mut avg_used, mut avg_fresh) = (used(), zeros(b, p.input_len(), "dx"));
        b.avgpool2d_backward(&p, &dout, &mut avg_used).unwrap();
        b.avgpool2d_backward(&p, &dout, &mut avg_fresh).unwrap();
        let what = format!("avg pool dx into a used buffer, {p:?}");
        assert_close(&read(b, &avg_used), &read(b, &avg_fresh), 0.0, 0.0, &what);
    }
}
backend_test!(backward_overwrites_dx, backward_overwrites);

fn relu_max_forward<B: Backend>(b: &B, p: &Pool2d, x: &[f32]) -> Vec<f32> {
    let x = upload(b, x, "x");
    let mut out = zeros(b, p.output_len(), "out");
    b.relu_maxpool2d_forward(p, &x, &mut out)
        .expect("relu_maxpool2d_forward");
    read(b, &out)
}

fn relu_max_backward<B: Backend>(b: &B, p: &Pool2d, x: &[f32], dout: &[f32]) -> Vec<f32> {
    let (x, dout) = (upload(b, x, "x"), upload(b, dout, "dout"));
    // A used buffer: the fused backward overwrites dx, as the plain one does.
    let mut dx = upload(b, &vec![7.0; p.input_len()], "dx");
    b.relu_maxpool2d_backward(p, &x, &dout, &mut dx)
        .expect("relu_maxpool2d_backward");
    read(b, &dx)
}

/// Max pooling fused with the ReLU before it, by hand: one 2×6 plane, three 2×2 windows.
/// - [[−1, −2], [−3, −0.5]]: every value is negative, so the ReLU'd window is all 0: out 0,
///   and no gradient anywhere (the ReLU blocks all four).
/// - [[0, 3], [3, −1]]: max 3, the first 3 (top right) gets the gradient.
/// - [[−4, 0], [0, −2]]: the ReLU'd maximum is a tie at 0: out 0, no gradient.
fn relu_max_by_hand<B: Backend>(b: &B) {
    let p = pool(1, 1, 2, 6, 2, 2);
    #[rustfmt::skip]
    let x = [
        -1., -2.,   0., 3.,  -4., 0.,
        -3., -0.5,  3., -1.,  0., -2.,
    ];
    assert_close(
        &relu_max_forward(b, &p, &x),
        &[0., 3., 0.],
        0.0,
        0.0,
        "relu + max forward",
    );
    #[rustfmt::skip]
    let want = [
        0., 0.,  0., 20.,  0., 0.,
        0., 0.,  0., 0.,   0., 0.,
    ];
    let dx = relu_max_backward(b, &p, &x, &[10., 20., 30.]);
    assert_close(&dx, &want, 0.0, 0.0, "relu + max backward");
}
backend_test!(relu_max_pool_by_hand, relu_max_by_hand);

/// The fused op is the ReLU then the max-pool, bit for bit, forward and backward, on every
/// asymmetric shape (overlapping windows and leftover rows included), on data with negative
/// windows, ties at zero, ties between positives and NaNs (which the ReLU turns into 0).
fn relu_max_equals_two_ops<B: Backend>(b: &B) {
    for (s, p) in shapes().iter().enumerate() {
        let s = s as u64;
        let mut x = rand_vec(400 + s, p.input_len(), -1.0, 1.0);
        for (i, v) in x.iter_mut().enumerate() {
            match i % 13 {
                3 => *v = 0.0,
                7 => *v = f32::NAN,
                _ => {}
            }
        }
        for i in (5..x.len()).step_by(9) {
            x[i] = x[i - 1];
        }
        let dout = rand_vec(500 + s, p.output_len(), -1.0, 1.0);
        let len = p.input_len();
        let (xb, doutb) = (upload(b, &x, "x"), upload(b, &dout, "dout"));
        let mut relu = zeros(b, len, "relu");
        b.relu_forward(len, &xb, &mut relu).unwrap();
        let mut out = zeros(b, p.output_len(), "out");
        b.maxpool2d_forward(p, &relu, &mut out).unwrap();
        let mut dpool = zeros(b, len, "dpool");
        b.maxpool2d_backward(p, &relu, &doutb, &mut dpool).unwrap();
        let mut dx = zeros(b, len, "dx");
        b.relu_backward(len, &relu, &dpool, &mut dx).unwrap();
        let what = format!("relu + max forward, {p:?}");
        assert_close(&relu_max_forward(b, p, &x), &read(b, &out), 0.0, 0.0, &what);
        let what = format!("relu + max backward, {p:?}");
        assert_close(
            &relu_max_backward(b, p, &x, &dout),
            &read(b, &dx),
            0.0,
            0.0,
            &what,
        );
    }
}
backend_test!(
    relu_max_pool_equals_relu_then_max_pool,
    relu_max_equals_two_ops
);

fn wrong_lengths<B: Backend>(b: &B) {
    let p = pool(2, 3, 6, 5, 2, 2);
    let x = zeros(b, p.input_len(), "x");
    let dout = zeros(b, p.output_len(), "dout");
    let short = zeros(b, 3, "short");
    let mut out = zeros(b, p.output_len(), "out");
    let mut dx = zeros(b, p.input_len(), "dx");
    let mut bad = zeros(b, p.output_len() + 1, "bad");
    assert_shape_error(
        b.maxpool2d_forward(&p, &short, &mut out),
        "max forward, short x",
    );
    assert_shape_error(
        b.maxpool2d_forward(&p, &x, &mut bad),
        "max forward, long out",
    );
    assert_shape_error(
        b.avgpool2d_forward(&p, &short, &mut out),
        "avg forward, short x",
    );
    assert_shape_error(
        b.avgpool2d_forward(&p, &x, &mut bad),
        "avg forward, long out",
    );
    assert_shape_error(
        b.maxpool2d_backward(&p, &short, &dout, &mut dx),
        "max backward, short x",
    );
    assert_shape_error(
        b.maxpool2d_backward(&p, &x, &short, &mut dx),
        "max backward, short dout",
    );
    assert_shape_error(
        b.maxpool2d_backward(&p, &x, &dout, &mut bad),
        "max backward, wrong dx",
    );
    assert_shape_error(
        b.avgpool2d_backward(&p, &short, &mut dx),
        "avg backward, short dout",
    );
    assert_shape_error(
        b.avgpool2d_backward(&p, &dout, &mut bad),
        "avg backward, wrong dx",
    );
    assert_shape_error(
        b.relu_maxpool2d_forward(&p, &short, &mut out),
        "relu + max forward, short x",
    );
    assert_shape_error(
        b.relu_maxpool2d_forward(&p, &x, &mut bad),
        "relu + max forward, long out",
    );
    assert_shape_error(
        b.relu_maxpool2d_backward(&p, &x, &short, &mut dx),
        "relu + max backward, short dout",
    );
    assert_shape_error(
        b.relu_maxpool2d_backward(&p, &x, &dout, &mut bad),
        "relu + max backward, wrong dx",
    );
}
backend_test!(wrong_buffer_length_is_a_shape_error, wrong_lengths);
