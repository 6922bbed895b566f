//! Every kernel of the `Backend` trait, forward and backward, at SimpleCNN's shapes, on the CPU
//! backend and on the GPU backend (skipped with a line when no adapter opens), plus square
//! matrix products. One line per case: op, shape, backend, time per call and a rate (GFLOP/s for
//! convolutions and matrix products, GB/s of nominal traffic for memory-bound ops).
//!
//! ```text
//! cargo bench --bench kernels                      # everything
//! cargo bench --bench kernels -- conv2             # cases whose name contains "conv2"
//! cargo bench --bench kernels -- matmul gpu        # ... and "gpu" (every filter must match)
//! CNN_GPU_BENCH_SIZES=full cargo bench --bench kernels
//! ```
//!
//! Sizes (`CNN_GPU_BENCH_SIZES=small|full`): full is batch 64 and 1024 and square matmul at
//! 1024, 2048 and 4096; small is batch 64 and matmul 1024 only. Unset, the GPU backend runs full
//! on a real GPU and small on a software adapter (lavapipe: a few GFLOP/s), and the CPU backend
//! runs full without the 4096 matmul (≈ 137 GFLOP, tens of seconds on two cores).
//!
//! How a case is timed: one warm-up call and a wait (pipelines, uniforms and bind groups are
//! built then, on the GPU), then N calls recorded back to back and one `read_f32` of a
//! 1-element buffer, which submits and waits; the wall clock around all of it, divided by N, is
//! the time per call. N grows until a run lasts about [`TARGET_S`]. On the GPU this includes the
//! CPU cost of recording each dispatch and one submit-and-wait per run (≈ 50 µs, amortised over
//! N), as the training loop pays them. Where the adapter has timestamp queries, a second
//! figure, `kernel`, is the GPU time of the case's dispatches alone (each in its own
//! timestamped pass, through the backend's profiler), without that host overhead.
//!
//! GB/s counts each buffer an op must read or write once (the minimum traffic), so it is a
//! lower bound of what the memory system moved.
//!
//! The GPU part runs once per GEMM core (`GemmVariant::ALL`, or only the one `CNN_GPU_GEMM`
//! names): every kernel on the first, then only the GEMM ops (matmul and the three convolution
//! passes) on each other one. Each section's header names its core (`, gemm vec4` past the
//! default), so the filter `vec4` picks that core's cases.

mod common;

use std::time::Instant;

use cnn_gpu::backend::cpu::CpuBackend;
use cnn_gpu::backend::{
    Backend, Channels, Conv2d, Gather, Matmul, Pool2d, Sgd, SoftmaxXent, StepScalars,
};
use cnn_gpu::model::{Layer, ModelSpec, Shape};
use cnn_gpu::Result;
use common::{fmt_time, Filter, Sizes};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Seconds a timed run of one case aims at.
const TARGET_S: f64 = 0.2;
/// Calls per timed run at most (tiny kernels).
const MAX_CALLS: usize = 20_000;
/// Images in the synthetic resident dataset the gather reads from.
const DATASET: usize = 4096;

/// What a case's rate counts.
#[derive(Clone, Copy)]
enum Work {
    Flops(usize),
    Bytes(usize),
}

/// What to run on one backend.
struct Plan {
    batches: Vec<usize>,
    matmul: Vec<usize>,
    note: &'static str,
}

impl Plan {
    fn of(sizes: Sizes) -> Plan {
        match sizes {
            Sizes::Full => Plan {
                batches: vec![64, 1024],
                matmul: vec![1024, 2048, 4096],
                note: "full",
            },
            Sizes::Small => Plan {
                batches: vec![64],
                matmul: vec![1024],
                note: "small",
            },
        }
    }
}

/// Runs and prints the cases of one backend.
struct Bench<'a, B: Backend> {
    b: &'a B,
    /// "cpu" or "gpu": part of every case's name, so a filter can pick a backend.
    tag: &'static str,
    name: String,
    filter: &'a Filter,
    sync: B::Buffer,
    rng: ChaCha8Rng,
    ran: usize,
    /// Also time each case's kernels alone from GPU timestamp queries.
    timestamps: bool,
    /// Run only the ops on the GEMM core (matmul and the convolution passes): a second GEMM
    /// variant's pass, whose other kernels are the first pass's.
    gemm_only: bool,
}

/// The ops that run on the GEMM core, which a [`common::gemm_variants`] pass compares.
const GEMM_OPS: [&str; 4] = [
    "matmul",
    "conv2d_forward",
    "conv2d_backward_input",
    "conv2d_backward_weight",
];

impl<'a, B: Backend> Bench<'a, B> {
    fn new(b: &'a B, tag: &'static str, filter: &'a Filter, timestamps: bool) -> Result<Self> {
        Ok(Bench {
            timestamps,
            b,
            tag,
            name: b.describe(),
            filter,
            sync: b.zeros(1, "bench sync")?,
            rng: ChaCha8Rng::seed_from_u64(7),
            ran: 0,
            gemm_only: false,
        })
    }

    fn wanted(&self, op: &str, shape: &str) -> bool {
        (!self.gemm_only || GEMM_OPS.contains(&op))
            && self
                .filter
                .matches(&format!("{op} {shape} {} {}", self.tag, self.name))
    }

    /// Whether any of these ops would run at this shape (saves allocating skipped buffers).
    fn any_wanted(&self, ops: &[&str], shape: &str) -> bool {
        ops.iter().any(|op| self.wanted(op, shape))
    }

    fn rand_f32(&mut self, len: usize, scale: f32, label: &str) -> Result<B::Buffer> {
        let v: Vec<f32> = (0..len)
            .map(|_| self.rng.random_range(-scale..scale))
            .collect();
        self.b.upload_f32(&v, label)
    }

    fn rand_u32(&mut self, len: usize, below: u32, label: &str) -> Result<B::Buffer> {
        let v: Vec<u32> = (0..len).map(|_| self.rng.random_range(0..below)).collect();
        self.b.upload_u32(&v, label)
    }

    /// Times `f` (see the module docs) and prints one line.
    fn case(
        &mut self,
        op: &str,
        shape: &str,
        work: Work,
        mut f: impl FnMut() -> Result<()>,
    ) -> Result<()> {
        if !self.wanted(op, shape) {
            return Ok(());
        }
        let (b, sync) = (self.b, &self.sync);
        let mut timed = |calls: usize| -> Result<f64> {
            let t0 = Instant::now();
            for _ in 0..calls {
                f()?;
            }
            b.read_f32(sync)?;
            Ok(t0.elapsed().as_secs_f64())
        };
        timed(1)?; // warm-up: pipeline builds, caches, page faults
        let mut calls = 1;
        let mut secs = timed(calls)?;
        while secs < TARGET_S && calls < MAX_CALLS {
            calls = if secs >= TARGET_S / 20.0 {
                ((calls as f64 * TARGET_S / secs).ceil() as usize).clamp(calls + 1, MAX_CALLS)
            } else {
                (calls * 20).min(MAX_CALLS)
            };
            secs = timed(calls)?;
        }
        let per_call = secs / calls as f64;
        let rate = |t: f64| match work {
            Work::Flops(f) => format!("{:9.2} GFLOP/s", f as f64 / t / 1e9),
            Work::Bytes(by) => format!("{:9.2} GB/s   ", by as f64 / t / 1e9),
        };
        // The kernels alone, from timestamps around each dispatch (at most 2048 a profile).
        let kernel = if self.timestamps {
            let n = calls.min(500);
            b.start_profile()?;
            b.scope(op);
            for _ in 0..n {
                f()?;
            }
            let t: f64 = b.finish_profile()?.iter().map(|(_, t)| t).sum::<f64>() / n as f64;
            format!("  kernel {:>11} {}", fmt_time(t), rate(t).trim())
        } else {
            String::new()
        };
        println!(
            "{op:<22} {shape:<44} {:<5} {:>11} {}  ({calls} calls){kernel}  {}",
            self.tag,
            fmt_time(per_call),
            rate(per_call),
            self.name
        );
        self.ran += 1;
        Ok(())
    }

    fn conv(&mut self, layer: &str, p: Conv2d) -> Result<()> {
        let shape = format!(
            "{layer} n={} {}x{}x{}->{} {}x{} s{} p{}",
            p.batch,
            p.in_channels,
            p.in_h,
            p.in_w,
            p.out_channels,
            p.kernel_h,
            p.kernel_w,
            p.stride,
            p.padding
        );
        let ops = [
            "conv2d_forward",
            "conv2d_backward_input",
            "conv2d_backward_weight",
            "conv2d_backward_bias",
        ];
        if !self.any_wanted(&ops, &shape) {
            return Ok(());
        }
        let b = self.b;
        let x = self.rand_f32(p.input_len(), 1.0, "x")?;
        let w = self.rand_f32(p.weight_len(), 0.1, "w")?;
        let bias = self.rand_f32(p.out_channels, 0.1, "bias")?;
        let dout = self.rand_f32(p.output_len(), 1.0, "dout")?;
        let mut out = b.zeros(p.output_len(), "out")?;
        let mut dx = b.zeros(p.input_len(), "dx")?;
        let mut dw = b.zeros(p.weight_len(), "dw")?;
        let mut db = b.zeros(p.out_channels, "dbias")?;
        // Each of the three GEMM-like passes costs the forward pass's multiply-adds.
        let flops = Work::Flops(2 * p.macs());
        self.case(ops[0], &shape, flops, || {
            b.conv2d_forward(&p, &x, &w, &bias, &mut out)
        })?;
        self.case(ops[1], &shape, flops, || {
            b.conv2d_backward_input(&p, &dout, &w, &mut dx)
        })?;
        self.case(ops[2], &shape, flops, || {
            b.conv2d_backward_weight(&p, &x, &dout, &mut dw)
        })?;
        let bytes = Work::Bytes(4 * (p.output_len() + p.out_channels));
        self.case(ops[3], &shape, bytes, || {
            b.conv2d_backward_bias(&p, &dout, &mut db)
        })
    }

    fn pool(&mut self, layer: &str, p: Pool2d) -> Result<()> {
        let shape = format!(
            "{layer} n={} c={} {}x{} k{} s{}",
            p.batch, p.channels, p.in_h, p.in_w, p.kernel, p.stride
        );
        let ops = [
            "maxpool2d_forward",
            "maxpool2d_backward",
            "avgpool2d_forward",
            "avgpool2d_backward",
            "relu_maxpool2d_forward",
            "relu_maxpool2d_backward",
        ];
        if !self.any_wanted(&ops, &shape) {
            return Ok(());
        }
        let b = self.b;
        let (i, o) = (p.input_len(), p.output_len());
        let x = self.rand_f32(i, 1.0, "x")?;
        let dout = self.rand_f32(o, 1.0, "dout")?;
        let mut out = b.zeros(o, "out")?;
        let mut dx = b.zeros(i, "dx")?;
        self.case(ops[0], &shape, Work::Bytes(4 * (i + o)), || {
            b.maxpool2d_forward(&p, &x, &mut out)
        })?;
        self.case(ops[1], &shape, Work::Bytes(4 * (2 * i + o)), || {
            b.maxpool2d_backward(&p, &x, &dout, &mut dx)
        })?;
        self.case(ops[2], &shape, Work::Bytes(4 * (i + o)), || {
            b.avgpool2d_forward(&p, &x, &mut out)
        })?;
        self.case(ops[3], &shape, Work::Bytes(4 * (i + o)), || {
            b.avgpool2d_backward(&p, &dout, &mut dx)
        })?;
        // Fused with the ReLU before it, as training runs SimpleCNN's pools.
        self.case(ops[4], &shape, Work::Bytes(4 * (i + o)), || {
            b.relu_maxpool2d_forward(&p, &x, &mut out)
        })?;
        self.case(ops[5], &shape, Work::Bytes(4 * (2 * i + o)), || {
            b.relu_maxpool2d_backward(&p, &x, &dout, &mut dx)
        })
    }

    fn relu(&mut self, site: &str, len: usize) -> Result<()> {
        let shape = format!("{site} len={len}");
        let ops = ["relu_forward", "relu_backward"];
        if !self.any_wanted(&ops, &shape) {
            return Ok(());
        }
        let b = self.b;
        let x = self.rand_f32(len, 1.0, "x")?;
        let dy = self.rand_f32(len, 1.0, "dy")?;
        let mut y = b.zeros(len, "y")?;
        let mut dx = b.zeros(len, "dx")?;
        self.case(ops[0], &shape, Work::Bytes(8 * len), || {
            b.relu_forward(len, &x, &mut y)
        })?;
        self.case(ops[1], &shape, Work::Bytes(12 * len), || {
            b.relu_backward(len, &x, &dy, &mut dx)
        })
    }

    fn matmul(&mut self, what: &str, p: Matmul) -> Result<()> {
        let ta = if p.trans_a { "ᵀ" } else { "" };
        let tb = if p.trans_b { "ᵀ" } else { "" };
        let shape = format!("{what} m={} k={} n={} A{ta}·B{tb}", p.m, p.k, p.n);
        if !self.wanted("matmul", &shape) {
            return Ok(());
        }
        let b = self.b;
        let a = self.rand_f32(p.m * p.k, 1.0, "a")?;
        let bm = self.rand_f32(p.k * p.n, 1.0, "b")?;
        let mut c = b.zeros(p.m * p.n, "c")?;
        self.case("matmul", &shape, Work::Flops(p.flops()), || {
            b.matmul(&p, &a, &bm, &mut c)
        })
    }

    /// A linear layer `in → out` at batch `n`: forward (x·Wᵀ + b) and backward (dW, db, dx).
    fn linear(&mut self, layer: &str, n: usize, fin: usize, fout: usize) -> Result<()> {
        let fwd = Matmul {
            m: n,
            k: fin,
            n: fout,
            trans_a: false,
            trans_b: true,
        };
        let dw = Matmul {
            m: fout,
            k: n,
            n: fin,
            trans_a: true,
            trans_b: false,
        };
        let dx = Matmul {
            m: n,
            k: fout,
            n: fin,
            trans_a: false,
            trans_b: false,
        };
        self.matmul(&format!("{layer} fwd"), fwd)?;
        self.matmul(&format!("{layer} dW"), dw)?;
        self.matmul(&format!("{layer} dx"), dx)?;

        let ch = Channels {
            outer: n,
            channels: fout,
            inner: 1,
        };
        let shape = format!("{layer} n={n} features={fout}");
        let ops = ["bias_add", "channel_sum"];
        if !self.any_wanted(&ops, &shape) {
            return Ok(());
        }
        let b = self.b;
        let bias = self.rand_f32(fout, 0.01, "bias")?;
        let mut y = self.rand_f32(ch.len(), 1.0, "y")?;
        let mut sum = b.zeros(fout, "sum")?;
        self.case(
            ops[0],
            &shape,
            Work::Bytes(4 * (2 * ch.len() + fout)),
            || b.bias_add(&ch, &bias, &mut y),
        )?;
        self.case(ops[1], &shape, Work::Bytes(4 * (ch.len() + fout)), || {
            b.channel_sum(&ch, &y, &mut sum)
        })
    }

    fn loss(&mut self, n: usize, classes: usize) -> Result<()> {
        let p = SoftmaxXent { batch: n, classes };
        let shape = format!("n={n} classes={classes}");
        let ops = ["softmax_cross_entropy", "count_correct"];
        if !self.any_wanted(&ops, &shape) {
            return Ok(());
        }
        let b = self.b;
        let logits = self.rand_f32(n * classes, 3.0, "logits")?;
        let labels = self.rand_u32(n, classes as u32, "labels")?;
        let mut loss = b.zeros(1, "loss_sum")?;
        let mut dlogits = b.zeros(n * classes, "dlogits")?;
        let mut correct = b.zeros(1, "correct")?;
        self.case(
            ops[0],
            &shape,
            Work::Bytes(4 * (2 * n * classes + n)),
            || b.softmax_cross_entropy(&p, &logits, &labels, &mut loss, &mut dlogits),
        )?;
        self.case(ops[1], &shape, Work::Bytes(4 * (n * classes + n)), || {
            b.count_correct(&p, &logits, &labels, &mut correct)
        })
    }

    /// Gathers `n` images of `image_len` u8 pixels (packed four to a word; `image_len` must be
    /// a multiple of 4) and their labels from a resident dataset.
    fn gather(&mut self, n: usize, image_len: usize) -> Result<()> {
        let g = Gather {
            batch: n,
            image_len,
            offset: 0,
        };
        let shape = format!("n={n} {image_len} px of {DATASET} u8 images");
        if !self.wanted("gather_batch", &shape) {
            return Ok(());
        }
        let b = self.b;
        // Packed u8 pixels (four to a word) of random images, random labels, and a shuffled
        // permutation so that the batch reads scattered images as an epoch does.
        let images = self.rand_u32(DATASET * image_len / 4, u32::MAX, "images")?;
        let labels = self.rand_u32(DATASET, 10, "labels")?;
        let mut order: Vec<u32> = (0..DATASET as u32).collect();
        for i in (1..order.len()).rev() {
            order.swap(i, self.rng.random_range(0..=i));
        }
        let perm = b.upload_u32(&order, "perm")?;
        let mut x = b.zeros(n * image_len, "x")?;
        let mut y = b.zeros(n, "y")?;
        // u8 pixels and the label read, f32 pixels and the label written, the permutation read.
        let bytes = n * image_len + 4 * n + 4 * n * image_len + 4 * n + 4 * n;
        self.case("gather_batch", &shape, Work::Bytes(bytes), || {
            b.gather_batch(&g, &images, &labels, &perm, &mut x, &mut y)
        })
    }

    fn fill_zero(&mut self, site: &str, len: usize) -> Result<()> {
        let shape = format!("{site} len={len}");
        if !self.wanted("fill_zero", &shape) {
            return Ok(());
        }
        let b = self.b;
        let mut buf = b.zeros(len, "buf")?;
        self.case("fill_zero", &shape, Work::Bytes(4 * len), || {
            b.fill_zero(&mut buf)
        })
    }

    /// Every op of one SimpleCNN training step, at batch `n`, in step order (the forward pass's
    /// ops, each with its backward ops), plus the ops the step does not use (conv1's input
    /// gradient, average pooling, accuracy counting, fill_zero). Shapes come from
    /// `ModelSpec::simple_cnn()`: conv 1→32 and 32→64 (3×3, pad 1) on 28×28 and 14×14, ReLU,
    /// max-pool 2, linear 3136→64 and 64→10.
    fn batch(&mut self, n: usize) -> Result<()> {
        let spec = ModelSpec::simple_cnn();
        let shapes = spec.infer_shapes()?;
        self.gather(n, shapes[0].numel())?;
        let (mut convs, mut relus, mut pools, mut fcs) = (0, 0, 0, 0);
        for (layer, input) in spec.layers.iter().zip(&shapes) {
            if let Some(p) = layer.conv2d_params(*input, n) {
                convs += 1;
                self.conv(&format!("conv{convs}"), p)?;
                continue;
            }
            if let Some(p) = layer.pool2d_params(*input, n) {
                pools += 1;
                self.pool(&format!("pool{pools}"), p)?;
                continue;
            }
            match (*layer, *input) {
                (Layer::Relu, shape) => {
                    relus += 1;
                    self.relu(&format!("relu{relus}"), n * shape.numel())?;
                }
                (
                    Layer::Linear {
                        in_features,
                        out_features,
                    },
                    _,
                ) => {
                    fcs += 1;
                    self.linear(&format!("fc{fcs}"), n, in_features, out_features)?;
                }
                _ => {} // Flatten: no op
            }
        }
        let classes = shapes.last().map_or(0, Shape::numel);
        self.loss(n, classes)?;
        self.fill_zero("act1", n * shapes[1].numel())
    }

    /// SGD with momentum over each of SimpleCNN's parameter tensors (independent of the batch).
    fn sgd(&mut self) -> Result<()> {
        for (name, shape) in ModelSpec::simple_cnn().param_shapes()? {
            let len: usize = shape.iter().product();
            let shape = format!("{name} len={len}");
            if !self.wanted("sgd_momentum", &shape) {
                continue;
            }
            let b = self.b;
            let p = Sgd {
                len,
                momentum: 0.9,
                nesterov: false,
                weight_decay: 0.0,
                max_norm: None,
            };
            let scalars = b.upload_f32(&StepScalars::sgd(1e-3).words(), "scalars")?;
            let mut param = self.rand_f32(len, 0.1, "param")?;
            let grad = self.rand_f32(len, 0.1, "grad")?;
            let mut vel = b.zeros(len, "velocity")?;
            // param, grad and velocity read; param and velocity written.
            self.case("sgd_momentum", &shape, Work::Bytes(20 * len), || {
                b.sgd_step(&p, &scalars, &mut param, &grad, &mut vel)
            })?;
        }
        Ok(())
    }

    fn square_matmul(&mut self, s: usize) -> Result<()> {
        let p = Matmul {
            m: s,
            k: s,
            n: s,
            trans_a: false,
            trans_b: false,
        };
        self.matmul(&format!("square {s}"), p)
    }

    fn run(&mut self, plan: &Plan) -> Result<()> {
        println!(
            "== {} [{}]: sizes {} (batches {:?}, square matmul {:?})",
            self.name, self.tag, plan.note, plan.batches, plan.matmul
        );
        for &n in &plan.batches {
            self.batch(n)?;
        }
        self.sgd()?;
        for &s in &plan.matmul {
            self.square_matmul(s)?;
        }
        Ok(())
    }
}

fn main() -> Result<()> {
    let t0 = Instant::now();
    let filter = Filter::from_args();
    let forced = common::sizes_from_env();
    println!(
        "kernels bench: filter {}, {}={}; time per call is the wall clock over N calls and one \
         wait, GB/s counts the minimum traffic; {}",
        filter.describe(),
        common::SIZES_VAR,
        forced.map_or("unset".to_string(), |s| format!("{s:?}").to_lowercase()),
        common::load()
    );

    let mut total = 0;

    let cpu = CpuBackend::new(None)?;
    let cpu_plan = match forced {
        Some(s) => Plan::of(s),
        None => Plan {
            matmul: vec![1024, 2048],
            note: "full without the 4096 matmul (CNN_GPU_BENCH_SIZES=full adds it)",
            ..Plan::of(Sizes::Full)
        },
    };
    let mut bench = Bench::new(&cpu, "cpu", &filter, false)?;
    bench.run(&cpu_plan)?;
    total += bench.ran;
    drop(bench);
    drop(cpu);

    // Every kernel on the first GEMM core, then the GEMM ops again on each other one (the
    // section header names the core: ", gemm vec4"; a filter such as `vec4` picks one).
    for (i, gemm) in common::gemm_variants()?.into_iter().enumerate() {
        let Some(gpu) = common::open_gpu_with(Some(gemm)) else {
            break;
        };
        let software = common::is_software(&gpu);
        let mut plan =
            Plan::of(forced.unwrap_or(if software { Sizes::Small } else { Sizes::Full }));
        if software {
            plan.note = if forced.is_some() {
                "as asked (software adapter: these are CPU times, not GPU figures)"
            } else {
                "small (software adapter: these are CPU times, not GPU figures)"
            };
        }
        let timestamps = gpu.adapter().timestamp_query;
        let mut bench = Bench::new(&gpu, "gpu", &filter, timestamps)?;
        bench.gemm_only = i > 0;
        bench.run(&plan)?;
        total += bench.ran;
    }

    println!(
        "kernels bench: {total} cases in {:.1} s ({})",
        t0.elapsed().as_secs_f64(),
        common::load()
    );
    Ok(())
}
