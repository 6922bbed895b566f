//! The matrix-text parser (`Matrix::parse`, what `cnn-gpu convolve` reads) on arbitrary text:
//! Ok with rows × cols finite numbers, or an error naming the line, never a panic.
#![no_main]

use cnn_gpu::matrix::Matrix;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Matrix::parse(text) {
        Ok(m) => {
            assert!(m.rows >= 1 && m.cols >= 1);
            assert_eq!(m.data.len(), m.rows * m.cols);
            assert!(m.data.iter().all(|v| v.is_finite()));
            // What it accepts, written back row by row, parses to the same matrix.
            let text: String = m
                .data
                .chunks(m.cols)
                .map(|row| row.iter().map(|v| format!("{v:?} ")).collect::<String>() + "\n")
                .collect();
            assert_eq!(Matrix::parse(&text).unwrap(), m);
        }
        Err(e) => assert!(e.starts_with("line ") || e.starts_with("no numbers"), "{e}"),
    }
});
