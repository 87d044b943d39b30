//! mm/rmap.c and mm/migrate.c: unmapping a folio to migration entries and restoring them.
//!
//! The model has one mm and no fork, so an anon page's only possible mapping is at
//! `page->index`; the rmap walk is that one PTE, taken under its PTE lock.

use crate::memory::{folio_add_anon_rmap_pte, folio_remove_rmap_pte, pte_offset_map_lock};
use crate::mm_types::*;
use crate::page_ref::{folio_maybe_dma_pinned, folio_put_refs, folio_ref_add};
use crate::site;
use crate::sync::{Ctx, KResult};
use crate::world::World;

/// `try_to_migrate()` with `try_to_migrate_one()` on every page of `folio` (`nr` pages): replace
/// each PTE mapping it by a migration entry, remove the rmap, and drop the mapping's reference
/// inside the walk. The caller holds the anon_vma lock (TTU_RMAP_LOCKED). Returns false if it
/// stopped because the folio may be DMA-pinned: every anon page here is exclusive (there is no
/// fork), and `folio_try_share_anon_rmap_pte()` refuses to unshare a maybe-pinned one, so the PTE
/// is put back and the rest stays mapped.
pub fn try_to_migrate(ctx: &mut Ctx, w: &World, folio: u32, nr: u32) -> KResult<bool> {
    for i in 0..nr {
        let page = folio + i;
        let vpn = w
            .page(page)
            .index
            .read_once(ctx, site!("page_vma_mapped_walk", "page->index"))?;
        let Some(table) = pte_offset_map_lock(ctx, w, vpn)? else {
            continue;
        };
        let slot = w.pte(table, vpn & (w.nr_subpages() - 1));
        let pte = slot.peek();
        if pte_present(pte) && pte_pfn(pte) == page {
            let old = slot.xchg(ctx, site!("try_to_migrate_one", "ptep_clear_flush()"), 0)?;
            if folio_maybe_dma_pinned(ctx, w, folio)? {
                slot.write_once(
                    ctx,
                    site!(
                        "try_to_migrate_one",
                        "set_pte_at(pteval): maybe pinned, abort"
                    ),
                    old,
                )?;
                w.page(table).ptl.unlock(ctx)?;
                return Ok(false);
            }
            slot.write_once(
                ctx,
                site!("try_to_migrate_one", "set_pte_at(migration entry)"),
                mk_migration_entry(page, pte_write(old)),
            )?;
            folio_remove_rmap_pte(ctx, w, page)?;
            // The caller's own reference keeps this from reaching zero under the PTE lock.
            folio_put_refs(ctx, w, folio, 1)?;
        }
        w.page(table).ptl.unlock(ctx)?;
    }
    Ok(true)
}

/// `remove_migration_ptes()` (RMP_LOCKED): for each page of the folio starting at `folio`
/// (`nr` pages), turn the migration entry that names it back into a present PTE, taking a
/// reference on the folio and adding the rmap.
pub fn remove_migration_ptes(ctx: &mut Ctx, w: &World, folio: u32, nr: u32) -> KResult<()> {
    for i in 0..nr {
        let page = folio + i;
        let vpn = w
            .page(page)
            .index
            .read_once(ctx, site!("remove_migration_pte", "page->index"))?;
        let Some(table) = pte_offset_map_lock(ctx, w, vpn)? else {
            continue;
        };
        let slot = w.pte(table, vpn & (w.nr_subpages() - 1));
        let pte = slot.peek();
        if is_migration_entry(pte) && pte_pfn(pte) == page {
            folio_ref_add(ctx, w, folio, 1)?;
            folio_add_anon_rmap_pte(ctx, w, page)?;
            slot.write_once(
                ctx,
                site!("remove_migration_pte", "set_pte_at()"),
                mk_pte(page, pte_write(pte)),
            )?;
        }
        w.page(table).ptl.unlock(ctx)?;
    }
    Ok(())
}
