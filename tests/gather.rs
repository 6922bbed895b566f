//! gather_batch: normalisation, packing of u8 pixels into u32 words, the permutation and
//! offset, shape errors.

mod common;

use cnn_gpu::backend::{Backend, Gather, GatherAffine};
use cnn_gpu::data::augment::inverse_affine;
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

// ---- gather_batch_affine (augmentation) -------------------------------------------------------

/// Gathers item `perm[offset..]` of 1-row-per-line `rows`×`cols` images through `affine`.
fn gather_affine<B: Backend>(
    b: &B,
    p: &GatherAffine,
    pixels: &[u8],
    labels: &[u32],
    perm: &[u32],
    affine: &[f32],
) -> (Vec<f32>, Vec<u32>) {
    let g = &p.gather;
    let images = upload_u32(b, &pack(pixels), "images");
    let (labels, perm) = (upload_u32(b, labels, "labels"), upload_u32(b, perm, "perm"));
    let affine = upload(b, affine, "affine");
    let (mut x, mut y) = (zeros(b, g.batch * g.image_len, "x"), zeros(b, g.batch, "y"));
    b.gather_batch_affine(p, &images, &labels, &perm, &affine, &mut x, &mut y)
        .expect("gather_batch_affine");
    (read(b, &x), b.read_u32(&y).expect("read back"))
}

fn norm(v: f32) -> f32 {
    ((v / 255.0) - 0.5) / 0.5
}

/// Two 3×4 images (3 rows of 4), item j pixel (r, c) = 40j + 10r + 2c + 1; perm = [1, 0],
/// offset 0, batch 2, so sample 0 is item 1 through transform 0 and sample 1 item 0 through
/// transform 1:
/// - transform 0 shifts right by one column: output (u, v) reads source (u − 1, v), so column 0
///   is background (0 → −1) and column u > 0 is pixel (v, u − 1);
/// - transform 1 shifts left by half a column: output (u, v) reads (u + 0.5, v), the mean of
///   pixels u and u + 1 of row v, and for u = 3 the mean of pixel 3 and the background.
fn affine_shifts<B: Backend>(b: &B) {
    let pixel = |j: u32, r: u32, c: u32| (40 * j + 10 * r + 2 * c + 1) as f32;
    let pixels: Vec<u8> = (0..2)
        .flat_map(|j| (0..3).flat_map(move |r| (0..4).map(move |c| pixel(j, r, c) as u8)))
        .collect();
    let p = GatherAffine {
        gather: Gather {
            batch: 2,
            image_len: 12,
            offset: 0,
        },
        cols: 4,
    };
    let affine = [
        1.0, 0.0, -1.0, 0.0, 1.0, 0.0, // source = (u − 1, v)
        1.0, 0.0, 0.5, 0.0, 1.0, 0.0, // source = (u + 0.5, v)
    ];
    let (x, y) = gather_affine(b, &p, &pixels, &[5, 6], &[1, 0], &affine);
    let mut want = Vec::new();
    for r in 0..3 {
        for u in 0..4 {
            want.push(if u == 0 {
                -1.0
            } else {
                norm(pixel(1, r, u - 1))
            });
        }
    }
    for r in 0..3 {
        for u in 0..4 {
            let right = if u == 3 { 0.0 } else { pixel(0, r, u + 1) };
            want.push(norm((pixel(0, r, u) + right) / 2.0));
        }
    }
    assert_close(&x, &want, 1e-5, 0.0, "shifted samples");
    assert_eq!(y, [6, 5]);
}
backend_test!(affine_whole_and_half_pixel_shifts, affine_shifts);

/// The identity map gives gather_batch's values, and a quarter turn of a 3×3 image about its
/// centre moves pixel (row r, column c) to (row c, column 2 − r).
fn affine_identity_and_quarter_turn<B: Backend>(b: &B) {
    let pixels: Vec<u8> = (1..=9).map(|v| v * 20).collect();
    let gather = Gather {
        batch: 1,
        image_len: 9,
        offset: 0,
    };
    let p = GatherAffine { gather, cols: 3 };
    let identity = inverse_affine(3, 3, 0.0, 1.0, 0.0, 0.0);
    let (x, _) = gather_affine(b, &p, &pixels, &[1], &[0], &identity);
    let (plain, _) = self::gather(b, &gather, &pixels, &[1], &[0]);
    assert_close(&x, &plain, 1e-6, 0.0, "identity");

    let turn = inverse_affine(3, 3, std::f32::consts::FRAC_PI_2, 1.0, 0.0, 0.0);
    let (x, _) = gather_affine(b, &p, &pixels, &[1], &[0], &turn);
    let mut want = vec![0.0; 9];
    for r in 0..3 {
        for c in 0..3 {
            want[c * 3 + (2 - r)] = norm(pixels[r * 3 + c] as f32);
        }
    }
    assert_close(&x, &want, 1e-4, 0.0, "quarter turn");
}
backend_test!(
    affine_identity_and_quarter_turn_t,
    affine_identity_and_quarter_turn
);

fn affine_wrong_lengths<B: Backend>(b: &B) {
    let p = GatherAffine {
        gather: Gather {
            batch: 2,
            image_len: 6,
            offset: 0,
        },
        cols: 3,
    };
    let images = upload_u32(b, &pack(&[0; 12]), "images");
    let (labels, perm) = (
        upload_u32(b, &[0, 1], "labels"),
        upload_u32(b, &[0, 1], "perm"),
    );
    let short = upload(b, &[0.0; 11], "short affine");
    let (mut x, mut y) = (zeros(b, 12, "x"), zeros(b, 2, "y"));
    assert_shape_error(
        b.gather_batch_affine(&p, &images, &labels, &perm, &short, &mut x, &mut y),
        "affine shorter than 6 per permutation entry",
    );
    let affine = upload(b, &[0.0; 12], "affine");
    let bad = GatherAffine { cols: 4, ..p };
    assert!(matches!(
        b.gather_batch_affine(&bad, &images, &labels, &perm, &affine, &mut x, &mut y),
        Err(cnn_gpu::Error::InvalidParams(_))
    ));
}
backend_test!(affine_wrong_lengths_are_refused, affine_wrong_lengths);
