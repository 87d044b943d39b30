//! mm/khugepaged.c: `collapse_file()` of a read-only file range into one huge folio, the
//! fixed 6.6 path (copy, mark uptodate, then one multi-order store) and, under
//! `collapse-publish-early`, the <= 6.3 path (freeze the old pages and store the locked,
//! not yet uptodate huge folio in their slots before the copy, with its rollback).

use crate::bugs::Bug;
use crate::filemap::{folio_mark_uptodate, AddressSpace};
use crate::huge_memory::{folio_trylock, folio_unlock};
use crate::mm_types::*;
use crate::page_alloc::alloc_pages;
use crate::page_ref::{
    folio_put, folio_put_refs, folio_ref_add, folio_ref_freeze, folio_ref_try_add,
    page_ref_unfreeze,
};
use crate::site;
use crate::sync::{Ctx, KResult};
use crate::world::World;
use crate::xarray::{xas_load, xas_store, xas_store_order, XaEntry};
use serde::{Deserialize, Serialize};

/// Why a collapse did not happen (`enum scan_result`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CollapseOutcome {
    /// `SCAN_SUCCEED`: the range is one huge folio now.
    Collapsed,
    /// A page is missing (`SCAN_FAIL` after readahead would be needed).
    NotCached,
    /// A page is not uptodate, or already part of a large folio.
    Fail,
    /// `SCAN_PAGE_LOCK`: a page is locked by someone else.
    Locked,
    /// `SCAN_PAGE_COUNT`: someone else holds a reference.
    Busy,
    /// `SCAN_ALLOC_HUGE_PAGE_FAIL`.
    NoMem,
}

/// `collapse_file()` on huge-page range `range` of a file that is not shmem.
pub fn collapse_file(
    ctx: &mut Ctx,
    w: &World,
    m: &AddressSpace,
    range: u32,
) -> KResult<CollapseOutcome> {
    let nr = w.nr_subpages();
    let start = range << w.cfg.order;
    let publish_early = w.cfg.bugs.has(Bug::CollapsePublishEarly);
    let Some(hpage) = alloc_pages(ctx, w, w.cfg.order.into())? else {
        return Ok(CollapseOutcome::NoMem);
    };
    // The new folio is private: locked, not uptodate, not in the page cache.
    let h = w.page(hpage);
    h.flags.store_plain(
        ctx,
        site!("collapse_file", "__folio_set_locked(new_folio)"),
        PG_HEAD | PG_LOCKED,
    );
    h.index.store_plain(
        ctx,
        site!("collapse_file", "new_folio->index = start"),
        start,
    );

    let mut old: Vec<u32> = Vec::with_capacity(nr as usize);
    let mut result = CollapseOutcome::Collapsed;
    for index in start..start + nr {
        m.i_pages.xa_lock.lock(ctx)?;
        let (e, _) = xas_load(ctx, &m.i_pages, index)?;
        let page = match e {
            XaEntry::Folio(f) if w.page(f).order.peek() == 0 => f,
            XaEntry::Folio(_) => {
                m.i_pages.xa_lock.unlock(ctx)?;
                result = CollapseOutcome::Fail;
                break;
            }
            _ => {
                m.i_pages.xa_lock.unlock(ctx)?;
                result = CollapseOutcome::NotCached;
                break;
            }
        };
        if !folio_trylock(ctx, w, page)? {
            m.i_pages.xa_lock.unlock(ctx)?;
            result = CollapseOutcome::Locked;
            break;
        }
        // folio_get() under xa_lock: the slot still names it, so it cannot be free.
        folio_ref_add(ctx, w, page, 1)?;
        m.i_pages.xa_lock.unlock(ctx)?;
        if w.page(page)
            .flags
            .read_once(ctx, site!("collapse_file", "folio_test_uptodate(folio)"))?
            & PG_UPTODATE
            == 0
        {
            folio_unlock(ctx, w, page)?;
            folio_put(ctx, w, page)?;
            result = CollapseOutcome::Fail;
            break;
        }
        // folio_isolate_lru(): the isolation holds a reference of its own.
        if !folio_ref_try_add(ctx, w, page, 1)? {
            unreachable!("we hold a reference");
        }
        m.i_pages.xa_lock.lock(ctx)?;
        // Expected: the page cache's, ours and the isolation's.
        let ok = if publish_early {
            // <= 6.3: freeze the old page and put the huge folio in its slot at once.
            if folio_ref_freeze(ctx, w, page, 3)? {
                xas_store(ctx, &m.i_pages, index, XaEntry::Folio(hpage))?
                    .expect("the slot's node exists");
                true
            } else {
                false
            }
        } else {
            w.page(page)
                .refcount
                .read_once(ctx, site!("collapse_file", "folio_ref_count(folio) != 3"))?
                == 3
        };
        m.i_pages.xa_lock.unlock(ctx)?;
        if !ok {
            folio_put_refs(ctx, w, page, 1)?;
            folio_unlock(ctx, w, page)?;
            folio_put(ctx, w, page)?;
            result = CollapseOutcome::Busy;
            break;
        }
        old.push(page);
    }

    if result != CollapseOutcome::Collapsed {
        if publish_early {
            // rollback: put the old pages back in their slots.
            m.i_pages.xa_lock.lock(ctx)?;
            for &page in &old {
                page_ref_unfreeze(ctx, w, page, 3)?;
                let index = w.page(page).index.peek();
                xas_store(ctx, &m.i_pages, index, XaEntry::Folio(page))?
                    .expect("the slot's node exists");
            }
            m.i_pages.xa_lock.unlock(ctx)?;
        }
        for &page in &old {
            folio_put_refs(ctx, w, page, 1)?;
            folio_unlock(ctx, w, page)?;
            folio_put(ctx, w, page)?;
        }
        folio_unlock(ctx, w, hpage)?;
        folio_put(ctx, w, hpage)?;
        return Ok(result);
    }

    // Copy the old pages into the huge folio, one subpage at a time.
    for (i, &page) in old.iter().enumerate() {
        let v = w.page(page).data.read_once(
            ctx,
            site!("collapse_file", "copy_mc_highpage(): read old page"),
        )?;
        w.page(hpage + i as u32).data.write_once(
            ctx,
            site!("collapse_file", "copy_mc_highpage(): write huge subpage"),
            v,
        )?;
    }
    if publish_early {
        for &page in &old {
            // The old page left the page cache when its slot was overwritten.
            page_ref_unfreeze(ctx, w, page, 1)?;
            folio_unlock(ctx, w, page)?;
            folio_put(ctx, w, page)?;
        }
        folio_mark_uptodate(ctx, w, hpage)?;
        folio_ref_add(ctx, w, hpage, nr as i32 - 1)?;
    } else {
        // Uptodate before it becomes visible, then one store joins the small entries.
        folio_mark_uptodate(ctx, w, hpage)?;
        folio_ref_add(ctx, w, hpage, nr as i32 - 1)?;
        m.i_pages.xa_lock.lock(ctx)?;
        xas_store_order(ctx, &m.i_pages, range, XaEntry::Folio(hpage))?;
        m.i_pages.xa_lock.unlock(ctx)?;
    }
    folio_unlock(ctx, w, hpage)?;
    if !publish_early {
        // The collapse succeeded: free the old folios (page cache, ours, isolation).
        for &page in &old {
            folio_unlock(ctx, w, page)?;
            folio_put_refs(ctx, w, page, 3)?;
        }
    }
    Ok(CollapseOutcome::Collapsed)
}
