//! Crash signatures (kind + place) and the table of which checker catches which bug switch.

use mm_impl::bugs::Bug;
use mm_impl::violation::{Kind, Violation};
use serde::{Deserialize, Serialize};
use std::fmt;

/// What deduplicates crashes: the consequence and the model function (or checker) that saw it.
/// Stable across runs and across programs that hit the same bug the same way.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Signature {
    /// The consequence.
    pub kind: Kind,
    /// Where it was seen.
    pub place: String,
}

impl Signature {
    /// The signature of a violation.
    pub fn of(v: &Violation) -> Signature {
        Signature {
            kind: v.kind,
            place: v.func.clone(),
        }
    }

    /// A file-system-safe name (`refcount-underflow@folio_put_refs`).
    pub fn dir_name(&self) -> String {
        let place: String = self
            .place
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        format!("{}@{}", self.kind.name(), place)
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.kind, self.place)
    }
}

/// Which checker is responsible for a finding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Checker {
    /// A sanitizer inside the model's facade and kernel checks (refcounts, poison, bad page).
    Sanitizer,
    /// A consequence check run by the harness (teardown ledger, pin accounting at unpin).
    Consequence,
    /// The linearizability checker against the sequential spec.
    Linearizability,
}

/// One row of the findings table.
#[derive(Clone, Copy, Debug)]
pub struct Finding {
    /// The switch.
    pub bug: Bug,
    /// The checkers that must catch it.
    pub checkers: &'static [Checker],
    /// The signature kinds that count as finding it.
    pub kinds: &'static [Kind],
}

/// The single table mapping each modelled switch to the checker and kinds that must catch it.
/// Switches of later seed issues are added here with their model code.
pub const FINDINGS: &[Finding] = &[
    Finding {
        bug: Bug::GupNoHeadRecheck,
        checkers: &[Checker::Sanitizer, Checker::Consequence],
        // The reference lands on the old head H while the caller owns P: P is freed while still
        // mapped or pinned (bad page state / use-after-free / underflow), H keeps a stray ref.
        kinds: &[
            Kind::BadPageState,
            Kind::UseAfterFree,
            Kind::RefcountUnderflow,
            Kind::RefMissing,
            Kind::RefLeak,
            Kind::PinAccounting,
        ],
    },
    Finding {
        bug: Bug::GupPinBiasEarly,
        checkers: &[Checker::Consequence, Checker::Sanitizer],
        // The bias is chosen from a page nobody holds. "Large" chosen, folio now small: one
        // reference where 1024 were due, so the pin is invisible (pin accounting), or, when
        // another pin masks that, the unpin's 1024 underflow the count. "Small" chosen, folio
        // now large: 1024 references taken but undone as one pincount, so they leak.
        kinds: &[Kind::PinAccounting, Kind::RefcountUnderflow, Kind::RefLeak],
    },
    Finding {
        bug: Bug::CollapsePublishEarly,
        checkers: &[Checker::Linearizability],
        // The locked, not yet uptodate huge folio is visible in the page cache during the copy:
        // SEEK_DATA sees a hole and mincore a non-resident page where data was resident all
        // along. (With buildid-no-uptodate also on, the build id is read from it as well.)
        kinds: &[Kind::NotLinearizable, Kind::NotUptodateRead],
    },
    Finding {
        bug: Bug::BuildidNoUptodate,
        checkers: &[Checker::Consequence, Checker::Linearizability],
        // Readahead's folio is cached before its read completes; the build id is parsed from
        // bytes that are not the file's (and is not the file's id).
        kinds: &[Kind::NotUptodateRead, Kind::NotLinearizable],
    },
    Finding {
        bug: Bug::BuildidNmiSpin,
        checkers: &[Checker::Sanitizer],
        // The NMI retries on a folio frozen by the code it interrupted on its own CPU; or on
        // one frozen by another CPU that waits for a lock the interrupted code holds.
        kinds: &[Kind::NmiLivelock, Kind::Deadlock],
    },
    Finding {
        bug: Bug::HibernateTrustPresent,
        checkers: &[Checker::Sanitizer],
        // vfree is caught between set_direct_map_invalid and _default; the snapshot copies the
        // invalid page without remapping it and faults.
        kinds: &[Kind::KernelPageFault],
    },
    Finding {
        bug: Bug::HibernateMapUnchecked,
        checkers: &[Checker::Sanitizer],
        // The remap of a page in a not-present block needs a split whose allocation failed;
        // the copy proceeds and faults.
        kinds: &[Kind::KernelPageFault],
    },
    Finding {
        bug: Bug::LongtermPinFileWrite,
        checkers: &[Checker::Consequence],
        // The device keeps writing through the long-term pin after writeback cleaned the page:
        // the final sync, which a long-term pin outlives, leaves the write off the disk. If
        // the buffers went meanwhile, the eventual dirtying reaches writeback without them.
        kinds: &[Kind::LostWrite, Kind::DirtyNoBuffers],
    },
    Finding {
        bug: Bug::PinWritebackRace,
        checkers: &[Checker::Sanitizer],
        // Writeback cleaned the pinned page and its buffers were released; the device's write
        // is dirtied at unpin, and the next writeback finds a dirty page without buffers.
        kinds: &[Kind::DirtyNoBuffers],
    },
    Finding {
        bug: Bug::VmapDirtyAfterNotifier,
        checkers: &[Checker::Sanitizer],
        // The alias's write is dirtied with set_page_dirty_lock() at unmap, after the notifier
        // let writeback clean the page and reclaim release its buffers: the next writeback
        // finds a dirty page without buffers.
        kinds: &[Kind::DirtyNoBuffers],
    },
    Finding {
        bug: Bug::RetractNoRecheck,
        checkers: &[Checker::Consequence, Checker::Linearizability],
        // UFFDIO_COPY's anonymous PTE is freed with the table: MM_ANONPAGES stays counted and
        // the page leaks (page leak / mapcount without a PTE), and the address reads the
        // file's page again instead of the copied data (not linearizable).
        kinds: &[
            Kind::PageLeak,
            Kind::NotLinearizable,
            Kind::BadPageState,
            Kind::RefLeak,
        ],
    },
    Finding {
        bug: Bug::RetractNoNotifier,
        checkers: &[Checker::Sanitizer],
        // The IOMMU's paging-structure cache still points at the retired table: its next walk
        // reads a freed (or reused) page-table page.
        kinds: &[Kind::IommuWalkFreedTable],
    },
];

/// The kinds that count as finding `bug` (empty for switches not modelled yet).
pub fn expected_kinds(bug: Bug) -> &'static [Kind] {
    FINDINGS
        .iter()
        .find(|f| f.bug == bug)
        .map(|f| f.kinds)
        .unwrap_or(&[])
}
