//! mm/page-writeback.c and mm/rmap.c: dirtying file pages (`folio_mark_dirty`,
//! `set_page_dirty_lock`), and writeback (`write_cache_pages` with `folio_clear_dirty_for_io`,
//! whose `folio_mkclean` write-protects the PTEs so the next write faults and dirties again).

use crate::filemap::{filemap_get_entry, AddressSpace, Lookup, OnRetry};
use crate::huge_memory::folio_unlock;
use crate::memory::pte_offset_map_lock;
use crate::mm_types::*;
use crate::mmu_notifier::{
    mmu_notifier_invalidate_range_end, mmu_notifier_invalidate_range_start, MmuNotifierRange,
    MmuNotifyEvent,
};
use crate::page_ref::folio_put;
use crate::site;
use crate::sync::{Ctx, KResult};
use crate::violation::Kind;
use crate::world::World;

/// `folio_lock()`: take the page lock, waiting for its holder. The wait only reads the flag
/// (`folio_wait_bit_common()` sleeps until the holder wakes it), so a CPU waiting on a holder
/// that never unlocks makes no progress, and the spin detector can tell.
pub fn folio_lock(ctx: &mut Ctx, w: &World, folio: u32) -> KResult<()> {
    loop {
        let flags = w
            .page(folio)
            .flags
            .read_once(ctx, site!("folio_lock", "folio_test_locked()"))?;
        if flags & PG_LOCKED == 0 && crate::huge_memory::folio_trylock(ctx, w, folio)? {
            return Ok(());
        }
        ctx.cpu_relax(site!("folio_lock", "folio_wait_bit_common(PG_locked)"))?;
    }
}

/// `folio_mark_dirty()`: the page holds data the disk does not have.
pub fn folio_mark_dirty(ctx: &mut Ctx, w: &World, folio: u32) -> KResult<()> {
    w.page(folio).flags.fetch_or(
        ctx,
        site!("folio_mark_dirty", "folio_test_set_dirty()"),
        PG_DIRTY,
    )?;
    Ok(())
}

/// `set_page_dirty_lock()`: lock the page and mark it dirty (what unpinning with `make_dirty`
/// and the vmap RFC's teardown do). It does not check the file system's state: whether the
/// page still has buffers is writeback's problem.
pub fn set_page_dirty_lock(ctx: &mut Ctx, w: &World, page: u32) -> KResult<()> {
    let folio = w.page(page).folio_peek();
    folio_lock(ctx, w, folio)?;
    folio_mark_dirty(ctx, w, folio)?;
    folio_unlock(ctx, w, folio)
}

/// `folio_mkclean()` for a data-file folio: write-protect the PTE of the shared mapping that
/// maps it (the only mapping of the file), so a later write faults into `page_mkwrite`.
pub fn folio_mkclean(ctx: &mut Ctx, w: &World, folio: u32) -> KResult<()> {
    let vma = w.vma(VmaKind::Shared);
    let index = w.page(folio).index.peek();
    let vpn = vma.start + index;
    // rmap_walk_file(): the mapping's VMAs under i_mmap_rwsem; each mkclean is bracketed by
    // the notifier, so a secondary MMU stops writing before the PTE is write-protected.
    w.data.i_mmap.down_read(ctx)?;
    let range = MmuNotifierRange::new(MmuNotifyEvent::Clear, vpn, vpn + 1);
    mmu_notifier_invalidate_range_start(ctx, w, &range)?;
    if let Some(table) = pte_offset_map_lock(ctx, w, vpn)? {
        let slot = w.pte(table, vpn & (w.nr_subpages() - 1));
        let pte = slot.read_once(ctx, site!("page_vma_mkclean_one", "ptep_get(pvmw.pte)"))?;
        if pte_present(pte) && pte_pfn(pte) == folio && pte_write(pte) {
            slot.write_once(
                ctx,
                site!(
                    "page_vma_mkclean_one",
                    "set_pte_at(pte_wrprotect(pte_mkclean))"
                ),
                pte & !PTE_WRITE,
            )?;
        }
        w.page(table).ptl.unlock(ctx)?;
    }
    mmu_notifier_invalidate_range_end(ctx, w, &range)?;
    w.data.i_mmap.up_read(ctx)
}

/// `write_cache_pages()` + `block_write_full_folio()` for every dirty page of the data file:
/// lock, `folio_clear_dirty_for_io()` (mkclean, then clear the dirty bit), set writeback, write
/// the page to its block through its buffers, end writeback, unlock. Returns pages written.
pub fn write_cache_pages(ctx: &mut Ctx, w: &World, m: &AddressSpace) -> KResult<u32> {
    let mut written = 0;
    for index in 0..m.nr_pages {
        let folio = match filemap_get_entry(ctx, w, m, index, OnRetry::Spin)? {
            Lookup::Folio(f) => f,
            _ => continue,
        };
        folio_lock(ctx, w, folio)?;
        let p = w.page(folio);
        if p.flags
            .read_once(ctx, site!("write_cache_pages", "folio_test_dirty()"))?
            & PG_DIRTY
            == 0
        {
            folio_unlock(ctx, w, folio)?;
            folio_put(ctx, w, folio)?;
            continue;
        }
        // folio_clear_dirty_for_io(): write-protect first, then clear: a write that races
        // with the clear faults and dirties the page again.
        folio_mkclean(ctx, w, folio)?;
        p.flags.fetch_andnot_release(
            ctx,
            site!("folio_clear_dirty_for_io", "folio_test_clear_dirty()"),
            PG_DIRTY,
        )?;
        p.flags.fetch_or(
            ctx,
            site!("__folio_start_writeback", "folio_test_set_writeback()"),
            PG_WRITEBACK,
        )?;
        // block_write_full_folio(): the blocks come from the buffers; ext4 BUGs without them.
        if p.flags
            .read_once(ctx, site!("block_write_full_folio", "folio_buffers()"))?
            & PG_PRIVATE
            == 0
        {
            return Err(ctx.violation(
                Kind::DirtyNoBuffers,
                "block_write_full_folio",
                Some(folio),
                format!(
                    "writeback of dirty page {index} of the data file (pfn {folio}), whose buffers were released"
                ),
            ));
        }
        let v = p.data.read_once(
            ctx,
            site!("block_write_full_folio", "submit_bh(): read page"),
        )?;
        w.disk[index as usize].write_once(
            ctx,
            site!("end_bio_bh_io_sync", "the block reaches the disk"),
            v,
        )?;
        p.flags.fetch_andnot_release(
            ctx,
            site!("folio_end_writeback", "folio_test_clear_writeback()"),
            PG_WRITEBACK,
        )?;
        folio_unlock(ctx, w, folio)?;
        folio_put(ctx, w, folio)?;
        written += 1;
    }
    Ok(written)
}
