//! The library's error type: every fallible operation returns [`Result`].

use std::path::PathBuf;

/// Everything that can go wrong in the library, with enough context to tell a user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A buffer or parameter does not match the shape an op was given.
    #[error("shape mismatch in {op}: {detail}")]
    Shape { op: &'static str, detail: String },

    /// Parameters that make no sense (zero sizes, a kernel larger than the padded input …).
    #[error("invalid parameters: {0}")]
    InvalidParams(String),

    /// A setting (a hyper-parameter, an augmentation range …) with an impossible value.
    /// `name` is the library's name for it, the CLI flag's name with `_` for `-`
    /// (`momentum`, `lr_step_size`); `message` says what is wrong ("must be in [0, 1), got
    /// 1.5"). The CLI shows it as `--lr-step-size must be …`.
    #[error("invalid parameters: {name} {message}")]
    Setting { name: &'static str, message: String },

    /// A data file is missing, truncated or not what it claims to be.
    #[error("{}: {message}", path.display())]
    Data { path: PathBuf, message: String },

    /// No GPU adapter could be found or opened.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),

    /// The work does not fit the adapter's limits (buffer size, workgroups …).
    #[error("GPU limit exceeded: {0}")]
    Limit(String),

    /// The GPU reported a validation error, ran out of memory or was lost.
    #[error("GPU error: {0}")]
    Gpu(String),

    /// Training stopped after a step because its hook asked (Ctrl-C): the hook saw
    /// [`crate::train::Event::Stopped`] first. Or the hook stopped the final evaluation, after
    /// the last epoch (`step` is then that epoch's last).
    #[error("interrupted after step {step} of epoch {epoch}")]
    Interrupted { epoch: usize, step: usize },
    /// Training diverged: the loss of a step was NaN or infinite.
    #[error(
        "the loss became {value} at step {step} (epoch {epoch}, batch {batch}); lower the \
         learning rate, or add warm-up steps or gradient clipping"
    )]
    Diverged {
        /// 1-based, counted over the whole run.
        step: usize,
        epoch: usize,
        batch: usize,
        /// "NaN" or "infinite".
        value: &'static str,
    },

    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    pub(crate) fn shape(op: &'static str, detail: impl Into<String>) -> Self {
        Error::Shape {
            op,
            detail: detail.into(),
        }
    }
    pub(crate) fn setting(name: &'static str, message: impl Into<String>) -> Self {
        Error::Setting {
            name,
            message: message.into(),
        }
    }
    pub(crate) fn data(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Data {
            path: path.into(),
            message: message.into(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
