//! include/linux/page_ref.h and mm.h: folio reference counting, with the kernel's sanity checks.

use crate::mm_types::*;
use crate::page_alloc;
use crate::site;
use crate::sync::{Ctx, KResult};
use crate::violation::Kind;
use crate::world::World;

/// `page_folio()`: reads `page->compound_head`, which a concurrent split may change. The caller
/// names the site (the kernel inlines it), so race diagrams and coverage show who read it.
pub fn page_folio(
    ctx: &mut Ctx,
    w: &World,
    page: u32,
    site: &'static crate::sync::Site,
) -> KResult<u32> {
    let h = w.page(page).compound_head.read_once(ctx, site)?;
    Ok(if h == NO_HEAD { page } else { h })
}

/// `folio_test_large()`: reads the head's order.
pub fn folio_test_large(ctx: &mut Ctx, w: &World, folio: u32) -> KResult<bool> {
    let flags = w
        .page(folio)
        .flags
        .read_once(ctx, site!("folio_test_large", "READ_ONCE(folio->flags)"))?;
    Ok(flags & PG_HEAD != 0)
}

/// `folio_ref_try_add()`: add `refs` unless the count is zero (free or frozen).
pub fn folio_ref_try_add(ctx: &mut Ctx, w: &World, folio: u32, refs: i32) -> KResult<bool> {
    let rc = &w.page(folio).refcount;
    let mut c = rc.read_once(
        ctx,
        site!("folio_ref_try_add", "atomic_read(&folio->_refcount)"),
    )?;
    loop {
        if c == 0 {
            return Ok(false);
        }
        match rc.cmpxchg(
            ctx,
            site!("folio_ref_try_add", "atomic_try_cmpxchg(&folio->_refcount)"),
            c,
            c + refs,
        )? {
            Ok(_) => return Ok(true),
            Err(now) => c = now,
        }
    }
}

/// `folio_ref_add()` / `folio_get()`: an unconditional reference; the caller must already own one.
pub fn folio_ref_add(ctx: &mut Ctx, w: &World, folio: u32, refs: i32) -> KResult<()> {
    let p = w.page(folio);
    let new = p.refcount.add_return(
        ctx,
        site!("folio_ref_add", "atomic_add(&folio->_refcount)"),
        refs,
    )?;
    if new - refs <= 0 {
        let kind = if p.is_free() {
            Kind::UseAfterFree
        } else {
            Kind::RefFromZero
        };
        return Err(ctx.violation(
            kind,
            "folio_ref_add",
            Some(folio),
            format!(
                "reference taken on folio {folio} whose count was {}",
                new - refs
            ),
        ));
    }
    Ok(())
}

/// `folio_put_refs()`: drop `refs`; free the folio when the count reaches zero.
pub fn folio_put_refs(ctx: &mut Ctx, w: &World, folio: u32, refs: i32) -> KResult<()> {
    let p = w.page(folio);
    let new = p.refcount.add_return(
        ctx,
        site!("folio_put_refs", "atomic_sub_return(&folio->_refcount)"),
        -refs,
    )?;
    if new < 0 {
        let kind = if p.is_free() && new + refs == 0 {
            Kind::UseAfterFree
        } else {
            Kind::RefcountUnderflow
        };
        return Err(ctx.violation(
            kind,
            "folio_put_refs",
            Some(folio),
            format!("put of {refs} on folio {folio} left its count at {new}"),
        ));
    }
    if new == 0 {
        if ctx.in_nmi() {
            // The zone lock is not NMI-safe (the interrupted code may hold it): hand the folio
            // to irq_work, as free_pages_nolock() does.
            page_alloc::defer_free_folio(w, folio);
        } else {
            page_alloc::free_folio(ctx, w, folio)?;
        }
    }
    Ok(())
}

/// `folio_put()`.
pub fn folio_put(ctx: &mut Ctx, w: &World, folio: u32) -> KResult<()> {
    folio_put_refs(ctx, w, folio, 1)
}

/// `folio_ref_freeze()`: `count` -> 0 atomically, or fail.
pub fn folio_ref_freeze(ctx: &mut Ctx, w: &World, folio: u32, count: i32) -> KResult<bool> {
    let r = w.page(folio).refcount.cmpxchg(
        ctx,
        site!(
            "folio_ref_freeze",
            "atomic_cmpxchg(&folio->_refcount, count, 0)"
        ),
        count,
        0,
    )?;
    if r.is_ok() {
        w.page(folio)
            .frozen_by
            .store(u32::from(ctx.tid()), std::sync::atomic::Ordering::Relaxed);
    }
    Ok(r.is_ok())
}

/// `page_ref_unfreeze()`: a frozen (zero) count becomes `count` (release).
pub fn page_ref_unfreeze(ctx: &mut Ctx, w: &World, page: u32, count: i32) -> KResult<()> {
    let p = w.page(page);
    debug_assert_eq!(
        p.refcount.peek(),
        0,
        "unfreeze of a page that is not frozen"
    );
    p.frozen_by
        .store(NOT_FROZEN, std::sync::atomic::Ordering::Relaxed);
    p.refcount.store_release(
        ctx,
        site!("page_ref_unfreeze", "atomic_set_release(&page->_refcount)"),
        count,
    )
}

/// `folio_maybe_dma_pinned()`: large folios count pins exactly, small ones by the bias.
pub fn folio_maybe_dma_pinned(ctx: &mut Ctx, w: &World, folio: u32) -> KResult<bool> {
    let p = w.page(folio);
    if p.flags
        .read_once(ctx, site!("folio_maybe_dma_pinned", "folio_test_large()"))?
        & PG_HEAD
        != 0
    {
        Ok(p.pincount.read_once(
            ctx,
            site!("folio_maybe_dma_pinned", "atomic_read(&folio->_pincount)"),
        )? > 0)
    } else {
        Ok(p.refcount
            .read_once(ctx, site!("folio_maybe_dma_pinned", "folio_ref_count()"))?
            >= GUP_PIN_COUNTING_BIAS)
    }
}

/// `folio_maybe_dma_pinned()` as a checker reads it (no scheduling point).
pub fn folio_maybe_dma_pinned_peek(w: &World, folio: u32) -> bool {
    let p = w.page(folio);
    if p.flags.peek() & PG_HEAD != 0 {
        p.pincount.peek() > 0
    } else {
        p.refcount.peek() >= GUP_PIN_COUNTING_BIAS
    }
}
