//! mm/userfaultfd.c: `UFFDIO_COPY` (`mfill_atomic()` -> `mfill_atomic_pte_copy()` ->
//! `mfill_atomic_install_pte()`) into the private shmem VMA, and mm/rmap.c `anon_vma_prepare()`.
//!
//! Into a MAP_PRIVATE shmem VMA it installs anonymous pages directly: the only thing it looks
//! at is the page table, under `mmap_lock` for read and the PTE lock; page locks and the page
//! cache's RETRY entries do not exclude it. Only the PTE lock and `vma->anon_vma` serialise it
//! with `retract_page_tables()` (seed 002).

use crate::errno::Errno;
use crate::memory::{__pte_alloc, pte_offset_map_lock};
use crate::mm_types::*;
use crate::page_alloc::alloc_pages;
use crate::page_ref::folio_put;
use crate::site;
use crate::sync::{Ctx, KResult};
use crate::world::World;

/// `UFFDIO_COPY` of one page holding `val` to virtual page `vpn`.
pub fn uffdio_copy(ctx: &mut Ctx, w: &World, vpn: u32, val: u64) -> KResult<Result<(), Errno>> {
    w.mm.mmap_lock.down_read(ctx)?;
    let r = mfill_atomic(ctx, w, vpn, val);
    w.mm.mmap_lock.up_read(ctx)?;
    r
}

/// `mfill_atomic()` for one page; the caller holds `mmap_lock` for read.
fn mfill_atomic(ctx: &mut Ctx, w: &World, vpn: u32, val: u64) -> KResult<Result<(), Errno>> {
    // The destination VMA must be registered with this userfaultfd.
    let Some(vma) = w.mm.vmas.iter().find(|v| v.contains(vpn)) else {
        return Ok(Err(Errno::ENOENT));
    };
    if !vma.userfaultfd_missing() {
        return Ok(Err(Errno::ENOENT));
    }
    // MAP_PRIVATE: the pages it installs are anonymous.
    if let Err(e) = anon_vma_prepare(ctx, w, vma)? {
        return Ok(Err(e));
    }
    let pmd = w
        .pmdp(vpn)
        .read_once(ctx, site!("mfill_atomic", "pmdp_get_lockless(dst_pmd)"))?;
    if pmd == 0 {
        if let Err(e) = __pte_alloc(ctx, w, vpn)? {
            return Ok(Err(e));
        }
    }
    mfill_atomic_pte_copy(ctx, w, vma, vpn, val)
}

/// `mfill_atomic_pte_copy()`: a new anonymous page with the user's data, then install it.
fn mfill_atomic_pte_copy(
    ctx: &mut Ctx,
    w: &World,
    vma: &Vma,
    vpn: u32,
    val: u64,
) -> KResult<Result<(), Errno>> {
    let Some(folio) = alloc_pages(ctx, w, 0)? else {
        return Ok(Err(Errno::ENOMEM));
    };
    // copy_mc_user_highpage() + __folio_mark_uptodate(): the page is private until installed.
    let p = w.page(folio);
    p.data.store_plain(
        ctx,
        site!("mfill_atomic_pte_copy", "copy_from_user(dst page)"),
        val,
    );
    p.flags.store_plain(
        ctx,
        site!("mfill_atomic_pte_copy", "__folio_mark_uptodate()"),
        PG_UPTODATE,
    );
    ctx.smp_wmb(site!(
        "mfill_atomic_pte_copy",
        "__folio_mark_uptodate() smp_wmb"
    ));
    let r = mfill_atomic_install_pte(ctx, w, vma, vpn, folio)?;
    if r.is_err() {
        folio_put(ctx, w, folio)?;
    }
    Ok(r)
}

/// `mfill_atomic_install_pte()`: under the PTE lock, map the new anonymous page where nothing
/// is mapped.
fn mfill_atomic_install_pte(
    ctx: &mut Ctx,
    w: &World,
    vma: &Vma,
    vpn: u32,
    folio: u32,
) -> KResult<Result<(), Errno>> {
    // The table read before the allocation may have been retired (retract_page_tables()).
    let Some(table) = pte_offset_map_lock(ctx, w, vpn)? else {
        return Ok(Err(Errno::EAGAIN));
    };
    // The offset must be inside the file (i_size), or the page could never be read back.
    if vpn - vma.start >= w.shmem.nr_pages {
        w.page(table).ptl.unlock(ctx)?;
        return Ok(Err(Errno::EFAULT));
    }
    let slot = w.pte(table, vpn & (w.nr_subpages() - 1));
    if slot.read_once(
        ctx,
        site!(
            "mfill_atomic_install_pte",
            "!pte_none_mostly(ptep_get(dst_pte))"
        ),
    )? != 0
    {
        w.page(table).ptl.unlock(ctx)?;
        return Ok(Err(Errno::EEXIST));
    }
    // folio_add_new_anon_rmap(): not visible to anyone until the PTE is set.
    let p = w.page(folio);
    p.mapcount.store_plain(
        ctx,
        site!("folio_add_new_anon_rmap", "page->_mapcount = 0"),
        1,
    );
    p.index
        .store_plain(ctx, site!("folio_add_new_anon_rmap", "page->index"), vpn);
    let f = p.flags.peek() | PG_ANON;
    p.flags
        .store_plain(ctx, site!("folio_add_new_anon_rmap", "PageAnon"), f);
    w.mm.rss_anon.add_return(
        ctx,
        site!("mfill_atomic_install_pte", "inc_mm_counter(MM_ANONPAGES)"),
        1,
    )?;
    // Writable only if the VMA is: this one is PROT_READ.
    slot.write_once(
        ctx,
        site!("mfill_atomic_install_pte", "set_pte_at() (anon)"),
        mk_pte(folio, vma.writable()),
    )?;
    w.page(table).ptl.unlock(ctx)?;
    Ok(Ok(()))
}

/// `anon_vma_prepare()`: give the VMA an anon_vma if it has none (`__anon_vma_prepare()`:
/// under the anon_vma lock and `mm->page_table_lock`).
pub fn anon_vma_prepare(ctx: &mut Ctx, w: &World, vma: &Vma) -> KResult<Result<(), Errno>> {
    if vma
        .anon_vma_ptr
        .read_once(ctx, site!("anon_vma_prepare", "READ_ONCE(vma->anon_vma)"))?
        != 0
    {
        return Ok(Ok(()));
    }
    vma.anon_vma.down_write(ctx)?;
    w.mm.page_table_lock.lock(ctx)?;
    if vma.anon_vma_ptr.peek() == 0 {
        vma.anon_vma_ptr.write_once(
            ctx,
            site!("__anon_vma_prepare", "vma->anon_vma = anon_vma"),
            1,
        )?;
    }
    w.mm.page_table_lock.unlock(ctx)?;
    vma.anon_vma.up_write(ctx)?;
    Ok(Ok(()))
}
