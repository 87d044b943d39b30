//! mm/khugepaged.c: `collapse_file()` of a read-only file range into one huge folio, the
//! fixed 6.6 path (copy, mark uptodate, then one multi-order store) and, under
//! `collapse-publish-early`, the <= 6.3 path (freeze the old pages and store the locked,
//! not yet uptodate huge folio in their slots before the copy, with its rollback).
//!
//! On shmem (seed 002) it unmaps the pages the private VMA maps (`try_to_unmap`) while they
//! are locked, and takes holes: each becomes an `XA_RETRY_ENTRY` after the copy,
//! and a VMA registered with userfaultfd MISSING makes it roll back (6.6); on success
//! `retract_page_tables()` retires the PTE tables of the VMAs that map the range, without
//! `mmap_lock`, so that the range can be faulted in again as a huge page.

use crate::bugs::Bug;
use crate::filemap::{filemap_get_entry, folio_mark_uptodate, AddressSpace, Lookup, OnRetry};
use crate::huge_memory::{folio_trylock, folio_unlock};
use crate::memory::pte_free_defer;
use crate::mm_types::*;
use crate::mmu_notifier::{
    mmu_notifier_invalidate_range_end, mmu_notifier_invalidate_range_start, MmuNotifierRange,
    MmuNotifyEvent,
};
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
    /// `SCAN_EXCEED_NONE_PTE`: the range has holes and a VMA that maps it is registered with
    /// userfaultfd MISSING, whose user may expect a fault on a hole.
    ExceedNone,
}

/// `collapse_file()` on huge-page range `range` of the text file or the shmem file.
pub fn collapse_file(
    ctx: &mut Ctx,
    w: &World,
    m: &AddressSpace,
    range: u32,
) -> KResult<CollapseOutcome> {
    let nr = w.nr_subpages();
    let start = range << w.cfg.order;
    let is_shmem = std::ptr::eq(m, &w.shmem);
    // The <= 6.3 path is modelled for the text file only.
    let publish_early = !is_shmem && w.cfg.bugs.has(Bug::CollapsePublishEarly);
    let mut holes: Vec<u32> = Vec::new();
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
            XaEntry::Empty if is_shmem => {
                // A hole: the huge page will hold zeros there (nr_none++).
                m.i_pages.xa_lock.unlock(ctx)?;
                holes.push(index);
                continue;
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
        // A shmem page may be mapped by the VMAs of the file: unmap it while it is locked,
        // so that no new mapping can appear until the collapse is done or rolled back.
        if is_shmem
            && w.page(page)
                .mapcount
                .read_once(ctx, site!("collapse_file", "folio_mapped(folio)"))?
                > 0
        {
            try_to_unmap_file(ctx, w, m, page)?;
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

    // Copy the old pages into the huge folio, one subpage at a time (holes stay zero).
    for &page in &old {
        let i = w.page(page).index.peek() - start;
        let v = w.page(page).data.read_once(
            ctx,
            site!("collapse_file", "copy_mc_highpage(): read old page"),
        )?;
        w.page(hpage + i).data.write_once(
            ctx,
            site!("collapse_file", "copy_mc_highpage(): write huge subpage"),
            v,
        )?;
    }
    if !holes.is_empty() {
        if let Some(r) = collapse_file_holes(ctx, w, m, &holes)? {
            for &page in &old {
                folio_put_refs(ctx, w, page, 1)?;
                folio_unlock(ctx, w, page)?;
                folio_put(ctx, w, page)?;
            }
            folio_unlock(ctx, w, hpage)?;
            folio_put(ctx, w, hpage)?;
            return Ok(r);
        }
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
    if is_shmem {
        // Remove the PTE tables so that the range can be faulted in as huge; the huge folio is
        // still locked, so no fault maps it meanwhile.
        retract_page_tables(ctx, w, m, range)?;
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

/// `try_to_unmap()` of a locked small shmem folio (`rmap_walk_file()` under `i_mmap_rwsem`,
/// `try_to_unmap_one()` in an mmu-notifier window): clear the PTE that maps it in each VMA of
/// the file, and drop the mapping's reference after the window.
fn try_to_unmap_file(ctx: &mut Ctx, w: &World, m: &AddressSpace, page: u32) -> KResult<()> {
    let index = w.page(page).index.peek();
    let nr_mask = w.nr_subpages() - 1;
    m.i_mmap.down_read(ctx)?;
    for vma in w.mm.vmas.iter().filter(|v| v.kind == VmaKind::Shmem) {
        let vpn = vma.start + index;
        if !vma.contains(vpn) {
            continue;
        }
        let mn = MmuNotifierRange::new(MmuNotifyEvent::Clear, vpn, vpn + 1);
        mmu_notifier_invalidate_range_start(ctx, w, &mn)?;
        let mut unmapped = false;
        if let Some(table) = crate::memory::pte_offset_map_lock(ctx, w, vpn)? {
            let slot = w.pte(table, vpn & nr_mask);
            let pte = slot.read_once(ctx, site!("try_to_unmap_one", "ptep_get(pvmw.pte)"))?;
            if pte_present(pte) && pte_pfn(pte) == page {
                slot.xchg(ctx, site!("try_to_unmap_one", "ptep_clear_flush()"), 0)?;
                crate::memory::folio_remove_rmap_pte(ctx, w, page)?;
                unmapped = true;
            }
            w.page(table).ptl.unlock(ctx)?;
        }
        mmu_notifier_invalidate_range_end(ctx, w, &mn)?;
        if unmapped {
            folio_put(ctx, w, page)?;
        }
    }
    m.i_mmap.up_read(ctx)
}

/// The holes of a shmem range after the copy (6.6): each gets an `XA_RETRY_ENTRY`, so no one
/// fills it while the huge page replaces the range; if a VMA mapping the range is registered
/// with userfaultfd MISSING, its user may be waiting for a fault on a hole: roll back.
/// `Some(outcome)` if the collapse fails.
fn collapse_file_holes(
    ctx: &mut Ctx,
    w: &World,
    m: &AddressSpace,
    holes: &[u32],
) -> KResult<Option<CollapseOutcome>> {
    m.i_mmap.down_read(ctx)?;
    m.i_pages.xa_lock.lock(ctx)?;
    let mut result = None;
    let mut reserved = Vec::with_capacity(holes.len());
    for &index in holes {
        let (e, _) = xas_load(ctx, &m.i_pages, index)?;
        if e != XaEntry::Empty {
            // SCAN_PAGE_FILLED: someone filled the hole since the scan.
            result = Some(CollapseOutcome::Fail);
            break;
        }
        if xas_store(ctx, &m.i_pages, index, XaEntry::Retry)?.is_err() {
            result = Some(CollapseOutcome::NoMem);
            break;
        }
        reserved.push(index);
    }
    if result.is_none()
        && w.mm
            .vmas
            .iter()
            .any(|v| v.kind == VmaKind::Shmem && v.userfaultfd_missing())
    {
        result = Some(CollapseOutcome::ExceedNone);
    }
    if result.is_some() {
        for &index in &reserved {
            xas_store(ctx, &m.i_pages, index, XaEntry::Empty)?.expect("the slot's node exists");
        }
    }
    m.i_pages.xa_lock.unlock(ctx)?;
    m.i_mmap.up_read(ctx)?;
    Ok(result)
}

/// `retract_page_tables()` (6.6): for each VMA mapping the shmem range, under `i_mmap_rwsem`
/// only (no `mmap_lock`), retire its PTE table: a racy `vma->anon_vma` pre-check, then inside
/// an mmu-notifier window under the PMD and PTE locks, the recheck Jann Horn asked for and
/// `pmdp_collapse_flush()`, and `pte_free_defer()` after the window.
pub fn retract_page_tables(ctx: &mut Ctx, w: &World, m: &AddressSpace, range: u32) -> KResult<()> {
    let nr = w.nr_subpages();
    m.i_mmap.down_read(ctx)?;
    for vma in w.mm.vmas.iter().filter(|v| v.kind == VmaKind::Shmem) {
        let addr = vma.start + (range << w.cfg.order);
        if !vma.contains(addr) {
            continue;
        }
        // Racy: UFFDIO_COPY can set it right after, under mmap_lock only.
        if vma.anon_vma_ptr.read_once(
            ctx,
            site!("retract_page_tables", "READ_ONCE(vma->anon_vma)"),
        )? != 0
        {
            continue;
        }
        let pmd = w.pmdp(addr).read_once(
            ctx,
            site!("retract_page_tables", "find_pmd_or_thp_or_none()"),
        )?;
        if pmd & PMD_TABLE == 0 {
            continue;
        }
        let notify = !w.cfg.bugs.has(Bug::RetractNoNotifier);
        let mn = MmuNotifierRange::new(MmuNotifyEvent::Clear, addr, addr + nr);
        if notify {
            // Jann Horn: an IOMMU walking these page tables caches the PMD -> table pointer.
            mmu_notifier_invalidate_range_start(ctx, w, &mn)?;
        }
        w.mm.page_table_lock.lock(ctx)?;
        let pmd = w
            .pmdp(addr)
            .read_once(ctx, site!("retract_page_tables", "pte_lockptr(mm, pmd)"))?;
        let table = (pmd & PMD_TABLE != 0).then(|| pmd_table_pfn(pmd));
        if let Some(t) = table {
            w.page(t).ptl.lock(ctx)?;
        }
        let skipped = match table {
            None => true,
            // v2: the page locks and RETRY entries do not stop UFFDIO_COPY from installing
            // anonymous PTEs; now that the PTE lock is held, check again.
            Some(_) if !w.cfg.bugs.has(Bug::RetractNoRecheck) => {
                vma.anon_vma_ptr.read_once(
                    ctx,
                    site!("retract_page_tables", "vma->anon_vma (recheck under ptl)"),
                )? != 0
            }
            // v1: "safe to remove page table below, without even checking it's empty".
            Some(_) => false,
        };
        if !skipped {
            // pmdp_collapse_flush(): clear the PMD, flush the CPU TLB.
            w.pmdp(addr).xchg(
                ctx,
                site!("pmdp_collapse_flush", "pmdp_huge_get_and_clear()"),
                0,
            )?;
        }
        if let Some(t) = table {
            w.page(t).ptl.unlock(ctx)?;
        }
        w.mm.page_table_lock.unlock(ctx)?;
        if notify {
            mmu_notifier_invalidate_range_end(ctx, w, &mn)?;
        }
        if let (false, Some(t)) = (skipped, table) {
            pte_free_defer(ctx, w, t)?;
        }
    }
    m.i_mmap.up_read(ctx)
}

/// `collapse_pte_mapped_thp(mm, addr, install_pmd = false)` (6.6), as khugepaged calls it for
/// a shmem range whose page cache holds a huge folio that PTEs still map: check that every PTE
/// is none or maps the folio's page at its place, then inside an mmu-notifier window clear
/// them, drop their references and retire the table (the range is faulted in again later).
/// On a private VMA registered with userfaultfd the PMD lock is held from the recheck to the
/// flush, because UFFDIO_COPY inserts anonymous PTEs without looking at the page cache.
pub fn collapse_pte_mapped_thp(ctx: &mut Ctx, w: &World, vpn: u32) -> KResult<CollapseOutcome> {
    w.mm.mmap_lock.down_read(ctx)?;
    let r = collapse_pte_mapped_thp_locked(ctx, w, vpn);
    w.mm.mmap_lock.up_read(ctx)?;
    r
}

fn collapse_pte_mapped_thp_locked(ctx: &mut Ctx, w: &World, vpn: u32) -> KResult<CollapseOutcome> {
    let nr = w.nr_subpages();
    let haddr = vpn & !(nr - 1);
    // SCAN_VMA_CHECK: only the file-backed VMA has page-cache THPs.
    let Some(vma) =
        w.mm.vmas
            .iter()
            .find(|v| v.contains(haddr) && v.kind == VmaKind::Shmem)
    else {
        return Ok(CollapseOutcome::Fail);
    };
    let m = &w.shmem;
    let index = haddr - vma.start;
    // filemap_lock_folio(): SCAN_PAGE_NULL when nothing is cached at the range's start.
    let folio = match filemap_get_entry(ctx, w, m, index, OnRetry::Spin)? {
        Lookup::Folio(f) => f,
        _ => return Ok(CollapseOutcome::NotCached),
    };
    crate::writeback::folio_lock(ctx, w, folio)?;
    let (e, _) = xas_load(ctx, &m.i_pages, index)?;
    let r = if e != XaEntry::Folio(folio) || w.page(folio).order.peek() != u32::from(w.cfg.order) {
        // Truncated meanwhile, or not a PMD-sized folio (SCAN_PAGE_COMPOUND).
        Ok(CollapseOutcome::Fail)
    } else {
        collapse_pte_mapped_folio(ctx, w, vma, haddr, folio)
    };
    folio_unlock(ctx, w, folio)?;
    folio_put(ctx, w, folio)?;
    r
}

/// Steps 1 to 4 of `collapse_pte_mapped_thp()` with the huge folio locked and referenced.
fn collapse_pte_mapped_folio(
    ctx: &mut Ctx,
    w: &World,
    vma: &Vma,
    haddr: u32,
    folio: u32,
) -> KResult<CollapseOutcome> {
    let nr = w.nr_subpages();
    let pmd = w.pmdp(haddr).read_once(
        ctx,
        site!("collapse_pte_mapped_thp", "find_pmd_or_thp_or_none()"),
    )?;
    if pmd & PMD_TABLE == 0 {
        // SCAN_PMD_NONE: the table is gone already; nothing to install (install_pmd false).
        return Ok(CollapseOutcome::Collapsed);
    }
    // Step 1, under the PTE lock: every PTE is none or maps folio page i at haddr + i.
    let Some(table) = crate::memory::pte_offset_map_lock(ctx, w, haddr)? else {
        return Ok(CollapseOutcome::Fail);
    };
    let ok = (0..nr).all(|i| {
        let pte = w.pte(table, i).peek();
        pte == 0 || (pte_present(pte) && pte_pfn(pte) == folio + i)
    });
    w.page(table).ptl.unlock(ctx)?;
    if !ok {
        return Ok(CollapseOutcome::Fail);
    }
    let mn = MmuNotifierRange::new(MmuNotifyEvent::Clear, haddr, haddr + nr);
    mmu_notifier_invalidate_range_start(ctx, w, &mn)?;
    // userfaultfd_armed(vma) && !VM_SHARED: take the PMD lock now and keep it to the flush.
    let uffd_private = vma.userfaultfd_missing();
    if uffd_private {
        w.mm.page_table_lock.lock(ctx)?;
    }
    let pmd = w.pmdp(haddr).read_once(
        ctx,
        site!("collapse_pte_mapped_thp", "pte_offset_map_nolock()"),
    )?;
    let mut nr_ptes = 0;
    let mut result = CollapseOutcome::Collapsed;
    let table = (pmd & PMD_TABLE != 0).then(|| pmd_table_pfn(pmd));
    match table {
        None => result = CollapseOutcome::Fail,
        Some(t) => {
            w.page(t).ptl.lock(ctx)?;
            // Step 2: recheck under the lock (uffd may have inserted), clear, remove the rmap.
            for i in 0..nr {
                let slot = w.pte(t, i);
                let pte = slot.read_once(ctx, site!("collapse_pte_mapped_thp", "ptep_get(pte)"))?;
                if pte == 0 {
                    continue;
                }
                if !pte_present(pte) || pte_pfn(pte) != folio + i {
                    result = CollapseOutcome::Fail;
                    break;
                }
                slot.xchg(ctx, site!("collapse_pte_mapped_thp", "ptep_clear()"), 0)?;
                crate::memory::folio_remove_rmap_pte(ctx, w, folio + i)?;
                nr_ptes += 1;
            }
            if !uffd_private {
                w.page(t).ptl.unlock(ctx)?;
            }
        }
    }
    // Step 3: the cleared PTEs' references.
    if nr_ptes > 0 {
        folio_put_refs(ctx, w, folio, nr_ptes)?;
    }
    if result != CollapseOutcome::Collapsed {
        if let (true, Some(t)) = (uffd_private, table) {
            w.page(t).ptl.unlock(ctx)?;
        }
        if uffd_private {
            w.mm.page_table_lock.unlock(ctx)?;
        }
        mmu_notifier_invalidate_range_end(ctx, w, &mn)?;
        return Ok(result);
    }
    let t = table.expect("a table when the PTEs were cleared");
    // Step 4: retire the empty table.
    if !uffd_private {
        w.mm.page_table_lock.lock(ctx)?;
        w.page(t).ptl.lock(ctx)?;
    }
    w.pmdp(haddr).xchg(
        ctx,
        site!("pmdp_collapse_flush", "pmdp_huge_get_and_clear()"),
        0,
    )?;
    w.page(t).ptl.unlock(ctx)?;
    w.mm.page_table_lock.unlock(ctx)?;
    mmu_notifier_invalidate_range_end(ctx, w, &mn)?;
    pte_free_defer(ctx, w, t)?;
    Ok(CollapseOutcome::Collapsed)
}
