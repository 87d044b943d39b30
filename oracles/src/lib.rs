//! oracles: the judges of an execution.
//!
//! - [`linearizability`]: is the concurrent history explained by a sequential spec?
//! - [`mm_spec`]: that spec for the program operations.
//! - [`consequence`]: the tables of consequence checks on states; [`ledger`]: the first rows
//!   (references and their owners, leaks).
//! - [`signature`]: how findings are named and deduplicated, and which checker owns which bug.

#![warn(missing_docs)]

pub mod consequence;
pub mod ledger;
pub mod linearizability;
pub mod mm_spec;
pub mod signature;
pub mod vecmap;
