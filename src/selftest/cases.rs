//! The table of cases: asymmetric shapes for every kernel, then grids folded past a lowered
//! workgroup limit.

use super::{Case, Op};
use crate::backend::{BatchNorm, Channels, Conv2d, Dropout, Gather, Matmul, Pool2d, SoftmaxXent};
use crate::optim::Optimizer;

impl Case {
    fn new(op: Op, seed: u64, atol: f32, rtol: f32) -> Case {
        Case {
            op,
            seed,
            atol,
            rtol,
            max_workgroups: None,
            large: false,
            note: "",
        }
    }
    fn folded(self, max: u32) -> Case {
        Case {
            max_workgroups: Some(max),
            ..self
        }
    }
    fn large(self) -> Case {
        Case {
            large: true,
            ..self
        }
    }
    fn note(self, note: &'static str) -> Case {
        Case { note, ..self }
    }
}

/// Every case, family by family (conv2d, matmul, pool2d, elementwise, bias, loss, optim,
/// gather, batch_norm, dropout), then the folded grids.
pub fn cases() -> Vec<Case> {
    let mut all = Vec::new();
    all.extend(conv2d());
    all.extend(matmul());
    all.extend(pool2d());
    for (i, len) in [1usize, 255, 257, 100_003].into_iter().enumerate() {
        all.push(Case::new(Op::Elementwise { len }, i as u64, 0.0, 0.0));
    }
    // Lengths that are not multiples of the storage-binding alignment.
    let lens = [70, 70, 3, 1, 257];
    all.push(Case::new(Op::Packed { lens }, 3, 0.0, 0.0).note("one allocation"));
    // The last two sum in two passes: (7, 33, 300) in 2 slices a channel, (5, 3, 1100) in 5
    // slices of 1100 elements.
    let sums = [
        (1, 1, 1),
        (64, 10, 1),
        (3, 5, 49),
        (7, 33, 300),
        (5, 3, 1100),
    ];
    for (i, (outer, channels, inner)) in sums.into_iter().enumerate() {
        let c = Channels {
            outer,
            channels,
            inner,
        };
        all.push(Case::new(Op::Bias(c), i as u64, 1e-4, 1e-5));
    }
    for (i, (batch, classes)) in [(1, 10), (64, 10), (300, 7), (1000, 10)]
        .into_iter()
        .enumerate()
    {
        let p = SoftmaxXent { batch, classes };
        all.push(Case::new(Op::Loss(p), i as u64, 1e-5, 1e-4));
    }
    all.extend(optim());
    all.extend(gather());
    // BatchNorm2d on odd channels and 7×7 maps; BatchNorm1d (inner 1) at batch 64.
    for (i, (outer, channels, inner)) in [(3, 5, 49), (64, 10, 1)].into_iter().enumerate() {
        let bn = BatchNorm::new(Channels {
            outer,
            channels,
            inner,
        });
        all.push(Case::new(Op::BatchNorm(bn), 1 + i as u64, 1e-4, 1e-4));
    }
    // The same mask on both backends: equal outputs, on a length no multiple of the workgroup.
    let d = Dropout {
        len: 70_001,
        p: 0.45,
        seed: 0x1234_5678,
    };
    all.push(Case::new(Op::Dropout(d), 31, 0.0, 0.0));
    all.extend(folded());
    all
}

fn conv2d() -> Vec<Case> {
    #[rustfmt::skip]
    let shapes = [
        // batch, cin, h, w, cout, kh, kw, stride, pad, note
        (1, 1, 7, 5, 3, 3, 3, 1, 1, ""),
        (3, 3, 9, 6, 5, 3, 3, 2, 0, ""),
        (2, 5, 8, 11, 7, 5, 5, 1, 2, ""),
        (2, 3, 6, 9, 6, 1, 1, 2, 0, ""),
        (1, 2, 10, 7, 3, 2, 3, 2, 1, ""),
        (5, 6, 5, 4, 70, 3, 3, 1, 1, "Cout past one 64-row tile"),
        (3, 7, 13, 10, 9, 3, 3, 1, 1, "partial tiles everywhere"),
        (2, 32, 14, 14, 64, 3, 3, 1, 1, "SimpleCNN's conv2, split-K weight gradient"),
        (1, 1, 300, 250, 40, 3, 3, 1, 1, "586 tiles of 128 columns: vec4's 4×8"),
    ];
    let mut cases = Vec::new();
    for (i, shape) in shapes.into_iter().enumerate() {
        let (batch, cin, in_h, in_w, cout, kh, kw, stride, padding, note) = shape;
        let p = Conv2d {
            batch,
            in_channels: cin,
            in_h,
            in_w,
            out_channels: cout,
            kernel_h: kh,
            kernel_w: kw,
            stride,
            padding,
        };
        cases.push(Case::new(Op::Conv2d(p), 10 * i as u64, 1e-4, 1e-4).note(note));
    }
    cases
}

/// Every operand layout of each (m, k, n) product, the data seeded by `seed` plus its index.
fn matmuls(shapes: &[(usize, usize, usize, &'static str)], seed: u64) -> Vec<Case> {
    let mut cases = Vec::new();
    for (i, &(m, k, n, note)) in shapes.iter().enumerate() {
        for (trans_a, trans_b) in [(false, false), (false, true), (true, false), (true, true)] {
            let p = Matmul {
                m,
                k,
                n,
                trans_a,
                trans_b,
            };
            cases.push(Case::new(Op::Matmul(p), seed + i as u64, 1e-4, 1e-4).note(note));
        }
    }
    cases
}

fn matmul() -> Vec<Case> {
    let mut cases = matmuls(
        &[
            (1, 1, 1, ""),
            (3, 5, 7, ""),
            (65, 17, 130, ""),
            (64, 3136, 10, "fc1's weight gradient"),
            (127, 64, 33, ""),
            // Too few tiles for a long K (1.008 MFLOP): split into 250 slices of 32.
            (9, 8000, 7, "split-K"),
        ],
        0,
    );
    // Products with at least 512 tiles of 128×128 run on 128×128 tiles, 8×8 outputs a thread:
    // M and N not multiples of 128, K below one K-tile of 16 (k = 7) and above it with a
    // remainder (k = 19).
    let big = [(3100, 7, 2950, "big tiles"), (2950, 19, 3000, "big tiles")];
    cases.extend(matmuls(&big, 20).into_iter().map(Case::large));
    cases
}

fn pool2d() -> Vec<Case> {
    #[rustfmt::skip]
    let shapes = [
        // batch, channels, h, w, kernel, stride, note
        (1, 1, 4, 4, 2, 2, ""),
        (3, 5, 9, 7, 2, 2, "odd sizes: the last row and column dropped"),
        (2, 3, 8, 11, 3, 1, "overlapping windows"),
        (2, 3, 10, 7, 3, 2, ""),
        (7, 32, 28, 28, 2, 2, "SimpleCNN's first pool"),
    ];
    shapes
        .into_iter()
        .enumerate()
        .map(|(i, (batch, channels, in_h, in_w, kernel, stride, note))| {
            let p = Pool2d {
                batch,
                channels,
                in_h,
                in_w,
                kernel,
                stride,
            };
            Case::new(Op::Pool2d(p), i as u64, 1e-6, 1e-6).note(note)
        })
        .collect()
}

fn optim() -> Vec<Case> {
    let optimizers = [
        Optimizer::Sgd {
            momentum: 0.9,
            nesterov: true,
            weight_decay: 0.01,
        },
        Optimizer::Adam {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.01,
            decoupled: false,
        },
        Optimizer::Adam {
            beta1: 0.8,
            beta2: 0.99,
            eps: 1e-6,
            weight_decay: 0.1,
            decoupled: true,
        },
    ];
    let mut cases = Vec::new();
    for (i, optimizer) in optimizers.into_iter().enumerate() {
        for len in [1usize, 300, 200_705] {
            let op = Op::Optim { optimizer, len };
            cases.push(Case::new(op, i as u64, 1e-6, 1e-4));
        }
    }
    cases
}

fn gather() -> Vec<Case> {
    // image_len 13 puts image boundaries inside packed words; the output is bit-identical.
    let mut cases: Vec<Case> = [(1, 784, 0, 3), (5, 13, 2, 9), (64, 784, 100, 300)]
        .into_iter()
        .map(|(batch, image_len, offset, items)| {
            let gather = Gather {
                batch,
                image_len,
                offset,
            };
            Case::new(Op::Gather { gather, items }, 0, 0.0, 0.0)
        })
        .collect();
    // Bilinear weights of 0–255 values: a fused multiply-add on the GPU moves the result by a
    // few ulps of 255 before normalising.
    for (rows, cols, seed) in [(28, 28, 1), (9, 13, 2)] {
        cases.push(Case::new(Op::GatherAffine { rows, cols }, seed, 1e-4, 0.0));
    }
    cases
}

/// With at most 3 workgroups per dimension every kernel's grid has to fold: 1-d kernels over
/// y, GEMM column tiles over z. (Real adapters allow 65,535; this reaches the same code on
/// shapes a software adapter runs quickly.)
fn folded() -> Vec<Case> {
    let conv = Conv2d {
        batch: 3,
        in_channels: 2,
        in_h: 12,
        in_w: 11,
        out_channels: 5,
        kernel_h: 3,
        kernel_w: 3,
        stride: 1,
        padding: 1,
    };
    let mm = Matmul {
        m: 5,
        k: 7,
        n: 500,
        trans_a: false,
        trans_b: true,
    };
    // K split over z, as many slices as the limit allows: 3 of 13,344 (the last 13,312).
    let split = Matmul {
        m: 5,
        k: 40000,
        n: 5,
        trans_a: true,
        trans_b: false,
    };
    let pool = Pool2d {
        batch: 3,
        channels: 5,
        in_h: 9,
        in_w: 7,
        kernel: 2,
        stride: 2,
    };
    // A two-pass channel sum, 3 channels in 2 slices: 6 workgroups, folded to 5×2 under a
    // limit of 5 (which the 25 workgroups of the bias add beside it still fit).
    let sums = Channels {
        outer: 1,
        channels: 3,
        inner: 2100,
    };
    // The per-channel kernels (7 channels: a 3 × 3 grid, two workgroups past the last
    // channel) and the element-wise ones (1,050 values: 5 workgroups in a 3 × 2 grid).
    let bn = BatchNorm::new(Channels {
        outer: 3,
        channels: 7,
        inner: 50,
    });
    // 2,000 elements need 8 workgroups, folded into a 3 × 3 grid whose last is past the end.
    let dropout = Dropout {
        len: 2000,
        p: 0.2,
        seed: 77,
    };
    vec![
        Case::new(Op::Conv2d(conv), 1, 1e-4, 1e-4).folded(3),
        Case::new(Op::Matmul(mm), 2, 1e-4, 1e-4).folded(3),
        Case::new(Op::Matmul(split), 6, 1e-4, 1e-4)
            .folded(3)
            .note("split-K under the limit"),
        Case::new(Op::Pool2d(pool), 3, 1e-6, 1e-6).folded(3),
        Case::new(Op::Elementwise { len: 2000 }, 4, 0.0, 0.0).folded(3),
        Case::new(Op::Bias(sums), 5, 1e-4, 1e-5).folded(5),
        Case::new(Op::BatchNorm(bn), 1, 1e-4, 1e-4).folded(3),
        Case::new(Op::Dropout(dropout), 3, 0.0, 0.0).folded(3),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selftest::FAMILIES;

    #[test]
    fn the_big_tile_products_take_the_big_tiles() {
        let big: Vec<_> = cases()
            .into_iter()
            .filter(|c| c.note == "big tiles")
            .collect();
        assert_eq!(big.len(), 8);
        for c in big {
            let Op::Matmul(p) = c.op else { panic!("{c:?}") };
            // gpu/ops/matmul.rs takes 128×128 tiles from 512 of them.
            assert!((p.m / 128) * (p.n / 128) >= 512, "{p:?}");
        }
    }

    #[test]
    fn every_family_has_cases_and_a_folded_one() {
        let all = cases();
        for f in FAMILIES {
            assert!(all.iter().any(|c| c.op.family() == f), "{f}");
        }
        assert!(all.iter().all(|c| FAMILIES.contains(&c.op.family())));
        for f in [
            "conv2d",
            "matmul",
            "pool2d",
            "elementwise",
            "bias",
            "batch_norm",
            "dropout",
        ] {
            let folded = |c: &&Case| c.op.family() == f && c.max_workgroups.is_some();
            assert!(all.iter().any(|c| folded(&c)), "{f}");
        }
    }
}
