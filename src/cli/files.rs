//! What the picture and inference commands share: reading a SimpleCNN checkpoint and a digit
//! image, and writing a PNG atomically. Every problem here is the user's to fix (exit 2).

use std::path::Path;

use image::RgbImage;

use cnn_gpu::checkpoint::{self, Checkpoint};
use cnn_gpu::digit::{self, GreyImage};
use cnn_gpu::model::ModelSpec;
use cnn_gpu::{output, picture};

use super::Failure;

/// A checkpoint of the tutorial's SimpleCNN (another architecture is refused).
pub(crate) fn load_simple_cnn(path: &Path) -> Result<Checkpoint, Failure> {
    checkpoint::load(path, &ModelSpec::simple_cnn()).map_err(Failure::usage)
}

/// The 28×28 MNIST pixels of the image at `path` (see [`digit::mnist_pixels`]), with a warning
/// when a dark-on-light drawing looks like it wants `--invert`.
pub(crate) fn load_digit(path: &Path, invert: bool) -> Result<Vec<u8>, Failure> {
    let img = GreyImage::load(path).map_err(Failure::usage)?;
    if !invert && img.has_bright_border() {
        eprintln!(
            "warning: {} has a bright border: MNIST digits are light on black, so for dark ink \
             on light paper add --invert",
            path.display()
        );
    }
    digit::mnist_pixels(&img, invert).map_err(|e| match e {
        cnn_gpu::Error::InvalidParams(msg) => {
            // The library says "try inverting this image"; the flag that does it is ours.
            let msg = msg.replace(" inverting this image", " --invert for this image");
            Failure::usage(format!("{}: {msg}", path.display()))
        }
        other => Failure::usage(other),
    })
}

/// Refuses an output path that cannot be written, before any work.
pub(crate) fn check_output(path: &Path) -> Result<(), Failure> {
    output::check_writable(path, "picture").map_err(Failure::usage)
}

/// Writes `img` as a PNG at `path`, atomically.
pub(crate) fn write_png(path: &Path, img: &RgbImage) -> Result<(), Failure> {
    let bytes = picture::encode_png(img).map_err(Failure::other)?;
    output::write_atomic(path, &bytes, "picture").map_err(Failure::usage)?;
    eprintln!(
        "wrote {} ({}×{} pixels)",
        path.display(),
        img.width(),
        img.height()
    );
    Ok(())
}
