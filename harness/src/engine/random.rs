//! The random-walk baseline: one uniformly random choice among the runnable threads at every
//! scheduling point (what shuttle's random scheduler does), seeded and replayable.

use crate::executor::Outcome;
use crate::program::Schedule;
use mm_impl::sync::{Preemption, SwitchReason};

/// The program schedule that replays a random-walk run exactly: its initial priorities and
/// every switch the walk made, as preemptions with explicit targets.
pub fn realized_schedule(priorities: &[u8], out: &Outcome) -> Schedule {
    Schedule {
        priorities: priorities.to_vec(),
        preemptions: out
            .switches
            .iter()
            .filter(|s| s.reason == SwitchReason::Preempt)
            .filter_map(|s| {
                Some(Preemption {
                    thread: s.from?,
                    at: s.at,
                    to: s.to,
                })
            })
            .collect(),
    }
}
