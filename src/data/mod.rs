//! MNIST-family datasets: finding the files, verifying them, parsing them, and the small helpers
//! the training loop needs (pixel normalisation, packing for the backends, per-epoch shuffles).
//!
//! [`load_mnist`] checks every file itself (existence, length, magic number, counts; see
//! [`idx`]) and only then hands the validated, uncompressed files to the `mnist` crate, so that a
//! missing, truncated or foreign file is a clear [`Error::Data`] naming the file, never a panic.
//! The `mnist` crate (0.6) can only read the standard MNIST sizes (60000 + 10000 images of
//! 28×28); any other validated set — Fashion-MNIST subsets, test fixtures — is read by our own
//! reader in [`idx`].
//!
//! [`missing_files`] tells files that are absent (which [`fetch::fetch_files`] can download,
//! hash-checked) from files that are present but unusable (which are the user's to fix).

pub mod augment;
#[cfg(feature = "native")]
pub mod fetch;
#[cfg(feature = "native")]
mod files;
mod idx;

#[cfg(feature = "native")]
pub use files::{load_idx_dataset, load_mnist, missing_files, resolve_data_dir};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::{Error, Result};
pub use idx::{parse_idx, write_idx_images, write_idx_labels, Compression, IdxHeader, IdxKind};

pub const TRAIN_IMAGES: &str = "train-images-idx3-ubyte";
pub const TRAIN_LABELS: &str = "train-labels-idx1-ubyte";
pub const TEST_IMAGES: &str = "t10k-images-idx3-ubyte";
pub const TEST_LABELS: &str = "t10k-labels-idx1-ubyte";
/// The four files [`load_mnist`] needs, each raw or with a `.gz` suffix.
pub const MNIST_FILES: [&str; 4] = [TRAIN_IMAGES, TRAIN_LABELS, TEST_IMAGES, TEST_LABELS];

/// The environment variable naming the MNIST directory when `--data-dir` is not given.
pub const DATA_DIR_ENV: &str = "CNN_GPU_DATA_DIR";
/// The environment variable naming the Fashion-MNIST directory when `--data-dir` is not given.
pub const FASHION_DATA_DIR_ENV: &str = "CNN_GPU_FASHION_DATA_DIR";
/// Where MNIST is looked for, relative to the working directory, by default.
pub const DEFAULT_DATA_DIR: &str = "data/mnist";

/// Which MNIST-format dataset. Both have the same four file names, format and sizes; they differ
/// in where they are found and fetched from, their hashes ([`fetch`]) and their class names.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DatasetKind {
    /// Handwritten digits (LeCun et al.).
    #[default]
    Mnist,
    /// Zalando's pictures of clothes (Xiao et al., 2017).
    FashionMnist,
}

impl DatasetKind {
    pub fn name(self) -> &'static str {
        match self {
            DatasetKind::Mnist => "MNIST",
            DatasetKind::FashionMnist => "Fashion-MNIST",
        }
    }

    /// The directory, relative to the working directory, where it is looked for and fetched to.
    pub fn default_dir(self) -> &'static str {
        match self {
            DatasetKind::Mnist => DEFAULT_DATA_DIR,
            DatasetKind::FashionMnist => "data/fashion-mnist",
        }
    }

    /// The environment variable that names its directory.
    pub fn dir_env(self) -> &'static str {
        match self {
            DatasetKind::Mnist => DATA_DIR_ENV,
            DatasetKind::FashionMnist => FASHION_DATA_DIR_ENV,
        }
    }

    /// Where system packages install it: Debian's `dataset-fashion-mnist` package.
    pub fn system_dirs(self) -> &'static [&'static str] {
        match self {
            DatasetKind::Mnist => &[],
            DatasetKind::FashionMnist => &["/usr/share/datasets/fashion-mnist"],
        }
    }

    /// The name of each label, 0 to 9.
    pub fn class_names(self) -> [&'static str; NUM_CLASSES] {
        match self {
            DatasetKind::Mnist => ["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
            DatasetKind::FashionMnist => [
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ],
        }
    }
}
/// MNIST-family labels are digits (or classes) 0–9.
pub const NUM_CLASSES: usize = 10;

/// One split of a dataset: `len()` images of `rows`×`cols` bytes, one after another, row-major,
/// and one label per image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    pub images: Vec<u8>,
    pub labels: Vec<u8>,
    pub rows: usize,
    pub cols: usize,
}

impl Dataset {
    /// A dataset whose sizes are checked to agree.
    pub fn new(images: Vec<u8>, labels: Vec<u8>, rows: usize, cols: usize) -> Result<Self> {
        let expected = rows
            .checked_mul(cols)
            .and_then(|n| n.checked_mul(labels.len()));
        if rows == 0 || cols == 0 || expected != Some(images.len()) {
            return Err(Error::InvalidParams(format!(
                "Dataset::new: {} pixel bytes are not {} images of {rows}×{cols}",
                images.len(),
                labels.len()
            )));
        }
        Ok(Dataset {
            images,
            labels,
            rows,
            cols,
        })
    }

    /// The number of images (= labels).
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Bytes per image: rows·cols.
    pub fn image_len(&self) -> usize {
        self.rows * self.cols
    }

    /// The pixels of image `i`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// The pixels packed four to a word, little-endian (pixel `4k` in the low byte of word `k`),
    /// the last word zero-padded: how the backends keep the dataset resident.
    pub fn packed_images(&self) -> Vec<u32> {
        self.images
            .chunks(4)
            .map(|c| {
                let mut word = [0u8; 4];
                word[..c.len()].copy_from_slice(c);
                u32::from_le_bytes(word)
            })
            .collect()
    }
}

/// The MNIST training and test splits.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mnist {
    pub train: Dataset,
    pub test: Dataset,
}

/// The pixel normalisation is the gather op's: see [`crate::backend::normalize_pixel`].
pub use crate::backend::{normalize_pixel, normalize_value};

/// A permutation of `0..n` for one epoch: Fisher–Yates driven by ChaCha8 keyed by `seed`, on the
/// stream numbered `epoch`, so every epoch differs and a run is reproducible from its seed.
///
/// # Panics
/// If `n - 1` does not fit in a u32 (more than 2³² items).
pub fn shuffled_indices(n: usize, seed: u64, epoch: usize) -> Vec<u32> {
    assert!(
        n as u64 <= u32::MAX as u64 + 1,
        "shuffled_indices: {n} items do not fit u32 indices"
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch as u64);
    let mut indices: Vec<u32> = (0..n).map(|i| i as u32).collect();
    // Sample u32 ranges (not usize) so the sequence is the same on every platform.
    for i in (1..n).rev() {
        let j = rng.random_range(0..=i as u32) as usize;
        indices.swap(i, j);
    }
    indices
}
