//! lib/buildid.c: `build_id_parse()` of the text mapping's file, callable from NMI context
//! (perf and BPF stack maps): it may not sleep, read data in, or wait for anyone.

use crate::bugs::Bug;
use crate::errno::Errno;
use crate::filemap::{find_get_page, folio_test_uptodate, AddressSpace, OnRetry};
use crate::mm_types::*;
use crate::page_ref::folio_put;
use crate::site;
use crate::sync::{Ctx, KResult};
use crate::violation::Kind;
use crate::world::World;

/// `build_id_parse()`: find page 0 of the file without locking or waiting, check it is
/// uptodate, and read the ELF note's build id from it. EFAULT when the page cannot be used
/// right now.
pub fn build_id_parse(ctx: &mut Ctx, w: &World, m: &AddressSpace) -> KResult<Result<u64, Errno>> {
    // Fixed: a lookup that gives up at once on a frozen folio or a RETRY entry. The switch
    // restores find_get_page()'s retry loop, which never ends if the NMI interrupted the CPU
    // that froze the folio.
    let on_retry = if w.cfg.bugs.has(Bug::BuildidNmiSpin) {
        OnRetry::Spin
    } else {
        OnRetry::Fail
    };
    let Some((folio, page)) = find_get_page(ctx, w, m, 0, on_retry)? else {
        return Ok(Err(Errno::EFAULT));
    };
    // find_get_page() returns folios that are not uptodate (readahead inserts them before the
    // read completes); the check is the caller's, and the switch leaves it out.
    if !w.cfg.bugs.has(Bug::BuildidNoUptodate) && !folio_test_uptodate(ctx, w, folio)? {
        folio_put(ctx, w, folio)?;
        return Ok(Err(Errno::EFAULT));
    }
    let id = w.page(page).data.read_once(
        ctx,
        site!("build_id_parse", "parse_build_id(): read the ELF note"),
    )?;
    // Consequence check: bytes taken from a folio that is not uptodate are not the file's.
    if w.page(folio).flags.peek() & PG_UPTODATE == 0 {
        return Err(ctx.violation(
            Kind::NotUptodateRead,
            "build_id_parse",
            Some(page),
            format!("read build id {id:#x} from pfn {page}, whose folio {folio} is not uptodate"),
        ));
    }
    folio_put(ctx, w, folio)?;
    Ok(Ok(id))
}
