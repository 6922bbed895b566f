//! Turning a picture of a digit (PNG or JPEG, any size, colour or grey) into a 28×28 MNIST-style
//! image, for `cnn-gpu predict` and `cnn-gpu featuremaps`.
//!
//! A 28×28 grey image is used as it is. Any other image follows MNIST's recipe:
//! 1. convert to grey (Rec. 709 luma; transparent pixels count as white paper) and, with
//!    `invert`, turn dark ink on light paper into MNIST's light ink on black;
//! 2. crop to the bounding box of the ink (pixels brighter than [`INK_THRESHOLD`]);
//! 3. scale the crop to fit 20×20, keeping its aspect ratio (a triangle filter, which averages
//!    over the source pixels when shrinking, so strokes stay anti-aliased);
//! 4. place it in a black 28×28 field so that its centre of mass lands on the field's centre,
//!    moved by whole pixels (whatever the move pushes past the edge is dropped).

use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, ImageBuffer, Luma};

use crate::{Error, Result};

/// The side of an MNIST image.
pub const SIDE: usize = 28;
/// The side of the box MNIST scales a digit's bounding box to fit.
pub const FIT: usize = 20;
/// A pixel whose ink (0 black … 1 white, after inversion) exceeds this counts for the bounding
/// box; fainter ones at the edges (paper texture, JPEG noise) are cropped away.
pub const INK_THRESHOLD: f32 = 0.1;

/// A grey image, row-major, 0.0 black … 1.0 white.
#[derive(Clone, Debug, PartialEq)]
pub struct GreyImage {
    pub width: usize,
    pub height: usize,
    pub pixels: Vec<f32>,
    /// Whether the source had no colour (an L or LA image).
    pub was_grey: bool,
}

impl GreyImage {
    /// Grey from any decoded image: luma, with transparent pixels composited over white.
    pub fn from_image(img: &DynamicImage) -> Self {
        let was_grey = !img.color().has_color();
        let la = img.to_luma_alpha32f();
        let pixels = la.pixels().map(|p| p[0] * p[1] + (1.0 - p[1])).collect();
        GreyImage {
            width: la.width() as usize,
            height: la.height() as usize,
            pixels,
            was_grey,
        }
    }

    /// Decodes a PNG or JPEG file; errors name the file.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::data(path, format!("cannot read the image: {e}")))?;
        Self::decode(&bytes).map_err(|e| Error::data(path, e))
    }

    /// Decodes PNG or JPEG bytes; the error says what is wrong with them.
    pub fn decode(bytes: &[u8]) -> std::result::Result<Self, String> {
        let format = image::guess_format(bytes)
            .map_err(|_| "not a PNG or JPEG image (unrecognised contents)".to_string())?;
        let img = image::load_from_memory_with_format(bytes, format)
            .map_err(|e| format!("not a readable {format:?} image: {e}"))?;
        if img.width() == 0 || img.height() == 0 {
            return Err("the image is empty (0 pixels)".into());
        }
        Ok(Self::from_image(&img))
    }

    /// The mean grey of the outermost ring of pixels: near 1 for a drawing on white paper.
    pub fn border_mean(&self) -> f32 {
        let (w, h) = (self.width, self.height);
        let mut sum = 0.0;
        let mut n = 0usize;
        for y in 0..h {
            for x in 0..w {
                if y == 0 || x == 0 || y + 1 == h || x + 1 == w {
                    sum += self.pixels[y * w + x];
                    n += 1;
                }
            }
        }
        sum / n as f32
    }

    /// Whether the border looks like light paper (a dark-on-light drawing wants `invert`).
    pub fn has_bright_border(&self) -> bool {
        self.border_mean() > 0.5
    }
}

/// The 28×28 MNIST pixels (0 black … 255 white ink) of `img` by the recipe in the module docs.
/// Fails (`InvalidParams`) on an image with no ink.
pub fn mnist_pixels(img: &GreyImage, invert: bool) -> Result<Vec<u8>> {
    let ink: Vec<f32> = if invert {
        img.pixels.iter().map(|v| 1.0 - v).collect()
    } else {
        img.pixels.clone()
    };
    if img.width == SIDE && img.height == SIDE && img.was_grey {
        return Ok(quantise(&ink));
    }
    let (x0, y0, x1, y1) = ink_box(&ink, img.width, img.height).ok_or_else(|| {
        Error::InvalidParams(format!(
            "no ink found: every pixel is {} (MNIST digits are light on black; \
             {} inverting this image)",
            if invert { "light" } else { "dark" },
            if invert { "drop" } else { "try" }
        ))
    })?;
    let (cw, ch) = (x1 - x0, y1 - y0);
    let crop: Vec<f32> = (y0..y1)
        .flat_map(|y| ink[y * img.width + x0..y * img.width + x1].to_vec())
        .collect();
    let longest = cw.max(ch);
    let sw = ((cw * FIT) as f32 / longest as f32).round().max(1.0) as usize;
    let sh = ((ch * FIT) as f32 / longest as f32).round().max(1.0) as usize;
    let scaled = if (sw, sh) == (cw, ch) {
        crop
    } else {
        let buf: ImageBuffer<Luma<f32>, Vec<f32>> =
            ImageBuffer::from_raw(cw as u32, ch as u32, crop).expect("the crop's size");
        image::imageops::resize(&buf, sw as u32, sh as u32, FilterType::Triangle).into_raw()
    };
    let (cx, cy) = centre_of_mass(&scaled, sw);
    let centre = (SIDE as f32 - 1.0) / 2.0;
    let dx = (centre - cx).round() as isize;
    let dy = (centre - cy).round() as isize;
    let mut out = vec![0.0f32; SIDE * SIDE];
    for y in 0..sh {
        for x in 0..sw {
            let (tx, ty) = (x as isize + dx, y as isize + dy);
            if (0..SIDE as isize).contains(&tx) && (0..SIDE as isize).contains(&ty) {
                out[ty as usize * SIDE + tx as usize] = scaled[y * sw + x];
            }
        }
    }
    Ok(quantise(&out))
}

/// The half-open bounding box (x0, y0, x1, y1) of the pixels above [`INK_THRESHOLD`].
fn ink_box(ink: &[f32], w: usize, h: usize) -> Option<(usize, usize, usize, usize)> {
    let mut bbox: Option<(usize, usize, usize, usize)> = None;
    for y in 0..h {
        for x in 0..w {
            if ink[y * w + x] > INK_THRESHOLD {
                bbox = Some(match bbox {
                    None => (x, y, x + 1, y + 1),
                    Some((x0, y0, x1, y1)) => (x0.min(x), y0.min(y), x1.max(x + 1), y1.max(y + 1)),
                });
            }
        }
    }
    bbox
}

/// The ink-weighted mean (x, y) of pixel indices (the middle of the image when it has no ink).
fn centre_of_mass(ink: &[f32], w: usize) -> (f32, f32) {
    let (mut sx, mut sy, mut total) = (0.0f64, 0.0f64, 0.0f64);
    for (i, &v) in ink.iter().enumerate() {
        let v = v.max(0.0) as f64;
        sx += v * (i % w) as f64;
        sy += v * (i / w) as f64;
        total += v;
    }
    if total == 0.0 {
        let h = ink.len() / w;
        return ((w as f32 - 1.0) / 2.0, (h as f32 - 1.0) / 2.0);
    }
    ((sx / total) as f32, (sy / total) as f32)
}

fn quantise(v: &[f32]) -> Vec<u8> {
    v.iter()
        .map(|&p| (p.clamp(0.0, 1.0) * 255.0).round() as u8)
        .collect()
}
