//! mm/gup.c: get_user_pages and its lockless fast path, FOLL_GET and FOLL_PIN.

use crate::bugs::Bug;
use crate::errno::Errno;
use crate::memory::{handle_mm_fault, migration_entry_wait, pte_offset_map_lock};
use crate::mm_types::*;
use crate::page_ref::{
    folio_put_refs, folio_ref_add, folio_ref_try_add, folio_test_large, page_folio,
};
use crate::site;
use crate::sync::{Ctx, KResult};
use crate::violation::Kind;
use crate::world::World;

/// FOLL_GET or FOLL_PIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Foll {
    /// `FOLL_GET`: a plain reference, dropped with `put_page()`.
    Get,
    /// `FOLL_PIN`: a DMA pin, dropped with `unpin_user_page()`.
    Pin,
}

/// `try_get_folio()`: speculative reference on the folio `page` belongs to, with the head
/// recheck that commit c24d37322548 added.
pub fn try_get_folio(ctx: &mut Ctx, w: &World, page: u32, refs: i32) -> KResult<Option<u32>> {
    loop {
        let folio = page_folio(
            ctx,
            w,
            page,
            site!("try_get_folio", "folio = page_folio(page)"),
        )?;
        if !folio_ref_try_add(ctx, w, folio, refs)? {
            return Ok(None);
        }
        if w.cfg.bugs.has(Bug::GupNoHeadRecheck) {
            // <= 5.12 try_get_compound_head(): the head computed before the reference is trusted.
            return Ok(Some(folio));
        }
        // c24d37322548: a split may have made `page` a folio of its own in the meantime.
        if page_folio(
            ctx,
            w,
            page,
            site!("try_get_folio", "page_folio(page) != folio (recheck)"),
        )? != folio
        {
            folio_put_refs(ctx, w, folio, refs)?;
            ctx.cpu_relax(site!("try_get_folio", "goto retry"))?;
            continue;
        }
        return Ok(Some(folio));
    }
}

/// `try_grab_folio_fast()`: the gup-fast reference, with the pin accounting of FOLL_PIN
/// (large folios: `_pincount`; small folios: GUP_PIN_COUNTING_BIAS references).
pub fn try_grab_folio_fast(
    ctx: &mut Ctx,
    w: &World,
    page: u32,
    refs: i32,
    foll: Foll,
) -> KResult<Option<u32>> {
    if foll == Foll::Get {
        return try_get_folio(ctx, w, page, refs);
    }
    if w.cfg.bugs.has(Bug::GupPinBiasEarly) {
        // <= 5.12: hpage_pincount_available(page) decided on a page nobody holds a reference on.
        let large = hpage_pincount_available(ctx, w, page)?;
        let refs = if large {
            refs
        } else {
            refs * GUP_PIN_COUNTING_BIAS
        };
        let Some(folio) = try_get_folio(ctx, w, page, refs)? else {
            return Ok(None);
        };
        if hpage_pincount_available(ctx, w, folio)? {
            w.page(folio).pincount.add_return(
                ctx,
                site!("try_grab_compound_head", "hpage_pincount_add()"),
                refs,
            )?;
        }
        return Ok(Some(folio));
    }
    let Some(folio) = try_get_folio(ctx, w, page, refs)? else {
        return Ok(None);
    };
    // The folio is referenced now, so it cannot be split: its size is stable.
    if folio_test_large(ctx, w, folio)? {
        w.page(folio).pincount.add_return(
            ctx,
            site!("try_grab_folio_fast", "atomic_add(refs, &folio->_pincount)"),
            refs,
        )?;
    } else {
        folio_ref_add(ctx, w, folio, refs * (GUP_PIN_COUNTING_BIAS - 1))?;
    }
    Ok(Some(folio))
}

/// `hpage_pincount_available()` (<= 5.12): is `page` part of a compound page of order > 1?
fn hpage_pincount_available(ctx: &mut Ctx, w: &World, page: u32) -> KResult<bool> {
    let head = page_folio(
        ctx,
        w,
        page,
        site!("hpage_pincount_available", "compound_head(page)"),
    )?;
    let order = w.page(head).order.read_once(
        ctx,
        site!("hpage_pincount_available", "compound_order(head)"),
    )?;
    Ok(order > 1)
}

/// `gup_put_folio()`: undo one grab of `refs` on `folio`.
pub fn gup_put_folio(ctx: &mut Ctx, w: &World, folio: u32, refs: i32, foll: Foll) -> KResult<()> {
    let mut refs = refs;
    if foll == Foll::Pin {
        if folio_test_large(ctx, w, folio)? {
            let left = w.page(folio).pincount.add_return(
                ctx,
                site!("gup_put_folio", "atomic_sub(refs, &folio->_pincount)"),
                -refs,
            )?;
            if left < 0 {
                return Err(ctx.violation(
                    Kind::PinAccounting,
                    "gup_put_folio",
                    Some(folio),
                    format!("pincount of folio {folio} went to {left}"),
                ));
            }
        } else {
            refs *= GUP_PIN_COUNTING_BIAS;
        }
    }
    folio_put_refs(ctx, w, folio, refs)
}

/// `unpin_user_page()` / `put_page()` on a page GUP returned.
pub fn unpin_user_page(ctx: &mut Ctx, w: &World, page: u32, foll: Foll) -> KResult<()> {
    let folio = page_folio(ctx, w, page, site!("unpin_user_page", "page_folio(page)"))?;
    gup_put_folio(ctx, w, folio, 1, foll)
}

/// `gup_fast_pte_range()` for the one PTE of `vpn` under the PMD value `pmd`.
fn gup_fast_pte_range(
    ctx: &mut Ctx,
    w: &World,
    pmd: u64,
    vpn: u32,
    write: bool,
    foll: Foll,
) -> KResult<Option<u32>> {
    let table = pmd_table_pfn(pmd);
    let ptep = w.pte(table, vpn & (w.nr_subpages() - 1));
    let pte = ptep.read_once(ctx, site!("gup_fast_pte_range", "ptep_get_lockless(ptep)"))?;
    if !pte_present(pte) || (write && !pte_write(pte)) {
        return Ok(None);
    }
    let page = pte_pfn(pte);
    let Some(folio) = try_grab_folio_fast(ctx, w, page, 1, foll)? else {
        return Ok(None);
    };
    // Dekker with unmappers: the reference is taken, now recheck that the mapping still stands.
    let pmd_now = w.pmdp(vpn).read_once(
        ctx,
        site!("gup_fast_pte_range", "pmd_val(pmd) != pmd_val(*pmdp)"),
    )?;
    let pte_now = ptep.read_once(
        ctx,
        site!(
            "gup_fast_pte_range",
            "pte_val(pte) != pte_val(ptep_get(ptep))"
        ),
    )?;
    if pmd_now != pmd || !pte_same(pte, pte_now) {
        gup_put_folio(ctx, w, folio, 1, foll)?;
        return Ok(None);
    }
    Ok(Some(page))
}

/// `get_user_pages_fast_only()` / `pin_user_pages_fast_only()` for one page: the lockless walk
/// in an irq-off section. `None` means the caller would fall back to the slow path.
pub fn gup_fast(
    ctx: &mut Ctx,
    w: &World,
    vpn: u32,
    write: bool,
    foll: Foll,
) -> KResult<Option<u32>> {
    ctx.local_irq_disable();
    let r = gup_fast_walk(ctx, w, vpn, write, foll);
    ctx.local_irq_enable();
    r
}

/// `gup_fast_pgd_range()` down to the PMD.
fn gup_fast_walk(
    ctx: &mut Ctx,
    w: &World,
    vpn: u32,
    write: bool,
    foll: Foll,
) -> KResult<Option<u32>> {
    let pmd = w
        .pmdp(vpn)
        .read_once(ctx, site!("gup_fast_pmd_range", "pmdp_get_lockless(pmdp)"))?;
    if pmd & PMD_TABLE == 0 {
        return Ok(None);
    }
    gup_fast_pte_range(ctx, w, pmd, vpn, write, foll)
}

/// What `follow_page_pte()` found.
enum Follow {
    Page(u32),
    NoPage,
    Retry,
    Err(Errno),
}

/// `try_grab_folio()`: the slow-path reference, taken under the PTE lock on a mapped page.
fn try_grab_folio(ctx: &mut Ctx, w: &World, folio: u32, foll: Foll) -> KResult<Result<(), Errno>> {
    let rc = w
        .page(folio)
        .refcount
        .read_once(ctx, site!("try_grab_folio", "folio_ref_count(folio)"))?;
    if rc <= 0 {
        // WARN_ON_ONCE(folio_ref_count(folio) <= 0): a mapped page without references was
        // freed (or underflowed) under its PTE. The kernel bails with -ENOMEM; the model reports
        // what happened instead of hiding it behind an error code.
        let kind = if w.page(folio).is_free() {
            Kind::UseAfterFree
        } else {
            Kind::RefFromZero
        };
        return Err(ctx.violation(
            kind,
            "try_grab_folio",
            Some(folio),
            format!("a PTE maps folio {folio} whose refcount is {rc}"),
        ));
    }
    match foll {
        Foll::Get => folio_ref_add(ctx, w, folio, 1)?,
        Foll::Pin => {
            if folio_test_large(ctx, w, folio)? {
                folio_ref_add(ctx, w, folio, 1)?;
                w.page(folio).pincount.add_return(
                    ctx,
                    site!("try_grab_folio", "atomic_add(1, &folio->_pincount)"),
                    1,
                )?;
            } else {
                folio_ref_add(ctx, w, folio, GUP_PIN_COUNTING_BIAS)?;
            }
        }
    }
    Ok(Ok(()))
}

/// `follow_page_pte()`: look the page up under the PTE lock and grab it.
fn follow_page_pte(ctx: &mut Ctx, w: &World, vpn: u32, write: bool, foll: Foll) -> KResult<Follow> {
    let Some(table) = pte_offset_map_lock(ctx, w, vpn)? else {
        return Ok(Follow::NoPage);
    };
    let pte = w.pte(table, vpn & (w.nr_subpages() - 1)).peek();
    if is_migration_entry(pte) {
        w.page(table).ptl.unlock(ctx)?;
        migration_entry_wait(ctx, w, vpn, pte)?;
        return Ok(Follow::Retry);
    }
    if !pte_present(pte) || (write && !pte_write(pte)) {
        w.page(table).ptl.unlock(ctx)?;
        return Ok(Follow::NoPage);
    }
    let page = pte_pfn(pte);
    let folio = page_folio(ctx, w, page, site!("follow_page_pte", "page_folio(page)"))?;
    let r = try_grab_folio(ctx, w, folio, foll)?;
    w.page(table).ptl.unlock(ctx)?;
    Ok(match r {
        Ok(()) => Follow::Page(page),
        Err(e) => Follow::Err(e),
    })
}

/// `__get_user_pages()` for one page (`get_user_pages` / `pin_user_pages`): follow the page
/// table, faulting the page in when it is missing. Takes `mmap_lock` for read.
pub fn get_user_pages(
    ctx: &mut Ctx,
    w: &World,
    kind: VmaKind,
    vpn: u32,
    write: bool,
    foll: Foll,
) -> KResult<Result<u32, Errno>> {
    w.mm.mmap_lock.down_read(ctx)?;
    let r = loop {
        match follow_page_pte(ctx, w, vpn, write, foll)? {
            Follow::Page(p) => break Ok(p),
            Follow::Err(e) => break Err(e),
            Follow::Retry => continue,
            Follow::NoPage => {
                if let Err(e) = handle_mm_fault(ctx, w, kind, vpn, write)? {
                    break Err(e);
                }
            }
        }
    };
    w.mm.mmap_lock.up_read(ctx)?;
    Ok(r)
}

/// `follow_page(FOLL_GET)` for callers that want the folio referenced (split_huge_pages_pid).
pub fn follow_page_get(ctx: &mut Ctx, w: &World, vpn: u32) -> KResult<Option<u32>> {
    loop {
        match follow_page_pte(ctx, w, vpn, false, Foll::Get)? {
            Follow::Page(p) => return Ok(Some(p)),
            Follow::Retry => continue,
            Follow::NoPage | Follow::Err(_) => return Ok(None),
        }
    }
}

/// `pin_user_pages_fast(FOLL_PIN | FOLL_LONGTERM [| FOLL_WRITE])` for one page. A long-term
/// writable pin of a file that needs dirty tracking (not anon, shmem or hugetlb) is refused:
/// `gup_fast_folio_allowed()` makes the fast path fall back, and the slow path's
/// `writable_file_mapping_allowed()` fails it with EFAULT, because writeback could clean and
/// release the page's file-system state under the device's feet for as long as it holds the
/// pin. `longterm-pin-file-write` restores the old behaviour that allowed it.
pub fn pin_user_pages_longterm(
    ctx: &mut Ctx,
    w: &World,
    kind: VmaKind,
    vpn: u32,
    write: bool,
) -> KResult<Result<u32, Errno>> {
    let needs_dirty_tracking = kind == VmaKind::Shared;
    if write && needs_dirty_tracking && !w.cfg.bugs.has(crate::bugs::Bug::LongtermPinFileWrite) {
        return Ok(Err(Errno::EFAULT));
    }
    if let Some(page) = gup_fast(ctx, w, vpn, write, Foll::Pin)? {
        return Ok(Ok(page));
    }
    get_user_pages(ctx, w, kind, vpn, write, Foll::Pin)
}

/// `unpin_user_pages_dirty_lock(make_dirty = true)` (and `put_user_pages_dirty_lock()` for a
/// FOLL_GET reference): mark the page dirty under its lock, then release the reference.
pub fn unpin_user_page_dirty_lock(ctx: &mut Ctx, w: &World, page: u32, foll: Foll) -> KResult<()> {
    crate::writeback::set_page_dirty_lock(ctx, w, page)?;
    unpin_user_page(ctx, w, page, foll)
}
