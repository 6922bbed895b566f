//! Downloading MNIST, against a tiny HTTP server on 127.0.0.1 (no other network is touched).
//! The server serves small generated MNIST-format files, so these tests pass their own hash
//! table to `fetch_files`; the binary, which uses MNIST's real hashes, is tested on failures.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use cnn_gpu::data::fetch::{fetch_files, sha256_hex, FetchError, Progress};
use cnn_gpu::data::{
    load_idx_dataset, load_mnist, missing_files, write_idx_images, write_idx_labels, Compression,
    Dataset, MNIST_FILES, TEST_IMAGES, TEST_LABELS, TRAIN_IMAGES, TRAIN_LABELS,
};

/// What the server answers for a path.
#[derive(Clone)]
enum Reply {
    /// 200 with this body.
    Body(Vec<u8>),
    /// 200 announcing the whole body's length, then only its first `n` bytes, then the
    /// connection closes.
    DropAfter(Vec<u8>, usize),
}

/// A one-thread HTTP/1.1 server on 127.0.0.1 that answers GETs from a fixed table (404 for any
/// other path), one connection at a time. It stops when dropped, or by itself after 30 s.
struct Server {
    url: String,
    stop: Arc<AtomicBool>,
    requests: Arc<Mutex<Vec<String>>>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(routes: HashMap<String, Reply>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/mnist/", listener.local_addr().unwrap());
        let stop = Arc::new(AtomicBool::new(false));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, requests) = (stop.clone(), requests.clone());
            std::thread::spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            if let Some(path) = answer(stream, &routes) {
                                requests.lock().unwrap().push(path);
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
            })
        };
        Server {
            url,
            stop,
            requests,
            thread: Some(thread),
        }
    }

    /// The mirror list `fetch_files` takes: this server alone.
    fn mirrors(&self) -> Vec<String> {
        vec![self.url.clone()]
    }

    fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request and answers it; returns the path asked for.
fn answer(mut stream: TcpStream, routes: &HashMap<String, Reply>) -> Option<String> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && head.len() < 16 << 10 {
        if stream.read(&mut byte).ok()? == 0 {
            return None;
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split_whitespace().nth(1)?.to_string();
    let header = |len: usize| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
             Content-Length: {len}\r\nConnection: close\r\n\r\n"
        )
    };
    let _ = match routes.get(&path) {
        Some(Reply::Body(body)) => stream
            .write_all(header(body.len()).as_bytes())
            .and_then(|_| stream.write_all(body)),
        Some(Reply::DropAfter(body, n)) => stream
            .write_all(header(body.len()).as_bytes())
            .and_then(|_| stream.write_all(&body[..*n])),
        None => stream.write_all(
            b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\nConnection: close\r\n\r\nnot found",
        ),
    };
    let _ = stream.flush();
    Some(path)
}

/// A mirror URL on which nothing listens: a port that was free a moment ago.
fn closed_mirror() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("http://127.0.0.1:{port}/mnist/")
}

/// A small MNIST-format dataset: for each of the four files, its gzipped bytes (what a mirror
/// serves) and the SHA-256 of its uncompressed content (what `fetch_files` checks).
struct Fixture {
    gz: HashMap<&'static str, Vec<u8>>,
    sha256: Vec<(&'static str, String)>,
    train: Dataset,
}

impl Fixture {
    fn new() -> Fixture {
        let work = tempfile::tempdir().unwrap();
        let (rows, cols) = (7, 5);
        let make = |n: usize, salt: usize| {
            let images: Vec<u8> = (0..n * rows * cols)
                .map(|i| ((i * 31 + salt) % 256) as u8)
                .collect();
            let labels: Vec<u8> = (0..n).map(|i| ((i + salt) % 10) as u8).collect();
            (images, labels)
        };
        let mut gz = HashMap::new();
        let mut sha256 = Vec::new();
        let mut train = None;
        for (i, name) in MNIST_FILES.into_iter().enumerate() {
            let (images, labels) = make(if i < 2 { 12 } else { 6 }, i / 2);
            for compression in [Compression::Raw, Compression::Gzip] {
                let path = match compression {
                    Compression::Raw => work.path().join(name),
                    Compression::Gzip => work.path().join(format!("{name}.gz")),
                };
                if i % 2 == 0 {
                    write_idx_images(&path, rows, cols, &images, compression).unwrap();
                } else {
                    write_idx_labels(&path, &labels, compression).unwrap();
                }
            }
            if i == 0 {
                train = Some(Dataset::new(images, labels, rows, cols).unwrap());
            }
            let raw = std::fs::read(work.path().join(name)).unwrap();
            sha256.push((name, sha256_hex(&raw)));
            gz.insert(
                name,
                std::fs::read(work.path().join(format!("{name}.gz"))).unwrap(),
            );
        }
        Fixture {
            gz,
            sha256,
            train: train.unwrap(),
        }
    }

    /// The hash table `fetch_files` takes.
    fn files(&self) -> Vec<(&str, &str)> {
        self.sha256.iter().map(|(n, h)| (*n, h.as_str())).collect()
    }

    /// Routes serving every file as it is.
    fn routes(&self) -> HashMap<String, Reply> {
        self.gz
            .iter()
            .map(|(name, bytes)| (format!("/mnist/{name}.gz"), Reply::Body(bytes.clone())))
            .collect()
    }
}

/// Records what `fetch_files` reports.
#[derive(Default)]
struct Recorder {
    begun: Vec<String>,
    done: Vec<(String, u64)>,
    failed: Vec<(String, String)>,
    last: Option<(u64, Option<u64>)>,
}

impl Progress for Recorder {
    fn begin(&mut self, _name: &str, url: &str) {
        self.begun.push(url.to_string());
    }
    fn advance(&mut self, downloaded: u64, total: Option<u64>) {
        self.last = Some((downloaded, total));
    }
    fn done(&mut self, name: &str, bytes: u64) {
        self.done.push((name.to_string(), bytes));
    }
    fn failed(&mut self, _name: &str, url: &str, reason: &str) {
        self.failed.push((url.to_string(), reason.to_string()));
    }
}

/// The names in `dir` (hidden temporary files included), sorted; empty if it does not exist.
fn listing(dir: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn gz_names() -> Vec<String> {
    let mut names: Vec<String> = MNIST_FILES.iter().map(|n| format!("{n}.gz")).collect();
    names.sort();
    names
}

fn unavailable(err: FetchError) -> (String, Vec<String>, Vec<(String, String)>) {
    let message = err.to_string();
    match err {
        FetchError::Unavailable {
            missing, attempts, ..
        } => (
            message,
            missing,
            attempts.into_iter().map(|a| (a.url, a.reason)).collect(),
        ),
        other => panic!("expected Unavailable, got {other:?}"),
    }
}

#[test]
fn fetches_verifies_and_loads_all_four_files() {
    let fx = Fixture::new();
    let server = Server::start(fx.routes());
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("created/by/fetch");
    assert_eq!(missing_files(&dir), MNIST_FILES);

    let mut progress = Recorder::default();
    let written = fetch_files(&dir, &server.mirrors(), &fx.files(), &mut progress).unwrap();

    let expected: Vec<PathBuf> = MNIST_FILES
        .iter()
        .map(|n| dir.join(format!("{n}.gz")))
        .collect();
    assert_eq!(written, expected);
    assert_eq!(listing(&dir), gz_names(), "the four files and nothing else");
    assert!(missing_files(&dir).is_empty());
    for (name, bytes) in &fx.gz {
        let stored = std::fs::read(dir.join(format!("{name}.gz"))).unwrap();
        assert_eq!(&stored, bytes, "{name}: stored as downloaded");
    }
    let train = load_idx_dataset(
        &dir.join(format!("{TRAIN_IMAGES}.gz")),
        &dir.join(format!("{TRAIN_LABELS}.gz")),
    )
    .unwrap();
    assert_eq!(train, fx.train);
    let mnist = load_mnist(&dir).unwrap();
    assert_eq!((mnist.train.len(), mnist.test.len()), (12, 6));

    assert_eq!(progress.done.len(), 4);
    assert!(progress.failed.is_empty(), "{:?}", progress.failed);
    let last_len = fx.gz[TEST_LABELS].len() as u64;
    assert_eq!(progress.last, Some((last_len, Some(last_len))));
    assert_eq!(
        progress.done.last().unwrap(),
        &(TEST_LABELS.to_string(), last_len)
    );
    assert_eq!(server.requests().len(), 4);
}

#[test]
fn a_file_whose_hash_differs_is_refused_and_nothing_is_left() {
    let fx = Fixture::new();
    // A well-formed gzip file, but of other content: the train labels served as the images.
    let mut routes = fx.routes();
    routes.insert(
        format!("/mnist/{TRAIN_IMAGES}.gz"),
        Reply::Body(fx.gz[TRAIN_LABELS].clone()),
    );
    let server = Server::start(routes);
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("mnist");

    let err = fetch_files(
        &dir,
        &server.mirrors(),
        &fx.files(),
        &mut Recorder::default(),
    )
    .unwrap_err();
    let (message, missing, attempts) = unavailable(err);
    assert_eq!(
        missing, MNIST_FILES,
        "the first file failed: all four missing"
    );
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0].0, format!("{}{TRAIN_IMAGES}.gz", server.url));
    assert!(attempts[0].1.contains("SHA-256 mismatch"), "{message}");
    assert!(!dir.exists(), "the directory it created is removed again");

    // Every directory it created, not just the last one.
    let nested = root.path().join("some/new/dir/mnist");
    let err = fetch_files(
        &nested,
        &server.mirrors(),
        &fx.files(),
        &mut Recorder::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("SHA-256 mismatch"), "{err}");
    assert!(!root.path().join("some").exists(), "no parent left behind");
    assert_eq!(listing(root.path()), Vec::<String>::new());

    // Into an existing directory: that stays, empty.
    let existing = tempfile::tempdir().unwrap();
    let err = fetch_files(
        existing.path(),
        &server.mirrors(),
        &fx.files(),
        &mut Recorder::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("SHA-256 mismatch"), "{err}");
    assert_eq!(listing(existing.path()), Vec::<String>::new());
}

#[test]
fn a_file_that_is_not_gzip_is_refused() {
    let fx = Fixture::new();
    let mut routes = fx.routes();
    routes.insert(
        format!("/mnist/{TRAIN_IMAGES}.gz"),
        Reply::Body(b"<html>captive portal</html>".to_vec()),
    );
    let server = Server::start(routes);
    let dir = tempfile::tempdir().unwrap();
    let err = fetch_files(
        dir.path(),
        &server.mirrors(),
        &fx.files(),
        &mut Recorder::default(),
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("not a readable gzip file"),
        "{err}"
    );
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}

#[test]
fn a_connection_dropped_mid_body_leaves_nothing() {
    let fx = Fixture::new();
    let mut routes = fx.routes();
    let body = fx.gz[TRAIN_IMAGES].clone();
    let half = body.len() / 2;
    routes.insert(
        format!("/mnist/{TRAIN_IMAGES}.gz"),
        Reply::DropAfter(body, half),
    );
    let server = Server::start(routes);
    let dir = tempfile::tempdir().unwrap();

    let mut progress = Recorder::default();
    let err = fetch_files(dir.path(), &server.mirrors(), &fx.files(), &mut progress).unwrap_err();
    let (message, _, attempts) = unavailable(err);
    assert_eq!(attempts.len(), 1, "{message}");
    assert!(
        attempts[0].1.contains("broke off") || attempts[0].1.contains("announced"),
        "{message}"
    );
    assert_eq!(listing(dir.path()), Vec::<String>::new(), "no partial file");
    assert_eq!(progress.failed.len(), 1);
    assert!(progress.done.is_empty());
}

#[test]
fn a_mirror_that_answers_404_is_skipped_for_the_next() {
    let fx = Fixture::new();
    let empty = Server::start(HashMap::new());
    let full = Server::start(fx.routes());
    let dir = tempfile::tempdir().unwrap();

    let mut progress = Recorder::default();
    let mirrors = [empty.url.clone(), full.url.clone()];
    fetch_files(dir.path(), &mirrors, &fx.files(), &mut progress).unwrap();

    assert_eq!(listing(dir.path()), gz_names());
    assert_eq!(
        progress.failed.len(),
        4,
        "each file tried on the first mirror"
    );
    for (url, reason) in &progress.failed {
        assert!(url.starts_with(&empty.url), "{url}");
        assert!(reason.contains("404"), "{reason}");
    }
    assert_eq!(progress.done.len(), 4);
    assert_eq!(empty.requests().len(), 4);
    assert_eq!(full.requests().len(), 4);
    assert_eq!(load_mnist(dir.path()).unwrap().train, fx.train);
}

#[test]
fn only_the_files_asked_for_are_fetched() {
    let fx = Fixture::new();
    let server = Server::start(fx.routes());
    let dir = tempfile::tempdir().unwrap();
    let files = fx.files();
    fetch_files(
        dir.path(),
        &server.mirrors(),
        &files[2..],
        &mut Recorder::default(),
    )
    .unwrap();
    assert_eq!(missing_files(dir.path()), [TRAIN_IMAGES, TRAIN_LABELS]);
    assert_eq!(
        server.requests(),
        [
            format!("/mnist/{TEST_IMAGES}.gz"),
            format!("/mnist/{TEST_LABELS}.gz")
        ]
    );
}

#[test]
fn all_mirrors_down_names_the_files_the_mirrors_and_where_to_put_them() {
    let fx = Fixture::new();
    let mirrors = [closed_mirror(), closed_mirror()];
    let dir = tempfile::tempdir().unwrap();

    let err = fetch_files(dir.path(), &mirrors, &fx.files(), &mut Recorder::default()).unwrap_err();
    let (message, missing, attempts) = unavailable(err);
    assert_eq!(missing, MNIST_FILES);
    let urls: Vec<String> = attempts.iter().map(|a| a.0.clone()).collect();
    assert_eq!(
        urls,
        mirrors
            .iter()
            .map(|m| format!("{m}{TRAIN_IMAGES}.gz"))
            .collect::<Vec<_>>()
    );
    for name in MNIST_FILES {
        assert!(message.contains(name), "{name} in {message}");
    }
    for m in &mirrors {
        assert!(message.contains(m.as_str()), "{m} in {message}");
    }
    let shown = std::path::absolute(dir.path()).unwrap();
    for what in [
        shown.to_str().unwrap(),
        "--data-dir",
        "CNN_GPU_DATA_DIR",
        "--mirror",
    ] {
        assert!(message.contains(what), "{what} in {message}");
    }
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}

// The binary: it checks MNIST's real hashes, so only its refusals can be tested offline.

fn cnn_gpu(args: &[&str], mirror_env: Option<&str>) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_cnn-gpu"));
    cmd.args(args)
        .env_remove("CNN_GPU_DATA_DIR")
        .env_remove("CNN_GPU_MNIST_MIRROR");
    // Nothing may leave 127.0.0.1, whatever the developer's proxy settings.
    for var in [
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
    ] {
        cmd.env_remove(var);
    }
    if let Some(m) = mirror_env {
        cmd.env("CNN_GPU_MNIST_MIRROR", m);
    }
    cmd.output().expect("run cnn-gpu")
}

/// Exit 2, one `error:` line naming the train images, and stderr.
#[track_caller]
fn assert_data_refusal(out: &Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    let errors: Vec<&str> = err.lines().filter(|l| l.starts_with("error:")).collect();
    assert_eq!(errors.len(), 1, "{err}");
    assert!(errors[0].contains(TRAIN_IMAGES), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty(), "no training output: {err}");
    err
}

#[test]
fn cli_reports_unreachable_mirrors_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let (from_env, from_flag) = (closed_mirror(), closed_mirror());

    let out = cnn_gpu(
        &["train", "--backend", "cpu", "--data-dir", d],
        Some(&from_env),
    );
    let err = assert_data_refusal(&out);
    assert!(
        err.contains(&from_env) && err.contains("--data-dir") && err.contains(d),
        "{err}"
    );
    assert!(
        err.contains(&format!("downloading {TRAIN_IMAGES}.gz from {from_env}")),
        "{err}"
    );

    // --mirror overrides the environment variable.
    let args = [
        "train",
        "--backend",
        "cpu",
        "--data-dir",
        d,
        "--mirror",
        &from_flag,
    ];
    let err = assert_data_refusal(&cnn_gpu(&args, Some(&from_env)));
    assert!(
        err.contains(&from_flag) && !err.contains(&from_env),
        "{err}"
    );
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}

#[test]
fn cli_with_no_download_does_not_fetch() {
    let fx = Fixture::new();
    let server = Server::start(fx.routes());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let args = [
        "train",
        "--backend",
        "cpu",
        "--data-dir",
        d,
        "--no-download",
    ];
    let err = assert_data_refusal(&cnn_gpu(&args, Some(&server.url)));
    assert!(
        err.contains("--data-dir") && !err.contains("downloading"),
        "{err}"
    );
    assert!(server.requests().is_empty());
}

#[test]
fn cli_refuses_files_that_are_not_mnist() {
    // The generated files are valid IDX, but not MNIST: their hashes differ from the real ones.
    let fx = Fixture::new();
    let server = Server::start(fx.routes());
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let args = ["train", "--backend", "cpu", "--data-dir", d];
    let err = assert_data_refusal(&cnn_gpu(&args, Some(&server.url)));
    assert!(err.contains("SHA-256 mismatch"), "{err}");
    assert_eq!(listing(dir.path()), Vec::<String>::new());
}
