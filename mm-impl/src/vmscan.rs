//! mm/truncate.c and mm/vmscan.c: eviction of one clean, unused page-cache folio
//! (`invalidate_mapping_pages()` -> `mapping_evict_folio()` -> `__remove_mapping()`), which
//! freezes the folio's references while it unhooks it.

use crate::filemap::{__filemap_remove_folio, filemap_get_entry, AddressSpace, Lookup, OnRetry};
use crate::huge_memory::{folio_trylock, folio_unlock};
use crate::mm_types::*;
use crate::page_alloc::free_folio;
use crate::page_ref::{folio_put, folio_ref_freeze};
use crate::site;
use crate::sync::{Ctx, KResult};
use crate::world::World;
use serde::{Deserialize, Serialize};

/// What evicting the folio at an index did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EvictOutcome {
    /// The folio was removed and freed: this many pages.
    Evicted(u32),
    /// Locked or referenced by someone else.
    Busy,
    /// Nothing cached there.
    NotCached,
}

/// `mapping_evict_folio()` for the folio caching `index`, as `invalidate_mapping_pages()` finds
/// it: a lookup reference, trylock, and `__remove_mapping()` without a shadow.
pub fn mapping_evict_folio(
    ctx: &mut Ctx,
    w: &World,
    m: &AddressSpace,
    index: u32,
) -> KResult<EvictOutcome> {
    let folio = match filemap_get_entry(ctx, w, m, index, OnRetry::Spin)? {
        Lookup::Folio(f) => f,
        _ => return Ok(EvictOutcome::NotCached),
    };
    if !folio_trylock(ctx, w, folio)? {
        folio_put(ctx, w, folio)?;
        return Ok(EvictOutcome::Busy);
    }
    let nr = 1u32
        << w.page(folio)
            .order
            .read_once(ctx, site!("__remove_mapping", "folio_nr_pages()"))?;
    if __remove_mapping(ctx, w, m, folio, nr)? {
        // The folio is frozen at zero: nobody else can reach it; free it directly.
        w.page(folio).flags.store_plain(
            ctx,
            site!("mapping_evict_folio", "__folio_clear_locked()"),
            w.page(folio).flags.peek() & !PG_LOCKED,
        );
        w.page(folio)
            .frozen_by
            .store(NOT_FROZEN, std::sync::atomic::Ordering::Relaxed);
        free_folio(ctx, w, folio)?;
        Ok(EvictOutcome::Evicted(nr))
    } else {
        folio_unlock(ctx, w, folio)?;
        folio_put(ctx, w, folio)?;
        Ok(EvictOutcome::Busy)
    }
}

/// `__remove_mapping()`: under `xa_lock`, freeze the expected references (the page cache's and
/// the caller's) and delete the folio. False if anyone else holds a reference.
fn __remove_mapping(
    ctx: &mut Ctx,
    w: &World,
    m: &AddressSpace,
    folio: u32,
    nr: u32,
) -> KResult<bool> {
    ctx.local_irq_disable();
    m.i_pages.xa_lock.lock(ctx)?;
    let frozen = folio_ref_freeze(ctx, w, folio, 1 + nr as i32)?;
    if frozen {
        __filemap_remove_folio(ctx, w, m, folio)?;
    }
    m.i_pages.xa_lock.unlock(ctx)?;
    ctx.local_irq_enable();
    Ok(frozen)
}
