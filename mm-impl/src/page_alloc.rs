//! mm/page_alloc.c: a buddy-like allocator that poisons freed pages and reuses them first.

use crate::mm_types::*;
use crate::site;
use crate::sync::{Ctx, KResult};
use crate::violation::Kind;
use crate::world::World;

/// `alloc_pages()`: the lowest free, naturally aligned block of `2^order` pages, refcount 1,
/// zeroed, compound if `order > 0`. `None` when the fault plan fails this allocation or memory
/// is exhausted. Lowest-first reuse makes a use-after-free land on a live page quickly.
pub fn alloc_pages(ctx: &mut Ctx, w: &World, order: u32) -> KResult<Option<u32>> {
    if ctx.should_fail_alloc() {
        return Ok(None);
    }
    let n = 1usize << order;
    w.zone.lock(ctx)?;
    let found = {
        let mut free = w.zone.data(ctx);
        let mut found = None;
        let mut start = 0;
        while start + n <= free.len() {
            if free[start..start + n].iter().all(|&f| f) {
                free[start..start + n].iter_mut().for_each(|f| *f = false);
                found = Some(start as u32);
                break;
            }
            start += n;
        }
        found
    };
    w.zone.unlock(ctx)?;
    let Some(pfn) = found else { return Ok(None) };
    // clear_page() writes through the direct map: a free page that is not present faults here.
    let absent = {
        let dmap = w.cpa_lock.data_unlocked();
        (pfn..pfn + n as u32).find(|&p| !dmap.present(p))
    };
    if let Some(p) = absent {
        return Err(ctx.violation(
            Kind::KernelPageFault,
            "prep_new_page",
            Some(p),
            format!("clear_page() of newly allocated pfn {p}: not present in the direct map"),
        ));
    }
    // prep_new_page(): the block is private to this CPU until published, so plain stores.
    for i in 0..n as u32 {
        let p = w.page(pfn + i);
        // prep_new_page() + prep_compound_page(): one traced write per page is enough to show
        // (and count as progress) that the page was reinitialised.
        p.flags.set_plain(0);
        p.data.set_plain(0);
        p.mapcount.set_plain(0);
        p.pincount.set_plain(0);
        p.order.set_plain(0);
        p.refcount.set_plain(0);
        p.compound_head.store_plain(
            ctx,
            site!(
                "prep_new_page",
                "reset struct page, clear_page(), set_compound_head()"
            ),
            if i == 0 { NO_HEAD } else { pfn },
        );
    }
    let head = w.page(pfn);
    head.refcount
        .store_plain(ctx, site!("post_alloc_hook", "set_page_refcounted()"), 1);
    if order > 0 {
        head.flags
            .store_plain(ctx, site!("prep_compound_page", "__SetPageHead()"), PG_HEAD);
        head.order
            .store_plain(ctx, site!("prep_compound_page", "folio_set_order()"), order);
    }
    Ok(Some(pfn))
}

/// `free_pages_prepare()` + `__free_pages_ok()`: check the folio is really unused
/// (`bad_page()` otherwise), poison it and return it to the free list.
pub fn free_folio(ctx: &mut Ctx, w: &World, folio: u32) -> KResult<()> {
    let head = w.page(folio);
    let order = head.order.peek();
    for i in 0..(1u32 << order) {
        let p = w.page(folio + i);
        // free_page_is_bad() / free_tail_page_prepare(): no references on tails, not locked.
        let (rc, flags) = (p.refcount.peek(), p.flags.peek());
        if (i > 0 && rc != 0) || flags & PG_LOCKED != 0 {
            return Err(ctx.violation(
                Kind::BadPageState,
                "free_pages_prepare",
                Some(p.pfn),
                format!(
                    "freeing pfn {} of folio {folio}: refcount {rc}, flags {flags:#x}",
                    p.pfn
                ),
            ));
        }
        let mc = p.mapcount.peek();
        if mc != 0 {
            return Err(ctx.violation(
                Kind::BadPageState,
                "free_pages_prepare",
                Some(p.pfn),
                format!(
                    "freeing pfn {} of folio {folio} with mapcount {mc}: a PTE still maps it",
                    p.pfn
                ),
            ));
        }
    }
    let pins = head.pincount.peek();
    if order > 0 && pins != 0 {
        return Err(ctx.violation(
            Kind::BadPageState,
            "free_pages_prepare",
            Some(folio),
            format!("freeing folio {folio} with pincount {pins}"),
        ));
    }
    for i in 0..(1u32 << order) {
        let p = w.page(folio + i);
        // The poison is written through the facade: other CPUs may still hold stale pointers.
        p.data
            .write_once(ctx, site!("free_pages_prepare", "poison page"), POISON)?;
        p.compound_head.set_plain(NO_HEAD);
        p.order.set_plain(0);
        p.flags.store_plain(
            ctx,
            site!("free_pages_prepare", "page to the buddy free list"),
            PG_BUDDY,
        );
    }
    w.zone.lock(ctx)?;
    {
        let mut free = w.zone.data(ctx);
        for i in 0..(1usize << order) {
            free[folio as usize + i] = true;
        }
    }
    w.zone.unlock(ctx)
}

/// Checker view: number of free pages.
pub fn nr_free(w: &World) -> usize {
    w.pages.iter().filter(|p| p.is_free()).count()
}

/// `defer_free_pages()`: a folio whose last reference was dropped in NMI context waits on the
/// CPU's lockless list (`llist_add`, no lock) until irq_work frees it.
pub fn defer_free_folio(w: &World, folio: u32) {
    w.deferred_free
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(folio);
}

/// `irq_work_run()` of the deferred frees: outside NMI context, free what NMIs left behind.
pub fn irq_work_run(ctx: &mut Ctx, w: &World) -> KResult<()> {
    if ctx.in_nmi() {
        return Ok(());
    }
    loop {
        let next = w
            .deferred_free
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop();
        match next {
            Some(folio) => free_folio(ctx, w, folio)?,
            None => return Ok(()),
        }
    }
}
