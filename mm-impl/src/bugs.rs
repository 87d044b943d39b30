//! Bug switches: each restores one historical buggy code path beside the fixed one.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One historical bug from the seed threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Bug {
    /// try_get_compound_head() without re-reading compound_head(page) after the speculative ref.
    GupNoHeadRecheck,
    /// Pin bias chosen from hpage_pincount_available(page) before the head is referenced.
    GupPinBiasEarly,
    /// collapse_file stores the locked !uptodate huge page before copying.
    CollapsePublishEarly,
    /// build_id_parse() does not check PageUptodate.
    BuildidNoUptodate,
    /// The NMI build-id lookup retries on a frozen folio / RETRY entry.
    BuildidNmiSpin,
    /// retract_page_tables() frees the table without rechecking anon_vma / uffd under ptl.
    RetractNoRecheck,
    /// pmdp_collapse_flush() without mmu_notifier_invalidate_range_start/end.
    RetractNoNotifier,
    /// safe_copy_page copies without remapping a page that is not present.
    HibernateTrustPresent,
    /// The hibernate remap's failure is ignored.
    HibernateMapUnchecked,
    /// vmap'ed user pages dirtied with set_page_dirty_lock after the notifier.
    VmapDirtyAfterNotifier,
    /// LONGTERM + WRITE pins of non-shmem file pages allowed.
    LongtermPinFileWrite,
    /// Writeback releases fs state of a page under a short-term FOLL_PIN|WRITE.
    PinWritebackRace,
}

/// What `mmfuzz bugs` prints about a switch.
#[derive(Debug, Clone, Copy)]
pub struct BugInfo {
    /// The switch.
    pub bug: Bug,
    /// Its command-line name.
    pub name: &'static str,
    /// The seed thread it comes from.
    pub seed: &'static str,
    /// Upstream status.
    pub status: &'static str,
    /// What it restores.
    pub restores: &'static str,
    /// Whether the model has the code path yet (switches of later seed issues are listed early).
    pub modelled: bool,
}

/// Every switch, in DESIGN.md order.
pub const BUGS: [BugInfo; 12] = [
    BugInfo {
        bug: Bug::GupNoHeadRecheck,
        name: "gup-no-head-recheck",
        seed: "001_152161d19b4eb998.txt",
        status: "fixed 5.13 (c24d37322548)",
        restores: "try_get_compound_head() without re-reading compound_head(page) after the speculative ref",
        modelled: true,
    },
    BugInfo {
        bug: Bug::GupPinBiasEarly,
        name: "gup-pin-bias-early",
        seed: "001_152161d19b4eb998.txt",
        status: "fixed 5.13",
        restores: "pin bias chosen from hpage_pincount_available(page) before the head is referenced",
        modelled: true,
    },
    BugInfo {
        bug: Bug::CollapsePublishEarly,
        name: "collapse-publish-early",
        seed: "000_31e44c76cc9ca0c4.txt",
        status: "fixed 6.4",
        restores: "collapse_file stores the locked !uptodate huge page in the page cache before copying",
        modelled: true,
    },
    BugInfo {
        bug: Bug::BuildidNoUptodate,
        name: "buildid-no-uptodate",
        seed: "000_31e44c76cc9ca0c4.txt",
        status: "fixed 6.12",
        restores: "build_id_parse() does not check PageUptodate",
        modelled: true,
    },
    BugInfo {
        bug: Bug::BuildidNmiSpin,
        name: "buildid-nmi-spin",
        seed: "000_31e44c76cc9ca0c4.txt",
        status: "still upstream",
        restores: "the NMI lookup retries on a frozen folio / RETRY entry (filemap_get_entry's loop)",
        modelled: true,
    },
    BugInfo {
        bug: Bug::RetractNoRecheck,
        name: "retract-no-recheck",
        seed: "002_951da7cccb548c12.txt",
        status: "v1 patch, never released",
        restores: "retract_page_tables() frees the table without rechecking anon_vma / uffd under ptl",
        modelled: true,
    },
    BugInfo {
        bug: Bug::RetractNoNotifier,
        name: "retract-no-notifier",
        seed: "002_951da7cccb548c12.txt",
        status: "v1 patch, never released",
        restores: "pmdp_collapse_flush() without mmu_notifier_invalidate_range_start/end",
        modelled: true,
    },
    BugInfo {
        bug: Bug::HibernateTrustPresent,
        name: "hibernate-trust-present",
        seed: "003_1098a96e53c03173.txt",
        status: "fixed 5.11",
        restores: "safe_copy_page copies without remapping a page that is not present",
        modelled: true,
    },
    BugInfo {
        bug: Bug::HibernateMapUnchecked,
        name: "hibernate-map-unchecked",
        seed: "003_1098a96e53c03173.txt",
        status: "still upstream",
        restores: "the hibernate remap's failure is ignored (pr_warn and proceed)",
        modelled: true,
    },
    BugInfo {
        bug: Bug::VmapDirtyAfterNotifier,
        name: "vmap-dirty-after-notifier",
        seed: "004_3d6ad5cf67aefab6.txt",
        status: "RFC, reverted",
        restores: "vmap'ed user pages dirtied with set_page_dirty_lock after the notifier / after writeback",
        modelled: true,
    },
    BugInfo {
        bug: Bug::LongtermPinFileWrite,
        name: "longterm-pin-file-write",
        seed: "004_3d6ad5cf67aefab6.txt",
        status: "fixed (gup_fast_folio_allowed)",
        restores: "LONGTERM + WRITE pins of non-shmem file pages allowed",
        modelled: true,
    },
    BugInfo {
        bug: Bug::PinWritebackRace,
        name: "pin-writeback-race",
        seed: "004_3d6ad5cf67aefab6.txt",
        status: "still upstream",
        restores: "writeback releases fs state of a page under a short-term FOLL_PIN|WRITE (O_DIRECT)",
        modelled: true,
    },
];

impl Bug {
    /// Metadata of this switch.
    pub fn info(self) -> &'static BugInfo {
        BUGS.iter()
            .find(|b| b.bug == self)
            .expect("every bug has an entry")
    }

    /// Command-line name.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// Parse a command-line name.
    pub fn from_name(s: &str) -> Option<Bug> {
        BUGS.iter().find(|b| b.name == s).map(|b| b.bug)
    }
}

/// A set of switched-on bugs.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Bugs(u32);

impl Bugs {
    /// No bug: the fixed model.
    pub const NONE: Bugs = Bugs(0);

    /// Is `b` on?
    #[inline]
    pub fn has(self, b: Bug) -> bool {
        self.0 & (1 << b as u32) != 0
    }

    /// This set plus `b`.
    pub fn with(self, b: Bug) -> Bugs {
        Bugs(self.0 | (1 << b as u32))
    }

    /// The switches that are on, in table order.
    pub fn list(self) -> Vec<Bug> {
        BUGS.iter()
            .map(|i| i.bug)
            .filter(|&b| self.has(b))
            .collect()
    }

    /// Is no switch on?
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parse `a,b,c` (empty or `none` is the fixed model). Unknown and not-yet-modelled names
    /// are errors that name the switch.
    pub fn parse(s: &str) -> Result<Bugs, String> {
        let mut out = Bugs::NONE;
        for name in s
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty() && *n != "none")
        {
            let b = Bug::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = BUGS.iter().map(|b| b.name).collect();
                format!("unknown bug switch '{name}' (known: {})", known.join(", "))
            })?;
            if !b.info().modelled {
                return Err(format!(
                    "bug switch '{name}' is not modelled yet (seed {})",
                    b.info().seed
                ));
            }
            out = out.with(b);
        }
        Ok(out)
    }
}

impl fmt::Display for Bugs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.list().into_iter().map(Bug::name).collect();
        if names.is_empty() {
            f.write_str("none")
        } else {
            f.write_str(&names.join(","))
        }
    }
}
