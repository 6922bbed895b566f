//! Test-only faults, from the hidden environment variable `CNN_GPU_FAULT` (documented in
//! docs/robustness.md; `tests/cli/` uses it). Never needed by a user:
//!
//! - `panic`: panic in `main` after parsing, to check that a panic reaches the user as one
//!   `error: internal error: … (please report …)` line and exit code 1;
//! - `device-lost@step:N`: after training step N of the run, destroy the GPU device (as a
//!   driver reset would); `--backend gpu` (or `auto` on a GPU) only;
//! - `pause@step:N`: after step N, print `fault: paused after step N` on stderr and wait (at
//!   most 60 s) for Ctrl-C, so a test can interrupt at a known step;
//! - `hang@step:N`: after step N, print `fault: hanging after step N` and sleep 60 s whatever
//!   happens: a step that does not end, for the second Ctrl-C that must exit at once;
//! - `pause@eval`: at the first batch of the final evaluation, print `fault: paused in the
//!   final evaluation` and wait as `pause` does;
//! - `slow:MS`: sleep MS milliseconds after every step, so that a signal sent at a random
//!   moment of a short run falls inside training (the fault matrix, `tests/cli/matrix.rs`);
//! - `corrupt@check:KERNEL`: in `cnn-gpu check`, add 1 to the first value of KERNEL's GPU
//!   output (`conv2d_forward`, `matmul` …, as the table names it) before it is compared, so
//!   that a test sees a mismatch's FAIL row and exit code on a correct GPU.

use std::time::{Duration, Instant};

use super::Failure;

/// The environment variable holding the fault.
pub(crate) const FAULT_ENV: &str = "CNN_GPU_FAULT";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    Panic,
    DeviceLost { step: usize },
    Pause { step: usize },
    Hang { step: usize },
    PauseEval,
    Slow { ms: u64 },
    Corrupt { kernel: &'static str },
}

/// How long `pause` and `hang` last at most.
const STALL: Duration = Duration::from_secs(60);

impl Fault {
    /// The fault `CNN_GPU_FAULT` asks for (None when unset or empty); a value it cannot parse
    /// is refused with exit code 2.
    pub(crate) fn from_env() -> Result<Option<Fault>, Failure> {
        match std::env::var(FAULT_ENV) {
            Ok(v) if !v.is_empty() => Fault::parse(&v).map(Some).ok_or_else(|| {
                Failure::usage(format!(
                    "{FAULT_ENV}={v:?} is not a fault: use panic, device-lost@step:N, \
                     pause@step:N, pause@eval, hang@step:N, slow:MS or \
                     corrupt@check:KERNEL (or unset it)"
                ))
            }),
            _ => Ok(None),
        }
    }

    fn parse(s: &str) -> Option<Fault> {
        match s {
            "panic" => return Some(Fault::Panic),
            "pause@eval" => return Some(Fault::PauseEval),
            _ => {}
        }
        if let Some(ms) = s.strip_prefix("slow:") {
            return ms.parse().ok().map(|ms| Fault::Slow { ms });
        }
        if let Some(kernel) = s.strip_prefix("corrupt@check:").filter(|k| !k.is_empty()) {
            // Read once per process and kept to its end: leaking it keeps `Fault` Copy.
            let kernel = Box::leak(kernel.to_string().into_boxed_str());
            return Some(Fault::Corrupt { kernel });
        }
        let (kind, step) = s.split_once("@step:")?;
        let step: usize = step.parse().ok().filter(|&n| n >= 1)?;
        match kind {
            "device-lost" => Some(Fault::DeviceLost { step }),
            "pause" => Some(Fault::Pause { step }),
            "hang" => Some(Fault::Hang { step }),
            _ => None,
        }
    }

    /// Runs the fault if it is due after step `total` of the run. `interrupted` says whether
    /// a stopping signal came; `lose_device` destroys the GPU device.
    pub(crate) fn after_step(
        &self,
        total: usize,
        interrupted: &dyn Fn() -> bool,
        lose_device: &dyn Fn(),
    ) {
        match *self {
            Fault::DeviceLost { step } if step == total => lose_device(),
            Fault::Pause { step } if step == total => {
                eprintln!("fault: paused after step {step}");
                wait_for(interrupted);
            }
            Fault::Hang { step } if step == total => {
                eprintln!("fault: hanging after step {step}");
                std::thread::sleep(STALL);
            }
            Fault::Slow { ms } => std::thread::sleep(Duration::from_millis(ms)),
            _ => {}
        }
    }

    /// Runs the fault if it is due at a batch of the evaluation after `epoch` (None: the
    /// final one).
    pub(crate) fn in_evaluation(&self, epoch: Option<usize>, interrupted: &dyn Fn() -> bool) {
        if *self == Fault::PauseEval && epoch.is_none() {
            eprintln!("fault: paused in the final evaluation");
            wait_for(interrupted);
        }
    }
}

/// Waits until `interrupted`, at most [`STALL`].
fn wait_for(interrupted: &dyn Fn() -> bool) {
    let start = Instant::now();
    while !interrupted() && start.elapsed() < STALL {
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_fault_and_refuses_the_rest() {
        assert_eq!(Fault::parse("panic"), Some(Fault::Panic));
        assert_eq!(
            Fault::parse("device-lost@step:3"),
            Some(Fault::DeviceLost { step: 3 })
        );
        assert_eq!(
            Fault::parse("pause@step:12"),
            Some(Fault::Pause { step: 12 })
        );
        assert_eq!(Fault::parse("hang@step:1"), Some(Fault::Hang { step: 1 }));
        assert_eq!(Fault::parse("slow:20"), Some(Fault::Slow { ms: 20 }));
        assert_eq!(Fault::parse("pause@eval"), Some(Fault::PauseEval));
        assert_eq!(
            Fault::parse("corrupt@check:matmul"),
            Some(Fault::Corrupt { kernel: "matmul" })
        );
        for bad in [
            "",
            "pause",
            "pause@step:0",
            "pause@step:x",
            "oops@step:2",
            "panic@step:1",
            "slow:",
            "slow:-1",
            "corrupt@check:",
            "corrupt:matmul",
        ] {
            assert_eq!(Fault::parse(bad), None, "{bad}");
        }
    }
}
