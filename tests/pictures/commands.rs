//! The picture and inference commands through the binary: `predict` prints the library's
//! probabilities, `convolve` the tutorial's demo (docs/looking-inside.md), `filters`,
//! `featuremaps` and `convolve -o` write PNGs, bad input is refused with one line and no file
//! left behind, and a drawing on paper gets an `--invert` hint.

use std::process::Output;

use cnn_gpu::checkpoint;
use cnn_gpu::model::{Layer, ModelSpec};
use cnn_gpu::picture::{self, Colours, MARGIN};

use crate::common::{cnn_gpu, stderr, stdout};
use crate::{a_digit, assert_refused, reference_probabilities, sharp_params, Fixture};

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
                &f.path("no-such-dir/x.png"),
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
                &f.path("no-such-dir/x.png"),
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

/// A picture with no ink at all is refused with a message naming the file and, since the
/// library only says "try inverting this image", the CLI's own flag for that.
#[test]
fn a_blank_picture_is_refused_with_the_invert_flag() {
    let f = Fixture::new();
    // 40×40 (not 28×28), so that the digit is looked for rather than taken as it is.
    image::GrayImage::from_raw(40, 40, vec![0; 1600])
        .unwrap()
        .save(f.path("blank.png"))
        .unwrap();
    let args = [
        "predict",
        "--backend",
        "cpu",
        "--checkpoint",
        &f.path("ckpt.safetensors"),
    ];
    let out = cnn_gpu(&[&args[..], &[&f.path("blank.png")]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("blank.png")
            && err.contains("no ink found: every pixel is dark")
            && err.contains("try --invert for this image"),
        "{err}"
    );
    // White paper with nothing on it, inverted: no ink either, and the hint says so.
    image::GrayImage::from_raw(40, 40, vec![255; 1600])
        .unwrap()
        .save(f.path("paper.png"))
        .unwrap();
    let out = cnn_gpu(&[&args[..], &["--invert", &f.path("paper.png")]].concat());
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("every pixel is light")
            && stderr(&out).contains("drop --invert for this image"),
        "{}",
        stderr(&out)
    );
}
