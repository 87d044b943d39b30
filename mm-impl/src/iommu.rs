//! drivers/iommu SVA (shared virtual addressing): a device whose IOMMU walks the CPU's page
//! tables itself, as the IOMMUv2 / VT-d first-stage users Jann Horn names in seed 002. It keeps
//! two caches: the paging-structure cache (PMD -> PTE-table pointer, filled even when the leaf
//! is not present) and the IOTLB (virtual page -> page). Both are dropped by its mmu-notifier
//! callback; a walk through a table pointer that the notifier should have dropped reads a
//! freed page table.
//!
//! The hardware walk takes no CPU lock: it reads the PMD and PTE with plain loads. The IOMMU's
//! own lock serialises its walks with its invalidations, as the invalidation queue's wait
//! descriptor drains in-flight translation requests before the flush completes.

use crate::errno::Errno;
use crate::memory::handle_mm_fault;
use crate::mm_types::*;
use crate::mmu_notifier::{
    mmu_interval_read_begin, mmu_interval_read_retry, mmu_notifier_register, MmuNotifierRange,
    Subscriber,
};
use crate::site;
use crate::sync::{Access, Ctx, KResult, LockClass, Obj, SpinLock};
use crate::violation::Kind;
use crate::world::World;
use std::collections::BTreeMap;

/// What the IOMMU has cached.
#[derive(Debug, Default)]
pub struct IommuCaches {
    /// Paging-structure cache: PMD index -> PTE-table pfn.
    pub psc: BTreeMap<u32, u32>,
    /// IOTLB: virtual page -> (pfn, writable).
    pub iotlb: BTreeMap<u32, (u32, bool)>,
}

/// One IOMMU with a device bound to the mm.
#[derive(Debug)]
pub struct Iommu {
    /// The IOMMU's lock and caches.
    pub caches: SpinLock<IommuCaches>,
}

impl Iommu {
    /// No device bound, nothing cached.
    pub fn new() -> Iommu {
        Iommu {
            caches: SpinLock::new(LOCK_IOMMU, LockClass::Iommu, IommuCaches::default()),
        }
    }
}

impl Default for Iommu {
    fn default() -> Self {
        Iommu::new()
    }
}

/// `iommu_sva_bind_device()`: the first DMA of the device binds it to the mm, which registers
/// the IOMMU's mmu notifier.
pub fn iommu_sva_bind_device(ctx: &mut Ctx, w: &World) -> KResult<()> {
    let bound =
        w.mm.notifier
            .registered
            .read_once(ctx, site!("iommu_sva_bind_device", "mm_has_notifiers(mm)"))?;
    if bound & (1 << Subscriber::Iommu as u32) == 0 {
        mmu_notifier_register(ctx, w, Subscriber::Iommu)?;
    }
    Ok(())
}

/// A DMA read (`write: None`) or write at user virtual page `vpn` through the IOMMU: an IOTLB
/// hit uses the cached page; a miss walks the page tables (through the paging-structure cache)
/// and caches what it found, unless an invalidation began meanwhile (then it walks again).
/// A page that is not mapped, or not writable for a write, is a device fault: a page request
/// (`iommu_sva_handle_iopf()`) faults it in through the CPU with `handle_mm_fault()`, and the
/// device translates again; the fault's error (a hole, a read-only mapping) is the DMA's.
pub fn iommu_dma(
    ctx: &mut Ctx,
    w: &World,
    vpn: u32,
    write: Option<u64>,
) -> KResult<Result<u64, Errno>> {
    iommu_sva_bind_device(ctx, w)?;
    let idx = vpn >> w.cfg.order;
    loop {
        let seq = mmu_interval_read_begin(ctx, w)?;
        let io = &w.iommu.caches;
        io.lock(ctx)?;
        let hit = io.data(ctx).iotlb.get(&vpn).copied();
        if let Some((pfn, writable)) = hit {
            if write.is_none() || writable {
                let r = dma_access(ctx, w, pfn, write);
                io.unlock(ctx)?;
                return r.map(Ok);
            }
        }
        // Page walk: the paging-structure cache first, else the PMD.
        let cached = io.data(ctx).psc.get(&idx).copied();
        let table = match cached {
            Some(t) => t,
            None => {
                let pmd = w
                    .pmdp(vpn)
                    .read_once(ctx, site!("iommu_walk", "read the PMD"))?;
                if pmd & PMD_TABLE == 0 {
                    io.unlock(ctx)?;
                    if let Err(e) = iommu_sva_handle_iopf(ctx, w, vpn, write.is_some())? {
                        return Ok(Err(e));
                    }
                    continue;
                }
                pmd_table_pfn(pmd)
            }
        };
        let pte = w
            .pte(table, vpn & (w.nr_subpages() - 1))
            .read_once(ctx, site!("iommu_walk", "read the PTE"))?;
        // The walk read the table page at that point: was it still a page table?
        let tp = w.page(table);
        if tp.is_free() || tp.flags.peek() & PG_TABLE == 0 {
            return Err(ctx.violation(
                Kind::IommuWalkFreedTable,
                "iommu_walk",
                Some(table),
                format!(
                    "the IOMMU walked vpn {vpn} through page table pfn {table} (cached for PMD {idx}), which was freed{}",
                    if tp.is_free() { "" } else { " and reused" }
                ),
            ));
        }
        if mmu_interval_read_retry(ctx, w, seq)? {
            // An invalidation began: what was read may be stale; nothing gets cached.
            io.unlock(ctx)?;
            continue;
        }
        // The paging-structure cache keeps non-leaf entries even when the leaf is not present.
        io.data(ctx).psc.insert(idx, table);
        let ok = pte_present(pte) && (write.is_none() || pte_write(pte));
        if !ok {
            io.unlock(ctx)?;
            if let Err(e) = iommu_sva_handle_iopf(ctx, w, vpn, write.is_some())? {
                return Ok(Err(e));
            }
            continue;
        }
        let pfn = pte_pfn(pte);
        io.data(ctx).iotlb.insert(vpn, (pfn, pte_write(pte)));
        let r = dma_access(ctx, w, pfn, write);
        io.unlock(ctx)?;
        return r.map(Ok);
    }
}

/// `iommu_sva_handle_iopf()`: a page request from the device, served like a user fault.
fn iommu_sva_handle_iopf(
    ctx: &mut Ctx,
    w: &World,
    vpn: u32,
    write: bool,
) -> KResult<Result<(), Errno>> {
    let Some(kind) = w.mm.vmas.iter().find(|v| v.contains(vpn)).map(|v| v.kind) else {
        return Ok(Err(Errno::EFAULT));
    };
    w.mm.mmap_lock.down_read(ctx)?;
    let r = handle_mm_fault(ctx, w, kind, vpn, write);
    w.mm.mmap_lock.up_read(ctx)?;
    r
}

/// The DMA itself, to a page the IOMMU translated to. Reaching a freed page is a device
/// use-after-free.
fn dma_access(ctx: &mut Ctx, w: &World, pfn: u32, write: Option<u64>) -> KResult<u64> {
    // One bus transaction, one scheduling point: a DMA write is not a read and a store.
    let (site, acc) = match write {
        None => (site!("iommu_dma", "DMA read"), Access::Read),
        Some(_) => (site!("iommu_dma", "DMA write"), Access::Write),
    };
    ctx.point(site, Obj::page(pfn), acc, write.unwrap_or(0))?;
    let page = w.page(pfn);
    if page.is_free() {
        return Err(ctx.violation(
            Kind::UseAfterFree,
            "iommu_dma",
            Some(pfn),
            format!("DMA through the IOMMU reached freed pfn {pfn}"),
        ));
    }
    let old = page.data.peek();
    if let Some(v) = write {
        page.data
            .store_plain(ctx, site!("iommu_dma", "DMA write: store"), v);
    }
    Ok(old)
}

/// `invalidate_range_start` callback (arch_invalidate_secondary_tlbs of intel-svm): flush the
/// IOTLB entries and the paging-structure entries of the range before the CPU side clears them.
pub fn iommu_mn_invalidate_range_start(
    ctx: &mut Ctx,
    w: &World,
    range: &MmuNotifierRange,
) -> KResult<()> {
    let io = &w.iommu.caches;
    io.lock(ctx)?;
    {
        let order = w.cfg.order;
        let mut c = io.data(ctx);
        c.iotlb.retain(|&vpn, _| !range.contains(vpn));
        let (first, last) = (range.start >> order, (range.end.max(1) - 1) >> order);
        c.psc.retain(|&idx, _| !(first..=last).contains(&idx));
    }
    io.unlock(ctx)
}

/// `invalidate_range_end` callback: nothing is cached inside the window, nothing to do.
pub fn iommu_mn_invalidate_range_end(
    _ctx: &mut Ctx,
    _w: &World,
    _range: &MmuNotifierRange,
) -> KResult<()> {
    Ok(())
}
