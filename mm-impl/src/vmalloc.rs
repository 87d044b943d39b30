//! mm/vmalloc.c: vmalloc areas with VM_FLUSH_RESET_PERMS, whose vfree makes the pages' direct
//! map aliases invalid, flushes, and restores them before the pages go back to the allocator.

use crate::errno::Errno;
use crate::page_alloc::alloc_pages;
use crate::page_ref::folio_put_refs;
use crate::set_memory::{set_direct_map_default_noflush, set_direct_map_invalid_noflush};
use crate::site;
use crate::sync::{Access, Ctx, KResult, Obj};
use crate::violation::Kind;
use crate::world::World;

/// `struct vm_struct` of an area allocated with VM_FLUSH_RESET_PERMS: its pages, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmStruct {
    /// The pages backing the area.
    pub pages: Vec<u32>,
}

/// `__vmalloc_node_range(..., VM_FLUSH_RESET_PERMS)`: allocate `nr` order-0 pages and map them
/// in the vmalloc range. ENOMEM (after freeing what it got) if an allocation fails.
pub fn vmalloc(ctx: &mut Ctx, w: &World, nr: u32) -> KResult<Result<VmStruct, Errno>> {
    let mut pages = Vec::with_capacity(nr as usize);
    for _ in 0..nr {
        match alloc_pages(ctx, w, 0)? {
            Some(p) => pages.push(p),
            None => {
                for p in pages {
                    folio_put_refs(ctx, w, p, 1)?;
                }
                return Ok(Err(Errno::ENOMEM));
            }
        }
    }
    for &p in &pages {
        // vmap_pages_range(): the alias in the vmalloc range.
        ctx.point(
            site!("vmap_pages_range", "set_pte_at(vmalloc alias)"),
            Obj::page(p),
            Access::Write,
            u64::from(p),
        )?;
    }
    Ok(Ok(VmStruct { pages }))
}

/// A kernel store of `val` through the vmalloc alias of every page of an area (not the direct
/// map), as one step: `lookup` finds the area inside it (the caller's handle table), so a
/// concurrent vfree either unlinked the area first (no area) or frees it afterwards, as a
/// caller that does not use an area it is freeing would see. False if there is no area.
pub fn vwrite(
    ctx: &mut Ctx,
    w: &World,
    lookup: impl FnOnce() -> Option<VmStruct>,
    val: u64,
) -> KResult<bool> {
    ctx.point(
        site!("vwrite", "store through the vmalloc alias"),
        Obj::NONE,
        Access::Write,
        val,
    )?;
    let Some(area) = lookup() else {
        return Ok(false);
    };
    for &p in &area.pages {
        let page = w.page(p);
        if page.is_free() {
            return Err(ctx.violation(
                Kind::UseAfterFree,
                "vwrite",
                Some(p),
                format!("store through a vmalloc alias reached freed pfn {p}"),
            ));
        }
        page.data
            .store_plain(ctx, site!("vwrite", "page contents"), val);
    }
    Ok(true)
}

/// `_vm_unmap_aliases(start, end, flush_dmap)`: under `vmap_purge_lock`, purge lazily freed
/// areas and flush the TLB for the vmalloc aliases and the direct map range.
pub fn _vm_unmap_aliases(ctx: &mut Ctx, w: &World) -> KResult<()> {
    w.vmap_purge_lock.lock(ctx)?;
    ctx.point(
        site!("_vm_unmap_aliases", "flush_tlb_kernel_range(direct map)"),
        Obj::NONE,
        Access::Write,
        0,
    )?;
    w.vmap_purge_lock.unlock(ctx)
}

/// `vm_reset_perms()`: set every page's direct map entry invalid, flush the aliases, then set
/// them back to default. The return values are ignored, as upstream does: a failed `invalid`
/// only leaves a stale alias; `default` cannot fail for a page `invalid` already split.
pub fn vm_reset_perms(ctx: &mut Ctx, w: &World, area: &VmStruct) -> KResult<()> {
    for &p in &area.pages {
        let _ = set_direct_map_invalid_noflush(ctx, w, p)?;
    }
    _vm_unmap_aliases(ctx, w)?;
    for &p in &area.pages {
        let _ = set_direct_map_default_noflush(ctx, w, p)?;
    }
    Ok(())
}

/// `remove_vm_area()`: unmap the vmalloc alias (lazily flushed).
pub fn remove_vm_area(ctx: &mut Ctx, area: &VmStruct) -> KResult<()> {
    for &p in &area.pages {
        ctx.point(
            site!("remove_vm_area", "vunmap_range_noflush()"),
            Obj::page(p),
            Access::Write,
            0,
        )?;
    }
    Ok(())
}

/// `__vunmap(addr, deallocate_pages = 1)` (`vfree()`), as deferred kernel work: remove the
/// area, reset the direct map permissions, free the pages.
pub fn vfree(ctx: &mut Ctx, w: &World, area: &VmStruct) -> KResult<()> {
    ctx.note(
        site!("__vunmap", "vm_remove_mappings(area, deallocate_pages)"),
        Obj::NONE,
        area.pages.len() as u64,
    );
    remove_vm_area(ctx, area)?;
    vm_reset_perms(ctx, w, area)?;
    for &p in &area.pages {
        folio_put_refs(ctx, w, p, 1)?;
    }
    Ok(())
}
