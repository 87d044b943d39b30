//! Every modelled bug switch, through its seed program: found/clean tests exactly as DESIGN.md
//! defines them. Seed 001 (gup-fast vs split_huge_page), seed 000 (page cache, collapse,
//! readahead, build-id lookup in NMI), seed 003 (the direct map, vfree's
//! VM_FLUSH_RESET_PERMS and the hibernate snapshot), seed 002 (retract_page_tables() against
//! UFFDIO_COPY and an IOMMU that walks the CPU page tables) and seed 004 (pins of shared file
//! pages vs writeback).
//!
//! - Clean: with the switch off, the seed program passes under every schedule with at most one
//!   preemption (exhaustively) and under 10,000 PCT schedules from a fixed seed.
//! - Found: with the switch on and the hand-written schedule removed, PCT from a fixed seed
//!   reaches the switch's signature kind within a stated number of executions; and the
//!   hand-written schedule reaches it every time.

mod common;
use common::{fixed, load};

use harness::bench::executions_to_find;
use harness::engine::exhaustive::for_each_one_preemption;
use harness::engine::pct::Pct;
use harness::engine::EngineKind;
use harness::program::Schedule;
use harness::{run, Verdict};
use mm_impl::bugs::Bug;
use mm_impl::violation::Kind;
use oracles::signature::expected_kinds;

/// (seed file, switch, the kind its hand-written schedule reaches, PCT execution bound).
/// The seed file's header may switch on more than the switch under test (buildid-collapse needs
/// the collapse bug to expose the build-id bug); "fixed" switches everything off.
const CASES: &[(&str, Bug, Kind, u64)] = &[
    (
        "gup-split-race.mmprog",
        Bug::GupNoHeadRecheck,
        Kind::BadPageState,
        3_000,
    ),
    (
        "gup-pin-bias-early.mmprog",
        Bug::GupPinBiasEarly,
        Kind::PinAccounting,
        3_000,
    ),
    (
        "buildid-readahead.mmprog",
        Bug::BuildidNoUptodate,
        Kind::NotUptodateRead,
        3_000,
    ),
    (
        "collapse-publish-early.mmprog",
        Bug::CollapsePublishEarly,
        Kind::NotLinearizable,
        3_000,
    ),
    (
        "buildid-collapse.mmprog",
        Bug::BuildidNoUptodate,
        Kind::NotUptodateRead,
        3_000,
    ),
    (
        "buildid-nmi-spin.mmprog",
        Bug::BuildidNmiSpin,
        Kind::NmiLivelock,
        3_000,
    ),
    (
        "hibernate-trust-present.mmprog",
        Bug::HibernateTrustPresent,
        Kind::KernelPageFault,
        200,
    ),
    // Not a race: its program needs a not-present block and a failed split allocation (the
    // fault plan, which PCT keeps), so the unpreempted calibration run already finds it.
    (
        "hibernate-map-unchecked.mmprog",
        Bug::HibernateMapUnchecked,
        Kind::KernelPageFault,
        1,
    ),
    (
        "pin-writeback-race.mmprog",
        Bug::PinWritebackRace,
        Kind::DirtyNoBuffers,
        3_000,
    ),
    (
        "longterm-pin-file-write.mmprog",
        Bug::LongtermPinFileWrite,
        Kind::LostWrite,
        3_000,
    ),
    (
        "vmap-dirty-after-notifier.mmprog",
        Bug::VmapDirtyAfterNotifier,
        Kind::DirtyNoBuffers,
        3_000,
    ),
    (
        "retract-uffd-copy.mmprog",
        Bug::RetractNoRecheck,
        Kind::PageLeak,
        3_000,
    ),
    (
        "retract-iommu-walk.mmprog",
        Bug::RetractNoNotifier,
        Kind::IommuWalkFreedTable,
        3_000,
    ),
];

#[test]
fn seed_files_carry_their_switch_in_the_header() {
    for &(name, bug, _, _) in CASES {
        let f = load(name);
        assert!(f.header.bugs.has(bug), "{name} switches on {bug:?}");
        assert!(
            !f.program.schedule.preemptions.is_empty()
                || !f.program.nmis.is_empty()
                || !f.program.faults.is_empty(),
            "{name} has a hand-written schedule, NMI plan or fault plan"
        );
    }
}

#[test]
fn hand_written_schedule_finds_each_switch_every_time() {
    for &(name, bug, kind, _) in CASES {
        let f = load(name);
        let first = run(&f);
        assert_eq!(
            first.verdict.kind(),
            Some(kind),
            "{name}: {:?}",
            first.verdict
        );
        assert!(
            expected_kinds(bug).contains(&kind),
            "{kind} counts as finding {bug:?}"
        );
        for _ in 0..20 {
            let again = run(&f);
            assert_eq!(
                again.verdict, first.verdict,
                "{name}: same verdict every time"
            );
            assert_eq!(
                again.digest(),
                first.digest(),
                "{name}: same run every time"
            );
        }
    }
}

#[test]
fn fixed_model_passes_the_hand_written_schedule() {
    for &(name, ..) in CASES {
        let out = run(&fixed(load(name)));
        assert_eq!(out.verdict, Verdict::Pass, "{name}");
    }
}

#[test]
fn fixed_model_passes_every_schedule_with_at_most_one_preemption() {
    for &(name, ..) in CASES {
        let mut failures = Vec::new();
        let points = run(&fixed(load(name))).total_points();
        let n = for_each_one_preemption(&fixed(load(name)), |s, o| {
            if o.verdict != Verdict::Pass {
                failures.push((s.clone(), o.verdict.clone()));
            }
        });
        assert!(
            failures.is_empty(),
            "{name}: {} of {n} schedules fail, first {:?}",
            failures.len(),
            failures.first()
        );
        // Two priority orders, and one preemption at every point of either thread.
        assert!(
            n as u64 > points,
            "{name}: only {n} schedules enumerated for {points} points"
        );
    }
}

#[test]
fn buggy_model_fails_some_one_preemption_schedule() {
    // The exhaustive enumeration is not vacuous: with the switch on it finds the bug.
    for &(name, bug, ..) in CASES {
        let mut f = load(name);
        f.program.schedule = Schedule::default();
        let mut hits = 0;
        for_each_one_preemption(&f, |_, o| {
            if o.verdict
                .kind()
                .is_some_and(|k| expected_kinds(bug).contains(&k))
            {
                hits += 1;
            }
        });
        assert!(hits > 0, "{name}: no one-preemption schedule finds {bug:?}");
    }
}

#[test]
fn fixed_model_passes_10000_pct_schedules() {
    for &(name, ..) in CASES {
        let mut f = fixed(load(name));
        f.program.schedule = Schedule::default();
        let calib = run(&f);
        let mut pct = Pct::new(0x001, 3);
        for i in 0..10_000 {
            f.program.schedule = pct.schedule(&calib.points);
            let out = run(&f);
            assert_eq!(
                out.verdict,
                Verdict::Pass,
                "{name}: PCT schedule {i} {:?}",
                f.program.schedule
            );
        }
    }
}

#[test]
fn pct_finds_each_switch_without_the_hand_written_schedule() {
    for &(name, bug, _, bound) in CASES {
        let n = executions_to_find(&load(name), bug, EngineKind::Pct, 3, 1, bound);
        assert!(
            n.is_some(),
            "{name}: PCT did not reach {bug:?} within {bound} executions"
        );
    }
}

#[test]
fn pct_finds_each_switch_at_orders_2_and_4() {
    for &(name, bug, _, bound) in CASES {
        for order in [2, 4] {
            let n = executions_to_find(&load(name), bug, EngineKind::Pct, order, 2, bound);
            assert!(
                n.is_some(),
                "{name} order {order}: PCT did not reach {bug:?} within {bound}"
            );
        }
    }
}

#[test]
fn signatures_are_stable_across_programs_hitting_the_same_bug() {
    use harness::program::{Addr, Op};
    use mm_impl::mm_types::VmaKind;
    for &(name, ..) in CASES {
        let f = load(name);
        let want = run(&f).verdict.signature().cloned().expect("a finding");
        // The same race with an unrelated third CPU that works on the other huge-page range:
        // a different program, the same bug, so the same signature (it deduplicates).
        let mut g = f.clone();
        let far = |page| Addr {
            vma: VmaKind::Anon,
            page,
        };
        g.program.threads.push(vec![
            Op::Touch {
                at: far(12),
                write: Some(7),
            },
            // Not a zap: an invalidation of the mm flushes every secondary MMU (the IOMMU of
            // retract-iommu-walk), so a zap anywhere is related to a secondary-MMU race.
            Op::Touch {
                at: far(13),
                write: None,
            },
        ]);
        g.program.schedule.priorities.push(2);
        assert_eq!(run(&g).verdict.signature(), Some(&want), "{name}");
    }
}
