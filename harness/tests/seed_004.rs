//! Seed 004 (pins and vmap aliases of shared file pages vs writeback): what the generic
//! found/clean tests of `seed_switches.rs` do not show: that the clean runs take the paths the
//! switches change, and where the fixed protocols draw their lines.

mod common;
use common::{fixed, load};

use harness::executor::OpRecord;
use harness::format::parse_text;
use harness::program::Op;
use harness::{run, Verdict};
use mm_impl::buffer::ReleaseOutcome;
use mm_impl::bugs::Bugs;
use mm_impl::errno::Errno;
use mm_impl::violation::Kind;
use oracles::mm_spec::MmRet;

fn result(h: &[OpRecord], pred: impl Fn(&Op) -> bool) -> MmRet {
    h.iter()
        .find(|r| pred(&r.op))
        .and_then(|r| r.response.map(|(_, ret)| ret))
        .expect("the op returned")
}

#[test]
fn fixed_writeback_keeps_the_buffers_of_a_pinned_page() {
    // Same schedule as the buggy seed: writeback cleans the pinned page, reclaim asks for its
    // buffers and is refused (folio_maybe_dma_pinned), so the unpin's dirtying is written back.
    let out = run(&fixed(load("pin-writeback-race.mmprog")));
    assert_eq!(out.verdict, Verdict::Pass);
    assert_eq!(
        result(&out.history, |op| matches!(op, Op::ReleaseBuffers { .. })),
        MmRet::Release(ReleaseOutcome::Busy)
    );
    // With the switch the same release succeeds: that is the bug.
    let buggy = run(&load("pin-writeback-race.mmprog"));
    assert_eq!(
        result(&buggy.history, |op| matches!(op, Op::ReleaseBuffers { .. })),
        MmRet::Release(ReleaseOutcome::Released)
    );
}

#[test]
fn fixed_gup_refuses_longterm_writable_pins_of_the_shared_file_only() {
    let out = run(&fixed(load("longterm-pin-file-write.mmprog")));
    assert_eq!(out.verdict, Verdict::Pass);
    assert_eq!(
        result(&out.history, |op| matches!(op, Op::PinLongterm { .. })),
        MmRet::Errno(Errno::EFAULT)
    );
    // Anonymous memory may be pinned long-term for write; a read-only long-term pin of the
    // file is fine too.
    let f = parse_text(
        "thread 0:\n  pin_longterm anon:2 write\n  pin_longterm shared:2\n  writeback\n",
    )
    .expect("parses");
    let out = run(&f);
    assert_eq!(out.verdict, Verdict::Pass);
    assert!(out
        .history
        .iter()
        .all(|r| !matches!(r.response, Some((_, MmRet::Errno(_))))));
}

#[test]
fn fixed_vhost_alias_is_torn_down_by_writeback_where_the_rfc_fails() {
    // Writeback's mkclean fires the notifier: the alias goes (a later write is refused with
    // EAGAIN, vhost falls back to copy_to_user), the write made through it was dirtied inside
    // the callback and written. The buggy model, whose unmap dirties later, fails instead.
    let src = "\
thread 0:
  vhost_map shared:2
  vhost_write 0.0 0x77
  writeback
  vhost_write 0.0 0x78
  release_buffers data:2
  vhost_unmap 0.0
";
    let f = parse_text(src).expect("parses");
    let out = run(&f);
    assert_eq!(out.verdict, Verdict::Pass, "{:?}", out.verdict);
    let writes: Vec<MmRet> = out
        .history
        .iter()
        .filter(|r| matches!(r.op, Op::VhostWrite { .. }))
        .filter_map(|r| r.response.map(|(_, ret)| ret))
        .collect();
    assert_eq!(writes, [MmRet::Done, MmRet::Errno(Errno::EAGAIN)]);
    let mut buggy = f;
    buggy.header.bugs = Bugs::parse("vmap-dirty-after-notifier").expect("switch");
    assert_eq!(run(&buggy).verdict.kind(), Some(Kind::DirtyNoBuffers));
}

#[test]
fn a_read_only_vma_gets_a_read_only_alias() {
    // The private shmem mapping is PROT_READ: vhost may map it, never write through it.
    let f = parse_text("thread 0:\n  vhost_map shmem:0\n  vhost_write 0.0 0x1\n").expect("parses");
    let out = run(&f);
    assert_eq!(out.verdict, Verdict::Pass);
    assert_eq!(
        result(&out.history, |op| matches!(op, Op::VhostWrite { .. })),
        MmRet::Errno(Errno::EFAULT)
    );
}
