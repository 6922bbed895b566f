//! A tiny, deterministic training run that the browser tests (web/tests/browser.rs) and a
//! native test both make: its losses on the native CPU backend are embedded here, so the
//! browser's WebGPU and CPU runs are checked against native numbers.

use cnn_gpu::data::Dataset;

use crate::engine::Settings;

/// 96 images of 28×28 with a pattern per class (labels 0–9 cycling), so the loss falls.
pub fn tiny_dataset(n: usize) -> Dataset {
    let mut images = Vec::with_capacity(n * 784);
    let mut labels = Vec::with_capacity(n);
    for i in 0..n {
        let class = (i % 10) as u8;
        for r in 0..28usize {
            for c in 0..28usize {
                let stripe = (r / 3 + c / 5 + class as usize).is_multiple_of(10);
                let noise = (i * 131 + r * 29 + c * 17) % 37;
                images.push(if stripe {
                    200 + noise as u8
                } else {
                    noise as u8
                });
            }
        }
        labels.push(class);
    }
    Dataset::new(images, labels, 28, 28).expect("consistent sizes")
}

/// The run: SimpleCNN, SGD, batch 16, lr 0.01, seed 7, a loss line per step.
pub fn tiny_settings() -> Settings {
    Settings {
        preset: "simple-cnn".into(),
        optimizer: "sgd".into(),
        batch_size: 16,
        lr: 0.01,
        epochs: 1,
        seed: 7,
        log_interval: 1,
        train_limit: 0,
    }
}

/// Steps of the run: 96 images in batches of 16.
pub const TINY_STEPS: usize = 6;

/// The run's six losses on the CPU backend. Recorded from the CPU backend in the browser (wasm,
/// one thread); `native_cpu_losses` below checks them against the native CPU backend
/// (`cargo test -p cnn-gpu-web`).
pub const NATIVE_CPU_LOSSES: [f32; TINY_STEPS] = [
    2.285075, 2.2998102, 2.3010843, 2.34325, 2.2760322, 2.2611194,
];

#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests {
    use super::*;
    use crate::engine::Engine;
    use cnn_gpu::backend::cpu::CpuBackend;

    #[test]
    fn native_cpu_losses() {
        let mut e = Engine::new(CpuBackend::new(Some(1)).unwrap());
        e.load_data(tiny_dataset(96), tiny_dataset(20)).unwrap();
        e.start(&tiny_settings()).unwrap();
        let t = pollster_free_block_on(e.tick(1e9)).unwrap();
        let losses: Vec<f32> = t.losses.iter().map(|l| l.1).collect();
        println!("{losses:?}");
        assert_eq!(losses.len(), TINY_STEPS);
        for (got, want) in losses.iter().zip(NATIVE_CPU_LOSSES) {
            assert!((got - want).abs() <= 1e-5 + 1e-5 * want.abs(), "{losses:?}");
        }
        assert!(losses[5] < losses[0], "the loss falls: {losses:?}");
    }

    /// The CPU engine's futures never wait: poll once.
    fn pollster_free_block_on<F: std::future::Future>(f: F) -> F::Output {
        use std::task::{Context, Poll, Waker};
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(v) => v,
            Poll::Pending => panic!("a CPU readback waited"),
        }
    }
}
