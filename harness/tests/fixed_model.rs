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
