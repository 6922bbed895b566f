//! MNIST-family IDX loading: round trips through small files generated here, every kind of bad
//! file (each must be a clear `Error::Data` naming the file, never a panic), the pixel and
//! shuffle helpers, and — when `CNN_GPU_DATA_DIR` is set — the real MNIST.

use std::fmt::Debug;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Instant;

use cnn_gpu::data::{
    fetch::sha256_hex, load_idx_dataset, load_mnist, normalize_pixel, resolve_data_dir,
    shuffled_indices, write_idx_images, write_idx_labels, Compression, Dataset, DatasetKind, Mnist,
    FASHION_DATA_DIR_ENV, MNIST_FILES, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
};
use cnn_gpu::Error;
use flate2::write::GzEncoder;
use std::io::Write;

/// A small dataset with rows ≠ cols, pixels that differ per position and labels 0–9.
fn synthetic(count: usize, rows: usize, cols: usize, salt: u8) -> Dataset {
    let images = (0..count * rows * cols)
        .map(|i| (i * 7 + salt as usize) as u8)
        .collect();
    let labels = (0..count)
        .map(|i| ((i + salt as usize) % 10) as u8)
        .collect();
    Dataset::new(images, labels, rows, cols).unwrap()
}

fn file_name(name: &str, compression: Compression) -> String {
    match compression {
        Compression::Raw => name.to_string(),
        Compression::Gzip => format!("{name}.gz"),
    }
}

/// Writes `mnist` as the four MNIST files in `dir`.
fn write_mnist(dir: &Path, mnist: &Mnist, compression: Compression) {
    let (train, test) = (&mnist.train, &mnist.test);
    write_idx_images(
        &dir.join(file_name(TRAIN_IMAGES, compression)),
        train.rows,
        train.cols,
        &train.images,
        compression,
    )
    .unwrap();
    write_idx_labels(
        &dir.join(file_name(TRAIN_LABELS, compression)),
        &train.labels,
        compression,
    )
    .unwrap();
    write_idx_images(
        &dir.join(file_name(TEST_IMAGES, compression)),
        test.rows,
        test.cols,
        &test.images,
        compression,
    )
    .unwrap();
    write_idx_labels(
        &dir.join(file_name(TEST_LABELS, compression)),
        &test.labels,
        compression,
    )
    .unwrap();
}

fn small_mnist() -> Mnist {
    Mnist {
        train: synthetic(7, 4, 3, 1),
        test: synthetic(3, 4, 3, 2),
    }
}

/// A temp dir holding a valid small MNIST in the given form.
fn fixture(compression: Compression) -> (tempfile::TempDir, Mnist) {
    let dir = tempfile::tempdir().unwrap();
    let mnist = small_mnist();
    write_mnist(dir.path(), &mnist, compression);
    (dir, mnist)
}

/// The path and message of an `Error::Data`; anything else fails the test.
fn data_error<T: Debug>(result: cnn_gpu::Result<T>) -> (PathBuf, String) {
    match result {
        Err(Error::Data { path, message }) => {
            eprintln!("expected error: {}: {message}", path.display());
            (path, message)
        }
        other => panic!("expected Error::Data, got {other:?}"),
    }
}

fn assert_names(path: &Path, name: &str) {
    assert_eq!(
        path.file_name().unwrap().to_str().unwrap(),
        name,
        "error names {}",
        path.display()
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// An IDX images header, written out by hand (not by the code under test).
fn images_header(magic: u32, count: u32, rows: u32, cols: u32) -> Vec<u8> {
    [magic, count, rows, cols]
        .iter()
        .flat_map(|w| w.to_be_bytes())
        .collect()
}

#[test]
fn round_trip_raw() {
    let (dir, expected) = fixture(Compression::Raw);
    assert_eq!(load_mnist(dir.path()).unwrap(), expected);
}

#[test]
fn round_trip_gz() {
    let (dir, expected) = fixture(Compression::Gzip);
    assert_eq!(load_mnist(dir.path()).unwrap(), expected);
}

#[test]
fn raw_file_is_preferred_over_gz() {
    let (dir, mut expected) = fixture(Compression::Gzip);
    // A raw training-labels file beside the .gz, with different labels: it must win.
    expected.train.labels.iter_mut().for_each(|l| *l = 9 - *l);
    write_idx_labels(
        &dir.path().join(TRAIN_LABELS),
        &expected.train.labels,
        Compression::Raw,
    )
    .unwrap();
    assert_eq!(load_mnist(dir.path()).unwrap(), expected);
}

#[test]
fn hand_written_header_is_read() {
    // One 2×3 image written byte by byte, so the reader is checked against the format, not only
    // against our writer.
    let dir = tempfile::tempdir().unwrap();
    let mut images = images_header(0x0000_0803, 1, 2, 3);
    images.extend([10, 11, 12, 20, 21, 22]);
    fs::write(dir.path().join("img"), images).unwrap();
    fs::write(dir.path().join("lbl"), [0, 0, 8, 1, 0, 0, 0, 1, 7]).unwrap();
    let d = load_idx_dataset(&dir.path().join("img"), &dir.path().join("lbl")).unwrap();
    assert_eq!((d.rows, d.cols, d.len(), d.image_len()), (2, 3, 1, 6));
    assert_eq!(d.image(0), [10, 11, 12, 20, 21, 22]);
    assert_eq!(d.labels, [7]);
}

#[test]
fn load_idx_dataset_reads_raw_and_gz() {
    let dir = tempfile::tempdir().unwrap();
    let d = synthetic(5, 3, 2, 4);
    write_idx_images(&dir.path().join("a.gz"), 3, 2, &d.images, Compression::Gzip).unwrap();
    write_idx_labels(&dir.path().join("b"), &d.labels, Compression::Raw).unwrap();
    assert_eq!(
        load_idx_dataset(&dir.path().join("a.gz"), &dir.path().join("b")).unwrap(),
        d
    );
}

#[test]
fn missing_file_is_named_and_all_needed_files_listed() {
    let (dir, _) = fixture(Compression::Raw);
    fs::remove_file(dir.path().join(TEST_LABELS)).unwrap();
    let (path, message) = data_error(load_mnist(dir.path()));
    assert_names(&path, TEST_LABELS);
    for name in MNIST_FILES {
        assert!(message.contains(name), "message lists {name}: {message}");
    }
    assert!(
        message.contains("--data-dir") && message.contains("CNN_GPU_DATA_DIR"),
        "{message}"
    );
    let shown = std::path::absolute(dir.path()).unwrap();
    assert!(
        message.contains(&shown.display().to_string()),
        "message names the directory: {message}"
    );
}

#[test]
fn missing_directory_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let (path, message) = data_error(load_mnist(&dir.path().join("nowhere")));
    assert_names(&path, TRAIN_IMAGES);
    assert!(message.contains("does not exist"), "{message}");
}

#[test]
fn truncated_images_file() {
    let (dir, _) = fixture(Compression::Raw);
    let path = dir.path().join(TRAIN_IMAGES);
    let bytes = fs::read(&path).unwrap();
    fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    let (err_path, message) = data_error(load_mnist(dir.path()));
    assert_eq!(err_path, path);
    assert!(message.contains("truncated"), "{message}");

    // Cut inside the header.
    fs::write(&path, &bytes[..10]).unwrap();
    let (err_path, message) = data_error(load_mnist(dir.path()));
    assert_eq!(err_path, path);
    assert!(message.contains("header"), "{message}");

    // Empty.
    fs::write(&path, []).unwrap();
    let (err_path, message) = data_error(load_mnist(dir.path()));
    assert_eq!(err_path, path);
    assert!(message.contains("empty"), "{message}");
}

#[test]
fn trailing_bytes_are_rejected() {
    let (dir, _) = fixture(Compression::Raw);
    let path = dir.path().join(TEST_LABELS);
    let mut bytes = fs::read(&path).unwrap();
    bytes.push(3);
    fs::write(&path, bytes).unwrap();
    let (err_path, message) = data_error(load_mnist(dir.path()));
    assert_eq!(err_path, path);
    assert!(message.contains("trailing"), "{message}");
}

#[test]
fn truncated_gz_files() {
    let (dir, _) = fixture(Compression::Gzip);
    let path = dir.path().join(format!("{TRAIN_IMAGES}.gz"));
    let raw = {
        let mut raw = images_header(0x0000_0803, 7, 4, 3);
        raw.extend(synthetic(7, 4, 3, 1).images);
        raw
    };
    // A complete gzip stream whose content is short.
    fs::write(&path, gzip(&raw[..raw.len() - 1])).unwrap();
    let (err_path, message) = data_error(load_mnist(dir.path()));
    assert_eq!(err_path, path);
    assert!(message.contains("truncated"), "{message}");

    // A gzip stream cut off part way (a partial download).
    let compressed = gzip(&raw);
    fs::write(&path, &compressed[..compressed.len() - 6]).unwrap();
    let (err_path, _) = data_error(load_mnist(dir.path()));
    assert_eq!(err_path, path);
}

#[test]
fn wrong_magic_number() {
    let (dir, _) = fixture(Compression::Raw);
    let path = dir.path().join(TRAIN_IMAGES);
    // A labels file where the images should be.
    fs::copy(dir.path().join(TRAIN_LABELS), &path).unwrap();
    let (err_path, message) = data_error(load_mnist(dir.path()));
    assert_eq!(err_path, path);
    assert!(
        message.contains("magic") && message.contains("labels"),
        "{message}"
    );

    // Something else entirely.
    fs::write(&path, b"<html>404 Not Found</html>").unwrap();
    let (err_path, message) = data_error(load_mnist(dir.path()));
    assert_eq!(err_path, path);
    assert!(message.contains("magic"), "{message}");

    // Gzipped data under a raw name.
    fs::write(&path, gzip(&images_header(0x0000_0803, 7, 4, 3))).unwrap();
    let (err_path, message) = data_error(load_mnist(dir.path()));
    assert_eq!(err_path, path);
    assert!(message.contains("compressed"), "{message}");
}

#[test]
fn gz_name_without_gzip_data() {
    let (dir, _) = fixture(Compression::Gzip);
    let path = dir.path().join(format!("{TEST_IMAGES}.gz"));
    fs::write(&path, images_header(0x0000_0803, 3, 4, 3)).unwrap();
    let (err_path, message) = data_error(load_mnist(dir.path()));
    assert_eq!(err_path, path);
    assert!(message.contains("not gzip"), "{message}");
}

#[test]
fn label_count_must_equal_image_count() {
    let (dir, expected) = fixture(Compression::Raw);
    let path = dir.path().join(TRAIN_LABELS);
    write_idx_labels(&path, &expected.train.labels[..6], Compression::Raw).unwrap();
    let (err_path, message) = data_error(load_mnist(dir.path()));
    assert_eq!(err_path, path);
    assert!(
        message.contains('6') && message.contains('7') && message.contains(TRAIN_IMAGES),
        "{message}"
    );
}

#[test]
fn test_images_must_match_training_image_size() {
    let (dir, _) = fixture(Compression::Raw);
    let path = dir.path().join(TEST_IMAGES);
    write_idx_images(&path, 3, 4, &synthetic(3, 3, 4, 0).images, Compression::Raw).unwrap();
    let (err_path, message) = data_error(load_mnist(dir.path()));
    assert_eq!(err_path, path);
    assert!(
        message.contains("3×4") && message.contains("4×3"),
        "{message}"
    );
}

#[test]
fn labels_must_be_digits() {
    let (dir, mut expected) = fixture(Compression::Raw);
    expected.test.labels[2] = 10;
    let path = dir.path().join(TEST_LABELS);
    write_idx_labels(&path, &expected.test.labels, Compression::Raw).unwrap();
    let (err_path, message) = data_error(load_mnist(dir.path()));
    assert_eq!(err_path, path);
    assert!(message.contains("label 10 at index 2"), "{message}");
}

#[test]
fn huge_header_count_with_tiny_file() {
    // 4294967295 images of 28×28 claimed (≈ 3.4 TB) by a 20-byte file: a clear error, not an
    // attempt to allocate or decompress that much.
    let (dir, _) = fixture(Compression::Raw);
    let path = dir.path().join(TRAIN_IMAGES);
    let mut bytes = images_header(0x0000_0803, u32::MAX, 28, 28);
    bytes.extend([1, 2, 3, 4]);
    fs::write(&path, &bytes).unwrap();
    let (err_path, message) = data_error(load_mnist(dir.path()));
    assert_eq!(err_path, path);
    assert!(message.contains("truncated"), "{message}");

    // The same as .gz: refused from the header, before decompressing.
    fs::remove_file(&path).unwrap();
    let gz_path = dir.path().join(format!("{TRAIN_IMAGES}.gz"));
    fs::write(&gz_path, gzip(&bytes)).unwrap();
    let (err_path, message) = data_error(load_mnist(dir.path()));
    assert_eq!(err_path, gz_path);
    assert!(message.contains("header claims"), "{message}");

    // Sizes whose product overflows 64 bits.
    fs::remove_file(&gz_path).unwrap();
    fs::write(
        &path,
        images_header(0x0000_0803, u32::MAX, u32::MAX, u32::MAX),
    )
    .unwrap();
    let (err_path, message) = data_error(load_mnist(dir.path()));
    assert_eq!(err_path, path);
    assert!(message.contains("impossible"), "{message}");
}

#[test]
fn zero_sized_images_are_rejected() {
    let (dir, _) = fixture(Compression::Raw);
    let path = dir.path().join(TRAIN_IMAGES);
    fs::write(&path, images_header(0x0000_0803, 7, 0, 3)).unwrap();
    let (err_path, _) = data_error(load_mnist(dir.path()));
    assert_eq!(err_path, path);
}

#[test]
fn writer_rejects_a_partial_image() {
    let dir = tempfile::tempdir().unwrap();
    let result = write_idx_images(&dir.path().join("x"), 2, 2, &[0; 7], Compression::Raw);
    assert!(matches!(result, Err(Error::InvalidParams(_))), "{result:?}");
}

#[test]
fn packed_images_are_little_endian_and_zero_padded() {
    let d = Dataset::new(vec![1, 2, 3, 4, 5, 6], vec![0, 1, 2], 1, 2).unwrap();
    assert_eq!(d.packed_images(), [0x0403_0201, 0x0000_0605]);
    let d = Dataset::new(vec![0xff, 0x80, 0x01, 0x00], vec![0], 2, 2).unwrap();
    assert_eq!(d.packed_images(), [0x0001_80ff]);
}

#[test]
fn normalize_pixel_matches_torchvision() {
    for (p, expected) in [(0u8, -1.0f32), (255, 1.0), (51, -0.6)] {
        let got = normalize_pixel(p);
        assert!(
            (got - expected).abs() <= 1e-6,
            "normalize_pixel({p}) = {got}, expected {expected}"
        );
    }
}

#[test]
fn shuffled_indices_are_seeded_permutations() {
    let n = 1000;
    let a = shuffled_indices(n, 42, 0);
    let mut sorted = a.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted,
        (0..n as u32).collect::<Vec<_>>(),
        "a permutation of 0..n"
    );
    assert_eq!(
        a,
        shuffled_indices(n, 42, 0),
        "deterministic for (seed, epoch)"
    );
    assert_ne!(a, shuffled_indices(n, 42, 1), "epochs differ");
    assert_ne!(a, shuffled_indices(n, 43, 0), "seeds differ");
    assert_ne!(a, (0..n as u32).collect::<Vec<_>>(), "actually shuffled");
    assert!(shuffled_indices(0, 1, 0).is_empty());
    assert_eq!(shuffled_indices(1, 1, 0), [0]);
}

#[test]
fn cli_data_dir_wins() {
    assert_eq!(
        resolve_data_dir(
            Some(Path::new("/somewhere/mnist")),
            DatasetKind::FashionMnist
        ),
        Path::new("/somewhere/mnist")
    );
}

/// The real MNIST, only where `CNN_GPU_DATA_DIR` points at it (CI does).
#[test]
fn real_mnist() {
    let Some(dir) = std::env::var_os("CNN_GPU_DATA_DIR").filter(|d| !d.is_empty()) else {
        println!("skipped real_mnist: CNN_GPU_DATA_DIR is not set (point it at the MNIST files to run it)");
        return;
    };
    let dir = PathBuf::from(dir);
    let start = Instant::now();
    let mnist =
        load_mnist(&dir).unwrap_or_else(|e| panic!("loading MNIST from {}: {e}", dir.display()));
    println!(
        "loaded the full MNIST from {} in {:.2?}",
        dir.display(),
        start.elapsed()
    );
    for (split, count) in [(&mnist.train, 60_000), (&mnist.test, 10_000)] {
        assert_eq!((split.len(), split.rows, split.cols), (count, 28, 28));
        assert_eq!(split.images.len(), count * 28 * 28);
    }
    assert_eq!(mnist.train.labels[..10], [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert_eq!(mnist.test.labels[..10], [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);

    // The mnist crate's reading agrees with our own reader.
    let file = |name: &str| {
        let raw = dir.join(name);
        if raw.exists() {
            raw
        } else {
            dir.join(format!("{name}.gz"))
        }
    };
    let start = Instant::now();
    let test = load_idx_dataset(&file(TEST_IMAGES), &file(TEST_LABELS)).unwrap();
    println!(
        "read the test split with our own reader in {:.2?}",
        start.elapsed()
    );
    assert_eq!(test, mnist.test);
}

/// The real Fashion-MNIST, only where `CNN_GPU_FASHION_DATA_DIR` points at it (CI installs
/// Debian's dataset-fashion-mnist and points it there): the four files' uncompressed content
/// has the published SHA-256 that fetching checks, and the sets load with their known sizes and
/// first labels (ankle boot, T-shirt, T-shirt, dress, …).
#[test]
fn real_fashion_mnist() {
    let Some(dir) = std::env::var_os(FASHION_DATA_DIR_ENV).filter(|d| !d.is_empty()) else {
        println!("skipped real_fashion_mnist: {FASHION_DATA_DIR_ENV} is not set (point it at the Fashion-MNIST files, e.g. /usr/share/datasets/fashion-mnist, to run it)");
        return;
    };
    let dir = PathBuf::from(dir);
    for (name, sha) in DatasetKind::FashionMnist.sha256() {
        let gz = dir.join(format!("{name}.gz"));
        let raw = if gz.exists() {
            let mut out = Vec::new();
            std::io::Read::read_to_end(
                &mut flate2::read::GzDecoder::new(fs::File::open(&gz).unwrap()),
                &mut out,
            )
            .unwrap();
            out
        } else {
            fs::read(dir.join(name)).unwrap()
        };
        assert_eq!(&sha256_hex(&raw), sha, "{name}");
    }
    let fashion = load_mnist(&dir).unwrap();
    assert_eq!((fashion.train.len(), fashion.test.len()), (60_000, 10_000));
    assert_eq!(fashion.train.labels[..6], [9, 0, 0, 3, 0, 2]);
    assert_eq!(
        DatasetKind::FashionMnist.class_names()[9],
        "Ankle boot",
        "label 9"
    );
}
