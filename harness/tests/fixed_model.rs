//! The fixed model must pass every program: random programs under PCT and random-walk schedules.

use harness::engine::pct::Pct;
use harness::engine::random::realized_schedule;
use harness::engine::random_program;
use harness::program::{Header, ProgFile};
use harness::{run, run_with, RunOptions, Verdict};
use mm_impl::sync::RandomWalk;
use rand::rngs::StdRng;
use rand::SeedableRng;

fn check_all(order: u8, n: usize, seed: u64) -> (usize, usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pct = Pct::new(seed, 3);
    let (mut execs, mut unknown) = (0, 0);
    for i in 0..n {
        let mut f = ProgFile {
            header: Header {
                order,
                ..Header::default()
            },
            program: random_program(&mut rng),
        };
        let calib = run(&f);
        let mut runs = vec![(f.clone(), calib.clone())];
        for _ in 0..3 {
            f.program.schedule = pct.schedule(&calib.points);
            runs.push((f.clone(), run(&f)));
        }
        f.program.schedule.preemptions.clear();
        let walk = run_with(
            &f,
            &RunOptions {
                random: Some(RandomWalk { seed: i as u64 }),
                ..Default::default()
            },
        );
        // The walk is kept as the schedule that replays it.
        f.program.schedule = realized_schedule(&f.program.schedule.priorities, &walk);
        runs.push((f.clone(), walk));
        for (g, o) in &runs {
            execs += 1;
            match &o.verdict {
                Verdict::Pass => {}
                Verdict::Unknown(_) => unknown += 1,
                v => {
                    let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
                        .join(format!("fixed-fail-{order}-{i}.mmprog"));
                    let _ = harness::format::write_atomic(
                        &path,
                        harness::format::to_text(g, &[]).as_bytes(),
                    );
                    panic!(
                        "fixed model failed program {i} (saved to {}):\n{v:?}",
                        path.display()
                    )
                }
            }
        }
    }
    (execs, unknown)
}

#[test]
fn thousands_of_random_programs_pass_on_the_fixed_model() {
    let (execs, unknown) = check_all(3, 1000, 1);
    assert_eq!(execs, 5000);
    assert!(
        unknown * 1000 <= execs,
        "{unknown} unknown verdicts in {execs}"
    );
}

#[test]
fn random_programs_pass_at_orders_2_and_4() {
    for order in [2, 4] {
        let (execs, unknown) = check_all(order, 300, 2);
        assert!(
            unknown * 1000 <= execs,
            "order {order}: {unknown} unknown in {execs}"
        );
    }
}

#[test]
fn regression_programs_pass_on_the_fixed_model() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../corpora/regressions");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).expect("corpora/regressions") {
        let path = e.expect("dir entry").path();
        let f = harness::format::load(&path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            f.header.bugs,
            mm_impl::bugs::Bugs::NONE,
            "{}",
            path.display()
        );
        assert_eq!(run(&f).verdict, Verdict::Pass, "{}", path.display());
        n += 1;
    }
    assert!(n >= 5);
}

#[test]
fn the_spec_pipeline_rejects_a_corrupted_result() {
    use harness::executor::{check_by_range, spec_history, world_spec};
    use oracles::linearizability::Check;
    use oracles::mm_spec::MmRet;
    // Real runs of random programs: change one value a read returned, as a model that lost
    // or corrupted data would, and the history must stop being linearizable.
    let mut rng = StdRng::seed_from_u64(77);
    let mut tried = 0;
    for _ in 0..400 {
        let f = ProgFile {
            header: Header::default(),
            program: random_program(&mut rng),
        };
        let mut out = run(&f);
        if out.verdict != Verdict::Pass {
            continue;
        }
        let Some(r) = out
            .history
            .iter_mut()
            .find(|r| matches!(r.response, Some((_, MmRet::Value(_)))))
        else {
            continue;
        };
        if let Some((p, MmRet::Value(v))) = r.response {
            r.response = Some((p, MmRet::Value(v ^ 0x5a5a)));
        }
        let cfg = f.header.world_config();
        let (entries, _) = spec_history(cfg, &f.program, &out.history);
        let c = check_by_range(cfg, &f.program, &world_spec(cfg), &entries, 1_000_000);
        assert!(
            matches!(c, Check::NotLinearizable { .. }),
            "corrupted read accepted: {c:?}"
        );
        tried += 1;
    }
    assert!(tried >= 100, "only {tried} programs had a read");
}

#[test]
fn a_pin_between_can_split_and_unmap_stops_the_unmap_and_the_split() {
    use harness::program::{Addr, Handle, Op, Schedule};
    use mm_impl::mm_types::VmaKind;
    use mm_impl::sync::{EventKind, Preemption};
    use oracles::mm_spec::MmRet;
    let a = |page| Addr {
        vma: VmaKind::Anon,
        page,
    };
    let h = Handle {
        thread: 1,
        index: 0,
    };
    let mut f = ProgFile {
        header: Header::default(),
        program: harness::program::Program {
            threads: vec![
                vec![Op::Split { at: a(0) }],
                vec![
                    Op::GupFast {
                        at: a(0),
                        pin: true,
                        write: false,
                    },
                    Op::ReadPinned { h },
                    Op::Put { h },
                ],
            ],
            schedule: Schedule {
                priorities: vec![0, 1],
                preemptions: vec![],
            },
            faults: vec![],
            nmis: vec![],
        },
    };
    // The split's point right after its racy pre-check (can_split_folio) reads the refcount.
    let calib = run(&f);
    let mut n = 0;
    let mut at = None;
    for te in calib.trace.iter().filter(|te| te.thread == 0) {
        if matches!(te.ev.kind, EventKind::Point(_)) {
            n += 1;
            if te.ev.site.func == "can_split_folio" {
                at = Some(n + 1);
            }
        }
    }
    // cpu1 hands the CPU back right after its gup-fast returned, holding the pin.
    let mut m = 0;
    let mut after_gup = None;
    for te in calib.trace.iter().filter(|te| te.thread == 1) {
        match te.ev.kind {
            EventKind::Point(_) => m += 1,
            EventKind::OpEnd if te.ev.val == 0 => after_gup = Some(m + 1),
            _ => {}
        }
    }
    f.program.schedule.preemptions = vec![
        Preemption {
            thread: 0,
            at: at.expect("split reaches can_split_folio"),
            to: Some(1),
        },
        Preemption {
            thread: 1,
            at: after_gup.expect("gup-fast returns"),
            to: Some(0),
        },
    ];
    f.program.schedule.priorities = vec![0, 1];
    let out = run(&f);
    assert_eq!(out.verdict, Verdict::Pass);
    // gup-fast pinned the head page after the pre-check; the unmap saw the pin and stopped,
    // so the freeze failed and the split was busy.
    assert!(
        matches!(
            out.history[0].response,
            Some((_, MmRet::Split(mm_impl::huge_memory::SplitOutcome::Busy)))
        ),
        "{:?}",
        out.history[0]
    );
    assert!(
        out.trace
            .iter()
            .any(|te| te.ev.site.what.contains("maybe pinned, abort")),
        "the abort path ran"
    );
}
