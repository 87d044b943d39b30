//! Consequence checks whose subject is a state rather than a sequence of operations. Each seed
//! scenario adds its rows here (the hibernate image against memory, dirty pages without fs
//! state, ...); the executor runs every row of each table in order, and the first finding wins.

use crate::ledger::{self, HeldRef};
use mm_impl::violation::Violation;
use mm_impl::world::World;

/// A check of the final state after every CPU stopped, before teardown releases anything.
/// `held` are the GUP references the program still holds, as the operations' results named them.
pub type BeforeRelease = fn(&World, &[HeldRef]) -> Option<Violation>;

/// A check after teardown released every owner and tore the mm down.
pub type AfterRelease = fn(&World) -> Option<Violation>;

/// Checks before release, in order.
pub const BEFORE_RELEASE: &[(&str, BeforeRelease)] = &[
    // Every reference a folio holds has an owner named from outside the code under test.
    ("refcount ledger", ledger::check),
];

/// Checks after release, in order.
pub const AFTER_RELEASE: &[(&str, AfterRelease)] = &[
    // Nothing stays allocated, MM_ANONPAGES is back to zero.
    ("nothing leaked", ledger::check_all_free),
];

/// Run the checks before release.
pub fn before_release(w: &World, held: &[HeldRef]) -> Option<Violation> {
    BEFORE_RELEASE.iter().find_map(|(_, f)| f(w, held))
}

/// Run the checks after release.
pub fn after_release(w: &World) -> Option<Violation> {
    AFTER_RELEASE.iter().find_map(|(_, f)| f(w))
}
