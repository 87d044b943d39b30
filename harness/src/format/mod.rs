//! The two file forms of a program.
//!
//! * The **text form** (`.mmprog`, see [`to_text`] and [`parse_text`]) is for people: one op per
//!   line, syzkaller-like, with the replay header in `# key: value` comments.
//! * The **binary form** (see [`encode`] and [`decode`]) is for corpora: the [`MAGIC`], the
//!   [`FORMAT_VERSION`] and the bincode encoding of the [`ProgFile`].
//!
//! [`parse_any`] and [`load`] accept either form; [`write_atomic`] stores a file so that an
//! interrupted write never leaves a truncated program behind.

mod binary;
mod text;

pub use binary::{decode, encode, FORMAT_VERSION, MAGIC};
pub use text::{op_to_text, parse_text, to_text};

use crate::program::{Header, ProgFile};
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Where in a file an error is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Location {
    /// A line of a text program (1-based).
    Line(usize),
    /// A byte offset (0-based) in a binary program, or in a file that is neither form.
    Byte(usize),
    /// The file as a whole (I/O errors, limits checked after parsing).
    Whole,
}

/// Why a program file could not be read.
///
/// Displays as `<path>: line 3: <message>`, `<path>: byte 10: <message>` or `<path>: <message>`
/// (without the `<path>: ` part when the path is unknown).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FormatError {
    /// The file, when the program came from one ([`load`] fills it in).
    pub path: Option<PathBuf>,
    /// Where in it.
    pub location: Location,
    /// What is wrong.
    pub message: String,
}

impl FormatError {
    /// An error at a location of an unnamed input.
    pub fn new(location: Location, message: impl Into<String>) -> Self {
        FormatError {
            path: None,
            location,
            message: message.into(),
        }
    }

    /// The same error, naming the file it is in.
    pub fn with_path(mut self, path: &Path) -> Self {
        self.path = Some(path.to_path_buf());
        self
    }
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(path) = &self.path {
            write!(f, "{}: ", path.display())?;
        }
        match self.location {
            Location::Line(n) => write!(f, "line {n}: ")?,
            Location::Byte(n) => write!(f, "byte {n}: ")?,
            Location::Whole => {}
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for FormatError {}

/// Check the world version a header names.
fn check_world(world: u32) -> Result<(), String> {
    Header::check_world(world)
}

/// Check a header's huge-page order.
fn check_order(order: u8) -> Result<(), String> {
    Header::check_order(order)
}

/// The checks a header must pass in either form.
fn check_header(h: &Header) -> Result<(), String> {
    h.validate()
}

/// Read a program in either form: binary if `bytes` start with [`MAGIC`], UTF-8 text otherwise.
pub fn parse_any(bytes: &[u8]) -> Result<ProgFile, FormatError> {
    if bytes.starts_with(&MAGIC) {
        return decode(bytes);
    }
    match std::str::from_utf8(bytes) {
        Ok(src) => parse_text(src),
        Err(e) => Err(FormatError::new(
            Location::Byte(e.valid_up_to()),
            "neither a binary program (no MMFZPROG magic) nor UTF-8 text",
        )),
    }
}

/// Read and parse a program file of either form; errors name `path`.
pub fn load(path: &Path) -> Result<ProgFile, FormatError> {
    let bytes = fs::read(path).map_err(|e| {
        FormatError::new(Location::Whole, format!("cannot read: {e}")).with_path(path)
    })?;
    parse_any(&bytes).map_err(|e| e.with_path(path))
}

/// Write `bytes` to `path` atomically: they go to a fresh temporary file in the same directory
/// (`.<name>.<pid>.<counter>.tmp`), which is synced and then renamed over `path`. An interrupted
/// write leaves either the old file or the new one, never a mix; on error the temporary file is
/// removed. The directory is synced afterwards on a best-effort basis.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = path.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a file name", path.display()),
        )
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let mut attempts = 0;
    let (tmp, file) = loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let mut tmp_name = std::ffi::OsString::from(".");
        tmp_name.push(name);
        tmp_name.push(format!(".{}.{n}.tmp", std::process::id()));
        let tmp = dir.join(tmp_name);
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => break (tmp, f),
            // A stale temporary file of an earlier process with the same id: take another name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempts < 64 => attempts += 1,
            Err(e) => return Err(e),
        }
    };
    if let Err(e) = fill_and_rename(file, bytes, &tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir);
    Ok(())
}

/// Write, sync and close the temporary file, then rename it over the target.
fn fill_and_rename(mut file: File, bytes: &[u8], tmp: &Path, path: &Path) -> io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, path)
}

/// Make a rename in `dir` durable where the platform allows it.
fn sync_dir(dir: &Path) {
    #[cfg(unix)]
    if let Ok(d) = File::open(dir) {
        // Some filesystems refuse to sync directories; the rename itself has happened.
        let _ = d.sync_all();
    }
    #[cfg(not(unix))]
    let _ = dir;
}
