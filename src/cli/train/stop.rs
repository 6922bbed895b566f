//! Why a run stops before its end, and when it saves on the way: the signals a user, a shell or
//! a scheduler sends (SIGINT, SIGTERM, SIGHUP), `--time-limit`, and the periodic checkpoints of
//! `--save-every-steps` and `--save-every-minutes`.

use std::cell::Cell;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

use crate::cli::Failure;

/// The signals that stop a run as Ctrl-C does.
const STOPPING: [i32; 3] = [SIGINT, SIGTERM, SIGHUP];

/// The stopping signals, watched by a thread of their own from [`Signals::watch`] on.
pub(crate) struct Signals {
    /// The first one received (0: none yet).
    first: Arc<AtomicI32>,
}

impl Signals {
    /// From now on, the first of SIGINT, SIGTERM and SIGHUP is recorded ([`Self::received`]),
    /// for the run to stop after its step; a second exits at once with 128 + its number, as a
    /// shell reports a process that signal killed, after removing the temporary file of any
    /// write in progress (finished files are renamed into place whole, so none is half-written).
    pub(crate) fn watch() -> Result<Self, Failure> {
        let cannot = |e: std::io::Error| Failure::other(format!("cannot watch for signals: {e}"));
        let mut signals = signal_hook::iterator::Signals::new(STOPPING).map_err(cannot)?;
        let first = Arc::new(AtomicI32::new(0));
        let seen = Arc::clone(&first);
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for sig in signals.forever() {
                    if seen
                        .compare_exchange(0, sig, Ordering::SeqCst, Ordering::SeqCst)
                        .is_err()
                    {
                        cnn_gpu::output::remove_temporary_files();
                        std::process::exit(128 + sig);
                    }
                }
            })
            .map_err(cannot)?;
        Ok(Signals { first })
    }

    /// The first stopping signal received, if any.
    pub(crate) fn received(&self) -> Option<i32> {
        match self.first.load(Ordering::SeqCst) {
            0 => None,
            sig => Some(sig),
        }
    }
}

/// The name of a stopping signal.
pub(crate) fn signal_name(sig: i32) -> &'static str {
    match sig {
        SIGINT => "SIGINT",
        SIGTERM => "SIGTERM",
        SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Why a run stopped early.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Why {
    Signal(i32),
    TimeLimit(Duration),
}

impl Why {
    /// The exit code: 128 + the signal's number, as shells expect; 75 (EX_TEMPFAIL: not done,
    /// try again) for the time limit.
    pub(crate) fn code(self) -> u8 {
        match self {
            Why::Signal(sig) => (128 + sig) as u8,
            Why::TimeLimit(_) => 75,
        }
    }

    /// What stopped it, for the message: "interrupted by SIGTERM", "stopped at the time limit
    /// (10m)".
    pub(crate) fn describe(self) -> String {
        match self {
            Why::Signal(sig) => format!("interrupted by {}", signal_name(sig)),
            Why::TimeLimit(d) => format!(
                "stopped at the time limit ({})",
                humantime::format_duration(d)
            ),
        }
    }
}

/// What stops a run: the signals and the time limit, from `started`.
pub(crate) struct Stops {
    pub(crate) signals: Signals,
    pub(crate) started: Instant,
    pub(crate) limit: Option<Duration>,
}

impl Stops {
    /// Whether the run should stop now, and why (a signal before the time limit).
    pub(crate) fn due(&self) -> Option<Why> {
        if let Some(sig) = self.signals.received() {
            return Some(Why::Signal(sig));
        }
        self.limit
            .filter(|&l| self.started.elapsed() >= l)
            .map(Why::TimeLimit)
    }
}

/// When the periodic checkpoints are due: every `steps` steps of the run, or `every` after the
/// last save.
pub(crate) struct Periodic {
    pub(crate) steps: Option<usize>,
    pub(crate) every: Option<Duration>,
    pub(crate) last_save: Cell<Instant>,
}

impl Periodic {
    /// Whether a checkpoint is due after the run's step `run_step` (1-based, over the whole run).
    pub(crate) fn due(&self, run_step: usize) -> bool {
        self.steps.is_some_and(|n| run_step.is_multiple_of(n))
            || self
                .every
                .is_some_and(|d| self.last_save.get().elapsed() >= d)
    }

    /// A checkpoint was just written: the minutes count from now.
    pub(crate) fn saved(&self) {
        self.last_save.set(Instant::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_reason_has_the_exit_code_shells_and_schedulers_expect() {
        assert_eq!(Why::Signal(SIGINT).code(), 130);
        assert_eq!(Why::Signal(SIGTERM).code(), 143);
        assert_eq!(Why::Signal(SIGHUP).code(), 129);
        assert_eq!(Why::TimeLimit(Duration::from_secs(1)).code(), 75);
        assert_eq!(Why::Signal(SIGHUP).describe(), "interrupted by SIGHUP");
        assert_eq!(
            Why::TimeLimit(Duration::from_secs(5400)).describe(),
            "stopped at the time limit (1h 30m)"
        );
    }

    #[test]
    fn periodic_checkpoints_fall_on_multiples_of_the_run_step() {
        let p = Periodic {
            steps: Some(3),
            every: None,
            last_save: Cell::new(Instant::now()),
        };
        let due: Vec<usize> = (1..=10).filter(|&s| p.due(s)).collect();
        assert_eq!(due, [3, 6, 9]);
        let by_time = Periodic {
            steps: None,
            every: Some(Duration::ZERO),
            last_save: Cell::new(Instant::now()),
        };
        assert!(by_time.due(1));
        let not_yet = Periodic {
            every: Some(Duration::from_secs(3600)),
            ..by_time
        };
        assert!(!not_yet.due(1));
    }
}
