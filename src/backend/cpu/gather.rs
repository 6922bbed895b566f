//! Batch gathering from a resident dataset of packed `u8` images.

use crate::backend::{expect_len, Gather};
use crate::{Error, Result};

/// Byte `i` of `u8` data packed four to a little-endian `u32` word.
fn byte(words: &[u32], i: usize) -> u8 {
    (words[i / 4] >> (8 * (i % 4))) as u8
}

/// `x[i, q] = (pixel / 255 − 0.5) / 0.5` and `y[i] = labels[j]` for dataset item
/// `j = perm[p.offset + i]`, i < p.batch. The dataset's size is `labels.len()`; `images` holds
/// exactly its `labels.len() · p.image_len` bytes, rounded up to whole words. Every permutation
/// entry used must name an item of the dataset.
/// images: [⌈count·image_len/4⌉] u32, labels: [count] u32, perm: [≥ offset + batch] u32,
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
    let count = labels.len();
    expect_len(
        OP,
        "images (packed u8 words)",
        images.len(),
        (count * p.image_len).div_ceil(4),
    )?;
    if perm.len() < p.offset + p.batch {
        return Err(Error::shape(
            OP,
            format!(
                "perm has {} elements, but the batch reads entries {}..{}",
                perm.len(),
                p.offset,
                p.offset + p.batch
            ),
        ));
    }
    expect_len(OP, "x", x.len(), p.batch * p.image_len)?;
    expect_len(OP, "y", y.len(), p.batch)?;
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
