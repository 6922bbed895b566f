//! Mutation fuzzing of the two parsers of untrusted files, in the ordinary test build: the
//! IDX parser (`data::parse_idx`, raw and gzipped, as either kind) and the checkpoint parser
//! (`checkpoint::parse`). Each case mutates a valid seed (bit flips, byte sets, truncation,
//! insertion, duplication, interesting integers at random offsets) and the parser must return
//! Ok or an error naming the file, never panic; an Ok must keep its promises.
//!
//! `CNN_GPU_FUZZ_CASES=N` sets the cases per target (default 300), and
//! `CNN_GPU_FUZZ_SECONDS=S` runs each target for S seconds instead (a long fuzzing session;
//! docs/robustness.md). `CNN_GPU_FUZZ_SEED` picks the random stream (default 0).
//! The cargo-fuzz targets in `fuzz/` drive the same entry points with coverage feedback.

use std::io::Write;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use cnn_gpu::checkpoint;
use cnn_gpu::data::{parse_idx, IdxKind};
use cnn_gpu::model::ModelSpec;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// How long or how many cases each target runs.
enum Budget {
    Cases(u64),
    Seconds(Duration),
}

fn budget() -> Budget {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    match (env("CNN_GPU_FUZZ_SECONDS"), env("CNN_GPU_FUZZ_CASES")) {
        (Some(s), _) => Budget::Seconds(Duration::from_secs(s)),
        (None, Some(n)) => Budget::Cases(n),
        (None, None) => Budget::Cases(300),
    }
}

const INTERESTING: [u32; 10] = [
    0,
    1,
    0x7f,
    0xff,
    0x801,
    0x803,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    u32::MAX,
];

/// One to four mutations of `seed`.
fn mutate(rng: &mut ChaCha8Rng, seed: &[u8]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for _ in 0..rng.random_range(1..=4) {
        let at = |rng: &mut ChaCha8Rng, len: usize| rng.random_range(0..len.max(1));
        match rng.random_range(0..7) {
            0 if !b.is_empty() => {
                let i = at(rng, b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            1 if !b.is_empty() => {
                let i = at(rng, b.len());
                b[i] = rng.random();
            }
            2 => {
                let n = at(rng, b.len() + 1);
                b.truncate(n);
            }
            3 => {
                let i = at(rng, b.len() + 1);
                let n = rng.random_range(1..64);
                let bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
                b.splice(i..i, bytes);
            }
            4 if !b.is_empty() => {
                let i = at(rng, b.len());
                let j = (i + rng.random_range(1..256)).min(b.len());
                let chunk = b[i..j].to_vec();
                b.splice(i..i, chunk);
            }
            5 if b.len() >= 4 => {
                let i = at(rng, b.len() - 3);
                let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
                let bytes = if rng.random() {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                b[i..i + 4].copy_from_slice(&bytes);
            }
            _ => {
                // An ASCII digit or JSON punctuation: reaches the checkpoint's JSON header.
                if !b.is_empty() {
                    let i = at(rng, b.len());
                    b[i] = b"0123456789{}[]\",:-eE"[rng.random_range(0..20)];
                }
            }
        }
    }
    b
}

/// Runs `check` on mutations of the seeds until the budget is spent; a panic fails the test
/// naming the case and writing the input to the temporary directory for a regression test.
fn fuzz(name: &str, seeds: &[Vec<u8>], check: impl Fn(&[u8])) {
    let seed = std::env::var("CNN_GPU_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let start = Instant::now();
    let mut cases = 0u64;
    let more = |cases: u64| match budget() {
        Budget::Cases(n) => cases < n,
        Budget::Seconds(d) => start.elapsed() < d,
    };
    while more(cases) {
        let base = &seeds[rng.random_range(0..seeds.len())];
        let input = mutate(&mut rng, base);
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| check(&input)));
        if outcome.is_err() {
            let path = std::env::temp_dir().join(format!("cnn-gpu-fuzz-{name}-{cases}"));
            std::fs::write(&path, &input).unwrap();
            panic!(
                "{name}: case {cases} panicked; input saved to {}",
                path.display()
            );
        }
        cases += 1;
    }
    eprintln!(
        "{name}: {cases} cases in {:.1} s",
        start.elapsed().as_secs_f64()
    );
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

/// Every file in `fuzz/seeds/<target>/` (the cargo-fuzz targets' corpus seeds too).
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let seeds: Vec<Vec<u8>> = files.iter().map(|p| std::fs::read(p).unwrap()).collect();
    assert!(!seeds.is_empty(), "no seeds in {}", dir.display());
    seeds
}

/// The IDX parser as run on every MNIST file, on each seed's mutations: as images and as
/// labels, and as the raw bytes and (the mutation gzipped, and the mutated gzip) `.gz`.
#[test]
fn idx_parser_never_panics_on_mutated_files() {
    let path = Path::new("fuzz.idx");
    fuzz("idx", &seeds("idx"), |data| {
        let gz = gzip(data);
        for kind in [IdxKind::Images, IdxKind::Labels] {
            for (bytes, gzipped) in [(data, false), (data, true), (&gz[..], true)] {
                match parse_idx(bytes, kind, gzipped, path) {
                    Ok((header, body)) => {
                        let count = u64::from(header.count)
                            * u64::from(header.rows)
                            * u64::from(header.cols);
                        assert_eq!(body.len() as u64, count);
                    }
                    Err(e) => assert!(e.to_string().starts_with("fuzz.idx: "), "{e}"),
                }
            }
        }
    });
}

/// The checkpoint parser on mutations of the committed seeds and of a whole valid file: Ok only with every parameter at its shape and finite.
#[test]
fn checkpoint_parser_never_panics_on_mutated_files() {
    let spec = ModelSpec::simple_cnn();
    let expected = spec.param_shapes().unwrap();
    let path = Path::new("fuzz.safetensors");
    // A whole valid checkpoint too (1.7 MB, so made here rather than committed), with the
    // momentum and a mid-epoch state: mutations then reach the shape, dtype, value and
    // metadata checks.
    let mut all = seeds("checkpoint");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("valid.safetensors");
    let params = spec.init_params(1).unwrap();
    let state = checkpoint::TrainState {
        epoch: 1,
        step: 8,
        seed: 5,
        lr: 0.001,
        optim: cnn_gpu::optim::OptimConfig::default(),
        loss_window: Some(cnn_gpu::train::LossWindow {
            sum: 2.25,
            steps: 1,
        }),
        batch_size: Some(16),
        train_images: Some(72),
    };
    let momentum = checkpoint::OptimizerTensors {
        velocity: Some(&params),
        exp_avg_sq: None,
    };
    checkpoint::save(&file, &spec, &params, momentum, Some(&state)).unwrap();
    let valid = std::fs::read(&file).unwrap();
    assert!(checkpoint::parse(&valid, path, &spec).is_ok());
    all.push(valid);
    fuzz("checkpoint", &all, |data| {
        match checkpoint::parse(data, path, &spec) {
            Ok(ckpt) => {
                assert_eq!(ckpt.params.len(), expected.len());
                for (t, (name, shape)) in ckpt.params.iter().zip(&expected) {
                    assert_eq!((&t.name, &t.shape), (name, shape));
                    assert!(t.data.iter().all(|x| x.is_finite()));
                }
                let _ = ckpt.train_state();
            }
            Err(e) => assert!(e.to_string().starts_with("fuzz.safetensors: "), "{e}"),
        }
    });
}
