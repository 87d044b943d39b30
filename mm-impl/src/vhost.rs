//! drivers/vhost/vhost.c as the 2019 RFC had it ("vhost: access vq metadata through kernel
//! virtual address"): vhost maps user pages into the kernel with `vmap()` and keeps the alias
//! valid through an mmu notifier. The fixed protocol is Jerome Glisse's proposal in seed 004:
//! no GUP reference, an alias writable only if the user PTE was writable, and dirtying plus
//! teardown inside the invalidate callback. `vmap-dirty-after-notifier` restores the RFC: a
//! GUP reference, and `set_page_dirty_lock()` at unmap, after the notifier and possibly after
//! writeback cleaned the page and released its buffers.

use crate::bugs::Bug;
use crate::errno::Errno;
use crate::memory::handle_mm_fault;
use crate::mm_types::*;
use crate::mmu_notifier::{
    mmu_interval_read_begin, mmu_interval_read_retry, mmu_notifier_register, MmuNotifierRange,
    Subscriber,
};
use crate::page_ref::folio_put;
use crate::site;
use crate::sync::{Ctx, KResult, LockClass, SpinLock};
use crate::violation::Kind;
use crate::world::World;
use crate::writeback::{folio_mark_dirty, set_page_dirty_lock};

/// One `vmap()` alias of a user page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VhostMap {
    /// The user virtual page it aliases.
    pub vpn: u32,
    /// The page.
    pub page: u32,
    /// May vhost write through it?
    pub writable: bool,
    /// Has vhost written through it since it was set up?
    pub written: bool,
    /// Torn down by an invalidation: vhost must not use it.
    pub valid: bool,
    /// It holds a GUP reference (the RFC); the fixed protocol holds none.
    pub gup_ref: bool,
}

/// The vhost device: its aliases under `vq->mmu_lock`.
#[derive(Debug)]
pub struct Vhost {
    /// `mmu_lock` and the aliases, by id (never reused within an execution).
    pub maps: SpinLock<Vec<Option<VhostMap>>>,
}

impl Vhost {
    /// A device with no alias.
    pub fn new() -> Vhost {
        Vhost {
            maps: SpinLock::new(LOCK_VHOST, LockClass::Iommu, Vec::new()),
        }
    }

    /// Checker view: the live aliases.
    pub fn peek(&self) -> Vec<VhostMap> {
        self.maps
            .data_unlocked()
            .iter()
            .flatten()
            .copied()
            .collect()
    }
}

impl Default for Vhost {
    fn default() -> Self {
        Vhost::new()
    }
}

/// What a write through an alias did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VhostWrite {
    /// Stored.
    Done,
    /// The alias was invalidated (vhost falls back to `copy_to_user()`).
    Invalidated,
    /// The alias is read-only.
    ReadOnly,
    /// No such alias.
    NoMap,
}

/// `vhost_setup_vq_map()` for the user page at `vpn` of VMA `kind`: the alias id, or the
/// fault's error.
pub fn vhost_setup_vq_map(
    ctx: &mut Ctx,
    w: &World,
    kind: VmaKind,
    vpn: u32,
) -> KResult<Result<u32, Errno>> {
    // VHOST_SET_VRING_ADDR binds the device's notifier to the mm the first time.
    let bound =
        w.mm.notifier
            .registered
            .read_once(ctx, site!("vhost_setup_vq_map", "mmu_notifier registered?"))?;
    if bound & (1 << Subscriber::Vhost as u32) == 0 {
        mmu_notifier_register(ctx, w, Subscriber::Vhost)?;
    }
    if w.cfg.bugs.has(Bug::VmapDirtyAfterNotifier) {
        // The RFC: get_user_pages_fast(FOLL_WRITE), vmap the page writable.
        let page = match crate::gup::gup_fast(ctx, w, vpn, true, crate::gup::Foll::Get)? {
            Some(p) => p,
            None => {
                match crate::gup::get_user_pages(ctx, w, kind, vpn, true, crate::gup::Foll::Get)? {
                    Ok(p) => p,
                    Err(e) => return Ok(Err(e)),
                }
            }
        };
        return Ok(Ok(install(ctx, w, vpn, page, true, true)?));
    }
    loop {
        // The secondary-MMU fault protocol: look the PTE up, then install only if no
        // invalidation began meanwhile.
        let seq = mmu_interval_read_begin(ctx, w)?;
        let pte = match w.pte_slot_of(vpn) {
            Some(slot) => {
                slot.read_once(ctx, site!("vhost_setup_vq_map", "ptep_get_lockless()"))?
            }
            None => 0,
        };
        if !pte_present(pte) || (!pte_write(pte) && w.vma(kind).writable()) {
            // Not mapped, or mapped read-only where a write is allowed: fault it in for write
            // (page_mkwrite for a file page), then look again.
            w.mm.mmap_lock.down_read(ctx)?;
            let r = handle_mm_fault(ctx, w, kind, vpn, w.vma(kind).writable())?;
            w.mm.mmap_lock.up_read(ctx)?;
            if let Err(e) = r {
                return Ok(Err(e));
            }
            continue;
        }
        let vh = &w.vhost.maps;
        vh.lock(ctx)?;
        if mmu_interval_read_retry(ctx, w, seq)? {
            vh.unlock(ctx)?;
            continue;
        }
        let id = push(ctx, w, vpn, pte_pfn(pte), pte_write(pte), false);
        vh.unlock(ctx)?;
        return Ok(Ok(id));
    }
}

fn push(ctx: &Ctx, w: &World, vpn: u32, page: u32, writable: bool, gup_ref: bool) -> u32 {
    let mut maps = w.vhost.maps.data(ctx);
    maps.push(Some(VhostMap {
        vpn,
        page,
        writable,
        written: false,
        valid: true,
        gup_ref,
    }));
    maps.len() as u32 - 1
}

fn install(
    ctx: &mut Ctx,
    w: &World,
    vpn: u32,
    page: u32,
    writable: bool,
    gup_ref: bool,
) -> KResult<u32> {
    let vh = &w.vhost.maps;
    vh.lock(ctx)?;
    let id = push(ctx, w, vpn, page, writable, gup_ref);
    vh.unlock(ctx)?;
    Ok(id)
}

/// A vhost store of `val` through alias `id` (the used ring's index, say), under `mmu_lock`.
pub fn vhost_put_used(ctx: &mut Ctx, w: &World, id: u32, val: u64) -> KResult<VhostWrite> {
    let vh = &w.vhost.maps;
    vh.lock(ctx)?;
    let m = w.vhost.maps.data(ctx).get(id as usize).copied().flatten();
    let r = match m {
        None => VhostWrite::NoMap,
        Some(m) if !m.valid => VhostWrite::Invalidated,
        Some(m) if !m.writable => VhostWrite::ReadOnly,
        Some(m) => {
            let p = w.page(m.page);
            if p.is_free() {
                let pfn = m.page;
                vh.unlock(ctx)?;
                return Err(ctx.violation(
                    Kind::UseAfterFree,
                    "vhost_put_used",
                    Some(pfn),
                    format!("vhost wrote through its vmap alias to freed pfn {pfn}"),
                ));
            }
            p.data.store_plain(
                ctx,
                site!("vhost_put_used", "store through the vmap alias"),
                val,
            );
            if let Some(Some(m)) = w.vhost.maps.data(ctx).get_mut(id as usize) {
                m.written = true;
            }
            VhostWrite::Done
        }
    };
    vh.unlock(ctx)?;
    Ok(r)
}

/// The vhost mmu notifier's `invalidate_range_start`: aliases of the range stop being used.
/// Fixed: a written page is dirtied here (`set_page_dirty()`, not `_lock`: the callback has the
/// rights a zap has, and the page is still mapped writable), and the alias is torn down. The
/// RFC only marks it invalid and leaves the dirtying to the unmap.
pub fn vhost_mn_invalidate_range_start(
    ctx: &mut Ctx,
    w: &World,
    range: &MmuNotifierRange,
) -> KResult<()> {
    let vh = &w.vhost.maps;
    vh.lock(ctx)?;
    let hit: Vec<(usize, VhostMap)> = w
        .vhost
        .maps
        .data(ctx)
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            m.filter(|m| m.valid && range.contains(m.vpn))
                .map(|m| (i, m))
        })
        .collect();
    let deferred = w.cfg.bugs.has(Bug::VmapDirtyAfterNotifier);
    for (i, m) in hit {
        if m.written && !deferred {
            folio_mark_dirty(ctx, w, w.page(m.page).folio_peek())?;
        }
        if let Some(Some(slot)) = w.vhost.maps.data(ctx).get_mut(i) {
            slot.valid = false;
            if !deferred {
                slot.written = false;
            }
        }
    }
    vh.unlock(ctx)
}

/// `vhost_uninit_vq_maps()` for alias `id`: tear it down. Fixed: a written page whose alias is
/// still valid is dirtied under `mmu_lock`, where no invalidation can be between its
/// `invalidate_range_start` and the PTE write-protect, so the page is still mapped writable and
/// has its buffers. The RFC dirties with `set_page_dirty_lock()` after dropping `mmu_lock`,
/// whatever the notifier and writeback did meanwhile, and drops its GUP reference.
pub fn vhost_uninit_vq_map(ctx: &mut Ctx, w: &World, id: u32) -> KResult<bool> {
    let rfc = w.cfg.bugs.has(Bug::VmapDirtyAfterNotifier);
    let vh = &w.vhost.maps;
    vh.lock(ctx)?;
    let m = w
        .vhost
        .maps
        .data(ctx)
        .get_mut(id as usize)
        .and_then(Option::take);
    if let Some(m) = m {
        if !rfc && m.valid && m.written {
            folio_mark_dirty(ctx, w, w.page(m.page).folio_peek())?;
        }
    }
    vh.unlock(ctx)?;
    let Some(m) = m else { return Ok(false) };
    if rfc && m.written {
        set_page_dirty_lock(ctx, w, m.page)?;
    }
    if m.gup_ref {
        folio_put(ctx, w, w.page(m.page).folio_peek())?;
    }
    Ok(true)
}
