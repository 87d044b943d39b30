//! mm/shmem.c + mm/memory.c: the read fault of the private shmem mapping (`do_read_fault()`
//! with `shmem_fault()` and `finish_fault()`): map the file's page read-only under its folio
//! lock; a hole under a userfaultfd MISSING registration fails at once.

use crate::errno::Errno;
use crate::filemap::{filemap_get_entry, folio_file_page, Lookup, OnRetry};
use crate::huge_memory::folio_unlock;
use crate::memory::{__pte_alloc, folio_add_rmap_pte, pte_offset_map_lock};
use crate::mm_types::*;
use crate::page_ref::folio_put;
use crate::site;
use crate::sync::{Ctx, KResult};
use crate::world::World;
use crate::xarray::{xas_load, XaEntry};

/// `do_read_fault()` at `vpn` of the shmem VMA; the caller holds `mmap_lock` for read.
pub fn do_read_fault(ctx: &mut Ctx, w: &World, vpn: u32) -> KResult<Result<(), Errno>> {
    let vma = w.vma(VmaKind::Shmem);
    let index = vpn - vma.start;
    let m = &w.shmem;
    loop {
        // shmem_get_folio_gfp(SGP_CACHE): a hole in a MISSING-registered VMA goes to
        // handle_userfault(); the model's programs have no monitor that resolves faults (they
        // issue UFFDIO_COPY themselves), so the fault fails at once instead of blocking.
        let folio = match filemap_get_entry(ctx, w, m, index, OnRetry::Spin)? {
            Lookup::Folio(f) => f,
            _ => return Ok(Err(Errno::EFAULT)),
        };
        // filemap_fault(): lock the folio (collapse_file holds it while it copies), then make
        // sure it is still the one the page cache has.
        crate::writeback::folio_lock(ctx, w, folio)?;
        let (e, _) = xas_load(ctx, &m.i_pages, index)?;
        if e != XaEntry::Folio(folio) {
            folio_unlock(ctx, w, folio)?;
            folio_put(ctx, w, folio)?;
            // filemap_fault(): goto retry_find (the lookup will see the new entry).
            continue;
        }
        let page = folio_file_page(w, folio, index);
        // finish_fault(): the PTE table may have been retired meanwhile; allocate a new one.
        let r = loop {
            if let Some(table) = pte_offset_map_lock(ctx, w, vpn)? {
                break Ok(table);
            }
            if let Err(e) = __pte_alloc(ctx, w, vpn)? {
                break Err(e);
            }
        };
        let table = match r {
            Ok(t) => t,
            Err(e) => {
                folio_unlock(ctx, w, folio)?;
                folio_put(ctx, w, folio)?;
                return Ok(Err(e));
            }
        };
        let slot = w.pte(table, vpn & (w.nr_subpages() - 1));
        if slot.peek() != 0 {
            // Another fault or UFFDIO_COPY got there first.
            w.page(table).ptl.unlock(ctx)?;
            folio_unlock(ctx, w, folio)?;
            folio_put(ctx, w, folio)?;
            return Ok(Ok(()));
        }
        // folio_add_file_rmap_pte() + set_pte_at(): the lookup's reference is the PTE's now.
        folio_add_rmap_pte(ctx, w, page)?;
        slot.write_once(
            ctx,
            site!("set_pte_range", "set_pte_at() (file, read-only)"),
            mk_pte(page, false),
        )?;
        w.page(table).ptl.unlock(ctx)?;
        folio_unlock(ctx, w, folio)?;
        return Ok(Ok(()));
    }
}
