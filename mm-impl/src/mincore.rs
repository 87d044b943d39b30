//! mm/mincore.c: `mincore_page()`: is a file page resident? A lockless lookup; a folio counts
//! only if it is uptodate.

use crate::filemap::{filemap_get_incore_folio, folio_test_uptodate, AddressSpace};
use crate::page_ref::folio_put;
use crate::sync::{Ctx, KResult};
use crate::world::World;

/// `mincore_page()` for page `index` of the file.
pub fn mincore_page(ctx: &mut Ctx, w: &World, m: &AddressSpace, index: u32) -> KResult<bool> {
    let Some(folio) = filemap_get_incore_folio(ctx, w, m, index)? else {
        return Ok(false);
    };
    let present = folio_test_uptodate(ctx, w, folio)?;
    folio_put(ctx, w, folio)?;
    Ok(present)
}
