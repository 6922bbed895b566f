//! The browser trainer end to end (issue 15): `web/e2e/page.mjs` drives the page in Debian's
//! Chromium on its WebGPU adapter (SwiftShader on a machine without a GPU) through
//! playwright-core — load a small MNIST cut, refuse bad files and settings, train SimpleCNN with a
//! pause, draw a digit, download the checkpoint, refuse bad checkpoints, load it back, use the
//! playground — and this test holds what the page showed to the native binary on the same files:
//! the loss lines to `cnn-gpu train --backend cpu`, the accuracy to `cnn-gpu eval` of the
//! downloaded checkpoint, the top 3 to `cnn-gpu predict` of the drawn picture, the playground to
//! `cnn-gpu convolve`.
//!
//! Needs the full MNIST (`CNN_GPU_DATA_DIR`), the built page (`scripts/web.sh --build-only`),
//! `npm ci --prefix web/e2e`, node and `/usr/bin/chromium`. Without them it says it skipped —
//! unless `CNN_GPU_REQUIRE_GPU=1` (as CI sets it), where a missing piece fails it.

mod common;

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{cnn_gpu, stderr, stdout};
use serde_json::{json, Value};

const TRAIN: usize = 256;
const TEST: usize = 200;
const NAMES: [&str; 4] = [
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// What is missing for the page test, if anything.
fn missing() -> Option<String> {
    let root = root();
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let node = Command::new("node").arg("--version").output();
    let checks = [
        (
            root.join("web/www/pkg/cnn_gpu_web_bg.wasm").is_file(),
            "the built page (run scripts/web.sh --build-only)".to_string(),
        ),
        (
            root.join("web/e2e/node_modules/playwright-core").is_dir(),
            "playwright-core (run npm ci --prefix web/e2e)".to_string(),
        ),
        (
            node.is_ok_and(|o| o.status.success()),
            "node (install Node.js)".to_string(),
        ),
        (
            Path::new(&chromium).is_file(),
            format!("{chromium} (apt-get install chromium, or set CHROMIUM)"),
        ),
    ];
    let gone: Vec<String> = checks
        .into_iter()
        .filter(|(ok, _)| !ok)
        .map(|(_, what)| what)
        .collect();
    (!gone.is_empty()).then(|| gone.join(", "))
}

fn gunzip(path: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(fs::File::open(path).expect("open MNIST"))
        .read_to_end(&mut out)
        .expect("gunzip MNIST");
    out
}

fn gzip(path: &Path, bytes: &[u8]) {
    let mut z = flate2::write::GzEncoder::new(
        fs::File::create(path).expect("create"),
        flate2::Compression::fast(),
    );
    z.write_all(bytes).expect("gzip");
    z.finish().expect("gzip");
}

/// The first `n` items of an IDX file: its header with the count set to `n`, and their bytes.
fn cut(idx: &[u8], n: usize) -> Vec<u8> {
    let dims = idx[3] as usize;
    let header = 4 + 4 * dims;
    let item: usize = (1..dims)
        .map(|d| u32::from_be_bytes(idx[4 + 4 * d..8 + 4 * d].try_into().unwrap()) as usize)
        .product();
    let mut out = idx[..header].to_vec();
    out[4..8].copy_from_slice(&(n as u32).to_be_bytes());
    out.extend_from_slice(&idx[header..header + n * item]);
    out
}

/// Writes MNIST's first TRAIN training and TEST test images into `dir`.
fn small_mnist(full: &Path, dir: &Path) -> Vec<PathBuf> {
    fs::create_dir_all(dir).unwrap();
    NAMES
        .iter()
        .zip([TRAIN, TRAIN, TEST, TEST])
        .map(|(name, n)| {
            let path = dir.join(name);
            gzip(&path, &cut(&gunzip(&full.join(name)), n));
            path
        })
        .collect()
}

fn run_ok(args: &[&str]) -> String {
    let out = cnn_gpu(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

/// `[Epoch e, Batch b] loss: x` lines: (e, b, x).
fn loss_lines(lines: impl IntoIterator<Item = String>) -> Vec<(u32, u32, f32)> {
    lines
        .into_iter()
        .filter_map(|l| {
            let rest = l.strip_prefix("[Epoch ")?;
            let (e, rest) = rest.split_once(", Batch ")?;
            let (b, loss) = rest.split_once("] loss: ")?;
            Some((e.parse().ok()?, b.parse().ok()?, loss.trim().parse().ok()?))
        })
        .collect()
}

/// A safetensors file's header (parsed: its metadata's key order varies between saves) and
/// its tensor bytes.
fn safetensors_parts(path: &Path) -> (Value, Vec<u8>) {
    let bytes = fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = serde_json::from_slice(&bytes[8..8 + n]).expect("a safetensors header");
    (header, bytes[8 + n..].to_vec())
}

fn texts(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

#[test]
fn the_page_trains_and_its_checkpoint_evaluates_natively_to_its_accuracy() {
    let Some(full) = std::env::var_os("CNN_GPU_DATA_DIR").filter(|d| !d.is_empty()) else {
        println!("skipped the page test: CNN_GPU_DATA_DIR is not set (point it at the MNIST files to run it)");
        return;
    };
    if let Some(what) = missing() {
        if std::env::var("CNN_GPU_REQUIRE_GPU").is_ok_and(|v| v == "1") {
            panic!("CNN_GPU_REQUIRE_GPU=1 but the page test cannot run without {what}");
        }
        println!("skipped the page test: it needs {what}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let data = dir.join("small");
    let files = small_mnist(Path::new(&full), &data);
    let data_dir = data.to_str().unwrap();

    // Bad inputs for the page: a truncated training-image file, images and labels swapped, a
    // file that is no checkpoint, and a batch-norm model's checkpoint.
    let truncated: Vec<PathBuf> = files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let to = dir.join("truncated").join(f.file_name().unwrap());
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            let bytes = fs::read(f).unwrap();
            fs::write(
                &to,
                if i == 0 {
                    &bytes[..bytes.len() / 2]
                } else {
                    &bytes
                },
            )
            .unwrap();
            to
        })
        .collect();
    let swapped: Vec<PathBuf> = (0..4)
        .map(|i| {
            let to = dir.join("swapped").join(NAMES[i]);
            fs::create_dir_all(to.parent().unwrap()).unwrap();
            fs::copy(&files[i ^ 1], &to).unwrap();
            to
        })
        .collect();
    let not_a_checkpoint = dir.join("notes.safetensors");
    fs::write(&not_a_checkpoint, "these are my notes, not a checkpoint\n").unwrap();
    let bn = dir.join("fashion-cnn.safetensors");
    run_ok(&[
        "train",
        "--backend",
        "cpu",
        "--model",
        "fashion-cnn",
        "--data-dir",
        data_dir,
        "--max-steps",
        "1",
        "--save",
        bn.to_str().unwrap(),
    ]);

    // The run, on the page and natively on the CPU backend.
    let settings = json!({
        "preset": "simple-cnn", "optimizer": "adam", "batch_size": 16, "lr": 0.002,
        "epochs": 1, "seed": 3, "log_interval": 4, "train_limit": 0,
    });
    let native = run_ok(&[
        "train",
        "--backend",
        "cpu",
        "--data-dir",
        data_dir,
        "--optimizer",
        "adam",
        "--batch-size",
        "16",
        "--lr",
        "0.002",
        "--epochs",
        "1",
        "--seed",
        "3",
        "--log-interval",
        "4",
    ]);

    let out = dir.join("out");
    fs::create_dir_all(&out).unwrap();
    let config = json!({
        "www": root().join("web/www"), "out": out, "files": files, "settings": settings,
        "bad": {
            "truncated": truncated, "swapped": swapped,
            "not_a_checkpoint": not_a_checkpoint, "batch_norm_checkpoint": bn,
        },
        "train_timeout_s": 900,
    });
    let config_path = dir.join("config.json");
    fs::write(&config_path, config.to_string()).unwrap();
    let run = Command::new("node")
        .arg(root().join("web/e2e/page.mjs"))
        .arg(&config_path)
        .output()
        .expect("run node");
    let log = format!("{}{}", stdout(&run), stderr(&run));
    println!("{log}");
    assert!(run.status.success(), "the page script failed:\n{log}");
    let r: Value = serde_json::from_slice(&fs::read(out.join("result.json")).unwrap()).unwrap();

    // Without WebGPU the page says so and trains on the CPU backend instead.
    assert_eq!(texts(&r["no_webgpu"]["backend"]), "No WebGPU adapter.");
    assert!(!texts(&r["no_webgpu"]["why"]).is_empty(), "{r:#}");
    assert!(texts(&r["no_webgpu"]["fallback"]).contains("CPU"), "{r:#}");
    assert!(texts(&r["backend"]).starts_with("WebGPU"), "{r:#}");

    // Bad input: a message naming the problem each time, and no run started.
    assert!(texts(&r["no_data"]).contains("load a dataset"), "{r:#}");
    assert!(texts(&r["truncated"]).contains("training images"), "{r:#}");
    assert!(texts(&r["swapped"]).contains("training images"), "{r:#}");
    let absurd = &r["absurd"];
    assert!(texts(&absurd["batch 0"]).contains("batch size 0"), "{r:#}");
    assert!(
        texts(&absurd["lr -1"]).contains("learning rate -1"),
        "{r:#}"
    );
    assert!(
        texts(&absurd["epochs 1000"]).contains("1000 epochs"),
        "{r:#}"
    );
    assert!(
        texts(&absurd["batch 2.5"]).contains("whole number"),
        "{r:#}"
    );
    assert_eq!(
        r["data"],
        json!({"train": TRAIN, "test": TEST}),
        "the good files load after the bad"
    );

    // The loss lines: as many as natively, each within 0.002 of the CPU backend's (the page runs
    // the WGSL kernels, whose sums round differently), and falling.
    let page_lines = loss_lines(r["lines"].as_array().unwrap().iter().map(|l| texts(l)));
    let native_lines = loss_lines(native.lines().map(String::from));
    assert_eq!(native_lines.len(), TRAIN / 16 / 4, "{native}");
    assert_eq!(page_lines.len(), native_lines.len(), "{r:#}\n{native}");
    for (p, n) in page_lines.iter().zip(&native_lines) {
        assert_eq!((p.0, p.1), (n.0, n.1), "{r:#}");
        assert!((p.2 - n.2).abs() <= 0.002, "page {p:?} vs native {n:?}");
    }
    assert!(
        page_lines.windows(2).all(|w| w[1].2 < w[0].2)
            && page_lines.last().unwrap().2 < page_lines[0].2 - 0.2,
        "the loss falls: {page_lines:?}"
    );
    let pause = &r["pause"];
    assert_eq!(pause["before"], pause["after"], "paused: {r:#}");
    assert_eq!(texts(&pause["button"]), "Resume");
    assert_eq!(r["progress"], json!([TRAIN / 16, TRAIN / 16]));

    // The accuracy shown after the epoch is what `cnn-gpu eval` gives the downloaded checkpoint.
    let acc = &r["accuracy"][0];
    assert_eq!(acc["total"], json!(TEST), "{r:#}");
    let correct = acc["correct"].as_u64().unwrap() as f64;
    let page_pct = format!("{:.2}%", 100.0 * correct / TEST as f64);
    assert!(texts(&acc["text"]).contains(&page_pct), "{r:#}");
    let ckpt = texts(&r["checkpoint"]);
    let eval = run_ok(&[
        "eval",
        "--backend",
        "cpu",
        "--checkpoint",
        &ckpt,
        "--data-dir",
        data_dir,
    ]);
    let want = format!("Accuracy of the network on the {TEST} test images: {page_pct}");
    assert!(
        eval.contains(&want),
        "page showed {page_pct}; eval said:\n{eval}"
    );
    // Well above chance (10%) after 16 steps, and near the native run's own accuracy.
    assert!(correct >= 0.4 * TEST as f64, "{page_pct}");
    let native_acc = native
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "Accuracy of the network on the {TEST} test images: "
            ))
        })
        .and_then(|p| p.trim_end_matches('%').parse::<f64>().ok())
        .expect("native accuracy");
    assert!(
        (native_acc - 100.0 * correct / TEST as f64).abs() <= 2.0,
        "page {page_pct} vs native {native_acc}%"
    );

    // Refused checkpoints left the model as it was.
    assert!(
        texts(&r["not_a_checkpoint"]).contains("checkpoint"),
        "{r:#}"
    );
    assert!(
        texts(&r["batch_norm_checkpoint"]).contains("batch norm"),
        "{r:#}"
    );
    assert_eq!(
        safetensors_parts(Path::new(&ckpt)),
        safetensors_parts(Path::new(&texts(&r["checkpoint_after_refusals"]))),
        "the model after refused checkpoints"
    );
    assert!(
        texts(&r["loaded"]).starts_with("loaded page.safetensors"),
        "{r:#}"
    );

    // The drawn digit: the page's top 3 are `cnn-gpu predict`'s on the same picture.
    let digit = out.join("digit.png");
    let predicted = run_ok(&[
        "predict",
        "--backend",
        "cpu",
        "--checkpoint",
        &ckpt,
        digit.to_str().unwrap(),
    ]);
    let native_top: Vec<(u64, f64)> = predicted
        .lines()
        .skip(1)
        .map(|l| {
            let mut it = l.split_whitespace();
            let c = it.next().unwrap().parse().unwrap();
            let p = it.next().unwrap().trim_end_matches('%').parse().unwrap();
            (c, p)
        })
        .collect();
    let page_top = r["top3"].as_array().unwrap();
    assert_eq!(page_top.len(), 3, "{r:#}");
    for (p, (c, pct)) in page_top.iter().zip(&native_top) {
        assert_eq!(
            p[0].as_u64().unwrap(),
            *c,
            "page {page_top:?} vs\n{predicted}"
        );
        assert!(
            (100.0 * p[1].as_f64().unwrap() - pct).abs() <= 0.01,
            "page {page_top:?} vs\n{predicted}"
        );
    }

    // The playground: the edge kernel and 2×2 pooling on the page's backend are
    // `cnn-gpu convolve`'s on the CPU.
    let pg = &r["playground"];
    let input = dir.join("input.txt");
    fs::write(&input, texts(&pg["input"])).unwrap();
    for (name, args) in [
        ("edge", vec!["--kernel", "edge"]),
        ("max", vec!["--pool", "max", "--size", "2", "--stride", "2"]),
        ("avg", vec!["--pool", "avg", "--size", "2", "--stride", "2"]),
    ] {
        let mut all = vec!["convolve", "--backend", "cpu", input.to_str().unwrap()];
        all.extend(args);
        let text = run_ok(&all);
        let want: Vec<f64> = text
            .lines()
            .flat_map(|l| l.split_whitespace().filter_map(|v| v.parse::<f64>().ok()))
            .collect();
        let got: Vec<f64> = pg[name]["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let cells =
            (pg[name]["rows"].as_u64().unwrap() * pg[name]["cols"].as_u64().unwrap()) as usize;
        assert_eq!(got.len(), cells, "{name}: {pg:#}");
        // The output is the last `cells` numbers cnn-gpu convolve prints.
        assert!(
            want.len() >= cells
                && want[want.len() - cells..]
                    .iter()
                    .zip(&got)
                    .all(|(a, b)| (a - b).abs() < 1e-4),
            "{name}: page {got:?} vs cnn-gpu convolve:\n{text}"
        );
    }
    assert!(texts(&pg["stride0"]).contains("stride"), "{pg:#}");
    assert_eq!(r["console_errors"], json!([]), "{r:#}");
}
