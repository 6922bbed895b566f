//! Dropout forward and backward on both backends: the mask against an independent Python
//! implementation of the hash (`scripts/dropout_mask.py`), the inverted scaling, the drop rate
//! over many elements, masks that change with the step and not with the direction. That the
//! CPU and GPU backends draw equal outputs, folded grids too, is `tests/gpu_vs_cpu.rs`'s.

mod common;

use cnn_gpu::backend::{pcg_hash, Backend, Dropout};
use common::*;

/// Runs the forward pass of `p` at `step` on x.
fn forward<B: Backend>(b: &B, p: &Dropout, step: u32, x: &[f32]) -> Vec<f32> {
    let (s, xb) = (upload_u32(b, &[step], "step"), upload(b, x, "x"));
    let mut y = zeros(b, x.len(), "y");
    b.dropout_forward(p, &s, &xb, &mut y)
        .expect("dropout_forward");
    read(b, &y)
}

fn backward<B: Backend>(b: &B, p: &Dropout, step: u32, dy: &[f32]) -> Vec<f32> {
    let (s, dyb) = (upload_u32(b, &[step], "step"), upload(b, dy, "dy"));
    let mut dx = zeros(b, dy.len(), "dx");
    b.dropout_backward(p, &s, &dyb, &mut dx)
        .expect("dropout_backward");
    read(b, &dx)
}

/// The kept elements as a string of 0s and 1s, as the script prints them.
fn mask(y: &[f32]) -> String {
    y.iter()
        .map(|&v| if v != 0.0 { '1' } else { '0' })
        .collect()
}

/// The hash and three 32-element masks printed by `python3 scripts/dropout_mask.py`; kept
/// elements of x = 1 come out as exactly 1/(1 − p).
fn masks_match_the_python_reference<B: Backend>(b: &B) {
    assert_eq!(pcg_hash(0), 129_708_002);
    assert_eq!(pcg_hash(1), 2_831_084_092);
    assert_eq!(pcg_hash(0xdead_beef), 1_730_779_506);
    let ones = vec![1.0; 32];
    for (seed, step, p, want) in [
        (1, 0, 0.5, "01010001010100010111100010111000"),
        (1, 1, 0.5, "11011100111100111001101101000001"),
        (12345, 7, 0.25, "11111101110011111111110010101111"),
    ] {
        let d = Dropout { len: 32, p, seed };
        let y = forward(b, &d, step, &ones);
        assert_eq!(mask(&y), want, "seed {seed} step {step} p {p}");
        let scale = 1.0 / (1.0 - p);
        assert!(y.iter().all(|&v| v == 0.0 || v == scale), "{y:?}");
    }
}
backend_test!(python_reference, masks_match_the_python_reference);

/// Over 100,003 elements at p = 0.3 the drop rate is within 5σ (0.0073) of 0.3; every kept
/// value is x/(1 − p) exactly as f32 computes it; the backward pass at the same step passes
/// dy through the same mask and scale; another step draws another mask (about 42% of the
/// elements differ, 2·0.3·0.7); p = 0 is the identity.
fn rate_scale_and_backward<B: Backend>(b: &B) {
    let len = 100_003;
    let x = rand_vec(3, len, 0.5, 1.5);
    let dy = rand_vec(4, len, -1.0, 1.0);
    let d = Dropout {
        len,
        p: 0.3,
        seed: 99,
    };
    let scale = 1.0f32 / (1.0 - 0.3f32);
    let y = forward(b, &d, 5, &x);
    let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / len as f64;
    assert!((dropped - 0.3).abs() < 0.0073, "drop rate {dropped}");
    for (i, (&y, &x)) in y.iter().zip(&x).enumerate() {
        assert!(y == 0.0 || y == x * scale, "element {i}: {y} from {x}");
    }
    let dx = backward(b, &d, 5, &dy);
    for (i, ((&dx, &dy), &y)) in dx.iter().zip(&dy).zip(&y).enumerate() {
        let want = if y == 0.0 { 0.0 } else { dy * scale };
        assert_eq!(dx, want, "element {i}");
    }
    let other = forward(b, &d, 6, &x);
    let differ = y
        .iter()
        .zip(&other)
        .filter(|(a, b)| (**a == 0.0) != (**b == 0.0))
        .count() as f64
        / len as f64;
    assert!((differ - 0.42).abs() < 0.02, "{differ} of the mask changed");
    let keep_all = Dropout { p: 0.0, ..d };
    assert_eq!(forward(b, &keep_all, 5, &x), x, "p = 0 is the identity");
}
backend_test!(rate_scale_backward, rate_scale_and_backward);

/// Out-of-range p and wrong lengths are refused.
fn checks<B: Backend>(b: &B) {
    let s = upload_u32(b, &[0], "step");
    let x = upload(b, &[1.0; 4], "x");
    let mut y = zeros(b, 4, "y");
    let bad_p = Dropout {
        len: 4,
        p: 1.0,
        seed: 0,
    };
    assert!(matches!(
        b.dropout_forward(&bad_p, &s, &x, &mut y),
        Err(cnn_gpu::Error::InvalidParams(_))
    ));
    let d = Dropout {
        len: 5,
        p: 0.5,
        seed: 0,
    };
    assert_shape_error(b.dropout_forward(&d, &s, &x, &mut y), "len 5 on 4 elements");
    let d = Dropout { len: 4, ..d };
    let two = upload_u32(b, &[0, 0], "two steps");
    assert_shape_error(
        b.dropout_backward(&d, &two, &x, &mut y),
        "a step buffer of 2",
    );
}
backend_test!(argument_checks, checks);
