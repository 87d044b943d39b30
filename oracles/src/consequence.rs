//! Consequence checks whose subject is a state rather than a sequence of operations. Each seed
//! scenario adds its rows here (the hibernate image against memory, dirty pages without fs
//! state, ...); the executor runs every row of each table in order, and the first finding wins.

use crate::ledger::{self, HeldRef};
use mm_impl::violation::{Kind, Violation};
use mm_impl::world::World;

/// A check of the final state after every CPU stopped, before teardown releases anything.
/// `held` are the GUP references the program still holds, as the operations' results named them.
/// `kernel` are the heads of kernel allocations (vmalloc pages, set_memory_np blocks) the
/// program still holds, as the operations' results named them.
pub type BeforeRelease = fn(&World, &[HeldRef], &[u32]) -> Option<Violation>;

/// A check after teardown released every owner and tore the mm down.
pub type AfterRelease = fn(&World) -> Option<Violation>;

/// Checks before release, in order.
pub const BEFORE_RELEASE: &[(&str, BeforeRelease)] = &[
    // Invariant 8: no anonymous page is left behind in a page table that was freed.
    ("rss counter", ledger::check_rss),
    // Every reference a folio holds has an owner named from outside the code under test.
    ("refcount ledger", ledger::check),
];

/// Checks after release, in order.
pub const AFTER_RELEASE: &[(&str, AfterRelease)] = &[
    // Nothing stays allocated, MM_ANONPAGES is back to zero.
    ("nothing leaked", ledger::check_all_free),
    // Invariant 12: every page back in the allocator is present in the direct map.
    ("free pages present", ledger::check_free_present),
];

/// Run the checks before release.
pub fn before_release(w: &World, held: &[HeldRef], kernel: &[u32]) -> Option<Violation> {
    BEFORE_RELEASE.iter().find_map(|(_, f)| f(w, held, kernel))
}

/// Run the checks after release.
pub fn after_release(w: &World) -> Option<Violation> {
    AFTER_RELEASE.iter().find_map(|(_, f)| f(w))
}

/// Invariant 13, checked during a hibernation: the image holds exactly the pages that were
/// saveable (not on the allocator's free list) when every other CPU was frozen, each with the
/// contents it had then. Read from the free list and the pages, not from the snapshot code.
#[derive(Debug, Default)]
pub struct ImageCheck {
    at_snapshot: Option<Vec<(u32, u64)>>,
}

impl ImageCheck {
    /// `None`: the copy is about to start (record memory). `Some(image)`: compare.
    pub fn observe(&mut self, w: &World, image: Option<&Vec<(u32, u64)>>) -> Option<Violation> {
        let Some(image) = image else {
            let free = w.zone.data_unlocked();
            self.at_snapshot = Some(
                w.pages
                    .iter()
                    .filter(|p| !free[p.pfn as usize])
                    .map(|p| (p.pfn, p.data.peek()))
                    .collect(),
            );
            return None;
        };
        let want = self.at_snapshot.take().unwrap_or_default();
        if *image == want {
            return None;
        }
        let (pfn, detail) = match want.iter().zip(image).find(|(a, b)| a != b) {
            Some((a, b)) => (
                Some(a.0.min(b.0)),
                format!(
                    "memory had pfn {} = {:#x} at snapshot time, the image has pfn {} = {:#x}",
                    a.0, a.1, b.0, b.1
                ),
            ),
            None => (
                None,
                format!(
                    "memory had {} saveable pages at snapshot time, the image has {}",
                    want.len(),
                    image.len()
                ),
            ),
        };
        Some(Violation {
            kind: Kind::ImageMismatch,
            func: "hibernation image".into(),
            thread: None,
            pfn,
            detail,
        })
    }
}
