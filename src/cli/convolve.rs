//! `cnn-gpu convolve`: one convolution or pooling of an image or a small matrix, on a backend.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};

use cnn_gpu::backend::Backend;
use cnn_gpu::digit::GreyImage;
use cnn_gpu::matrix::{self, Matrix, PoolKind, NAMED_KERNELS};
use cnn_gpu::picture;

use super::files::{check_output, write_png};
use super::{open_backend, run_failure, Chosen, DeviceArgs, Failure};

/// Matrices up to this many rows and columns are printed.
const PRINT_MAX: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum PoolChoice {
    Max,
    Avg,
}

#[derive(Args, Debug)]
pub(crate) struct ConvolveArgs {
    #[command(flatten)]
    pub(crate) device: DeviceArgs,
    /// A PNG or JPEG image (grey 0…1), or a text file of rows of whitespace-separated numbers.
    #[arg(value_name = "INPUT")]
    pub(crate) input: PathBuf,
    /// edge, blur, sharpen, identity, or a text file holding the kernel's rows.
    #[arg(long, required_unless_present = "pool", conflicts_with = "pool")]
    pub(crate) kernel: Option<String>,
    /// Zeros added on every side of the input (convolution only).
    #[arg(long, default_value_t = 0, conflicts_with = "pool")]
    pub(crate) padding: usize,
    /// Step between windows (default: 1 for a convolution, the window size for pooling).
    #[arg(long)]
    pub(crate) stride: Option<usize>,
    /// Pool instead of convolving.
    #[arg(long, value_enum, requires = "size")]
    pub(crate) pool: Option<PoolChoice>,
    /// The pooling window's side.
    #[arg(long, requires = "pool")]
    pub(crate) size: Option<usize>,
    /// Also write the input and the output side by side as a PNG.
    #[arg(short, long)]
    pub(crate) output: Option<PathBuf>,
}

/// The operation the flags ask for.
enum Op {
    Conv { kernel: Matrix, name: String },
    Pool { kind: PoolKind, size: usize },
}

pub(crate) fn convolve_command(args: &ConvolveArgs) -> Result<(), Failure> {
    if args.size == Some(0) {
        return Err(Failure::usage("--size must be at least 1"));
    }
    let stride = args.stride.unwrap_or(match args.size {
        Some(size) if args.pool.is_some() => size,
        _ => 1,
    });
    if stride == 0 {
        return Err(Failure::usage("--stride must be at least 1"));
    }
    let op = match (&args.kernel, args.pool, args.size) {
        (Some(k), _, _) => Op::Conv {
            kernel: read_kernel(k)?,
            name: k.clone(),
        },
        (None, Some(kind), Some(size)) => {
            let kind = match kind {
                PoolChoice::Max => PoolKind::Max,
                PoolChoice::Avg => PoolKind::Avg,
            };
            Op::Pool { kind, size }
        }
        _ => unreachable!("clap requires --kernel or --pool with --size"),
    };
    let input = read_input(&args.input)?;
    if let Some(path) = &args.output {
        check_output(path)?;
    }
    let (out, backend) = match open_backend(&args.device)? {
        Chosen::Cpu(b) => apply(&b, &input, &op, stride, args.padding),
        Chosen::Gpu(b) => apply(&b, &input, &op, stride, args.padding),
    }?;
    let what = match &op {
        Op::Conv { kernel, name } => {
            print_matrix(&format!("Kernel {name}"), kernel);
            format!(
                "{name} convolution, padding {}, stride {stride}",
                args.padding
            )
        }
        Op::Pool { kind, size } => format!(
            "{} pooling {size}×{size}, stride {stride}",
            if *kind == PoolKind::Max { "max" } else { "avg" }
        ),
    };
    print_matrix("Input", &input);
    print_matrix(&format!("Output of the {what} on {backend}"), &out);
    if let Some(path) = &args.output {
        let img = picture::matrices_picture(&[
            (format!("input {}×{}", input.rows, input.cols), &input),
            (format!("{what}: {}×{}", out.rows, out.cols), &out),
        ]);
        write_png(path, &img)?;
    }
    Ok(())
}

fn apply<B: Backend>(
    b: &B,
    input: &Matrix,
    op: &Op,
    stride: usize,
    padding: usize,
) -> Result<(Matrix, String), Failure> {
    let out = match op {
        Op::Conv { kernel, .. } => matrix::convolve(b, input, kernel, stride, padding),
        Op::Pool { kind, size } => matrix::pool(b, input, *kind, *size, stride),
    }
    .map_err(|e| match e {
        cnn_gpu::Error::InvalidParams(msg) => Failure::usage(msg),
        other => run_failure(other),
    })?;
    Ok((out, b.describe()))
}

/// `Title (R×C):` and the rows, or one line with the size when it is too large to print.
fn print_matrix(title: &str, m: &Matrix) {
    if m.rows <= PRINT_MAX && m.cols <= PRINT_MAX {
        println!("{title} ({}×{}):", m.rows, m.cols);
        print!("{m}");
    } else {
        println!(
            "{title}: {}×{} (larger than {PRINT_MAX}×{PRINT_MAX}, not printed; -o draws it)",
            m.rows, m.cols
        );
    }
}

/// A named kernel, or the matrix in the file `k`.
fn read_kernel(k: &str) -> Result<Matrix, Failure> {
    if let Some(m) = matrix::named_kernel(k) {
        return Ok(m);
    }
    let path = Path::new(k);
    if !path.is_file() {
        let names: Vec<&str> = NAMED_KERNELS.iter().map(|(n, _)| *n).collect();
        return Err(Failure::usage(format!(
            "unknown kernel {k:?}: give one of {} or a text file of rows of numbers",
            names.join(", ")
        )));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::usage(format!("{}: cannot read the kernel: {e}", path.display())))?;
    Matrix::parse(&text).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))
}

/// An image (grey, 0 black … 1 white) or a text matrix.
fn read_input(path: &Path) -> Result<Matrix, Failure> {
    let bytes = std::fs::read(path)
        .map_err(|e| Failure::usage(format!("{}: cannot read the input: {e}", path.display())))?;
    let bad = |e: String| Failure::usage(format!("{}: {e}", path.display()));
    if image::guess_format(&bytes).is_ok() {
        let img = GreyImage::decode(&bytes).map_err(bad)?;
        return Ok(Matrix::new(img.height, img.width, img.pixels));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| bad("neither a PNG/JPEG image nor a text matrix (rows of numbers)".into()))?;
    Matrix::parse(&text).map_err(bad)
}
