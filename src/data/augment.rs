//! Data augmentation: a random affine transform per training image and epoch (rotation,
//! translation, scale), applied by the backend while it gathers each batch
//! ([`Backend::gather_batch_affine`](crate::backend::Backend::gather_batch_affine)).
//!
//! The transforms are drawn on the host, once per epoch, from the run's seed and the epoch
//! alone (a ChaCha8 stream of their own), and uploaded as one buffer of [`AFFINE_LEN`] values per
//! position in the epoch's permutation. So both backends resample with the same numbers, and a
//! resumed run draws the same transforms as an uninterrupted one.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::backend::AFFINE_LEN;
use crate::{Error, Result};

/// The ranges the transforms are drawn from, uniformly; the identity is all zero and scale 1.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Augment {
    /// Rotation in degrees, drawn from [−rotate, rotate].
    pub rotate_deg: f32,
    /// Shift in pixels along each axis, drawn from [−translate, translate].
    pub translate_px: f32,
    /// Zoom factor, drawn from [scale_min, scale_max].
    pub scale_min: f32,
    pub scale_max: f32,
}

impl Default for Augment {
    /// `--augment`'s ranges: ±10°, ±2 pixels, 0.9–1.1, the usual light augmentation for
    /// MNIST-like digits.
    fn default() -> Self {
        Augment {
            rotate_deg: 10.0,
            translate_px: 2.0,
            scale_min: 0.9,
            scale_max: 1.1,
        }
    }
}

/// Salt of the augmentation's generator: the shuffles and the initialisation use the seed
/// itself, so these draws never reuse their bits.
const SALT: u64 = 0x6175_676d_656e_7421; // "augment!"

impl Augment {
    /// Refuses ranges that make no sense, naming the setting (`augment_rotate` …).
    pub fn validate(&self) -> Result<()> {
        if !(self.rotate_deg.is_finite() && (0.0..=180.0).contains(&self.rotate_deg)) {
            return Err(Error::setting(
                "augment_rotate",
                format!("must be between 0 and 180 degrees, not {}", self.rotate_deg),
            ));
        }
        if !(self.translate_px.is_finite() && self.translate_px >= 0.0) {
            return Err(Error::setting(
                "augment_translate",
                format!(
                    "must be a non-negative number of pixels, not {}",
                    self.translate_px
                ),
            ));
        }
        let (lo, hi) = (self.scale_min, self.scale_max);
        if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi) {
            return Err(Error::setting(
                "augment_scale",
                format!("must be MIN:MAX with 0 < MIN ≤ MAX, not {lo}:{hi}"),
            ));
        }
        Ok(())
    }

    /// `n` transforms for images of `rows`×`cols`, one per permutation position, for `epoch` of
    /// the run seeded `seed`: [`AFFINE_LEN`] values each (see [`inverse_affine`]).
    pub fn transforms(
        &self,
        n: usize,
        rows: usize,
        cols: usize,
        seed: u64,
        epoch: usize,
    ) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ SALT);
        rng.set_stream(epoch as u64);
        let mut out = Vec::with_capacity(n * AFFINE_LEN);
        let t = self.translate_px;
        for _ in 0..n {
            let angle = rng.random_range(-1.0..=1.0f32) * self.rotate_deg.to_radians();
            let scale = self.scale_min + rng.random::<f32>() * (self.scale_max - self.scale_min);
            let tx = rng.random_range(-1.0..=1.0f32) * t;
            let ty = rng.random_range(-1.0..=1.0f32) * t;
            out.extend(inverse_affine(rows, cols, angle, scale, tx, ty));
        }
        out
    }
}

/// The map from an output pixel (u, v) (column, row) back to its source point, for the transform
/// that rotates the image by `angle` radians and scales it by `scale` about its centre, then
/// shifts it by (`tx`, `ty`) pixels: `[a, b, c, d, e, f]` with source =
/// (a·u + b·v + c, d·u + e·v + f).
pub fn inverse_affine(
    rows: usize,
    cols: usize,
    angle: f32,
    scale: f32,
    tx: f32,
    ty: f32,
) -> [f32; AFFINE_LEN] {
    let (cx, cy) = ((cols as f32 - 1.0) / 2.0, (rows as f32 - 1.0) / 2.0);
    let (sin, cos) = angle.sin_cos();
    // source = centre + R(−angle)·(output − centre − shift) / scale
    let (a, b) = (cos / scale, sin / scale);
    let (d, e) = (-sin / scale, cos / scale);
    let (ox, oy) = (cx + tx, cy + ty);
    [a, b, cx - a * ox - b * oy, d, e, cy - d * ox - e * oy]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(t: &[f32], u: f32, v: f32) -> (f32, f32) {
        (t[0] * u + t[1] * v + t[2], t[3] * u + t[4] * v + t[5])
    }

    #[test]
    fn inverse_affine_maps_hand_checked_points() {
        // Identity.
        assert_eq!(
            inverse_affine(28, 28, 0.0, 1.0, 0.0, 0.0),
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        );
        // Shift right by 2: output (5, 7) shows source (3, 7).
        let t = inverse_affine(28, 28, 0.0, 1.0, 2.0, 0.0);
        assert_eq!(apply(&t, 5.0, 7.0), (3.0, 7.0));
        // Zoom ×2 about the centre (13.5, 13.5): output (15.5, 13.5) shows source (14.5, 13.5).
        let t = inverse_affine(28, 28, 0.0, 2.0, 0.0, 0.0);
        assert_eq!(apply(&t, 15.5, 13.5), (14.5, 13.5));
        // A quarter turn about the centre of a 3×3 image (1, 1): output (2, 1) shows source
        // (1, 0) — the top-middle pixel moves to the middle-right.
        let t = inverse_affine(3, 3, std::f32::consts::FRAC_PI_2, 1.0, 0.0, 0.0);
        let (x, y) = apply(&t, 2.0, 1.0);
        assert!(
            (x - 1.0).abs() < 1e-6 && (y - 0.0).abs() < 1e-6,
            "({x}, {y})"
        );
    }

    #[test]
    fn transforms_are_seeded_per_epoch_and_stay_in_range() {
        let aug = Augment::default();
        let a = aug.transforms(500, 28, 28, 3, 1);
        assert_eq!(a.len(), 500 * AFFINE_LEN);
        assert_eq!(a, aug.transforms(500, 28, 28, 3, 1), "same seed and epoch");
        assert_ne!(a, aug.transforms(500, 28, 28, 3, 2), "another epoch");
        assert_ne!(a, aug.transforms(500, 28, 28, 4, 1), "another seed");
        for t in a.chunks(AFFINE_LEN) {
            // [a b; d e] = R(−θ)/s: its determinant is 1/s², its angle θ.
            let det = t[0] * t[4] - t[1] * t[3];
            let scale = 1.0 / det.sqrt();
            let angle = t[1].atan2(t[0]).to_degrees();
            assert!((0.9 - 1e-4..=1.1 + 1e-4).contains(&scale), "scale {scale}");
            assert!(angle.abs() <= 10.0 + 1e-3, "angle {angle}");
            // The centre's source point is the centre less the shift, turned and scaled.
            let (x, y) = apply(t, 13.5, 13.5);
            let moved = ((x - 13.5).powi(2) + (y - 13.5).powi(2)).sqrt();
            assert!(
                moved <= 2.0 * 2f32.sqrt() / 0.9 + 1e-3,
                "centre moved {moved}"
            );
        }
    }

    #[test]
    fn nonsense_ranges_are_refused_naming_the_setting() {
        let ok = Augment::default();
        assert!(ok.validate().is_ok());
        for (aug, setting) in [
            (
                Augment {
                    rotate_deg: -1.0,
                    ..ok
                },
                "augment_rotate",
            ),
            (
                Augment {
                    rotate_deg: f32::NAN,
                    ..ok
                },
                "augment_rotate",
            ),
            (
                Augment {
                    translate_px: -0.5,
                    ..ok
                },
                "augment_translate",
            ),
            (
                Augment {
                    scale_min: 0.0,
                    ..ok
                },
                "augment_scale",
            ),
            (
                Augment {
                    scale_min: 1.2,
                    scale_max: 1.1,
                    ..ok
                },
                "augment_scale",
            ),
        ] {
            let err = aug.validate().unwrap_err();
            assert!(
                matches!(&err, Error::Setting { name, .. } if *name == setting),
                "{aug:?}: {err:?}"
            );
        }
    }
}
