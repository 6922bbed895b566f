//! `cnn-gpu check`: every GPU kernel against the CPU backend on the chosen adapter (the cases
//! of `cnn_gpu::selftest`), a row per kernel and shape as each case finishes, exit 1 on a
//! mismatch.

use clap::builder::PossibleValuesParser;
use clap::Args;

use cnn_gpu::backend::cpu::CpuBackend;
use cnn_gpu::backend::gpu::{GemmVariant, GpuOptions, RuntimeChecks};
use cnn_gpu::selftest::{cases, Case, CaseReport, SelfTest, FAMILIES};

use super::fault::Fault;
use super::{parse_gemm, AdapterArgs, Failure};

#[derive(Args, Debug)]
pub(crate) struct CheckArgs {
    #[command(flatten)]
    pub(crate) gpu: AdapterArgs,
    /// Also run the cases that are slow on a software adapter: the products on 128×128 tiles
    /// (a second on a GPU, 15 on lavapipe).
    #[arg(long)]
    pub(crate) full: bool,
    /// Only the cases of this op family (repeatable).
    #[arg(long, value_name = "FAMILY", value_parser = PossibleValuesParser::new(FAMILIES))]
    pub(crate) only: Vec<String>,
    /// Run every case a second time on kernels built with naga's runtime checks (bounds
    /// clamping, as tests and software adapters use them).
    #[arg(long)]
    pub(crate) runtime_checks: bool,
    /// Only this GEMM core for matmul and the convolutions (default: every one).
    #[arg(long, value_name = "VARIANT", value_parser = parse_gemm)]
    pub(crate) gemm: Option<GemmVariant>,
}

/// One build of the kernels that `check` runs every case on: its GPU options and its name in
/// the table.
struct Build {
    name: String,
    options: GpuOptions,
}

/// The builds to run every case on: each GEMM core of [`GemmVariant::ALL`] (or the one
/// `--gemm` names), unchecked as real GPUs run them, then, with `--runtime-checks`, checked.
fn builds(args: &CheckArgs) -> Vec<Build> {
    let checks: &[(&str, RuntimeChecks)] = if args.runtime_checks {
        &[
            ("unchecked", RuntimeChecks::Off),
            ("checked", RuntimeChecks::On),
        ]
    } else {
        &[("unchecked", RuntimeChecks::Off)]
    };
    let gemms: Vec<GemmVariant> = match args.gemm {
        Some(g) => vec![g],
        None => GemmVariant::ALL.to_vec(),
    };
    let mut builds = Vec::new();
    for &gemm in &gemms {
        for &(name, runtime_checks) in checks {
            let options = GpuOptions {
                runtime_checks,
                gemm: Some(gemm),
                ..args.gpu.options()
            };
            builds.push(Build {
                name: format!("{gemm} {name}"),
                options,
            });
        }
    }
    builds
}

pub(crate) fn check_command(args: &CheckArgs, fault: Option<Fault>) -> Result<(), Failure> {
    let reference = CpuBackend::new(None).map_err(Failure::other)?;
    let builds = builds(args);
    let mut test = SelfTest::new(
        &reference,
        builds.iter().map(|b| b.options.clone()).collect(),
    );
    if let Some(Fault::Corrupt { kernel }) = fault {
        test.corrupt_for_test(kernel);
    }
    let adapter = match test.gpu(0, None) {
        Ok(gpu) => gpu.adapter().describe(),
        Err(e @ cnn_gpu::Error::NoAdapter(_)) => {
            return Err(Failure::usage(format!(
                "{e}; `cnn-gpu check` needs a GPU adapter (`cnn-gpu info` lists them)"
            )))
        }
        Err(e) => return Err(Failure::other(e)),
    };
    let all = cases();
    let family = |c: &Case| args.only.is_empty() || args.only.iter().any(|f| f == c.op.family());
    let picked: Vec<&Case> = all
        .iter()
        .filter(|c| family(c) && (args.full || !c.large))
        .collect();
    let names: Vec<&str> = builds.iter().map(|b| b.name.as_str()).collect();
    let slow = all
        .iter()
        .filter(|c| family(c) && !args.full && c.large)
        .count();
    let left_out = match slow {
        0 => String::new(),
        n => format!(" ({n} slow ones left out: --full runs them)"),
    };
    let kernels = format!("{} kernels", names.join(" and "));
    println!(
        "check: every GPU kernel against the CPU backend on {adapter}, {kernels}: {} \
         cases{left_out}",
        picked.len(),
    );
    let table = Table {
        builds: (builds.len() > 1).then_some(&names[..]),
    };
    table.header();
    let (mut rows, mut failures) = (0, Vec::new());
    for case in picked.iter().copied() {
        let reports = test
            .run(case)
            .map_err(|e| Failure::other(format!("{e:#}")))?;
        for report in &reports {
            rows += table.rows(case, report, &mut failures);
        }
    }
    if !failures.is_empty() {
        println!("mismatches:");
        for f in &failures {
            println!("  {f}");
        }
    }
    println!(
        "check: {} of {rows} kernel checks passed ({} cases) on {adapter} ({kernels})",
        rows - failures.len(),
        picked.len(),
    );
    if failures.is_empty() {
        return Ok(());
    }
    Err(Failure {
        code: 1,
        message: format!(
            "{} of {rows} kernel checks failed: this adapter's results differ from the CPU \
             backend's (the FAIL rows above)",
            failures.len()
        ),
    })
}

/// The table's layout: a build column when there is more than one build.
struct Table<'a> {
    builds: Option<&'a [&'a str]>,
}

impl Table<'_> {
    /// The build column's width, names and two spaces (0 without the column).
    fn build_width(&self) -> usize {
        let longest = self
            .builds
            .iter()
            .flat_map(|b| b.iter())
            .map(|n| n.chars().count());
        longest.max().map_or(0, |w| w + 2)
    }

    fn header(&self) {
        let name = if self.builds.is_some() { "build" } else { "" };
        let build = format!("{name:<width$}", width = self.build_width());
        println!(
            "{:<4}  {build}{:<32} {:>9} {:>9} {:>8}  {:<20}  shape",
            "", "kernel", "max |err|", "max rel", "of tol", "tolerance"
        );
    }

    /// Prints one row per kernel of `report` (one for its error, if it failed to run), adds
    /// a line per failing row to `failures`, and returns the rows printed.
    fn rows(&self, case: &Case, report: &CaseReport, failures: &mut Vec<String>) -> usize {
        let (build, which) = match self.builds {
            Some(names) => {
                let name = names[report.config];
                (
                    format!("{name:<width$}", width = self.build_width()),
                    format!(" ({name})"),
                )
            }
            None => Default::default(),
        };
        let shape = case.describe();
        let comparisons = match &report.outcome {
            Ok(c) => c,
            Err(e) => {
                println!("FAIL  {build}{:<32} error: {e}  {shape}", case.op.family());
                failures.push(format!("{}{which} {shape}: {e}", case.op.family()));
                return 1;
            }
        };
        for c in comparisons {
            let mark = if c.passed() { "ok" } else { "FAIL" };
            println!(
                "{mark:<4}  {build}{:<32} {:>9} {:>9} {:>8}  {:<20}  {shape}",
                c.kernel,
                number(c.max_abs),
                number(c.max_rel),
                format!("{:.3}", c.used),
                case.tolerance(),
            );
            if !c.passed() {
                failures.push(format!("{}{which} {shape}: {}", c.kernel, c.detail()));
            }
        }
        comparisons.len()
    }
}

/// An error in three significant digits (`2.38e-7`), `0` for none.
fn number(v: f32) -> String {
    if v == 0.0 {
        "0".into()
    } else {
        format!("{v:.2e}")
    }
}
