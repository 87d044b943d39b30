//! Benchmarks behind `mmfuzz bench`: throughput on random programs, and executions to find a
//! bug switch from its seed program with the hand-written schedule removed.

use crate::engine::pct::Pct;
use crate::engine::{random_program_shape, EngineKind};
use crate::executor::{run, run_many, run_with, RunOptions};
use crate::program::{Header, ProgFile, Schedule};
use mm_impl::bugs::Bug;
use mm_impl::sync::RandomWalk;
use oracles::signature::expected_kinds;
use rand::rngs::StdRng;
use rand::SeedableRng;
use std::time::Instant;

/// One throughput measurement.
#[derive(Clone, Copy, Debug)]
pub struct Throughput {
    /// Executions.
    pub execs: u64,
    /// Scheduling points over all executions.
    pub points: u64,
    /// Wall seconds.
    pub secs: f64,
    /// Executions whose verdict was Unknown.
    pub unknown: u64,
    /// Executions that failed (must be 0 on the fixed model).
    pub fails: u64,
    /// Seconds spent in the linearizability checker.
    pub check_secs: f64,
}

impl Throughput {
    /// Executions per second.
    pub fn execs_per_sec(&self) -> f64 {
        self.execs as f64 / self.secs
    }
    /// Scheduling points per second.
    pub fn points_per_sec(&self) -> f64 {
        self.points as f64 / self.secs
    }
    /// Points per execution.
    pub fn points_per_exec(&self) -> f64 {
        self.points as f64 / self.execs.max(1) as f64
    }
}

/// Run `programs` random `threads` x `ops` programs (seeded) on the fixed model, each once
/// unpreempted and once under a PCT schedule, on one core.
pub fn throughput(
    seed: u64,
    programs: usize,
    threads: usize,
    ops: usize,
    order: u8,
    skip_check: bool,
) -> Throughput {
    let opts = RunOptions {
        skip_check,
        ..RunOptions::default()
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pct = Pct::new(seed, 3);
    let files: Vec<ProgFile> = (0..programs)
        .map(|_| ProgFile {
            header: Header {
                order,
                ..Header::default()
            },
            program: random_program_shape(&mut rng, threads, ops),
        })
        .collect();
    let mut t = Throughput {
        execs: 0,
        points: 0,
        secs: 0.0,
        unknown: 0,
        fails: 0,
        check_secs: 0.0,
    };
    let start = Instant::now();
    let calibs = run_many(&files, &opts);
    let scheduled: Vec<ProgFile> = files
        .into_iter()
        .zip(&calibs)
        .map(|(mut f, c)| {
            f.program.schedule = pct.schedule(&c.points);
            f
        })
        .collect();
    let outs = run_many(&scheduled, &opts);
    for o in calibs.iter().chain(&outs) {
        t.execs += 1;
        t.points += o.total_points();
        t.unknown += u64::from(matches!(o.verdict, crate::Verdict::Unknown(_)));
        // A refused program or a harness panic must not pass as a clean execution.
        t.fails += u64::from(!matches!(
            o.verdict,
            crate::Verdict::Pass | crate::Verdict::Unknown(_)
        ));
        t.check_secs += o.check_nanos as f64 / 1e9;
    }
    t.secs = start.elapsed().as_secs_f64();
    t
}

/// Executions until `engine` reaches a signature kind of `bug` on `seed_file` at `order`, with
/// its hand-written schedule removed; `None` if not within `max_execs`.
pub fn executions_to_find(
    seed_file: &ProgFile,
    bug: Bug,
    engine: EngineKind,
    order: u8,
    seed: u64,
    max_execs: u64,
) -> Option<u64> {
    let mut f = seed_file.clone();
    // The seed's own switches stay on (a seed may need two, like collapse + build id).
    f.header.bugs = seed_file.header.bugs.with(bug);
    f.header.order = order;
    f.program.schedule = Schedule::default();
    let kinds = expected_kinds(bug);
    let hit = |o: &crate::Outcome| o.verdict.kind().is_some_and(|k| kinds.contains(&k));
    const BATCH: u64 = 64;
    match engine {
        EngineKind::Pct => {
            let calib = run(&f);
            if hit(&calib) {
                return Some(1);
            }
            let mut pct = Pct::new(seed, 3);
            let mut n = 1;
            while n < max_execs {
                let k = BATCH.min(max_execs - n);
                let batch: Vec<ProgFile> = (0..k)
                    .map(|_| {
                        let mut g = f.clone();
                        g.program.schedule = pct.schedule(&calib.points);
                        g
                    })
                    .collect();
                let outs = run_many(&batch, &RunOptions::default());
                if let Some(i) = outs.iter().position(hit) {
                    return Some(n + 1 + i as u64);
                }
                n += k;
            }
            None
        }
        EngineKind::Random => {
            for n in 1..=max_execs {
                let opts = RunOptions {
                    random: Some(RandomWalk {
                        seed: seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(n),
                    }),
                    ..RunOptions::default()
                };
                if hit(&run_with(&f, &opts)) {
                    return Some(n);
                }
            }
            None
        }
    }
}

/// Raw facade speed: `cpus` model CPUs each take `points` scheduling points (READ_ONCE and
/// atomic adds on shared words) in one execution, preempted every `every` points (0: never).
/// Measures what a scheduling point costs with no model, checker or teardown around it.
pub fn facade(cpus: usize, points: u32, every: u32) -> Throughput {
    use mm_impl::site;
    use mm_impl::sync::{run_cpus, CpuBody, Exec, KAtomicU64, Machine, Obj, Preemption, SchedPlan};
    use std::sync::Arc;
    let preemptions = if every == 0 {
        Vec::new()
    } else {
        (0..cpus as u8)
            .flat_map(|t| {
                (1..points / every).map(move |k| Preemption {
                    thread: t,
                    at: k * every,
                    to: None,
                })
            })
            .collect()
    };
    let exec = Arc::new(Exec::new(
        cpus,
        SchedPlan {
            preemptions,
            max_points_per_thread: points.saturating_add(1),
            ..SchedPlan::default()
        },
    ));
    let words: Arc<Vec<KAtomicU64>> =
        Arc::new((0..8).map(|i| KAtomicU64::new(0, Obj::other(i))).collect());
    let mut m = Machine::new();
    let start = Instant::now();
    let e2 = Arc::clone(&exec);
    let total = m
        .execute(Arc::clone(&exec), move || {
            let bodies: Vec<CpuBody<u64>> = (0..cpus)
                .map(|_| {
                    let w = Arc::clone(&words);
                    let b: CpuBody<u64> = Box::new(move |ctx| {
                        let mut n = 0u64;
                        for i in 0..points / 2 {
                            let x = &w[(i % 8) as usize];
                            if x.read_once(ctx, site!("bench", "READ_ONCE")).is_err() {
                                break;
                            }
                            if x.add_return(ctx, site!("bench", "atomic_add_return"), 1)
                                .is_err()
                            {
                                break;
                            }
                            n += 2;
                        }
                        n
                    });
                    b
                })
                .collect();
            run_cpus(&e2, bodies).iter().map(|r| r.value).sum::<u64>()
        })
        .unwrap_or(0);
    Throughput {
        execs: 1,
        points: total,
        secs: start.elapsed().as_secs_f64(),
        unknown: 0,
        fails: u64::from(exec.take_violation().is_some()),
        check_secs: 0.0,
    }
}

/// What `bench checker` measures.
#[derive(Clone, Debug)]
pub struct CheckerStress {
    /// Executions.
    pub runs: u64,
    /// Unknown verdicts (budget exhausted).
    pub unknown: u64,
    /// Entries of the largest history the checker decided (pass or fail).
    pub largest_decided: usize,
    /// Check times in microseconds, sorted.
    pub micros: Vec<u64>,
}

/// The checker under the heaviest histories the limits allow: `runs` random programs of
/// `threads` x `ops` on the fixed model, each under a random walk (a switch at nearly every
/// point, so nearly every op overlaps every other).
pub fn checker_stress(seed: u64, runs: u64, threads: usize, ops: usize) -> CheckerStress {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out = CheckerStress {
        runs,
        unknown: 0,
        largest_decided: 0,
        micros: Vec::new(),
    };
    for i in 0..runs {
        let f = ProgFile {
            header: Header::default(),
            program: random_program_shape(&mut rng, threads, ops),
        };
        let opts = RunOptions {
            random: Some(RandomWalk { seed: seed ^ i }),
            ..RunOptions::default()
        };
        let o = run_with(&f, &opts);
        out.micros.push(o.check_nanos / 1000);
        match o.verdict {
            crate::Verdict::Unknown(_) => out.unknown += 1,
            crate::Verdict::Pass | crate::Verdict::Fail { .. } => {
                let (entries, _) =
                    crate::executor::spec_history(f.header.world_config(), &f.program, &o.history);
                out.largest_decided = out.largest_decided.max(entries.len());
            }
            _ => {}
        }
    }
    out.micros.sort_unstable();
    out
}
