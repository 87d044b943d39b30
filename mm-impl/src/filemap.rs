//! mm/filemap.c: the page cache of a file: lockless lookups with the speculative reference,
//! insertion and removal under `xa_lock`, and the lock-skipping SEEK_DATA walk.

use crate::errno::Errno;
use crate::mm_types::*;
use crate::page_ref::{folio_put, folio_put_refs, folio_ref_add, folio_ref_try_add};
use crate::site;
use crate::sync::{Ctx, KResult, LockClass, RwSem};
use crate::violation::Kind;
use crate::world::World;
use crate::xarray::{xas_load, xas_reload, xas_store, XArray, XaEntry, XaSlot};
use std::sync::atomic::Ordering;

/// `struct address_space` of one file.
#[derive(Debug)]
pub struct AddressSpace {
    /// `mapping->i_pages`.
    pub i_pages: XArray,
    /// Size of the file in pages (a whole number of huge-page ranges).
    pub nr_pages: u32,
    /// `mapping->i_mmap_rwsem`.
    pub i_mmap: RwSem,
}

impl AddressSpace {
    /// An empty mapping of `nr_pages` pages.
    pub fn new(order: u8, nr_pages: u32, lock_id: u32, i_mmap_id: u32) -> AddressSpace {
        AddressSpace {
            i_pages: XArray::new(order, nr_pages >> order, lock_id),
            nr_pages,
            i_mmap: RwSem::new(i_mmap_id, LockClass::IMmap),
        }
    }
}

/// What a lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// Nothing cached.
    None,
    /// A value entry (a shadow or swap entry).
    Value,
    /// A folio, with a reference taken for the caller.
    Folio(u32),
    /// An NMI-safe lookup met something that only another walk could resolve (a RETRY entry,
    /// a frozen folio, a slot that changed under it) and gave up.
    Busy,
}

/// How a lookup reacts to a RETRY entry or a folio it cannot reference yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnRetry {
    /// `filemap_get_entry()`'s loop: walk again until it settles.
    Spin,
    /// Give up at once: what a lookup from NMI context must do.
    Fail,
}

/// `filemap_get_entry()`: find the entry at `index` and take a speculative reference on a
/// folio (`folio_try_get()`), then recheck the slot (`xas_reload()`): a folio that was freed,
/// frozen or replaced in between is put back and the walk starts again.
pub fn filemap_get_entry(
    ctx: &mut Ctx,
    w: &World,
    m: &AddressSpace,
    index: u32,
    on_retry: OnRetry,
) -> KResult<Lookup> {
    loop {
        let (e, slot) = xas_load(ctx, &m.i_pages, index)?;
        let folio = match e {
            XaEntry::Empty => return Ok(Lookup::None),
            XaEntry::Value(_) => return Ok(Lookup::Value),
            XaEntry::Node(_) => unreachable!("the tree is two levels deep"),
            XaEntry::Retry => {
                // xas_retry(): walk again from the root.
                if on_retry == OnRetry::Fail {
                    return Ok(Lookup::Busy);
                }
                // A RETRY entry in a node that is still linked (a slot reserved by a collapse)
                // is a wait on its owner; one in a node that was unlinked meanwhile is not: the
                // next walk from the root sees the new entry, so the spin detector must not
                // count it as a spin (a modelling decision, hence the plain look at the root).
                let linked = match slot {
                    XaSlot::Node(n, _) => {
                        m.i_pages.root[(index >> w.cfg.order) as usize].peek()
                            == XaEntry::Node(n).encode()
                    }
                    XaSlot::Root(_) => true,
                };
                if linked {
                    ctx.cpu_relax(site!("filemap_get_entry", "xas_retry(): goto repeat"))?;
                }
                continue;
            }
            XaEntry::Folio(f) => f,
        };
        if !folio_ref_try_add(ctx, w, folio, 1)? {
            if on_retry == OnRetry::Fail {
                return Ok(Lookup::Busy);
            }
            nmi_livelock_check(ctx, w, folio)?;
            // goto repeat. A folio frozen in its slot is a wait on whoever froze it; one that
            // was freed and replaced meanwhile is not: the next walk sees the new entry, so the
            // spin detector must not count it as a spin (a modelling decision, not a kernel
            // read, hence the plain look at the slot).
            if m.i_pages.slot(slot).peek() == XaEntry::Folio(folio).encode() {
                ctx.cpu_relax(site!(
                    "filemap_get_entry",
                    "!folio_try_get(folio): goto repeat"
                ))?;
            }
            continue;
        }
        if xas_reload(ctx, &m.i_pages, slot)? != XaEntry::Folio(folio) {
            folio_put(ctx, w, folio)?;
            if on_retry == OnRetry::Fail {
                return Ok(Lookup::Busy);
            }
            // goto repeat: the slot changed under us, so the next walk sees something new (no
            // cpu_relax(): this is not a wait, and the spin detector must not take it for one).
            continue;
        }
        return Ok(Lookup::Folio(folio));
    }
}

/// An NMI that waits for a folio frozen by the very code it interrupted can never see it
/// unfrozen: that code does not run again until the NMI returns.
fn nmi_livelock_check(ctx: &mut Ctx, w: &World, folio: u32) -> KResult<()> {
    let holder = w.page(folio).frozen_by.load(Ordering::Relaxed);
    if ctx.in_nmi() && holder == u32::from(ctx.tid()) {
        return Err(ctx.violation(
            Kind::NmiLivelock,
            "filemap_get_entry",
            Some(folio),
            format!(
                "NMI on cpu{} retries on folio {folio}, frozen by the code it interrupted on the same CPU",
                ctx.tid()
            ),
        ));
    }
    Ok(())
}

/// `folio_file_page()`: the page of `folio` that caches `index`.
pub fn folio_file_page(w: &World, folio: u32, index: u32) -> u32 {
    let order = w.page(folio).order.peek();
    folio + (index & ((1 << order) - 1))
}

/// `find_get_page()`: the page caching `index`, with a reference on its folio; uptodate or not
/// (checking that is the caller's job).
pub fn find_get_page(
    ctx: &mut Ctx,
    w: &World,
    m: &AddressSpace,
    index: u32,
    on_retry: OnRetry,
) -> KResult<Option<(u32, u32)>> {
    Ok(match filemap_get_entry(ctx, w, m, index, on_retry)? {
        Lookup::Folio(f) => Some((f, folio_file_page(w, f, index))),
        _ => None,
    })
}

/// `folio_test_uptodate()` (acquire: the contents are valid once the flag is seen).
pub fn folio_test_uptodate(ctx: &mut Ctx, w: &World, folio: u32) -> KResult<bool> {
    Ok(w.page(folio).flags.load_acquire(
        ctx,
        site!(
            "folio_test_uptodate",
            "smp_load_acquire(folio->flags) & PG_uptodate"
        ),
    )? & PG_UPTODATE
        != 0)
}

/// `folio_mark_uptodate()`: the contents are written; publish them (release).
pub fn folio_mark_uptodate(ctx: &mut Ctx, w: &World, folio: u32) -> KResult<()> {
    ctx.smp_wmb(site!("folio_mark_uptodate", "smp_wmb() before PG_uptodate"));
    w.page(folio).flags.fetch_or(
        ctx,
        site!("folio_mark_uptodate", "set_bit(PG_uptodate)"),
        PG_UPTODATE,
    )?;
    Ok(())
}

/// `__filemap_add_folio()`: insert a locked, private folio at `index` with the page cache's
/// reference. EEXIST if another folio got there first.
pub fn filemap_add_folio(
    ctx: &mut Ctx,
    w: &World,
    m: &AddressSpace,
    folio: u32,
    index: u32,
) -> KResult<Result<(), Errno>> {
    w.page(folio).index.store_plain(
        ctx,
        site!("__filemap_add_folio", "folio->index = index"),
        index,
    );
    folio_ref_add(ctx, w, folio, 1)?;
    m.i_pages.xa_lock.lock(ctx)?;
    let (old, _) = xas_load(ctx, &m.i_pages, index)?;
    let r = match old {
        XaEntry::Empty | XaEntry::Value(_) => {
            xas_store(ctx, &m.i_pages, index, XaEntry::Folio(folio))?
        }
        _ => Err(Errno::EEXIST),
    };
    m.i_pages.xa_lock.unlock(ctx)?;
    if r.is_err() {
        folio_put(ctx, w, folio)?;
    }
    Ok(r)
}

/// `__filemap_remove_folio()` without a shadow, as invalidation removes it (`xa_lock` held):
/// every slot naming the folio becomes empty.
pub fn __filemap_remove_folio(
    ctx: &mut Ctx,
    w: &World,
    m: &AddressSpace,
    folio: u32,
) -> KResult<()> {
    let xa = &m.i_pages;
    let index = w.page(folio).index.peek();
    let r = index >> w.cfg.order;
    let shadow = XaEntry::Empty.encode();
    match XaEntry::decode(xa.root[r as usize].peek()) {
        XaEntry::Node(n) => {
            for i in 0..xa.per_node() {
                let s = xa.slot(XaSlot::Node(n, i));
                if XaEntry::decode(s.peek()) == XaEntry::Folio(folio) {
                    s.write_once(
                        ctx,
                        site!("page_cache_delete", "xas_store(&xas, NULL)"),
                        shadow,
                    )?;
                }
            }
        }
        _ => {
            xa.root[r as usize].write_once(
                ctx,
                site!("page_cache_delete", "xas_store(&xas, NULL) (multi-order)"),
                shadow,
            )?;
        }
    }
    Ok(())
}

/// `mapping_seek_hole_data()` from page `start`, as shmem uses it: for SEEK_DATA the first page
/// at or after `start` that holds data, for SEEK_HOLE the first that does not (the end of the
/// file counts as a hole). An uptodate folio or a value entry is data; a folio that is not
/// uptodate reads as a hole (`folio_seek_hole_data()` without `is_partially_uptodate`), and
/// the walk takes no folio lock.
pub fn mapping_seek_hole_data(
    ctx: &mut Ctx,
    w: &World,
    m: &AddressSpace,
    start: u32,
    seek_data: bool,
) -> KResult<Result<u32, Errno>> {
    let mut index = start;
    while index < m.nr_pages {
        match filemap_get_entry(ctx, w, m, index, OnRetry::Spin)? {
            Lookup::None | Lookup::Busy if !seek_data => return Ok(Ok(index)),
            Lookup::None | Lookup::Busy => index += 1,
            Lookup::Value if seek_data => return Ok(Ok(index)),
            Lookup::Value => index += 1,
            Lookup::Folio(f) => {
                let order = w
                    .page(f)
                    .order
                    .read_once(ctx, site!("seek_folio_size", "folio_size(folio)"))?;
                let uptodate = folio_test_uptodate(ctx, w, f)?;
                folio_put(ctx, w, f)?;
                if uptodate == seek_data {
                    return Ok(Ok(index));
                }
                let size = 1u32 << order;
                index = (index + 1).div_ceil(size) * size;
            }
        }
    }
    if seek_data {
        Ok(Err(Errno::ENXIO))
    } else {
        Ok(Ok(m.nr_pages))
    }
}

/// `filemap_get_incore_folio()`: the folio caching `index`, if any (shadows are not resident).
pub fn filemap_get_incore_folio(
    ctx: &mut Ctx,
    w: &World,
    m: &AddressSpace,
    index: u32,
) -> KResult<Option<u32>> {
    Ok(match filemap_get_entry(ctx, w, m, index, OnRetry::Spin)? {
        Lookup::Folio(f) => Some(f),
        _ => None,
    })
}

/// `truncate_inode_pages_final()` at teardown (one CPU, nothing else runs): drop every entry
/// and the page cache's references.
pub fn truncate_inode_pages_final(ctx: &mut Ctx, w: &World, m: &AddressSpace) -> KResult<()> {
    let xa = &m.i_pages;
    for r in 0..xa.root.len() as u32 {
        match XaEntry::decode(xa.root[r as usize].peek()) {
            XaEntry::Node(n) => {
                for i in 0..xa.per_node() {
                    let s = xa.slot(XaSlot::Node(n, i));
                    let e = XaEntry::decode(s.peek());
                    s.set_plain(0);
                    if let XaEntry::Folio(f) = e {
                        folio_put_refs(ctx, w, f, 1)?;
                    }
                }
            }
            XaEntry::Folio(f) => {
                let nr = 1 << w.page(f).order.peek();
                folio_put_refs(ctx, w, f, nr)?;
            }
            _ => {}
        }
        xa.root[r as usize].set_plain(0);
    }
    Ok(())
}

/// Checker view: references the page cache holds on each folio (one per slot naming it, the
/// whole folio's pages for a multi-order entry).
pub fn page_cache_refs(w: &World, m: &AddressSpace) -> Vec<(u32, i64)> {
    let xa = &m.i_pages;
    let mut out = Vec::new();
    for r in 0..xa.root.len() as u32 {
        match XaEntry::decode(xa.root[r as usize].peek()) {
            XaEntry::Node(n) => {
                for i in 0..xa.per_node() {
                    if let XaEntry::Folio(f) = XaEntry::decode(xa.slot(XaSlot::Node(n, i)).peek()) {
                        out.push((f, 1));
                    }
                }
            }
            XaEntry::Folio(f) => out.push((f, 1i64 << w.page(f).order.peek())),
            _ => {}
        }
    }
    out
}
