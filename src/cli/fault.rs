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
//!   happens: a step that does not end, for the second Ctrl-C that must exit at once.

use std::sync::atomic::{AtomicBool, Ordering};
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
                     pause@step:N or hang@step:N (or unset it)"
                ))
            }),
            _ => Ok(None),
        }
    }

    fn parse(s: &str) -> Option<Fault> {
        if s == "panic" {
            return Some(Fault::Panic);
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

    /// Runs the fault if it is due after step `total` of the run. `interrupted` is the Ctrl-C
    /// flag; `lose_device` destroys the GPU device.
    pub(crate) fn after_step(
        &self,
        total: usize,
        interrupted: &AtomicBool,
        lose_device: &dyn Fn(),
    ) {
        match *self {
            Fault::DeviceLost { step } if step == total => lose_device(),
            Fault::Pause { step } if step == total => {
                eprintln!("fault: paused after step {step}");
                let start = Instant::now();
                while !interrupted.load(Ordering::SeqCst) && start.elapsed() < STALL {
                    std::thread::sleep(Duration::from_millis(5));
                }
            }
            Fault::Hang { step } if step == total => {
                eprintln!("fault: hanging after step {step}");
                std::thread::sleep(STALL);
            }
            _ => {}
        }
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
        for bad in [
            "",
            "pause",
            "pause@step:0",
            "pause@step:x",
            "oops@step:2",
            "panic@step:1",
        ] {
            assert_eq!(Fault::parse(bad), None, "{bad}");
        }
    }
}
