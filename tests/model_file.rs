//! Model files (TOML): the committed presets and examples in `models/`, round trips through
//! `to_toml`, parameter naming, and refusals that name the layer, key or kind at fault.

use cnn_gpu::model::{Layer, ModelSpec, Naming, Shape};

fn conv(i: usize, o: usize, k: usize, padding: usize) -> Layer {
    Layer::Conv2d {
        in_channels: i,
        out_channels: o,
        kernel_h: k,
        kernel_w: k,
        stride: 1,
        padding,
    }
}

const POOL: Layer = Layer::MaxPool2d {
    kernel: 2,
    stride: 2,
};

fn linear(i: usize, o: usize) -> Layer {
    Layer::Linear {
        in_features: i,
        out_features: o,
    }
}

fn names(spec: &ModelSpec) -> Vec<(String, Vec<usize>)> {
    spec.param_shapes().unwrap()
}

fn file(name: &str) -> ModelSpec {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("models")
        .join(name);
    ModelSpec::from_file(&path).unwrap()
}

/// The simple-cnn preset (models/simple-cnn.toml) is the tutorial's network, layer for layer,
/// with its parameter names and 220,234 parameters.
#[test]
fn simple_cnn_preset_is_the_tutorial_network() {
    let spec = ModelSpec::simple_cnn();
    assert_eq!(spec, file("simple-cnn.toml"));
    assert_eq!(ModelSpec::preset("simple-cnn").unwrap(), spec);
    assert_eq!(spec.input, (1, 28, 28));
    assert_eq!(spec.naming, Naming::Numbered);
    assert_eq!(
        spec.layers,
        vec![
            conv(1, 32, 3, 1),
            Layer::Relu,
            POOL,
            conv(32, 64, 3, 1),
            Layer::Relu,
            POOL,
            Layer::Flatten,
            linear(3136, 64),
            Layer::Relu,
            linear(64, 10),
        ]
    );
    let n: Vec<String> = names(&spec).into_iter().map(|(n, _)| n).collect();
    assert_eq!(
        n,
        [
            "conv1.weight",
            "conv1.bias",
            "conv2.weight",
            "conv2.bias",
            "fc1.weight",
            "fc1.bias",
            "fc2.weight",
            "fc2.bias"
        ]
    );
    assert_eq!(spec.num_params().unwrap(), 220_234);
}

/// LeNet-5 for 28×28 MNIST: 28×28 → conv 5×5 pad 2 → 6×28×28 → pool → 6×14×14 → conv 5×5 →
/// 16×10×10 → pool → 16×5×5 = 400 → 120 → 84 → 10. Parameters: 6·25 + 6 = 156,
/// 16·6·25 + 16 = 2,416, 400·120 + 120 = 48,120, 120·84 + 84 = 10,164, 84·10 + 10 = 850;
/// 61,706 in all.
#[test]
fn lenet5_preset_has_lenets_shapes_and_names() {
    let spec = ModelSpec::lenet5();
    assert_eq!(spec, file("lenet5.toml"));
    assert_eq!(
        spec.layers,
        vec![
            conv(1, 6, 5, 2),
            Layer::Relu,
            POOL,
            conv(6, 16, 5, 0),
            Layer::Relu,
            POOL,
            Layer::Flatten,
            linear(400, 120),
            Layer::Relu,
            linear(120, 84),
            Layer::Relu,
            linear(84, 10),
        ]
    );
    let shapes = spec.infer_shapes().unwrap();
    let map = |c, h| Shape::Map { c, h, w: h };
    assert_eq!(
        shapes,
        vec![
            map(1, 28),
            map(6, 28),
            map(6, 28),
            map(6, 14),
            map(16, 10),
            map(16, 10),
            map(16, 5),
            Shape::Flat(400),
            Shape::Flat(120),
            Shape::Flat(120),
            Shape::Flat(84),
            Shape::Flat(84),
            Shape::Flat(10),
        ]
    );
    assert_eq!(
        names(&spec),
        vec![
            ("conv1.weight".to_string(), vec![6, 1, 5, 5]),
            ("conv1.bias".to_string(), vec![6]),
            ("conv2.weight".to_string(), vec![16, 6, 5, 5]),
            ("conv2.bias".to_string(), vec![16]),
            ("fc1.weight".to_string(), vec![120, 400]),
            ("fc1.bias".to_string(), vec![120]),
            ("fc2.weight".to_string(), vec![84, 120]),
            ("fc2.bias".to_string(), vec![84]),
            ("fc3.weight".to_string(), vec![10, 84]),
            ("fc3.bias".to_string(), vec![10]),
        ]
    );
    assert_eq!(spec.num_params().unwrap(), 61_706);
}

/// models/bn-cnn.toml: nn.Sequential names (`layers.<i>`), batch-norm weights 1 and biases 0
/// at initialisation, and its three batch norms' buffers.
#[test]
fn bn_cnn_example_uses_sequential_names() {
    let spec = file("bn-cnn.toml");
    assert_eq!(spec.naming, Naming::Sequential);
    assert_eq!(spec.layers[1], Layer::BatchNorm2d { features: 16 });
    assert_eq!(spec.layers[10], Layer::BatchNorm1d { features: 128 });
    assert_eq!(spec.layers[12], Layer::Dropout { p: 0.5 });
    let n = names(&spec);
    assert_eq!(n[0], ("layers.0.weight".to_string(), vec![16, 1, 3, 3]));
    assert_eq!(n[2], ("layers.1.weight".to_string(), vec![16]));
    assert_eq!(n[3], ("layers.1.bias".to_string(), vec![16]));
    assert_eq!(n.last().unwrap().0, "layers.13.bias");
    assert_eq!(
        spec.buffer_names(),
        vec![
            ("layers.1".to_string(), 16),
            ("layers.5".to_string(), 32),
            ("layers.10".to_string(), 128)
        ]
    );
    let init = spec.init_params(0).unwrap();
    let bn_w = init.iter().find(|t| t.name == "layers.5.weight").unwrap();
    let bn_b = init.iter().find(|t| t.name == "layers.5.bias").unwrap();
    assert!(bn_w.data.iter().all(|&v| v == 1.0) && bn_b.data.iter().all(|&v| v == 0.0));
    // Batch norms draw nothing: the first convolution's weights are those of a model without
    // them.
    let plain = ModelSpec::from_toml(
        "[[layer]]\nkind = \"conv2d\"\nin_channels = 1\nout_channels = 16\nkernel = 3\npadding = 1\n\
         [[layer]]\nkind = \"flatten\"\n",
    )
    .unwrap();
    assert_eq!(plain.init_params(0).unwrap()[0].data, init[0].data);
}

/// The fashion-cnn preset is models/fashion-cnn.toml: batch norm after each convolution and
/// the first linear layer, dropout before and after it, sequential names, 422,090 parameters
/// (32·9 + 32 + 2·32 + 64·288 + 64 + 2·64 + 128·3136 + 128 + 2·128 + 10·128 + 10).
#[test]
fn fashion_cnn_preset_is_its_file() {
    let spec = ModelSpec::preset("fashion-cnn").unwrap();
    assert_eq!(spec, file("fashion-cnn.toml"));
    assert_eq!(spec.naming, Naming::Sequential);
    assert_eq!(spec.layers[9], Layer::Dropout { p: 0.25 });
    assert_eq!(spec.layers[11], Layer::BatchNorm1d { features: 128 });
    assert_eq!(spec.layers[13], Layer::Dropout { p: 0.5 });
    assert_eq!(spec.infer_shapes().unwrap().last(), Some(&Shape::Flat(10)));
    assert_eq!(
        spec.buffer_names(),
        vec![
            ("layers.1".to_string(), 32),
            ("layers.5".to_string(), 64),
            ("layers.11".to_string(), 128)
        ]
    );
    assert_eq!(spec.num_params().unwrap(), 422_090);
}

/// `to_toml` writes what `from_toml` reads back, for the files and for every layer kind
/// (a rectangular kernel, stride, average pooling, dropout p 0.3, BatchNorm1d).
#[test]
fn to_toml_round_trips() {
    for spec in [
        ModelSpec::simple_cnn(),
        ModelSpec::lenet5(),
        ModelSpec::fashion_cnn(),
        file("bn-cnn.toml"),
    ] {
        assert_eq!(ModelSpec::from_toml(&spec.to_toml()).unwrap(), spec);
    }
    let spec = ModelSpec {
        input: (3, 9, 10),
        naming: Naming::Sequential,
        layers: vec![
            Layer::Conv2d {
                in_channels: 3,
                out_channels: 4,
                kernel_h: 3,
                kernel_w: 2,
                stride: 2,
                padding: 1,
            },
            Layer::AvgPool2d {
                kernel: 2,
                stride: 1,
            },
            Layer::Dropout { p: 0.3 },
            Layer::Flatten,
            linear(4 * 4 * 5, 6),
            Layer::BatchNorm1d { features: 6 },
        ],
    };
    spec.infer_shapes().unwrap();
    assert_eq!(ModelSpec::from_toml(&spec.to_toml()).unwrap(), spec);
}

fn refusal(text: &str) -> String {
    match ModelSpec::from_toml(text) {
        Err(cnn_gpu::Error::InvalidParams(msg)) => {
            assert!(!msg.contains('\n'), "one line: {msg}");
            msg
        }
        other => panic!("expected InvalidParams, got {other:?}"),
    }
}

/// Unknown keys and kinds are refused by name with their line and layer; a layer that does not
/// fit its input is named by index and kind with the reason.
#[test]
fn bad_files_are_refused_naming_the_problem() {
    let msg = refusal(
        "[[layer]]\nkind = \"relu\"\n[[layer]]\nkind = \"conv2d\"\nin_channels = 1\n\
         out_channels = 2\nkernel = 3\nstrides = 2\n",
    );
    assert!(
        msg.contains("unknown field `strides`") && msg.contains("line 3, layer 1, conv2d"),
        "{msg}"
    );
    let msg = refusal("[[layer]]\nkind = \"conv3d\"\n");
    assert!(
        msg.contains("layer 0, conv3d: unknown variant `conv3d`"),
        "{msg}"
    );
    let msg = refusal("inputs = [1, 28, 28]\n[[layer]]\nkind = \"flatten\"\n");
    assert!(
        msg.contains("unknown field `inputs`") && msg.contains("line 1"),
        "{msg}"
    );
    let msg = refusal("[[layer]]\nkind = \"relu\"\nslope = 0.1\n");
    assert!(msg.contains("slope"), "{msg}");
    let msg = refusal(
        "input = [1, 12, 12]\n[[layer]]\nkind = \"flatten\"\n\
         [[layer]]\nkind = \"linear\"\nin_features = 100\nout_features = 10\n",
    );
    assert!(
        msg.contains("layer 1 (Linear(100→10))") && msg.contains("got 144"),
        "{msg}"
    );
    let msg = refusal(
        "[[layer]]\nkind = \"flatten\"\n[[layer]]\nkind = \"batchnorm2d\"\nnum_features = 784\n",
    );
    assert!(msg.contains("layer 1 (BatchNorm2d(784))"), "{msg}");
    let msg = refusal(
        "[[layer]]\nkind = \"dropout\"\np = 1.0\n[[layer]]\nkind = \"flatten\"\n\
         [[layer]]\nkind = \"linear\"\nin_features = 784\nout_features = 10\n",
    );
    assert!(
        msg.contains("layer 0 (Dropout") && msg.contains("[0, 1)"),
        "{msg}"
    );
    assert!(refusal("input = [1, 28, 28]\n").contains("no layers"));
}

/// Names quoted from the file keep the error on one line, whatever TOML's escapes put in them:
/// the crash `cargo fuzz run model_file` found (a kind holding `\n`), and a key holding one.
#[test]
fn names_with_control_characters_stay_on_one_line() {
    let found = include_str!("fixtures/fuzz/model_file-newline-in-kind.toml");
    let msg = refusal(found);
    assert!(
        msg.starts_with("line 3, layer 0, mkind = ") && msg.contains(r"\near"),
        "{msg}"
    );
    let msg = refusal("[[layer]]\nkind = \"relu\"\n\"a\\nb\\tc\" = 1\n");
    assert!(msg.contains(r"a\nb\tc"), "{msg}");
}
