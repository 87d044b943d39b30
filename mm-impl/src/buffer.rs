//! fs/buffer.c: the file system's per-page state (buffer heads), as ext4 attaches it in
//! `page_mkwrite`, needs it in writeback, and drops it from clean pages (`try_to_free_buffers`).

use crate::bugs::Bug;
use crate::filemap::{filemap_get_entry, AddressSpace, Lookup, OnRetry};
use crate::huge_memory::{folio_trylock, folio_unlock};
use crate::mm_types::*;
use crate::page_ref::{folio_maybe_dma_pinned, folio_put};
use crate::site;
use crate::sync::{Ctx, KResult};
use crate::world::World;
use serde::{Deserialize, Serialize};

/// What releasing a page's buffers did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReleaseOutcome {
    /// The buffers were dropped.
    Released,
    /// The page is locked, dirty, under writeback or (fixed model) maybe DMA-pinned.
    Busy,
    /// The page has no buffers, or is not cached.
    Nothing,
}

/// `create_empty_buffers()` (from `block_page_mkwrite()`): attach buffers to a locked folio.
pub fn create_empty_buffers(ctx: &mut Ctx, w: &World, folio: u32) -> KResult<()> {
    w.page(folio).flags.fetch_or(
        ctx,
        site!("create_empty_buffers", "folio_attach_private()"),
        PG_PRIVATE,
    )?;
    Ok(())
}

/// `try_to_free_buffers()` on the folio caching `index`, as reclaim or the file system calls it
/// for a clean page: trylock, refuse if dirty or under writeback, drop the buffers. The fixed
/// model also keeps them while the folio may be DMA-pinned, so a pinned page written by a
/// device can still be written back; `pin-writeback-race` restores upstream, which drops them.
pub fn try_to_free_buffers(
    ctx: &mut Ctx,
    w: &World,
    m: &AddressSpace,
    index: u32,
) -> KResult<ReleaseOutcome> {
    let folio = match filemap_get_entry(ctx, w, m, index, OnRetry::Spin)? {
        Lookup::Folio(f) => f,
        _ => return Ok(ReleaseOutcome::Nothing),
    };
    if !folio_trylock(ctx, w, folio)? {
        folio_put(ctx, w, folio)?;
        return Ok(ReleaseOutcome::Busy);
    }
    let flags = w.page(folio).flags.read_once(
        ctx,
        site!("try_to_free_buffers", "folio_test_dirty/writeback/private"),
    )?;
    let r = if flags & PG_PRIVATE == 0 {
        ReleaseOutcome::Nothing
    } else if flags & (PG_DIRTY | PG_WRITEBACK) != 0
        || (!w.cfg.bugs.has(Bug::PinWritebackRace) && folio_maybe_dma_pinned(ctx, w, folio)?)
    {
        ReleaseOutcome::Busy
    } else {
        w.page(folio).flags.fetch_andnot_release(
            ctx,
            site!("try_to_free_buffers", "folio_detach_private()"),
            PG_PRIVATE,
        )?;
        ReleaseOutcome::Released
    };
    folio_unlock(ctx, w, folio)?;
    folio_put(ctx, w, folio)?;
    Ok(r)
}
