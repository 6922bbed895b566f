//! Files whose headers claim huge sizes (2³² − 1 items and more) are refused before anything
//! is allocated from those counts: a counting allocator records the largest allocation each
//! parse makes on this thread, which must stay far below what the header claims.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::Write;
use std::path::Path;

use cnn_gpu::checkpoint;
use cnn_gpu::data::{parse_idx, IdxKind};
use cnn_gpu::model::ModelSpec;

/// The system allocator, noting the largest allocation of the threads that ask it to.
struct Counting;

thread_local! {
    static TRACKING: Cell<bool> = const { Cell::new(false) };
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded to the system allocator unchanged.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

fn note(size: usize) {
    // try_with: the thread-locals may be gone while a thread exits.
    let _ = TRACKING.try_with(|t| {
        if t.get() {
            let _ = LARGEST.try_with(|l| l.set(l.get().max(size)));
        }
    });
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs `f` and returns its result with the largest single allocation it made.
fn largest_allocation<T>(f: impl FnOnce() -> T) -> (T, usize) {
    LARGEST.with(|l| l.set(0));
    TRACKING.with(|t| t.set(true));
    let out = f();
    TRACKING.with(|t| t.set(false));
    (out, LARGEST.with(|l| l.get()))
}

const MIB: usize = 1 << 20;

fn header(words: &[u32]) -> Vec<u8> {
    words.iter().flat_map(|w| w.to_be_bytes()).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).unwrap();
    gz.finish().unwrap()
}

#[track_caller]
fn assert_refused_small(bytes: &[u8], kind: IdxKind, gzipped: bool, what: &str) {
    let path = Path::new("huge-idx");
    let (result, largest) = largest_allocation(|| parse_idx(bytes, kind, gzipped, path));
    let err = result.expect_err("refused").to_string();
    assert!(err.starts_with("huge-idx: ") && err.contains(what), "{err}");
    assert!(largest < MIB, "{err}: allocated {largest} bytes");
}

#[test]
fn the_counting_allocator_sees_a_large_allocation() {
    let (v, largest) = largest_allocation(|| vec![7u8; 2 * MIB]);
    assert_eq!(v.len(), 2 * MIB);
    assert!(largest >= 2 * MIB, "{largest}");
}

#[test]
fn idx_headers_claiming_billions_of_items_allocate_nothing_from_the_count() {
    let max = u32::MAX; // 2³² − 1, the most an IDX count can say
    let labels = header(&[0x801, max]);
    assert_refused_small(&labels, IdxKind::Labels, false, "needs exactly 4294967303");
    let images = header(&[0x803, max, 65535, 65535]);
    assert_refused_small(&images, IdxKind::Images, false, "truncated");
    // With a few real bytes after the header, too.
    let mut some = labels.clone();
    some.extend([1, 2, 3]);
    assert_refused_small(&some, IdxKind::Labels, false, "truncated");

    // Gzipped: above the decompression cap is refused from the header; below it, the data
    // runs out after a few bytes and nothing was sized from the claim.
    assert_refused_small(&gzip(&labels), IdxKind::Labels, true, "more than the");
    assert_refused_small(&gzip(&images), IdxKind::Images, true, "more than the");
    let below_cap = header(&[0x803, 1 << 30, 1, 1]);
    assert_refused_small(
        &gzip(&below_cap),
        IdxKind::Images,
        true,
        "decompresses to 16 bytes",
    );
}

#[test]
fn checkpoint_headers_claiming_huge_tensors_allocate_nothing_from_them() {
    let path = Path::new("huge.safetensors");
    let spec = ModelSpec::simple_cnn();
    let file = |json: &str, extra: usize| {
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend(json.as_bytes());
        bytes.extend(vec![0u8; extra]);
        bytes
    };
    let cases = [
        // A tensor of 2³² floats whose data is not there.
        file(
            r#"{"fc1.weight":{"dtype":"F32","shape":[4294967296],"data_offsets":[0,17179869184]}}"#,
            16,
        ),
        // A shape whose element count overflows.
        file(
            r#"{"fc1.weight":{"dtype":"F32","shape":[4294967296,4294967296,4294967296],"data_offsets":[0,16]}}"#,
            16,
        ),
        // A header length of 2⁴⁰ bytes in a 20-byte file.
        {
            let mut b = (1u64 << 40).to_le_bytes().to_vec();
            b.extend(b"{}{}{}{}{}{}");
            b
        },
    ];
    for bytes in cases {
        let (result, largest) = largest_allocation(|| checkpoint::parse(&bytes, path, &spec));
        let err = result.expect_err("refused").to_string();
        assert!(
            err.starts_with("huge.safetensors: not a safetensors checkpoint"),
            "{err}"
        );
        assert!(largest < MIB, "{err}: allocated {largest} bytes");
    }
}
