//! Softmax cross-entropy (loss and dlogits) and count_correct: hand-computed cases, numerical
//! stability, accumulation, finite differences, shape errors.

mod common;

use cnn_gpu::backend::{Backend, SoftmaxXent};
use common::*;

/// Runs softmax_cross_entropy with loss_sum starting at `start`; returns (loss_sum, dlogits).
fn xent<B: Backend>(
    b: &B,
    p: &SoftmaxXent,
    logits: &[f32],
    labels: &[u32],
    start: f32,
) -> (f32, Vec<f32>) {
    let (logits, labels) = (upload(b, logits, "logits"), upload_u32(b, labels, "labels"));
    let mut loss = upload(b, &[start], "loss_sum");
    let mut dlogits = zeros(b, p.batch * p.classes, "dlogits");
    b.softmax_cross_entropy(p, &logits, &labels, &mut loss, &mut dlogits)
        .expect("softmax_cross_entropy");
    (read(b, &loss)[0], read(b, &dlogits))
}

fn correct<B: Backend>(b: &B, p: &SoftmaxXent, logits: &[f32], labels: &[u32], start: u32) -> u32 {
    let (logits, labels) = (upload(b, logits, "logits"), upload_u32(b, labels, "labels"));
    let mut count = upload_u32(b, &[start], "correct");
    b.count_correct(p, &logits, &labels, &mut count)
        .expect("count_correct");
    b.read_u32(&count).expect("read back")[0]
}

/// Two rows whose exponentials are small integers:
/// row 0 = [ln 1, ln 2, ln 5] → softmax [1/8, 2/8, 5/8], label 2: loss −ln(5/8) = 0.4700036;
/// row 1 = [ln 3, ln 1, ln 4] → softmax [3/8, 1/8, 4/8], label 0: loss −ln(3/8) = 0.9808293.
/// Mean 0.7254164, added to the 1.0 already in loss_sum: 1.7254164.
/// dlogits = (softmax − one-hot) / 2: row 0 [1/16, 2/16, −3/16], row 1 [−5/16, 1/16, 4/16].
fn hand<B: Backend>(b: &B) {
    let p = SoftmaxXent {
        batch: 2,
        classes: 3,
    };
    let logits = [0.0, 2f32.ln(), 5f32.ln(), 3f32.ln(), 0.0, 4f32.ln()];
    let (loss, d) = xent(b, &p, &logits, &[2, 0], 1.0);
    assert_close(&[loss], &[1.725_416_4], 0.0, 1e-6, "loss_sum");
    let want = [0.0625, 0.125, -0.1875, -0.3125, 0.0625, 0.25];
    assert_close(&d, &want, 1e-7, 1e-6, "dlogits");
    // Shifting a row by a constant changes nothing: softmax is shift-invariant. At +1000 a
    // naive exp overflows f32 (e^88.7 is its limit).
    let shifted: Vec<f32> = logits.iter().map(|&z| z + 1000.0).collect();
    let (loss, d) = xent(b, &p, &shifted, &[2, 0], 0.0);
    // f32 spacing near 1000 is 6e-5, so the shifted logits are that far from the exact logs.
    assert_close(
        &[loss],
        &[0.725_416_4],
        2e-4,
        0.0,
        "loss_sum, shifted by 1000",
    );
    assert_close(&d, &want, 2e-4, 0.0, "dlogits, shifted by 1000");
}
backend_test!(hand_computed_two_rows, hand);

/// Logits 2000 apart: softmax is one-hot to f32 precision. Label on the largest: loss 0 and
/// dlogits 0; label on the smallest: loss 2000 (logsumexp = 1000, minus −1000), and dlogits
/// [1, 0, −1] / batch.
fn extreme<B: Backend>(b: &B) {
    let p = SoftmaxXent {
        batch: 2,
        classes: 3,
    };
    let logits = [1000.0, 0.0, -1000.0, 1000.0, 0.0, -1000.0];
    let (loss, d) = xent(b, &p, &logits, &[0, 2], 0.0);
    assert!(
        loss.is_finite() && d.iter().all(|v| v.is_finite()),
        "non-finite: {loss} {d:?}"
    );
    // Mean of 0 and 2000.
    assert_close(&[loss], &[1000.0], 0.0, 1e-6, "loss_sum, extreme logits");
    assert_close(
        &d,
        &[0.0, 0.0, 0.0, 0.5, 0.0, -0.5],
        1e-7,
        0.0,
        "dlogits, extreme logits",
    );
}
backend_test!(extreme_logits_stay_finite, extreme);

/// dlogits against central differences of the loss itself (read from loss_sum), on random
/// logits with batch 3 and 5 classes. The loss is smooth; eps 0.01 leaves a truncation error
/// of order eps²·|∂³L| ≈ 1e-5, and the f32 loss rounds at about 1e-7 / 0.02 = 5e-6.
fn finite_differences<B: Backend>(b: &B) {
    let p = SoftmaxXent {
        batch: 3,
        classes: 5,
    };
    let logits = rand_vec(7, 15, -2.0, 2.0);
    let labels = [4, 0, 2];
    let (_, d) = xent(b, &p, &logits, &labels, 0.0);
    check_gradient("dlogits", &logits, &d, 0.01, 1e-4, 1e-2, |z| {
        xent(b, &p, z, &labels, 0.0).0 as f64
    });
}
backend_test!(dlogits_match_finite_differences, finite_differences);

/// Rows [0.1, 0.7, 0.2] (argmax 1), [3, 3, 1] (a tie: the first maximum, 0, wins), [−1, −2, −0.5]
/// (argmax 2), [5, 4, 5] (tie, 0 wins) with labels [1, 1, 2, 2]: rows 0 and 2 are right, 2 hits,
/// added to the 5 already counted.
fn counts<B: Backend>(b: &B) {
    let p = SoftmaxXent {
        batch: 4,
        classes: 3,
    };
    let logits = [
        0.1, 0.7, 0.2, 3.0, 3.0, 1.0, -1.0, -2.0, -0.5, 5.0, 4.0, 5.0,
    ];
    assert_eq!(correct(b, &p, &logits, &[1, 1, 2, 2], 5), 7);
    assert_eq!(correct(b, &p, &logits, &[1, 0, 2, 0], 0), 4);
}
backend_test!(count_correct_first_maximum_accumulates, counts);

fn wrong_lengths<B: Backend>(b: &B) {
    let p = SoftmaxXent {
        batch: 2,
        classes: 3,
    };
    let (logits, labels) = (zeros(b, 6, "logits"), upload_u32(b, &[0, 1], "labels"));
    let (short, short_labels) = (zeros(b, 5, "short"), upload_u32(b, &[0], "short labels"));
    let (mut loss, mut d, mut count) =
        (zeros(b, 1, "loss"), zeros(b, 6, "d"), zeros(b, 1, "count"));
    let (mut bad_loss, mut bad_d) = (zeros(b, 2, "bad loss"), zeros(b, 7, "bad d"));
    assert_shape_error(
        b.softmax_cross_entropy(&p, &short, &labels, &mut loss, &mut d),
        "xent, short logits",
    );
    assert_shape_error(
        b.softmax_cross_entropy(&p, &logits, &short_labels, &mut loss, &mut d),
        "xent, short labels",
    );
    assert_shape_error(
        b.softmax_cross_entropy(&p, &logits, &labels, &mut bad_loss, &mut d),
        "xent, loss_sum of 2",
    );
    assert_shape_error(
        b.softmax_cross_entropy(&p, &logits, &labels, &mut loss, &mut bad_d),
        "xent, long dlogits",
    );
    assert_shape_error(
        b.count_correct(&p, &short, &labels, &mut count),
        "count, short logits",
    );
    assert_shape_error(
        b.count_correct(&p, &logits, &short_labels, &mut count),
        "count, short labels",
    );
    assert_shape_error(
        b.count_correct(&p, &logits, &labels, &mut bad_loss),
        "count, correct of 2",
    );
}
backend_test!(wrong_buffer_length_is_a_shape_error, wrong_lengths);

/// The CPU reference refuses a label outside 0..classes instead of indexing past the row.
#[test]
fn cpu_rejects_out_of_range_label() {
    let b = cpu();
    let p = SoftmaxXent {
        batch: 2,
        classes: 3,
    };
    let (logits, labels) = (zeros(&b, 6, "logits"), upload_u32(&b, &[0, 3], "labels"));
    let (mut loss, mut d, mut count) = (
        zeros(&b, 1, "loss"),
        zeros(&b, 6, "d"),
        zeros(&b, 1, "count"),
    );
    assert!(b
        .softmax_cross_entropy(&p, &logits, &labels, &mut loss, &mut d)
        .is_err());
    assert!(b.count_correct(&p, &logits, &labels, &mut count).is_err());
}
