//! mm/mmu_notifier.c: invalidation of secondary MMUs (devices that translate user addresses on
//! their own), paired `invalidate_range_start`/`_end` calls, and the invalidation sequence a
//! secondary MMU's fault path checks (`mmu_interval_read_begin`/`_retry`).
//!
//! The contract (mm-brief section 8): `start` runs while the pages are still mapped and every
//! subscriber drops its translations of the range before it returns; no subscriber establishes
//! a translation of the range between `start` and `end` (the sequence is odd meanwhile); after
//! `end` the pages and page tables may be freed.
//!
//! Subscribers are a fixed list of kinds ([`Subscriber`]) registered into a bit mask: adding a
//! secondary MMU is a new variant plus one arm in each dispatch.

use crate::mm_types::*;
use crate::site;
use crate::sync::{Ctx, KAtomicU32, KAtomicU64, KResult, LockClass, Obj, SpinLock};
use crate::world::World;

/// Why a range is invalidated (`enum mmu_notifier_event`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MmuNotifyEvent {
    /// `MMU_NOTIFY_UNMAP`: the pages are unmapped (zap, munmap).
    Unmap,
    /// `MMU_NOTIFY_CLEAR`: page-table entries are cleared (collapse, retract, migration).
    Clear,
}

/// `struct mmu_notifier_range`: virtual pages `[start, end)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MmuNotifierRange {
    /// First virtual page.
    pub start: u32,
    /// One past the last virtual page.
    pub end: u32,
    /// Why.
    pub event: MmuNotifyEvent,
}

impl MmuNotifierRange {
    /// `mmu_notifier_range_init()`.
    pub fn new(event: MmuNotifyEvent, start: u32, end: u32) -> MmuNotifierRange {
        MmuNotifierRange { start, end, event }
    }

    /// Does the range cover virtual page `vpn`?
    pub fn contains(&self, vpn: u32) -> bool {
        (self.start..self.end).contains(&vpn)
    }
}

/// The secondary MMUs that can subscribe to the mm's invalidations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Subscriber {
    /// An IOMMU sharing the CPU page tables (SVA): walks them itself and caches what it read.
    Iommu,
    /// vhost's `vmap()` aliases of user pages (the used/avail rings).
    Vhost,
}

impl Subscriber {
    /// Every kind, in dispatch order.
    pub const ALL: [Subscriber; 2] = [Subscriber::Iommu, Subscriber::Vhost];

    fn bit(self) -> u32 {
        1 << self as u32
    }
}

/// `struct mmu_notifier_subscriptions` of the mm.
#[derive(Debug)]
pub struct MmuNotifierSubscriptions {
    /// Registered subscribers (bit per [`Subscriber`]); 0 is `mm->notifier_subscriptions ==
    /// NULL`. Written only under `mm_take_all_locks()`, so holders of any of those locks may
    /// read it plainly, as `mm_has_notifiers()` does.
    pub registered: KAtomicU32,
    /// `subscriptions->lock`; its data is `active_invalidate_ranges`.
    pub lock: SpinLock<u32>,
    /// `subscriptions->invalidate_seq`: odd while an invalidation is in progress.
    pub invalidate_seq: KAtomicU64,
}

impl MmuNotifierSubscriptions {
    /// No subscriber yet.
    pub fn new() -> MmuNotifierSubscriptions {
        MmuNotifierSubscriptions {
            registered: KAtomicU32::new(0, Obj::other(2)),
            lock: SpinLock::new(LOCK_MMU_NOTIFIER, LockClass::MmuNotifier, 0),
            invalidate_seq: KAtomicU64::new(0, Obj::other(3)),
        }
    }
}

impl Default for MmuNotifierSubscriptions {
    fn default() -> Self {
        MmuNotifierSubscriptions::new()
    }
}

/// `mm_has_notifiers()`: a plain read; the callers hold a lock `mm_take_all_locks()` takes.
pub fn mm_has_notifiers(w: &World) -> bool {
    w.mm.notifier.registered.peek() != 0
}

/// `mmu_notifier_register()` of `sub`: under `mmap_lock` for write and `mm_take_all_locks()`,
/// so no invalidation is between its `mm_has_notifiers()` check and its `end`. The model's
/// invalidations all hold `mmap_lock` or a mapped file's `i_mmap_rwsem` (the shmem file's for
/// retract, the data file's for writeback's mkclean): those are the locks taken here.
pub fn mmu_notifier_register(ctx: &mut Ctx, w: &World, sub: Subscriber) -> KResult<()> {
    w.mm.mmap_lock.down_write(ctx)?;
    w.shmem.i_mmap.down_write(ctx)?;
    w.data.i_mmap.down_write(ctx)?;
    let n = &w.mm.notifier;
    let old = n.registered.read_once(
        ctx,
        site!(
            "mmu_notifier_register",
            "READ_ONCE(mm->notifier_subscriptions)"
        ),
    )?;
    if old & sub.bit() == 0 {
        n.registered.write_once(
            ctx,
            site!("mmu_notifier_register", "hlist_add_head_rcu(subscription)"),
            old | sub.bit(),
        )?;
    }
    w.data.i_mmap.up_write(ctx)?;
    w.shmem.i_mmap.up_write(ctx)?;
    w.mm.mmap_lock.up_write(ctx)
}

/// `mmu_notifier_invalidate_range_start()`: mark the invalidation in progress (odd sequence),
/// then every subscriber drops its translations of the range.
pub fn mmu_notifier_invalidate_range_start(
    ctx: &mut Ctx,
    w: &World,
    range: &MmuNotifierRange,
) -> KResult<()> {
    if !mm_has_notifiers(w) {
        return Ok(());
    }
    let n = &w.mm.notifier;
    // mn_itree_invalidate(): the first active range makes the sequence odd.
    n.lock.lock(ctx)?;
    let first = {
        let mut active = n.lock.data(ctx);
        *active += 1;
        *active == 1
    };
    if first {
        let seq = n.invalidate_seq.read_once(
            ctx,
            site!("mn_itree_invalidate", "subscriptions->invalidate_seq"),
        )?;
        n.invalidate_seq.write_once(
            ctx,
            site!("mn_itree_invalidate", "invalidate_seq |= 1 (in progress)"),
            seq | 1,
        )?;
    }
    n.lock.unlock(ctx)?;
    for sub in registered(w) {
        match sub {
            Subscriber::Iommu => crate::iommu::iommu_mn_invalidate_range_start(ctx, w, range)?,
            Subscriber::Vhost => crate::vhost::vhost_mn_invalidate_range_start(ctx, w, range)?,
        }
    }
    Ok(())
}

/// `mmu_notifier_invalidate_range_end()`: subscribers' `end` callbacks, then the last active
/// range makes the sequence even again (a new value: faults that began before must retry).
pub fn mmu_notifier_invalidate_range_end(
    ctx: &mut Ctx,
    w: &World,
    range: &MmuNotifierRange,
) -> KResult<()> {
    if !mm_has_notifiers(w) {
        return Ok(());
    }
    for sub in registered(w) {
        match sub {
            Subscriber::Iommu => crate::iommu::iommu_mn_invalidate_range_end(ctx, w, range)?,
            // Torn down at start: nothing to do at the end.
            Subscriber::Vhost => {}
        }
    }
    let n = &w.mm.notifier;
    n.lock.lock(ctx)?;
    let last = {
        let mut active = n.lock.data(ctx);
        *active -= 1;
        *active == 0
    };
    if last {
        let seq = n.invalidate_seq.read_once(
            ctx,
            site!("mn_itree_inv_end", "subscriptions->invalidate_seq"),
        )?;
        n.invalidate_seq.write_once(
            ctx,
            site!("mn_itree_inv_end", "invalidate_seq++ (done)"),
            seq + 1,
        )?;
    }
    n.lock.unlock(ctx)
}

/// `mmu_interval_read_begin()`: a sequence to check after looking up a translation; waits
/// while an invalidation is in progress.
pub fn mmu_interval_read_begin(ctx: &mut Ctx, w: &World) -> KResult<u64> {
    loop {
        let seq = w.mm.notifier.invalidate_seq.load_acquire(
            ctx,
            site!("mmu_interval_read_begin", "READ_ONCE(invalidate_seq)"),
        )?;
        if seq & 1 == 0 {
            return Ok(seq);
        }
        // wait_event(subscriptions->wq, invalidate_seq != seq)
        ctx.cpu_relax(site!(
            "mmu_interval_read_begin",
            "wait for the invalidation to end"
        ))?;
    }
}

/// `mmu_interval_read_retry()`: did an invalidation start since `seq`? The caller holds the
/// lock its invalidate callback takes, so the answer stays true until it installs.
pub fn mmu_interval_read_retry(ctx: &mut Ctx, w: &World, seq: u64) -> KResult<bool> {
    Ok(w.mm.notifier.invalidate_seq.read_once(
        ctx,
        site!(
            "mmu_interval_read_retry",
            "READ_ONCE(invalidate_seq) != seq"
        ),
    )? != seq)
}

fn registered(w: &World) -> impl Iterator<Item = Subscriber> {
    let mask = w.mm.notifier.registered.peek();
    Subscriber::ALL
        .into_iter()
        .filter(move |s| mask & s.bit() != 0)
}
