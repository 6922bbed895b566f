//! MNIST-style preprocessing of digit pictures (`cnn_gpu::digit`), on small synthetic images
//! whose results are derived by hand: bounding box, aspect-keeping scale, centre of mass,
//! inversion, the 28×28-grey pass-through, decoding and transparency.

use std::io::Cursor;

use cnn_gpu::digit::{mnist_pixels, GreyImage, SIDE};
use image::{DynamicImage, GrayAlphaImage, GrayImage, ImageFormat, LumaA, RgbImage};

/// A `w`×`h` grey image (black) with `rects` (x0, y0, x1, y1, value) painted on it.
fn grey(
    w: usize,
    h: usize,
    background: f32,
    rects: &[(usize, usize, usize, usize, f32)],
) -> GreyImage {
    let mut pixels = vec![background; w * h];
    for &(x0, y0, x1, y1, v) in rects {
        for y in y0..y1 {
            for x in x0..x1 {
                pixels[y * w + x] = v;
            }
        }
    }
    GreyImage {
        width: w,
        height: h,
        pixels,
        was_grey: true,
    }
}

/// The expected 28×28 result: `rects` (x0, y0, x1, y1, value) on black.
fn expect(rects: &[(usize, usize, usize, usize, u8)]) -> Vec<u8> {
    let mut out = vec![0u8; SIDE * SIDE];
    for &(x0, y0, x1, y1, v) in rects {
        for y in y0..y1 {
            for x in x0..x1 {
                out[y * SIDE + x] = v;
            }
        }
    }
    out
}

#[track_caller]
fn assert_image(got: &[u8], want: &[u8]) {
    let show = |v: &[u8]| -> String {
        v.chunks(SIDE)
            .map(|r| {
                r.iter()
                    .map(|&p| {
                        if p == 0 {
                            '.'
                        } else if p == 255 {
                            '#'
                        } else {
                            '+'
                        }
                    })
                    .collect::<String>()
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(got == want, "got\n{}\nwant\n{}", show(got), show(want));
}

#[test]
fn a_tall_block_is_cropped_scaled_to_20_high_and_centred() {
    // A 5×10 block at (3, 10) in a 30×30 image: cropped to 5×10, scaled ×2 to 10×20 (a
    // constant block stays constant), centre of mass (4.5, 9.5) moved to (13.5, 13.5) — by
    // (9, 4): columns 9..19, rows 4..24.
    let img = grey(30, 30, 0.0, &[(3, 10, 8, 20, 1.0)]);
    let got = mnist_pixels(&img, false).unwrap();
    assert_image(&got, &expect(&[(9, 4, 19, 24, 255)]));
}

#[test]
fn a_wide_block_keeps_its_aspect_ratio() {
    // 8×2 → ×2.5 → 20×5; centre of mass (9.5, 2) → moved by (4, round(11.5) = 12).
    let img = grey(17, 9, 0.0, &[(6, 3, 14, 5, 1.0)]);
    let got = mnist_pixels(&img, false).unwrap();
    assert_image(&got, &expect(&[(4, 12, 24, 17, 255)]));
}

#[test]
fn the_centre_of_mass_not_the_box_is_centred() {
    // A 20×20 crop (no scaling) of two full-height bars: 4 wide at x 0..4 and 2 wide at x 18..20.
    // Centre of mass x = (80·1.5 + 40·18.5) / 120 = 7.1667 → moved by round(6.333) = 6, so the
    // bars land at columns 6..10 and 24..26 (the bounding box would have put them at 4..8 and
    // 22..24); y: 9.5 → moved by 4.
    let img = grey(40, 30, 0.0, &[(7, 5, 11, 25, 1.0), (25, 5, 27, 25, 1.0)]);
    let got = mnist_pixels(&img, false).unwrap();
    assert_image(&got, &expect(&[(6, 4, 10, 24, 255), (24, 4, 26, 24, 255)]));
}

#[test]
fn faint_pixels_are_outside_the_ink_box() {
    // Paper noise at 0.05 (below the 0.1 threshold) does not widen the box: the result is the
    // block alone, as in the first test.
    let img = grey(30, 30, 0.05, &[(3, 10, 8, 20, 1.0)]);
    let got = mnist_pixels(&img, false).unwrap();
    assert_image(&got, &expect(&[(9, 4, 19, 24, 255)]));
}

#[test]
fn invert_turns_dark_ink_on_paper_into_mnist() {
    let drawn = grey(30, 30, 1.0, &[(3, 10, 8, 20, 0.0)]);
    assert!(drawn.has_bright_border());
    assert_eq!(drawn.border_mean(), 1.0);
    let got = mnist_pixels(&drawn, true).unwrap();
    assert_image(&got, &expect(&[(9, 4, 19, 24, 255)]));
    let mnist_like = grey(30, 30, 0.0, &[(3, 10, 8, 20, 1.0)]);
    assert!(!mnist_like.has_bright_border());
}

#[test]
fn an_image_without_ink_is_refused() {
    let blank = grey(30, 30, 1.0, &[]);
    let err = mnist_pixels(&blank, true).unwrap_err().to_string();
    assert!(err.contains("no ink"), "{err}");
}

#[test]
fn a_28x28_grey_image_is_used_as_is_but_a_colour_one_is_not() {
    // A grey 28×28 picture is already MNIST: the off-centre dot stays where it is.
    let mut g = GrayImage::new(28, 28);
    g.put_pixel(2, 3, image::Luma([200]));
    let img = GreyImage::from_image(&DynamicImage::ImageLuma8(g));
    assert!(img.was_grey);
    assert_image(
        &mnist_pixels(&img, false).unwrap(),
        &expect(&[(2, 3, 3, 4, 200)]),
    );

    // The same dot in RGB goes through the recipe: a 1×1 box scaled to 20×20 (constant 200),
    // centre of mass (9.5, 9.5) moved by 4 to columns and rows 4..24.
    let mut c = RgbImage::new(28, 28);
    c.put_pixel(2, 3, image::Rgb([200, 200, 200]));
    let img = GreyImage::from_image(&DynamicImage::ImageRgb8(c));
    assert!(!img.was_grey);
    assert_image(
        &mnist_pixels(&img, false).unwrap(),
        &expect(&[(4, 4, 24, 24, 200)]),
    );
}

#[test]
fn png_and_jpeg_decode_and_transparency_is_paper() {
    // A grey+alpha PNG: opaque black, transparent (counts as white paper), half-transparent
    // black (half grey).
    let mut la = GrayAlphaImage::new(3, 1);
    la.put_pixel(0, 0, LumaA([0, 255]));
    la.put_pixel(1, 0, LumaA([0, 0]));
    la.put_pixel(2, 0, LumaA([0, 51]));
    let mut png = Vec::new();
    DynamicImage::ImageLumaA8(la)
        .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .unwrap();
    let img = GreyImage::decode(&png).unwrap();
    assert_eq!((img.width, img.height), (3, 1));
    assert_eq!(img.pixels, vec![0.0, 1.0, 0.8]);

    // A flat JPEG decodes to (nearly) its grey.
    let mut jpeg = Vec::new();
    DynamicImage::ImageLuma8(GrayImage::from_pixel(16, 16, image::Luma([128])))
        .write_to(&mut Cursor::new(&mut jpeg), ImageFormat::Jpeg)
        .unwrap();
    let img = GreyImage::decode(&jpeg).unwrap();
    assert_eq!((img.width, img.height), (16, 16));
    assert!(img
        .pixels
        .iter()
        .all(|&p| (p - 128.0 / 255.0).abs() < 2.0 / 255.0));

    let err = GreyImage::decode(b"0 1 2\n3 4 5\n").unwrap_err();
    assert!(err.contains("not a PNG or JPEG"), "{err}");
    let mut truncated = png.clone();
    truncated.truncate(30);
    assert!(GreyImage::decode(&truncated).is_err());
}
