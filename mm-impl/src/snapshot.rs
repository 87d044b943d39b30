//! kernel/power/hibernate.c and snapshot.c: freeze every thread, copy every saveable page
//! (remapping a page that is not present in the direct map), check the image, thaw.

use crate::bugs::Bug;
use crate::errno::Errno;
use crate::set_memory::{
    kernel_page_present, set_direct_map_default_noflush, set_direct_map_invalid_noflush,
};
use crate::site;
use crate::sync::{Ctx, KResult, Obj, Stop};
use crate::violation::{Kind, Violation};
use crate::world::World;

/// Hand-overs the freezer makes before it gives up with EBUSY (the kernel's
/// `freeze_timeout_msecs`, made deterministic).
pub const FREEZE_ROUNDS: u32 = 64;

/// The image: (pfn, contents) of every saved page, in pfn order.
pub type Image = Vec<(u32, u64)>;

/// What the harness checks around the copy, from outside the code under test: called with
/// `None` when every other CPU is frozen and the copy is about to start (memory "at snapshot
/// time"), and with the image once it is complete, before anything thaws.
pub type ImageOracle<'a> = &'a mut dyn FnMut(&World, Option<&Image>) -> Option<Violation>;

/// `saveable_page()` (`free_list`: the zone's free bitmap): every page that is not on the allocator's free list (there are no
/// reserved, nosave or offline pages in the model). A page that is not present in the direct
/// map is still saved.
pub fn saveable_page(free_list: &[bool], pfn: u32) -> bool {
    !free_list[pfn as usize]
}

/// `hibernate_map_page()`: make a not-present page present for the copy. Returns the error;
/// upstream only warns about it.
pub fn hibernate_map_page(ctx: &mut Ctx, w: &World, pfn: u32) -> KResult<Result<(), Errno>> {
    set_direct_map_default_noflush(ctx, w, pfn)
}

/// `hibernate_unmap_page()`: make it not present again.
pub fn hibernate_unmap_page(ctx: &mut Ctx, w: &World, pfn: u32) -> KResult<Result<(), Errno>> {
    set_direct_map_invalid_noflush(ctx, w, pfn)
}

/// `do_copy_page()`: read the page through the direct map. A page that is not present faults.
fn do_copy_page(ctx: &mut Ctx, w: &World, pfn: u32) -> KResult<u64> {
    if !kernel_page_present(w, pfn) {
        ctx.note(
            site!("safe_copy_page", "do_copy_page(): page fault"),
            Obj::page(pfn),
            0,
        );
        return Err(ctx.violation(
            Kind::KernelPageFault,
            "safe_copy_page",
            Some(pfn),
            format!("do_copy_page() of pfn {pfn}, which is not present in the direct map"),
        ));
    }
    let v = w.page(pfn).data.peek();
    ctx.note(
        site!("safe_copy_page", "do_copy_page(dst, page_address(s_page))"),
        Obj::page(pfn),
        v,
    );
    Ok(v)
}

/// `safe_copy_page()`: copy a present page directly; map, copy and unmap one that is not.
pub fn safe_copy_page(ctx: &mut Ctx, w: &World, pfn: u32) -> KResult<Result<u64, Errno>> {
    let present = if w.cfg.bugs.has(Bug::HibernateTrustPresent) {
        // arm64 before 5.11: kernel_page_present() was a stub that said "present".
        true
    } else {
        kernel_page_present(w, pfn)
    };
    if present {
        return Ok(Ok(do_copy_page(ctx, w, pfn)?));
    }
    ctx.note(
        site!("safe_copy_page", "!kernel_page_present(s_page)"),
        Obj::page(pfn),
        0,
    );
    let mapped = hibernate_map_page(ctx, w, pfn)?;
    if mapped.is_err() && !w.cfg.bugs.has(Bug::HibernateMapUnchecked) {
        // The fixed model stops the snapshot; upstream only warns and copies anyway.
        return Ok(Err(Errno::ENOMEM));
    }
    let v = do_copy_page(ctx, w, pfn)?;
    let _ = hibernate_unmap_page(ctx, w, pfn)?;
    Ok(Ok(v))
}

/// `swsusp_save()` / `copy_data_pages()`: mark the saveable pages first, then copy them.
pub fn swsusp_save(ctx: &mut Ctx, w: &World) -> KResult<Result<Image, Errno>> {
    let orig: Vec<u32> = {
        let free = w.zone.data_unlocked();
        (0..w.pages.len() as u32)
            .filter(|&p| saveable_page(&free, p))
            .collect()
    };
    let mut image = Vec::with_capacity(orig.len());
    for pfn in orig {
        match safe_copy_page(ctx, w, pfn)? {
            Ok(v) => image.push((pfn, v)),
            Err(e) => return Ok(Err(e)),
        }
    }
    Ok(Ok(image))
}

/// `hibernate()`: freeze, snapshot, check the image, thaw. Ok(saved pages), ENOMEM when the
/// snapshot could not remap a page, EBUSY when a thread could not be frozen (or another
/// hibernation is in progress).
pub fn hibernate(ctx: &mut Ctx, w: &World, oracle: ImageOracle<'_>) -> KResult<Result<u32, Errno>> {
    if !ctx.freeze_processes(FREEZE_ROUNDS)? {
        ctx.thaw_processes();
        return Ok(Err(Errno::EBUSY));
    }
    let r = snapshot_frozen(ctx, w, oracle);
    ctx.thaw_processes();
    r
}

/// The part of `hibernate()` that runs with every other CPU frozen.
fn snapshot_frozen(
    ctx: &mut Ctx,
    w: &World,
    oracle: ImageOracle<'_>,
) -> KResult<Result<u32, Errno>> {
    if let Some(v) = oracle(w, None) {
        return Err(report(ctx, v));
    }
    let image = match swsusp_save(ctx, w)? {
        Ok(image) => image,
        Err(e) => return Ok(Err(e)),
    };
    if let Some(v) = oracle(w, Some(&image)) {
        return Err(report(ctx, v));
    }
    Ok(Ok(image.len() as u32))
}

fn report(ctx: &mut Ctx, v: Violation) -> Stop {
    ctx.violation(v.kind, &v.func, v.pfn, v.detail)
}
