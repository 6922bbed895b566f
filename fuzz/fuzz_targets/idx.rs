//! The IDX parser (`cnn_gpu::data::parse_idx`, the code `load_mnist` runs on every file) on
//! arbitrary bytes, as each kind of file, raw and gzipped: it must return Ok or a clean
//! error, never panic, and never allocate from a count the input does not back.
#![no_main]

use std::path::Path;

use cnn_gpu::data::{parse_idx, IdxKind};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for kind in [IdxKind::Images, IdxKind::Labels] {
        for gzipped in [false, true] {
            if let Ok((header, body)) = parse_idx(data, kind, gzipped, Path::new("fuzz.idx")) {
                // What Ok promises: the body is exactly what the header says.
                assert_eq!(body.len() as u64, header.file_len() - kind.header_len() as u64);
                assert_eq!(
                    u64::from(header.count) * u64::from(header.rows) * u64::from(header.cols),
                    body.len() as u64
                );
            }
        }
    }
});
