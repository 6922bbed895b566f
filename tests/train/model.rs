//! The model on its own: shape inference and the SimpleCNN preset, seeded initialisation,
//! parameters uploaded and read back, layer-naming shape errors, a whole-model gradient check
//! against finite differences, and the fused ReLU + max-pool against the unfused pair.

use cnn_gpu::backend::Backend;
use cnn_gpu::model::{Layer, Model, ModelSpec, NamedTensor, Naming, Shape, Workspace};
use cnn_gpu::Error;

use crate::backend_test;
use crate::common::{self, *};
use crate::{every_layer_spec, fill_batch, loss_now, mlp_spec};

// ---- (c) the SimpleCNN preset and initialisation -------------------------------------------

#[test]
fn simple_cnn_shapes_and_parameter_count() {
    let spec = ModelSpec::simple_cnn();
    let shapes = spec.infer_shapes().unwrap();
    let map = |c, h, w| Shape::Map { c, h, w };
    assert_eq!(
        shapes,
        vec![
            map(1, 28, 28),
            map(32, 28, 28),
            map(32, 28, 28),
            map(32, 14, 14),
            map(64, 14, 14),
            map(64, 14, 14),
            map(64, 7, 7),
            Shape::Flat(3136),
            Shape::Flat(64),
            Shape::Flat(64),
            Shape::Flat(10),
        ]
    );
    let params = spec.param_shapes().unwrap();
    let expected: Vec<(String, Vec<usize>)> = vec![
        ("conv1.weight".into(), vec![32, 1, 3, 3]),
        ("conv1.bias".into(), vec![32]),
        ("conv2.weight".into(), vec![64, 32, 3, 3]),
        ("conv2.bias".into(), vec![64]),
        ("fc1.weight".into(), vec![64, 3136]),
        ("fc1.bias".into(), vec![64]),
        ("fc2.weight".into(), vec![10, 64]),
        ("fc2.bias".into(), vec![10]),
    ];
    assert_eq!(params, expected);
    // conv1 32·1·9+32, conv2 64·32·9+64, fc1 64·3136+64, fc2 10·64+10.
    let count = (32 * 9 + 32) + (64 * 32 * 9 + 64) + (64 * 3136 + 64) + (10 * 64 + 10);
    assert_eq!(count, 220_234);
    assert_eq!(spec.num_params().unwrap(), count);
    assert_eq!(ModelSpec::default(), spec);
}

#[test]
fn init_is_bounded_by_fan_in_and_seeded() {
    let spec = ModelSpec::simple_cnn();
    let init = spec.init_params(0).unwrap();
    let fan_in = [9, 9, 288, 288, 3136, 3136, 64, 64];
    assert_eq!(init.len(), fan_in.len());
    for (t, &fan) in init.iter().zip(&fan_in) {
        let bound = 1.0 / (fan as f32).sqrt();
        let max = t.data.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!(
            max <= bound,
            "{}: |value| {max} exceeds 1/√{fan} = {bound}",
            t.name
        );
        // Uniform over the whole range: the extremes come close to the bound, the mean to 0.
        assert!(max > 0.8 * bound, "{}: max |value| {max} ≪ {bound}", t.name);
        let mean = t.data.iter().map(|&v| v as f64).sum::<f64>() / t.data.len() as f64;
        assert!(
            mean.abs() < 0.35 * bound as f64,
            "{}: mean {mean} is far from 0",
            t.name
        );
    }
    assert_eq!(spec.init_params(0).unwrap(), init, "same seed, same values");
    assert_ne!(
        spec.init_params(1).unwrap()[0].data,
        init[0].data,
        "seeds differ"
    );
}

fn uploaded_params_read_back<B: Backend>(b: &B) {
    let spec = every_layer_spec();
    let init = spec.init_params(7).unwrap();
    let mut model = Model::new(b, spec, 7).unwrap();
    assert_eq!(model.read_params(b).unwrap(), init);

    // set_params: a subset by name, then errors that change nothing.
    let mut t = init[2].clone();
    t.data.iter_mut().for_each(|v| *v = 0.25);
    model.set_params(b, std::slice::from_ref(&t)).unwrap();
    let back = model.read_params(b).unwrap();
    assert_eq!(back[2], t);
    assert_eq!(back[3], init[3]);

    let unknown = NamedTensor {
        name: "conv9.weight".into(),
        ..t.clone()
    };
    let short = NamedTensor {
        data: vec![0.0; 3],
        ..init[0].clone()
    };
    for bad in [unknown, short] {
        let err = model
            .set_params(b, &[init[0].clone(), bad.clone()])
            .unwrap_err();
        assert!(matches!(err, Error::InvalidParams(_)), "{err}");
        assert!(err.to_string().contains(&bad.name), "{err}");
    }
    assert_eq!(model.read_params(b).unwrap()[0], init[0], "nothing written");
}
backend_test!(uploaded_params_read_back_t, uploaded_params_read_back);

#[test]
fn shape_errors_name_the_layer() {
    let mut spec = ModelSpec::simple_cnn();
    spec.layers.remove(6); // the Flatten
    let err = spec.infer_shapes().unwrap_err().to_string();
    assert!(
        err.contains("layer 6 (Linear(3136→64))") && err.contains("Flatten"),
        "{err}"
    );

    let mut spec = ModelSpec::simple_cnn();
    spec.input = (3, 28, 28);
    let err = spec.infer_shapes().unwrap_err().to_string();
    assert!(
        err.contains("layer 0 (Conv2d") && err.contains("3"),
        "{err}"
    );

    let mut spec = ModelSpec::simple_cnn();
    spec.input = (1, 32, 32); // 64·8·8 ≠ 3136 features
    let err = spec.infer_shapes().unwrap_err().to_string();
    assert!(err.contains("layer 7") && err.contains("4096"), "{err}");

    let spec = ModelSpec {
        naming: Naming::Numbered,
        input: (1, 2, 2),
        layers: vec![Layer::MaxPool2d {
            kernel: 3,
            stride: 1,
        }],
    };
    let err = spec.infer_shapes().unwrap_err().to_string();
    assert!(err.contains("layer 0 (MaxPool2d"), "{err}");

    let spec = ModelSpec {
        naming: Naming::Numbered,
        input: (1, 2, 2),
        layers: vec![Layer::Flatten, Layer::Relu],
    };
    assert!(spec.infer_shapes().is_err(), "no parameters at all");
}

// ---- (b) whole-model gradient check ----------------------------------------------------------

/// The model's backward (every parameter gradient) against central differences of the loss,
/// at up to 48 entries of every tensor.
fn model_gradients_match_finite_differences<B: Backend>(b: &B) {
    for (what, spec, batch) in [
        ("every-layer model", every_layer_spec(), 3),
        ("MLP", mlp_spec(), 2),
    ] {
        let mut model = Model::new(b, spec.clone(), 11).unwrap();
        let input_len = model.input_len();
        let classes = model.classes() as u32;
        let mut ws = Workspace::new(b, &model, batch).unwrap();
        let x = rand_vec(5, batch * input_len, -1.0, 1.0);
        let y: Vec<u32> = (0..batch as u32).map(|i| (i * 2 + 1) % classes).collect();
        fill_batch(b, &mut ws, &x, &y);
        let mut loss_sum = b.zeros(1, "loss_sum").unwrap();

        loss_now(b, &model, &mut ws, &mut loss_sum);
        model.backward(b, &mut ws).unwrap();
        let grads = model.read_grads(b).unwrap();
        let params = model.read_params(b).unwrap();
        for (p, g) in params.iter().zip(&grads) {
            assert_eq!(p.name, g.name);
            assert!(
                g.data.iter().any(|&v| v != 0.0),
                "{what}: {} has an all-zero gradient",
                g.name
            );
            check_gradient(
                &format!("{what}: {}", p.name),
                &p.data,
                &g.data,
                1e-3,
                1e-3,
                2e-2,
                |v| {
                    let t = NamedTensor {
                        data: v.to_vec(),
                        ..p.clone()
                    };
                    model.set_params(b, &[t]).unwrap();
                    loss_now(b, &model, &mut ws, &mut loss_sum)
                },
            );
            model.set_params(b, std::slice::from_ref(p)).unwrap();
        }
    }
}
backend_test!(
    model_gradients_match_finite_differences_t,
    model_gradients_match_finite_differences
);

/// Training runs a ReLU followed by a max-pool as one fused op; a dropout of p = 0 between them
/// (an exact copy) keeps them apart. Both models must give the same loss and every parameter
/// gradient bit for bit, after a training forward pass and after an evaluation one.
fn fused_relu_pool_changes_nothing<B: Backend>(b: &B) {
    let fused = ModelSpec::simple_cnn();
    let mut apart = fused.clone();
    let mut layers = Vec::new();
    for (i, layer) in fused.layers.iter().enumerate() {
        layers.push(*layer);
        if *layer == Layer::Relu && matches!(fused.layers[i + 1], Layer::MaxPool2d { .. }) {
            layers.push(Layer::Dropout { p: 0.0 });
        }
    }
    assert_eq!(
        layers.len(),
        fused.layers.len() + 2,
        "SimpleCNN has two ReLU + max-pool pairs"
    );
    apart.layers = layers;
    let batch = 3;
    let x = rand_vec(21, batch * 784, -1.0, 1.0);
    let y = [3u32, 0, 9];
    let run = |spec: ModelSpec, train: bool| {
        let mut model = Model::new(b, spec, 5).unwrap();
        let mut ws = Workspace::new(b, &model, batch).unwrap();
        fill_batch(b, &mut ws, &x, &y);
        let mut loss_sum = b.zeros(1, "loss_sum").unwrap();
        if train {
            model.forward_train(b, &mut ws).unwrap();
        } else {
            model.forward(b, &mut ws).unwrap();
        }
        model.loss(b, &mut ws, &mut loss_sum).unwrap();
        model.backward(b, &mut ws).unwrap();
        let loss = b.read_f32(&loss_sum).unwrap();
        (loss, model.read_grads(b).unwrap())
    };
    for train in [true, false] {
        let (loss_f, grads_f) = run(fused.clone(), train);
        let (loss_a, grads_a) = run(apart.clone(), train);
        assert_close(&loss_f, &loss_a, 0.0, 0.0, "loss");
        assert_eq!(grads_f.len(), 8);
        for (f, a) in grads_f.iter().zip(&grads_a) {
            assert_eq!(f.name, a.name);
            assert!(f.data.iter().any(|&v| v != 0.0), "{} is all zero", f.name);
            let what = format!("{} (training forward: {train})", f.name);
            assert_close(&f.data, &a.data, 0.0, 0.0, &what);
        }
    }
}
backend_test!(
    fused_relu_pool_changes_nothing_t,
    fused_relu_pool_changes_nothing
);
