//! Training curves: `curves_picture` puts each loss and accuracy point where its value says, and
//! `cnn-gpu plot` writes the library's picture at the requested size and refuses bad files.

use cnn_gpu::metrics::Record;
use cnn_gpu::picture;
use image::Rgb;
use plotters::style::RGBColor;

use crate::assert_refused;
use crate::common::{cnn_gpu, stderr};

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
        &["plot", &path("m.jsonl"), "-o", &path("no-such-dir/c.png")],
        "cannot write a picture",
        d,
    );
    assert_refused(
        &["plot", &path("m.jsonl"), "-o", o, "--width", "10"],
        "--width",
        d,
    );
}
