//! conv2d forward and backward (input, weight, bias): hand-checked cases, a direct-loop reference
//! on random data, finite differences over asymmetric shapes, and shape errors.

mod common;

use cnn_gpu::backend::{Backend, Conv2d};
use common::*;

#[allow(clippy::too_many_arguments)] // one per Conv2d field, named at each call
fn conv(
    batch: usize,
    cin: usize,
    h: usize,
    w: usize,
    cout: usize,
    k: (usize, usize),
    stride: usize,
    padding: usize,
) -> Conv2d {
    Conv2d {
        batch,
        in_channels: cin,
        in_h: h,
        in_w: w,
        out_channels: cout,
        kernel_h: k.0,
        kernel_w: k.1,
        stride,
        padding,
    }
}

/// Runs conv2d_forward on host data.
fn forward<B: Backend>(b: &B, p: &Conv2d, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
    let (x, w, bias) = (
        upload(b, x, "x"),
        upload(b, w, "w"),
        upload(b, bias, "bias"),
    );
    let mut out = zeros(b, p.output_len(), "out");
    b.conv2d_forward(p, &x, &w, &bias, &mut out)
        .expect("conv2d_forward");
    read(b, &out)
}

/// The definition, as direct loops in f64.
fn reference_forward(p: &Conv2d, x: &[f32], w: &[f32], bias: &[f32]) -> Vec<f32> {
    let (oh_n, ow_n) = (p.out_h(), p.out_w());
    let mut out = vec![0.0; p.output_len()];
    for n in 0..p.batch {
        for co in 0..p.out_channels {
            for oh in 0..oh_n {
                for ow in 0..ow_n {
                    let mut acc = bias[co] as f64;
                    for ci in 0..p.in_channels {
                        for kh in 0..p.kernel_h {
                            for kw in 0..p.kernel_w {
                                let ih = (oh * p.stride + kh) as isize - p.padding as isize;
                                let iw = (ow * p.stride + kw) as isize - p.padding as isize;
                                if ih < 0
                                    || iw < 0
                                    || ih >= p.in_h as isize
                                    || iw >= p.in_w as isize
                                {
                                    continue;
                                }
                                let xi = ((n * p.in_channels + ci) * p.in_h + ih as usize) * p.in_w
                                    + iw as usize;
                                let wi =
                                    ((co * p.in_channels + ci) * p.kernel_h + kh) * p.kernel_w + kw;
                                acc += x[xi] as f64 * w[wi] as f64;
                            }
                        }
                    }
                    out[((n * p.out_channels + co) * oh_n + oh) * ow_n + ow] = acc as f32;
                }
            }
        }
    }
    out
}

const TUTORIAL_X: [f32; 9] = [1., 2., 3., 4., 5., 6., 7., 8., 9.];
const DIAGONAL_W: [f32; 9] = [1., 0., 0., 0., 1., 0., 0., 0., 1.];

/// The tutorial's example: [[1,2,3],[4,5,6],[7,8,9]] ⋆ the 3×3 identity-diagonal kernel picks
/// x[i−1+k, j−1+k] for k = 0..3 and sums them. Without padding the one window is 1 + 5 + 9 = 15.
fn tutorial_no_padding<B: Backend>(b: &B) {
    let p = conv(1, 1, 3, 3, 1, (3, 3), 1, 0);
    let out = forward(b, &p, &TUTORIAL_X, &DIAGONAL_W, &[0.0]);
    assert_close(&out, &[15.0], 0.0, 1e-6, "tutorial conv, padding 0");
}
backend_test!(tutorial_no_padding_gives_15, tutorial_no_padding);

/// With padding 1 each output is the sum of the diagonal through (i, j), zero outside:
/// (0,0) = 0+1+5 = 6, (0,1) = 0+2+6 = 8, (0,2) = 0+3+0 = 3, (1,0) = 0+4+8 = 12, (1,1) = 1+5+9 = 15,
/// (1,2) = 2+6+0 = 8, (2,0) = 0+7+0 = 7, (2,1) = 4+8+0 = 12, (2,2) = 5+9+0 = 14.
/// Then the backward ops with dout = ones:
/// - dx[i,j] counts the outputs that read x[i,j] (those (i+1−k, j+1−k) inside the 3×3 grid):
///   [[2,2,1],[2,3,2],[1,2,2]];
/// - dw[kh,kw] sums x over what that weight sees, x[oh−1+kh, ow−1+kw]: dw[0,0] = 1+2+4+5 = 12,
///   dw[0,1] = 1+…+6 = 21, dw[0,2] = 2+3+5+6 = 16, dw[1,0] = 1+2+4+5+7+8 = 27, dw[1,1] = 45,
///   dw[1,2] = 2+3+5+6+8+9 = 33, dw[2,0] = 4+5+7+8 = 24, dw[2,1] = 4+…+9 = 39, dw[2,2] = 5+6+8+9 = 28;
/// - dbias = 9 outputs · 1 = 9.
fn tutorial_padding_1<B: Backend>(b: &B) {
    let p = conv(1, 1, 3, 3, 1, (3, 3), 1, 1);
    let out = forward(b, &p, &TUTORIAL_X, &DIAGONAL_W, &[0.0]);
    let want = [6., 8., 3., 12., 15., 8., 7., 12., 14.];
    assert_close(&out, &want, 0.0, 1e-6, "tutorial conv, padding 1");

    let (x, w, dout) = (
        upload(b, &TUTORIAL_X, "x"),
        upload(b, &DIAGONAL_W, "w"),
        upload(b, &[1.0; 9], "dout"),
    );
    let mut dx = zeros(b, 9, "dx");
    b.conv2d_backward_input(&p, &dout, &w, &mut dx).unwrap();
    assert_close(
        &read(b, &dx),
        &[2., 2., 1., 2., 3., 2., 1., 2., 2.],
        0.0,
        1e-6,
        "tutorial dx",
    );
    let mut dw = zeros(b, 9, "dw");
    b.conv2d_backward_weight(&p, &x, &dout, &mut dw).unwrap();
    assert_close(
        &read(b, &dw),
        &[12., 21., 16., 27., 45., 33., 24., 39., 28.],
        0.0,
        1e-6,
        "tutorial dw",
    );
    let mut dbias = zeros(b, 1, "dbias");
    b.conv2d_backward_bias(&p, &dout, &mut dbias).unwrap();
    assert_close(&read(b, &dbias), &[9.0], 0.0, 1e-6, "tutorial dbias");
}
backend_test!(tutorial_padding_1_gives_6_8_3, tutorial_padding_1);

/// Bias, two input channels and stride 2, by hand: x[0] is 1..20 as 4×5, x[1] is all 10;
/// a 2×2 kernel of ones on channel 0 and 0.5 on channel 1; bias 100. Each window sums a 2×2
/// block of channel 0 and adds 4·10·0.5 = 20 and 100: the blocks at rows 0–1, columns 0–1 and
/// 2–3 sum 1+2+6+7 = 16 and 3+4+8+9 = 24; at rows 2–3, 11+12+16+17 = 56 and 13+14+18+19 = 64.
/// Column 4 is left over (OW = (5 − 2)/2 + 1 = 2).
fn bias_channels_stride<B: Backend>(b: &B) {
    let p = conv(1, 2, 4, 5, 1, (2, 2), 2, 0);
    let mut x: Vec<f32> = (1..=20).map(|v| v as f32).collect();
    x.extend([10.0; 20]);
    let w = [1., 1., 1., 1., 0.5, 0.5, 0.5, 0.5];
    let out = forward(b, &p, &x, &w, &[100.0]);
    assert_close(
        &out,
        &[136., 144., 176., 184.],
        0.0,
        1e-6,
        "stride-2 conv with bias",
    );
}
backend_test!(bias_two_channels_stride_2, bias_channels_stride);

/// Asymmetric shapes: (batch, cin, h, w, cout, (kh, kw), stride, padding).
fn shapes() -> Vec<Conv2d> {
    vec![
        conv(2, 3, 5, 7, 4, (3, 3), 1, 1),
        conv(3, 2, 6, 5, 5, (2, 3), 2, 0),
        conv(2, 3, 7, 6, 2, (5, 5), 2, 2),
        conv(2, 5, 4, 3, 3, (1, 1), 1, 0), // pointwise: the image is its own im2col matrix
        conv(1, 3, 5, 4, 2, (1, 1), 2, 1),
        conv(2, 1, 3, 8, 3, (3, 2), 1, 2),
        conv(2, 3, 9, 10, 4, (3, 3), 3, 1),
        // Stride 1 with an output as wide as the input (KW = 2·pad + 1) takes im2col's
        // one-copy-per-row path; these reach its edges: a kernel taller than wide, an input
        // shorter than the kernel, no padding, an input one column wide.
        conv(2, 2, 6, 5, 3, (5, 3), 1, 1),
        conv(1, 2, 2, 5, 3, (5, 5), 1, 2),
        conv(2, 3, 5, 4, 2, (3, 1), 1, 0),
        conv(2, 2, 3, 1, 2, (5, 5), 1, 2), // W = 1: some kernel columns see no input at all
    ]
}

/// The forward pass against the direct loops on random data.
fn forward_matches_loops<B: Backend>(b: &B) {
    for (s, p) in shapes().iter().enumerate() {
        let s = s as u64;
        let x = rand_vec(10 + s, p.input_len(), -1.0, 1.0);
        let w = rand_vec(20 + s, p.weight_len(), -1.0, 1.0);
        let bias = rand_vec(30 + s, p.out_channels, -1.0, 1.0);
        let got = forward(b, p, &x, &w, &bias);
        assert_close(
            &got,
            &reference_forward(p, &x, &w, &bias),
            1e-5,
            1e-5,
            &format!("forward {p:?}"),
        );
    }
}
backend_test!(forward_matches_direct_loops, forward_matches_loops);

/// Every backward op against central differences of loss = Σ r·out, so dout = r. The loss is
/// linear in x, w and bias, so the differences are exact up to f32 rounding of the outputs;
/// eps = 0.05 keeps that rounding small next to the step.
fn backward_matches_finite_differences<B: Backend>(b: &B) {
    let (eps, atol, rtol) = (0.05, 2e-3, 2e-3);
    for (s, p) in shapes().iter().enumerate() {
        let s = s as u64;
        let x = rand_vec(40 + s, p.input_len(), -1.0, 1.0);
        let w = rand_vec(50 + s, p.weight_len(), -1.0, 1.0);
        let bias = rand_vec(60 + s, p.out_channels, -1.0, 1.0);
        let r = rand_vec(70 + s, p.output_len(), -1.0, 1.0);

        let (xb, wb, rb) = (
            upload(b, &x, "x"),
            upload(b, &w, "w"),
            upload(b, &r, "dout"),
        );
        let mut dx = zeros(b, p.input_len(), "dx");
        let mut dw = zeros(b, p.weight_len(), "dw");
        let mut dbias = zeros(b, p.out_channels, "dbias");
        b.conv2d_backward_input(p, &rb, &wb, &mut dx).unwrap();
        b.conv2d_backward_weight(p, &xb, &rb, &mut dw).unwrap();
        b.conv2d_backward_bias(p, &rb, &mut dbias).unwrap();

        let what = |t: &str| format!("{t} of {p:?}");
        check_gradient(&what("dx"), &x, &read(b, &dx), eps, atol, rtol, |x| {
            dot(&r, &forward(b, p, x, &w, &bias))
        });
        check_gradient(&what("dw"), &w, &read(b, &dw), eps, atol, rtol, |w| {
            dot(&r, &forward(b, p, &x, w, &bias))
        });
        check_gradient(
            &what("dbias"),
            &bias,
            &read(b, &dbias),
            eps,
            atol,
            rtol,
            |bias| dot(&r, &forward(b, p, &x, &w, bias)),
        );
    }
}
backend_test!(
    backward_matches_finite_differences_all,
    backward_matches_finite_differences
);

/// Outputs are overwritten, never accumulated: a second backward call into the same buffers
/// gives the same gradients.
fn backward_overwrites<B: Backend>(b: &B) {
    let p = conv(2, 3, 5, 7, 4, (3, 3), 2, 1);
    let (x, w) = (
        upload(b, &rand_vec(1, p.input_len(), -1.0, 1.0), "x"),
        upload(b, &rand_vec(2, p.weight_len(), -1.0, 1.0), "w"),
    );
    let dout = upload(b, &rand_vec(3, p.output_len(), -1.0, 1.0), "dout");
    let mut dx = upload(b, &vec![7.0; p.input_len()], "dx");
    let mut dw = upload(b, &vec![7.0; p.weight_len()], "dw");
    let mut dbias = upload(b, &vec![7.0; p.out_channels], "dbias");
    let mut first = Vec::new();
    for round in 0..2 {
        b.conv2d_backward_input(&p, &dout, &w, &mut dx).unwrap();
        b.conv2d_backward_weight(&p, &x, &dout, &mut dw).unwrap();
        b.conv2d_backward_bias(&p, &dout, &mut dbias).unwrap();
        let all = [read(b, &dx), read(b, &dw), read(b, &dbias)].concat();
        if round == 0 {
            first = all;
        } else {
            assert_close(&all, &first, 0.0, 0.0, "second backward call");
        }
    }
    // And the first call was not offset by the 7s that were in the buffers.
    let mut fresh = zeros(b, p.out_channels, "dbias");
    b.conv2d_backward_bias(&p, &dout, &mut fresh).unwrap();
    assert_close(
        &read(b, &dbias),
        &read(b, &fresh),
        0.0,
        0.0,
        "dbias into a used buffer",
    );
}
backend_test!(backward_overwrites_outputs, backward_overwrites);

/// A buffer of the wrong length is an `Error::Shape`, for each op and each argument.
fn wrong_lengths<B: Backend>(b: &B) {
    let p = conv(2, 3, 5, 7, 4, (3, 3), 1, 1);
    let x = zeros(b, p.input_len(), "x");
    let w = zeros(b, p.weight_len(), "w");
    let bias = zeros(b, p.out_channels, "bias");
    let dout = zeros(b, p.output_len(), "dout");
    let short = zeros(b, 5, "short");
    let mut out = zeros(b, p.output_len(), "out");
    let mut bad = zeros(b, p.output_len() + 1, "bad");
    assert_shape_error(
        b.conv2d_forward(&p, &short, &w, &bias, &mut out),
        "forward, short x",
    );
    assert_shape_error(
        b.conv2d_forward(&p, &x, &short, &bias, &mut out),
        "forward, short w",
    );
    assert_shape_error(
        b.conv2d_forward(&p, &x, &w, &short, &mut out),
        "forward, short bias",
    );
    assert_shape_error(
        b.conv2d_forward(&p, &x, &w, &bias, &mut bad),
        "forward, long out",
    );
    assert_shape_error(
        b.conv2d_backward_input(&p, &dout, &w, &mut bad),
        "backward_input, wrong dx",
    );
    assert_shape_error(
        b.conv2d_backward_input(&p, &short, &w, &mut out),
        "backward_input, short dout",
    );
    assert_shape_error(
        b.conv2d_backward_weight(&p, &x, &dout, &mut bad),
        "backward_weight, wrong dw",
    );
    assert_shape_error(
        b.conv2d_backward_weight(&p, &short, &dout, &mut out),
        "backward_weight, short x",
    );
    assert_shape_error(
        b.conv2d_backward_bias(&p, &dout, &mut bad),
        "backward_bias, wrong dbias",
    );
    assert_shape_error(
        b.conv2d_backward_bias(&p, &short, &mut out),
        "backward_bias, short dout",
    );
}
backend_test!(wrong_buffer_length_is_a_shape_error, wrong_lengths);
