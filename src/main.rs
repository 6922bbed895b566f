//! The `cnn-gpu` command line: parses arguments, calls the library, and turns errors into
//! messages and exit codes. No training logic lives here.
//!
//! Exit codes:
//! - 0: success;
//! - 2: something the user must fix — a bad flag value (refused before any work; clap's own
//!   parse errors also exit 2), unusable MNIST files in the data directory, missing files
//!   that could not be downloaded, or `--backend gpu` with no GPU adapter;
//! - 1: any other failure (a backend error, a GPU fault …), and an internal
//!   error (a panic: one line `error: internal error: … (please report …)`, no backtrace);
//! - 130: interrupted by Ctrl-C (`train` saves a checkpoint to resume from first).
//!
//! Every failure prints one line `error: …` on stderr (a failed download adds the mirrors'
//! answers on the lines after it).

use std::process::ExitCode;
use std::sync::Mutex;

use clap::{Parser, Subcommand};

mod cli;

#[derive(Parser, Debug)]
#[command(
    name = "cnn-gpu",
    version,
    about = "Train a CNN on MNIST with WGSL compute shaders (or the CPU)"
)]
#[command(after_help = "Exit codes: 0 success, 2 bad arguments or data files, 1 other failures.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train the tutorial's SimpleCNN on MNIST and report the test accuracy.
    Train(Box<cli::train::TrainArgs>),
    /// List every GPU adapter with the limits that matter, and which one `--backend auto` picks.
    Info,
    /// Check every GPU kernel against the CPU backend on an adapter: a table of errors, exit 1
    /// on a mismatch.
    Check(cli::check::CheckArgs),
    /// Time each layer's forward and backward pass of a training step (GPU timestamps).
    Time(cli::time::TimeArgs),
    /// Evaluate a checkpoint on the MNIST test set: accuracy, loss, per class, confusion matrix.
    Eval(cli::eval::EvalArgs),
    /// Classify digit images (PNG/JPEG, any size) with a checkpoint: the top classes with
    /// their probabilities.
    Predict(cli::predict::PredictArgs),
    /// Draw conv1's learned 3×3 kernels as a PNG grid.
    Filters(cli::filters::FiltersArgs),
    /// Draw one image's conv1 and conv2 activations (after ReLU) as a PNG.
    Featuremaps(cli::featuremaps::FeatureMapsArgs),
    /// Convolve (or pool) an image or a small matrix on a backend; print it, draw it with -o.
    Convolve(cli::convolve::ConvolveArgs),
    /// Plot the training loss and test accuracy from a `train --metrics` file as a PNG.
    Plot(cli::plot::PlotArgs),
}

/// Mesa's Vulkan layer that picks the default GPU (VK_LAYER_MESA_device_select, loaded with
/// every Mesa driver) asks libwayland for a display while adapters are listed; with no
/// usable XDG_RUNTIME_DIR (a server, a container, CI) libwayland prints `error: XDG_RUNTIME_DIR
/// is invalid or not set in the environment.` twice, errors that are not ours and change
/// nothing. There is no display to choose by then, so the layer is turned off as its manifest
/// allows (NODEVICE_SELECT=1), unless the user set either variable to choose a device.
/// Called first in `main`, before any thread exists.
fn quiet_display_probe() {
    let runtime_dir_usable =
        std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|d| std::path::Path::new(&d).is_absolute());
    let chosen = std::env::var_os("NODEVICE_SELECT").is_some()
        || std::env::var_os("MESA_VK_DEVICE_SELECT").is_some();
    if !runtime_dir_usable && !chosen {
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

fn main() -> ExitCode {
    quiet_display_probe();
    install_panic_hook();
    match std::panic::catch_unwind(run) {
        Ok(code) => code,
        Err(_) => {
            let what = PANIC
                .lock()
                .map(|m| m.clone())
                .unwrap_or_default()
                .unwrap_or_else(|| "a panic".to_string());
            eprintln!(
                "error: internal error: {what} (please report this bug with the command line)"
            );
            ExitCode::from(1)
        }
    }
}

/// The message and place of the last panic, kept by the hook for `main` to print.
static PANIC: Mutex<Option<String>> = Mutex::new(None);

/// Replaces the default panic output (a `thread 'main' panicked at …` block, maybe a
/// backtrace) by a record that `main` turns into one `internal error` line with exit code 1.
/// A panic caught on purpose (the `mnist` crate's, see `data::load_mnist`) prints nothing.
fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_string());
        let place = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut slot) = PANIC.lock() {
            *slot = Some(format!("{message}{place}"));
        }
    }));
}

fn run() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = cli::fault::Fault::from_env().and_then(|fault| {
        // The hidden test trigger for the panic hook (see cli/fault.rs).
        if fault == Some(cli::fault::Fault::Panic) {
            panic!("{} asked for a panic", cli::fault::FAULT_ENV);
        }
        match cli.command {
            Command::Train(args) => cli::train::train_command(&args, fault),
            Command::Check(args) => cli::check::check_command(&args, fault),
            Command::Time(args) => cli::time::time_command(&args),
            Command::Eval(args) => cli::eval::eval_command(&args),
            Command::Predict(args) => cli::predict::predict_command(&args),
            Command::Filters(args) => cli::filters::filters_command(&args),
            Command::Featuremaps(args) => cli::featuremaps::featuremaps_command(&args),
            Command::Convolve(args) => cli::convolve::convolve_command(&args),
            Command::Plot(args) => cli::plot::plot_command(&args),
            Command::Info => {
                cli::info::info_command();
                Ok(())
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}
