//! IDX files, the format MNIST-family datasets ship in: header parsing and validation, capped
//! decompression of `.gz` files, reading and writing.
//!
//! Layout (every integer big-endian): a magic number `0x0000_08NN` (0x08 = unsigned bytes,
//! NN = number of dimensions), one u32 per dimension, then the data. Images are idx3
//! (count, rows, cols; magic 0x00000803), labels idx1 (count; magic 0x00000801).
//!
//! Every check here runs before anything is allocated from a header's numbers: a raw file's
//! length must equal header + count·rows·cols exactly, and a `.gz` file is decompressed through a
//! reader limited to that size plus one byte.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
#[cfg(feature = "native")]
use std::io::{BufReader, Seek, SeekFrom};
use std::path::Path;

use flate2::read::GzDecoder;
use flate2::write::GzEncoder;

use crate::error::{Error, Result};

pub(crate) const IMAGES_MAGIC: u32 = 0x0000_0803;
pub(crate) const LABELS_MAGIC: u32 = 0x0000_0801;
const GZIP_SIGNATURE: [u8; 2] = [0x1f, 0x8b];

/// The largest decompressed size accepted from a `.gz` file, so a corrupt or hostile header cannot
/// make us fill the disk. The largest MNIST-family file (EMNIST ByClass training images) is
/// ≈ 547 MB.
pub(crate) const MAX_GZ_DECOMPRESSED: u64 = 4 << 30;

/// Which of the two IDX file types a file should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdxKind {
    Images,
    Labels,
}

impl IdxKind {
    fn magic(self) -> u32 {
        match self {
            IdxKind::Images => IMAGES_MAGIC,
            IdxKind::Labels => LABELS_MAGIC,
        }
    }

    /// Bytes before the data: magic + one u32 per dimension.
    pub fn header_len(self) -> usize {
        match self {
            IdxKind::Images => 16,
            IdxKind::Labels => 8,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            IdxKind::Images => "an IDX images file (idx3-ubyte, magic 0x00000803)",
            IdxKind::Labels => "an IDX labels file (idx1-ubyte, magic 0x00000801)",
        }
    }

    fn other(self) -> IdxKind {
        match self {
            IdxKind::Images => IdxKind::Labels,
            IdxKind::Labels => IdxKind::Images,
        }
    }
}

/// A validated header. Labels have `rows = cols = 1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdxHeader {
    pub kind: IdxKind,
    pub count: u32,
    pub rows: u32,
    pub cols: u32,
    /// count·rows·cols: the data bytes after the header (checked not to overflow).
    pub body_len: u64,
}

impl IdxHeader {
    fn new(kind: IdxKind, count: u32, rows: u32, cols: u32) -> Option<Self> {
        let body_len = u64::from(count)
            .checked_mul(u64::from(rows))?
            .checked_mul(u64::from(cols))?;
        // The whole file length must be representable too.
        body_len.checked_add(kind.header_len() as u64)?;
        Some(IdxHeader {
            kind,
            count,
            rows,
            cols,
            body_len,
        })
    }

    /// The exact length the whole file must have.
    pub fn file_len(&self) -> u64 {
        self.kind.header_len() as u64 + self.body_len
    }

    fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.kind.header_len());
        out.extend_from_slice(&self.kind.magic().to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        if self.kind == IdxKind::Images {
            out.extend_from_slice(&self.rows.to_be_bytes());
            out.extend_from_slice(&self.cols.to_be_bytes());
        }
        out
    }

    /// "60000 images of 28×28" / "60000 labels", for messages.
    fn describe(&self) -> String {
        match self.kind {
            IdxKind::Images => format!("{} images of {}×{}", self.count, self.rows, self.cols),
            IdxKind::Labels => format!("{} labels", self.count),
        }
    }
}

/// Reads until `buf` is full or the reader ends; returns how many bytes were read.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Reads and checks the header at the start of `reader`. `path` is the file to name in errors.
fn read_header(reader: &mut impl Read, kind: IdxKind, path: &Path) -> Result<IdxHeader> {
    let mut buf = [0u8; 16];
    let buf = &mut buf[..kind.header_len()];
    let got =
        read_up_to(reader, buf).map_err(|e| Error::data(path, format!("cannot read: {e}")))?;
    if got == 0 {
        return Err(Error::data(
            path,
            format!("is empty; expected {}", kind.describe()),
        ));
    }
    if got >= 2 && buf[..2] == GZIP_SIGNATURE {
        return Err(Error::data(
            path,
            "starts with the gzip signature (1f 8b): the file is compressed; \
             decompress it or give it a .gz suffix",
        ));
    }
    if got >= 4 {
        let magic = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if magic != kind.magic() {
            let what = if magic == kind.other().magic() {
                format!("this is {}", kind.other().describe())
            } else {
                "not an IDX file of unsigned bytes, or a corrupt one".to_string()
            };
            return Err(Error::data(
                path,
                format!(
                    "wrong magic number 0x{magic:08x}: {what}; expected {}",
                    kind.describe()
                ),
            ));
        }
    }
    if got < buf.len() {
        return Err(Error::data(
            path,
            format!(
                "ends after {got} bytes, inside the {}-byte header of {}",
                buf.len(),
                kind.describe()
            ),
        ));
    }
    let word =
        |i: usize| u32::from_be_bytes([buf[4 * i], buf[4 * i + 1], buf[4 * i + 2], buf[4 * i + 3]]);
    let (count, rows, cols) = match kind {
        IdxKind::Images => (word(1), word(2), word(3)),
        IdxKind::Labels => (word(1), 1, 1),
    };
    if rows == 0 || cols == 0 {
        return Err(Error::data(
            path,
            format!("header says images are {rows}×{cols}; both must be at least 1"),
        ));
    }
    IdxHeader::new(kind, count, rows, cols).ok_or_else(|| {
        Error::data(
            path,
            format!("header claims {count} images of {rows}×{cols}, an impossible size"),
        )
    })
}

/// Checks that a file of `actual` bytes is exactly as long as `header` says.
fn check_len(actual: u64, header: &IdxHeader, path: &Path) -> Result<()> {
    let expected = header.file_len();
    if actual < expected {
        return Err(Error::data(
            path,
            format!(
                "is {actual} bytes, but its header ({}) needs exactly {expected}: \
                 the file is truncated or its header is corrupt",
                header.describe()
            ),
        ));
    }
    if actual > expected {
        return Err(Error::data(
            path,
            format!(
                "is {actual} bytes, {} more than its header ({}) accounts for ({expected}): \
                 trailing data, or a corrupt header",
                actual - expected,
                header.describe()
            ),
        ));
    }
    Ok(())
}

#[cfg(feature = "native")]
/// Opens a raw IDX file, checks its header and that its length is exactly what the header says,
/// and leaves the file positioned at the first data byte. `error_path` is the file named in errors
/// (the original `.gz` when `path` is its decompressed copy).
fn open_validated(path: &Path, kind: IdxKind, error_path: &Path) -> Result<(File, IdxHeader)> {
    let mut file = File::open(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::data(error_path, "not found"),
        _ => Error::data(error_path, format!("cannot open: {e}")),
    })?;
    let meta = file
        .metadata()
        .map_err(|e| Error::data(error_path, format!("cannot read metadata: {e}")))?;
    if !meta.is_file() {
        return Err(Error::data(error_path, "is not a regular file"));
    }
    let header = read_header(&mut file, kind, error_path)?;
    check_len(meta.len(), &header, error_path)?;
    Ok((file, header))
}

#[cfg(feature = "native")]
/// Checks a raw IDX file without reading its data.
pub(crate) fn validate_raw(path: &Path, kind: IdxKind) -> Result<IdxHeader> {
    open_validated(path, kind, path).map(|(_, header)| header)
}

#[cfg(feature = "native")]
/// Reads a raw IDX file (validated as by [`validate_raw`]) and returns its header and data bytes.
/// `error_path` is the file named in errors.
pub(crate) fn read_raw(
    path: &Path,
    kind: IdxKind,
    error_path: &Path,
) -> Result<(IdxHeader, Vec<u8>)> {
    let (file, header) = open_validated(path, kind, error_path)?;
    // The file's length was just checked to back body_len, so allocating it is safe.
    let body_len = usize::try_from(header.body_len)
        .map_err(|_| Error::data(error_path, "is too large for this platform's address space"))?;
    let mut body = Vec::with_capacity(body_len);
    BufReader::new(file)
        .take(header.body_len + 1)
        .read_to_end(&mut body)
        .map_err(|e| Error::data(error_path, format!("cannot read: {e}")))?;
    if body.len() != body_len {
        return Err(Error::data(
            error_path,
            format!(
                "changed while being read: expected {body_len} data bytes, read {}",
                body.len()
            ),
        ));
    }
    Ok((header, body))
}

#[cfg(feature = "native")]
/// Decompresses the gzipped IDX file `gz_path` into the raw file `out_path`, checking the header
/// first and never producing more than the header's size plus one byte, so a wrong count can
/// neither allocate nor write without bound. Errors name `gz_path`.
pub(crate) fn decompress_validated(
    gz_path: &Path,
    kind: IdxKind,
    out_path: &Path,
) -> Result<IdxHeader> {
    let mut file = File::open(gz_path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => Error::data(gz_path, "not found"),
        _ => Error::data(gz_path, format!("cannot open: {e}")),
    })?;
    let mut signature = [0u8; 2];
    let got = read_up_to(&mut file, &mut signature)
        .map_err(|e| Error::data(gz_path, format!("cannot read: {e}")))?;
    check_gzip_signature(&signature[..got], gz_path)?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Error::data(gz_path, format!("cannot read: {e}")))?;
    let out = File::create(out_path).map_err(|e| {
        Error::data(
            out_path,
            format!("cannot create the decompressed copy: {e}"),
        )
    })?;
    let mut out = BufWriter::new(out);
    let write_err =
        |e: io::Error| Error::data(out_path, format!("cannot write the decompressed copy: {e}"));
    let header = decompress_stream(BufReader::new(file), kind, gz_path, &mut out, &write_err)?;
    out.flush().map_err(write_err)?;
    Ok(header)
}

fn check_gzip_signature(start: &[u8], gz_path: &Path) -> Result<()> {
    if start.len() < 2 || start[..2] != GZIP_SIGNATURE {
        return Err(Error::data(
            gz_path,
            "has a .gz name but is not gzip-compressed (it does not start with 1f 8b)",
        ));
    }
    Ok(())
}

/// The core of [`decompress_validated`] and [`parse_idx`]: reads and checks the header from the
/// gzip stream `gz`, then copies the whole decompressed file (header and data) into `out`,
/// refusing more or less data than the header says.
fn decompress_stream(
    gz: impl Read,
    kind: IdxKind,
    gz_path: &Path,
    out: &mut impl Write,
    write_err: &dyn Fn(io::Error) -> Error,
) -> Result<IdxHeader> {
    let mut decoder = GzDecoder::new(gz);
    let header = read_header(&mut decoder, kind, gz_path)?;
    if header.file_len() > MAX_GZ_DECOMPRESSED {
        return Err(Error::data(
            gz_path,
            format!(
                "header claims {} ({} bytes decompressed), more than the {} bytes accepted \
                 from a .gz file: a corrupt header?",
                header.describe(),
                header.file_len(),
                MAX_GZ_DECOMPRESSED
            ),
        ));
    }
    out.write_all(&header.to_bytes()).map_err(write_err)?;
    let mut limited = decoder.take(header.body_len + 1);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut copied: u64 = 0;
    loop {
        let n = match limited.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(Error::data(
                    gz_path,
                    format!("corrupt gzip data after {copied} data bytes: {e}"),
                ))
            }
        };
        out.write_all(&chunk[..n]).map_err(write_err)?;
        copied += n as u64;
    }
    if copied < header.body_len {
        return Err(Error::data(
            gz_path,
            format!(
                "decompresses to {} bytes, but its header ({}) needs exactly {}: \
                 the file is truncated or its header is corrupt",
                header.kind.header_len() as u64 + copied,
                header.describe(),
                header.file_len()
            ),
        ));
    }
    if copied > header.body_len {
        return Err(Error::data(
            gz_path,
            format!(
                "decompresses to more than the {} bytes its header ({}) accounts for: \
                 trailing data, or a corrupt header",
                header.file_len(),
                header.describe()
            ),
        ));
    }
    Ok(header)
}

/// Parses an IDX file held in memory with the same checks as loading it from disk: `gzipped`
/// stands for a `.gz` name, and `path` is the file named in errors. Returns the header and the
/// data bytes. Nothing is allocated from the header's counts: a raw file's length must back
/// them first, and a gzipped one grows its buffer only as data really decompresses. This is
/// the entry point the fuzz targets (`fuzz/`) drive.
pub fn parse_idx(
    bytes: &[u8],
    kind: IdxKind,
    gzipped: bool,
    path: &Path,
) -> Result<(IdxHeader, Vec<u8>)> {
    if gzipped {
        check_gzip_signature(bytes, path)?;
        let mut raw = Vec::new();
        let write_err = |e: io::Error| Error::data(path, format!("cannot decompress: {e}"));
        let header = decompress_stream(bytes, kind, path, &mut raw, &write_err)?;
        return Ok((header, raw.split_off(kind.header_len())));
    }
    let header = read_header(&mut &bytes[..], kind, path)?;
    check_len(bytes.len() as u64, &header, path)?;
    Ok((header, bytes[kind.header_len()..].to_vec()))
}

/// How [`write_idx_images`] and [`write_idx_labels`] store a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    /// A plain IDX file (`…-idx3-ubyte`).
    Raw,
    /// A gzipped IDX file, as MNIST is distributed (`…-idx3-ubyte.gz`).
    Gzip,
}

fn write_idx(path: &Path, header: IdxHeader, body: &[u8], compression: Compression) -> Result<()> {
    let write_err = |e: io::Error| Error::data(path, format!("cannot write: {e}"));
    let file = File::create(path).map_err(|e| Error::data(path, format!("cannot create: {e}")))?;
    let mut out = BufWriter::new(file);
    match compression {
        Compression::Raw => {
            out.write_all(&header.to_bytes()).map_err(write_err)?;
            out.write_all(body).map_err(write_err)?;
            out.flush().map_err(write_err)?;
        }
        Compression::Gzip => {
            let mut gz = GzEncoder::new(out, flate2::Compression::default());
            gz.write_all(&header.to_bytes()).map_err(write_err)?;
            gz.write_all(body).map_err(write_err)?;
            gz.finish().map_err(write_err)?.flush().map_err(write_err)?;
        }
    }
    Ok(())
}

/// Writes `pixels` (images of `rows`×`cols` bytes, one after another, row-major) as an IDX images
/// file. For tests and fixtures.
pub fn write_idx_images(
    path: &Path,
    rows: usize,
    cols: usize,
    pixels: &[u8],
    compression: Compression,
) -> Result<()> {
    let image_len = rows.checked_mul(cols).filter(|&n| n > 0).ok_or_else(|| {
        Error::InvalidParams(format!(
            "write_idx_images: images of {rows}×{cols}: both must be at least 1"
        ))
    })?;
    if !pixels.len().is_multiple_of(image_len) {
        return Err(Error::InvalidParams(format!(
            "write_idx_images: {} pixel bytes are not a whole number of {rows}×{cols} images",
            pixels.len()
        )));
    }
    let too_big = || {
        Error::InvalidParams(format!(
            "write_idx_images: {rows}×{cols}×count exceeds the IDX format's u32 fields"
        ))
    };
    let count = u32::try_from(pixels.len() / image_len).map_err(|_| too_big())?;
    let rows32 = u32::try_from(rows).map_err(|_| too_big())?;
    let cols32 = u32::try_from(cols).map_err(|_| too_big())?;
    let header = IdxHeader::new(IdxKind::Images, count, rows32, cols32).ok_or_else(too_big)?;
    write_idx(path, header, pixels, compression)
}

/// Writes `labels` as an IDX labels file. For tests and fixtures.
pub fn write_idx_labels(path: &Path, labels: &[u8], compression: Compression) -> Result<()> {
    let count = u32::try_from(labels.len()).map_err(|_| {
        Error::InvalidParams(format!(
            "write_idx_labels: {} labels exceed the IDX format's u32 count",
            labels.len()
        ))
    })?;
    // A u32 count of 1-byte labels always fits; the error branch cannot happen.
    let header = IdxHeader::new(IdxKind::Labels, count, 1, 1)
        .ok_or_else(|| Error::InvalidParams("write_idx_labels: size overflow".into()))?;
    write_idx(path, header, labels, compression)
}
