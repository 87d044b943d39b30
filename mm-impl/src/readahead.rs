//! mm/readahead.c: `page_cache_ra_unbounded()` for one page, with the read I/O completing as a
//! later step: the folio is in the page cache, locked and not uptodate, while the read runs.

use crate::errno::Errno;
use crate::filemap::{filemap_add_folio, folio_mark_uptodate, AddressSpace};
use crate::huge_memory::folio_unlock;
use crate::mm_types::*;
use crate::page_alloc::alloc_pages;
use crate::page_ref::folio_put;
use crate::site;
use crate::sync::{Ctx, KResult};
use crate::world::{file_data, World};
use crate::xarray::{xas_load, XaEntry};
use serde::{Deserialize, Serialize};

/// What readahead of one page did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RaOutcome {
    /// A new folio was inserted and read in.
    Read,
    /// Something was already cached there (perhaps still being read by someone else).
    Cached,
    /// The folio or the xarray node could not be allocated.
    NoMem,
}

/// `page_cache_ra_unbounded()` + `read_pages()` for page `index` of the file.
pub fn page_cache_ra_unbounded(
    ctx: &mut Ctx,
    w: &World,
    m: &AddressSpace,
    index: u32,
) -> KResult<RaOutcome> {
    // A folio already cached is skipped; a shadow is replaced.
    let (e, _) = xas_load(ctx, &m.i_pages, index)?;
    if matches!(e, XaEntry::Folio(_) | XaEntry::Retry) {
        return Ok(RaOutcome::Cached);
    }
    let Some(folio) = alloc_pages(ctx, w, 0)? else {
        return Ok(RaOutcome::NoMem);
    };
    // __folio_set_locked(): the folio is still private.
    w.page(folio).flags.store_plain(
        ctx,
        site!("ractl_alloc_folio", "__folio_set_locked()"),
        PG_LOCKED,
    );
    match filemap_add_folio(ctx, w, m, folio, index)? {
        Ok(()) => {}
        Err(e) => {
            w.page(folio).flags.store_plain(
                ctx,
                site!("ractl_alloc_folio", "__folio_clear_locked()"),
                0,
            );
            folio_put(ctx, w, folio)?;
            return Ok(if e == Errno::EEXIST {
                RaOutcome::Cached
            } else {
                RaOutcome::NoMem
            });
        }
    }
    // The folio is visible to lockless lookups from here on, locked and not uptodate.
    // The read I/O: the disk's contents land in the page, then end_io marks it uptodate.
    w.page(folio).data.write_once(
        ctx,
        site!("mpage_read_end_io", "DMA from disk into the folio"),
        file_data(index),
    )?;
    folio_mark_uptodate(ctx, w, folio)?;
    folio_unlock(ctx, w, folio)?;
    // readahead_folio() drops the reference the readahead control held.
    folio_put(ctx, w, folio)?;
    Ok(RaOutcome::Read)
}
