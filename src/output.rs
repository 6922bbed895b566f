//! Writing output files safely, for every command that writes one (checkpoints, pictures):
//! [`check_writable`] before the work, so a bad path fails early, and [`write_atomic`] at the
//! end, so a failure never leaves a half-written file under the final name.
//!
//! The temporary files are named `.<name>.<random>.partial` beside the output. The files being
//! written are listed, so that [`remove_temporary_files`] can delete them before an exit that
//! skips destructors (a second Ctrl-C); one left by a process killed outright is deleted by the
//! next [`check_writable`] of the same path.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use crate::{Error, Result};

/// The directory a file at `path` goes in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// The temporary files being written now.
static IN_PROGRESS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Deletes the temporary files of the writes in progress, for an exit that will not finish
/// them (their final files are untouched).
pub fn remove_temporary_files() {
    let list = IN_PROGRESS.lock().unwrap_or_else(|p| p.into_inner());
    for p in list.iter() {
        let _ = std::fs::remove_file(p);
    }
}

/// The temporary files' name around the output's: `.<name>.` and `.partial`.
fn temporary_affixes(path: &Path) -> (String, &'static str) {
    let name = path
        .file_name()
        .map_or_else(|| "output".into(), |n| n.to_string_lossy().into_owned());
    (format!(".{name}."), ".partial")
}

/// A temporary file for `path`, in `dir`, listed as in progress until taken or dropped.
struct Temporary {
    /// Some until [`Self::take`].
    file: Option<tempfile::NamedTempFile>,
}

impl Temporary {
    fn new_in(path: &Path, dir: &Path) -> std::io::Result<Self> {
        let (prefix, suffix) = temporary_affixes(path);
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix).suffix(suffix);
        // tempfile creates 0600 files; ours get the usual 0666 less the umask, as any file the
        // user writes.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let file = builder.tempfile_in(dir)?;
        IN_PROGRESS
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(file.path().to_path_buf());
        Ok(Temporary { file: Some(file) })
    }

    fn file(&mut self) -> &mut std::fs::File {
        self.file.as_mut().expect("not taken").as_file_mut()
    }

    /// The file, no longer listed: it is about to be renamed into place or deleted.
    fn take(mut self) -> tempfile::NamedTempFile {
        let file = self.file.take().expect("taken once");
        unlist(file.path());
        file
    }
}

impl Drop for Temporary {
    fn drop(&mut self) {
        if let Some(f) = &self.file {
            unlist(f.path());
        }
    }
}

fn unlist(path: &Path) {
    let mut list = IN_PROGRESS.lock().unwrap_or_else(|p| p.into_inner());
    list.retain(|p| p != path);
}

/// Deletes the temporary files an earlier process left beside `path` when it was killed
/// while writing it.
fn remove_stale(path: &Path, dir: &Path) {
    let (prefix, suffix) = temporary_affixes(path);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with(&prefix) && name.ends_with(suffix) {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Checks that a `what` (e.g. "checkpoint", "picture") can be written to `path`, by creating
/// and deleting a temporary file in its directory (and deletes the temporary files a killed
/// process left there for `path`).
pub fn check_writable(path: &Path, what: &str) -> Result<()> {
    if path.is_dir() {
        return Err(Error::data(
            path,
            format!("is a directory; give the {what}'s file name"),
        ));
    }
    let dir = parent_dir(path);
    remove_stale(path, &dir);
    let tmp = Temporary::new_in(path, &dir).map_err(|e| {
        Error::data(
            path,
            format!("cannot write a {what} in {}: {}", dir.display(), plain(&e)),
        )
    })?;
    tmp.take().close().map_err(|e| {
        Error::data(
            path,
            format!(
                "cannot remove a test file in {}: {}",
                dir.display(),
                plain(&e)
            ),
        )
    })
}

/// Writes the `what`'s `bytes` to `path` atomically: a temporary file in the same directory,
/// written, synced, then renamed over `path`. On failure nothing is left behind.
pub fn write_atomic(path: &Path, bytes: &[u8], what: &str) -> Result<()> {
    let dir = parent_dir(path);
    let fail = |step: &str, e: std::io::Error| {
        Error::data(
            path,
            format!(
                "cannot write the {what} ({step} in {}): {}",
                dir.display(),
                plain(&e)
            ),
        )
    };
    let mut tmp =
        Temporary::new_in(path, &dir).map_err(|e| fail("creating a temporary file", e))?;
    tmp.file()
        .write_all(bytes)
        .map_err(|e| fail("writing", e))?;
    tmp.file().sync_all().map_err(|e| fail("syncing", e))?;
    tmp.take()
        .persist(path)
        .map_err(|e| fail("renaming into place", e.error))?;
    Ok(())
}

/// An I/O error without the temporary file's name that tempfile adds (the message names the
/// directory instead).
fn plain(e: &std::io::Error) -> String {
    let s = e.to_string();
    match s.split_once(" at path ") {
        Some((head, _)) => head.to_string(),
        None => s,
    }
}
