//! The binary form, for corpora: [`MAGIC`], [`FORMAT_VERSION`] (u16 little-endian), then the
//! bincode 2 encoding (standard configuration, 1 MiB read limit) of the [`ProgFile`].

use super::{check_header, FormatError, Location};
use crate::program::ProgFile;
use bincode::config::Config;

/// The first bytes of every binary program.
pub const MAGIC: [u8; 8] = *b"MMFZPROG";

/// Version of the binary layout written after [`MAGIC`]; bump it whenever the encoding of
/// [`ProgFile`] changes.
pub const FORMAT_VERSION: u16 = 2;

/// Offset of the format version.
const VERSION_AT: usize = MAGIC.len();
/// Offset of the bincode body.
const BODY_AT: usize = VERSION_AT + 2;
/// Most bytes the decoder may read or reserve for one program, so that corrupt lengths cannot
/// make it allocate much.
const LIMIT: usize = 1 << 20;

/// The bincode configuration of the body.
fn config() -> impl Config {
    bincode::config::standard().with_limit::<LIMIT>()
}

/// The binary form of a program file.
pub fn encode(f: &ProgFile) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    // A ProgFile is plain structs, enums, options and vectors with known lengths: bincode
    // cannot fail to encode it into a Vec.
    let body = bincode::serde::encode_to_vec(f, config()).expect("a ProgFile always encodes");
    out.extend_from_slice(&body);
    out
}

/// Read the binary form. Never panics: malformed input gives an error at the byte where it
/// goes wrong (0 for the magic, 8 for the version, 10 for the body, the first extra byte for
/// trailing garbage), and a well-formed program that breaks the header checks or the program
/// limits gives an error about the whole file.
pub fn decode(bytes: &[u8]) -> Result<ProgFile, FormatError> {
    if !bytes.starts_with(&MAGIC) {
        return Err(FormatError::new(
            Location::Byte(0),
            "not a binary mmfuzz program: it does not start with the MMFZPROG magic",
        ));
    }
    let version = match bytes.get(VERSION_AT..BODY_AT) {
        Some(&[lo, hi]) => u16::from_le_bytes([lo, hi]),
        _ => {
            return Err(FormatError::new(
                Location::Byte(VERSION_AT),
                "truncated: no format version after the magic",
            ))
        }
    };
    if version != FORMAT_VERSION {
        return Err(FormatError::new(
            Location::Byte(VERSION_AT),
            format!("binary format version {version}, this build reads version {FORMAT_VERSION}"),
        ));
    }
    let body = bytes.get(BODY_AT..).unwrap_or_default();
    let (file, used): (ProgFile, usize) = bincode::serde::decode_from_slice(body, config())
        .map_err(|e| {
            FormatError::new(
                Location::Byte(BODY_AT),
                format!("cannot decode the program: {e}"),
            )
        })?;
    if used < body.len() {
        return Err(FormatError::new(
            Location::Byte(BODY_AT + used),
            format!("{} trailing bytes after the program", body.len() - used),
        ));
    }
    check_header(&file.header).map_err(|m| FormatError::new(Location::Whole, m))?;
    file.program
        .validate()
        .map_err(|m| FormatError::new(Location::Whole, m))?;
    Ok(file)
}
