//! `cnn-gpu train`: the flags become a [`cnn_gpu::train::TrainConfig`] and a [`Start`], and
//! the library's [`Session`] trains. What stays here is the command line's: the data, checkpoint
//! and metrics files, the printed lines and progress bars, the signals and the time limit, the
//! periodic checkpoints, the test faults, and the messages and exit codes.

use std::cell::Cell;
use std::io::IsTerminal;
use std::path::Path;
use std::time::{Duration, Instant};

use cnn_gpu::backend::Backend;
use cnn_gpu::checkpoint::{self, TrainState};
use cnn_gpu::metrics::{MetricsReporter, MetricsWriter};
use cnn_gpu::model::{Model, ModelSpec};
use cnn_gpu::train::{Event, FitOptions, Flow, Reporter, Resume, Session, Start, TrainConfig};

use super::fault::{Fault, FAULT_ENV};
use super::{open_backend, run_failure, Chosen, Failure};

mod args;
mod print;
mod stop;

pub(crate) use args::TrainArgs;
use print::PrintReporter;
use stop::{Periodic, Signals, Stops, Why};

pub(crate) fn train_command(args: &TrainArgs, fault: Option<Fault>) -> Result<(), Failure> {
    // From the start: a signal while the data loads stops the run before its first step.
    let stops = Stops {
        signals: Signals::watch()?,
        started: Instant::now(),
        limit: args.time_limit,
    };
    // Refuse bad values before any work.
    let spec = args
        .model
        .resolve(args.init.as_deref().or(args.resume.as_deref()))?;
    let resume = match &args.resume {
        Some(path) => Some(load_resume(path, &spec)?),
        None => None,
    };
    let mut cfg = args.config()?;
    if let Some(resume) = &resume {
        let state = resume.state();
        // The command Ctrl-C prints repeats the run's flags: the same settings are fine,
        // others would silently change the run.
        if args.optim.any_given() && cfg.optim != state.optim {
            return Err(Failure::usage(format!(
                "the optimizer flags given with --resume ({}) differ from the checkpoint's ({}): \
                 drop them to continue with the checkpoint's settings",
                cfg.optim.describe(),
                state.optim.describe()
            )));
        }
        resume.configure(&mut cfg);
        // `validate` refuses this too, after a zero epoch count or batch size, without the
        // flag that asks for more epochs.
        if cfg.epochs > 0 && cfg.batch_size > 0 && cfg.first_epoch > cfg.epochs {
            return Err(Failure::usage(format!(
                "epochs {}..={} is empty: the run already has {} epochs; ask for more with \
                 --epochs",
                cfg.first_epoch, cfg.epochs, state.epoch
            )));
        }
    }
    cfg.validate().map_err(Failure::config)?;
    if args.save_every == Some(0) {
        return Err(Failure::usage("--save-every must be at least 1"));
    }
    if args.save_every_steps == Some(0) {
        return Err(Failure::usage("--save-every-steps must be at least 1"));
    }
    let every = match args.save_every_minutes {
        Some(m) if !(m.is_finite() && m > 0.0 && m <= 1e9) => {
            return Err(Failure::usage(format!(
                "--save-every-minutes must be a positive number of minutes, got {m}"
            )))
        }
        m => m.map(|m| Duration::from_secs_f64(m * 60.0)),
    };
    // A bad checkpoint or metrics path fails now, not after training.
    if let Some(path) = &args.save {
        checkpoint::check_writable(path, "checkpoint").map_err(Failure::usage)?;
    }
    if let Some(path) = &args.metrics {
        checkpoint::check_writable(path, "metrics file").map_err(Failure::usage)?;
    }
    let start = match (&args.init, resume) {
        (Some(path), _) => Start::Weights(checkpoint::load(path, &spec).map_err(Failure::usage)?),
        (None, Some(resume)) => Start::Resume(resume),
        (None, None) => Start::Fresh,
    };
    let run = Run {
        args,
        spec,
        start,
        cfg,
        fault,
        stops,
        periodic: Periodic {
            steps: args.save_every_steps,
            every,
            last_save: Cell::new(Instant::now()),
        },
    };
    // The backend is chosen once, here: a fault later in the run ends it with an error (the
    // last checkpoint intact), never with a switch to another backend.
    match open_backend(&args.device)? {
        Chosen::Cpu(b) => {
            if let Some(f @ Fault::DeviceLost { .. }) = fault {
                return Err(Failure::usage(format!(
                    "{FAULT_ENV}={f:?} needs the GPU backend"
                )));
            }
            run.on(&b, None, &|| {})
        }
        Chosen::Gpu(b) => {
            let adapter = b.describe();
            run.on(&b, Some(adapter), &|| b.lose_device_for_test())
        }
    }
}

/// A checkpoint to resume from: it must hold the training state and the optimizer state that
/// its optimizer needs (momentum buffers, or Adam's two moments).
fn load_resume(path: &Path, spec: &ModelSpec) -> Result<Resume, Failure> {
    let ckpt = checkpoint::load(path, spec).map_err(Failure::usage)?;
    Resume::new(ckpt).ok_or_else(|| {
        Failure::usage(format!(
            "{}: no optimizer state to resume from (save it with --save-optimizer), or use \
             --init to start from its weights",
            path.display()
        ))
    })
}

/// A run the flags asked for, checked as far as it can be before the data loads.
struct Run<'a> {
    args: &'a TrainArgs,
    spec: ModelSpec,
    start: Start,
    cfg: TrainConfig,
    fault: Option<Fault>,
    stops: Stops,
    periodic: Periodic,
}

impl Run<'_> {
    /// Loads the dataset, trains the model on `b` (the GPU `adapter`, or the CPU when None)
    /// and prints the results. A stopping signal or the time limit stops it after the step in
    /// progress, or in an evaluation (saving a checkpoint to resume from, with --save); a
    /// second signal exits at once. `lose_device` serves the test-only device-lost fault.
    fn on<B: Backend>(
        self,
        b: &B,
        adapter: Option<String>,
        lose_device: &dyn Fn(),
    ) -> Result<(), Failure> {
        let Run {
            args,
            spec,
            start,
            cfg,
            fault,
            stops,
            periodic,
        } = self;
        let mnist = args.data.load()?;
        let session =
            Session::new(cfg, &mnist.train, &mnist.test, start).map_err(Failure::config)?;
        let cfg = session.config();
        let printer = if std::io::stdout().is_terminal() {
            PrintReporter::with_progress_bar(cfg.batch_size)
        } else {
            PrintReporter::plain()
        };
        // Created only now that the data loaded and the run is checked: a failed start leaves
        // no empty metrics file.
        let metrics_writer = match &args.metrics {
            Some(path) => Some(MetricsWriter::create(path).map_err(Failure::usage)?),
            None => None,
        };
        let mut model = session.model(b, spec).map_err(run_failure)?;
        if let Some(why) = stops.due() {
            return Err(Failure {
                code: why.code(),
                message: format!("{} before training started; nothing saved", why.describe()),
            });
        }
        if session.resuming() {
            println!("{}", resuming_line(cfg));
        }
        // What was last saved, and whether training is over (the final evaluation follows),
        // for the message when the run stops or fails later.
        let saved: Cell<Option<(usize, usize)>> = Cell::new(None);
        let trained = Cell::new(false);
        let why: Cell<Option<Why>> = Cell::new(None);
        let save =
            |m: &Model<B>, path: &Path, st: TrainState, optimizer: bool| -> cnn_gpu::Result<()> {
                checkpoint::save_model(b, m, path, optimizer, Some(&st))?;
                println!(
                    "Saved checkpoint {} (epoch {}, step {})",
                    path.display(),
                    st.epoch,
                    st.step
                );
                saved.set(Some((st.epoch, st.step)));
                periodic.saved();
                Ok(())
            };
        let mut hook = |event: &Event, m: &Model<B>| -> cnn_gpu::Result<Flow> {
            match *event {
                Event::Step { total, .. } => {
                    if let Some(f) = &fault {
                        f.after_step(total, &|| stops.signals.received().is_some(), lose_device);
                    }
                    // The run's last step goes on to the final save: a stop now falls in the
                    // final evaluation.
                    if session.is_last_step(total) {
                        return Ok(Flow::Continue);
                    }
                    if stops.due().is_none() && periodic.due(session.run_step(total)) {
                        return Ok(Flow::Checkpoint);
                    }
                }
                Event::Checkpoint { epoch, at } => {
                    if let Some(path) = &args.save {
                        save(m, path, session.state_at(epoch, &at), true)?;
                    }
                    return Ok(Flow::Continue);
                }
                Event::EpochEnd { epoch, total, last } => {
                    if last {
                        trained.set(true);
                    }
                    if let Some(path) = &args.save {
                        // The final checkpoint is written before the final evaluation, so that
                        // a stop or a failure there loses nothing.
                        let every = args.save_every.is_some_and(|n| epoch.is_multiple_of(n));
                        if last || every {
                            let st = session.state_at_epoch_end(epoch, total);
                            save(m, path, st, args.save_optimizer)?;
                        }
                    }
                    if last {
                        return Ok(Flow::Continue);
                    }
                }
                Event::Evaluating { epoch } => {
                    if let Some(f) = &fault {
                        f.in_evaluation(epoch, &|| stops.signals.received().is_some());
                    }
                }
                Event::Stopped { epoch, at } => {
                    if let (Some(path), false) = (&args.save, trained.get()) {
                        // Everything resuming needs: the momentum whatever --save-optimizer says.
                        save(m, path, session.state_at(epoch, &at), true)?;
                    }
                    return Ok(Flow::Continue);
                }
            }
            Ok(match stops.due() {
                Some(w) => {
                    why.set(Some(w));
                    Flow::Stop
                }
                None => Flow::Continue,
            })
        };
        let mut run = |reporter: &mut dyn Reporter| {
            let opts = FitOptions::reporting(reporter).hook(&mut hook);
            session.run(b, &mut model, opts)
        };
        let result = match metrics_writer {
            Some(writer) => {
                let kind = if adapter.is_some() { "gpu" } else { "cpu" };
                let mut reporter = MetricsReporter::new(printer, writer, kind, adapter);
                let result = run(&mut reporter);
                // Close the metrics file whatever happened: an interrupted run keeps its lines.
                let finished = reporter.finish();
                if result.is_ok() {
                    finished.map_err(Failure::other)?;
                }
                result
            }
            None => run(&mut { printer }),
        };
        let stopped = Stopped {
            why: why.get(),
            data_flags: args.data.flags(),
            save: args.save.as_deref(),
            saved: saved.get(),
            trained: trained.get(),
        };
        let summary = result.map_err(|e| stopped.failure(e))?;
        println!(
            "Steady state: {:.0} images/s (the first step, with start-up, took {:.3} s)",
            summary.fit.steady_images_per_sec, summary.fit.first_step_seconds
        );
        Ok(())
    }
}

/// The line a resumed run starts with: where, and with the checkpoint's settings.
fn resuming_line(cfg: &TrainConfig) -> String {
    let at = match &cfg.resume_within {
        Some(mid) => format!("epoch {}, step {}", cfg.first_epoch, mid.steps_done + 1),
        None => format!("epoch {}", cfg.first_epoch),
    };
    format!(
        "Resuming at {at} (seed {}, lr {}, {})",
        cfg.seed,
        cfg.lr,
        cfg.optim.describe()
    )
}

/// How a run that did not finish ended, for its message.
struct Stopped<'a> {
    /// What stopped it (None: a stop the hook did not ask for cannot happen; an error).
    why: Option<Why>,
    /// The data flags, for the `eval` command it prints.
    data_flags: Vec<String>,
    /// The --save path, and the (epoch, step) last written there.
    save: Option<&'a Path>,
    saved: Option<(usize, usize)>,
    /// Training was over: the stop or failure fell in the final evaluation.
    trained: bool,
}

impl Stopped<'_> {
    /// The failure of a run that ended with `e`. A stop exits with its reason's code (130 for
    /// Ctrl-C, 143 for SIGTERM, 129 for SIGHUP, 75 for the time limit) and the command that
    /// resumes from the checkpoint; other errors name the last checkpoint written, and that
    /// command too.
    fn failure(&self, e: cnn_gpu::Error) -> Failure {
        let resume = |path: &Path| format!("resume with: {}", resume_command(path));
        if let cnn_gpu::Error::Interrupted { epoch, step } = e {
            let why = self.why.unwrap_or(Why::Signal(signal_hook::consts::SIGINT));
            let what = why.describe();
            let message = match (self.save, self.trained) {
                (Some(path), true) => format!(
                    "{what} in the evaluation after the last epoch; training was complete and is \
                     saved in {}; evaluate it with: {}",
                    path.display(),
                    self.eval_command(path)
                ),
                (None, true) => format!(
                    "{what} in the evaluation after the last epoch; training was complete but \
                     nothing was saved (train with --save PATH to keep the weights)"
                ),
                (Some(path), false) => format!(
                    "{what} after step {step} of epoch {epoch}; saved {} with the optimizer \
                     state; {}",
                    path.display(),
                    resume(path)
                ),
                (None, false) => format!(
                    "{what} after step {step} of epoch {epoch}; nothing saved (train with \
                     --save PATH to be able to resume)"
                ),
            };
            return Failure {
                code: why.code(),
                message,
            };
        }
        let mut f = run_failure(e);
        if let (Some(path), Some((epoch, step))) = (self.save, self.saved) {
            f.message.push_str(&format!(
                "; the last checkpoint, {} (epoch {epoch}, step {step}), is intact",
                path.display()
            ));
            if !self.trained {
                f.message.push_str(&format!("; {}", resume(path)));
            }
        }
        f
    }

    /// The command that evaluates `checkpoint` on this run's data, quoted for a POSIX shell.
    fn eval_command(&self, checkpoint: &Path) -> String {
        let program = std::env::args_os()
            .next()
            .map_or_else(|| "cnn-gpu".into(), |a| a.to_string_lossy().into_owned());
        let mut words = vec![program, "eval".into(), "--checkpoint".into()];
        words.push(checkpoint.display().to_string());
        words.extend(self.data_flags.iter().cloned());
        words
            .iter()
            .map(|w| shell_quote(w))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// The command line that resumes this run from `checkpoint`: this one without --init or
/// --resume, plus `--resume checkpoint`, quoted for a POSIX shell.
fn resume_command(checkpoint: &Path) -> String {
    let mut words: Vec<String> = Vec::new();
    // args_os: std::env::args panics on an argument that is not UTF-8.
    let mut args = std::env::args_os().map(|a| a.to_string_lossy().into_owned());
    words.extend(args.next());
    while let Some(a) = args.next() {
        match a.as_str() {
            "--init" | "--resume" => {
                args.next();
            }
            _ if a.starts_with("--init=") || a.starts_with("--resume=") => {}
            _ => words.push(a),
        }
    }
    words.push("--resume".into());
    words.push(checkpoint.display().to_string());
    words
        .iter()
        .map(|w| shell_quote(w))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@%".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn words_are_quoted_for_a_posix_shell_only_when_needed() {
        assert_eq!(shell_quote("--data-dir=/a/b_c.st"), "--data-dir=/a/b_c.st");
        assert_eq!(shell_quote("my run.st"), "'my run.st'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
