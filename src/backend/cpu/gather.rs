//! Batch gathering from a resident dataset of packed `u8` images.

use crate::backend::{check, Gather, GatherAffine, AFFINE_LEN};
use crate::backend::{normalize_pixel, normalize_value};
use crate::{Error, Result};

/// Byte `i` of `u8` data packed four to a little-endian `u32` word.
fn byte(words: &[u32], i: usize) -> u8 {
    (words[i / 4] >> (8 * (i % 4))) as u8
}

/// `x[i, q] = normalize_pixel(pixel)` and `y[i] = labels[j]` for dataset item
/// `j = perm[p.offset + i]`, i < p.batch. The dataset's size is `labels.len()`; `images` holds
/// at least its `labels.len() · p.image_len` bytes. Every permutation entry used must name an
/// item of the dataset (checked here; the GPU cannot afford to).
/// images: [≥ ⌈count·image_len/4⌉] u32, labels: [count] u32, perm: [≥ offset + batch] u32,
/// x: [batch, image_len] f32, y: [batch] u32.
pub fn gather_batch(
    p: &Gather,
    images: &[u32],
    labels: &[u32],
    perm: &[u32],
    x: &mut [f32],
    y: &mut [u32],
) -> Result<()> {
    const OP: &str = "gather_batch";
    check::gather_batch(p, images.len(), labels.len(), perm.len(), x.len(), y.len())?;
    let perm = batch_items(OP, p, perm, labels.len())?;
    for (i, &j) in perm.iter().enumerate() {
        let j = j as usize;
        let row = &mut x[i * p.image_len..(i + 1) * p.image_len];
        for (q, v) in row.iter_mut().enumerate() {
            let pixel = byte(images, j * p.image_len + q);
            *v = normalize_pixel(pixel);
        }
        y[i] = labels[j];
    }
    Ok(())
}

/// The permutation entries of the batch, each checked to name an item of a dataset of `count`.
fn batch_items<'a>(
    op: &'static str,
    p: &Gather,
    perm: &'a [u32],
    count: usize,
) -> Result<&'a [u32]> {
    let perm = &perm[p.offset..p.offset + p.batch];
    match perm.iter().enumerate().find(|&(_, &j)| j as usize >= count) {
        Some((i, &j)) => Err(Error::shape(
            op,
            format!(
                "perm[{}] = {j} is not an item of a dataset of {count}",
                p.offset + i
            ),
        )),
        None => Ok(perm),
    }
}

/// See `Backend::gather_batch_affine`. The arithmetic is the WGSL kernel's, in the same order.
pub fn gather_batch_affine(
    p: &GatherAffine,
    images: &[u32],
    labels: &[u32],
    perm: &[u32],
    affine: &[f32],
    x: &mut [f32],
    y: &mut [u32],
) -> Result<()> {
    const OP: &str = "gather_batch_affine";
    check::gather_batch_affine(
        p,
        images.len(),
        labels.len(),
        perm.len(),
        affine.len(),
        x.len(),
        y.len(),
    )?;
    let g = &p.gather;
    let (cols, rows) = (p.cols, g.image_len / p.cols);
    let items = batch_items(OP, g, perm, labels.len())?;
    for (i, &j) in items.iter().enumerate() {
        let j = j as usize;
        let o = (g.offset + i) * AFFINE_LEN;
        let t = &affine[o..o + AFFINE_LEN];
        // Pixel (c, r) of the source image, 0 outside it.
        let pixel = |c: i64, r: i64| -> f32 {
            if c < 0 || r < 0 || c >= cols as i64 || r >= rows as i64 {
                0.0
            } else {
                byte(images, j * g.image_len + r as usize * cols + c as usize) as f32
            }
        };
        let row = &mut x[i * g.image_len..(i + 1) * g.image_len];
        for (q, v) in row.iter_mut().enumerate() {
            let (u, w) = ((q % cols) as f32, (q / cols) as f32);
            let sx = t[0] * u + t[1] * w + t[2];
            let sy = t[3] * u + t[4] * w + t[5];
            let (x0, y0) = (sx.floor(), sy.floor());
            let (fx, fy) = (sx - x0, sy - y0);
            let (c0, r0) = (x0 as i64, y0 as i64);
            let (c1, r1) = (c0.saturating_add(1), r0.saturating_add(1));
            let top = pixel(c0, r0) * (1.0 - fx) + pixel(c1, r0) * fx;
            let bottom = pixel(c0, r1) * (1.0 - fx) + pixel(c1, r1) * fx;
            let value = top * (1.0 - fy) + bottom * fy;
            *v = normalize_value(value);
        }
        y[i] = labels[j];
    }
    Ok(())
}
