//! The fixed default world every program runs in, built afresh for every execution.

use crate::bugs::Bugs;
use crate::filemap::{self, AddressSpace};
use crate::mm_types::*;
use crate::set_memory::DirectMap;
use crate::sync::{Ctx, KAtomicU64, KResult, LockClass, Obj, RwSem, SpinLock};
use crate::{memory, page_alloc};

/// Version of the default world's layout. Programs carry it; a change to the world that changes
/// what an address means bumps it.
pub const WORLD_VERSION: u32 = 4;

/// Smallest and largest supported huge-page order (a PTE table holds 2^order entries).
pub const MIN_ORDER: u8 = 2;
/// Largest supported huge-page order.
pub const MAX_ORDER: u8 = 5;
/// Huge-page order used when a program does not say.
pub const DEFAULT_ORDER: u8 = 3;

/// Huge-page ranges of the anon VMA.
pub const ANON_PMDS: u32 = 2;

/// Huge-page ranges of the shared file mapping (and of the data file it maps).
pub const SHARED_PMDS: u32 = 1;

/// Contents of page `index` of the data file behind the shared mapping, as the disk holds it
/// when the world starts.
pub fn data_file_data(index: u32) -> u64 {
    0x6000 + u64::from(index)
}

/// Huge-page ranges of the private shmem VMA and of its file (the first range is cached in
/// full, the second has a hole at every odd page).
pub const SHMEM_PMDS: u32 = 2;

/// Contents of page `index` of the shmem file, or `None` for a hole.
pub fn shmem_initial(order: u8, index: u32) -> Option<u64> {
    let first_range = index >> order == 0;
    (first_range || index.is_multiple_of(2)).then(|| 0x5000 + u64::from(index))
}

/// Huge-page ranges of the text file (the first starts cached, the second does not).
pub const TEXT_PMDS: u32 = 2;

/// The build id in the ELF note on page 0 of the text file.
pub const BUILD_ID: u64 = 0xb1d0_c0de;

/// Pages of the text file.
pub fn text_pages(order: u8) -> u32 {
    TEXT_PMDS << order
}

/// Contents of page `index` of the text file on disk: the ELF header with the build id on
/// page 0, text after it.
pub fn file_data(index: u32) -> u64 {
    if index == 0 {
        BUILD_ID
    } else {
        0x7e00 + u64::from(index)
    }
}

/// Where VMA `kind` lies in the default world: (first virtual page, pages). The single source of
/// the layout, used by the world itself and by everything that resolves program addresses.
pub fn vma_layout(order: u8, kind: VmaKind) -> (u32, u32) {
    let mut next = 0;
    for k in VmaKind::ALL {
        let pages = match k {
            VmaKind::Anon => ANON_PMDS << order,
            VmaKind::Shared => SHARED_PMDS << order,
            VmaKind::Shmem => SHMEM_PMDS << order,
        };
        if k == kind {
            return (next, pages);
        }
        next += pages;
    }
    unreachable!("VmaKind::ALL lists every kind")
}

/// Virtual page of (VMA kind, page index); the index is taken modulo the VMA's size.
pub fn resolve_addr(order: u8, kind: VmaKind, page: u32) -> u32 {
    let (start, pages) = vma_layout(order, kind);
    start + page % pages
}

/// World parameters: what a program header carries besides its threads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WorldConfig {
    /// Huge-page order.
    pub order: u8,
    /// Switched-on bugs.
    pub bugs: Bugs,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            order: DEFAULT_ORDER,
            bugs: Bugs::NONE,
        }
    }
}

/// Initial contents of anon page `i` of the pre-populated first huge range.
pub fn initial_anon_data(i: u32) -> u64 {
    0x100 + u64::from(i)
}

/// All model state of one execution.
#[derive(Debug)]
pub struct World {
    /// Parameters.
    pub cfg: WorldConfig,
    /// `mem_map`.
    pub pages: Vec<Page>,
    /// PTE slots of page-table pages: slot `i` of table page `pfn` is `pte_slots[pfn << order | i]`.
    pub pte_slots: Vec<KAtomicU64>,
    /// `zone->lock` and the free bitmap it protects.
    pub zone: SpinLock<Vec<bool>>,
    /// The one address space.
    pub mm: MmStruct,
    /// `ds_queue->split_queue_lock`.
    pub split_queue_lock: SpinLock<()>,
    /// The page cache of the text file (an executable with a build id), mapped by no PTE:
    /// build-id lookups reach it through `vma->vm_file`.
    pub text: AddressSpace,
    /// The page cache of the data file that the shared VMA maps (page `i` at `vma.start + i`).
    pub data: AddressSpace,
    /// The data file's blocks on disk, one per page: what writeback wrote.
    pub disk: Vec<KAtomicU64>,
    /// A vhost device with vmap aliases of user pages.
    pub vhost: crate::vhost::Vhost,
    /// The page cache of the shmem file the private shmem VMA maps.
    pub shmem: AddressSpace,
    /// The IOMMU of a device that shares the mm's page tables.
    pub iommu: crate::iommu::Iommu,
    /// Page tables `pte_free_defer()` retired, with the grace period each waits for.
    pub pgtable_rcu: std::sync::Mutex<Vec<(u32, crate::sync::GpState)>>,
    /// Folios freed from NMI context, waiting for irq_work (`free_pages_nolock()`).
    pub deferred_free: std::sync::Mutex<Vec<u32>>,
    /// `cpa_lock` and the direct map it protects.
    pub cpa_lock: SpinLock<DirectMap>,
    /// `vmap_purge_lock`.
    pub vmap_purge_lock: SpinLock<()>,
}

impl World {
    /// An empty world: every page free, no mappings.
    pub fn empty(cfg: WorldConfig) -> World {
        assert!(
            (MIN_ORDER..=MAX_ORDER).contains(&cfg.order),
            "order {} out of range",
            cfg.order
        );
        let nr = 16u32 << cfg.order;
        let pages: Vec<Page> = (0..nr).map(Page::new).collect();
        let per = 1u32 << cfg.order;
        let pte_slots = (0..nr * per)
            .map(|i| KAtomicU64::new(0, Obj::pte(i / per, i % per)))
            .collect();
        let mut vmas = Vec::new();
        for (i, kind) in VmaKind::ALL.iter().enumerate() {
            let (start, pages) = vma_layout(cfg.order, *kind);
            vmas.push(Vma {
                kind: *kind,
                start,
                pages,
                anon_vma: RwSem::new(LOCK_ANON_VMA_BASE + i as u32, LockClass::AnonVma),
                // The anon VMA has faulted before the program starts; the shmem VMA has not.
                anon_vma_ptr: crate::sync::KAtomicU32::new(
                    u32::from(*kind == VmaKind::Anon),
                    Obj::other(16 + i as u32),
                ),
            });
        }
        let npmds = vmas.iter().map(|v| v.start + v.pages).max().unwrap_or(0) >> cfg.order;
        World {
            cfg,
            pages,
            pte_slots,
            zone: SpinLock::new(LOCK_ZONE, LockClass::Zone, vec![true; nr as usize]),
            mm: MmStruct {
                mmap_lock: RwSem::new(LOCK_MMAP, LockClass::MmapLock),
                page_table_lock: SpinLock::new(LOCK_PAGE_TABLE, LockClass::Pml, ()),
                pmds: (0..npmds)
                    .map(|i| KAtomicU64::new(0, Obj::pmd(i)))
                    .collect(),
                vmas,
                rss_anon: crate::sync::KAtomicI32::new(0, Obj::other(1)),
                notifier: crate::mmu_notifier::MmuNotifierSubscriptions::new(),
            },
            split_queue_lock: SpinLock::new(LOCK_SPLIT_QUEUE, LockClass::SplitQueue, ()),
            text: AddressSpace::new(
                cfg.order,
                text_pages(cfg.order),
                LOCK_XA_TEXT,
                LOCK_I_MMAP_TEXT,
            ),
            shmem: AddressSpace::new(
                cfg.order,
                SHMEM_PMDS << cfg.order,
                LOCK_XA_SHMEM,
                LOCK_I_MMAP_SHMEM,
            ),
            data: AddressSpace::new(
                cfg.order,
                SHARED_PMDS << cfg.order,
                LOCK_XA_DATA,
                LOCK_I_MMAP_DATA,
            ),
            disk: (0..SHARED_PMDS << cfg.order)
                .map(|i| KAtomicU64::new(data_file_data(i), Obj::other(0x100 + i)))
                .collect(),
            iommu: crate::iommu::Iommu::new(),
            vhost: crate::vhost::Vhost::new(),
            pgtable_rcu: std::sync::Mutex::new(Vec::new()),
            deferred_free: std::sync::Mutex::new(Vec::new()),
            cpa_lock: SpinLock::new(LOCK_CPA, LockClass::Cpa, DirectMap::new(nr, cfg.order)),
            vmap_purge_lock: SpinLock::new(LOCK_VMAP_PURGE, LockClass::VmapPurge, ()),
        }
    }

    /// The default world: the first huge range of the anon VMA is populated with a PTE-mapped
    /// THP whose page `i` holds [`initial_anon_data`]`(i)`; the second is empty.
    pub fn new(ctx: &mut Ctx, cfg: WorldConfig) -> KResult<World> {
        let w = World::empty(cfg);
        let vma = w.vma(crate::mm_types::VmaKind::Anon);
        let start = vma.start;
        w.mm.mmap_lock.down_read(ctx)?;
        let r = memory::handle_mm_fault(ctx, &w, VmaKind::Anon, start, true)?;
        w.mm.mmap_lock.up_read(ctx)?;
        assert!(r.is_ok(), "default world setup cannot fail");
        for i in 0..w.nr_subpages() {
            let pte = w.pte_slot_of(start + i).map(|s| s.peek()).unwrap_or(0);
            debug_assert!(pte_present(pte));
            w.pages[pte_pfn(pte) as usize]
                .data
                .set_plain(initial_anon_data(i));
        }
        // The text file's first huge range is cached, uptodate, in small folios.
        for index in 0..w.nr_subpages() {
            let folio =
                page_alloc::alloc_pages(ctx, &w, 0)?.expect("default world setup cannot fail");
            let p = w.page(folio);
            p.data.set_plain(file_data(index));
            p.flags.set_plain(PG_UPTODATE);
            let r = filemap::filemap_add_folio(ctx, &w, &w.text, folio, index)?;
            assert!(r.is_ok(), "default world setup cannot fail");
            // Only the page cache's reference stays.
            crate::page_ref::folio_put(ctx, &w, folio)?;
        }
        // The shmem file, uptodate in small folios, with its holes.
        for index in 0..w.shmem.nr_pages {
            let Some(data) = shmem_initial(cfg.order, index) else {
                continue;
            };
            let folio =
                page_alloc::alloc_pages(ctx, &w, 0)?.expect("default world setup cannot fail");
            let p = w.page(folio);
            p.data.set_plain(data);
            p.flags.set_plain(PG_UPTODATE);
            let r = filemap::filemap_add_folio(ctx, &w, &w.shmem, folio, index)?;
            assert!(r.is_ok(), "default world setup cannot fail");
            crate::page_ref::folio_put(ctx, &w, folio)?;
        }
        // The shmem VMA's first huge range has a PTE table, empty (as after a read fault and
        // MADV_DONTNEED): what retract_page_tables() retires after a collapse.
        let shmem_start = w.vma(VmaKind::Shmem).start;
        let r = memory::__pte_alloc(ctx, &w, shmem_start)?;
        assert!(r.is_ok(), "default world setup cannot fail");
        // The data file is cached, uptodate and clean, with its buffers attached.
        for index in 0..SHARED_PMDS << cfg.order {
            let folio =
                page_alloc::alloc_pages(ctx, &w, 0)?.expect("default world setup cannot fail");
            let p = w.page(folio);
            p.data.set_plain(data_file_data(index));
            p.flags.set_plain(PG_UPTODATE | PG_PRIVATE);
            let r = filemap::filemap_add_folio(ctx, &w, &w.data, folio, index)?;
            assert!(r.is_ok(), "default world setup cannot fail");
            crate::page_ref::folio_put(ctx, &w, folio)?;
        }
        Ok(w)
    }

    /// Pages per huge page (= PTEs per table).
    #[inline]
    pub fn nr_subpages(&self) -> u32 {
        1 << self.cfg.order
    }

    /// The VMA of `kind`.
    pub fn vma(&self, kind: VmaKind) -> &Vma {
        self.mm
            .vmas
            .iter()
            .find(|v| v.kind == kind)
            .expect("every kind has a VMA")
    }

    /// `struct page` of `pfn`.
    #[inline]
    pub fn page(&self, pfn: u32) -> &Page {
        &self.pages[pfn as usize]
    }

    /// PTE slot `idx` of table page `table`.
    #[inline]
    pub fn pte(&self, table: u32, idx: u32) -> &KAtomicU64 {
        &self.pte_slots[((table << self.cfg.order) | idx) as usize]
    }

    /// PMD slot covering virtual page `vpn`.
    #[inline]
    pub fn pmdp(&self, vpn: u32) -> &KAtomicU64 {
        &self.mm.pmds[(vpn >> self.cfg.order) as usize]
    }

    /// Checker view: the PTE slot mapping `vpn`, if its PMD has a table.
    pub fn pte_slot_of(&self, vpn: u32) -> Option<&KAtomicU64> {
        let pmd = self.pmdp(vpn).peek();
        if pmd & PMD_TABLE == 0 {
            return None;
        }
        Some(self.pte(pmd_table_pfn(pmd), vpn & (self.nr_subpages() - 1)))
    }

    /// Single-threaded teardown (`exit_mmap`): unmap everything and free the page tables.
    pub fn exit_mmap(&self, ctx: &mut Ctx) -> KResult<()> {
        for vma in &self.mm.vmas {
            self.mm.mmap_lock.down_read(ctx)?;
            memory::zap_page_range(ctx, self, vma.kind, vma.start, vma.pages)?;
            self.mm.mmap_lock.up_read(ctx)?;
        }
        memory::rcu_barrier(ctx, self)?;
        memory::free_pgtables(ctx, self)?;
        filemap::truncate_inode_pages_final(ctx, self, &self.text)?;
        filemap::truncate_inode_pages_final(ctx, self, &self.shmem)?;
        filemap::truncate_inode_pages_final(ctx, self, &self.data)?;
        page_alloc::irq_work_run(ctx, self)?;
        let _ = page_alloc::nr_free(self);
        Ok(())
    }
}
