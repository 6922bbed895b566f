//! The runs of the layer ops: conv2d, matmul, pool2d, elementwise, bias, batch_norm and
//! dropout, each generic over the backend so that the reference and the GPU run the same code
//! on the same seeded inputs.

use super::{rand_vec, Outputs};
use crate::backend::{Backend, BatchNorm, Channels, Conv2d, Dropout, Matmul, Pool2d};
use crate::Result;

/// The four passes of a convolution on random x, weights, bias and output gradient.
pub(super) fn conv2d<B: Backend>(b: &B, p: &Conv2d, seed: u64) -> Result<Outputs> {
    let x = b.upload_f32(&rand_vec(seed, p.input_len(), -1.0, 1.0), "x")?;
    let w = b.upload_f32(&rand_vec(seed + 1, p.weight_len(), -1.0, 1.0), "w")?;
    let bias = b.upload_f32(&rand_vec(seed + 2, p.out_channels, -1.0, 1.0), "bias")?;
    let dout = b.upload_f32(&rand_vec(seed + 3, p.output_len(), -1.0, 1.0), "dout")?;
    let mut out = b.zeros(p.output_len(), "out")?;
    let mut dx = b.zeros(p.input_len(), "dx")?;
    let mut dw = b.zeros(p.weight_len(), "dw")?;
    let mut db = b.zeros(p.out_channels, "db")?;
    b.conv2d_forward(p, &x, &w, &bias, &mut out)?;
    b.conv2d_backward_input(p, &dout, &w, &mut dx)?;
    b.conv2d_backward_weight(p, &x, &dout, &mut dw)?;
    b.conv2d_backward_bias(p, &dout, &mut db)?;
    // The fused weight and bias gradients write views of one packed buffer, as a model's do.
    let mut grads = b
        .zeros_packed(&[p.weight_len(), p.out_channels], "grads")?
        .parts;
    let (dw2, db2) = grads.split_at_mut(1);
    b.conv2d_backward_params(p, &x, &dout, &mut dw2[0], &mut db2[0])?;
    Ok(vec![
        ("conv2d_forward".into(), b.read_f32(&out)?),
        ("conv2d_backward_input".into(), b.read_f32(&dx)?),
        ("conv2d_backward_weight".into(), b.read_f32(&dw)?),
        ("conv2d_backward_bias".into(), b.read_f32(&db)?),
        ("conv2d_backward_params (dw)".into(), b.read_f32(&dw2[0])?),
        ("conv2d_backward_params (db)".into(), b.read_f32(&db2[0])?),
    ])
}

/// The product and its fused epilogues: + bias, relu(· + bias), through a ReLU's backward, and
/// beside the row sums (a linear layer's bias gradient).
pub(super) fn matmul<B: Backend>(b: &B, p: &Matmul, seed: u64) -> Result<Outputs> {
    let a = b.upload_f32(&rand_vec(seed, p.m * p.k, -1.0, 1.0), "a")?;
    let bb = b.upload_f32(&rand_vec(seed + 1, p.k * p.n, -1.0, 1.0), "b")?;
    let bias = b.upload_f32(&rand_vec(seed + 2, p.n, -1.0, 1.0), "bias")?;
    // A ReLU output: zero where negative, as the forward pass leaves it.
    let y: Vec<f32> = rand_vec(seed + 3, p.m * p.n, -1.0, 1.0)
        .into_iter()
        .map(|v| v.max(0.0))
        .collect();
    let y = b.upload_f32(&y, "y")?;
    let mut cs = Vec::new();
    for _ in 0..5 {
        cs.push(b.zeros(p.m * p.n, "c")?);
    }
    let mut sums = b.zeros(p.m, "sums")?;
    b.matmul(p, &a, &bb, &mut cs[0])?;
    b.matmul_bias(p, false, &a, &bb, &bias, &mut cs[1])?;
    b.matmul_bias(p, true, &a, &bb, &bias, &mut cs[2])?;
    b.matmul_relu_backward(p, &a, &bb, &y, &mut cs[3])?;
    b.matmul_row_sums(p, &a, &bb, &mut cs[4], &mut sums)?;
    let names = [
        "matmul",
        "matmul_bias",
        "matmul_bias (relu)",
        "matmul_relu_backward",
        "matmul_row_sums (c)",
    ];
    let mut out = Vec::new();
    for (name, c) in names.iter().zip(&cs) {
        out.push((name.to_string(), b.read_f32(c)?));
    }
    out.push(("matmul_row_sums (sums)".into(), b.read_f32(&sums)?));
    Ok(out)
}

/// Views of one packed allocation (`zeros_packed`) written, computed into and read as buffers
/// of their own: a kernel over one view leaves its neighbours alone.
pub(super) fn packed<B: Backend>(b: &B, lens: &[usize], seed: u64) -> Result<Outputs> {
    let mut packed = b.zeros_packed(lens, "packed")?;
    for (i, part) in packed.parts.iter_mut().enumerate() {
        b.write_f32(part, &rand_vec(seed + i as u64, lens[i], -1.0, 1.0))?;
    }
    // An op writes one view while reading another buffer (never a view of the same
    // allocation: WebGPU refuses a buffer bound read-only and read-write in one dispatch).
    let x = b.upload_f32(&rand_vec(seed + 9, lens[0], -1.0, 1.0), "x")?;
    b.relu_forward(lens[0], &x, &mut packed.parts[0])?;
    b.fill_zero(&mut packed.parts[2])?;
    let mut out = Vec::new();
    for (i, part) in packed.parts.iter().enumerate() {
        out.push((format!("zeros_packed (view {i})"), b.read_f32(part)?));
    }
    Ok(out)
}

/// Every pooling op, plain and fused with the ReLU before it.
pub(super) fn pool2d<B: Backend>(b: &B, p: &Pool2d, seed: u64) -> Result<Outputs> {
    // Distinct values except for deliberate ties every 7th element, so the first-max rule is
    // exercised on both backends.
    let mut xs = rand_vec(seed, p.input_len(), -1.0, 1.0);
    for i in (7..xs.len()).step_by(7) {
        xs[i] = xs[i - 1];
    }
    // Zeros every 11th element: windows whose ReLU'd maximum is a tie at 0 for the fused ops.
    for i in (3..xs.len()).step_by(11) {
        xs[i] = 0.0;
    }
    let x = b.upload_f32(&xs, "x")?;
    let dout = b.upload_f32(&rand_vec(seed + 1, p.output_len(), -1.0, 1.0), "dout")?;
    let mut out = b.zeros(p.output_len(), "out")?;
    let mut dx = b.zeros(p.input_len(), "dx")?;
    let mut avg = b.zeros(p.output_len(), "avg")?;
    let mut davg = b.zeros(p.input_len(), "davg")?;
    b.maxpool2d_forward(p, &x, &mut out)?;
    b.maxpool2d_backward(p, &x, &dout, &mut dx)?;
    b.avgpool2d_forward(p, &x, &mut avg)?;
    b.avgpool2d_backward(p, &dout, &mut davg)?;
    let mut fused = b.zeros(p.output_len(), "relu max")?;
    let mut dfused = b.zeros(p.input_len(), "relu max dx")?;
    b.relu_maxpool2d_forward(p, &x, &mut fused)?;
    b.relu_maxpool2d_backward(p, &x, &dout, &mut dfused)?;
    Ok(vec![
        ("maxpool2d_forward".into(), b.read_f32(&out)?),
        ("maxpool2d_backward".into(), b.read_f32(&dx)?),
        ("relu_maxpool2d_forward".into(), b.read_f32(&fused)?),
        ("relu_maxpool2d_backward".into(), b.read_f32(&dfused)?),
        ("avgpool2d_forward".into(), b.read_f32(&avg)?),
        ("avgpool2d_backward".into(), b.read_f32(&davg)?),
    ])
}

/// ReLU forward and backward over `len` elements, and zero-filling a buffer of random values.
pub(super) fn elementwise<B: Backend>(b: &B, len: usize, seed: u64) -> Result<Outputs> {
    let x = b.upload_f32(&rand_vec(seed, len, -1.0, 1.0), "x")?;
    let dy = b.upload_f32(&rand_vec(seed + 1, len, -1.0, 1.0), "dy")?;
    let mut y = b.zeros(len, "y")?;
    let mut dx = b.zeros(len, "dx")?;
    b.relu_forward(len, &x, &mut y)?;
    b.relu_backward(len, &y, &dy, &mut dx)?;
    let mut z = b.upload_f32(&rand_vec(seed + 2, len, -1.0, 1.0), "z")?;
    b.fill_zero(&mut z)?;
    Ok(vec![
        ("relu_forward".into(), b.read_f32(&y)?),
        ("relu_backward".into(), b.read_f32(&dx)?),
        ("fill_zero".into(), b.read_f32(&z)?),
    ])
}

/// A channel sum (a bias gradient) and a bias add over [outer, channels, inner].
pub(super) fn bias<B: Backend>(b: &B, p: &Channels, seed: u64) -> Result<Outputs> {
    let bias = b.upload_f32(&rand_vec(seed, p.channels, -1.0, 1.0), "bias")?;
    let mut x = b.upload_f32(&rand_vec(seed + 1, p.len(), -1.0, 1.0), "x")?;
    let mut sum = b.zeros(p.channels, "sum")?;
    b.channel_sum(p, &x, &mut sum)?;
    b.bias_add(p, &bias, &mut x)?;
    Ok(vec![
        ("channel_sum".into(), b.read_f32(&sum)?),
        ("bias_add".into(), b.read_f32(&x)?),
    ])
}

/// Every batch-norm output of a training step: the batch and running statistics, the
/// normalised output, the affine parameters' gradients and the input gradient.
pub(super) fn batch_norm<B: Backend>(b: &B, p: &BatchNorm, seed: u64) -> Result<Outputs> {
    let (n, ch) = (p.shape.len(), p.shape.channels);
    let x = b.upload_f32(&rand_vec(seed, n, -2.0, 3.0), "x")?;
    let dy = b.upload_f32(&rand_vec(seed + 1, n, -1.0, 1.0), "dy")?;
    let w = b.upload_f32(&rand_vec(seed + 2, ch, 0.5, 1.5), "w")?;
    let bias = b.upload_f32(&rand_vec(seed + 3, ch, -0.5, 0.5), "bias")?;
    let mut stats = b.zeros(2 * ch, "stats")?;
    let mut running = b.upload_f32(&rand_vec(seed + 4, 2 * ch, 0.5, 1.0), "running")?;
    let (mut y, mut dx) = (b.zeros(n, "y")?, b.zeros(n, "dx")?);
    let (mut dw, mut db) = (b.zeros(ch, "dw")?, b.zeros(ch, "db")?);
    b.batch_norm_stats(p, &x, &mut stats, &mut running)?;
    b.batch_norm_forward(p, &x, &stats, &w, &bias, &mut y)?;
    b.batch_norm_backward_params(p, &x, &dy, &stats, &mut dw, &mut db)?;
    b.batch_norm_backward_input(p, &x, &dy, &stats, &w, &dw, &db, &mut dx)?;
    Ok(vec![
        ("batch_norm_stats (batch)".into(), b.read_f32(&stats)?),
        ("batch_norm_stats (running)".into(), b.read_f32(&running)?),
        ("batch_norm_forward".into(), b.read_f32(&y)?),
        ("batch_norm_backward_params (dw)".into(), b.read_f32(&dw)?),
        ("batch_norm_backward_params (db)".into(), b.read_f32(&db)?),
        ("batch_norm_backward_input".into(), b.read_f32(&dx)?),
    ])
}

/// Dropout forward and backward at one step: both backends draw the same mask, so the
/// outputs are equal.
pub(super) fn dropout<B: Backend>(b: &B, p: &Dropout, seed: u64) -> Result<Outputs> {
    let step = b.upload_u32(&[seed as u32], "step")?;
    let x = b.upload_f32(&rand_vec(seed, p.len, -2.0, 2.0), "x")?;
    let dy = b.upload_f32(&rand_vec(seed + 1, p.len, -1.0, 1.0), "dy")?;
    let (mut y, mut dx) = (b.zeros(p.len, "y")?, b.zeros(p.len, "dx")?);
    b.dropout_forward(p, &step, &x, &mut y)?;
    b.dropout_backward(p, &step, &dy, &mut dx)?;
    Ok(vec![
        ("dropout_forward".into(), b.read_f32(&y)?),
        ("dropout_backward".into(), b.read_f32(&dx)?),
    ])
}
