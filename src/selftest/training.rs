//! The runs of the training ops around the layers: gather (plain and augmented), loss and
//! optim, generic over the backend like those of `layers`.

use super::{rand_vec, Outputs};
use crate::backend::{Backend, Gather, GatherAffine, SoftmaxXent, StepScalars};
use crate::data::augment::Augment;
use crate::optim::{OptimConfig, Optimizer, RunLength};
use crate::Result;

/// A u32 buffer read back as f32 values, for comparing with the rest.
fn read_u32_as_f32<B: Backend>(b: &B, buf: &B::Buffer) -> Result<Vec<f32>> {
    Ok(b.read_u32(buf)?.into_iter().map(|v| v as f32).collect())
}

/// Gathering a batch of `items` packed images through a reversed permutation; `image_len`s
/// that are no multiple of 4 put image boundaries inside packed words.
pub(super) fn gather<B: Backend>(b: &B, p: &Gather, items: usize) -> Result<Outputs> {
    let pixels: Vec<u8> = (0..items * p.image_len)
        .map(|i| (i * 37 % 256) as u8)
        .collect();
    let mut packed = vec![0u32; pixels.len().div_ceil(4)];
    for (i, &px) in pixels.iter().enumerate() {
        packed[i / 4] |= (px as u32) << (8 * (i % 4));
    }
    let labels: Vec<u32> = (0..items as u32).map(|i| i % 10).collect();
    let perm: Vec<u32> = (0..items as u32).rev().collect();
    let images = b.upload_u32(&packed, "images")?;
    let labels = b.upload_u32(&labels, "labels")?;
    let perm = b.upload_u32(&perm, "perm")?;
    let mut x = b.zeros(p.batch * p.image_len, "x")?;
    let mut y = b.zeros(p.batch, "y")?;
    b.gather_batch(p, &images, &labels, &perm, &mut x, &mut y)?;
    Ok(vec![
        ("gather_batch (x)".into(), b.read_f32(&x)?),
        ("gather_batch (y)".into(), read_u32_as_f32(b, &y)?),
    ])
}

/// Augmented gathering of 50 random `rows`×`cols` images through strong random transforms
/// (±45°, ±4 px, ×0.7–1.4), batch 37 at offset 9.
pub(super) fn gather_affine<B: Backend>(
    b: &B,
    rows: usize,
    cols: usize,
    seed: u64,
) -> Result<Outputs> {
    let (n, batch, offset) = (50, 37, 9);
    let image_len = rows * cols;
    let pixels: Vec<u32> = rand_vec(seed, n * image_len / 4 + 1, 0.0, 4.0e9)
        .iter()
        .map(|&v| v as u32)
        .collect();
    let labels: Vec<u32> = (0..n as u32).map(|i| i % 10).collect();
    let perm: Vec<u32> = (0..n as u32).rev().collect();
    let aug = Augment {
        rotate_deg: 45.0,
        translate_px: 4.0,
        scale_min: 0.7,
        scale_max: 1.4,
    };
    let affine = aug.transforms(n, rows, cols, seed, 3);
    let p = GatherAffine {
        gather: Gather {
            batch,
            image_len,
            offset,
        },
        cols,
    };
    let images = b.upload_u32(&pixels, "images")?;
    let labels = b.upload_u32(&labels, "labels")?;
    let perm = b.upload_u32(&perm, "perm")?;
    let affine = b.upload_f32(&affine, "affine")?;
    let mut x = b.zeros(batch * image_len, "x")?;
    let mut y = b.zeros(batch, "y")?;
    b.gather_batch_affine(&p, &images, &labels, &perm, &affine, &mut x, &mut y)?;
    Ok(vec![
        ("gather_batch_affine (x)".into(), b.read_f32(&x)?),
        ("gather_batch_affine (y)".into(), read_u32_as_f32(b, &y)?),
    ])
}

/// The loss and its gradient, and the count of correct predictions, both accumulated onto
/// non-zero starting values.
pub(super) fn loss<B: Backend>(b: &B, p: &SoftmaxXent, seed: u64) -> Result<Outputs> {
    let logits: Vec<f32> = rand_vec(seed, p.batch * p.classes, -1.0, 1.0)
        .iter()
        .map(|v| 4.0 * v)
        .collect();
    let labels: Vec<u32> = (0..p.batch)
        .map(|i| ((i * 7 + seed as usize) % p.classes) as u32)
        .collect();
    let logits = b.upload_f32(&logits, "logits")?;
    let labels = b.upload_u32(&labels, "labels")?;
    let mut loss = b.upload_f32(&[0.25], "loss")?;
    let mut dlogits = b.zeros(p.batch * p.classes, "dlogits")?;
    let mut correct = b.upload_u32(&[3], "correct")?;
    b.softmax_cross_entropy(p, &logits, &labels, &mut loss, &mut dlogits)?;
    b.count_correct(p, &logits, &labels, &mut correct)?;
    Ok(vec![
        ("softmax_cross_entropy (loss)".into(), b.read_f32(&loss)?),
        (
            "softmax_cross_entropy (dlogits)".into(),
            b.read_f32(&dlogits)?,
        ),
        ("count_correct".into(), read_u32_as_f32(b, &correct)?),
    ])
}

/// Three steps of `optimizer` with gradients clipped to a global norm over two tensors
/// (lengths `len` and `len / 3 + 1`), the lr and Adam's corrections from the step scalars;
/// then the record of a non-finite loss at the last step.
pub(super) fn optim<B: Backend>(
    b: &B,
    optimizer: Optimizer,
    len: usize,
    seed: u64,
) -> Result<Outputs> {
    let optim = OptimConfig {
        optimizer,
        clip_grad_norm: Some(0.5),
        warmup_steps: 2,
        ..OptimConfig::default()
    };
    let run = RunLength {
        steps_per_epoch: 3,
        total_steps: 3,
    };
    let lens = [len, len / 3 + 1];
    let mut params = Vec::new();
    for (i, &l) in lens.iter().enumerate() {
        let p = b.upload_f32(&rand_vec(seed + 10 * i as u64, l, -1.0, 1.0), "param")?;
        params.push((p, b.zeros(l, "m")?, b.zeros(l, "v")?));
    }
    let mut scalars = b.zeros(StepScalars::LEN, "scalars")?;
    for t in 1..=3 {
        b.write_f32(&mut scalars, &optim.scalars(0.01, t, run).words())?;
        let mut grads = Vec::new();
        for (i, &l) in lens.iter().enumerate() {
            let g = rand_vec(seed + 100 * t as u64 + i as u64, l, -1.0, 1.0);
            grads.push(b.upload_f32(&g, "grad")?);
        }
        for (g, &l) in grads.iter().zip(&lens) {
            b.sum_squares(l, g, &mut scalars)?;
        }
        for (((p, m, v), g), &l) in params.iter_mut().zip(&grads).zip(&lens) {
            if let Some(sgd) = optimizer.sgd_params(l, optim.clip_grad_norm) {
                b.sgd_step(&sgd, &scalars, p, g, m)?
            } else if let Some(adam) = optimizer.adam_params(l, optim.clip_grad_norm) {
                b.adam_step(&adam, &scalars, p, g, m, v)?
            }
        }
    }
    let infinite = b.upload_f32(&[f32::INFINITY], "loss sum")?;
    let mut record = b.zeros(1, "non-finite record")?;
    b.record_nonfinite(&infinite, &scalars, &mut record)?;
    let step = optimizer.name().trim_end_matches('w');
    let (p0, m0, v0) = &params[0];
    let mut outputs = vec![
        (format!("{step}_step (param)"), b.read_f32(p0)?),
        (format!("{step}_step (state)"), b.read_f32(m0)?),
    ];
    if optimizer.has_second_moment() {
        outputs.push((format!("{step}_step (v)"), b.read_f32(v0)?));
    }
    outputs.extend([
        (
            format!("{step}_step (2nd tensor)"),
            b.read_f32(&params[1].0)?,
        ),
        (
            "sum_squares".into(),
            b.read_f32(&scalars)?[StepScalars::GRAD_SQ_SUM..][..1].to_vec(),
        ),
        ("record_nonfinite".into(), read_u32_as_f32(b, &record)?),
    ]);
    Ok(outputs)
}
