//! Batch gathering from a resident dataset of packed `u8` images.

use crate::backend::{check, Gather};
use crate::{Error, Result};

/// Byte `i` of `u8` data packed four to a little-endian `u32` word.
fn byte(words: &[u32], i: usize) -> u8 {
    (words[i / 4] >> (8 * (i % 4))) as u8
}

/// `x[i, q] = (pixel / 255 − 0.5) / 0.5` and `y[i] = labels[j]` for dataset item
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
    let count = labels.len();
    let perm = &perm[p.offset..p.offset + p.batch];
    if let Some((i, &j)) = perm.iter().enumerate().find(|&(_, &j)| j as usize >= count) {
        return Err(Error::shape(
            OP,
            format!(
                "perm[{}] = {j} is not an item of a dataset of {count}",
                p.offset + i
            ),
        ));
    }
    for (i, &j) in perm.iter().enumerate() {
        let j = j as usize;
        let row = &mut x[i * p.image_len..(i + 1) * p.image_len];
        for (q, v) in row.iter_mut().enumerate() {
            let pixel = byte(images, j * p.image_len + q);
            *v = ((pixel as f32 / 255.0) - 0.5) / 0.5;
        }
        y[i] = labels[j];
    }
    Ok(())
}
