//! gather_batch: normalisation, packing of u8 pixels into u32 words, the permutation and
//! offset, shape errors.

mod common;

use cnn_gpu::backend::{Backend, Gather};
use common::*;

/// Packs bytes four to a little-endian u32 word, zero-padding the last word.
fn pack(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks(4)
        .map(|c| {
            c.iter()
                .enumerate()
                .map(|(i, &v)| (v as u32) << (8 * i))
                .sum()
        })
        .collect()
}

fn gather<B: Backend>(
    b: &B,
    p: &Gather,
    pixels: &[u8],
    labels: &[u32],
    perm: &[u32],
) -> (Vec<f32>, Vec<u32>) {
    let images = upload_u32(b, &pack(pixels), "images");
    let (labels, perm) = (upload_u32(b, labels, "labels"), upload_u32(b, perm, "perm"));
    let (mut x, mut y) = (zeros(b, p.batch * p.image_len, "x"), zeros(b, p.batch, "y"));
    b.gather_batch(p, &images, &labels, &perm, &mut x, &mut y)
        .expect("gather_batch");
    (read(b, &x), b.read_u32(&y).expect("read back"))
}

/// (pixel / 255 − 0.5) / 0.5: 0 → −1, 255 → 1, 51 → (0.2 − 0.5) / 0.5 = −0.6,
/// 102 → (0.4 − 0.5)/0.5 = −0.2, 204 → (0.8 − 0.5)/0.5 = 0.6.
fn normalisation<B: Backend>(b: &B) {
    let p = Gather {
        batch: 1,
        image_len: 5,
        offset: 0,
    };
    let (x, y) = gather(b, &p, &[0, 255, 51, 102, 204], &[3], &[0]);
    assert_close(
        &x,
        &[-1.0, 1.0, -0.6, -0.2, 0.6],
        1e-6,
        0.0,
        "normalised pixels",
    );
    assert_eq!(y, [3]);
}
backend_test!(normalisation_0_255_51, normalisation);

/// Three 5-pixel images (so images straddle word boundaries): image j has pixels
/// 10j + 1 … 10j + 5 and label 7 + j. perm = [2, 0, 1, 2], offset 1, batch 2 gathers items 0 and
/// 1; offset 2, batch 2 gathers 1 and 2.
fn permutation<B: Backend>(b: &B) {
    let pixels: Vec<u8> = (0..3u8)
        .flat_map(|j| (1..=5u8).map(move |q| 10 * j + q))
        .collect();
    let norm = |v: u8| ((v as f32 / 255.0) - 0.5) / 0.5;
    let want = |items: &[u8]| -> Vec<f32> {
        items
            .iter()
            .flat_map(|&j| (1..=5u8).map(move |q| norm(10 * j + q)))
            .collect()
    };
    let (labels, perm) = ([7, 8, 9], [2, 0, 1, 2]);
    let (x, y) = gather(
        b,
        &Gather {
            batch: 2,
            image_len: 5,
            offset: 1,
        },
        &pixels,
        &labels,
        &perm,
    );
    assert_close(&x, &want(&[0, 1]), 1e-6, 0.0, "items 0, 1");
    assert_eq!(y, [7, 8]);
    let (x, y) = gather(
        b,
        &Gather {
            batch: 2,
            image_len: 5,
            offset: 2,
        },
        &pixels,
        &labels,
        &perm,
    );
    assert_close(&x, &want(&[1, 2]), 1e-6, 0.0, "items 1, 2");
    assert_eq!(y, [8, 9]);
}
backend_test!(permutation_and_offset, permutation);

fn wrong_lengths<B: Backend>(b: &B) {
    let p = Gather {
        batch: 2,
        image_len: 5,
        offset: 1,
    };
    let images = upload_u32(b, &pack(&[0; 15]), "images");
    let (labels, perm) = (
        upload_u32(b, &[0, 1, 2], "labels"),
        upload_u32(b, &[0, 1, 2], "perm"),
    );
    let short_perm = upload_u32(b, &[0, 1], "short perm");
    let short_images = upload_u32(b, &pack(&[0; 8]), "short images");
    let (mut x, mut y) = (zeros(b, 10, "x"), zeros(b, 2, "y"));
    let (mut bad_x, mut bad_y) = (zeros(b, 11, "bad x"), zeros(b, 3, "bad y"));
    assert_shape_error(
        b.gather_batch(&p, &images, &labels, &short_perm, &mut x, &mut y),
        "perm shorter than offset + batch",
    );
    assert_shape_error(
        b.gather_batch(&p, &short_images, &labels, &perm, &mut x, &mut y),
        "images too short for the labels",
    );
    assert_shape_error(
        b.gather_batch(&p, &images, &labels, &perm, &mut bad_x, &mut y),
        "long x",
    );
    assert_shape_error(
        b.gather_batch(&p, &images, &labels, &perm, &mut x, &mut bad_y),
        "long y",
    );
}
backend_test!(wrong_buffer_length_is_a_shape_error, wrong_lengths);

/// The CPU reference refuses a permutation entry that names no item of the dataset.
#[test]
fn cpu_rejects_out_of_range_permutation_entry() {
    let b = cpu();
    let p = Gather {
        batch: 1,
        image_len: 4,
        offset: 0,
    };
    let images = upload_u32(&b, &[0, 0], "images");
    let (labels, perm) = (
        upload_u32(&b, &[0, 1], "labels"),
        upload_u32(&b, &[2], "perm"),
    );
    let (mut x, mut y) = (zeros(&b, 4, "x"), zeros(&b, 1, "y"));
    assert!(b
        .gather_batch(&p, &images, &labels, &perm, &mut x, &mut y)
        .is_err());
}
