//! Helpers the per-seed test files share.

#![allow(dead_code)]

use harness::program::ProgFile;
use harness::seeds::seed;
use mm_impl::bugs::Bugs;

/// An embedded seed program by file name.
pub fn load(name: &str) -> ProgFile {
    seed(name).unwrap_or_else(|| panic!("seed {name} is embedded"))
}

/// The same program on the fixed model.
pub fn fixed(mut f: ProgFile) -> ProgFile {
    f.header.bugs = Bugs::NONE;
    f
}
