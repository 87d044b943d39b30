//! mm/memory.c: page faults, anonymous folio allocation, zapping, page-table allocation, and the
//! hardware's view of a user access.

use crate::errno::Errno;
use crate::mm_types::*;
use crate::mmu_notifier::{
    mmu_notifier_invalidate_range_end, mmu_notifier_invalidate_range_start, MmuNotifierRange,
    MmuNotifyEvent,
};
use crate::page_alloc::{alloc_pages, free_folio};
use crate::page_ref::{folio_put_refs, folio_ref_add, page_folio};
use crate::site;
use crate::sync::{Access, Ctx, KResult, Obj};
use crate::violation::Kind;
use crate::world::World;

/// `__pte_alloc()`: give the PMD covering `vpn` a PTE table (the allocation may fail).
pub fn __pte_alloc(ctx: &mut Ctx, w: &World, vpn: u32) -> KResult<Result<(), Errno>> {
    let Some(table) = alloc_pages(ctx, w, 0)? else {
        return Ok(Err(Errno::ENOMEM));
    };
    w.page(table)
        .flags
        .store_plain(ctx, site!("pte_alloc_one", "__SetPageTable()"), PG_TABLE);
    for i in 0..w.nr_subpages() {
        w.pte(table, i)
            .store_plain(ctx, site!("pte_alloc_one", "clear the new table"), 0);
    }
    // pmd_install(): the zeroed table must be visible before the PMD that points at it.
    ctx.smp_wmb(site!("pmd_install", "smp_wmb() before pmd_populate"));
    w.mm.page_table_lock.lock(ctx)?;
    let pmdp = w.pmdp(vpn);
    let installed = if pmdp.peek() == 0 {
        pmdp.write_once(
            ctx,
            site!("pmd_install", "pmd_populate()"),
            mk_pmd_table(table),
        )?;
        true
    } else {
        false
    };
    w.mm.page_table_lock.unlock(ctx)?;
    if !installed {
        // Another CPU populated it first: pte_free().
        w.page(table)
            .refcount
            .store_plain(ctx, site!("pte_free", "pagetable_free()"), 0);
        w.page(table)
            .flags
            .store_plain(ctx, site!("pte_free", "__ClearPageTable()"), 0);
        free_folio(ctx, w, table)?;
    }
    Ok(Ok(()))
}

/// `pte_offset_map_lock()`: lock the PTE table under the PMD of `vpn` and recheck the PMD.
/// Returns the table page, or `None` if there is no table.
pub fn pte_offset_map_lock(ctx: &mut Ctx, w: &World, vpn: u32) -> KResult<Option<u32>> {
    loop {
        let pmd = w
            .pmdp(vpn)
            .read_once(ctx, site!("pte_offset_map_lock", "pmdp_get_lockless(pmd)"))?;
        if pmd & PMD_TABLE == 0 {
            return Ok(None);
        }
        let table = pmd_table_pfn(pmd);
        w.page(table).ptl.lock(ctx)?;
        if w.pmdp(vpn).peek() == pmd {
            return Ok(Some(table));
        }
        w.page(table).ptl.unlock(ctx)?;
    }
}

/// `migration_entry_wait()`: wait until the migration entry at `vpn` is gone.
pub fn migration_entry_wait(ctx: &mut Ctx, w: &World, vpn: u32, entry: u64) -> KResult<()> {
    let Some(slot) = w.pte_slot_of(vpn) else {
        return Ok(());
    };
    loop {
        let pte = slot.read_once(ctx, site!("migration_entry_wait", "READ_ONCE(*ptep)"))?;
        if pte != entry {
            return Ok(());
        }
        ctx.cpu_relax(site!("migration_entry_wait", "cpu_relax()"))?;
    }
}

/// `handle_mm_fault()` for a VMA of the default world; the caller holds `mmap_lock` for read.
pub fn handle_mm_fault(
    ctx: &mut Ctx,
    w: &World,
    kind: VmaKind,
    vpn: u32,
    write: bool,
) -> KResult<Result<(), Errno>> {
    if write && !w.vma(kind).writable() {
        // A store to a PROT_READ mapping: SIGSEGV.
        return Ok(Err(Errno::EFAULT));
    }
    loop {
        let pmd = w
            .pmdp(vpn)
            .read_once(ctx, site!("handle_mm_fault", "pmdp_get_lockless(pmd)"))?;
        if pmd == 0 {
            if let Err(e) = __pte_alloc(ctx, w, vpn)? {
                return Ok(Err(e));
            }
            continue;
        }
        let table = pmd_table_pfn(pmd);
        let idx = vpn & (w.nr_subpages() - 1);
        // pte_offset_map(): the table may be retired by retract_page_tables() meanwhile;
        // pte_free_defer() keeps it readable until this read-side section ends.
        ctx.rcu_read_lock();
        let pte = w.pte(table, idx).read_once(
            ctx,
            site!("handle_pte_fault", "vmf->orig_pte = ptep_get_lockless()"),
        );
        ctx.rcu_read_unlock();
        let pte = pte?;
        if pte == 0 {
            return match kind {
                VmaKind::Anon => do_anonymous_page(ctx, w, vpn, table),
                VmaKind::Shmem => crate::shmem::do_read_fault(ctx, w, vpn),
                // The shared file mapping: the page comes from the page cache; a write fault
                // goes through page_mkwrite first.
                VmaKind::Shared => crate::filemap_fault::do_shared_fault(ctx, w, vpn, table, write),
            };
        }
        if is_migration_entry(pte) {
            migration_entry_wait(ctx, w, vpn, pte)?;
            continue;
        }
        if kind == VmaKind::Shared && write && pte_present(pte) && !pte_write(pte) {
            // A write to a PTE writeback write-protected: page_mkwrite again.
            crate::filemap_fault::wp_page_shared(ctx, w, vpn, table, pte)?;
            return Ok(Ok(()));
        }
        // Present: anonymous private pages are always mapped writable here (no COW, no fork);
        // the shmem mapping is read-only, so a write never gets here; a shared file page is
        // writable already, or this is a read.
        return Ok(Ok(()));
    }
}

/// Are PTEs `[first, first + n)` of `table` all none? Lockless reads (`pte_range_none`).
fn pte_range_none(ctx: &mut Ctx, w: &World, table: u32, first: u32, n: u32) -> KResult<bool> {
    for i in first..first + n {
        if w.pte(table, i)
            .read_once(ctx, site!("pte_range_none", "ptep_get(pte + i)"))?
            != 0
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `do_anonymous_page()` with `alloc_anon_folio()`: map a whole 2^order folio with PTEs if the
/// aligned range is empty (mTHP), else a single page; re-check the range under the PTE lock.
pub fn do_anonymous_page(
    ctx: &mut Ctx,
    w: &World,
    vpn: u32,
    table: u32,
) -> KResult<Result<(), Errno>> {
    let nr_huge = w.nr_subpages();
    let base = vpn & !(nr_huge - 1);
    let mut order = 0;
    if pte_range_none(ctx, w, table, 0, nr_huge)? {
        order = u32::from(w.cfg.order);
    }
    let mut folio = alloc_pages(ctx, w, order)?;
    if folio.is_none() && order > 0 {
        order = 0;
        folio = alloc_pages(ctx, w, 0)?;
    }
    let Some(folio) = folio else {
        return Ok(Err(Errno::ENOMEM));
    };
    let nr = 1u32 << order;
    let start = if order > 0 { base } else { vpn };
    let first = start & (nr_huge - 1);
    // One reference per PTE that will map the folio.
    if nr > 1 {
        folio_ref_add(ctx, w, folio, nr as i32 - 1)?;
    }
    // pte_offset_map_lock(): the table was read without the lock before the allocation, which
    // can sleep; recheck the PMD under the lock and retry the fault if the table changed.
    let Some(locked) = pte_offset_map_lock(ctx, w, vpn)? else {
        folio_put_refs(ctx, w, folio, nr as i32)?;
        return Ok(Ok(()));
    };
    if locked != table {
        w.page(locked).ptl.unlock(ctx)?;
        folio_put_refs(ctx, w, folio, nr as i32)?;
        return Ok(Ok(()));
    }
    if !pte_range_none(ctx, w, table, first, nr)? {
        // Lost the race to another fault: release our folio; the caller retries the access.
        w.page(table).ptl.unlock(ctx)?;
        folio_put_refs(ctx, w, folio, nr as i32)?;
        return Ok(Ok(()));
    }
    // folio_add_new_anon_rmap() + __folio_mark_uptodate(): the folio is not visible yet.
    for i in 0..nr {
        let p = w.page(folio + i);
        p.mapcount.store_plain(
            ctx,
            site!("folio_add_new_anon_rmap", "page->_mapcount = 0"),
            1,
        );
        p.index.store_plain(
            ctx,
            site!("folio_add_new_anon_rmap", "page->index"),
            start + i,
        );
        let f = p.flags.peek() | PG_ANON | PG_UPTODATE;
        p.flags.store_plain(
            ctx,
            site!(
                "folio_add_new_anon_rmap",
                "PageAnon + __folio_mark_uptodate"
            ),
            f,
        );
    }
    ctx.smp_wmb(site!(
        "do_anonymous_page",
        "__folio_mark_uptodate() smp_wmb"
    ));
    for i in 0..nr {
        w.pte(table, first + i).write_once(
            ctx,
            site!("set_ptes", "set_pte_at()"),
            mk_pte(folio + i, true),
        )?;
    }
    w.mm.rss_anon.add_return(
        ctx,
        site!("do_anonymous_page", "add_mm_counter(MM_ANONPAGES)"),
        nr as i32,
    )?;
    w.page(table).ptl.unlock(ctx)?;
    Ok(Ok(()))
}

/// `zap_page_range_single()` / `zap_pte_range()` (MADV_DONTNEED): clear the PTEs of
/// `[vpn, vpn + n)` inside an mmu-notifier window, remove the rmap, flush, then drop the
/// references after the window (`tlb_finish_mmu()`).
pub fn zap_page_range(ctx: &mut Ctx, w: &World, _kind: VmaKind, vpn: u32, n: u32) -> KResult<()> {
    let nr_huge = w.nr_subpages();
    let range = MmuNotifierRange::new(MmuNotifyEvent::Unmap, vpn, vpn + n);
    mmu_notifier_invalidate_range_start(ctx, w, &range)?;
    let mut batch: Vec<u32> = Vec::new();
    let mut addr = vpn;
    let end = vpn + n;
    while addr < end {
        let pmd_end = (addr | (nr_huge - 1)) + 1;
        let stop = end.min(pmd_end);
        if let Some(table) = pte_offset_map_lock(ctx, w, addr)? {
            let mut anon = 0;
            for a in addr..stop {
                let slot = w.pte(table, a & (nr_huge - 1));
                if slot.peek() == 0 {
                    continue;
                }
                let pte = slot.xchg(ctx, site!("zap_pte_range", "ptep_get_and_clear_full()"), 0)?;
                if pte_present(pte) {
                    let page = pte_pfn(pte);
                    let folio =
                        page_folio(ctx, w, page, site!("zap_pte_range", "page_folio(page)"))?;
                    if w.page(folio).flags.peek() & PG_ANON != 0 {
                        anon += 1;
                    }
                    folio_remove_rmap_pte(ctx, w, page)?;
                    batch.push(folio);
                } else if is_migration_entry(pte) {
                    // A migration entry holds no reference, but it is still counted in the
                    // mm's rss (zap_pte_range: rss[mm_counter(folio)]--).
                    anon += 1;
                }
            }
            if anon > 0 {
                w.mm.rss_anon.add_return(
                    ctx,
                    site!("zap_pte_range", "add_mm_rss_vec(MM_ANONPAGES)"),
                    -anon,
                )?;
            }
            w.page(table).ptl.unlock(ctx)?;
        }
        addr = stop;
    }
    mmu_notifier_invalidate_range_end(ctx, w, &range)?;
    // tlb_finish_mmu(): flush, then free_pages_and_swap_cache().
    for folio in batch {
        folio_put_refs(ctx, w, folio, 1)?;
    }
    Ok(())
}

/// `pte_free_defer()`: retire a PTE table that lockless walkers (gup-fast's irq-off section,
/// `pte_offset_map()`'s RCU section) may still be reading: it is freed once every CPU that
/// was inside a read-side section has left it (`call_rcu()`).
pub fn pte_free_defer(ctx: &mut Ctx, w: &World, table: u32) -> KResult<()> {
    let gp = ctx.exec().rcu_snapshot();
    w.pgtable_rcu
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((table, gp));
    rcu_do_batch(ctx, w)
}

/// `rcu_do_batch()` of retired page tables: free those whose grace period has ended.
pub fn rcu_do_batch(ctx: &mut Ctx, w: &World) -> KResult<()> {
    if ctx.in_nmi() {
        return Ok(());
    }
    loop {
        let ready = {
            let mut q = w.pgtable_rcu.lock().unwrap_or_else(|e| e.into_inner());
            let exec = ctx.exec();
            q.iter()
                .position(|(_, gp)| exec.rcu_gp_done(gp))
                .map(|i| q.remove(i).0)
        };
        let Some(table) = ready else { return Ok(()) };
        pagetable_free(ctx, w, table)?;
    }
}

/// `rcu_barrier()` at teardown: every CPU has stopped, every grace period is over.
pub fn rcu_barrier(ctx: &mut Ctx, w: &World) -> KResult<()> {
    let all: Vec<u32> = w
        .pgtable_rcu
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain(..)
        .map(|(t, _)| t)
        .collect();
    for table in all {
        pagetable_free(ctx, w, table)?;
    }
    Ok(())
}

/// `pagetable_free()`: a PTE table goes back to the allocator (poisoned).
fn pagetable_free(ctx: &mut Ctx, w: &World, table: u32) -> KResult<()> {
    let p = w.page(table);
    p.refcount
        .store_plain(ctx, site!("pte_free_now", "pagetable_free()"), 0);
    p.flags
        .store_plain(ctx, site!("pte_free_now", "__ClearPageTable()"), 0);
    free_folio(ctx, w, table)
}

/// `folio_remove_rmap_pte()`: one fewer PTE maps `page`.
pub fn folio_remove_rmap_pte(ctx: &mut Ctx, w: &World, page: u32) -> KResult<()> {
    let mc = w.page(page).mapcount.add_return(
        ctx,
        site!(
            "folio_remove_rmap_pte",
            "atomic_add_negative(-1, &page->_mapcount)"
        ),
        -1,
    )?;
    if mc < 0 {
        return Err(ctx.violation(
            Kind::BadPageState,
            "folio_remove_rmap_pte",
            Some(page),
            format!("mapcount of pfn {page} went to {mc}"),
        ));
    }
    Ok(())
}

/// `folio_add_file_rmap_pte()`: one more PTE maps file page `page`.
pub fn folio_add_rmap_pte(ctx: &mut Ctx, w: &World, page: u32) -> KResult<()> {
    w.page(page).mapcount.add_return(
        ctx,
        site!(
            "folio_add_file_rmap_pte",
            "atomic_inc_and_test(&page->_mapcount)"
        ),
        1,
    )?;
    Ok(())
}

/// `folio_add_anon_rmap_pte()`: one more PTE maps `page`.
pub fn folio_add_anon_rmap_pte(ctx: &mut Ctx, w: &World, page: u32) -> KResult<()> {
    w.page(page).mapcount.add_return(
        ctx,
        site!(
            "folio_add_anon_rmap_pte",
            "atomic_inc_and_test(&page->_mapcount)"
        ),
        1,
    )?;
    Ok(())
}

/// `free_pgtables()` at exit: free every (now empty) PTE table and clear the PMDs.
pub fn free_pgtables(ctx: &mut Ctx, w: &World) -> KResult<()> {
    for pmdp in &w.mm.pmds {
        let pmd = pmdp.peek();
        if pmd & PMD_TABLE == 0 {
            continue;
        }
        let table = pmd_table_pfn(pmd);
        pmdp.store_plain(ctx, site!("free_pgtables", "pmd_clear()"), 0);
        let p = w.page(table);
        p.refcount
            .store_plain(ctx, site!("free_pgtables", "pagetable_free()"), 0);
        p.flags
            .store_plain(ctx, site!("free_pgtables", "__ClearPageTable()"), 0);
        free_folio(ctx, w, table)?;
    }
    Ok(())
}

/// What a user access did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UserAccess {
    /// It hit a present PTE: the value read (before the write, for a write).
    Done(u64),
    /// It faulted (no PTE, or a migration entry).
    Fault,
}

/// A user load or store as the MMU does it: walk the page table and access the page in one
/// step. One scheduling point, because a TLB-coherent access cannot be split by a zap's flush.
pub fn user_access(ctx: &mut Ctx, w: &World, vpn: u32, write: Option<u64>) -> KResult<UserAccess> {
    ctx.point(
        site!("user_access", "MMU walk + access"),
        Obj::pmd(vpn >> w.cfg.order),
        Access::Read,
        u64::from(vpn),
    )?;
    let Some(slot) = w.pte_slot_of(vpn) else {
        return Ok(UserAccess::Fault);
    };
    let pte = slot.peek();
    if !pte_present(pte) || (write.is_some() && !pte_write(pte)) {
        return Ok(UserAccess::Fault);
    }
    let page = w.page(pte_pfn(pte));
    if page.is_free() {
        return Err(ctx.violation(
            Kind::UseAfterFree,
            "user_access",
            Some(page.pfn),
            format!(
                "user access to vpn {vpn} reached freed pfn {} through a live PTE",
                page.pfn
            ),
        ));
    }
    let old = page.data.peek();
    if let Some(v) = write {
        page.data
            .store_plain(ctx, site!("user_access", "user store"), v);
    }
    Ok(UserAccess::Done(old))
}

/// A kernel or device access to a page it holds a reference on (`kmap_local_page()` + copy,
/// or DMA), as one scheduling point. `lookup` finds the page inside that step (the caller's
/// handle table), so a concurrent release of the reference either precedes the access (no page)
/// or follows it. Reaching a freed page is a use-after-free.
pub fn kernel_access_page(
    ctx: &mut Ctx,
    w: &World,
    lookup: impl FnOnce() -> Option<u32>,
    write: Option<u64>,
    func: &'static str,
) -> KResult<Option<u64>> {
    let acc = if write.is_some() {
        Access::Write
    } else {
        Access::Read
    };
    ctx.point(
        site!("kmap_local_page", "access through a GUP reference"),
        Obj::NONE,
        acc,
        0,
    )?;
    let Some(pfn) = lookup() else { return Ok(None) };
    let page = w.page(pfn);
    if page.is_free() {
        return Err(ctx.violation(
            Kind::UseAfterFree,
            func,
            Some(pfn),
            format!("access through a GUP reference reached freed pfn {pfn}"),
        ));
    }
    if !crate::set_memory::kernel_page_present(w, pfn) {
        return Err(ctx.violation(
            Kind::KernelPageFault,
            func,
            Some(pfn),
            format!("kernel access to pfn {pfn}, which is not present in the direct map"),
        ));
    }
    let old = page.data.peek();
    if let Some(v) = write {
        page.data.store_plain(
            ctx,
            site!("kmap_local_page", "store through a GUP reference"),
            v,
        );
    }
    Ok(Some(old))
}
