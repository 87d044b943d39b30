//! Seed 000 (page cache, collapse, readahead, build-id lookup in NMI): what the generic
//! found/clean tests of `seed_switches.rs` do not show: that the clean runs take the paths the
//! switches change (so passing them means something), and that the NMI placement itself can be
//! found, not only the interleaving around a hand-placed NMI.

mod common;
use common::{fixed, load};

use harness::campaign::{run_campaign, CampaignConfig};
use harness::engine::EngineKind;
use harness::executor::OpRecord;
use harness::program::Op;
use harness::{run, Verdict};
use mm_impl::bugs::{Bug, Bugs};
use mm_impl::errno::Errno;
use mm_impl::khugepaged::CollapseOutcome;
use mm_impl::readahead::RaOutcome;
use mm_impl::violation::Kind;
use mm_impl::world::BUILD_ID;
use oracles::mm_spec::MmRet;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn result(h: &[OpRecord], pred: impl Fn(&OpRecord) -> bool) -> MmRet {
    h.iter()
        .find(|r| pred(r))
        .and_then(|r| r.response.map(|(_, ret)| ret))
        .expect("the op returned")
}

#[test]
fn fixed_build_id_refuses_the_folio_readahead_has_not_read_yet() {
    // Same interleaving as the buggy run: the lookup meets the locked, !uptodate folio and the
    // fixed build_id_parse() says EFAULT instead of parsing it; readahead still completes.
    let out = run(&fixed(load("buildid-readahead.mmprog")));
    assert_eq!(out.verdict, Verdict::Pass);
    assert_eq!(
        result(&out.history, |r| r.op == Op::BuildId),
        MmRet::Errno(Errno::EFAULT)
    );
    assert_eq!(
        result(&out.history, |r| matches!(r.op, Op::Readahead { .. })),
        MmRet::Ra(RaOutcome::Read)
    );
}

#[test]
fn fixed_collapse_completes_while_the_old_pages_stay_visible() {
    // 6.6: the small folios stay in the page cache (locked, uptodate) during the copy, so the
    // racing mincore() sees page 0 resident, and the collapse still succeeds.
    let out = run(&fixed(load("collapse-publish-early.mmprog")));
    assert_eq!(out.verdict, Verdict::Pass);
    assert_eq!(
        result(&out.history, |r| matches!(r.op, Op::Collapse { .. })),
        MmRet::Collapse(CollapseOutcome::Collapsed)
    );
    assert_eq!(
        result(&out.history, |r| matches!(r.op, Op::Mincore { .. })),
        MmRet::Value(1)
    );
    // And the build id read during the same window is the file's (or EFAULT, never other).
    let out = run(&fixed(load("buildid-collapse.mmprog")));
    assert_eq!(out.verdict, Verdict::Pass);
    assert_eq!(
        result(&out.history, |r| r.op == Op::BuildId),
        MmRet::Value(BUILD_ID)
    );
}

#[test]
fn fixed_nmi_lookup_fails_at_once_on_the_frozen_folio() {
    // The NMI arrives right after __remove_mapping() froze the folio: the fixed lookup gives up
    // with EFAULT, the interrupted eviction then completes.
    let out = run(&fixed(load("buildid-nmi-spin.mmprog")));
    assert_eq!(out.verdict, Verdict::Pass);
    assert_eq!(result(&out.history, |r| r.nmi), MmRet::Errno(Errno::EFAULT));
}

#[test]
fn an_nmi_waiting_for_another_cpu_is_not_a_livelock() {
    // With the retry loop restored, an NMI on cpu1 that meets the folio cpu0 froze waits for
    // cpu0 and then finds the page gone: no finding, and the lookup really waited (it took
    // more scheduling points than the fixed lookup, which gives up at once).
    let mut f = load("buildid-nmi-spin.mmprog");
    f.program.threads[1] = vec![];
    // cpu0 is preempted right after the freeze; cpu1 is idle (no ops) and takes the NMI.
    f.program.schedule.preemptions = vec![mm_impl::sync::Preemption {
        thread: 0,
        at: 10,
        to: Some(1),
    }];
    f.program.nmis = vec![harness::program::Nmi { thread: 1, at: 1 }];
    let spin = run(&f);
    assert_eq!(spin.verdict, Verdict::Pass, "{:?}", spin.verdict);
    let fail_fast = run(&fixed(f.clone()));
    assert_eq!(fail_fast.verdict, Verdict::Pass);
    let nmi_points = |o: &harness::Outcome| o.points[1];
    assert!(
        nmi_points(&spin) > nmi_points(&fail_fast),
        "the buggy lookup retried ({} points) where the fixed one gave up ({})",
        nmi_points(&spin),
        nmi_points(&fail_fast)
    );
}

#[test]
fn a_campaign_places_the_nmi_itself() {
    // The seed without its NMI plan: the campaign's mutations must add an NMI at the right
    // point of the evicting CPU to find the livelock.
    let mut f = load("buildid-nmi-spin.mmprog");
    f.program.nmis.clear();
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("campaign-nmi-placement");
    let _ = std::fs::remove_dir_all(&out);
    let cfg = CampaignConfig {
        engine: EngineKind::Pct,
        bugs: Bugs::NONE.with(Bug::BuildidNmiSpin),
        order: 3,
        duration: None,
        max_execs: Some(20_000),
        out,
        seed: 5,
        jobs: 1,
        corpus: vec![f],
        pct_changes: 3,
        stop_on_crash: true,
    };
    let s = run_campaign(cfg, Arc::new(AtomicBool::new(false)), &mut |_, _, _| {})
        .expect("campaign runs");
    let hit = s
        .found
        .iter()
        .find(|x| x.signature.kind == Kind::NmiLivelock)
        .unwrap_or_else(|| panic!("no NMI livelock in {} execs: {:?}", s.execs, s.found));
    assert!(hit.at_exec <= 20_000);
}

#[test]
fn a_collapsed_text_range_splits_back_into_small_folios() {
    // The file THP split really splits: afterwards evicting one page evicts that page alone,
    // while before the split it evicts the whole huge folio.
    let before = harness::format::parse_text(
        "thread 0:\n  collapse text:0\n  evict text:3\n  mincore text:2\n",
    )
    .expect("parses");
    let out = run(&before);
    assert_eq!(out.verdict, Verdict::Pass);
    assert_eq!(
        result(&out.history, |r| matches!(r.op, Op::Evict { .. })),
        MmRet::Evict(mm_impl::vmscan::EvictOutcome::Evicted(8))
    );
    let after = harness::format::parse_text(
        "thread 0:\n  collapse text:0\n  split_file text:0\n  evict text:3\n  mincore text:2\n",
    )
    .expect("parses");
    let out = run(&after);
    assert_eq!(out.verdict, Verdict::Pass);
    assert_eq!(
        result(&out.history, |r| matches!(r.op, Op::SplitFile { .. })),
        MmRet::Split(mm_impl::huge_memory::SplitOutcome::Split)
    );
    assert_eq!(
        result(&out.history, |r| matches!(r.op, Op::Evict { .. })),
        MmRet::Evict(mm_impl::vmscan::EvictOutcome::Evicted(1))
    );
    assert_eq!(
        result(&out.history, |r| matches!(r.op, Op::Mincore { .. })),
        MmRet::Value(1)
    );
}
