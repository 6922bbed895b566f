//! Every GPU kernel against the CPU reference on random inputs and asymmetric shapes: H≠W,
//! batch 1 and odd batches, stride 1 and 2, padding 0/1/2, kernels 1/3/5 and non-square,
//! channel counts that are not multiples of 4, sizes that are not multiples of the workgroup
//! (256) or GEMM tile (64). Each case runs the same generic function on both backends and
//! compares every output with atol + rtol·|ref|; the cases of `gpu_matches_cpu!` run the GPU
//! kernels twice, built with naga's runtime checks and without them (as on real GPUs), and
//! those of `gemm_matches_cpu!` (matmul, its fused epilogues and the convolutions) do so with
//! every GEMM core of `GemmVariant::ALL`.

mod common;

use cnn_gpu::backend::gpu::{GemmVariant, GpuOptions, RuntimeChecks};
use cnn_gpu::backend::{
    Backend, Channels, Conv2d, Gather, GatherAffine, Matmul, Pool2d, SoftmaxXent, StepScalars,
};
use cnn_gpu::data::augment::Augment;
use cnn_gpu::optim::{OptimConfig, Optimizer, RunLength};
use common::{assert_close, cpu, rand_vec, with_gpu_options};

type Outputs = Vec<(&'static str, Vec<f32>)>;

fn check(what: &str, cpu_out: Outputs, gpu_out: Outputs, atol: f32, rtol: f32) {
    assert_eq!(cpu_out.len(), gpu_out.len());
    for ((name, want), (_, got)) in cpu_out.iter().zip(&gpu_out) {
        assert_close(got, want, atol, rtol, &format!("{what}: {name}"));
    }
}

/// Runs `$run` on the CPU, then on the GPU once per GEMM core in `$gemms`, each built with
/// naga's runtime checks and without them (as real GPUs run it), and compares every output.
macro_rules! matches_cpu_on {
    ($gemms:expr, $what:expr, $atol:expr, $rtol:expr, $run:ident $(, $arg:expr)*) => {{
        let want = $run(&cpu(), $($arg),*);
        for &gemm in $gemms {
            for checks in [RuntimeChecks::On, RuntimeChecks::Off] {
                let options = GpuOptions {
                    runtime_checks: checks,
                    gemm: Some(gemm),
                    ..GpuOptions::default()
                };
                with_gpu_options(options, |gpu| {
                    let got = $run(gpu, $($arg),*);
                    let what = format!("{} (gemm {gemm}, runtime checks {checks:?})", $what);
                    check(&what, want.clone(), got, $atol, $rtol);
                });
            }
        }
    }};
}

/// [`matches_cpu_on!`] with the default GEMM core: for kernels that do not use it.
macro_rules! gpu_matches_cpu {
    ($($args:tt)*) => {
        matches_cpu_on!(&[GemmVariant::default()], $($args)*)
    };
}

/// [`matches_cpu_on!`] with every GEMM core: for matmul and the convolutions.
macro_rules! gemm_matches_cpu {
    ($($args:tt)*) => {
        matches_cpu_on!(GemmVariant::ALL, $($args)*)
    };
}

fn conv_all<B: Backend>(b: &B, p: &Conv2d, seed: u64) -> Outputs {
    let x = b
        .upload_f32(&rand_vec(seed, p.input_len(), -1.0, 1.0), "x")
        .unwrap();
    let w = b
        .upload_f32(&rand_vec(seed + 1, p.weight_len(), -1.0, 1.0), "w")
        .unwrap();
    let bias = b
        .upload_f32(&rand_vec(seed + 2, p.out_channels, -1.0, 1.0), "bias")
        .unwrap();
    let dout = b
        .upload_f32(&rand_vec(seed + 3, p.output_len(), -1.0, 1.0), "dout")
        .unwrap();
    let mut out = b.zeros(p.output_len(), "out").unwrap();
    let mut dx = b.zeros(p.input_len(), "dx").unwrap();
    let mut dw = b.zeros(p.weight_len(), "dw").unwrap();
    let mut db = b.zeros(p.out_channels, "db").unwrap();
    // The fused weight and bias gradients write views of one packed buffer, as a model's do.
    let mut grads = b
        .zeros_packed(&[p.weight_len(), p.out_channels], "grads")
        .unwrap()
        .parts;
    let (dw2, db2) = grads.split_at_mut(1);
    b.conv2d_forward(p, &x, &w, &bias, &mut out).unwrap();
    b.conv2d_backward_input(p, &dout, &w, &mut dx).unwrap();
    b.conv2d_backward_weight(p, &x, &dout, &mut dw).unwrap();
    b.conv2d_backward_bias(p, &dout, &mut db).unwrap();
    b.conv2d_backward_params(p, &x, &dout, &mut dw2[0], &mut db2[0])
        .unwrap();
    vec![
        ("forward", b.read_f32(&out).unwrap()),
        ("input gradient", b.read_f32(&dx).unwrap()),
        ("weight gradient", b.read_f32(&dw).unwrap()),
        ("bias gradient", b.read_f32(&db).unwrap()),
        ("fused weight gradient", b.read_f32(&dw2[0]).unwrap()),
        ("fused bias gradient", b.read_f32(&db2[0]).unwrap()),
    ]
}

#[test]
fn conv2d_gpu_matches_cpu() {
    #[rustfmt::skip]
    let cases = [
        // batch, cin, h, w, cout, kh, kw, stride, pad
        (1, 1, 7, 5, 3, 3, 3, 1, 1),
        (3, 3, 9, 6, 5, 3, 3, 2, 0),
        (2, 5, 8, 11, 7, 5, 5, 1, 2),
        (2, 3, 6, 9, 6, 1, 1, 2, 0),
        (1, 2, 10, 7, 3, 2, 3, 2, 1),
        (5, 6, 5, 4, 70, 3, 3, 1, 1),   // Cout past one 64-row tile
        (3, 7, 13, 10, 9, 3, 3, 1, 1),  // N = 390 and K = 63: partial tiles everywhere
        (2, 32, 14, 14, 64, 3, 3, 1, 1), // SimpleCNN's conv2 at batch 2 (split-K weight gradient)
        (1, 1, 300, 250, 40, 3, 3, 1, 1), // N = 75,000: 586 tiles of 128 columns (vec4's 4×8)
    ];
    for (i, &(batch, in_channels, in_h, in_w, out_channels, kernel_h, kernel_w, stride, padding)) in
        cases.iter().enumerate()
    {
        let p = Conv2d {
            batch,
            in_channels,
            in_h,
            in_w,
            out_channels,
            kernel_h,
            kernel_w,
            stride,
            padding,
        };
        gemm_matches_cpu!(
            format!("conv2d {p:?}"),
            1e-4,
            1e-4,
            conv_all,
            &p,
            10 * i as u64
        );
    }
}

fn matmul_run<B: Backend>(b: &B, p: &Matmul, seed: u64) -> Outputs {
    let a = b
        .upload_f32(&rand_vec(seed, p.m * p.k, -1.0, 1.0), "a")
        .unwrap();
    let bb = b
        .upload_f32(&rand_vec(seed + 1, p.k * p.n, -1.0, 1.0), "b")
        .unwrap();
    let bias = b
        .upload_f32(&rand_vec(seed + 2, p.n, -1.0, 1.0), "bias")
        .unwrap();
    // A ReLU output: zero where negative, as the forward pass leaves it.
    let y: Vec<f32> = rand_vec(seed + 3, p.m * p.n, -1.0, 1.0)
        .into_iter()
        .map(|v| v.max(0.0))
        .collect();
    let y = b.upload_f32(&y, "y").unwrap();
    let mut cs: Vec<_> = (0..5).map(|_| b.zeros(p.m * p.n, "c").unwrap()).collect();
    let mut sums = b.zeros(p.m, "sums").unwrap();
    b.matmul(p, &a, &bb, &mut cs[0]).unwrap();
    b.matmul_bias(p, false, &a, &bb, &bias, &mut cs[1]).unwrap();
    b.matmul_bias(p, true, &a, &bb, &bias, &mut cs[2]).unwrap();
    b.matmul_relu_backward(p, &a, &bb, &y, &mut cs[3]).unwrap();
    b.matmul_row_sums(p, &a, &bb, &mut cs[4], &mut sums)
        .unwrap();
    let names = [
        "c",
        "c + bias",
        "relu(c + bias)",
        "c through relu",
        "c beside row sums",
    ];
    let mut out: Outputs = names
        .iter()
        .zip(&cs)
        .map(|(&name, c)| (name, b.read_f32(c).unwrap()))
        .collect();
    out.push(("row sums", b.read_f32(&sums).unwrap()));
    out
}

/// Every operand layout of each (m, k, n) product, the data seeded by `seed` plus the index.
fn matmuls_match(shapes: &[(usize, usize, usize)], seed: u64) {
    for (i, &(m, k, n)) in shapes.iter().enumerate() {
        for (trans_a, trans_b) in [(false, false), (false, true), (true, false), (true, true)] {
            let p = Matmul {
                m,
                k,
                n,
                trans_a,
                trans_b,
            };
            let seed = seed + i as u64;
            gemm_matches_cpu!(format!("matmul {p:?}"), 1e-4, 1e-4, matmul_run, &p, seed);
        }
    }
}

#[test]
fn matmul_gpu_matches_cpu() {
    let shapes = [
        (1, 1, 1),
        (3, 5, 7),
        (65, 17, 130),
        (64, 3136, 10),
        (127, 64, 33),
        // Too few tiles for a long K (1.008 MFLOP): split into 250 slices of 32.
        (9, 8000, 7),
    ];
    matmuls_match(&shapes, 0);
}

/// Products with at least 512 tiles of 128×128 run on 128×128 tiles, 8×8 outputs a thread
/// (`matmul_per_thread`): M and N not multiples of 128, K below one K-tile of 16 (k = 7) and
/// above it with a remainder (k = 19), every operand layout.
#[test]
fn big_tile_matmul_gpu_matches_cpu() {
    let shapes = [(3100, 7, 2950), (2950, 19, 3000)];
    for &(m, _, n) in &shapes {
        assert!((m / 128) * (n / 128) >= 512, "{m}×{n} takes the big tiles");
    }
    matmuls_match(&shapes, 20);
}

fn pool_run<B: Backend>(b: &B, p: &Pool2d, seed: u64) -> Outputs {
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
    let x = b.upload_f32(&xs, "x").unwrap();
    let dout = b
        .upload_f32(&rand_vec(seed + 1, p.output_len(), -1.0, 1.0), "dout")
        .unwrap();
    let mut out = b.zeros(p.output_len(), "out").unwrap();
    let mut dx = b.zeros(p.input_len(), "dx").unwrap();
    let mut avg = b.zeros(p.output_len(), "avg").unwrap();
    let mut davg = b.zeros(p.input_len(), "davg").unwrap();
    b.maxpool2d_forward(p, &x, &mut out).unwrap();
    b.maxpool2d_backward(p, &x, &dout, &mut dx).unwrap();
    b.avgpool2d_forward(p, &x, &mut avg).unwrap();
    b.avgpool2d_backward(p, &dout, &mut davg).unwrap();
    let mut fused = b.zeros(p.output_len(), "relu max").unwrap();
    let mut dfused = b.zeros(p.input_len(), "relu max dx").unwrap();
    b.relu_maxpool2d_forward(p, &x, &mut fused).unwrap();
    b.relu_maxpool2d_backward(p, &x, &dout, &mut dfused)
        .unwrap();
    vec![
        ("max forward", b.read_f32(&out).unwrap()),
        ("max backward", b.read_f32(&dx).unwrap()),
        ("relu + max forward", b.read_f32(&fused).unwrap()),
        ("relu + max backward", b.read_f32(&dfused).unwrap()),
        ("avg forward", b.read_f32(&avg).unwrap()),
        ("avg backward", b.read_f32(&davg).unwrap()),
    ]
}

#[test]
fn pool_gpu_matches_cpu() {
    #[rustfmt::skip]
    let cases = [
        // batch, channels, h, w, kernel, stride
        (1, 1, 4, 4, 2, 2),
        (3, 5, 9, 7, 2, 2),   // odd sizes: the last row and column are dropped
        (2, 3, 8, 11, 3, 1),  // overlapping windows
        (2, 3, 10, 7, 3, 2),
        (7, 32, 28, 28, 2, 2), // SimpleCNN's first pool at batch 7: 43,904 outputs
    ];
    for (i, &(batch, channels, in_h, in_w, kernel, stride)) in cases.iter().enumerate() {
        let p = Pool2d {
            batch,
            channels,
            in_h,
            in_w,
            kernel,
            stride,
        };
        gpu_matches_cpu!(format!("pool {p:?}"), 1e-6, 1e-6, pool_run, &p, i as u64);
    }
}

fn elementwise_run<B: Backend>(b: &B, len: usize, seed: u64) -> Outputs {
    let x = b.upload_f32(&rand_vec(seed, len, -1.0, 1.0), "x").unwrap();
    let dy = b
        .upload_f32(&rand_vec(seed + 1, len, -1.0, 1.0), "dy")
        .unwrap();
    let mut y = b.zeros(len, "y").unwrap();
    let mut dx = b.zeros(len, "dx").unwrap();
    b.relu_forward(len, &x, &mut y).unwrap();
    b.relu_backward(len, &y, &dy, &mut dx).unwrap();
    let mut z = b
        .upload_f32(&rand_vec(seed + 2, len, -1.0, 1.0), "z")
        .unwrap();
    b.fill_zero(&mut z).unwrap();
    vec![
        ("relu forward", b.read_f32(&y).unwrap()),
        ("relu backward", b.read_f32(&dx).unwrap()),
        ("fill_zero", b.read_f32(&z).unwrap()),
    ]
}

#[test]
fn elementwise_gpu_matches_cpu() {
    for (i, len) in [1usize, 255, 257, 100_003].into_iter().enumerate() {
        gpu_matches_cpu!(
            format!("relu len {len}"),
            0.0,
            0.0,
            elementwise_run,
            len,
            i as u64
        );
    }
}

fn channels_run<B: Backend>(b: &B, p: &Channels, seed: u64) -> Outputs {
    let bias = b
        .upload_f32(&rand_vec(seed, p.channels, -1.0, 1.0), "bias")
        .unwrap();
    let mut x = b
        .upload_f32(&rand_vec(seed + 1, p.len(), -1.0, 1.0), "x")
        .unwrap();
    let mut sum = b.zeros(p.channels, "sum").unwrap();
    b.channel_sum(p, &x, &mut sum).unwrap();
    b.bias_add(p, &bias, &mut x).unwrap();
    vec![
        ("channel_sum", b.read_f32(&sum).unwrap()),
        ("bias_add", b.read_f32(&x).unwrap()),
    ]
}

#[test]
fn bias_gpu_matches_cpu() {
    // The last two sum in two passes: (7, 33, 300) in 2 slices a channel, (5, 3, 1100) in 5
    // slices of 1100 elements.
    let shapes = [
        (1, 1, 1),
        (64, 10, 1),
        (3, 5, 49),
        (7, 33, 300),
        (5, 3, 1100),
    ];
    for (i, &(outer, channels, inner)) in shapes.iter().enumerate() {
        let p = Channels {
            outer,
            channels,
            inner,
        };
        gpu_matches_cpu!(format!("{p:?}"), 1e-4, 1e-5, channels_run, &p, i as u64);
    }
}

fn loss_run<B: Backend>(b: &B, p: &SoftmaxXent, seed: u64) -> Outputs {
    let logits: Vec<f32> = rand_vec(seed, p.batch * p.classes, -1.0, 1.0)
        .iter()
        .map(|v| 4.0 * v)
        .collect();
    let labels: Vec<u32> = (0..p.batch)
        .map(|i| ((i * 7 + seed as usize) % p.classes) as u32)
        .collect();
    let logits = b.upload_f32(&logits, "logits").unwrap();
    let labels = b.upload_u32(&labels, "labels").unwrap();
    let mut loss = b.upload_f32(&[0.25], "loss").unwrap();
    let mut dlogits = b.zeros(p.batch * p.classes, "dlogits").unwrap();
    let mut correct = b.upload_u32(&[3], "correct").unwrap();
    b.softmax_cross_entropy(p, &logits, &labels, &mut loss, &mut dlogits)
        .unwrap();
    b.count_correct(p, &logits, &labels, &mut correct).unwrap();
    let correct = b.read_u32(&correct).unwrap()[0] as f32;
    vec![
        ("loss (accumulated onto 0.25)", b.read_f32(&loss).unwrap()),
        ("dlogits", b.read_f32(&dlogits).unwrap()),
        ("correct (accumulated onto 3)", vec![correct]),
    ]
}

#[test]
fn loss_gpu_matches_cpu() {
    for (i, &(batch, classes)) in [(1, 10), (64, 10), (300, 7), (1000, 10)].iter().enumerate() {
        let p = SoftmaxXent { batch, classes };
        gpu_matches_cpu!(format!("{p:?}"), 1e-5, 1e-4, loss_run, &p, i as u64);
    }
}

/// Three steps of `optimizer` with gradients clipped to a global norm over two tensors
/// (lengths `len` and `len / 3 + 1`), the lr and Adam's corrections from the step scalars.
fn optim_run<B: Backend>(b: &B, optimizer: Optimizer, len: usize, seed: u64) -> Outputs {
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
    let mut params: Vec<_> = lens
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            let p = b.upload_f32(&rand_vec(seed + 10 * i as u64, l, -1.0, 1.0), "param");
            (
                p.unwrap(),
                b.zeros(l, "m").unwrap(),
                b.zeros(l, "v").unwrap(),
            )
        })
        .collect();
    let mut scalars = b.zeros(StepScalars::LEN, "scalars").unwrap();
    for t in 1..=3 {
        b.write_f32(&mut scalars, &optim.scalars(0.01, t, run).words())
            .unwrap();
        let grads: Vec<_> = lens
            .iter()
            .enumerate()
            .map(|(i, &l)| {
                let g = rand_vec(seed + 100 * t as u64 + i as u64, l, -1.0, 1.0);
                b.upload_f32(&g, "grad").unwrap()
            })
            .collect();
        for (g, &l) in grads.iter().zip(&lens) {
            b.sum_squares(l, g, &mut scalars).unwrap();
        }
        for (((p, m, v), g), &l) in params.iter_mut().zip(&grads).zip(&lens) {
            match optimizer {
                Optimizer::Sgd { .. } => {
                    let sgd = optimizer.sgd_params(l, optim.clip_grad_norm).unwrap();
                    b.sgd_step(&sgd, &scalars, p, g, m).unwrap()
                }
                Optimizer::Adam { .. } => {
                    let adam = optimizer.adam_params(l, optim.clip_grad_norm).unwrap();
                    b.adam_step(&adam, &scalars, p, g, m, v).unwrap()
                }
            }
        }
    }
    let (p0, m0, v0) = &params[0];
    let (p1, _, _) = &params[1];
    vec![
        ("param 0", b.read_f32(p0).unwrap()),
        ("state 0", b.read_f32(m0).unwrap()),
        ("second moment 0", b.read_f32(v0).unwrap()),
        ("param 1", b.read_f32(p1).unwrap()),
        (
            "grad sum of squares",
            b.read_f32(&scalars).unwrap()[3..4].to_vec(),
        ),
    ]
}

#[test]
fn optimizers_gpu_match_cpu() {
    let optimizers = [
        Optimizer::Sgd {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.01,
        },
        Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            decoupled: false,
        },
        Optimizer::Adam {
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-6,
            weight_decay: 0.1,
            decoupled: true,
        },
    ];
    for (i, opt) in optimizers.into_iter().enumerate() {
        for len in [1usize, 300, 200_705] {
            let what = format!("{} len {len}", opt.name());
            gpu_matches_cpu!(what, 1e-6, 1e-4, optim_run, opt, len, i as u64);
        }
    }
}

fn gather_run<B: Backend>(b: &B, p: &Gather, items: usize) -> Outputs {
    let pixels: Vec<u8> = (0..items * p.image_len)
        .map(|i| (i * 37 % 256) as u8)
        .collect();
    let mut packed = vec![0u32; pixels.len().div_ceil(4)];
    for (i, &px) in pixels.iter().enumerate() {
        packed[i / 4] |= (px as u32) << (8 * (i % 4));
    }
    let labels: Vec<u32> = (0..items as u32).map(|i| i % 10).collect();
    let perm: Vec<u32> = (0..items as u32).rev().collect();
    let images = b.upload_u32(&packed, "images").unwrap();
    let labels = b.upload_u32(&labels, "labels").unwrap();
    let perm = b.upload_u32(&perm, "perm").unwrap();
    let mut x = b.zeros(p.batch * p.image_len, "x").unwrap();
    let mut y = b.zeros(p.batch, "y").unwrap();
    b.gather_batch(p, &images, &labels, &perm, &mut x, &mut y)
        .unwrap();
    let y: Vec<f32> = b
        .read_u32(&y)
        .unwrap()
        .into_iter()
        .map(|v| v as f32)
        .collect();
    vec![("x", b.read_f32(&x).unwrap()), ("y", y)]
}

#[test]
fn gather_gpu_matches_cpu() {
    // image_len 13 puts image boundaries inside packed words; the output is bit-identical.
    for &(batch, image_len, offset, items) in &[(1, 784, 0, 3), (5, 13, 2, 9), (64, 784, 100, 300)]
    {
        let p = Gather {
            batch,
            image_len,
            offset,
        };
        gpu_matches_cpu!(format!("{p:?}"), 0.0, 0.0, gather_run, &p, items);
    }
}

#[test]
fn grids_past_the_dispatch_limit_gpu_match_cpu() {
    // With at most 3 workgroups per dimension, every kernel's grid has to fold: 1-d kernels over
    // y, GEMM column tiles over z. (Real adapters allow 65,535; this reaches the same code on
    // shapes lavapipe runs quickly.)
    let options = GpuOptions {
        max_workgroups_per_dimension: Some(3),
        ..GpuOptions::default()
    };
    let conv = Conv2d {
        batch: 3,
        in_channels: 2,
        in_h: 12,
        in_w: 11,
        out_channels: 5,
        kernel_h: 3,
        kernel_w: 3,
        stride: 1,
        padding: 1,
    };
    let mm = Matmul {
        m: 5,
        k: 7,
        n: 500,
        trans_a: false,
        trans_b: true,
    };
    let pool = Pool2d {
        batch: 3,
        channels: 5,
        in_h: 9,
        in_w: 7,
        kernel: 2,
        stride: 2,
    };
    // K split over z, as many slices as the limit allows: 3 of 13,344 (the last 13,312).
    let split = Matmul {
        m: 5,
        k: 40000,
        n: 5,
        trans_a: true,
        trans_b: false,
    };
    let want_split = matmul_run(&cpu(), &split, 6);
    let want = (
        conv_all(&cpu(), &conv, 1),
        matmul_run(&cpu(), &mm, 2),
        pool_run(&cpu(), &pool, 3),
        elementwise_run(&cpu(), 2000, 4),
    );
    for &gemm in GemmVariant::ALL {
        let options = GpuOptions {
            gemm: Some(gemm),
            ..options.clone()
        };
        with_gpu_options(options, |gpu| {
            check(
                "folded conv2d",
                want.0.clone(),
                conv_all(gpu, &conv, 1),
                1e-4,
                1e-4,
            );
            check(
                "folded matmul",
                want.1.clone(),
                matmul_run(gpu, &mm, 2),
                1e-4,
                1e-4,
            );
            check(
                "split matmul under the limit",
                want_split.clone(),
                matmul_run(gpu, &split, 6),
                1e-4,
                1e-4,
            );
            check(
                "folded pool",
                want.2.clone(),
                pool_run(gpu, &pool, 3),
                1e-6,
                1e-6,
            );
            check(
                "folded relu",
                want.3.clone(),
                elementwise_run(gpu, 2000, 4),
                0.0,
                0.0,
            );
        });
    }
    // A two-pass channel sum, 3 channels in 2 slices: 6 workgroups, folded to 5×2 under a
    // limit of 5 (which the 25 workgroups of the bias add beside it still fit).
    let sums = Channels {
        outer: 1,
        channels: 3,
        inner: 2100,
    };
    let want = channels_run(&cpu(), &sums, 5);
    let options = GpuOptions {
        max_workgroups_per_dimension: Some(5),
        ..GpuOptions::default()
    };
    with_gpu_options(options, |gpu| {
        check(
            "folded channel sum",
            want.clone(),
            channels_run(gpu, &sums, 5),
            1e-4,
            1e-5,
        );
    });
}

/// Augmented gathering of random 28×28 and 9×13 images through strong random transforms
/// (±45°, ±4 px, ×0.7–1.4), batch 37 at an offset, on both backends.
fn gather_affine_run<B: Backend>(b: &B, rows: usize, cols: usize, seed: u64) -> Outputs {
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
    let images = b.upload_u32(&pixels, "images").unwrap();
    let labels = b.upload_u32(&labels, "labels").unwrap();
    let perm = b.upload_u32(&perm, "perm").unwrap();
    let affine = b.upload_f32(&affine, "affine").unwrap();
    let (mut x, mut y) = (
        b.zeros(batch * image_len, "x").unwrap(),
        b.zeros(batch, "y").unwrap(),
    );
    b.gather_batch_affine(&p, &images, &labels, &perm, &affine, &mut x, &mut y)
        .unwrap();
    let y: Vec<f32> = b.read_u32(&y).unwrap().iter().map(|&l| l as f32).collect();
    vec![("x", b.read_f32(&x).unwrap()), ("y", y)]
}

#[test]
fn gather_affine_gpu_matches_cpu() {
    for (rows, cols, seed) in [(28, 28, 1), (9, 13, 2)] {
        // Bilinear weights of 0–255 values: a fused multiply-add on the GPU moves the result
        // by a few ulps of 255 before normalising.
        gpu_matches_cpu!(
            format!("gather_affine {rows}×{cols}"),
            1e-4,
            0.0,
            gather_affine_run,
            rows,
            cols,
            seed
        );
    }
}

/// Every GEMM core has a name that `--gemm` and `$CNN_GPU_GEMM` take back, the default first.
#[test]
fn gemm_variants_are_named() {
    assert_eq!(GemmVariant::ALL[0], GemmVariant::default());
    for &v in GemmVariant::ALL {
        assert_eq!(GemmVariant::parse(v.name()), Some(v));
        assert_eq!(v.to_string(), v.name());
    }
    assert_eq!(GemmVariant::parse("nope"), None);
}

/// Views of one packed allocation (`zeros_packed`) read, write and bind as buffers of their
/// own: a kernel over one view leaves its neighbours, and the whole sees every part.
fn packed_run<B: Backend>(b: &B, lens: &[usize], seed: u64) -> Outputs {
    let mut packed = b.zeros_packed(lens, "packed").unwrap();
    for (i, part) in packed.parts.iter_mut().enumerate() {
        b.write_f32(part, &rand_vec(seed + i as u64, lens[i], -1.0, 1.0))
            .unwrap();
    }
    // An op may write one view while reading another buffer (never a view of the same
    // allocation: WebGPU refuses a buffer bound read-only and read-write in one dispatch).
    let x = b
        .upload_f32(&rand_vec(seed + 9, lens[0], -1.0, 1.0), "x")
        .unwrap();
    b.relu_forward(lens[0], &x, &mut packed.parts[0]).unwrap();
    b.fill_zero(&mut packed.parts[2]).unwrap();
    let mut out: Outputs = packed
        .parts
        .iter()
        .map(|p| ("part", b.read_f32(p).unwrap()))
        .collect();
    if let Some(whole) = &packed.whole {
        let all = b.read_f32(whole).unwrap();
        assert!(all.len() >= lens.iter().sum(), "the whole spans every part");
        // Every part's values appear in the whole, in order.
        let total: f32 = out.iter().flat_map(|(_, v)| v).map(|v| v.abs()).sum();
        let whole_total: f32 = all.iter().map(|v| v.abs()).sum();
        assert!((total - whole_total).abs() <= 1e-3 * total.max(1.0));
    }
    out.push(("sum", vec![out.iter().map(|(_, v)| v.len() as f32).sum()]));
    out
}

#[test]
fn packed_views_gpu_match_cpu() {
    // Lengths that are not multiples of the binding alignment.
    let lens = [70, 70, 3, 1, 257];
    gpu_matches_cpu!("packed views", 0.0, 0.0, packed_run, &lens, 3);
}
