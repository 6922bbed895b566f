//! `cnn-gpu check`, the GPU self-test, on the adapter the tests run on (lavapipe in CI): every
//! kernel passes, a corrupted kernel's rows fail with exit code 1, and no adapter is a
//! refusal naming the fix.

use std::process::Output;

use crate::common::{cnn_gpu, cnn_gpu_command, stderr, stdout};
use crate::{error_line, no_adapter};

/// `cnn-gpu check args` under the test-only `fault` (if any), which must exit with `code`;
/// None where there is no adapter (the test is then skipped, or fails under
/// CNN_GPU_REQUIRE_GPU=1).
fn check(args: &[&str], fault: Option<&str>, code: i32) -> Option<Output> {
    let mut cmd = cnn_gpu_command(&[&["check"], args].concat());
    if let Some(f) = fault {
        cmd.env("CNN_GPU_FAULT", f);
    }
    let out = cmd.output().unwrap();
    if no_adapter(&out) {
        return None;
    }
    let all = format!("{}{}", stdout(&out), stderr(&out));
    assert_eq!(out.status.code(), Some(code), "{all}");
    Some(out)
}

/// The table's rows (after the header line that names the columns), and the summary's
/// `(passed, rows)` from `check: P of R kernel checks passed …`.
fn rows_and_summary(out: &Output) -> (Vec<String>, (usize, usize)) {
    let text = stdout(out);
    let lines: Vec<&str> = text.lines().collect();
    let header = lines
        .iter()
        .position(|l| l.contains("kernel") && l.contains("max |err|"))
        .unwrap_or_else(|| panic!("no header in {text}"));
    let rows: Vec<String> = lines[header + 1..]
        .iter()
        .take_while(|l| l.starts_with("ok ") || l.starts_with("FAIL "))
        .map(|l| l.to_string())
        .collect();
    let summary = lines.last().expect("a summary line");
    let words: Vec<&str> = summary.split_whitespace().collect();
    assert!(
        summary.starts_with("check: ") && words[2] == "of" && words[4] == "kernel",
        "{summary}"
    );
    let passed = words[1].parse().unwrap();
    (rows, (passed, words[3].parse().unwrap()))
}

#[test]
fn every_kernel_passes_on_this_adapter() {
    let Some(out) = check(&[], None, 0) else {
        return;
    };
    let (rows, (passed, total)) = rows_and_summary(&out);
    assert!(rows.len() > 150, "{} rows", rows.len());
    for row in &rows {
        assert!(row.starts_with("ok "), "{row}");
    }
    assert_eq!((passed, total), (rows.len(), rows.len()));
    let text = stdout(&out);
    for family in [
        "conv2d_backward_weight",
        "matmul",
        "adam_step",
        "dropout_forward",
    ] {
        assert!(text.contains(family), "{family}");
    }
    assert!(text.contains("grid ≤ 3"), "the folded grids run too");
    // Every GEMM core, built unchecked.
    assert!(
        text.trim_end()
            .ends_with("(baseline unchecked and vec4 unchecked kernels)"),
        "{text}"
    );
}

/// A GPU output that differs from the CPU's: its rows fail, with the mismatch below the
/// table, and the exit code is 1 with one error line.
#[test]
fn a_mismatch_fails_with_exit_code_1() {
    let args = [
        "--only",
        "elementwise",
        "--runtime-checks",
        "--gemm",
        "baseline",
    ];
    let Some(out) = check(&args, Some("corrupt@check:relu_backward"), 1) else {
        return;
    };
    let (rows, (passed, total)) = rows_and_summary(&out);
    // 5 cases (one folded) of 3 kernels and the packed views' 5, each on both builds:
    // relu_backward fails in 10.
    assert_eq!(rows.len(), 40, "{rows:#?}");
    let failed: Vec<&String> = rows.iter().filter(|r| r.starts_with("FAIL")).collect();
    assert_eq!(failed.len(), 10, "{rows:#?}");
    for row in &failed {
        assert!(row.contains("relu_backward"), "{row}");
    }
    assert!(
        rows.iter().any(|r| r.contains(" checked ")),
        "a build column"
    );
    assert_eq!((passed, total), (30, 40));
    let text = stdout(&out);
    assert!(
        text.contains("relu_backward")
            && text.contains("values outside the tolerance; max |diff| 1e0 at [0]"),
        "{text}"
    );
    assert!(
        error_line(&out).contains("10 of 40 kernel checks failed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn an_unknown_adapter_is_refused_naming_info() {
    let out = cnn_gpu(&["check", "--adapter", "no-such-adapter-xyz"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let line = error_line(&out);
    assert!(
        line.contains("no GPU adapter") && line.contains("cnn-gpu info"),
        "{line}"
    );
    assert!(stdout(&out).is_empty());
}
