//! Violations: broken invariants returned as values, never raised as panics.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What went wrong. The kinds are consequences a user, device or kernel would suffer
/// (DESIGN.md principle 5), plus the harness's own limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// A reference count went below zero (`VM_BUG_ON_PAGE(page_ref_count(page) <= 0)`).
    RefcountUnderflow,
    /// An unconditional reference was taken on a page whose count was zero (`folio_get` on a free page).
    RefFromZero,
    /// A page on the allocator's free list (poisoned) was read or written.
    UseAfterFree,
    /// A page was freed while a PTE still mapped it or while it was pinned ("BUG: Bad page state").
    BadPageState,
    /// `folio_maybe_dma_pinned()` disagrees with the pins the program holds, or pincount went negative.
    PinAccounting,
    /// At teardown a folio holds more references than its owners account for.
    RefLeak,
    /// At teardown a folio holds fewer references than its owners account for.
    RefMissing,
    /// After teardown released every owner, a page was still not free.
    PageLeak,
    /// The results of the operations cannot be explained by the sequential spec.
    NotLinearizable,
    /// Every CPU waits on another (a lock cycle, or all spin without progress).
    Deadlock,
    /// A lock was taken against the documented lock order (lockdep).
    LockOrder,
    /// The execution exceeded the step budget; not a finding (verdict Unknown).
    StepBudget,
    /// An NMI retries on something (a frozen folio) that only the code it interrupted on the
    /// same CPU can release: it never returns.
    NmiLivelock,
    /// A lock-skipping reader returned bytes of a folio that was not uptodate when it read them.
    NotUptodateRead,
    /// The kernel touched a page that is not present in the direct map ("BUG: unable to
    /// handle page fault for address").
    KernelPageFault,
    /// The hibernation image differs from the memory of the saveable pages at snapshot time.
    ImageMismatch,
    /// A page on the allocator's free list is not present in the direct map: its next user
    /// faults on it.
    FreeNotPresent,
    /// Writeback met a dirty file page whose file-system state (buffers) was released: ext4
    /// warns or BUGs, the data has no blocks to go to.
    DirtyNoBuffers,
    /// A write the spec says must reach the disk was not there after the final sync.
    LostWrite,
    /// A device's IOMMU walked the CPU page tables through a page-table page that was freed
    /// (a paging-structure cache entry the mmu notifier should have flushed).
    IommuWalkFreedTable,
}

impl Kind {
    /// Every kind, in declaration order.
    pub const ALL: [Kind; 20] = [
        Kind::RefcountUnderflow,
        Kind::RefFromZero,
        Kind::UseAfterFree,
        Kind::BadPageState,
        Kind::PinAccounting,
        Kind::RefLeak,
        Kind::RefMissing,
        Kind::PageLeak,
        Kind::NotLinearizable,
        Kind::Deadlock,
        Kind::LockOrder,
        Kind::StepBudget,
        Kind::NmiLivelock,
        Kind::NotUptodateRead,
        Kind::KernelPageFault,
        Kind::ImageMismatch,
        Kind::FreeNotPresent,
        Kind::DirtyNoBuffers,
        Kind::LostWrite,
        Kind::IommuWalkFreedTable,
    ];

    /// Kebab-case name used in signatures and crash directory names.
    pub fn name(self) -> &'static str {
        match self {
            Kind::RefcountUnderflow => "refcount-underflow",
            Kind::RefFromZero => "ref-from-zero",
            Kind::UseAfterFree => "use-after-free",
            Kind::BadPageState => "bad-page-state",
            Kind::PinAccounting => "pin-accounting",
            Kind::RefLeak => "ref-leak",
            Kind::RefMissing => "ref-missing",
            Kind::PageLeak => "page-leak",
            Kind::NotLinearizable => "not-linearizable",
            Kind::Deadlock => "deadlock",
            Kind::LockOrder => "lock-order",
            Kind::StepBudget => "step-budget",
            Kind::NmiLivelock => "nmi-livelock",
            Kind::NotUptodateRead => "not-uptodate-read",
            Kind::KernelPageFault => "kernel-page-fault",
            Kind::ImageMismatch => "image-mismatch",
            Kind::FreeNotPresent => "free-not-present",
            Kind::DirtyNoBuffers => "dirty-no-buffers",
            Kind::LostWrite => "lost-write",
            Kind::IommuWalkFreedTable => "iommu-walk-freed-table",
        }
    }

    /// Parse a kebab-case name.
    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.name() == s)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A broken invariant, with where it was seen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Violation {
    /// What.
    pub kind: Kind,
    /// The model (kernel) function or checker that saw it: the "place" of the signature.
    pub func: String,
    /// The model thread (CPU) it was seen on; `None` for teardown and oracle checks.
    pub thread: Option<u8>,
    /// The page involved, if any.
    pub pfn: Option<u32>,
    /// Values that explain it, for people.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} in {}", self.kind, self.func)?;
        if let Some(t) = self.thread {
            write!(f, " on cpu{t}")?;
        }
        if let Some(p) = self.pfn {
            write!(f, " (pfn {p})")?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}
