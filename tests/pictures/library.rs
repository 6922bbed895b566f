//! The picture and inference library, on the backends: `convolve` and pooling against hand
//! computed values, matrix parsing, colour maps and grid layout, `classify` against a plain
//! forward pass, and feature maps equal to the ReLU outputs.

use cnn_gpu::backend::Backend;
use cnn_gpu::matrix::{self, Matrix, PoolKind};
use cnn_gpu::model::{Layer, Model, ModelSpec};
use cnn_gpu::picture::{self, Arrange, Colours, Panel, MARGIN};
use cnn_gpu::train;
use image::Rgb;

use crate::backend_test;
use crate::common;
use crate::{a_digit, reference_probabilities, sharp_params, DEMO};

// ---- convolve on the backends ---------------------------------------------------------------

/// The edge kernel on the demo with padding 1: out = 9·x − (sum of the 3×3 window). The
/// window over the block holds r(i)·r(j) ones with r = [1, 2, 3, 2, 1] (zero padded).
fn demo_edge_output() -> Vec<f32> {
    let r = [1.0f32, 2.0, 3.0, 2.0, 1.0];
    let x = Matrix::parse(DEMO).unwrap();
    (0..25)
        .map(|k| 9.0 * x.data[k] - r[k / 5] * r[k % 5])
        .collect()
}

fn convolve_matches_hand_values<B: Backend>(b: &B) {
    let input = Matrix::parse(DEMO).unwrap();
    let edge = matrix::named_kernel("edge").unwrap();
    let out = matrix::convolve(b, &input, &edge, 1, 1).unwrap();
    assert_eq!((out.rows, out.cols), (5, 5));
    #[rustfmt::skip]
    let want = [
        -1., -2., -3., -2., -1.,
        -2.,  5.,  3.,  5., -2.,
        -3.,  3.,  0.,  3., -3.,
        -2.,  5.,  3.,  5., -2.,
        -1., -2., -3., -2., -1.,
    ];
    assert_eq!(out.data, want);
    assert_eq!(out.data, demo_edge_output());

    // An asymmetric kernel tells cross-correlation (PyTorch's conv2d) from convolution:
    // out[i][j] = 1·x[i][j] + 2·x[i][j+1] + 3·x[i+1][j] + 4·x[i+1][j+1]; stride 2 keeps (0,0),
    // (0,2), (2,0), (2,2) of the 4×4 stride-1 result.
    let x = Matrix::new(5, 5, (0..25).map(|v| v as f32).collect());
    let k = Matrix::parse("1 2\n3 4").unwrap();
    let out = matrix::convolve(b, &x, &k, 2, 0).unwrap();
    let at = |i: usize, j: usize| {
        x.get(i, j) + 2.0 * x.get(i, j + 1) + 3.0 * x.get(i + 1, j) + 4.0 * x.get(i + 1, j + 1)
    };
    assert_eq!((out.rows, out.cols), (2, 2));
    assert_eq!(out.data, vec![at(0, 0), at(0, 2), at(2, 0), at(2, 2)]);
    assert_eq!(out.data, vec![41., 61., 141., 161.]);

    // Pooling a 4×4 matrix of 0..16 in 2×2 windows: the max is each window's bottom-right,
    // the mean its centre value (window top-left + 2.5).
    let x = Matrix::new(4, 4, (0..16).map(|v| v as f32).collect());
    let max = matrix::pool(b, &x, PoolKind::Max, 2, 2).unwrap();
    assert_eq!(max.data, vec![5., 7., 13., 15.]);
    let avg = matrix::pool(b, &x, PoolKind::Avg, 2, 2).unwrap();
    assert_eq!(avg.data, vec![2.5, 4.5, 10.5, 12.5]);
    // Overlapping 3×3 windows every 1: 2×2 outputs.
    let max = matrix::pool(b, &x, PoolKind::Max, 3, 1).unwrap();
    assert_eq!(max.data, vec![10., 11., 14., 15.]);
}
backend_test!(convolve, convolve_matches_hand_values);

#[test]
fn convolve_refuses_what_pytorch_would() {
    let b = common::cpu();
    let x = Matrix::parse(DEMO).unwrap();
    let edge = matrix::named_kernel("edge").unwrap();
    let msg = |r: cnn_gpu::Result<Matrix>| r.unwrap_err().to_string();
    assert!(msg(matrix::convolve(&b, &x, &edge, 0, 1)).contains("stride"));
    assert!(msg(matrix::convolve(&b, &x, &edge, 1, 2)).contains("at most 1"));
    let big = Matrix::new(7, 7, vec![0.0; 49]);
    assert!(msg(matrix::convolve(&b, &x, &big, 1, 0)).contains("larger than the padded input"));
    assert!(msg(matrix::pool(&b, &x, PoolKind::Max, 6, 1)).contains("larger than the input"));
}

#[test]
fn matrices_parse_and_print() {
    let m = Matrix::parse("# a comment\n 1 -2.5\n\n3 4 # trailing\n").unwrap();
    assert_eq!(
        (m.rows, m.cols, m.data.clone()),
        (2, 2, vec![1.0, -2.5, 3.0, 4.0])
    );
    assert_eq!(m.to_string(), "   1 -2.5\n   3    4\n");
    assert_eq!(
        Matrix::new(1, 2, vec![-0.0, 1.0 / 3.0]).to_string(),
        "     0 0.3333\n"
    );
    let err = Matrix::parse("1 2\n3\n").unwrap_err();
    assert!(
        err.contains("line 2") && err.contains("first row has 2"),
        "{err}"
    );
    let err = Matrix::parse("1 x\n").unwrap_err();
    assert!(err.contains("line 1") && err.contains("\"x\""), "{err}");
    assert!(Matrix::parse("1 NaN").is_err());
    assert!(Matrix::parse("\n# nothing\n")
        .unwrap_err()
        .contains("no numbers"));
}

// ---- pictures -------------------------------------------------------------------------------

#[test]
fn colour_maps_hit_their_ends() {
    let d = Colours::Diverging { max: 2.0 };
    assert_eq!(d.colour(2.0), Rgb([255, 0, 0]));
    assert_eq!(d.colour(5.0), Rgb([255, 0, 0]));
    assert_eq!(d.colour(-2.0), Rgb([0, 0, 255]));
    assert_eq!(d.colour(0.0), Rgb([255, 255, 255]));
    assert_eq!(d.colour(1.0), Rgb([255, 128, 128]));
    let g = Colours::Grey { lo: -1.0, hi: 3.0 };
    assert_eq!(g.colour(-1.0), Rgb([0, 0, 0]));
    assert_eq!(g.colour(1.0), Rgb([128, 128, 128]));
    assert_eq!(g.colour(3.0), Rgb([255, 255, 255]));
}

#[test]
fn a_grid_puts_each_value_in_its_cell() {
    // Three 2×2 maps, 2 to a row, 5 pixels per value: map i's value (r, c) fills the square at
    // the cell's origin + (5c, 5r).
    let maps: Vec<f32> = (0..12).map(|v| v as f32 - 6.0).collect();
    let panel = Panel {
        title: "t".into(),
        maps: &maps,
        count: 3,
        h: 2,
        w: 2,
        cols: 2,
        scale: 5,
        colours: Colours::Diverging { max: 6.0 },
    };
    let g = picture::GAP;
    assert_eq!(panel.size(), (2 * 10 + g, picture::TITLE_H + 2 * 10 + g));
    let (img, origins) = picture::compose(std::slice::from_ref(&panel), Arrange::Column);
    assert_eq!(origins, vec![(MARGIN, MARGIN)]);
    assert_eq!(
        img.dimensions(),
        (
            MARGIN + 20 + g + MARGIN,
            MARGIN + picture::TITLE_H + 20 + g + MARGIN
        )
    );
    for i in 0..3 {
        let (cx, cy) = panel.cell_origin(i);
        for v in 0..4 {
            let (x, y) = (
                MARGIN + cx + 5 * (v % 2) as u32,
                MARGIN + cy + 5 * (v / 2) as u32,
            );
            let want = Colours::Diverging { max: 6.0 }.colour(maps[i * 4 + v]);
            for (dx, dy) in [(0, 0), (4, 4)] {
                assert_eq!(*img.get_pixel(x + dx, y + dy), want, "map {i} value {v}");
            }
        }
    }
    // Map 0's first value is −6: full blue; map 1 starts at 10 + GAP to the right.
    assert_eq!(panel.cell_origin(1).0, 10 + g);
    assert_eq!(
        *img.get_pixel(MARGIN, MARGIN + picture::TITLE_H),
        Rgb([0, 0, 255])
    );
    // The fourth cell is empty: background.
    let (cx, cy) = (10 + g, picture::TITLE_H + 10 + g);
    assert_eq!(
        *img.get_pixel(MARGIN + cx + 1, MARGIN + cy + 1),
        picture::BACKGROUND
    );
    // The title is drawn: some pixel of the title line is dark.
    let dark = (0..img.width())
        .flat_map(|x| (MARGIN..MARGIN + picture::TITLE_H).map(move |y| (x, y)))
        .any(|(x, y)| img.get_pixel(x, y).0[0] < 100);
    assert!(dark, "the title's glyphs");
    // A title wider than its grid widens the panel to fit.
    let long = Panel {
        title: "a title much wider than the grid".into(),
        ..panel.clone()
    };
    let tw = picture::title_width(&long.title);
    assert!(tw > 100, "{tw}");
    assert_eq!(long.size().0, tw);
}

// ---- predict --------------------------------------------------------------------------------

fn classify_matches_a_plain_forward<B: Backend>(b: &B) {
    let params = sharp_params(3);
    let digit = a_digit();
    let want = reference_probabilities(&params, &digit);
    let top = want.iter().cloned().fold(0.0, f64::max);
    assert!(top > 0.3, "a non-uniform reference ({want:?})");
    let model = Model::with_params(b, ModelSpec::simple_cnn(), &params).unwrap();
    // Two images in one batch: the digit and its inversion, which must differ.
    let inverted: Vec<u8> = digit.iter().map(|p| 255 - p).collect();
    let got = train::classify(b, &model, &[digit.clone(), inverted.clone()].concat()).unwrap();
    assert_eq!(got.len(), 2);
    for (g, w) in got[0].iter().zip(&want) {
        assert!((g - w).abs() < 1e-4, "{:?} vs {want:?}", got[0]);
    }
    let want_inv = reference_probabilities(&params, &inverted);
    for (g, w) in got[1].iter().zip(&want_inv) {
        assert!((g - w).abs() < 1e-4, "{:?} vs {want_inv:?}", got[1]);
    }
    assert!((got[0].iter().sum::<f64>() - 1.0).abs() < 1e-9);
}
backend_test!(classify, classify_matches_a_plain_forward);

#[test]
fn feature_maps_are_the_relu_outputs() {
    // Layer 1 of SimpleCNN is conv1's ReLU: every activation is ≥ 0, and it equals
    // max(conv1, 0) where activation 1 is conv1's own output.
    let b = common::cpu();
    let model = Model::with_params(&b, ModelSpec::simple_cnn(), &sharp_params(5)).unwrap();
    assert_eq!(model.spec().layers[1], Layer::Relu);
    let data = train::upload_unlabelled(&b, &model, &a_digit()).unwrap();
    let mut seen = 0;
    train::forward_batches(&b, &model, &data, 1, |offset, ws| {
        assert_eq!(offset, 0);
        let conv = b.read_f32(model.activation(ws, 1)?)?;
        let relu = b.read_f32(model.activation(ws, 2)?)?;
        assert_eq!(relu.len(), 32 * 28 * 28);
        let want: Vec<f32> = conv.iter().map(|v| v.max(0.0)).collect();
        assert_eq!(relu, want);
        assert!(relu.iter().any(|&v| v > 0.0));
        assert!(
            model.activation(ws, 11).is_err(),
            "10 layers: activations 0..=10"
        );
        seen += 1;
        Ok(())
    })
    .unwrap();
    assert_eq!(seen, 1);
}
