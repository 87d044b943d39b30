//! mm/memory.c and mm/filemap.c: faults on the shared file mapping: `do_read_fault` /
//! `do_shared_fault` (`filemap_fault` finds the cached page; a write fault calls the file
//! system's `page_mkwrite` under the page lock before the PTE becomes writable) and
//! `wp_page_shared` (a write to a read-only PTE after writeback write-protected it).

use crate::buffer::create_empty_buffers;
use crate::errno::Errno;
use crate::filemap::{filemap_get_entry, Lookup, OnRetry};
use crate::huge_memory::folio_unlock;
use crate::memory::pte_offset_map_lock;
use crate::mm_types::*;
use crate::page_ref::{folio_put, folio_ref_try_add};
use crate::site;
use crate::sync::{Ctx, KResult};
use crate::world::World;
use crate::writeback::{folio_lock, folio_mark_dirty};

/// `ext4_page_mkwrite()` via `block_page_mkwrite()` (the folio is locked): make sure the page
/// has blocks and buffers, and mark it dirty, before any PTE lets the user write it.
pub fn do_page_mkwrite(ctx: &mut Ctx, w: &World, folio: u32) -> KResult<()> {
    let flags = w
        .page(folio)
        .flags
        .read_once(ctx, site!("block_page_mkwrite", "folio_buffers()"))?;
    if flags & PG_PRIVATE == 0 {
        create_empty_buffers(ctx, w, folio)?;
    }
    folio_mark_dirty(ctx, w, folio)
}

/// `do_read_fault()` / `do_shared_fault()` on a none PTE of the shared mapping: look the page
/// up, lock it, `page_mkwrite` for a write, map it under the PTE lock (read-only for a read,
/// so that the first write faults again), unlock.
pub fn do_shared_fault(
    ctx: &mut Ctx,
    w: &World,
    vpn: u32,
    table: u32,
    write: bool,
) -> KResult<Result<(), Errno>> {
    let index = vpn - w.vma(VmaKind::Shared).start;
    // filemap_fault(): the data file is always cached (the model never evicts it).
    let folio = match filemap_get_entry(ctx, w, &w.data, index, OnRetry::Spin)? {
        Lookup::Folio(f) => f,
        _ => return Ok(Err(Errno::EFAULT)),
    };
    folio_lock(ctx, w, folio)?;
    if write {
        do_page_mkwrite(ctx, w, folio)?;
    }
    // The table was read without its lock: map only if the PMD still names it.
    let mut mapped = false;
    if let Some(locked) = pte_offset_map_lock(ctx, w, vpn)? {
        let slot = w.pte(locked, vpn & (w.nr_subpages() - 1));
        if locked == table
            && slot.read_once(ctx, site!("finish_fault", "pte_none(ptep_get(vmf->pte))"))? == 0
        {
            // folio_add_file_rmap_pte(); the lookup's reference becomes the mapping's.
            w.page(folio).mapcount.add_return(
                ctx,
                site!("folio_add_file_rmap_pte", "atomic_inc(&page->_mapcount)"),
                1,
            )?;
            slot.write_once(
                ctx,
                site!("set_pte_range", "set_pte_at()"),
                mk_pte(folio, write),
            )?;
            mapped = true;
        }
        w.page(locked).ptl.unlock(ctx)?;
    }
    folio_unlock(ctx, w, folio)?;
    if !mapped {
        folio_put(ctx, w, folio)?;
    }
    Ok(Ok(()))
}

/// `wp_page_shared()`: a write to the read-only PTE of a shared page: take a reference under
/// the PTE lock, `page_mkwrite` under the page lock, then make the PTE writable if it still
/// maps the page (`finish_mkwrite_fault`).
pub fn wp_page_shared(ctx: &mut Ctx, w: &World, vpn: u32, table: u32, orig: u64) -> KResult<()> {
    let folio = pte_pfn(orig);
    let slot = w.pte(table, vpn & (w.nr_subpages() - 1));
    match pte_offset_map_lock(ctx, w, vpn)? {
        Some(locked) if locked == table => {}
        Some(locked) => return w.page(locked).ptl.unlock(ctx),
        None => return Ok(()),
    }
    let same = slot.read_once(ctx, site!("do_wp_page", "pte_same(ptep_get(vmf->pte))"))? == orig;
    // The PTE maps the page under the lock, so the page is referenced: the get cannot fail.
    let got = same && folio_ref_try_add(ctx, w, folio, 1)?;
    w.page(table).ptl.unlock(ctx)?;
    if !got {
        return Ok(());
    }
    folio_lock(ctx, w, folio)?;
    do_page_mkwrite(ctx, w, folio)?;
    if let Some(locked) = pte_offset_map_lock(ctx, w, vpn)? {
        if locked == table
            && slot.read_once(ctx, site!("finish_mkwrite_fault", "pte_same()"))? == orig
        {
            slot.write_once(
                ctx,
                site!("wp_page_reuse", "set_pte_at(pte_mkwrite(pte_mkdirty))"),
                orig | PTE_WRITE,
            )?;
        }
        w.page(locked).ptl.unlock(ctx)?;
    }
    folio_unlock(ctx, w, folio)?;
    folio_put(ctx, w, folio)
}
