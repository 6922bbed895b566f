//! matmul in its four transpose combinations, bias_add and channel_sum: hand-checked cases,
//! direct loops on random data, finite differences, shape errors.

mod common;

use cnn_gpu::backend::{Backend, Channels, Matmul};
use common::*;

fn matmul<B: Backend>(b: &B, p: &Matmul, a: &[f32], bm: &[f32]) -> Vec<f32> {
    let (a, bm) = (upload(b, a, "a"), upload(b, bm, "b"));
    let mut c = zeros(b, p.m * p.n, "c");
    b.matmul(p, &a, &bm, &mut c).expect("matmul");
    read(b, &c)
}

fn mm(m: usize, k: usize, n: usize, trans_a: bool, trans_b: bool) -> Matmul {
    Matmul {
        m,
        k,
        n,
        trans_a,
        trans_b,
    }
}

/// c = op(a)·op(b) as direct loops in f64.
fn reference_matmul(p: &Matmul, a: &[f32], bm: &[f32]) -> Vec<f32> {
    let at = |i: usize, l: usize| {
        if p.trans_a {
            a[l * p.m + i]
        } else {
            a[i * p.k + l]
        }
    };
    let bt = |l: usize, j: usize| {
        if p.trans_b {
            bm[j * p.k + l]
        } else {
            bm[l * p.n + j]
        }
    };
    let mut c = vec![0.0; p.m * p.n];
    for i in 0..p.m {
        for j in 0..p.n {
            c[i * p.n + j] = (0..p.k)
                .map(|l| at(i, l) as f64 * bt(l, j) as f64)
                .sum::<f64>() as f32;
        }
    }
    c
}

/// A = [[1,2,3],[4,5,6]], B = [[7,8],[9,10],[11,12]]: A·B = [[1·7+2·9+3·11, 1·8+2·10+3·12],
/// [4·7+5·9+6·11, 4·8+5·10+6·12]] = [[58,64],[139,154]]. Each transpose flag reads the same
/// matrices stored transposed (Aᵀ = [[1,4],[2,5],[3,6]], Bᵀ = [[7,9,11],[8,10,12]]), so all
/// four combinations give the same product.
fn hand_product<B: Backend>(b: &B) {
    let a = [1., 2., 3., 4., 5., 6.];
    let bm = [7., 8., 9., 10., 11., 12.];
    let (at, bt) = ([1., 4., 2., 5., 3., 6.], [7., 9., 11., 8., 10., 12.]);
    let want = [58., 64., 139., 154.];
    for (trans_a, trans_b) in [(false, false), (true, false), (false, true), (true, true)] {
        let p = mm(2, 3, 2, trans_a, trans_b);
        let got = matmul(
            b,
            &p,
            if trans_a { &at } else { &a },
            if trans_b { &bt } else { &bm },
        );
        assert_close(
            &got,
            &want,
            0.0,
            0.0,
            &format!("2x3·3x2, trans_a {trans_a}, trans_b {trans_b}"),
        );
    }
}
backend_test!(hand_product_every_transpose, hand_product);

/// Random non-square sizes (m ≠ k ≠ n, none a multiple of 4), each transpose combination,
/// against direct loops; the larger one reaches the multi-threaded GEMM path.
fn products_match_loops<B: Backend>(b: &B) {
    for (s, &(m, k, n)) in [(5, 7, 3), (1, 9, 6), (7, 1, 5), (67, 129, 33)]
        .iter()
        .enumerate()
    {
        for (t, (trans_a, trans_b)) in [(false, false), (true, false), (false, true), (true, true)]
            .into_iter()
            .enumerate()
        {
            let p = mm(m, k, n, trans_a, trans_b);
            let seed = (10 * s + t) as u64;
            let a = rand_vec(seed, m * k, -1.0, 1.0);
            let bm = rand_vec(seed + 500, k * n, -1.0, 1.0);
            let tol = 1e-6 * k as f32;
            assert_close(
                &matmul(b, &p, &a, &bm),
                &reference_matmul(&p, &a, &bm),
                tol,
                tol,
                &format!("{p:?}"),
            );
        }
    }
}
backend_test!(products_match_direct_loops, products_match_loops);

/// Gradients of loss = Σ r·c with c = op(a)·op(b), computed with matmul itself as a linear
/// layer's backward pass would (d op(a) = r·op(b)ᵀ, d op(b) = op(a)ᵀ·r, transposed back to how
/// a and b are stored), against central differences. The loss is linear in a and in b.
fn gradients_match_finite_differences<B: Backend>(b: &B) {
    let (m, k, n) = (4, 5, 3);
    for (t, (ta, tb)) in [(false, false), (true, false), (false, true), (true, true)]
        .into_iter()
        .enumerate()
    {
        let p = mm(m, k, n, ta, tb);
        let t = t as u64;
        let a = rand_vec(40 + t, m * k, -1.0, 1.0);
        let bm = rand_vec(50 + t, k * n, -1.0, 1.0);
        let r = rand_vec(60 + t, m * n, -1.0, 1.0);
        // Stored a is [m,k] (or [k,m] with ta): da = r[m,n]·op(b)ᵀ[n,k], or op(b)[k,n]·rᵀ[n,m].
        let da = if ta {
            matmul(b, &mm(k, n, m, tb, true), &bm, &r)
        } else {
            matmul(b, &mm(m, n, k, false, !tb), &r, &bm)
        };
        // Stored b is [k,n] (or [n,k] with tb): db = op(a)ᵀ[k,m]·r[m,n], or rᵀ[n,m]·op(a)[m,k].
        let db = if tb {
            matmul(b, &mm(n, m, k, true, ta), &r, &a)
        } else {
            matmul(b, &mm(k, m, n, !ta, false), &a, &r)
        };
        let what = format!("{p:?}");
        check_gradient(&format!("da of {what}"), &a, &da, 0.05, 1e-3, 1e-3, |a| {
            dot(&r, &matmul(b, &p, a, &bm))
        });
        check_gradient(&format!("db of {what}"), &bm, &db, 0.05, 1e-3, 1e-3, |bm| {
            dot(&r, &matmul(b, &p, &a, bm))
        });
    }
}
backend_test!(
    gradients_match_finite_differences,
    gradients_match_finite_differences
);

fn bias_add<B: Backend>(b: &B, p: &Channels, bias: &[f32], x: &[f32]) -> Vec<f32> {
    let bias = upload(b, bias, "bias");
    let mut x = upload(b, x, "x");
    b.bias_add(p, &bias, &mut x).expect("bias_add");
    read(b, &x)
}

fn channel_sum<B: Backend>(b: &B, p: &Channels, x: &[f32]) -> Vec<f32> {
    let x = upload(b, x, "x");
    let mut out = zeros(b, p.channels, "out");
    b.channel_sum(p, &x, &mut out).expect("channel_sum");
    read(b, &out)
}

/// x of shape [outer 2, channels 3, inner 2] = 0..12 and bias [10, 20, 30]: element
/// (o, c, i) = 6o + 2c + i gets bias[c] added. channel_sum sums channel c over o and i:
/// c = 0: 0+1+6+7 = 14, c = 1: 2+3+8+9 = 22, c = 2: 4+5+10+11 = 30.
fn hand_bias<B: Backend>(b: &B) {
    let p = Channels {
        outer: 2,
        channels: 3,
        inner: 2,
    };
    let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let want = [10., 11., 22., 23., 34., 35., 16., 17., 28., 29., 40., 41.];
    assert_close(
        &bias_add(b, &p, &[10., 20., 30.], &x),
        &want,
        0.0,
        0.0,
        "bias_add",
    );
    assert_close(
        &channel_sum(b, &p, &x),
        &[14., 22., 30.],
        0.0,
        0.0,
        "channel_sum",
    );
    // A linear layer's [rows, features] output: inner = 1.
    let p = Channels {
        outer: 2,
        channels: 3,
        inner: 1,
    };
    assert_close(
        &bias_add(b, &p, &[1., 2., 3.], &[0.; 6]),
        &[1., 2., 3., 1., 2., 3.],
        0.0,
        0.0,
        "bias_add, inner 1",
    );
    assert_close(
        &channel_sum(b, &p, &[1., 2., 3., 4., 5., 6.]),
        &[5., 7., 9.],
        0.0,
        0.0,
        "channel_sum, inner 1",
    );
}
backend_test!(hand_bias_add_and_channel_sum, hand_bias);

/// channel_sum as the gradient of bias_add: with loss = Σ r·bias_add(x, bias), ∂loss/∂bias =
/// channel_sum(r). Also random shapes (one large enough for the parallel paths) against loops.
fn bias_gradient<B: Backend>(b: &B) {
    for (s, p) in [
        Channels {
            outer: 3,
            channels: 5,
            inner: 7,
        },
        Channels {
            outer: 2,
            channels: 4,
            inner: 1,
        },
        Channels {
            outer: 5,
            channels: 3,
            inner: 4001,
        },
    ]
    .iter()
    .enumerate()
    {
        let s = s as u64;
        let x = rand_vec(70 + s, p.len(), -1.0, 1.0);
        let bias = rand_vec(80 + s, p.channels, -1.0, 1.0);
        let r = rand_vec(90 + s, p.len(), -1.0, 1.0);
        let want: Vec<f32> = x
            .iter()
            .enumerate()
            .map(|(i, &v)| v + bias[(i / p.inner) % p.channels])
            .collect();
        assert_close(
            &bias_add(b, p, &bias, &x),
            &want,
            0.0,
            0.0,
            &format!("bias_add {p:?}"),
        );
        let mut sums = vec![0.0f64; p.channels];
        for (i, &v) in r.iter().enumerate() {
            sums[(i / p.inner) % p.channels] += v as f64;
        }
        let sums: Vec<f32> = sums.iter().map(|&v| v as f32).collect();
        let dbias = channel_sum(b, p, &r);
        assert_close(&dbias, &sums, 1e-4, 1e-5, &format!("channel_sum {p:?}"));
        if p.len() < 1000 {
            check_gradient(
                &format!("dbias of {p:?}"),
                &bias,
                &dbias,
                0.05,
                1e-3,
                1e-3,
                |bias| dot(&r, &bias_add(b, p, bias, &x)),
            );
        }
    }
}
backend_test!(channel_sum_is_the_gradient_of_bias_add, bias_gradient);

fn wrong_lengths<B: Backend>(b: &B) {
    let p = mm(2, 3, 4, false, false);
    let (a, bm, short) = (zeros(b, 6, "a"), zeros(b, 12, "b"), zeros(b, 5, "short"));
    let (mut c, mut bad) = (zeros(b, 8, "c"), zeros(b, 9, "bad"));
    assert_shape_error(b.matmul(&p, &short, &bm, &mut c), "matmul, short a");
    assert_shape_error(b.matmul(&p, &a, &short, &mut c), "matmul, short b");
    assert_shape_error(b.matmul(&p, &a, &bm, &mut bad), "matmul, long c");
    let p = Channels {
        outer: 2,
        channels: 3,
        inner: 4,
    };
    let (bias, x) = (zeros(b, 3, "bias"), zeros(b, 24, "x"));
    let (mut xm, mut out, mut bad) = (zeros(b, 24, "x"), zeros(b, 3, "out"), zeros(b, 23, "bad"));
    assert_shape_error(b.bias_add(&p, &short, &mut xm), "bias_add, wrong bias");
    assert_shape_error(b.bias_add(&p, &bias, &mut bad), "bias_add, short x");
    assert_shape_error(b.channel_sum(&p, &short, &mut out), "channel_sum, short x");
    assert_shape_error(b.channel_sum(&p, &x, &mut bad), "channel_sum, wrong out");
}
backend_test!(wrong_buffer_length_is_a_shape_error, wrong_lengths);
