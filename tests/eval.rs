//! `evaluate_detailed`: the confusion matrix counts every sample once, its trace agrees with
//! `evaluate`, and the mean loss does not depend on how the set is split into batches.

mod common;

use cnn_gpu::backend::Backend;
use cnn_gpu::data::Dataset;
use cnn_gpu::model::{Model, ModelSpec};
use cnn_gpu::train::{evaluate, evaluate_detailed, ResidentDataset};
use rand::Rng;

fn detailed_matches_evaluate<B: Backend>(b: &B) {
    let n = 23;
    let mut r = common::rng(4);
    let images: Vec<u8> = (0..n * 784).map(|_| r.random()).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i * 7 % 10) as u8).collect();
    let ds = Dataset::new(images, labels.clone(), 28, 28).unwrap();
    let model = Model::new(b, ModelSpec::simple_cnn(), 2).unwrap();
    let data = ResidentDataset::upload(b, &ds, 10, "test").unwrap();

    let whole = evaluate_detailed(b, &model, &data, 100).unwrap();
    let split = evaluate_detailed(b, &model, &data, 5).unwrap(); // 4 batches of 5 and one of 3
    assert_eq!(whole.confusion, split.confusion);
    assert_eq!(whole.eval, evaluate(b, &model, &data, 5).unwrap());
    assert_eq!(whole.confusion.iter().sum::<usize>(), n);
    for c in 0..10 {
        let want = labels.iter().filter(|&&l| l as usize == c).count();
        assert_eq!(whole.class_counts(c).1, want, "class {c}");
    }
    assert!(whole.mean_loss.is_finite() && whole.mean_loss > 0.0);
    assert!(
        (whole.mean_loss - split.mean_loss).abs() < 1e-5,
        "mean loss {} in one batch, {} in five",
        whole.mean_loss,
        split.mean_loss
    );
}
backend_test!(detailed, detailed_matches_evaluate);
