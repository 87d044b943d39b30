//! oracles: the judges of an execution.
//!
//! - [`linearizability`]: is the concurrent history explained by a sequential spec?
//! - [`mm_spec`]: that spec for the program operations.
//! - [`ledger`]: consequence checks whose subject is the final state (references, leaks).
//! - [`signature`]: how findings are named and deduplicated, and which checker owns which bug.

pub mod ledger;
pub mod linearizability;
pub mod mm_spec;
pub mod signature;
pub mod vecmap;
