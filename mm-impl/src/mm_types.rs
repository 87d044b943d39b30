//! include/linux/mm_types.h: `struct page`, `struct vm_area_struct`, `struct mm_struct`,
//! and the PTE/PMD encodings.

use crate::sync::{KAtomicI32, KAtomicU32, KAtomicU64, LockClass, Obj, RwSem, SpinLock};
use serde::{Deserialize, Serialize};

/// `PG_locked`.
pub const PG_LOCKED: u32 = 1 << 0;
/// `PG_head`: first page of a compound page.
pub const PG_HEAD: u32 = 1 << 1;
/// `PG_uptodate`.
pub const PG_UPTODATE: u32 = 1 << 2;
/// `PageAnon` (really the low bit of `page->mapping`).
pub const PG_ANON: u32 = 1 << 3;
/// `PageBuddy`: on the allocator's free list; the page is poisoned.
pub const PG_BUDDY: u32 = 1 << 4;
/// `PageTable`: a page-table page.
pub const PG_TABLE: u32 = 1 << 5;
/// `PG_dirty`: the page cache holds data the disk does not have yet.
pub const PG_DIRTY: u32 = 1 << 6;
/// `PG_writeback`: the page is being written to disk.
pub const PG_WRITEBACK: u32 = 1 << 7;
/// `PG_private`: the file system's per-page state (buffer heads) is attached.
pub const PG_PRIVATE: u32 = 1 << 8;

/// `compound_head` value of a page that is not a tail.
pub const NO_HEAD: u32 = u32::MAX;
/// Data pattern of a freed page (`PAGE_POISON`).
pub const POISON: u64 = 0xaaaa_aaaa_aaaa_aaaa;
/// `GUP_PIN_COUNTING_BIAS`: references a FOLL_PIN takes on a small folio.
pub const GUP_PIN_COUNTING_BIAS: i32 = 1024;

/// PTE bits: present, writable, migration entry (not present; the pfn is kept).
pub const PTE_PRESENT: u64 = 1;
/// Writable.
pub const PTE_WRITE: u64 = 2;
/// A migration entry (`is_migration_entry()`), written while a folio is unmapped for split.
pub const PTE_MIGRATION: u64 = 4;
/// PMD bit: points at a PTE table.
pub const PMD_TABLE: u64 = 1;

/// `mk_pte()`.
pub fn mk_pte(pfn: u32, write: bool) -> u64 {
    (u64::from(pfn) << 12) | PTE_PRESENT | if write { PTE_WRITE } else { 0 }
}

/// `make_migration_entry()`: remembers pfn and writability.
pub fn mk_migration_entry(pfn: u32, write: bool) -> u64 {
    (u64::from(pfn) << 12) | PTE_MIGRATION | if write { PTE_WRITE } else { 0 }
}

/// `pte_pfn()` / `swp_offset_pfn()`.
pub fn pte_pfn(pte: u64) -> u32 {
    (pte >> 12) as u32
}

/// `pte_present()`.
pub fn pte_present(pte: u64) -> bool {
    pte & PTE_PRESENT != 0
}

/// `is_migration_entry()`.
pub fn is_migration_entry(pte: u64) -> bool {
    pte & PTE_MIGRATION != 0
}

/// `pte_write()`.
pub fn pte_write(pte: u64) -> bool {
    pte & PTE_WRITE != 0
}

/// `pte_same()`: compares (pfn, prot) only; accessed/dirty bits would be masked here.
pub fn pte_same(a: u64, b: u64) -> bool {
    a == b
}

/// `pmd_populate()` value for the table page `table_pfn`.
pub fn mk_pmd_table(table_pfn: u32) -> u64 {
    (u64::from(table_pfn) << 12) | PMD_TABLE
}

/// `pmd_page()` of a table PMD.
pub fn pmd_table_pfn(pmd: u64) -> u32 {
    (pmd >> 12) as u32
}

/// `struct page` (with the folio fields on head pages).
#[derive(Debug)]
pub struct Page {
    /// Page frame number.
    pub pfn: u32,
    /// `page->flags`.
    pub flags: KAtomicU32,
    /// `page->_refcount` (only meaningful on heads; tails stay 0).
    pub refcount: KAtomicI32,
    /// `page->_mapcount`, counted from 0 here (the kernel stores it minus one).
    pub mapcount: KAtomicI32,
    /// `page->compound_head`: the head's pfn on a tail, [`NO_HEAD`] otherwise.
    pub compound_head: KAtomicU32,
    /// `folio->_folio_order` on a head.
    pub order: KAtomicU32,
    /// `folio->_pincount` on the head of a large folio.
    pub pincount: KAtomicI32,
    /// `page->index`: the virtual page number it is mapped at (anon rmap).
    pub index: KAtomicU32,
    /// A few bytes of contents.
    pub data: KAtomicU64,
    /// The split PTE lock of a page-table page.
    pub ptl: SpinLock<()>,
    /// Checker annotation, not kernel state: the CPU that froze the refcount (`NOT_FROZEN` when
    /// it is not frozen), so an NMI spinning on the folio can tell whether it interrupted the
    /// holder (and can never make progress) or waits for another CPU.
    pub frozen_by: std::sync::atomic::AtomicU32,
}

/// `frozen_by` of a page that is not frozen.
pub const NOT_FROZEN: u32 = u32::MAX;

impl Page {
    /// A free (poisoned) page.
    pub fn new(pfn: u32) -> Page {
        let o = Obj::page(pfn);
        Page {
            pfn,
            flags: KAtomicU32::new(PG_BUDDY, o),
            refcount: KAtomicI32::new(0, o),
            mapcount: KAtomicI32::new(0, o),
            compound_head: KAtomicU32::new(NO_HEAD, o),
            order: KAtomicU32::new(0, o),
            pincount: KAtomicI32::new(0, o),
            index: KAtomicU32::new(0, o),
            data: KAtomicU64::new(POISON, o),
            ptl: SpinLock::new(LOCK_PTL_BASE + pfn, LockClass::Ptl, ()),
            frozen_by: std::sync::atomic::AtomicU32::new(NOT_FROZEN),
        }
    }

    /// Checker view: is this page on the free list?
    pub fn is_free(&self) -> bool {
        self.flags.peek() & PG_BUDDY != 0
    }

    /// Checker view: `page_folio()` without a scheduling point.
    pub fn folio_peek(&self) -> u32 {
        match self.compound_head.peek() {
            NO_HEAD => self.pfn,
            h => h,
        }
    }
}

/// Lock ids: fixed locks below, then one PTE lock per page.
pub const LOCK_MMAP: u32 = 1;
/// `mm->page_table_lock`.
pub const LOCK_PAGE_TABLE: u32 = 2;
/// `ds_queue->split_queue_lock`.
pub const LOCK_SPLIT_QUEUE: u32 = 3;
/// `zone->lock`.
pub const LOCK_ZONE: u32 = 4;
/// `xa_lock(&mapping->i_pages)` of the text file.
pub const LOCK_XA_TEXT: u32 = 7;
/// `xa_lock(&mapping->i_pages)` of the data file behind the shared mapping.
pub const LOCK_XA_DATA: u32 = 13;
/// `mapping->i_mmap_rwsem` of the data file behind the shared mapping.
pub const LOCK_I_MMAP_DATA: u32 = 14;
/// vhost's `mmu_lock` over its vmap aliases.
pub const LOCK_VHOST: u32 = 15;
/// `cpa_lock`.
pub const LOCK_CPA: u32 = 5;
/// `vmap_purge_lock`.
pub const LOCK_VMAP_PURGE: u32 = 6;
/// `mapping->i_mmap_rwsem` of the text file.
pub const LOCK_I_MMAP_TEXT: u32 = 8;
/// `xa_lock(&mapping->i_pages)` of the shmem file.
pub const LOCK_XA_SHMEM: u32 = 9;
/// `mapping->i_mmap_rwsem` of the shmem file.
pub const LOCK_I_MMAP_SHMEM: u32 = 10;
/// `mm->notifier_subscriptions->lock`.
pub const LOCK_MMU_NOTIFIER: u32 = 11;
/// The IOMMU's lock (its IOTLB and paging-structure cache).
pub const LOCK_IOMMU: u32 = 12;
/// `anon_vma->rwsem` of VMA i is `LOCK_ANON_VMA_BASE + i`.
pub const LOCK_ANON_VMA_BASE: u32 = 16;
/// PTE lock of page-table page `pfn` is `LOCK_PTL_BASE + pfn`.
pub const LOCK_PTL_BASE: u32 = 1024;

/// The kinds of VMA of the default world, addressed by programs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum VmaKind {
    /// A private anonymous mapping whose faults allocate PTE-mapped THPs (mTHP).
    Anon,
    /// A MAP_PRIVATE, PROT_READ mapping of a shmem file, registered with userfaultfd in MISSING
    /// mode: faults map the file's pages read-only, a hole fails at once, `UFFDIO_COPY` installs
    /// anonymous pages.
    Shmem,
    /// A shared writable mapping of a data file on a file system with dirty tracking
    /// (`page_mkwrite`, buffer heads, writeback), like ext4.
    Shared,
}

impl VmaKind {
    /// Every kind, in address order.
    pub const ALL: [VmaKind; 3] = [VmaKind::Anon, VmaKind::Shmem, VmaKind::Shared];

    /// Name in program text.
    pub fn name(self) -> &'static str {
        match self {
            VmaKind::Anon => "anon",
            VmaKind::Shared => "shared",
            VmaKind::Shmem => "shmem",
        }
    }

    /// Parse a program-text name.
    pub fn from_name(s: &str) -> Option<VmaKind> {
        VmaKind::ALL.iter().copied().find(|k| k.name() == s)
    }
}

/// `struct vm_area_struct`.
#[derive(Debug)]
pub struct Vma {
    /// What it maps.
    pub kind: VmaKind,
    /// First virtual page number (PMD-aligned).
    pub start: u32,
    /// Number of pages (a whole number of PMDs).
    pub pages: u32,
    /// `vma->anon_vma->rwsem`.
    pub anon_vma: RwSem,
    /// `vma->anon_vma` itself: 0 while it is NULL (`anon_vma_prepare()` sets it).
    pub anon_vma_ptr: KAtomicU32,
}

impl Vma {
    /// Does the VMA map virtual page `vpn`?
    pub fn contains(&self, vpn: u32) -> bool {
        (self.start..self.start + self.pages).contains(&vpn)
    }

    /// `vma->vm_flags & VM_WRITE`.
    pub fn writable(&self) -> bool {
        matches!(self.kind, VmaKind::Anon | VmaKind::Shared)
    }

    /// `userfaultfd_missing(vma)`.
    pub fn userfaultfd_missing(&self) -> bool {
        self.kind == VmaKind::Shmem
    }
}

/// `struct mm_struct`: one address space.
#[derive(Debug)]
pub struct MmStruct {
    /// `mm->mmap_lock`.
    pub mmap_lock: RwSem,
    /// `mm->page_table_lock` (also the PMD lock: one lock for every PMD, as without split PMD locks).
    pub page_table_lock: SpinLock<()>,
    /// The PMD entries, one per huge-page-sized range of the address space.
    pub pmds: Vec<KAtomicU64>,
    /// The VMAs, in address order.
    pub vmas: Vec<Vma>,
    /// `MM_ANONPAGES`.
    pub rss_anon: KAtomicI32,
    /// `mm->notifier_subscriptions`.
    pub notifier: crate::mmu_notifier::MmuNotifierSubscriptions,
}
