//! The optimisers, gradient clipping, the non-finite-loss record and the learning-rate
//! schedules. Expected values of the PyTorch cases come from `scripts/torch_optim_reference.py`
//! (torch.optim.SGD / Adam / AdamW with foreach=False, torch.nn.utils.clip_grad_norm_ and
//! torch.optim.lr_scheduler), quoted below with the script's case names; every backend case
//! runs on the CPU and on the GPU (`backend_test!`).
//!
//! This file holds the optimiser steps, clipping and the non-finite-loss record; the modules
//! `refusals` (wrong buffer lengths, bad hyperparameters) and `schedules` (the host-side
//! learning-rate schedules and Adam's step scalars) make up the rest of this one test target.

#![allow(clippy::excessive_precision)] // values quoted as the script prints them

#[path = "../common/mod.rs"]
mod common;

mod refusals;
mod schedules;

use cnn_gpu::backend::{clip_scale, Backend, Sgd, StepScalars};
use cnn_gpu::optim::{OptimConfig, Optimizer, RunLength};
use common::*;

/// The script's starting parameters and its three gradients.
const P0: [f32; 4] = [1.0, -2.0, 0.5, 3.0];
const GRADS: [[f32; 4]; 3] = [
    [0.5, 1.0, -1.0, 0.25],
    [1.0, 0.0, 2.0, -0.5],
    [-0.3, 0.7, 0.1, 4.0],
];

/// After each step: the parameters, the first state (momentum_buffer or exp_avg) and, for Adam,
/// exp_avg_sq.
type Expected<'a> = [(&'a [f32; 4], &'a [f32; 4], Option<&'a [f32; 4]>); 3];

/// Three steps of `optimizer` from P0 with GRADS through the trait, as the trainer takes them:
/// the host writes the step's scalars (lr, Adam's bias corrections), the backend adds the
/// gradient's sum of squares when clipping, then updates.
fn three_steps<B: Backend>(
    b: &B,
    optimizer: Optimizer,
    lr: f32,
    clip: Option<f32>,
    want: &Expected,
) {
    let optim = OptimConfig {
        optimizer,
        clip_grad_norm: clip,
        ..OptimConfig::default()
    };
    let run = RunLength {
        steps_per_epoch: 3,
        total_steps: 3,
    };
    let mut param = upload(b, &P0, "param");
    let mut s1 = zeros(b, 4, "state1");
    let mut s2 = zeros(b, 4, "state2");
    let mut scalars = zeros(b, StepScalars::LEN, "scalars");
    for (t, (g, (want_p, want_s1, want_s2))) in GRADS.iter().zip(want).enumerate() {
        b.write_f32(&mut scalars, &optim.scalars(lr, t + 1, run).words())
            .unwrap();
        let grad = upload(b, g, "grad");
        if clip.is_some() {
            b.sum_squares(4, &grad, &mut scalars).unwrap();
        }
        match optimizer {
            Optimizer::Sgd { .. } => {
                let p = optimizer.sgd_params(4, clip).unwrap();
                b.sgd_step(&p, &scalars, &mut param, &grad, &mut s1)
                    .unwrap();
            }
            Optimizer::Adam { .. } => {
                let p = optimizer.adam_params(4, clip).unwrap();
                b.adam_step(&p, &scalars, &mut param, &grad, &mut s1, &mut s2)
                    .unwrap();
            }
        }
        let step = t + 1;
        assert_close(
            &read(b, &param),
            *want_p,
            1e-6,
            1e-5,
            &format!("param, step {step}"),
        );
        assert_close(
            &read(b, &s1),
            *want_s1,
            1e-7,
            1e-5,
            &format!("state, step {step}"),
        );
        if let Some(want_s2) = want_s2 {
            assert_close(
                &read(b, &s2),
                *want_s2,
                1e-9,
                1e-5,
                &format!("exp_avg_sq, step {step}"),
            );
        }
    }
}

/// "sgd lr 0.1 momentum 0.9 weight_decay 0.01".
fn sgd_weight_decay<B: Backend>(b: &B) {
    let opt = Optimizer::Sgd {
        momentum: 0.9,
        nesterov: false,
        weight_decay: 0.01,
    };
    let want: Expected = [
        (
            &[0.949000001, -2.09800005, 0.5995, 2.97199988],
            &[0.50999999, 0.980000019, -0.995000005, 0.280000001],
            None,
        ),
        (
            &[0.802151024, -2.18410206, 0.488450497, 2.99382782],
            &[1.46849, 0.861019969, 1.11049509, -0.218279988],
            None,
        ),
        (
            &[0.699184775, -2.32940984, 0.378017485, 2.61047912],
            &[1.02966249, 1.45307684, 1.10433006, 3.83348632],
            None,
        ),
    ];
    three_steps(b, opt, 0.1, None, &want);
}
backend_test!(sgd_weight_decay_matches_pytorch, sgd_weight_decay);

/// "sgd lr 0.1 momentum 0.9 nesterov weight_decay 0.01".
fn sgd_nesterov<B: Backend>(b: &B) {
    let opt = Optimizer::Sgd {
        momentum: 0.9,
        nesterov: true,
        weight_decay: 0.01,
    };
    let want: Expected = [
        (
            &[0.903100014, -2.1861999, 0.689050019, 2.94679999],
            &[0.50999999, 0.980000019, -0.995000005, 0.280000001],
            None,
        ),
        (
            &[0.670074105, -2.26142621, 0.388335794, 3.01352119],
            &[1.46803105, 0.860137999, 1.11139059, -0.218531996],
            None,
        ),
        (
            &[0.60689044, -2.45980072, 0.278575331, 2.26549673],
            &[1.02792859, 1.45150995, 1.10413492, 3.83345628],
            None,
        ),
    ];
    three_steps(b, opt, 0.1, None, &want);
}
backend_test!(sgd_nesterov_matches_pytorch, sgd_nesterov);

/// "adam lr 0.01 betas (0.9, 0.999) eps 1e-8 weight_decay 0.01" (L2 weight decay).
fn adam<B: Backend>(b: &B) {
    let opt = Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.01,
        decoupled: false,
    };
    let want: Expected = [
        (
            &[0.99000001, -2.00999999, 0.50999999, 2.99000001],
            &[0.050999999, 0.0980000049, -0.0995000005, 0.0280000009],
            Some(&[
                0.000260100031,
                0.000960400037,
                0.000990025001,
                7.84000003e-05,
            ]),
        ),
        (
            &[0.98033762, -2.01654649, 0.50631088, 2.99296641],
            &[0.14689, 0.0861900076, 0.110959999, -0.0218100008],
            Some(&[0.00127973792, 0.000959843688, 0.00500946119, 0.000299315638]),
        ),
        (
            &[0.974691093, -2.02434635, 0.503162622, 2.98694468],
            &[0.103181332, 0.145554468, 0.110370308, 0.383363962],
            Some(&[0.00136267231, 0.0014210589, 0.00501548965, 0.0165393483]),
        ),
    ];
    three_steps(b, opt, 0.01, None, &want);
}
backend_test!(adam_matches_pytorch, adam);

/// "adamw lr 0.01 betas (0.8, 0.99) eps 1e-6 weight_decay 0.1" (decoupled weight decay).
fn adamw<B: Backend>(b: &B) {
    let opt = Optimizer::Adam {
        beta1: 0.8,
        beta2: 0.99,
        eps: 1e-6,
        weight_decay: 0.1,
        decoupled: true,
    };
    let want: Expected = [
        (
            &[0.989000022, -2.00800014, 0.509500027, 2.98699999],
            &[0.100000001, 0.200000003, -0.200000003, 0.0500000007],
            Some(&[0.00249999994, 0.00999999978, 0.00999999978, 0.000624999986]),
        ),
        (
            &[0.97818768, -2.01229334, 0.504780471, 2.98822308],
            &[0.280000001, 0.159999996, 0.24000001, -0.0600000024],
            Some(&[0.0124749998, 0.00989999995, 0.0498999991, 0.00311874994]),
        ),
        (
            &[0.972178042, -2.01808715, 0.50091058, 2.97865891],
            &[0.16399999, 0.267999977, 0.212000012, 0.751999974],
            Some(&[0.0132502504, 0.0147010004, 0.0495010018, 0.163087562]),
        ),
    ];
    three_steps(b, opt, 0.01, None, &want);
}
backend_test!(adamw_matches_pytorch, adamw);

/// "sgd lr 0.1 momentum 0.9, clip_grad_norm_ 1.0": every gradient's norm is above 1, so each
/// is scaled (the momentum buffer holds the clipped gradients).
fn sgd_clipped<B: Backend>(b: &B) {
    let want: Expected = [
        (
            &[0.96712023, -2.06575966, 0.56575954, 2.98356009],
            &[0.328797758, 0.657595515, -0.657595515, 0.164398879],
            None,
        ),
        (
            &[0.893884897, -2.12494326, 0.537656009, 2.99058604],
            &[0.732353568, 0.591835976, 0.281035185, -0.0702587962],
            None,
        ),
        (
            &[0.835338533, -2.19539452, 0.509907722, 2.89870358],
            &[0.585463881, 0.704512358, 0.277483076, 0.918824077],
            None,
        ),
    ];
    three_steps(b, Optimizer::sgd(0.9), 0.1, Some(1.0), &want);
}
backend_test!(sgd_clipped_matches_pytorch, sgd_clipped);

/// "adam lr 0.01 default betas, clip_grad_norm_ 0.5".
fn adam_clipped<B: Backend>(b: &B) {
    let opt = Optimizer::Adam {
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
    };
    let want: Expected = [
        (
            &[0.99000001, -2.00999999, 0.50999999, 2.99000001],
            &[0.0164398886, 0.0328797773, -0.0328797773, 0.00821994431],
            Some(&[
                2.7026992e-05,
                0.000108107968,
                0.000108107968,
                6.75674801e-06,
            ]),
        ),
        (
            &[0.980024874, -2.01670051, 0.508086026, 2.99191403],
            &[0.0366176777, 0.0295917988, 0.0140517587, -0.00351293967],
            Some(&[
                7.46189689e-05,
                0.000107999862,
                0.000298475876,
                1.86547422e-05,
            ]),
        ),
        (
            &[0.973237216, -2.0233283, 0.506463349, 2.98615551],
            &[0.0292731971, 0.0352256186, 0.0138741536, 0.0459412038],
            Some(&[
                7.59005925e-05,
                0.000115275827,
                0.000298328116,
                0.00025974508,
            ]),
        ),
    ];
    three_steps(b, opt, 0.01, Some(0.5), &want);
}
backend_test!(adam_clipped_matches_pytorch, adam_clipped);

/// "clip_grad_norm_ two tensors max_norm 6.5": a = [3, 0], b = [0, 4, 12] have global norm 13
/// (neither alone reaches 6.5·2): both are halved. Plain SGD at lr 1 from zero writes −g·scale
/// into the parameters, so they show the clipped gradients.
fn global_norm_spans_tensors<B: Backend>(b: &B) {
    let mut scalars = upload(b, &StepScalars::sgd(1.0).words(), "scalars");
    let (ga, gb) = (
        upload(b, &[3.0, 0.0], "a.grad"),
        upload(b, &[0.0, 4.0, 12.0], "b.grad"),
    );
    b.sum_squares(2, &ga, &mut scalars).unwrap();
    b.sum_squares(3, &gb, &mut scalars).unwrap();
    assert_close(
        &read(b, &scalars)[3..4],
        &[169.0],
        0.0,
        1e-6,
        "sum of squares",
    );
    let sgd = |len| Sgd {
        len,
        momentum: 0.0,
        nesterov: false,
        weight_decay: 0.0,
        max_norm: Some(6.5),
    };
    let (mut pa, mut va) = (zeros(b, 2, "a"), zeros(b, 2, "va"));
    let (mut pb, mut vb) = (zeros(b, 3, "b"), zeros(b, 3, "vb"));
    b.sgd_step(&sgd(2), &scalars, &mut pa, &ga, &mut va)
        .unwrap();
    b.sgd_step(&sgd(3), &scalars, &mut pb, &gb, &mut vb)
        .unwrap();
    assert_close(
        &read(b, &va),
        &[1.49999988, 0.0],
        0.0,
        1e-6,
        "a.grad clipped",
    );
    assert_close(
        &read(b, &vb),
        &[0.0, 1.99999988, 5.99999952],
        0.0,
        1e-6,
        "b.grad clipped",
    );
    assert_close(&read(b, &pa), &[-1.49999988, 0.0], 0.0, 1e-6, "a");
    // Below the limit nothing changes: scale 1.
    assert_eq!(clip_scale(Some(20.0), 169.0), 1.0);
    assert_eq!(clip_scale(None, 1e30), 1.0);
}
backend_test!(global_norm_spans_tensors_t, global_norm_spans_tensors);

/// A long odd length (the parallel CPU path, a 2-d GPU grid on small limits) against the
/// definition for Nesterov SGD with decay, from a non-zero velocity.
fn large<B: Backend>(b: &B) {
    let len = 70_001;
    let (mu, wd, lr) = (0.9f32, 0.01f32, 0.01f32);
    let p = Sgd {
        len,
        momentum: mu,
        nesterov: true,
        weight_decay: wd,
        max_norm: None,
    };
    let (p0, g, v0) = (
        rand_vec(1, len, -1.0, 1.0),
        rand_vec(2, len, -1.0, 1.0),
        rand_vec(3, len, -1.0, 1.0),
    );
    let scalars = upload(b, &StepScalars::sgd(lr).words(), "scalars");
    let (mut param, mut v) = (upload(b, &p0, "param"), upload(b, &v0, "velocity"));
    b.sgd_step(&p, &scalars, &mut param, &upload(b, &g, "grad"), &mut v)
        .unwrap();
    let d: Vec<f32> = p0.iter().zip(&g).map(|(&p, &g)| g + wd * p).collect();
    let want_v: Vec<f32> = v0.iter().zip(&d).map(|(&v, &d)| mu * v + d).collect();
    let want_p: Vec<f32> = (0..len)
        .map(|i| p0[i] - lr * (d[i] + mu * want_v[i]))
        .collect();
    assert_close(&read(b, &v), &want_v, 1e-6, 1e-6, "velocity, large");
    assert_close(&read(b, &param), &want_p, 1e-6, 1e-6, "param, large");
}
backend_test!(large_random_matches_definition, large);

/// The first non-finite loss sum is recorded with its step and kept; finite ones never are.
fn nonfinite_record<B: Backend>(b: &B) {
    let mut record = zeros(b, 1, "record");
    let at = |t: u32| {
        let s = StepScalars {
            step: t,
            ..StepScalars::sgd(0.1)
        };
        upload(b, &s.words(), "scalars")
    };
    let finite = upload(b, &[f32::MAX], "finite");
    b.record_nonfinite(&finite, &at(3), &mut record).unwrap();
    assert_eq!(
        b.read_u32(&record).unwrap(),
        [0],
        "a finite loss is not recorded"
    );
    b.record_nonfinite(&upload(b, &[f32::INFINITY], "inf"), &at(7), &mut record)
        .unwrap();
    assert_eq!(b.read_u32(&record).unwrap(), [7], "an infinite loss is");
    b.record_nonfinite(&upload(b, &[f32::NAN], "nan"), &at(9), &mut record)
        .unwrap();
    assert_eq!(b.read_u32(&record).unwrap(), [7], "the first one stays");
    let mut fresh = zeros(b, 1, "record");
    b.record_nonfinite(&upload(b, &[-f32::NAN], "nan"), &at(70_000), &mut fresh)
        .unwrap();
    assert_eq!(
        b.read_u32(&fresh).unwrap(),
        [70_000],
        "a NaN loss is recorded"
    );
}
backend_test!(nonfinite_loss_is_recorded_once, nonfinite_record);
