//! arch/x86/mm/pat/set_memory.c: the kernel's direct map of physical memory, in large blocks
//! (one huge page each) that a change of one page's presence must split, and the split
//! allocates a page-table page that can fail.

use crate::errno::Errno;
use crate::page_alloc::{alloc_pages, free_folio};
use crate::site;
use crate::sync::{Ctx, KResult, Obj};
use crate::world::World;

/// The direct map's state, under `cpa_lock`.
#[derive(Debug)]
pub struct DirectMap {
    /// log2 of the pages per large block.
    order: u8,
    /// Per block: the page-table page a split installed; `None` while one large entry maps it.
    table: Vec<Option<u32>>,
    /// Per page: present. For a block that is still large, all its pages agree (the large
    /// entry's presence).
    // invariant: for every large block, present[] is constant over the block
    present: Vec<bool>,
}

impl DirectMap {
    /// Every block large and present, as at boot.
    pub fn new(nr_pages: u32, order: u8) -> DirectMap {
        DirectMap {
            order,
            table: vec![None; (nr_pages >> order) as usize],
            present: vec![true; nr_pages as usize],
        }
    }

    fn block(&self, pfn: u32) -> usize {
        (pfn >> self.order) as usize
    }

    /// Is `pfn` mapped present?
    pub fn present(&self, pfn: u32) -> bool {
        self.present[pfn as usize]
    }

    /// Is the block of `pfn` still mapped by one large entry?
    pub fn is_large(&self, pfn: u32) -> bool {
        self.table[self.block(pfn)].is_none()
    }

    /// The page-table pages splits installed (checker view: the direct map owns them).
    pub fn tables(&self) -> Vec<u32> {
        self.table.iter().flatten().copied().collect()
    }

    fn set_block(&mut self, first: u32, present: bool) {
        let n = 1u32 << self.order;
        for p in first..first + n {
            self.present[p as usize] = present;
        }
    }
}

/// `kernel_page_present()`: a lockless look-up of the direct map (no scheduling point: its
/// callers run with every other CPU stopped, or only check).
pub fn kernel_page_present(w: &World, pfn: u32) -> bool {
    w.cpa_lock.data_unlocked().present(pfn)
}

/// `__change_page_attr()` for one page: set its presence; if a large entry maps it and the
/// presence differs, `split_large_page()` first. Fails with ENOMEM only when the split's
/// page-table allocation fails.
fn change_page_attr(
    ctx: &mut Ctx,
    w: &World,
    pfn: u32,
    present: bool,
) -> KResult<Result<(), Errno>> {
    w.cpa_lock.lock(ctx)?;
    let done = {
        let mut d = w.cpa_lock.data(ctx);
        if d.present(pfn) == present {
            true
        } else if !d.is_large(pfn) {
            d.present[pfn as usize] = present;
            true
        } else {
            false
        }
    };
    if done {
        ctx.note(
            site!("__change_page_attr", "set the 4K entry's present bit"),
            Obj::page(pfn),
            u64::from(present),
        );
        w.cpa_lock.unlock(ctx)?;
        return Ok(Ok(()));
    }
    w.cpa_lock.unlock(ctx)?;
    split_large_page(ctx, w, pfn, present)
}

/// `split_large_page()`: drop `cpa_lock` to allocate the page-table page (GFP_KERNEL), retake
/// it, and install the split unless another CPU split the block meanwhile; then apply the
/// change to the 4K entry.
fn split_large_page(
    ctx: &mut Ctx,
    w: &World,
    pfn: u32,
    present: bool,
) -> KResult<Result<(), Errno>> {
    let Some(pt) = alloc_pages(ctx, w, 0)? else {
        return Ok(Err(Errno::ENOMEM));
    };
    w.cpa_lock.lock(ctx)?;
    let installed = {
        let mut d = w.cpa_lock.data(ctx);
        let b = d.block(pfn);
        let installed = d.table[b].is_none();
        if installed {
            // __split_large_page(): the new table copies the large entry's presence.
            d.table[b] = Some(pt);
        }
        d.present[pfn as usize] = present;
        installed
    };
    ctx.note(
        site!("split_large_page", "__split_large_page(): 4K entries"),
        Obj::page(pfn),
        u64::from(pt),
    );
    w.cpa_lock.unlock(ctx)?;
    if !installed {
        w.page(pt)
            .refcount
            .store_plain(ctx, site!("split_large_page", "__free_page(base)"), 0);
        free_folio(ctx, w, pt)?;
    }
    Ok(Ok(()))
}

/// `set_direct_map_invalid_noflush()`: make one page not present.
pub fn set_direct_map_invalid_noflush(
    ctx: &mut Ctx,
    w: &World,
    pfn: u32,
) -> KResult<Result<(), Errno>> {
    ctx.note(
        site!("set_direct_map_invalid_noflush", "page"),
        Obj::page(pfn),
        0,
    );
    change_page_attr(ctx, w, pfn, false)
}

/// `set_direct_map_default_noflush()`: make one page present again.
pub fn set_direct_map_default_noflush(
    ctx: &mut Ctx,
    w: &World,
    pfn: u32,
) -> KResult<Result<(), Errno>> {
    ctx.note(
        site!("set_direct_map_default_noflush", "page"),
        Obj::page(pfn),
        1,
    );
    change_page_attr(ctx, w, pfn, true)
}

/// `set_memory_np()` / `set_memory_p()` on the whole block starting at `first` (aligned): a
/// large entry changes as a whole, a split block entry by entry; neither allocates.
pub fn set_memory_block(ctx: &mut Ctx, w: &World, first: u32, present: bool) -> KResult<()> {
    w.cpa_lock.lock(ctx)?;
    w.cpa_lock.data(ctx).set_block(first, present);
    ctx.note(
        site!("set_memory_np", "__change_page_attr_set_clr(whole block)"),
        Obj::page(first),
        u64::from(present),
    );
    w.cpa_lock.unlock(ctx)
}

/// Teardown: free the page-table pages splits installed (the model never re-merges blocks),
/// so that the leak check sees only real leaks.
pub fn free_direct_map_tables(ctx: &mut Ctx, w: &World) -> KResult<()> {
    let tables = w.cpa_lock.data_unlocked().tables();
    for pt in tables {
        w.page(pt)
            .refcount
            .store_plain(ctx, site!("free_direct_map_tables", "__free_page()"), 0);
        free_folio(ctx, w, pt)?;
    }
    Ok(())
}
