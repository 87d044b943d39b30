//! harness: programs, the deterministic executor, engines, campaigns and the `mmfuzz` CLI.

pub mod format;
pub mod program;
