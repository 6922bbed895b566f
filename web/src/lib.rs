//! cnn-gpu in a browser: the library core behind a wasm-bindgen surface for the page in
//! `web/www`. [`App`] holds one backend — WebGPU (the same WGSL kernels as native) or, when the
//! browser has no adapter, the CPU backend on the page's one thread — and every method that reads
//! the device back returns a promise. The page calls one method at a time and schedules
//! [`App::tick`] from its event loop, so training never blocks it. See docs/web.md.

pub mod engine;
pub mod fixture;

use cnn_gpu::backend::cpu::CpuBackend;
use cnn_gpu::backend::gpu::{GpuBackend, GpuOptions};
use cnn_gpu::matrix::{self, Matrix, PoolKind};
use wasm_bindgen::prelude::*;

pub use engine::{parse_pair, Engine, Settings, Tick};

fn js_err(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

fn json<T: serde::Serialize>(v: &T) -> Result<JsValue, JsValue> {
    serde_json::to_string(v)
        .map(|s| JsValue::from_str(&s))
        .map_err(js_err)
}

enum Either {
    Gpu(Box<Engine<GpuBackend>>),
    Cpu(Box<Engine<CpuBackend>>),
}

/// Runs `$body` with `$e` bound to the engine, whichever backend it has.
macro_rules! with_engine {
    ($self:expr, $e:ident => $body:expr) => {
        match &mut $self.engine {
            Either::Gpu($e) => $body,
            Either::Cpu($e) => $body,
        }
    };
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = console, js_name = error)]
    fn console_error(s: &str);
}

/// Sends panics to the console with their message (wasm otherwise shows only "unreachable").
fn panic_to_console() {
    std::panic::set_hook(Box::new(|info| console_error(&info.to_string())));
}

/// The page's model, data and run.
#[wasm_bindgen]
pub struct App {
    engine: Either,
    backend: String,
}

/// Opens the WebGPU backend; the error says why there is none.
pub async fn open_gpu() -> cnn_gpu::Result<GpuBackend> {
    GpuBackend::new_async(&GpuOptions::default()).await
}

/// The CPU backend on the page's one thread.
pub fn open_cpu() -> cnn_gpu::Result<CpuBackend> {
    CpuBackend::new(Some(1))
}

#[wasm_bindgen]
impl App {
    /// An app on WebGPU; rejects with the reason when the browser offers no adapter.
    pub async fn gpu() -> Result<App, JsValue> {
        panic_to_console();
        let b = open_gpu().await.map_err(js_err)?;
        let backend = format!("WebGPU: {}", b.adapter().describe());
        Ok(App {
            engine: Either::Gpu(Box::new(Engine::new(b))),
            backend,
        })
    }

    /// An app on the CPU backend (single-threaded wasm).
    pub fn cpu() -> Result<App, JsValue> {
        panic_to_console();
        let b = open_cpu().map_err(js_err)?;
        Ok(App {
            engine: Either::Cpu(Box::new(Engine::new(b))),
            backend: "CPU (single-threaded wasm)".into(),
        })
    }

    /// Which backend this app trains on, in words.
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Loads the training and test sets from IDX files (gzipped or not); returns
    /// `{"train": n, "test": m}`.
    pub fn load_data(
        &mut self,
        train_images: &[u8],
        train_labels: &[u8],
        test_images: &[u8],
        test_labels: &[u8],
    ) -> Result<JsValue, JsValue> {
        let train = parse_pair(train_images, train_labels, "training").map_err(js_err)?;
        let test = parse_pair(test_images, test_labels, "test").map_err(js_err)?;
        let (n, m) = (train.len(), test.len());
        with_engine!(self, e => e.load_data(train, test)).map_err(js_err)?;
        json(&serde_json::json!({"train": n, "test": m}))
    }

    /// Starts a fresh run; `settings` is the JSON of [`Settings`].
    pub fn start(&mut self, settings: &str) -> Result<(), JsValue> {
        let s: Settings =
            serde_json::from_str(settings).map_err(|e| js_err(format!("bad settings: {e}")))?;
        with_engine!(self, e => e.start(&s)).map_err(js_err)
    }

    /// Ends the run in progress.
    pub fn stop(&mut self) {
        with_engine!(self, e => e.stop())
    }

    /// Trains for about `budget_ms` and resolves to the JSON of [`Tick`].
    pub async fn tick(&mut self, budget_ms: f64) -> Result<JsValue, JsValue> {
        let t = with_engine!(self, e => e.tick(budget_ms).await).map_err(js_err)?;
        json(&t)
    }

    /// conv1's weights as `{"shape": [...], "data": [...]}`.
    pub async fn conv1(&mut self) -> Result<JsValue, JsValue> {
        let (shape, data) = with_engine!(self, e => e.conv1().await).map_err(js_err)?;
        json(&serde_json::json!({"shape": shape, "data": data}))
    }

    /// The checkpoint's bytes (safetensors, PyTorch names), as `--save` writes them.
    pub async fn checkpoint(&mut self) -> Result<Vec<u8>, JsValue> {
        with_engine!(self, e => e.checkpoint().await).map_err(js_err)
    }

    /// Loads a checkpoint `cnn-gpu train` wrote; resolves to its architecture in words.
    pub fn load_checkpoint(&mut self, bytes: &[u8]) -> Result<String, JsValue> {
        with_engine!(self, e => e.load_checkpoint(bytes)).map_err(js_err)
    }

    /// Test-set accuracy: `{"correct": c, "total": n}`.
    pub async fn evaluate(&mut self) -> Result<JsValue, JsValue> {
        let (c, n) = with_engine!(self, e => e.evaluate().await).map_err(js_err)?;
        json(&serde_json::json!({"correct": c, "total": n}))
    }

    /// The playground: `input` and `kernel` are matrices as `cnn-gpu convolve` takes them (rows
    /// separated by `;` or new lines, or a kernel's name: edge, blur, sharpen, identity);
    /// resolves to `{"rows", "cols", "data"}`, computed by this app's backend (on WebGPU, the
    /// conv2d kernel training uses).
    pub async fn convolve(
        &mut self,
        input: &str,
        kernel: &str,
        stride: usize,
        padding: usize,
    ) -> Result<JsValue, JsValue> {
        let input = Matrix::parse(input).map_err(|e| js_err(format!("input: {e}")))?;
        let kernel = match matrix::named_kernel(kernel.trim()) {
            Some(k) => k,
            None => Matrix::parse(kernel).map_err(|e| js_err(format!("kernel: {e}")))?,
        };
        let out = with_engine!(self, e => e.convolve(&input, &kernel, stride, padding).await)
            .map_err(js_err)?;
        matrix_json(&out)
    }

    /// 2-D max (`kind` "max") or average ("avg") pooling of `input` over `size`×`size` windows
    /// every `stride`, as `cnn-gpu convolve --pool` computes it, on this app's backend.
    pub async fn pool(
        &mut self,
        input: &str,
        kind: &str,
        size: usize,
        stride: usize,
    ) -> Result<JsValue, JsValue> {
        let input = Matrix::parse(input).map_err(|e| js_err(format!("input: {e}")))?;
        let kind = match kind {
            "max" => PoolKind::Max,
            "avg" => PoolKind::Avg,
            k => return Err(js_err(format!("unknown pooling {k:?}: max or avg"))),
        };
        let out =
            with_engine!(self, e => e.pool(&input, kind, size, stride).await).map_err(js_err)?;
        matrix_json(&out)
    }

    /// Classifies a drawn digit (PNG bytes): `{"probs": [10], "pixels": [784]}`.
    pub async fn predict(&mut self, png: &[u8]) -> Result<JsValue, JsValue> {
        let (probs, pixels) = with_engine!(self, e => e.predict(png).await).map_err(js_err)?;
        json(&serde_json::json!({"probs": probs, "pixels": pixels}))
    }
}

fn matrix_json(m: &Matrix) -> Result<JsValue, JsValue> {
    json(&serde_json::json!({"rows": m.rows, "cols": m.cols, "data": m.data}))
}
