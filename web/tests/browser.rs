//! In a real browser (wasm-bindgen-test-runner driving headless Chromium, see docs/web.md):
//! every kernel family on WebGPU — our WGSL compiled by the browser's own compiler (Tint) —
//! against the CPU backend, on small asymmetric cases like tests/gpu_vs_cpu.rs, and a few
//! SimpleCNN steps whose losses match the native CPU backend's. Without a WebGPU adapter these
//! tests fail: opening the adapter is their first assertion.
#![cfg(target_arch = "wasm32")]

use cnn_gpu::backend::cpu::CpuBackend;
use cnn_gpu::backend::gpu::GpuBackend;
use cnn_gpu::backend::{Backend, Conv2d, Matmul, Pool2d, SoftmaxXent};
use cnn_gpu_web::engine::{Engine, Host};
use cnn_gpu_web::fixture::{tiny_dataset, tiny_settings, NATIVE_CPU_LOSSES, TINY_STEPS};
use cnn_gpu_web::{open_cpu, open_gpu};
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

async fn gpu() -> GpuBackend {
    match open_gpu().await {
        Ok(b) => b,
        Err(e) => panic!("no WebGPU adapter in this browser (these tests need one): {e}"),
    }
}

/// Deterministic values in [-1, 1).
fn values(n: usize, seed: u32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(2654435761).wrapping_add(12345);
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            (s % 20000) as f32 / 10000.0 - 1.0
        })
        .collect()
}

fn assert_close(what: &str, gpu: &[f32], cpu: &[f32]) {
    assert_eq!(gpu.len(), cpu.len(), "{what}: lengths");
    let mut worst = (0.0f32, 0usize);
    for (i, (g, c)) in gpu.iter().zip(cpu).enumerate() {
        let d = (g - c).abs();
        if d > 1e-4 + 1e-4 * c.abs() && d > worst.0 {
            worst = (d, i);
        }
    }
    assert!(
        worst.0 == 0.0,
        "{what}: max difference {} at index {} (gpu {}, cpu {})",
        worst.0,
        worst.1,
        gpu[worst.1],
        cpu[worst.1]
    );
}

/// Runs `op` on both backends with the same inputs and compares the output.
async fn both(
    what: &str,
    inputs: &[Vec<f32>],
    out_len: usize,
    op_gpu: impl Fn(
        &GpuBackend,
        &[<GpuBackend as Backend>::Buffer],
        &mut <GpuBackend as Backend>::Buffer,
    ),
    op_cpu: impl Fn(
        &CpuBackend,
        &[<CpuBackend as Backend>::Buffer],
        &mut <CpuBackend as Backend>::Buffer,
    ),
) {
    let g = gpu().await;
    let c = open_cpu().unwrap();
    let gi: Vec<_> = inputs
        .iter()
        .map(|v| g.upload_f32(v, what).unwrap())
        .collect();
    let ci: Vec<_> = inputs
        .iter()
        .map(|v| c.upload_f32(v, what).unwrap())
        .collect();
    let mut go = g.zeros(out_len, what).unwrap();
    let mut co = c.zeros(out_len, what).unwrap();
    op_gpu(&g, &gi, &mut go);
    op_cpu(&c, &ci, &mut co);
    let gv = g.read(&go).await.unwrap();
    let cv = c.read(&co).await.unwrap();
    assert!(
        cv.iter().any(|&v| v != 0.0),
        "{what}: the CPU output is all zeros"
    );
    assert_close(what, &gv, &cv);
}

/// H ≠ W, a non-square kernel, stride 2, padding 1, batch 2, channels that are no workgroup
/// multiple.
const CONV: Conv2d = Conv2d {
    batch: 2,
    in_channels: 3,
    in_h: 9,
    in_w: 7,
    out_channels: 5,
    kernel_h: 3,
    kernel_w: 2,
    stride: 2,
    padding: 1,
};

#[wasm_bindgen_test]
async fn adapter_is_webgpu() {
    let g = gpu().await;
    let d = g.adapter().describe();
    assert!(d.contains("BrowserWebGpu"), "{d}");
}

#[wasm_bindgen_test]
async fn conv2d_forward_matches_cpu() {
    let p = CONV;
    let inputs = [
        values(p.batch * p.in_channels * p.in_h * p.in_w, 1),
        values(p.out_channels * p.in_channels * p.kernel_h * p.kernel_w, 2),
        values(p.out_channels, 3),
    ];
    both(
        "conv2d_forward",
        &inputs,
        p.output_len(),
        |b, i, o| b.conv2d_forward(&p, &i[0], &i[1], &i[2], o).unwrap(),
        |b, i, o| b.conv2d_forward(&p, &i[0], &i[1], &i[2], o).unwrap(),
    )
    .await;
}

#[wasm_bindgen_test]
async fn conv2d_backward_matches_cpu() {
    let p = CONV;
    let x = values(p.batch * p.in_channels * p.in_h * p.in_w, 4);
    let w = values(p.out_channels * p.in_channels * p.kernel_h * p.kernel_w, 5);
    let dout = values(p.output_len(), 6);
    both(
        "conv2d_backward_input",
        &[dout.clone(), w.clone()],
        x.len(),
        |b, i, o| b.conv2d_backward_input(&p, &i[0], &i[1], o).unwrap(),
        |b, i, o| b.conv2d_backward_input(&p, &i[0], &i[1], o).unwrap(),
    )
    .await;
    both(
        "conv2d_backward_weight",
        &[x, dout.clone()],
        w.len(),
        |b, i, o| b.conv2d_backward_weight(&p, &i[0], &i[1], o).unwrap(),
        |b, i, o| b.conv2d_backward_weight(&p, &i[0], &i[1], o).unwrap(),
    )
    .await;
    both(
        "conv2d_backward_bias",
        &[dout],
        p.out_channels,
        |b, i, o| b.conv2d_backward_bias(&p, &i[0], o).unwrap(),
        |b, i, o| b.conv2d_backward_bias(&p, &i[0], o).unwrap(),
    )
    .await;
}

#[wasm_bindgen_test]
async fn pooling_matches_cpu() {
    let p = Pool2d {
        batch: 2,
        channels: 3,
        in_h: 7,
        in_w: 6,
        kernel: 2,
        stride: 2,
    };
    let x = values(p.batch * p.channels * p.in_h * p.in_w, 7);
    let dout = values(p.output_len(), 8);
    both(
        "maxpool2d_forward",
        std::slice::from_ref(&x),
        p.output_len(),
        |b, i, o| b.maxpool2d_forward(&p, &i[0], o).unwrap(),
        |b, i, o| b.maxpool2d_forward(&p, &i[0], o).unwrap(),
    )
    .await;
    both(
        "avgpool2d_forward",
        std::slice::from_ref(&x),
        p.output_len(),
        |b, i, o| b.avgpool2d_forward(&p, &i[0], o).unwrap(),
        |b, i, o| b.avgpool2d_forward(&p, &i[0], o).unwrap(),
    )
    .await;
    both(
        "maxpool2d_backward",
        &[x.clone(), dout],
        x.len(),
        |b, i, o| b.maxpool2d_backward(&p, &i[0], &i[1], o).unwrap(),
        |b, i, o| b.maxpool2d_backward(&p, &i[0], &i[1], o).unwrap(),
    )
    .await;
}

#[wasm_bindgen_test]
async fn matmul_matches_cpu() {
    for (trans_a, trans_b) in [(false, false), (true, false), (false, true)] {
        let p = Matmul {
            m: 13,
            k: 37,
            n: 9,
            trans_a,
            trans_b,
        };
        let inputs = [values(p.m * p.k, 9), values(p.k * p.n, 10)];
        both(
            &format!("matmul {trans_a} {trans_b}"),
            &inputs,
            p.m * p.n,
            |b, i, o| b.matmul(&p, &i[0], &i[1], o).unwrap(),
            |b, i, o| b.matmul(&p, &i[0], &i[1], o).unwrap(),
        )
        .await;
    }
}

#[wasm_bindgen_test]
async fn relu_matches_cpu() {
    let x = values(1000, 11);
    both(
        "relu_forward",
        &[x],
        1000,
        |b, i, o| b.relu_forward(1000, &i[0], o).unwrap(),
        |b, i, o| b.relu_forward(1000, &i[0], o).unwrap(),
    )
    .await;
}

#[wasm_bindgen_test]
async fn softmax_cross_entropy_matches_cpu() {
    let p = SoftmaxXent {
        batch: 7,
        classes: 10,
    };
    let logits = values(70, 12);
    let labels: Vec<u32> = (0..7).map(|i| (i * 3 % 10) as u32).collect();
    let g = gpu().await;
    let c = open_cpu().unwrap();
    let (gl, cl) = (
        g.upload_f32(&logits, "l").unwrap(),
        c.upload_f32(&logits, "l").unwrap(),
    );
    let (gy, cy) = (
        g.upload_u32(&labels, "y").unwrap(),
        c.upload_u32(&labels, "y").unwrap(),
    );
    let (mut gs, mut cs) = (g.zeros(1, "s").unwrap(), c.zeros(1, "s").unwrap());
    let (mut gd, mut cd) = (g.zeros(70, "d").unwrap(), c.zeros(70, "d").unwrap());
    g.softmax_cross_entropy(&p, &gl, &gy, &mut gs, &mut gd)
        .unwrap();
    c.softmax_cross_entropy(&p, &cl, &cy, &mut cs, &mut cd)
        .unwrap();
    assert_close(
        "loss",
        &g.read(&gs).await.unwrap(),
        &c.read(&cs).await.unwrap(),
    );
    assert_close(
        "dlogits",
        &g.read(&gd).await.unwrap(),
        &c.read(&cd).await.unwrap(),
    );
}

/// The tiny run's losses on `b`.
async fn tiny_losses<B: Host>(b: B) -> Vec<f32> {
    let mut e = Engine::new(b);
    e.load_data(tiny_dataset(96), tiny_dataset(20)).unwrap();
    e.start(&tiny_settings()).unwrap();
    let t = e.tick(1e9).await.unwrap();
    assert!(t.finished);
    assert_eq!(t.accuracy.len(), 1, "one epoch evaluated");
    t.losses.iter().map(|l| l.1).collect()
}

#[wasm_bindgen_test]
async fn simple_cnn_steps_match_native_cpu() {
    let gpu_losses = tiny_losses(gpu().await).await;
    let cpu_losses = tiny_losses(open_cpu().unwrap()).await;
    assert_eq!(gpu_losses.len(), TINY_STEPS);
    for i in 0..TINY_STEPS {
        let want = NATIVE_CPU_LOSSES[i];
        assert!(
            (cpu_losses[i] - want).abs() <= 1e-5 + 1e-5 * want,
            "wasm CPU {cpu_losses:?} vs native {NATIVE_CPU_LOSSES:?}"
        );
        assert!(
            (gpu_losses[i] - want).abs() <= 2e-4 + 2e-4 * want,
            "WebGPU {gpu_losses:?} vs native CPU {NATIVE_CPU_LOSSES:?}"
        );
    }
}
