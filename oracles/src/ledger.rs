//! The teardown ledger: every reference a folio holds must belong to an owner the checker can
//! name from outside the code under test: a present PTE (read from the page tables), a page
//! table under a PMD or in the direct map, a kernel allocation an operation returned, or a GUP reference that an operation *returned* (owned by the folio the
//! returned page belonged to at return time).

use mm_impl::mm_types::*;
use mm_impl::violation::{Kind, Violation};
use mm_impl::world::World;
use std::collections::BTreeMap;

/// A GUP reference still held at teardown, as the operation's result described it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeldRef {
    /// The page GUP returned.
    pub page: u32,
    /// `page_folio(page)` when GUP returned.
    pub owner: u32,
    /// FOLL_PIN (else FOLL_GET).
    pub pin: bool,
}

fn v(kind: Kind, pfn: u32, detail: String) -> Violation {
    Violation {
        kind,
        func: "teardown ledger".into(),
        thread: None,
        pfn: Some(pfn),
        detail,
    }
}

#[derive(Default, Clone, Copy)]
struct Owed {
    cache: i64,
    refs: i64,
    pins: i64,
    maps: i64,
    gup: i64,
}

/// Compare every live folio's refcount and pincount with its owners. Run after all threads
/// stopped, before anything is released.
/// `kernel` are the heads of kernel allocations the program's operations returned (vmalloc
/// pages, set_memory_np blocks): one reference each.
pub fn check(w: &World, held: &[HeldRef], kernel: &[u32]) -> Option<Violation> {
    let mut owed: BTreeMap<u32, Owed> = BTreeMap::new();
    for &k in kernel {
        owed.entry(k).or_default().refs += 1;
    }
    // The direct map owns the page-table pages its splits installed.
    for t in w.cpa_lock.data_unlocked().tables() {
        owed.entry(t).or_default().refs += 1;
    }
    // PTEs that map each page, counted from the page tables.
    let mut maps: BTreeMap<u32, i32> = BTreeMap::new();
    for pmdp in &w.mm.pmds {
        let pmd = pmdp.peek();
        if pmd & PMD_TABLE == 0 {
            continue;
        }
        let table = pmd_table_pfn(pmd);
        owed.entry(table).or_default().refs += 1;
        for i in 0..w.nr_subpages() {
            let pte = w.pte(table, i).peek();
            if !pte_present(pte) {
                continue;
            }
            let page = w.page(pte_pfn(pte));
            if page.is_free() {
                return Some(v(
                    Kind::UseAfterFree,
                    page.pfn,
                    format!("a present PTE maps pfn {}, which is free", page.pfn),
                ));
            }
            let o = owed.entry(page.folio_peek()).or_default();
            o.refs += 1;
            o.maps += 1;
            *maps.entry(page.pfn).or_default() += 1;
        }
    }
    // References of the page cache, counted from the files' xarrays.
    let cached = mm_impl::filemap::page_cache_refs(w, &w.text)
        .into_iter()
        .chain(mm_impl::filemap::page_cache_refs(w, &w.shmem))
        .chain(mm_impl::filemap::page_cache_refs(w, &w.data));
    for (f, n) in cached {
        if w.page(f).is_free() {
            return Some(v(
                Kind::UseAfterFree,
                f,
                format!("the page cache names folio {f}, which is free"),
            ));
        }
        let o = owed.entry(f).or_default();
        o.refs += n;
        o.cache += n;
    }
    for r in held {
        if w.page(r.page).is_free() {
            return Some(v(
                Kind::UseAfterFree,
                r.page,
                format!("pfn {} is still referenced by GUP but was freed", r.page),
            ));
        }
        let large = w.page(r.owner).flags.peek() & PG_HEAD != 0;
        let o = owed.entry(r.owner).or_default();
        o.gup += 1;
        match (r.pin, large) {
            (false, _) => o.refs += 1,
            (true, true) => {
                o.refs += 1;
                o.pins += 1;
            }
            (true, false) => {
                o.refs += i64::from(GUP_PIN_COUNTING_BIAS);
                o.pins += 1;
            }
        }
    }
    // Pin accounting first: it is the more specific diagnosis.
    for (&f, o) in &owed {
        if o.pins == 0 {
            continue;
        }
        let p = w.page(f);
        let ok = if p.flags.peek() & PG_HEAD != 0 {
            i64::from(p.pincount.peek()) == o.pins
        } else {
            i64::from(p.refcount.peek()) >= i64::from(GUP_PIN_COUNTING_BIAS) * o.pins
        };
        if !ok {
            return Some(v(
                Kind::PinAccounting,
                f,
                format!(
                    "folio {f} has {} pins from GUP results but refcount {} / pincount {}: folio_maybe_dma_pinned() is wrong",
                    o.pins,
                    p.refcount.peek(),
                    p.pincount.peek()
                ),
            ));
        }
    }
    for p in &w.pages {
        if p.is_free() || p.flags.peek() & PG_TABLE != 0 {
            continue;
        }
        let mapped = maps.get(&p.pfn).copied().unwrap_or(0);
        if p.mapcount.peek() != mapped {
            return Some(v(
                Kind::BadPageState,
                p.pfn,
                format!(
                    "pfn {} has mapcount {} but {mapped} PTEs map it",
                    p.pfn,
                    p.mapcount.peek()
                ),
            ));
        }
        if p.compound_head.peek() != NO_HEAD {
            // A tail never holds references of its own: they belong to the head.
            if p.refcount.peek() != 0 {
                return Some(v(
                    Kind::RefLeak,
                    p.pfn,
                    format!("tail pfn {} holds {} references", p.pfn, p.refcount.peek()),
                ));
            }
            continue;
        }
        let o = owed.get(&p.pfn).copied().unwrap_or_default();
        let have = i64::from(p.refcount.peek());
        if have == o.refs {
            continue;
        }
        let kind = if have > o.refs {
            Kind::RefLeak
        } else {
            Kind::RefMissing
        };
        return Some(v(
            kind,
            p.pfn,
            format!(
                "folio {} has refcount {have} but its owners account for {} ({} PTE maps, {} page-cache slots, {} GUP references)",
                p.pfn, o.refs, o.maps, o.cache, o.gup
            ),
        ));
    }
    None
}

/// Before release: `MM_ANONPAGES` must count exactly the anonymous pages the page tables map
/// (present PTEs and migration entries of anonymous folios). An anonymous page mapped from a
/// page table that was freed is still counted, and can never be unmapped: exit_mmap would
/// report "Bad rss-counter state MM_ANONPAGES val:1" and the page leaks.
pub fn check_rss(w: &World, _held: &[HeldRef], _kernel: &[u32]) -> Option<Violation> {
    let mut mapped = 0i64;
    for pmdp in &w.mm.pmds {
        let pmd = pmdp.peek();
        if pmd & PMD_TABLE == 0 {
            continue;
        }
        let table = pmd_table_pfn(pmd);
        for i in 0..w.nr_subpages() {
            let pte = w.pte(table, i).peek();
            if !pte_present(pte) && !is_migration_entry(pte) {
                continue;
            }
            let folio = w.page(pte_pfn(pte)).folio_peek();
            if w.page(folio).flags.peek() & PG_ANON != 0 {
                mapped += 1;
            }
        }
    }
    let rss = i64::from(w.mm.rss_anon.peek());
    (rss != mapped).then(|| Violation {
        kind: Kind::PageLeak,
        func: "check_mm".into(),
        thread: None,
        pfn: None,
        detail: format!(
            "Bad rss-counter state MM_ANONPAGES val:{}: {rss} counted, {mapped} mapped by the page tables",
            rss - mapped
        ),
    })
}

/// After every owner was released and the mm torn down: nothing may stay allocated.
pub fn check_all_free(w: &World) -> Option<Violation> {
    let rss = w.mm.rss_anon.peek();
    if rss != 0 {
        return Some(Violation {
            kind: Kind::PageLeak,
            func: "exit_mmap".into(),
            thread: None,
            pfn: None,
            detail: format!("Bad rss-counter state MM_ANONPAGES val:{rss}"),
        });
    }
    w.pages.iter().find(|p| !p.is_free()).map(|p| Violation {
        kind: Kind::PageLeak,
        func: "exit_mmap".into(),
        thread: None,
        pfn: Some(p.pfn),
        detail: format!(
            "pfn {} still allocated (refcount {}) after teardown",
            p.pfn,
            p.refcount.peek()
        ),
    })
}

/// After teardown: every page on the allocator's free list is present in the direct map (the
/// next kernel user of a page that is not would fault on it).
pub fn check_free_present(w: &World) -> Option<Violation> {
    let dmap = w.cpa_lock.data_unlocked();
    w.pages
        .iter()
        .find(|p| p.is_free() && !dmap.present(p.pfn))
        .map(|p| Violation {
            kind: Kind::FreeNotPresent,
            func: "direct map at teardown".into(),
            thread: None,
            pfn: Some(p.pfn),
            detail: format!(
                "pfn {} is on the free list but not present in the direct map",
                p.pfn
            ),
        })
}
