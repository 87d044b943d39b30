//! mm/huge_memory.c: splitting a THP: an anonymous one mapped by PTEs, or a page-cache one.

use crate::errno::Errno;
use crate::filemap::{filemap_get_entry, AddressSpace, Lookup, OnRetry};
use crate::mm_types::*;
use crate::page_ref::{folio_put, folio_ref_freeze, page_ref_unfreeze};
use crate::rmap::{remove_migration_ptes, try_to_migrate};
use crate::site;
use crate::sync::{Ctx, KResult};
use crate::world::World;
use crate::xarray::{xas_load, xas_split, xas_store, XaEntry};

/// `can_split_folio()`: the racy pre-check that only the mappings and the caller hold references.
pub fn can_split_folio(ctx: &mut Ctx, w: &World, folio: u32, nr: u32) -> KResult<bool> {
    let mut mapcount = 0;
    for i in 0..nr {
        mapcount += w.page(folio + i).mapcount.read_once(
            ctx,
            site!("folio_mapcount", "atomic_read(&page->_mapcount)"),
        )?;
    }
    let refs = w
        .page(folio)
        .refcount
        .read_once(ctx, site!("can_split_folio", "folio_ref_count()"))?;
    Ok(mapcount == refs - 1)
}

/// `split_huge_page_to_list_to_order()` for an anonymous folio (order 0 target). The caller
/// holds the folio lock and one reference on the head, as `split_folio()` requires.
pub fn split_huge_page(ctx: &mut Ctx, w: &World, folio: u32) -> KResult<Result<(), Errno>> {
    let head = w.page(folio);
    let flags = head.flags.read_once(
        ctx,
        site!("split_huge_page_to_list_to_order", "folio_test_large()"),
    )?;
    if flags & PG_HEAD == 0 {
        return Ok(Err(Errno::EINVAL));
    }
    let order = head.order.read_once(
        ctx,
        site!("split_huge_page_to_list_to_order", "folio_order()"),
    )?;
    let nr = 1u32 << order;
    let vpn = head.index.peek();
    let vma =
        w.mm.vmas
            .iter()
            .find(|v| vpn >= v.start && vpn < v.start + v.pages)
            .expect("anon folio index lies in a VMA");
    vma.anon_vma.down_write(ctx)?;
    // Racy pre-check: extra references (a GUP pin) make the split busy before unmapping.
    if !can_split_folio(ctx, w, folio, nr)? {
        vma.anon_vma.up_write(ctx)?;
        return Ok(Err(Errno::EAGAIN));
    }
    // unmap_folio()
    // Its result is not checked: a pinned folio also fails the freeze below.
    try_to_migrate(ctx, w, folio, nr)?;
    ctx.local_irq_disable();
    w.split_queue_lock.lock(ctx)?;
    // The real check: anything beyond the caller's reference (an in-flight gup-fast) fails it.
    if folio_ref_freeze(ctx, w, folio, 1)? {
        w.split_queue_lock.unlock(ctx)?;
        __split_huge_page(ctx, w, folio, nr, None)?;
        ctx.local_irq_enable();
        remap_page(ctx, w, folio, nr, true)?;
        // Unlock and put every subpage except the caller's (the head).
        for i in 1..nr {
            let p = w.page(folio + i);
            p.flags.fetch_andnot_release(
                ctx,
                site!("__split_huge_page", "unlock_page(subpage)"),
                PG_LOCKED,
            )?;
            folio_put(ctx, w, folio + i)?;
        }
        vma.anon_vma.up_write(ctx)?;
        Ok(Ok(()))
    } else {
        w.split_queue_lock.unlock(ctx)?;
        ctx.local_irq_enable();
        remap_page(ctx, w, folio, nr, false)?;
        vma.anon_vma.up_write(ctx)?;
        Ok(Err(Errno::EAGAIN))
    }
}

/// `__split_huge_page()`: split the tails from the last to the first, then the head.
/// While it runs the head stays frozen at zero and each finished tail is already live.
/// A page-cache folio (`mapping`) gives each tail the page cache's reference too and stores
/// it in its own slot (`xa_lock` held).
fn __split_huge_page(
    ctx: &mut Ctx,
    w: &World,
    folio: u32,
    nr: u32,
    mapping: Option<&AddressSpace>,
) -> KResult<()> {
    let extra = i32::from(mapping.is_some());
    for i in (1..nr).rev() {
        __split_huge_page_tail(ctx, w, folio, i, 1 + extra)?;
        if let Some(m) = mapping {
            let index = w.page(folio + i).index.peek();
            xas_store(ctx, &m.i_pages, index, XaEntry::Folio(folio + i))?
                .expect("xas_split() made the node");
        }
    }
    let head = w.page(folio);
    // ClearPageCompound(head)
    let f = head.flags.peek();
    head.flags.write_once(
        ctx,
        site!("__split_huge_page", "ClearPageCompound(head)"),
        f & !PG_HEAD,
    )?;
    head.order.write_once(
        ctx,
        site!("__split_huge_page", "folio_set_order(folio, 0)"),
        0,
    )?;
    // The caller's reference, plus the page cache's for a file folio.
    page_ref_unfreeze(ctx, w, folio, 1 + extra)
}

/// `__split_huge_page_tail()`: make tail `i` a page of its own with `refs` references.
fn __split_huge_page_tail(ctx: &mut Ctx, w: &World, folio: u32, i: u32, refs: i32) -> KResult<()> {
    let head = w.page(folio);
    let tail = w.page(folio + i);
    let hflags = head.flags.peek();
    tail.flags.write_once(
        ctx,
        site!("__split_huge_page_tail", "page_tail->flags |= head flags"),
        hflags & (PG_LOCKED | PG_UPTODATE | PG_ANON),
    )?;
    let hindex = head.index.peek();
    tail.index.write_once(
        ctx,
        site!(
            "__split_huge_page_tail",
            "page_tail->index = head->index + tail"
        ),
        hindex + i,
    )?;
    // Page flags must be visible before the page stops being a tail.
    ctx.smp_wmb(site!(
        "__split_huge_page_tail",
        "smp_wmb() before clear_compound_head"
    ));
    tail.compound_head.write_once(
        ctx,
        site!("__split_huge_page_tail", "clear_compound_head(page_tail)"),
        NO_HEAD,
    )?;
    // Finally unfreeze: the reference __split_huge_page() puts, plus the page cache's.
    page_ref_unfreeze(ctx, w, folio + i, refs)
}

/// `remap_page()`: restore the migration entries, as `nr` order-0 folios after a split
/// (`split == true`) or as the one large folio after a failed freeze.
fn remap_page(ctx: &mut Ctx, w: &World, folio: u32, nr: u32, split: bool) -> KResult<()> {
    if split {
        for i in 0..nr {
            remove_migration_ptes(ctx, w, folio + i, 1)?;
        }
        Ok(())
    } else {
        remove_migration_ptes(ctx, w, folio, nr)
    }
}

/// `folio_trylock()`.
pub fn folio_trylock(ctx: &mut Ctx, w: &World, folio: u32) -> KResult<bool> {
    let old = w.page(folio).flags.fetch_or(
        ctx,
        site!("folio_trylock", "test_and_set_bit_lock(PG_locked)"),
        PG_LOCKED,
    )?;
    Ok(old & PG_LOCKED == 0)
}

/// `folio_unlock()`.
pub fn folio_unlock(ctx: &mut Ctx, w: &World, folio: u32) -> KResult<()> {
    w.page(folio).flags.fetch_andnot_release(
        ctx,
        site!("folio_unlock", "clear_bit_unlock(PG_locked)"),
        PG_LOCKED,
    )?;
    Ok(())
}

/// What the debugfs split of one address did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SplitOutcome {
    /// The THP was split.
    Split,
    /// `split_folio()` failed (extra references): -EAGAIN.
    Busy,
    /// The folio lock was taken by someone else.
    Locked,
    /// The page is not part of a THP.
    NotHuge,
    /// Nothing is mapped there.
    NotMapped,
}

/// `split_huge_pages_pid()` for one address (debugfs `split_huge_pages`): take a reference with
/// `follow_page(FOLL_GET)`, trylock the folio, `split_folio()`, unlock, put.
pub fn split_huge_pages_pid(ctx: &mut Ctx, w: &World, vpn: u32) -> KResult<SplitOutcome> {
    w.mm.mmap_lock.down_read(ctx)?;
    let r = split_one(ctx, w, vpn);
    w.mm.mmap_lock.up_read(ctx)?;
    r
}

fn split_one(ctx: &mut Ctx, w: &World, vpn: u32) -> KResult<SplitOutcome> {
    let Some(page) = crate::gup::follow_page_get(ctx, w, vpn)? else {
        return Ok(SplitOutcome::NotMapped);
    };
    let folio = crate::page_ref::page_folio(
        ctx,
        w,
        page,
        site!("split_huge_pages_pid", "page_folio(page)"),
    )?;
    if !crate::page_ref::folio_test_large(ctx, w, folio)? {
        folio_put(ctx, w, folio)?;
        return Ok(SplitOutcome::NotHuge);
    }
    if w.page(folio).flags.peek() & PG_ANON == 0 {
        // A shmem THP mapped by PTEs: the model splits page-cache folios only through the
        // file (split_file), so this split reports the folio busy.
        folio_put(ctx, w, folio)?;
        return Ok(SplitOutcome::Busy);
    }
    split_locked(ctx, w, folio, split_huge_page)
}

/// `split_huge_page()` of a page-cache folio (the caller holds its lock and one reference):
/// freeze the page cache's references with the caller's, split the multi-order entry into a
/// node, give each tail its own slot, unfreeze.
pub fn split_file_folio(
    ctx: &mut Ctx,
    w: &World,
    m: &AddressSpace,
    folio: u32,
) -> KResult<Result<(), Errno>> {
    let head = w.page(folio);
    let order = head.order.read_once(
        ctx,
        site!("split_huge_page_to_list_to_order", "folio_order()"),
    )?;
    let nr = 1u32 << order;
    let index = head.index.peek();
    let range = index >> w.cfg.order;
    // can_split_folio(): the page cache's references and the caller's, nothing else.
    let refs = head
        .refcount
        .read_once(ctx, site!("can_split_folio", "folio_ref_count()"))?;
    if refs != nr as i32 + 1 {
        return Ok(Err(Errno::EAGAIN));
    }
    ctx.local_irq_disable();
    m.i_pages.xa_lock.lock(ctx)?;
    // The folio may have been removed from the page cache meanwhile.
    let (e, _) = xas_load(ctx, &m.i_pages, index)?;
    if e != XaEntry::Folio(folio) {
        m.i_pages.xa_lock.unlock(ctx)?;
        ctx.local_irq_enable();
        return Ok(Err(Errno::EBUSY));
    }
    w.split_queue_lock.lock(ctx)?;
    if !folio_ref_freeze(ctx, w, folio, nr as i32 + 1)? {
        w.split_queue_lock.unlock(ctx)?;
        m.i_pages.xa_lock.unlock(ctx)?;
        ctx.local_irq_enable();
        return Ok(Err(Errno::EAGAIN));
    }
    w.split_queue_lock.unlock(ctx)?;
    // xas_split(): only a multi-order entry needs a node; one made by slot stores has it.
    let root = XaEntry::decode(m.i_pages.root[range as usize].peek());
    if matches!(root, XaEntry::Folio(_)) {
        if let Err(e) = xas_split(ctx, &m.i_pages, range)? {
            page_ref_unfreeze(ctx, w, folio, nr as i32 + 1)?;
            m.i_pages.xa_lock.unlock(ctx)?;
            ctx.local_irq_enable();
            return Ok(Err(e));
        }
    }
    __split_huge_page(ctx, w, folio, nr, Some(m))?;
    m.i_pages.xa_lock.unlock(ctx)?;
    ctx.local_irq_enable();
    // Unlock and put every subpage except the caller's (the head).
    for i in 1..nr {
        w.page(folio + i).flags.fetch_andnot_release(
            ctx,
            site!("__split_huge_page", "unlock_page(subpage)"),
            PG_LOCKED,
        )?;
        folio_put(ctx, w, folio + i)?;
    }
    Ok(Ok(()))
}

/// `split_huge_pages_in_file()` for one index (debugfs `split_huge_pages` with a file path):
/// look the folio up, trylock, split, unlock, put.
pub fn split_huge_pages_in_file(
    ctx: &mut Ctx,
    w: &World,
    m: &AddressSpace,
    index: u32,
) -> KResult<SplitOutcome> {
    let folio = match filemap_get_entry(ctx, w, m, index, OnRetry::Spin)? {
        Lookup::Folio(f) => f,
        _ => return Ok(SplitOutcome::NotMapped),
    };
    if !crate::page_ref::folio_test_large(ctx, w, folio)? {
        folio_put(ctx, w, folio)?;
        return Ok(SplitOutcome::NotHuge);
    }
    // A page-cache folio: no PG_ANON check here (that is split_huge_pages_pid's, for shmem
    // folios it reaches through a mapping).
    split_locked(ctx, w, folio, |ctx, w, folio| {
        split_file_folio(ctx, w, m, folio)
    })
}

/// The debugfs splitter's common part, on a referenced large folio: trylock, split, unlock, put.
fn split_locked(
    ctx: &mut Ctx,
    w: &World,
    folio: u32,
    split: impl FnOnce(&mut Ctx, &World, u32) -> KResult<Result<(), Errno>>,
) -> KResult<SplitOutcome> {
    if !folio_trylock(ctx, w, folio)? {
        folio_put(ctx, w, folio)?;
        return Ok(SplitOutcome::Locked);
    }
    let r = split(ctx, w, folio)?;
    folio_unlock(ctx, w, folio)?;
    folio_put(ctx, w, folio)?;
    Ok(match r {
        Ok(()) => SplitOutcome::Split,
        Err(_) => SplitOutcome::Busy,
    })
}
