//! Downloading the MNIST files when they are missing: mirrors tried in order, the SHA-256 of
//! each file's uncompressed content checked against the published value, and every file written
//! atomically (a temporary file in the target directory, renamed only once verified), so that a
//! dropped connection or a wrong file never leaves anything behind.
//!
//! Nothing here prints: progress goes through the [`Progress`] trait, and failures come back as
//! a [`FetchError`] that lists every attempt.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use flate2::read::GzDecoder;
use sha2::{Digest, Sha256};
use tempfile::NamedTempFile;

use super::idx::MAX_GZ_DECOMPRESSED;
use super::{
    DatasetKind, DATA_DIR_ENV, MNIST_FILES, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
};

/// The MNIST mirrors tried, in order, when none is given; each serves `<mirror><name>.gz`.
pub const MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

/// The Fashion-MNIST mirrors: the authors' S3 bucket, then their GitHub repository.
pub const FASHION_MIRRORS: [&str; 2] = [
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
];

/// The environment variable naming an MNIST mirror when `--mirror` is not given.
pub const MIRROR_ENV: &str = "CNN_GPU_MNIST_MIRROR";
/// The environment variable naming a Fashion-MNIST mirror when `--mirror` is not given.
pub const FASHION_MIRROR_ENV: &str = "CNN_GPU_FASHION_MNIST_MIRROR";

/// The SHA-256 of each Fashion-MNIST file's uncompressed content, computed with
/// `zcat <name>.gz | sha256sum` from Debian's dataset-fashion-mnist 0.0~git20200523.55506a9-1
/// (its gzip files are recompressed, so their MD5s differ from the upstream README's, but the
/// content is upstream's: other projects publish the same four values).
pub const FASHION_SHA256: [(&str, &str); 4] = [
    (
        TRAIN_IMAGES,
        "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    ),
    (
        TRAIN_LABELS,
        "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    ),
    (
        TEST_IMAGES,
        "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    ),
    (
        TEST_LABELS,
        "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
    ),
];

impl DatasetKind {
    /// The published SHA-256 of each file's uncompressed content.
    pub fn sha256(self) -> &'static [(&'static str, &'static str); 4] {
        match self {
            DatasetKind::Mnist => &MNIST_SHA256,
            DatasetKind::FashionMnist => &FASHION_SHA256,
        }
    }

    /// The mirrors tried, in order, when none is given.
    pub fn mirrors(self) -> &'static [&'static str] {
        match self {
            DatasetKind::Mnist => &MIRRORS,
            DatasetKind::FashionMnist => &FASHION_MIRRORS,
        }
    }

    /// The environment variable naming a mirror.
    pub fn mirror_env(self) -> &'static str {
        match self {
            DatasetKind::Mnist => MIRROR_ENV,
            DatasetKind::FashionMnist => FASHION_MIRROR_ENV,
        }
    }
}

/// The SHA-256 of each MNIST file's UNCOMPRESSED content (so a file recompressed by a mirror
/// still passes). Computed from the official files with `zcat <name>.gz | sha256sum`.
pub const MNIST_SHA256: [(&str, &str); 4] = [
    (
        TRAIN_IMAGES,
        "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    ),
    (
        TRAIN_LABELS,
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    (
        TEST_IMAGES,
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    (
        TEST_LABELS,
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
];

/// Gives up on a mirror that does not answer the connection in this time.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Gives up when the response headers do not arrive in this time.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Gives up when the body stalls (no byte arrives) for this long; a slow but steady download is
/// never cut off.
const STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a download reports as it goes. Every method has an empty default.
pub trait Progress {
    /// A download of `name.gz` from `url` starts.
    fn begin(&mut self, _name: &str, _url: &str) {}
    /// `downloaded` bytes have arrived so far, of `total` when the server said.
    fn advance(&mut self, _downloaded: u64, _total: Option<u64>) {}
    /// The file arrived, its hash matched and it is in place: `bytes` downloaded.
    fn done(&mut self, _name: &str, _bytes: u64) {}
    /// This attempt failed (`reason`); the next mirror, if any, is tried.
    fn failed(&mut self, _name: &str, _url: &str, _reason: &str) {}
}

/// Reports nothing.
pub struct NoProgress;

impl Progress for NoProgress {}

/// One failed try to download a file from a mirror.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub url: String,
    pub reason: String,
}

/// Why the files could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The target directory could not be created or written to.
    #[error(
        "cannot download into {}: {source}. Put the files there by hand, or point \
         --data-dir or {DATA_DIR_ENV} at a directory that holds them",
        dir.display()
    )]
    Io {
        dir: PathBuf,
        #[source]
        source: io::Error,
    },
    /// No mirror delivered `file` (the attempts say why); `missing` are the files still absent
    /// from `dir`, this one included.
    #[error("{}", unavailable_message(dir, file, missing, attempts))]
    Unavailable {
        dir: PathBuf,
        file: String,
        missing: Vec<String>,
        attempts: Vec<Attempt>,
    },
}

fn unavailable_message(dir: &Path, file: &str, missing: &[String], attempts: &[Attempt]) -> String {
    let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let mut msg = format!(
        "could not download {} into {}: no mirror delivered {file}.gz",
        missing.join(", "),
        shown.display()
    );
    for a in attempts {
        msg.push_str(&format!("\n  {}: {}", a.url, a.reason));
    }
    msg.push_str(&format!(
        "\nThe dataset needs four files: {}, each raw or gzipped with a .gz suffix. \
         Download them by hand into {}, or point --data-dir or {DATA_DIR_ENV} at a directory \
         that holds them; --mirror URL picks another mirror.",
        MNIST_FILES.join(", "),
        shown.display()
    ));
    msg
}

/// The mirrors to try for `kind`: those given on the command line if any, else the one in its
/// environment variable ([`DatasetKind::mirror_env`]) if set and non-empty, else its defaults
/// ([`DatasetKind::mirrors`]). Each ends with `/`.
pub fn resolve_mirrors(cli: &[String], kind: DatasetKind) -> Vec<String> {
    resolve_mirrors_from(cli, std::env::var(kind.mirror_env()).ok(), kind.mirrors())
}

fn resolve_mirrors_from(cli: &[String], env: Option<String>, defaults: &[&str]) -> Vec<String> {
    let chosen: Vec<String> = match env {
        _ if !cli.is_empty() => cli.to_vec(),
        Some(m) if !m.trim().is_empty() => vec![m.trim().to_string()],
        _ => defaults.iter().map(|m| m.to_string()).collect(),
    };
    chosen
        .into_iter()
        .map(|m| if m.ends_with('/') { m } else { m + "/" })
        .collect()
}

/// Downloads each `(name, sha256)` of `files` as `<mirror><name>.gz` into `dir/<name>.gz`,
/// trying `mirrors` in order, and returns the paths written. `sha256` is the lowercase hex
/// SHA-256 of the uncompressed content; a file whose hash differs is refused.
///
/// `dir` (and its missing parents) is created if needed, and removed again if the fetch fails
/// with nothing in it. Each file is downloaded into a temporary file in `dir`, verified
/// and only then renamed into place, so a failure leaves no partial file. Files fetched before a
/// failure stay (they are complete and verified); the first file that no mirror delivers ends
/// the fetch with [`FetchError::Unavailable`] listing every attempt.
pub fn fetch_files(
    dir: &Path,
    mirrors: &[String],
    files: &[(&str, &str)],
    progress: &mut dyn Progress,
) -> Result<Vec<PathBuf>, FetchError> {
    // The directories this creates, deepest first: a failure removes them again.
    let created: Vec<&Path> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    let result = fs::create_dir_all(dir)
        .map_err(|source| FetchError::Io {
            dir: dir.to_path_buf(),
            source,
        })
        .and_then(|_| fetch_into(dir, mirrors, files, progress));
    if result.is_err() {
        // Leave no empty directory behind either; each removal fails harmlessly if anything
        // is in it (a complete file fetched before the failure).
        for d in &created {
            if fs::remove_dir(d).is_err() {
                break;
            }
        }
    }
    result
}

fn fetch_into(
    dir: &Path,
    mirrors: &[String],
    files: &[(&str, &str)],
    progress: &mut dyn Progress,
) -> Result<Vec<PathBuf>, FetchError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_recv_response(Some(RESPONSE_TIMEOUT))
        .timeout_per_read(Some(STALL_TIMEOUT))
        .user_agent(concat!("cnn-gpu/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let mut written = Vec::with_capacity(files.len());
    for (i, &(name, sha256)) in files.iter().enumerate() {
        let target = dir.join(format!("{name}.gz"));
        let mut attempts = Vec::new();
        for mirror in mirrors {
            let url = format!("{mirror}{name}.gz");
            progress.begin(name, &url);
            match download(&agent, &url, dir, &target, sha256, progress) {
                Ok(bytes) => {
                    progress.done(name, bytes);
                    attempts.clear();
                    break;
                }
                Err(Failed::Local(source)) => {
                    progress.failed(name, &url, &source.to_string());
                    return Err(FetchError::Io {
                        dir: dir.to_path_buf(),
                        source,
                    });
                }
                Err(Failed::Remote(reason)) => {
                    progress.failed(name, &url, &reason);
                    attempts.push(Attempt { url, reason });
                }
            }
        }
        if !target.exists() {
            if mirrors.is_empty() {
                attempts.push(Attempt {
                    url: "(no mirror)".into(),
                    reason: "no mirror was given".into(),
                });
            }
            return Err(FetchError::Unavailable {
                dir: dir.to_path_buf(),
                file: name.to_string(),
                missing: files[i..].iter().map(|(n, _)| n.to_string()).collect(),
                attempts,
            });
        }
        written.push(target);
    }
    Ok(written)
}

/// Why one download failed: on our side (stop) or the mirror's (try the next).
enum Failed {
    Local(io::Error),
    Remote(String),
}

/// Downloads `url` into a temporary file in `dir`, checks the uncompressed content's SHA-256
/// and renames it to `target`. Returns the bytes downloaded.
fn download(
    agent: &ureq::Agent,
    url: &str,
    dir: &Path,
    target: &Path,
    sha256: &str,
    progress: &mut dyn Progress,
) -> Result<u64, Failed> {
    let mut response = agent.get(url).call().map_err(|e| match e {
        ureq::Error::StatusCode(code) => Failed::Remote(format!("HTTP status {code}")),
        other => Failed::Remote(other.to_string()),
    })?;
    let total = response.body().content_length();
    if total.is_some_and(|n| n > MAX_GZ_DECOMPRESSED) {
        return Err(Failed::Remote(format!(
            "the server announces {} bytes, more than the {MAX_GZ_DECOMPRESSED} accepted",
            total.unwrap_or(0)
        )));
    }
    // Dropped on any early return, which deletes it.
    let prefix = format!(
        ".{}.part-",
        target.file_name().unwrap_or_default().to_string_lossy()
    );
    let mut tmp = NamedTempFile::with_prefix_in(prefix, dir).map_err(Failed::Local)?;

    // A read error is the mirror's fault (a dropped connection, a body shorter than its
    // Content-Length); a write error is ours (a full disk).
    let mut body = response
        .body_mut()
        .with_config()
        .limit(MAX_GZ_DECOMPRESSED)
        .reader();
    let mut out = BufWriter::new(tmp.as_file_mut());
    let mut buf = vec![0u8; 64 << 10];
    let mut downloaded = 0u64;
    progress.advance(0, total);
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Failed::Remote(format!(
                    "the download broke off after {downloaded} bytes: {e}"
                )))
            }
        };
        out.write_all(&buf[..n]).map_err(Failed::Local)?;
        downloaded += n as u64;
        progress.advance(downloaded, total);
    }
    out.flush().map_err(Failed::Local)?;
    drop(out);
    if total.is_some_and(|n| n != downloaded) {
        return Err(Failed::Remote(format!(
            "received {downloaded} bytes of the {} announced",
            total.unwrap_or(0)
        )));
    }

    let file = tmp.as_file_mut();
    file.seek(SeekFrom::Start(0)).map_err(Failed::Local)?;
    let actual = sha256_of_gzip(file).map_err(|e| {
        Failed::Remote(format!(
            "the {downloaded} bytes received are not a readable gzip file: {e}"
        ))
    })?;
    if actual != sha256 {
        return Err(Failed::Remote(format!(
            "SHA-256 mismatch: the uncompressed content hashes to {actual}, expected {sha256}; \
             the file was refused"
        )));
    }
    file.sync_all().map_err(Failed::Local)?;
    tmp.persist(target).map_err(|e| Failed::Local(e.error))?;
    Ok(downloaded)
}

/// The lowercase hex SHA-256 of a gzip stream's decompressed content (read up to
/// [`MAX_GZ_DECOMPRESSED`] bytes; more is an error).
fn sha256_of_gzip(file: &mut File) -> io::Result<String> {
    let mut decoder = GzDecoder::new(BufReader::new(file)).take(MAX_GZ_DECOMPRESSED + 1);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    let mut total = 0u64;
    loop {
        let n = match decoder.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        if total > MAX_GZ_DECOMPRESSED {
            return Err(io::Error::other(format!(
                "decompresses to more than {MAX_GZ_DECOMPRESSED} bytes"
            )));
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

/// The lowercase hex SHA-256 of `bytes`, as [`fetch_files`] expects for uncompressed content.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mirror_precedence_is_cli_then_env_then_defaults() {
        let cli = vec!["http://a/x".to_string(), "http://b/".to_string()];
        let env = Some("http://env".to_string());
        assert_eq!(
            resolve_mirrors_from(&cli, env.clone(), &MIRRORS),
            ["http://a/x/", "http://b/"]
        );
        assert_eq!(resolve_mirrors_from(&[], env, &MIRRORS), ["http://env/"]);
        assert_eq!(
            resolve_mirrors_from(&[], Some(" ".into()), &MIRRORS),
            MIRRORS
        );
        assert_eq!(
            resolve_mirrors_from(&[], None, &FASHION_MIRRORS),
            FASHION_MIRRORS
        );
    }

    #[test]
    fn the_hash_table_covers_the_four_files() {
        for kind in [DatasetKind::Mnist, DatasetKind::FashionMnist] {
            let names: Vec<&str> = kind.sha256().iter().map(|(n, _)| *n).collect();
            assert_eq!(names, MNIST_FILES);
            for (_, h) in kind.sha256() {
                assert!(h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()));
            }
        }
    }

    #[test]
    fn sha256_of_the_empty_string() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
