//! PCT schedules: random initial priorities and a few priority change points.
//!
//! Burckhardt, Kothari, Musuvathi, Nagarakatte, "A Randomized Scheduler with Probabilistic
//! Guarantees of Finding Bugs", ASPLOS 2010. A bug of depth d is found with probability at least
//! 1/(n k^(d-1)) per run for n threads and k steps. Change points are addressed per thread
//! (thread, n-th point) rather than by global step, so a program edit elsewhere keeps them.

use crate::program::Schedule;
use mm_impl::sync::Preemption;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};

/// A seeded PCT schedule sampler.
pub struct Pct {
    rng: StdRng,
    /// Largest number of change points per schedule (PCT depth minus one); at least one.
    pub max_changes: usize,
}

impl Pct {
    /// A sampler from `seed` with up to `max_changes` change points per schedule.
    pub fn new(seed: u64, max_changes: usize) -> Pct {
        Pct {
            rng: StdRng::seed_from_u64(seed),
            max_changes: max_changes.max(1),
        }
    }

    /// A schedule for a program whose threads took `points` scheduling points when run
    /// unpreempted: a random priority order and 1..=max_changes change points drawn uniformly
    /// over all points.
    pub fn schedule(&mut self, points: &[u32]) -> Schedule {
        let n = points.len();
        let mut priorities: Vec<u8> = (0..n as u8).collect();
        priorities.shuffle(&mut self.rng);
        let total: u64 = points.iter().map(|&p| u64::from(p)).sum();
        let mut preemptions = Vec::new();
        if total > 0 {
            let k = self.rng.random_range(1..=self.max_changes);
            for _ in 0..k {
                let mut r = self.rng.random_range(0..total);
                for (t, &p) in points.iter().enumerate() {
                    if r < u64::from(p) {
                        preemptions.push(Preemption {
                            thread: t as u8,
                            at: r as u32 + 1,
                            to: None,
                        });
                        break;
                    }
                    r -= u64::from(p);
                }
            }
        }
        preemptions.sort();
        Schedule {
            priorities,
            preemptions,
        }
    }

    /// The underlying generator, for callers that also draw programs.
    pub fn rng(&mut self) -> &mut StdRng {
        &mut self.rng
    }
}
