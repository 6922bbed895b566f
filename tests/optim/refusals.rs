//! What the optimiser ops refuse on each backend: buffers of the wrong length (an
//! `Error::Shape`) and impossible hyperparameters.

use cnn_gpu::backend::{Adam, Backend, Sgd, StepScalars};

use crate::backend_test;
use crate::common::{self, *};

fn wrong_lengths<B: Backend>(b: &B) {
    let sgd = Sgd {
        len: 4,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
        max_norm: None,
    };
    let adam = Adam {
        len: 4,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
        max_norm: None,
    };
    let s = zeros(b, StepScalars::LEN, "scalars");
    let (g, short) = (zeros(b, 4, "g"), zeros(b, 3, "short"));
    let (mut param, mut v, mut v2, mut bad) = (
        zeros(b, 4, "param"),
        zeros(b, 4, "v"),
        zeros(b, 4, "v2"),
        zeros(b, 5, "bad"),
    );
    assert_shape_error(b.sgd_step(&sgd, &s, &mut bad, &g, &mut v), "long param");
    assert_shape_error(
        b.sgd_step(&sgd, &s, &mut param, &short, &mut v),
        "short grad",
    );
    assert_shape_error(
        b.sgd_step(&sgd, &s, &mut param, &g, &mut bad),
        "long velocity",
    );
    assert_shape_error(
        b.sgd_step(&sgd, &g, &mut param, &g, &mut v),
        "short scalars",
    );
    assert_shape_error(
        b.adam_step(&adam, &s, &mut param, &g, &mut v, &mut bad),
        "long exp_avg_sq",
    );
    assert_shape_error(
        b.adam_step(&adam, &s, &mut param, &short, &mut v, &mut v2),
        "short grad",
    );
    let mut scalars = zeros(b, StepScalars::LEN, "scalars");
    assert_shape_error(b.sum_squares(4, &short, &mut scalars), "short x");
    assert_shape_error(b.sum_squares(4, &g, &mut param), "short scalars");
    let mut record = zeros(b, 1, "record");
    assert_shape_error(b.record_nonfinite(&g, &s, &mut record), "long loss sum");
}
backend_test!(wrong_buffer_length_is_a_shape_error, wrong_lengths);

fn bad_hyperparameters<B: Backend>(b: &B) {
    let s = zeros(b, StepScalars::LEN, "scalars");
    let g = zeros(b, 4, "g");
    let (mut p, mut m, mut v) = (zeros(b, 4, "p"), zeros(b, 4, "m"), zeros(b, 4, "v"));
    let sgd = Sgd {
        len: 4,
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.0,
        max_norm: None,
    };
    let adam = Adam {
        len: 4,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
        max_norm: None,
    };
    for (bad, what) in [
        (
            Sgd {
                momentum: 1.0,
                ..sgd
            },
            "momentum",
        ),
        (
            Sgd {
                weight_decay: -1.0,
                ..sgd
            },
            "weight decay",
        ),
        (
            Sgd {
                max_norm: Some(0.0),
                ..sgd
            },
            "clipping",
        ),
        (
            Sgd {
                momentum: 0.0,
                nesterov: true,
                ..sgd
            },
            "Nesterov",
        ),
    ] {
        let err = b.sgd_step(&bad, &s, &mut p, &g, &mut m).unwrap_err();
        assert!(err.to_string().contains(what), "{what}: {err}");
    }
    for (bad, what) in [
        (Adam { beta1: 1.0, ..adam }, "beta1"),
        (
            Adam {
                beta2: -0.1,
                ..adam
            },
            "beta2",
        ),
        (Adam { eps: 0.0, ..adam }, "eps"),
        (
            Adam {
                max_norm: Some(f32::NAN),
                ..adam
            },
            "clipping",
        ),
    ] {
        let err = b
            .adam_step(&bad, &s, &mut p, &g, &mut m, &mut v)
            .unwrap_err();
        assert!(err.to_string().contains(what), "{what}: {err}");
    }
}
backend_test!(bad_hyperparameters_are_refused, bad_hyperparameters);
