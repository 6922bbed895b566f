//! Throughput of one SimpleCNN training step on the CPU backend, through the `Backend` trait, as
//! the trainer runs it: gather, conv 1→32 3×3 pad 1 on 28×28, relu + maxpool 2 (fused), conv
//! 32→64 3×3 pad 1 on 14×14, relu + maxpool 2, linear 3136→64, relu, linear 64→10, softmax
//! cross-entropy, the backward pass of all of it (no input gradient for the first convolution)
//! and SGD with momentum.
//!
//! `cargo run --release --example cpu_step [-- --batch 64 --steps 40 --threads N]`
//! prints images/s, the GFLOP/s of the convolutions and matrix products, and the time per op.

use std::collections::BTreeMap;
use std::time::Instant;

use cnn_gpu::backend::cpu::{CpuBackend, CpuBuffer};
use cnn_gpu::backend::{
    Backend, Channels, Conv2d, Gather, Matmul, Pool2d, Sgd, SoftmaxXent, StepScalars,
};
use cnn_gpu::Result;
use rand::{Rng, SeedableRng};

struct Args {
    batch: usize,
    steps: usize,
    threads: Option<usize>,
}

fn parse_args() -> Args {
    let mut args = Args {
        batch: 64,
        steps: 40,
        threads: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().and_then(|v| v.parse().ok());
        match (flag.as_str(), value) {
            ("--batch", Some(v)) => args.batch = v,
            ("--steps", Some(v)) => args.steps = v,
            ("--threads", Some(v)) => args.threads = Some(v),
            _ => {
                eprintln!("usage: cpu_step [--batch N] [--steps N] [--threads N]");
                std::process::exit(2);
            }
        }
    }
    args
}

/// Times each op by name (the CPU backend runs ops synchronously).
struct Timer {
    on: bool,
    totals: BTreeMap<&'static str, f64>,
}

impl Timer {
    fn op(&mut self, name: &'static str, f: impl FnOnce() -> Result<()>) -> Result<()> {
        if !self.on {
            return f();
        }
        let t = Instant::now();
        f()?;
        *self.totals.entry(name).or_default() += t.elapsed().as_secs_f64();
        Ok(())
    }
}

fn main() -> Result<()> {
    let args = parse_args();
    let b = CpuBackend::new(args.threads)?;
    let n = args.batch;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
    let mut rand = |len: usize, scale: f32| -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-scale..scale)).collect()
    };

    // Shapes.
    let conv1 = Conv2d {
        batch: n,
        in_channels: 1,
        in_h: 28,
        in_w: 28,
        out_channels: 32,
        kernel_h: 3,
        kernel_w: 3,
        stride: 1,
        padding: 1,
    };
    let pool1 = Pool2d {
        batch: n,
        channels: 32,
        in_h: 28,
        in_w: 28,
        kernel: 2,
        stride: 2,
    };
    let conv2 = Conv2d {
        in_channels: 32,
        in_h: 14,
        in_w: 14,
        out_channels: 64,
        ..conv1
    };
    let pool2 = Pool2d {
        batch: n,
        channels: 64,
        in_h: 14,
        in_w: 14,
        kernel: 2,
        stride: 2,
    };
    let (flat, hidden, classes) = (64 * 7 * 7, 64, 10);
    let xent = SoftmaxXent { batch: n, classes };

    // A resident synthetic dataset of 1024 images.
    let items = 1024;
    let pixels: Vec<u32> = (0..items * 784 / 4)
        .map(|i| (i as u32).wrapping_mul(2654435761))
        .collect();
    let labels: Vec<u32> = (0..items as u32).map(|i| i % 10).collect();
    let perm: Vec<u32> = (0..items as u32).collect();
    let images = b.upload_u32(&pixels, "images")?;
    let labels = b.upload_u32(&labels, "labels")?;
    let perm = b.upload_u32(&perm, "perm")?;

    // Parameters (weights, biases) with their gradients and velocities.
    let shapes = [
        conv1.weight_len(),
        32,
        conv2.weight_len(),
        64,
        hidden * flat,
        hidden,
        classes * hidden,
        classes,
    ];
    let mut params: Vec<CpuBuffer> = Vec::new();
    for (i, &len) in shapes.iter().enumerate() {
        let fan_in = [9, 9, 288, 288, flat, flat, hidden, hidden][i] as f32;
        params.push(b.upload_f32(&rand(len, 1.0 / fan_in.sqrt()), "param")?);
    }
    let mut grads: Vec<CpuBuffer> = shapes
        .iter()
        .map(|&l| b.zeros(l, "grad"))
        .collect::<Result<_>>()?;
    let mut vels: Vec<CpuBuffer> = shapes
        .iter()
        .map(|&l| b.zeros(l, "velocity"))
        .collect::<Result<_>>()?;
    let scalars = b.upload_f32(&StepScalars::sgd(0.01).words(), "step scalars")?;

    // Activations and their gradients.
    let z = |len: usize| b.zeros(len, "activation");
    let (mut x, mut y) = (z(n * 784)?, z(n)?);
    let (mut c1, mut p1) = (z(conv1.output_len())?, z(pool1.output_len())?);
    let (mut c2, mut p2) = (z(conv2.output_len())?, z(pool2.output_len())?);
    let (mut h1, mut a1, mut logits) = (z(n * hidden)?, z(n * hidden)?, z(n * classes)?);
    let (mut loss, mut correct, mut dlogits) = (z(1)?, z(1)?, z(n * classes)?);
    let (mut da1, mut dh1, mut dp2) = (z(n * hidden)?, z(n * hidden)?, z(pool2.output_len())?);
    let (mut dc2, mut dp1) = (z(conv2.output_len())?, z(pool1.output_len())?);
    let mut dc1 = z(conv1.output_len())?;

    let fc = |m, k, n, trans_a, trans_b| Matmul {
        m,
        k,
        n,
        trans_a,
        trans_b,
    };
    let mut step = |t: &mut Timer, s: usize| -> Result<()> {
        let offset = (s * n) % (items - n + 1);
        let gather = Gather {
            batch: n,
            image_len: 784,
            offset,
        };
        t.op("gather", || {
            b.gather_batch(&gather, &images, &labels, &perm, &mut x, &mut y)
        })?;
        // Forward.
        t.op("conv1 fwd", || {
            b.conv2d_forward(&conv1, &x, &params[0], &params[1], &mut c1)
        })?;
        t.op("relu+maxpool fwd", || {
            b.relu_maxpool2d_forward(&pool1, &c1, &mut p1)
        })?;
        t.op("conv2 fwd", || {
            b.conv2d_forward(&conv2, &p1, &params[2], &params[3], &mut c2)
        })?;
        t.op("relu+maxpool fwd", || {
            b.relu_maxpool2d_forward(&pool2, &c2, &mut p2)
        })?;
        t.op("fc1 fwd", || {
            b.matmul(&fc(n, flat, hidden, false, true), &p2, &params[4], &mut h1)
        })?;
        let rows = |c| Channels {
            outer: n,
            channels: c,
            inner: 1,
        };
        t.op("bias/sum", || {
            b.bias_add(&rows(hidden), &params[5], &mut h1)
        })?;
        t.op("relu fwd", || b.relu_forward(n * hidden, &h1, &mut a1))?;
        t.op("fc2 fwd", || {
            b.matmul(
                &fc(n, hidden, classes, false, true),
                &a1,
                &params[6],
                &mut logits,
            )
        })?;
        t.op("bias/sum", || {
            b.bias_add(&rows(classes), &params[7], &mut logits)
        })?;
        t.op("loss", || {
            b.softmax_cross_entropy(&xent, &logits, &y, &mut loss, &mut dlogits)
        })?;
        t.op("loss", || b.count_correct(&xent, &logits, &y, &mut correct))?;
        // Backward.
        let [g0, g1, g2, g3, g4, g5, g6, g7] = &mut grads[..] else {
            unreachable!()
        };
        t.op("fc2 bwd", || {
            b.matmul(&fc(classes, n, hidden, true, false), &dlogits, &a1, g6)
        })?;
        t.op("bias/sum", || b.channel_sum(&rows(classes), &dlogits, g7))?;
        t.op("fc2 bwd", || {
            b.matmul(
                &fc(n, classes, hidden, false, false),
                &dlogits,
                &params[6],
                &mut da1,
            )
        })?;
        t.op("relu bwd", || {
            b.relu_backward(n * hidden, &a1, &da1, &mut dh1)
        })?;
        t.op("fc1 bwd", || {
            b.matmul(&fc(hidden, n, flat, true, false), &dh1, &p2, g4)
        })?;
        t.op("bias/sum", || b.channel_sum(&rows(hidden), &dh1, g5))?;
        t.op("fc1 bwd", || {
            b.matmul(
                &fc(n, hidden, flat, false, false),
                &dh1,
                &params[4],
                &mut dp2,
            )
        })?;
        t.op("relu+maxpool bwd", || {
            b.relu_maxpool2d_backward(&pool2, &c2, &dp2, &mut dc2)
        })?;
        t.op("conv2 bwd weight", || {
            b.conv2d_backward_weight(&conv2, &p1, &dc2, g2)
        })?;
        t.op("conv bwd bias", || b.conv2d_backward_bias(&conv2, &dc2, g3))?;
        t.op("conv2 bwd input", || {
            b.conv2d_backward_input(&conv2, &dc2, &params[2], &mut dp1)
        })?;
        t.op("relu+maxpool bwd", || {
            b.relu_maxpool2d_backward(&pool1, &c1, &dp1, &mut dc1)
        })?;
        t.op("conv1 bwd weight", || {
            b.conv2d_backward_weight(&conv1, &x, &dc1, g0)
        })?;
        t.op("conv bwd bias", || b.conv2d_backward_bias(&conv1, &dc1, g1))?;
        // Update.
        for ((param, grad), vel) in params.iter_mut().zip(&grads).zip(&mut vels) {
            let sgd = Sgd {
                len: b.len(param),
                momentum: 0.9,
                nesterov: false,
                weight_decay: 0.0,
                max_norm: None,
            };
            t.op("sgd", || b.sgd_step(&sgd, &scalars, param, grad, vel))?;
        }
        Ok(())
    };

    let mut quiet = Timer {
        on: false,
        totals: BTreeMap::new(),
    };
    for s in 0..5 {
        step(&mut quiet, s)?;
    }
    let (start, cpu_start) = (Instant::now(), process_cpu_seconds());
    for s in 0..args.steps {
        step(&mut quiet, s)?;
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_secs = process_cpu_seconds()
        .zip(cpu_start)
        .map(|(end, start)| end - start);
    let mut timed = Timer {
        on: true,
        totals: BTreeMap::new(),
    };
    for s in 0..args.steps {
        step(&mut timed, s)?;
    }

    let flops = 2.0
        * (2 * conv1.macs() + 3 * conv2.macs() + 3 * n * flat * hidden + 3 * n * hidden * classes)
            as f64;
    let per_step = secs / args.steps as f64;
    println!(
        "{} — SimpleCNN training step, batch {n}, {} steps",
        b.describe(),
        args.steps
    );
    println!(
        "{:.1} ms/step, {:.0} images/s, {:.1} GFLOP/s in convolutions and matrix products",
        per_step * 1e3,
        n as f64 / per_step,
        flops / per_step / 1e9
    );
    if let Some(cpu) = cpu_secs {
        // On a shared machine wall time depends on the neighbours; CPU time much less so.
        println!(
            "process CPU time {:.1} ms/step ({:.2} of {} threads busy on average)",
            cpu / args.steps as f64 * 1e3,
            cpu / secs,
            b.threads()
        );
    }
    let total: f64 = timed.totals.values().sum();
    let mut ops: Vec<_> = timed.totals.into_iter().collect();
    ops.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (name, t) in ops {
        println!(
            "  {name:<18} {:7.2} ms/step {:5.1}%",
            t / args.steps as f64 * 1e3,
            100.0 * t / total
        );
    }
    let final_loss = b.read_f32(&loss)?[0] / (2 * args.steps + 5) as f32;
    println!("(mean loss over the run {final_loss:.3}, so the numbers are not optimised away)");
    Ok(())
}

/// User + system CPU time of this process so far, from /proc/self/stat (Linux only).
fn process_cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0) // USER_HZ is 100 on Linux
}
