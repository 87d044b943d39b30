//! Same program, same verdict and the same run, every time: in one process, with other programs
//! run in between (A, B, A), across processes, and when a random walk is replayed from its file.

use harness::engine::pct::Pct;
use harness::engine::random::realized_schedule;
use harness::engine::random_program;
use harness::format::{to_text, write_atomic};
use harness::program::{Header, ProgFile};
use harness::seeds::seed;
use harness::{run, run_with, RunOptions};
use mm_impl::sync::RandomWalk;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::process::Command;

fn programs(n: usize, seed: u64) -> Vec<ProgFile> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pct = Pct::new(seed, 3);
    (0..n)
        .map(|_| {
            let mut f = ProgFile {
                header: Header::default(),
                program: random_program(&mut rng),
            };
            let calib = run(&f);
            f.program.schedule = pct.schedule(&calib.points);
            f
        })
        .collect()
}

#[test]
fn same_program_same_run_within_a_process() {
    for f in programs(100, 11) {
        let a = run(&f);
        let b = run(&f);
        assert_eq!(a.verdict, b.verdict);
        assert_eq!(a.switches, b.switches);
        assert_eq!(a.points, b.points);
        assert_eq!(a.digest(), b.digest());
    }
}

#[test]
fn other_programs_in_between_change_nothing() {
    let ps = programs(60, 12);
    let first: Vec<u64> = ps.iter().map(|f| run(f).digest()).collect();
    // A, B, A: run them again in reverse order, interleaved with a buggy seed program.
    let buggy = seed("gup-split-race.mmprog").expect("seed");
    for (i, f) in ps.iter().enumerate().rev() {
        assert!(run(&buggy).verdict.is_fail());
        assert_eq!(run(f).digest(), first[i], "program {i}");
    }
}

#[test]
fn same_run_across_processes() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("determinism");
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let mut files = vec![
        seed("gup-split-race.mmprog").expect("seed"),
        seed("gup-pin-bias-early.mmprog").expect("seed"),
    ];
    files.extend(programs(8, 13));
    for (i, f) in files.iter().enumerate() {
        let path = dir.join(format!("p{i}.mmprog"));
        write_atomic(&path, to_text(f, &[]).as_bytes()).expect("write");
        let want = format!("digest {:016x}", run(f).digest());
        for _ in 0..2 {
            let out = Command::new(env!("CARGO_BIN_EXE_mmfuzz"))
                .args(["run", "--digest"])
                .arg(&path)
                .output()
                .expect("run mmfuzz");
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains(&want),
                "program {i}: expected {want}, got:\n{stdout}"
            );
        }
    }
}

#[test]
fn a_random_walk_replays_exactly_from_its_realized_schedule() {
    let mut rng = StdRng::seed_from_u64(14);
    for i in 0..200 {
        let mut f = ProgFile {
            header: Header::default(),
            program: random_program(&mut rng),
        };
        let walk = run_with(
            &f,
            &RunOptions {
                random: Some(RandomWalk { seed: i }),
                ..Default::default()
            },
        );
        f.program.schedule = realized_schedule(&f.program.schedule.priorities, &walk);
        let replay = run(&f);
        assert_eq!(replay.verdict, walk.verdict, "walk {i}");
        assert_eq!(replay.switches, walk.switches, "walk {i}");
        assert_eq!(replay.digest(), walk.digest(), "walk {i}");
    }
}

#[test]
fn an_invalid_program_from_the_api_is_refused_not_run() {
    let mut f = seed("gup-split-race.mmprog").expect("seed");
    f.header.order = 9;
    assert!(matches!(run(&f).verdict, harness::Verdict::Invalid(ref m) if m.contains("order 9")));
    let mut g = seed("gup-split-race.mmprog").expect("seed");
    g.program.threads.clear();
    assert!(matches!(run(&g).verdict, harness::Verdict::Invalid(_)));
    // Valid programs around it in one batch still run.
    let ok = seed("gup-pin-bias-early.mmprog").expect("seed");
    let outs = harness::run_many(&[ok.clone(), f, ok], &Default::default());
    assert!(outs[0].verdict.is_fail() && outs[2].verdict.is_fail());
    assert!(matches!(outs[1].verdict, harness::Verdict::Invalid(_)));
}

#[test]
fn interleaving_coverage_sees_the_race_and_is_stable() {
    let f = seed("gup-split-race.mmprog").expect("seed");
    let raced = run(&f);
    let edges = raced.interleaving_edges();
    // The race hands page 8 (the old head) from the splitting CPU back to gup-fast: there are
    // cross-CPU edges, and the same run gives the same edges.
    assert!(!edges.is_empty());
    assert_eq!(run(&f).interleaving_edges(), edges);
    // Without the preemption cpu1 only starts after cpu0 finished; the preempted run sees
    // interleavings the sequential one cannot.
    let mut seq = f.clone();
    seq.program.schedule.preemptions.clear();
    let seq_edges = run(&seq).interleaving_edges();
    assert!(
        edges.iter().any(|e| !seq_edges.contains(e)),
        "the race adds new interleaving edges"
    );
}
