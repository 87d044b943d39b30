//! Exhaustive enumeration of every schedule with at most one preemption.
//!
//! For each initial priority order, the unpreempted run gives each thread's point count; a
//! single preemption at (thread, n) for n beyond that count could never trigger, because the
//! thread's prefix before its preemption is the same as in the unpreempted run. With three or
//! more threads, each preemption is tried with every explicit target too.

use crate::executor::{run, run_many, Outcome, RunOptions};
use crate::program::{ProgFile, Schedule};
use mm_impl::sync::Preemption;

fn permutations(n: usize) -> Vec<Vec<u8>> {
    if n == 0 {
        return vec![Vec::new()];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, (n - 1) as u8);
            out.push(q);
        }
    }
    out
}

/// Run `file` under every schedule with at most one preemption and call `each` with every
/// (schedule, outcome). Returns how many schedules ran.
pub fn for_each_one_preemption(
    file: &ProgFile,
    mut each: impl FnMut(&Schedule, &Outcome),
) -> usize {
    let n = file.program.threads.len();
    let mut count = 0;
    for priorities in permutations(n) {
        let mut f = file.clone();
        f.program.schedule = Schedule {
            priorities: priorities.clone(),
            preemptions: Vec::new(),
        };
        let base = run(&f);
        each(&f.program.schedule, &base);
        count += 1;
        let mut batch = Vec::new();
        for t in 0..n {
            for at in 1..=base.points[t] {
                let targets: Vec<Option<u8>> = if n > 2 {
                    (0..n as u8)
                        .filter(|&u| u as usize != t)
                        .map(Some)
                        .collect()
                } else {
                    vec![None]
                };
                for to in targets {
                    let mut g = f.clone();
                    g.program.schedule.preemptions = vec![Preemption {
                        thread: t as u8,
                        at,
                        to,
                    }];
                    batch.push(g);
                }
            }
        }
        for (g, out) in batch.iter().zip(run_many(&batch, &RunOptions::default())) {
            each(&g.program.schedule, &out);
            count += 1;
        }
    }
    count
}
