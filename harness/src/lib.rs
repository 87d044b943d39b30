//! harness: programs, the deterministic executor, engines, campaigns and the `mmfuzz` CLI.

pub mod diagram;
pub mod executor;
pub mod format;
pub mod program;

pub use executor::{run, run_with, Outcome, RunOptions, Verdict};
