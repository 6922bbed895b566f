//! The picture and inference commands: `convolve`'s matrices on both backends against hand
//! computed values, picture layout and colours, `predict` against an independent forward pass,
//! and the binary's refusals (exit 2, one line, no file left behind).

mod common;

use std::path::{Path, PathBuf};
use std::process::Output;

use common::{cnn_gpu, stderr, stdout};

use cnn_gpu::backend::Backend;
use cnn_gpu::checkpoint;
use cnn_gpu::data::normalize_pixel;
use cnn_gpu::matrix::{self, Matrix, PoolKind};
use cnn_gpu::metrics::Record;
use cnn_gpu::model::{Layer, Model, ModelSpec, NamedTensor, Workspace};
use cnn_gpu::picture::{self, Arrange, Colours, Panel, MARGIN};
use cnn_gpu::train;
use image::Rgb;
use plotters::style::RGBColor;

// ---- convolve on the backends ---------------------------------------------------------------

/// The README's demo input: a 3×3 block of ones in a 5×5 field of zeros.
const DEMO: &str = "0 0 0 0 0\n0 1 1 1 0\n0 1 1 1 0\n0 1 1 1 0\n0 0 0 0 0\n";

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

/// SimpleCNN parameters from `seed`, with the last layer's weights scaled up so that the
/// probabilities are far from uniform.
fn sharp_params(seed: u64) -> Vec<NamedTensor> {
    let mut params = ModelSpec::simple_cnn().init_params(seed).unwrap();
    for t in &mut params {
        if t.name == "fc2.weight" {
            t.data.iter_mut().for_each(|w| *w *= 40.0);
        }
    }
    params
}

/// A digit: MNIST's first test image when `CNN_GPU_DATA_DIR` has MNIST, else a drawn "1".
fn a_digit() -> Vec<u8> {
    if let Ok(dir) = std::env::var("CNN_GPU_DATA_DIR") {
        if let Ok(m) = cnn_gpu::data::load_mnist(Path::new(&dir)) {
            return m.test.image(0).to_vec();
        }
    }
    let mut px = vec![0u8; 784];
    for y in 4..24 {
        for x in 12..16 {
            px[y * 28 + x] = 200 + (y as u8 % 5) * 10;
        }
    }
    px
}

/// The probabilities by another route than `train::classify`: the host's `normalize_pixel`
/// written straight into a workspace, the CPU backend, a host softmax.
fn reference_probabilities(params: &[NamedTensor], pixels: &[u8]) -> Vec<f64> {
    let b = common::cpu();
    let model = Model::with_params(&b, ModelSpec::simple_cnn(), params).unwrap();
    let mut ws = Workspace::inference(&b, &model, 1).unwrap();
    let x: Vec<f32> = pixels.iter().map(|&p| normalize_pixel(p)).collect();
    b.write_f32(ws.input_and_labels_mut().0, &x).unwrap();
    model.forward(&b, &mut ws).unwrap();
    let logits: Vec<f64> = b
        .read_f32(ws.logits())
        .unwrap()
        .iter()
        .map(|&v| v as f64)
        .collect();
    let max = logits.iter().cloned().fold(f64::MIN, f64::max);
    let sum: f64 = logits.iter().map(|v| (v - max).exp()).sum();
    logits.iter().map(|v| (v - max).exp() / sum).collect()
}

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

// ---- the binary -----------------------------------------------------------------------------

/// [`common::assert_refused`], and no file left in `dir` other than those that were there.
#[track_caller]
fn assert_refused(args: &[&str], what: &str, dir: &Path) {
    let before = listing(dir);
    common::assert_refused(args, what);
    assert_eq!(listing(dir), before, "{args:?} left a file behind");
}

fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

/// A temporary directory with a checkpoint of [`sharp_params`] and the digit as a PNG.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let spec = ModelSpec::simple_cnn();
        checkpoint::save(
            &dir.path().join("ckpt.safetensors"),
            &spec,
            &sharp_params(3),
            Default::default(),
            None,
        )
        .unwrap();
        image::GrayImage::from_raw(28, 28, a_digit())
            .unwrap()
            .save(dir.path().join("digit.png"))
            .unwrap();
        std::fs::write(dir.path().join("demo.txt"), DEMO).unwrap();
        Fixture { dir }
    }
    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).to_str().unwrap().to_string()
    }
}

#[test]
fn predict_prints_the_library_probabilities() {
    let f = Fixture::new();
    let out = cnn_gpu(&[
        "predict",
        "--backend",
        "cpu",
        "--checkpoint",
        &f.path("ckpt.safetensors"),
        &f.path("digit.png"),
        "--top",
        "3",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let want = reference_probabilities(&sharp_params(3), &a_digit());
    let mut ranked: Vec<(usize, f64)> = want.iter().copied().enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    let stdout = stdout(&out);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert_eq!(
        lines[0],
        format!("{}: {}", f.path("digit.png"), ranked[0].0)
    );
    for (line, (class, p)) in lines[1..].iter().zip(&ranked) {
        let mut parts = line.split_whitespace();
        assert_eq!(parts.next(), Some(class.to_string().as_str()), "{stdout}");
        let pct: f64 = parts.next().unwrap().trim_end_matches('%').parse().unwrap();
        assert!((pct - 100.0 * p).abs() <= 0.0051, "{line} vs {}", 100.0 * p);
    }
    // A 28×28 grey MNIST image with a dark border: no --invert warning.
    assert!(!stderr(&out).contains("--invert"), "{}", stderr(&out));
}

#[test]
fn convolve_prints_the_readme_demo() {
    let f = Fixture::new();
    let out = cnn_gpu(&[
        "convolve",
        &f.path("demo.txt"),
        "--kernel",
        "edge",
        "--padding",
        "1",
        "--backend",
        "cpu",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = stdout(&out);
    let tail: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("Output of the edge convolution, padding 1, stride 1"))
        .collect();
    assert!(tail[0].starts_with("Output of the edge convolution, padding 1, stride 1 on cpu ("));
    assert!(tail[0].ends_with(") (5×5):"), "{stdout}");
    assert_eq!(
        tail[1..],
        [
            "-1 -2 -3 -2 -1",
            "-2  5  3  5 -2",
            "-3  3  0  3 -3",
            "-2  5  3  5 -2",
            "-1 -2 -3 -2 -1",
        ],
        "{stdout}"
    );
}

#[test]
fn picture_commands_write_pngs() {
    let f = Fixture::new();
    let ck = f.path("ckpt.safetensors");
    let out = cnn_gpu(&["filters", "--checkpoint", &ck, "-o", &f.path("filters.png")]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // 8 columns × (3·16) pixels + 7 gaps, 4 rows: the grid's size plus margins and title.
    let img = image::open(f.path("filters.png")).unwrap().to_rgb8();
    // (the title may be wider than the grid).
    assert!(img.width() >= 2 * MARGIN + 8 * 48 + 7 * picture::GAP);
    assert_eq!(
        img.height(),
        2 * MARGIN + picture::TITLE_H + 4 * 48 + 3 * picture::GAP
    );
    // Kernel 0's weight (0, 0) is the colour of its value in the shared diverging map.
    let w = &sharp_params(3)[0];
    assert_eq!(w.name, "conv1.weight");
    let max = picture::max_abs(&w.data);
    let px = *img.get_pixel(MARGIN + 8, MARGIN + picture::TITLE_H + 8);
    assert_eq!(px, Colours::Diverging { max }.colour(w.data[0]));

    let out = cnn_gpu(&[
        "featuremaps",
        "--backend",
        "cpu",
        "--checkpoint",
        &ck,
        &f.path("digit.png"),
        "-o",
        &f.path("maps.png"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let img = image::open(f.path("maps.png")).unwrap();
    // Three panels: the input (28·4), conv1 (4 rows of 28·2), conv2 (4 rows of 14·2).
    let h = 4 * MARGIN + 3 * picture::TITLE_H + 112 + 2 * 3 * picture::GAP + 4 * 56 + 4 * 28;
    assert_eq!(img.height(), h);

    let out = cnn_gpu(&[
        "convolve",
        &f.path("digit.png"),
        "--pool",
        "max",
        "--size",
        "2",
        "--stride",
        "1",
        "--backend",
        "cpu",
        "-o",
        &f.path("pooled.png"),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("Output of the max pooling 2×2, stride 1 on cpu"));
    assert!(stdout(&out).contains(": 27×27 (larger than 16×16, not printed"));
    assert!(image::open(f.path("pooled.png")).is_ok());
}

#[test]
fn bad_input_is_refused_with_one_line() {
    let f = Fixture::new();
    let d = f.dir.path();
    let ck = f.path("ckpt.safetensors");
    std::fs::write(d.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    std::fs::write(d.join("notes.txt"), "1 2\n3\n").unwrap();
    let other = ModelSpec {
        layers: vec![
            Layer::Flatten,
            Layer::Linear {
                in_features: 784,
                out_features: 10,
            },
        ],
        ..ModelSpec::simple_cnn()
    };
    checkpoint::save(
        &d.join("linear.safetensors"),
        &other,
        &other.init_params(0).unwrap(),
        Default::default(),
        None,
    )
    .unwrap();
    let digit = f.path("digit.png");
    let cpu = ["--backend", "cpu"];
    let predict = |extra: &[&str]| -> Vec<String> {
        ["predict", "--checkpoint", &ck]
            .iter()
            .chain(cpu.iter())
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            predict(&[&f.path("missing.png")]),
            "missing.png: cannot read the image",
        ),
        (
            predict(&[&f.path("broken.png")]),
            "broken.png: not a readable",
        ),
        (predict(&[&f.path("notes.txt")]), "not a PNG or JPEG"),
        (predict(&[&digit, "--top", "0"]), "--top"),
        (
            [
                "predict",
                "--checkpoint",
                &f.path("linear.safetensors"),
                &digit,
            ]
            .map(String::from)
            .to_vec(),
            "another architecture",
        ),
        (
            [
                "filters",
                "--checkpoint",
                &f.path("nope.safetensors"),
                "-o",
                &f.path("x.png"),
            ]
            .map(String::from)
            .to_vec(),
            "cannot read the checkpoint",
        ),
        (
            [
                "filters",
                "--checkpoint",
                &ck,
                "-o",
                "/nonexistent/dir/x.png",
            ]
            .map(String::from)
            .to_vec(),
            "cannot write a picture",
        ),
        (
            [
                "featuremaps",
                "--checkpoint",
                &ck,
                &digit,
                "-o",
                d.to_str().unwrap(),
            ]
            .map(String::from)
            .to_vec(),
            "is a directory",
        ),
        (
            ["convolve", &f.path("demo.txt"), "--kernel", "emboss"]
                .map(String::from)
                .to_vec(),
            "unknown kernel \"emboss\"",
        ),
        (
            [
                "convolve",
                &f.path("demo.txt"),
                "--kernel",
                &f.path("notes.txt"),
            ]
            .map(String::from)
            .to_vec(),
            "notes.txt: line 2: 1 numbers, but the first row has 2",
        ),
        (
            ["convolve", &f.path("notes.txt"), "--kernel", "edge"]
                .map(String::from)
                .to_vec(),
            "line 2",
        ),
        (
            [
                "convolve",
                &f.path("demo.txt"),
                "--kernel",
                "edge",
                "--stride",
                "0",
            ]
            .map(String::from)
            .to_vec(),
            "--stride must be at least 1",
        ),
        (
            [
                "convolve",
                &f.path("demo.txt"),
                "--kernel",
                "edge",
                "--padding",
                "2",
                "--backend",
                "cpu",
            ]
            .map(String::from)
            .to_vec(),
            "padding 2 is more than a 3×3 kernel allows (at most 1",
        ),
        (
            [
                "convolve",
                &f.path("demo.txt"),
                "--pool",
                "max",
                "--size",
                "6",
                "--backend",
                "cpu",
            ]
            .map(String::from)
            .to_vec(),
            "window 6 is larger than the input 5x5",
        ),
        (
            [
                "convolve",
                &f.path("demo.txt"),
                "--pool",
                "avg",
                "--size",
                "0",
            ]
            .map(String::from)
            .to_vec(),
            "--size must be at least 1",
        ),
        (
            [
                "convolve",
                &f.path("demo.txt"),
                "--kernel",
                "edge",
                "-o",
                "/nonexistent/x.png",
            ]
            .map(String::from)
            .to_vec(),
            "cannot write a picture",
        ),
    ];
    for (args, what) in &cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_refused(&args, what, d);
    }
}

#[test]
fn a_drawing_on_paper_gets_an_invert_hint() {
    let f = Fixture::new();
    let paper: Vec<u8> = a_digit().iter().map(|p| 255 - p).collect();
    image::GrayImage::from_raw(28, 28, paper)
        .unwrap()
        .save(f.path("paper.png"))
        .unwrap();
    let args = [
        "predict",
        "--backend",
        "cpu",
        "--checkpoint",
        &f.path("ckpt.safetensors"),
    ];
    let out = cnn_gpu(&[&args[..], &[&f.path("paper.png")]].concat());
    assert_eq!(out.status.code(), Some(0));
    assert!(stderr(&out).contains("bright border") && stderr(&out).contains("--invert"));
    // With --invert the picture is the digit itself: the same output as the digit's.
    let inverted = cnn_gpu(&[&args[..], &["--invert", &f.path("paper.png")]].concat());
    let plain = cnn_gpu(&[&args[..], &[&f.path("digit.png")]].concat());
    let body = |o: &Output| stdout(o).lines().skip(1).collect::<Vec<_>>().join("\n");
    assert_eq!(body(&inverted), body(&plain));
    assert!(!stderr(&inverted).contains("bright border"));
}

// ---- plot -----------------------------------------------------------------------------------

fn log(step: usize, loss: f64) -> Record {
    Record::Log {
        epoch: 1 + (step - 1) / 500,
        batch: (step - 1) % 500 + 1,
        step,
        loss,
        images_per_sec: 1000.0,
        elapsed_s: step as f64 / 10.0,
        backend: "cpu".into(),
        adapter: None,
    }
}

fn epoch(epoch: usize, test_accuracy: f64) -> Record {
    Record::Epoch {
        epoch,
        step: epoch * 500,
        loss: 0.5,
        test_loss: 0.3,
        test_accuracy,
        images_per_sec: 1000.0,
        seconds: 50.0,
        backend: "cpu".into(),
        adapter: None,
    }
}

/// Three epochs of 500 steps: the loss falls from 2.0 by 0.1 every 100 steps, the accuracy
/// rises 90 → 95 → 97.5.
fn three_epochs() -> Vec<Record> {
    let mut records = Vec::new();
    for e in 1..=3 {
        for s in (1..=5).map(|i| (e - 1) * 500 + i * 100) {
            records.push(log(s, 2.0 - 0.1 * (s / 100) as f64));
        }
        records.push(epoch(e, [90.0, 95.0, 97.5][e - 1]));
    }
    records
}

/// Whether a pixel within 1 of (x, y) has `colour`.
fn near(img: &image::RgbImage, (x, y): (i32, i32), colour: RGBColor) -> bool {
    let want = Rgb([colour.0, colour.1, colour.2]);
    (-1..=1).any(|dy| (-1..=1).any(|dx| *img.get_pixel((x + dx) as u32, (y + dy) as u32) == want))
}

#[test]
fn curves_put_each_point_where_its_value_says() {
    let records = three_epochs();
    let c = picture::curves_picture(&records, 800, 320).unwrap();
    assert_eq!(c.image.dimensions(), (800, 320));
    assert_eq!(c.loss_points.len(), 15);
    assert_eq!(c.accuracy_points.len(), 3);
    // Loss against step: equal steps are equal distances to the right, and each fall of 0.1 is
    // the same distance down (within a pixel of rounding), all in the left half.
    let dx: Vec<i32> = c.loss_points.windows(2).map(|w| w[1].0 - w[0].0).collect();
    let dy: Vec<i32> = c.loss_points.windows(2).map(|w| w[1].1 - w[0].1).collect();
    assert!(
        dx.iter().all(|&d| (d - dx[0]).abs() <= 1 && d > 0),
        "{dx:?}"
    );
    assert!(
        dy.iter().all(|&d| (d - dy[0]).abs() <= 1 && d > 0),
        "{dy:?}"
    );
    assert!(c.loss_points.iter().all(|p| p.0 < 400));
    // Accuracy: three points in the right half; 90 → 95 rises twice as far as 95 → 97.5.
    let a = &c.accuracy_points;
    assert!(a.iter().all(|p| p.0 > 400));
    let (rise1, rise2) = (a[0].1 - a[1].1, a[1].1 - a[2].1);
    assert!((rise1 - 2 * rise2).abs() <= 2 && rise2 > 0, "{a:?}");
    // The curves are drawn there: at every point, and halfway between two (the line).
    for &p in &c.loss_points {
        assert!(near(&c.image, p, picture::LOSS_COLOUR), "loss at {p:?}");
    }
    for w in c.loss_points.windows(2) {
        let mid = ((w[0].0 + w[1].0) / 2, (w[0].1 + w[1].1) / 2);
        assert!(
            near(&c.image, mid, picture::LOSS_COLOUR),
            "loss line at {mid:?}"
        );
    }
    for &p in a {
        assert!(
            near(&c.image, p, picture::ACCURACY_COLOUR),
            "accuracy at {p:?}"
        );
    }
    // And nowhere far from them: the top-left corner is white paper.
    assert_eq!(*c.image.get_pixel(2, 2), Rgb([255, 255, 255]));
}

#[test]
fn plot_writes_the_requested_size_and_refuses_bad_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let lines: Vec<String> = three_epochs()
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    std::fs::write(d.join("m.jsonl"), lines.join("\n") + "\n").unwrap();
    let m = d.join("m.jsonl");
    let png = d.join("curves.png");
    let out = cnn_gpu(&[
        "plot",
        m.to_str().unwrap(),
        "-o",
        png.to_str().unwrap(),
        "--width",
        "640",
        "--height",
        "300",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (640, 300));
    let want = picture::curves_picture(&three_epochs(), 640, 300)
        .unwrap()
        .image;
    assert!(img == want, "the file holds the library's picture");
    std::fs::remove_file(&png).unwrap();

    std::fs::write(d.join("empty.jsonl"), "").unwrap();
    std::fs::write(
        d.join("corrupt.jsonl"),
        format!("{}\n{{\"event\":\"log\",", lines[0]),
    )
    .unwrap();
    let o = png.to_str().unwrap();
    let path = |n: &str| d.join(n).to_str().unwrap().to_string();
    for (file, what) in [
        (path("missing.jsonl"), "cannot open"),
        (path("empty.jsonl"), "holds no metrics records"),
        (path("corrupt.jsonl"), "line 2: not a metrics record"),
    ] {
        assert_refused(&["plot", &file, "-o", o], what, d);
    }
    assert_refused(
        &["plot", &path("m.jsonl"), "-o", "/nonexistent/c.png"],
        "cannot write a picture",
        d,
    );
    assert_refused(
        &["plot", &path("m.jsonl"), "-o", o, "--width", "10"],
        "--width",
        d,
    );
}
