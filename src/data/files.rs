//! MNIST-family datasets on disk (native only): where the files are, checking them, and reading
//! them, by the `mnist` crate for the standard sizes and by [`super::parse_idx`] otherwise.

use std::ffi::OsString;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::*;
use crate::error::{Error, Result};

/// Where to look for `kind`'s files: the `--data-dir` value if given, else its environment
/// variable ([`DatasetKind::dir_env`]) if set and non-empty, else its directory under the
/// working directory ([`DatasetKind::default_dir`]) when that holds all four files, else a system
/// directory that does ([`DatasetKind::system_dirs`]), else the default directory (where missing
/// files are fetched to).
pub fn resolve_data_dir(cli: Option<&Path>, kind: DatasetKind) -> PathBuf {
    let system: Vec<PathBuf> = kind.system_dirs().iter().map(PathBuf::from).collect();
    resolve_data_dir_from(
        cli,
        std::env::var_os(kind.dir_env()),
        Path::new(kind.default_dir()),
        &system,
    )
}

fn resolve_data_dir_from(
    cli: Option<&Path>,
    env: Option<OsString>,
    default: &Path,
    system: &[PathBuf],
) -> PathBuf {
    match (cli, env) {
        (Some(dir), _) => dir.to_path_buf(),
        (None, Some(dir)) if !dir.is_empty() => PathBuf::from(dir),
        _ if missing_files(default).is_empty() => default.to_path_buf(),
        _ => system
            .iter()
            .find(|dir| missing_files(dir).is_empty())
            .unwrap_or(&default.to_path_buf())
            .clone(),
    }
}

/// One IDX file found on disk.
struct Located {
    path: PathBuf,
    gzipped: bool,
}

/// Finds `name` or `name.gz` in `dir`, preferring the raw file.
fn locate(dir: &Path, name: &str) -> Option<Located> {
    let raw = dir.join(name);
    if raw.exists() {
        return Some(Located {
            path: raw,
            gzipped: false,
        });
    }
    let gz = dir.join(format!("{name}.gz"));
    gz.exists().then_some(Located {
        path: gz,
        gzipped: true,
    })
}

/// The [`MNIST_FILES`] found in `dir` neither raw nor gzipped: what [`load_mnist`] reports as
/// missing (as opposed to present but unusable), and what [`fetch`] can download.
pub fn missing_files(dir: &Path) -> Vec<&'static str> {
    MNIST_FILES
        .iter()
        .copied()
        .filter(|name| locate(dir, name).is_none())
        .collect()
}

/// The error for missing files: names the first missing one, lists all four and says where to
/// put them.
fn missing_files_error(dir: &Path, missing: &[&str]) -> Error {
    let shown = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
    let dir_note = if dir.is_dir() {
        ""
    } else {
        " (the directory does not exist)"
    };
    Error::data(
        dir.join(missing[0]),
        format!(
            "not found (nor {first}.gz). Loading MNIST needs four files in {dir}{dir_note}: \
             {all}, each raw or gzipped with a .gz suffix; missing: {missing}. \
             Put them there, or point --data-dir or {env} at the directory that holds them.",
            first = missing[0],
            dir = shown.display(),
            all = MNIST_FILES.join(", "),
            missing = missing.join(", "),
            env = DATA_DIR_ENV,
        ),
    )
}

/// A checked IDX file ready to read uncompressed: `raw` is the file itself or its decompressed
/// copy, `source` the file the user has (named in errors).
struct Validated {
    source: PathBuf,
    raw: PathBuf,
    header: IdxHeader,
}

/// Validates `found`; a gzipped file is decompressed into `tmp` as `copy_name`.
fn validate(
    found: &Located,
    kind: IdxKind,
    tmp: Option<&Path>,
    copy_name: &str,
) -> Result<Validated> {
    let (raw, header) = match (found.gzipped, tmp) {
        (true, Some(tmp)) => {
            let raw = tmp.join(copy_name);
            let header = idx::decompress_validated(&found.path, kind, &raw)?;
            (raw, header)
        }
        _ => (found.path.clone(), idx::validate_raw(&found.path, kind)?),
    };
    Ok(Validated {
        source: found.path.clone(),
        raw,
        header,
    })
}

/// Checks that an images and a labels file belong together.
fn check_pair(images: &Validated, labels: &Validated) -> Result<()> {
    if images.header.count != labels.header.count {
        return Err(Error::data(
            &labels.source,
            format!(
                "holds {} labels but {} holds {} images; they must match",
                labels.header.count,
                images.source.display(),
                images.header.count
            ),
        ));
    }
    Ok(())
}

/// Reads a checked images/labels pair with our own reader.
fn read_pair(images: &Validated, labels: &Validated) -> Result<Dataset> {
    let (header, pixels) = idx::read_raw(&images.raw, IdxKind::Images, &images.source)?;
    let (_, label_bytes) = idx::read_raw(&labels.raw, IdxKind::Labels, &labels.source)?;
    Dataset::new(
        pixels,
        label_bytes,
        header.rows as usize,
        header.cols as usize,
    )
    .map_err(|e| Error::data(&images.source, format!("changed while being read: {e}")))
}

/// Loads one images file and its labels file (each raw, or gzipped when the name ends in `.gz`),
/// with the same checks as [`load_mnist`] except the label range. Errors name the offending file.
pub fn load_idx_dataset(images: &Path, labels: &Path) -> Result<Dataset> {
    let locate_given = |path: &Path| Located {
        path: path.to_path_buf(),
        gzipped: path.extension().is_some_and(|e| e == "gz"),
    };
    let (images, labels) = (locate_given(images), locate_given(labels));
    let tmp = if images.gzipped || labels.gzipped {
        Some(temp_dir(&images.path)?)
    } else {
        None
    };
    let tmp_path = tmp.as_ref().map(|t| t.path());
    let images = validate(&images, IdxKind::Images, tmp_path, "images")?;
    let labels = validate(&labels, IdxKind::Labels, tmp_path, "labels")?;
    check_pair(&images, &labels)?;
    read_pair(&images, &labels)
}

fn temp_dir(for_file: &Path) -> Result<tempfile::TempDir> {
    tempfile::TempDir::new().map_err(|e| {
        Error::data(
            for_file,
            format!("cannot create a temporary directory to decompress into: {e}"),
        )
    })
}

/// Loads MNIST (or an MNIST-format dataset such as Fashion-MNIST) from `dir`, which must hold
/// the four [`MNIST_FILES`], each raw or gzipped (`.gz`); a raw file is preferred when both exist.
///
/// Every file is checked before anything is read from it — existence, magic number, header
/// sizes, exact length, image count = label count, same image size in both splits, labels 0–9 —
/// and any problem is an [`Error::Data`] naming the file.
pub fn load_mnist(dir: &Path) -> Result<Mnist> {
    let start = Instant::now();
    let found: Vec<Option<Located>> = MNIST_FILES.iter().map(|name| locate(dir, name)).collect();
    let missing: Vec<&str> = MNIST_FILES
        .iter()
        .zip(&found)
        .filter(|(_, f)| f.is_none())
        .map(|(name, _)| *name)
        .collect();
    if !missing.is_empty() {
        return Err(missing_files_error(dir, &missing));
    }
    let found: Vec<Located> = found.into_iter().flatten().collect();

    let tmp = match found.iter().find(|f| f.gzipped) {
        Some(f) => Some(temp_dir(&f.path)?),
        None => None,
    };
    let tmp_path = tmp.as_ref().map(|t| t.path());
    let kinds = [
        IdxKind::Images,
        IdxKind::Labels,
        IdxKind::Images,
        IdxKind::Labels,
    ];
    let mut checked = Vec::with_capacity(4);
    for ((f, kind), name) in found.iter().zip(kinds).zip(MNIST_FILES) {
        checked.push(validate(f, kind, tmp_path, name)?);
    }
    let [train_images, train_labels, test_images, test_labels] = &checked[..] else {
        unreachable!("four files were located");
    };
    check_pair(train_images, train_labels)?;
    check_pair(test_images, test_labels)?;
    let (train_h, test_h) = (train_images.header, test_images.header);
    if (train_h.rows, train_h.cols) != (test_h.rows, test_h.cols) {
        return Err(Error::data(
            &test_images.source,
            format!(
                "holds images of {}×{} but the training images ({}) are {}×{}",
                test_h.rows,
                test_h.cols,
                train_images.source.display(),
                train_h.rows,
                train_h.cols
            ),
        ));
    }
    for v in [train_images, test_images] {
        if v.header.count == 0 {
            return Err(Error::data(&v.source, "holds no images"));
        }
    }

    let mnist = match read_with_mnist_crate(&checked)? {
        Some(mnist) => mnist,
        None => Mnist {
            train: read_pair(train_images, train_labels)?,
            test: read_pair(test_images, test_labels)?,
        },
    };
    check_label_range(&mnist.train.labels, &train_labels.source)?;
    check_label_range(&mnist.test.labels, &test_labels.source)?;
    log::info!(
        "loaded MNIST from {}: {} training and {} test images of {}×{} in {:.0?}",
        dir.display(),
        mnist.train.len(),
        mnist.test.len(),
        mnist.train.rows,
        mnist.train.cols,
        start.elapsed()
    );
    Ok(mnist)
}

fn check_label_range(labels: &[u8], path: &Path) -> Result<()> {
    match labels.iter().position(|&l| usize::from(l) >= NUM_CLASSES) {
        Some(i) => Err(Error::data(
            path,
            format!(
                "label {} at index {i} is not a class 0–{}",
                labels[i],
                NUM_CLASSES - 1
            ),
        )),
        None => Ok(()),
    }
}

/// The sizes the `mnist` crate 0.6 can read (it asserts them).
const MNIST_CRATE_TRAIN: u32 = 60_000;
const MNIST_CRATE_TEST: u32 = 10_000;
const MNIST_CRATE_SIDE: u32 = 28;

/// Reads the four validated files [train images, train labels, test images, test labels] with
/// the `mnist` crate when they have the standard sizes it supports (and UTF-8 paths, which its
/// API needs); `None` means "use our own reader". A panic inside the crate becomes an error.
fn read_with_mnist_crate(files: &[Validated]) -> Result<Option<Mnist>> {
    let (train, test) = (files[0].header, files[2].header);
    let standard = train.count == MNIST_CRATE_TRAIN
        && test.count == MNIST_CRATE_TEST
        && [train.rows, train.cols] == [MNIST_CRATE_SIDE; 2];
    let paths: Option<Vec<&str>> = files.iter().map(|f| f.raw.to_str()).collect();
    let Some(paths) = paths.filter(|_| standard) else {
        log::debug!("non-standard sizes or non-UTF-8 paths: reading with our own IDX reader");
        return Ok(None);
    };
    log::debug!("reading the validated MNIST files with the mnist crate");
    // The crate joins each file name onto the base path; with an empty base path, our full paths
    // are used as they are.
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        mnist::MnistBuilder::new()
            .label_format_digit()
            .base_path("")
            .training_images_filename(paths[0])
            .training_labels_filename(paths[1])
            .test_images_filename(paths[2])
            .test_labels_filename(paths[3])
            .training_set_length(MNIST_CRATE_TRAIN)
            .validation_set_length(0)
            .test_set_length(MNIST_CRATE_TEST)
            .finalize()
    }));
    let m = result.map_err(|payload| {
        let why = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        Error::data(
            &files[0].source,
            format!("the mnist crate failed to read the validated files: {why}"),
        )
    })?;
    let side = MNIST_CRATE_SIDE as usize;
    let to_dataset = |images, labels, source: &Path| {
        Dataset::new(images, labels, side, side).map_err(|e| {
            Error::data(
                source,
                format!("the mnist crate returned inconsistent data: {e}"),
            )
        })
    };
    let mnist = Mnist {
        train: to_dataset(m.trn_img, m.trn_lbl, &files[0].source)?,
        test: to_dataset(m.tst_img, m.tst_lbl, &files[2].source)?,
    };
    if mnist.train.len() != MNIST_CRATE_TRAIN as usize
        || mnist.test.len() != MNIST_CRATE_TEST as usize
    {
        return Err(Error::data(
            &files[0].source,
            format!(
                "the mnist crate returned {} training and {} test images, expected {} and {}",
                mnist.train.len(),
                mnist.test.len(),
                MNIST_CRATE_TRAIN,
                MNIST_CRATE_TEST
            ),
        ));
    }
    Ok(Some(mnist))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_precedence_is_cli_then_env_then_default_then_system() {
        let cli = Path::new("/from/cli");
        let env = Some(OsString::from("/from/env"));
        let root = tempfile::tempdir().unwrap();
        let default = root.path().join("default"); // never created
        let (full, partial) = (root.path().join("full"), root.path().join("partial"));
        for (dir, files) in [(&full, &MNIST_FILES[..]), (&partial, &MNIST_FILES[..3])] {
            std::fs::create_dir(dir).unwrap();
            for f in files {
                std::fs::write(dir.join(format!("{f}.gz")), b"").unwrap();
            }
        }
        let system = [partial.clone(), full.clone()];
        let resolve = |cli, env| resolve_data_dir_from(cli, env, &default, &system);
        assert_eq!(resolve(Some(cli), env.clone()), cli);
        assert_eq!(resolve(None, env), Path::new("/from/env"));
        // The default directory lacks files: the first system directory holding all four.
        assert_eq!(resolve(None, Some(OsString::new())), full);
        assert_eq!(resolve(None, None), full);
        // The default directory wins when complete; with no complete directory it is the
        // download target.
        assert_eq!(resolve_data_dir_from(None, None, &full, &[]), full);
        assert_eq!(
            resolve_data_dir_from(None, None, &default, &system[..1]),
            default
        );
    }
}
