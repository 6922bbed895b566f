//! Batch-norm buffers in checkpoints: PyTorch's running statistics and count round-trip with
//! the model's TOML description, and bad buffers are refused naming the tensor.

use std::path::Path;

use cnn_gpu::backend::Backend;
use cnn_gpu::checkpoint;
use cnn_gpu::model::{Model, ModelSpec, Workspace};
use cnn_gpu::Error;
use safetensors::tensor::{Dtype, TensorView};

use crate::backend_test;
use crate::common::{self, *};
use crate::logits;

/// models/bn-cnn.toml: batch norms, dropout, nn.Sequential names.
fn bn_cnn() -> ModelSpec {
    ModelSpec::from_file(&Path::new(env!("CARGO_MANIFEST_DIR")).join("models/bn-cnn.toml")).unwrap()
}

/// A batch-norm model's checkpoint holds PyTorch's buffers (`<name>.running_mean` and
/// `.running_var` F32 [features], `.num_batches_tracked` an I64 scalar), its TOML description
/// as `model` metadata, and loads back with the same running statistics, count and evaluation
/// logits; the same file is refused by SimpleCNN, naming both architectures.
fn batch_norm_buffers_round_trip<B: Backend>(b: &B) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bn.safetensors");
    let spec = bn_cnn();
    let mut model = Model::new(b, spec.clone(), 3).unwrap();
    // Two training steps move the running statistics and count two batches.
    let mut ws = Workspace::new(b, &model, 4).unwrap();
    let mut loss = b.zeros(1, "loss").unwrap();
    let optim = cnn_gpu::optim::OptimConfig::default();
    let run = cnn_gpu::optim::RunLength {
        steps_per_epoch: 2,
        total_steps: 2,
    };
    let words = optim.scalars(0.01, 1, run).words();
    let mut scalars = b.upload_f32(&words, "step scalars").unwrap();
    for step in 0..2 {
        let (x, y) = ws.input_and_labels_mut();
        b.write_f32(x, &rand_vec(step, 4 * 784, -1.0, 1.0)).unwrap();
        b.write_u32(y, &[1, 2, 3, 4]).unwrap();
        model
            .train_step(b, &mut ws, &mut loss, &optim, &mut scalars)
            .unwrap();
    }
    checkpoint::save_model(b, &model, &path, false, None).unwrap();

    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let tracked = st.tensor("layers.5.num_batches_tracked").unwrap();
    assert_eq!(tracked.dtype(), Dtype::I64);
    assert!(tracked.shape().is_empty(), "a scalar, as PyTorch writes it");
    assert_eq!(i64::from_le_bytes(tracked.data().try_into().unwrap()), 2);
    let mean = st.tensor("layers.10.running_mean").unwrap();
    assert_eq!((mean.dtype(), mean.shape()), (Dtype::F32, &[128usize][..]));
    assert_eq!(checkpoint::model_of(&path).unwrap(), Some(spec.clone()));

    let (loaded, ckpt) = checkpoint::load_model(b, spec, &path).unwrap();
    let saved = model.read_norm_buffers(b).unwrap();
    assert_eq!(ckpt.norms, saved);
    assert_eq!(loaded.read_norm_buffers(b).unwrap(), saved);
    assert!(saved.iter().all(|n| n.num_batches_tracked == 2));
    assert!(saved[0].running_var.iter().any(|&v| v != 1.0));
    assert_eq!(logits(b, &loaded), logits(b, &model));

    match checkpoint::load(&path, &ModelSpec::simple_cnn()) {
        Err(Error::Data { message, .. }) => {
            assert!(message.contains("another architecture"), "{message}");
            assert!(message.contains("BatchNorm2d(16)"), "{message}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
backend_test!(batch_norm_round_trip, batch_norm_buffers_round_trip);

/// A num_batches_tracked of another dtype (F32) is refused naming the tensor and what PyTorch
/// writes; a missing running_var is refused naming it.
#[test]
fn bad_batch_norm_buffers_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = bn_cnn();
    let path = dir.path().join("bn.safetensors");
    let init = spec.init_params(0).unwrap();
    checkpoint::save(&path, &spec, &init, Default::default(), None).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    type Tensor = (Dtype, Vec<usize>, Vec<u8>);
    let rewrite = |change: &dyn Fn(&str) -> Option<Tensor>| {
        let mut out: Vec<(String, Tensor)> = Vec::new();
        for (name, view) in st.tensors() {
            let t = (view.dtype(), view.shape().to_vec(), view.data().to_vec());
            match change(&name) {
                Some(new) if !new.2.is_empty() => out.push((name, new)),
                Some(_) => {}
                None => out.push((name, t)),
            }
        }
        let views: Vec<(String, TensorView)> = out
            .iter()
            .map(|(n, (d, s, b))| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
            .collect();
        let p = dir.path().join("bad.safetensors");
        std::fs::write(&p, safetensors::serialize(views, None).unwrap()).unwrap();
        match checkpoint::load(&p, &spec) {
            Err(Error::Data { message, .. }) => message,
            other => panic!("expected a refusal, got {other:?}"),
        }
    };
    let msg = rewrite(&|n| {
        (n == "layers.1.num_batches_tracked").then(|| (Dtype::F32, vec![], vec![0; 4]))
    });
    assert!(
        msg.contains("layers.1.num_batches_tracked") && msg.contains("I64 scalar"),
        "{msg}"
    );
    let msg = rewrite(&|n| (n == "layers.5.running_var").then(|| (Dtype::F32, vec![], vec![])));
    assert!(
        msg.contains("missing batch-norm tensor `layers.5.running_var`"),
        "{msg}"
    );
}
