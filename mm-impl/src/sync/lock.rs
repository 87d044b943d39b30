//! Model locks: spinlock and rw-semaphore, with lockdep-style order checking and deadlock
//! detection before a CPU starts waiting.
//!
//! Sleeping locks and spinlocks wait the same way here (by spinning in `cpu_relax()`, which hands
//! the CPU to a thread that can make progress); what differs is only the lock class.

use super::ctx::{Ctx, KResult};
use super::site::{Access, Obj};
use crate::site;
use crate::violation::Kind;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Lock classes in the documented order (head comment of the kernel's mm/rmap.c):
///
/// ```text
/// mm->mmap_lock
///   folio_lock
///     mapping->i_mmap_rwsem
///       anon_vma->rwsem
///         mmu notifier subscriptions->lock, then a secondary MMU's own lock (its invalidate
///         callbacks run before the page-table locks are taken)
///         mm->page_table_lock or pte_lock (pmd lock, then the PTE lock nested)
///           split_queue_lock (irq-off)
///             i_pages lock (xa_lock)
///               vmap_purge_lock, cpa_lock (each taken alone; cpa_lock is dropped around the
///                 split's allocation)
///                 zone->lock
/// ```
/// A CPU may take a class only while every class it holds ranks strictly lower, except for
/// the pairs the kernel nests explicitly (the PTE lock inside the PMD lock).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum LockClass {
    /// `mm->mmap_lock` (rw).
    MmapLock,
    /// `PG_locked` (folio_lock).
    FolioLock,
    /// `mapping->i_mmap_rwsem`.
    IMmap,
    /// `anon_vma->rwsem`.
    AnonVma,
    /// `mmu_notifier_subscriptions->lock`: the invalidation sequence.
    MmuNotifier,
    /// A secondary MMU's own lock (the IOMMU's IOTLB and paging-structure cache).
    Iommu,
    /// `pmd_lock()` / `mm->page_table_lock`.
    Pml,
    /// `pte_lockptr()`: split PTE lock.
    Ptl,
    /// `xa_lock(&mapping->i_pages)` (a file split takes it before the split queue lock).
    XaLock,
    /// `ds_queue->split_queue_lock`.
    SplitQueue,
    /// `vmap_purge_lock` (a mutex).
    VmapPurge,
    /// `cpa_lock`: the direct map's page attributes.
    Cpa,
    /// `zone->lock`.
    Zone,
}

impl LockClass {
    /// A sleeping lock (mutex, rwsem): its holder is still preemptible.
    pub fn sleeps(self) -> bool {
        matches!(
            self,
            LockClass::MmapLock
                | LockClass::FolioLock
                | LockClass::IMmap
                | LockClass::AnonVma
                | LockClass::VmapPurge
        )
    }

    fn may_nest_inside(self, held: LockClass) -> bool {
        held < self
    }
}

/// Acquire-time lockdep check: report `LockOrder` when taking `class` against the order.
pub(crate) fn lockdep_acquire(ctx: &mut Ctx, class: LockClass, obj: Obj) -> KResult<()> {
    // mm_take_all_locks() nests every mapping's i_mmap_rwsem under mmap_lock (the nest_lock
    // annotation): the one same-class nesting lockdep accepts here.
    let nest_lock =
        class == LockClass::IMmap && ctx.held.iter().any(|(c, _)| *c == LockClass::MmapLock);
    if let Some(&(held, hobj)) = ctx
        .held
        .iter()
        .find(|(h, _)| !(class.may_nest_inside(*h) || (nest_lock && *h == LockClass::IMmap)))
    {
        return Err(ctx.violation(
            Kind::LockOrder,
            "lockdep",
            None,
            format!(
                "taking {class:?} ({}) while holding {held:?} ({})",
                obj.describe(),
                hobj.describe()
            ),
        ));
    }
    Ok(())
}

pub(crate) fn lockdep_release(ctx: &mut Ctx, obj: Obj) {
    if let Some(i) = ctx.held.iter().rposition(|&(_, o)| o == obj) {
        ctx.held.remove(i);
    }
}

/// A spinlock (or mutex) whose protected data is plain, lock-protected state.
///
/// The model lock is the scheduling-relevant lock. `data` is wrapped in a std `Mutex` only to
/// satisfy Rust's aliasing rules: it is locked for the length of one closure that contains no
/// scheduling point, so it is never contended.
#[derive(Debug)]
pub struct SpinLock<T> {
    /// Owner bit mask, 0 when free.
    word: AtomicU32,
    obj: Obj,
    class: LockClass,
    data: Mutex<T>,
}

impl<T> SpinLock<T> {
    /// A lock with id `id` (unique among model locks) of `class`.
    pub fn new(id: u32, class: LockClass, data: T) -> Self {
        SpinLock {
            word: AtomicU32::new(0),
            obj: Obj::lock(id),
            class,
            data: Mutex::new(data),
        }
    }

    /// `spin_lock()`.
    pub fn lock(&self, ctx: &mut Ctx) -> KResult<()> {
        lockdep_acquire(ctx, self.class, self.obj)?;
        let me = ctx.owner_bit();
        let mut waited = false;
        loop {
            ctx.sched_point()?;
            let got = self
                .word
                .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed);
            match got {
                Ok(_) => {
                    ctx.record(
                        site!("spin_lock", "acquire"),
                        self.obj,
                        Access::Rmw,
                        1,
                        true,
                    );
                    if waited {
                        ctx.wait_done();
                    }
                    ctx.held.push((self.class, self.obj));
                    return Ok(());
                }
                Err(owner) => {
                    ctx.record(
                        site!("spin_lock", "contended"),
                        self.obj,
                        Access::Read,
                        owner.into(),
                        false,
                    );
                    ctx.wait_for(self.obj, owner, site!("spin_lock", "wait"))?;
                    waited = true;
                    ctx.cpu_relax(site!("spin_lock", "cpu_relax"))?;
                }
            }
        }
    }

    /// `spin_trylock()`: no lockdep ordering check (a trylock cannot deadlock).
    pub fn trylock(&self, ctx: &mut Ctx) -> KResult<bool> {
        ctx.sched_point()?;
        let me = ctx.owner_bit();
        let ok = self
            .word
            .compare_exchange(0, me, Ordering::Acquire, Ordering::Relaxed)
            .is_ok();
        ctx.record(
            site!("spin_trylock", "try"),
            self.obj,
            Access::Rmw,
            ok as u64,
            ok,
        );
        if ok {
            ctx.held.push((self.class, self.obj));
        }
        Ok(ok)
    }

    /// `spin_unlock()`: a release store, and a scheduling point.
    pub fn unlock(&self, ctx: &mut Ctx) -> KResult<()> {
        debug_assert_eq!(
            self.word.load(Ordering::Relaxed),
            ctx.owner_bit(),
            "unlock of a lock not held"
        );
        ctx.sched_point()?;
        // Released for lockdep only once the word is free: until then the CPU still holds a
        // spinlock (it is not at a preemptible point, so the freezer cannot catch it there).
        lockdep_release(ctx, self.obj);
        self.word.store(0, Ordering::Release);
        ctx.record(
            site!("spin_unlock", "release"),
            self.obj,
            Access::Write,
            0,
            true,
        );
        Ok(())
    }

    /// Is it held by `ctx`?
    pub fn held_by(&self, ctx: &Ctx) -> bool {
        self.word.load(Ordering::Relaxed) == ctx.owner_bit()
    }

    /// Is it held by anyone? (for checkers; not a scheduling point)
    pub fn is_locked(&self) -> bool {
        self.word.load(Ordering::Relaxed) != 0
    }

    /// Access the lock-protected data; the caller must hold the model lock.
    pub fn data(&self, ctx: &Ctx) -> MutexGuard<'_, T> {
        debug_assert!(
            self.held_by(ctx),
            "lock-protected data accessed without the lock"
        );
        self.data_unlocked()
    }

    /// Access the data without holding the model lock: single-threaded setup and checkers only.
    pub fn data_unlocked(&self) -> MutexGuard<'_, T> {
        match self.data.try_lock() {
            Ok(g) => g,
            // A contended guard would mean a scheduling point inside the closure: harness bug.
            Err(std::sync::TryLockError::WouldBlock) => {
                panic!("harness bug: lock data guard held across a switch")
            }
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
        }
    }

    /// This lock's object name.
    pub fn obj(&self) -> Obj {
        self.obj
    }
}

const WRITER: u32 = 1 << 31;

/// A reader-writer semaphore (`mmap_lock`, `anon_vma->rwsem`, `i_mmap_rwsem`).
///
/// Writers are not starved: once a writer waits, new readers queue behind it (the kernel's
/// `RWSEM_FLAG_WAITERS` sends them to the slow path). So taking a read lock again while a
/// writer waits deadlocks, as it does in the kernel.
#[derive(Debug)]
pub struct RwSem {
    /// `WRITER` | reader count.
    count: AtomicU32,
    /// Bit mask of the CPUs holding it (readers or the writer), for deadlock detection.
    owners: AtomicU32,
    /// Bit mask of the CPUs waiting to write.
    writers_waiting: AtomicU32,
    obj: Obj,
    class: LockClass,
}

impl RwSem {
    /// A rwsem with lock id `id`.
    pub fn new(id: u32, class: LockClass) -> Self {
        RwSem {
            count: AtomicU32::new(0),
            owners: AtomicU32::new(0),
            writers_waiting: AtomicU32::new(0),
            obj: Obj::lock(id),
            class,
        }
    }

    /// `down_read()`: queues behind a writer that holds or waits for the lock.
    pub fn down_read(&self, ctx: &mut Ctx) -> KResult<()> {
        lockdep_acquire(ctx, self.class, self.obj)?;
        let mut waited = false;
        loop {
            ctx.sched_point()?;
            let c = self.count.load(Ordering::Relaxed);
            let queued = self.writers_waiting.load(Ordering::Relaxed);
            if c & WRITER == 0 && queued == 0 {
                let got =
                    self.count
                        .compare_exchange(c, c + 1, Ordering::Acquire, Ordering::Relaxed);
                debug_assert!(got.is_ok(), "one model CPU runs at a time");
                self.owners.fetch_or(ctx.owner_bit(), Ordering::Relaxed);
                ctx.record(
                    site!("down_read", "acquire"),
                    self.obj,
                    Access::Rmw,
                    u64::from(c + 1),
                    true,
                );
                if waited {
                    ctx.wait_done();
                }
                ctx.held.push((self.class, self.obj));
                return Ok(());
            }
            ctx.record(
                site!("down_read", "contended"),
                self.obj,
                Access::Read,
                u64::from(c),
                false,
            );
            // Waiting behind a queued writer means waiting for it too.
            let owners = self.owners.load(Ordering::Relaxed) | queued;
            ctx.wait_for(self.obj, owners, site!("down_read", "wait"))?;
            waited = true;
            ctx.cpu_relax(site!("down_read", "cpu_relax"))?;
        }
    }

    /// `up_read()`.
    pub fn up_read(&self, ctx: &mut Ctx) -> KResult<()> {
        lockdep_release(ctx, self.obj);
        ctx.sched_point()?;
        let c = self.count.fetch_sub(1, Ordering::Release);
        self.owners.fetch_and(!ctx.owner_bit(), Ordering::Relaxed);
        ctx.record(
            site!("up_read", "release"),
            self.obj,
            Access::Rmw,
            u64::from(c - 1),
            true,
        );
        Ok(())
    }

    /// `down_write()`: while it waits, new readers queue behind it.
    pub fn down_write(&self, ctx: &mut Ctx) -> KResult<()> {
        lockdep_acquire(ctx, self.class, self.obj)?;
        let me = ctx.owner_bit();
        let mut waited = false;
        loop {
            ctx.sched_point()?;
            let got = self
                .count
                .compare_exchange(0, WRITER, Ordering::Acquire, Ordering::Relaxed);
            match got {
                Ok(_) => {
                    self.writers_waiting.fetch_and(!me, Ordering::Relaxed);
                    self.owners.store(me, Ordering::Relaxed);
                    ctx.record(
                        site!("down_write", "acquire"),
                        self.obj,
                        Access::Rmw,
                        u64::from(WRITER),
                        true,
                    );
                    if waited {
                        ctx.wait_done();
                    }
                    ctx.held.push((self.class, self.obj));
                    return Ok(());
                }
                Err(c) => {
                    // Queueing is a change other CPUs observe (readers now wait): a write.
                    let first = self.writers_waiting.fetch_or(me, Ordering::Relaxed) & me == 0;
                    ctx.record(
                        site!("down_write", "contended"),
                        self.obj,
                        Access::Read,
                        u64::from(c),
                        first,
                    );
                    let owners = self.owners.load(Ordering::Relaxed);
                    ctx.wait_for(self.obj, owners, site!("down_write", "wait"))?;
                    waited = true;
                    ctx.cpu_relax(site!("down_write", "cpu_relax"))?;
                }
            }
        }
    }

    /// `up_write()`.
    pub fn up_write(&self, ctx: &mut Ctx) -> KResult<()> {
        lockdep_release(ctx, self.obj);
        ctx.sched_point()?;
        self.owners.store(0, Ordering::Relaxed);
        self.count.store(0, Ordering::Release);
        ctx.record(
            site!("up_write", "release"),
            self.obj,
            Access::Write,
            0,
            true,
        );
        Ok(())
    }
}
