//! harness: programs, the deterministic executor, engines, campaigns and the `mmfuzz` CLI.

#![warn(missing_docs)]

pub mod bench;
pub mod campaign;
pub mod cli_util;
pub mod diagram;
pub mod engine;
pub mod executor;
pub mod format;
pub mod minimize;
pub mod program;
pub mod seeds;

pub use executor::{run, run_many, run_with, Outcome, RunOptions, Verdict};
