//! Writing output files safely, for every command that writes one (checkpoints, pictures):
//! [`check_writable`] before the work, so a bad path fails early, and [`write_atomic`] at the
//! end, so a failure never leaves a half-written file under the final name.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The directory a file at `path` goes in (`.` for a bare file name).
fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Checks that a `what` (e.g. "checkpoint", "picture") can be written to `path`, by creating
/// and deleting a temporary file in its directory.
pub fn check_writable(path: &Path, what: &str) -> Result<()> {
    if path.is_dir() {
        return Err(Error::data(
            path,
            format!("is a directory; give the {what}'s file name"),
        ));
    }
    let dir = parent_dir(path);
    let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| {
        Error::data(
            path,
            format!("cannot write a {what} in {}: {}", dir.display(), plain(&e)),
        )
    })?;
    tmp.close().map_err(|e| {
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
    // tempfile creates 0600 files; ours get the usual 0666 less the umask, as any file the user
    // writes.
    let mut builder = tempfile::Builder::new();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    let mut tmp = builder
        .tempfile_in(&dir)
        .map_err(|e| fail("creating a temporary file", e))?;
    tmp.write_all(bytes).map_err(|e| fail("writing", e))?;
    tmp.as_file().sync_all().map_err(|e| fail("syncing", e))?;
    tmp.persist(path)
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
