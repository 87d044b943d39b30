//! Per-execution shared state: the schedule policy, the switch log and the first violation.

use super::site::Obj;
use crate::violation::Violation;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Mutex;

/// A preemption addressed per thread: before its `at`-th scheduling point (1-based), `thread`
/// loses the CPU and drops to the lowest priority (PCT's priority change point).
/// The CPU goes to `to` if that thread is runnable, else to the highest-priority runnable thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Preemption {
    /// The thread that is preempted.
    pub thread: u8,
    /// Its scheduling point number (1-based) at which it is preempted.
    pub at: u32,
    /// Preferred next thread.
    pub to: Option<u8>,
}

/// Online random switching (the "one random choice per scheduling point" baseline):
/// at every point where more than one thread is runnable, pick uniformly among them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RandomWalk {
    /// Seed of the per-thread decision streams.
    pub seed: u64,
}

/// Everything the facade needs to schedule one execution.
#[derive(Clone, Debug, Default)]
pub struct SchedPlan {
    /// Threads from highest to lowest initial priority; missing threads follow in index order.
    pub priorities: Vec<u8>,
    /// Preemptions on top of the default policy.
    pub preemptions: Vec<Preemption>,
    /// Optional random switching at every point (recorded as preemptions in the switch log).
    pub random: Option<RandomWalk>,
    /// Allocations that fail: (thread, n-th allocation of that thread, 1-based).
    pub faults: Vec<(u8, u32)>,
    /// Scheduling points one thread may take before the run stops as `StepBudget`.
    pub max_points_per_thread: u32,
    /// NMIs: (thread, n-th scheduling point of that thread, 1-based); the k-th entry is NMI k.
    pub nmis: Vec<(u8, u32)>,
}

/// Why the CPU changed hands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SwitchReason {
    /// The first thread to run.
    Start,
    /// A planned (or random-walk) preemption.
    Preempt,
    /// The running thread spun in `cpu_relax()`.
    Spin,
    /// The running thread finished its operations (or stopped after a violation).
    Exit,
    /// The thread entered the refrigerator (it runs again once thawed).
    Freeze,
    /// The freezer handed the CPU to a thread that must reach a freezable point.
    Freezer,
}

/// One entry of the realized schedule. Replaying the same plan reproduces the same log.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Switch {
    /// The thread that gave up the CPU (`None` at the start).
    pub from: Option<u8>,
    /// How many scheduling points `from` had taken.
    pub at: u32,
    /// The thread that got it (`None`: every thread finished).
    pub to: Option<u8>,
    /// Why.
    pub reason: SwitchReason,
    /// Length of `from`'s trace at the switch: where its events are cut to merge the traces.
    pub ev: u32,
}

/// Lock-wait and spin bookkeeping guarded by `Exec::sched`.
#[derive(Debug)]
pub(crate) struct SchedState {
    /// Higher runs first. Invariant: values are distinct.
    pub prio: Vec<i64>,
    /// Next value handed to a preempted thread; decreases.
    pub lowest: i64,
    pub finished: Vec<bool>,
    /// Total published writes at the thread's last spin.
    pub spin_epoch: Vec<Option<u64>>,
    /// The thread's last two spins saw the same epoch: it waits, its loop cannot progress
    /// alone. (One spin is not enough: a retry loop spins once after it saw a change, then
    /// acts on what it saw.)
    pub spun_twice: Vec<bool>,
    /// Writes each thread had made when it last gave up the CPU.
    pub writes: Vec<u64>,
    /// Lock the thread is waiting for, with the owners (bitmask) it saw and the total of
    /// published writes when it looked.
    pub waits: Vec<Option<(Obj, u32, u64)>>,
    pub log: Vec<Switch>,
    /// Shuttle task index the facade wants next (0 is the main task).
    pub next: Option<usize>,
    /// In the refrigerator: not runnable until `thaw_processes()`.
    // invariant: a frozen thread holds no spinlock and is not finished
    pub frozen: Vec<bool>,
    /// The thread running `freeze_processes()` (`pm_freezing`), if any.
    pub freezer: Option<usize>,
}

impl SchedState {
    fn new(n: usize, priorities: &[u8]) -> SchedState {
        let mut order: Vec<usize> = Vec::with_capacity(n);
        for &t in priorities {
            let t = t as usize;
            if t < n && !order.contains(&t) {
                order.push(t);
            }
        }
        for t in 0..n {
            if !order.contains(&t) {
                order.push(t);
            }
        }
        let mut prio = vec![0i64; n];
        for (rank, &t) in order.iter().enumerate() {
            prio[t] = (n - rank) as i64;
        }
        SchedState {
            prio,
            lowest: 0,
            finished: vec![false; n],
            spin_epoch: vec![None; n],
            spun_twice: vec![false; n],
            writes: vec![0; n],
            waits: vec![None; n],
            log: Vec::new(),
            next: None,
            frozen: vec![false; n],
            freezer: None,
        }
    }

    pub fn total_writes(&self) -> u64 {
        self.writes.iter().sum()
    }

    pub fn live(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.prio.len()).filter(|&t| !self.finished[t] && !self.frozen[t])
    }

    /// Highest-priority unfinished thread other than `exclude`, preferring threads that can
    /// still make progress (not spinning at the current write epoch).
    pub fn pick(&self, exclude: Option<usize>) -> Option<usize> {
        let total = self.total_writes();
        let fresh = |t: usize| !self.stuck(t, total);
        let best = |want_fresh: bool| {
            self.live()
                .filter(|&t| Some(t) != exclude && (!want_fresh || fresh(t)))
                .max_by_key(|&t| self.prio[t])
        };
        best(true).or_else(|| best(false))
    }

    /// Is thread `t` waiting at epoch `total`: it spun twice at it without anything written?
    pub fn stuck(&self, t: usize, total: u64) -> bool {
        self.spin_epoch[t] == Some(total) && self.spun_twice[t]
    }

    pub fn lower(&mut self, t: usize) {
        self.lowest -= 1;
        self.prio[t] = self.lowest;
    }

    /// Does waiting for a lock owned by `owners` close a cycle back to `me`? Another CPU's wait
    /// counts only if nothing was written since it looked at the lock: a wait recorded before
    /// the owner released the lock is stale until that CPU looks again. (Its later spins do not
    /// refresh it: an NMI or a preemption can come between the look and the spin.)
    pub fn wait_cycle(&self, me: usize, owners: u32) -> bool {
        let total = self.total_writes();
        let mut seen = 0u32;
        let mut stack = vec![owners];
        while let Some(mask) = stack.pop() {
            for u in 0..self.prio.len() {
                if mask & (1 << u) == 0 || seen & (1 << u) != 0 {
                    continue;
                }
                if u == me {
                    return true;
                }
                seen |= 1 << u;
                if let Some((_, m, seen_at)) = self.waits[u] {
                    if seen_at == total {
                        stack.push(m);
                    }
                }
            }
        }
        false
    }
}

/// A grace-period cookie: every CPU's RCU reader state when it was taken.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpState(Vec<u64>);

/// State shared by every task of one execution. Built afresh for every execution.
pub struct Exec {
    /// Set once the first violation is recorded: every thread stops at its next point.
    pub(crate) abort: AtomicBool,
    pub(crate) violation: Mutex<Option<Violation>>,
    pub(crate) sched: Mutex<SchedState>,
    /// Per-thread irq-off depth, published for lockless-walker bookkeeping.
    pub(crate) irqs_off: Vec<AtomicU32>,
    /// Per-thread RCU reader state, `(sections left << 1) | inside`: an irq-off section or an
    /// `rcu_read_lock()` section is a read-side critical section (RCU flavours are merged).
    pub(crate) rcu: Vec<AtomicU64>,
    pub(crate) nthreads: usize,
    pub(crate) plan: SchedPlan,
}

impl Exec {
    /// Shared state for `nthreads` model threads under `plan`.
    pub fn new(nthreads: usize, plan: SchedPlan) -> Exec {
        assert!(nthreads <= 16, "at most 16 model threads");
        Exec {
            abort: AtomicBool::new(false),
            violation: Mutex::new(None),
            sched: Mutex::new(SchedState::new(nthreads, &plan.priorities)),
            irqs_off: (0..nthreads).map(|_| AtomicU32::new(0)).collect(),
            rcu: (0..nthreads).map(|_| AtomicU64::new(0)).collect(),
            nthreads,
            plan,
        }
    }

    /// Number of model threads.
    pub fn nthreads(&self) -> usize {
        self.nthreads
    }

    pub(crate) fn lock_sched(&self) -> std::sync::MutexGuard<'_, SchedState> {
        // Poisoning means a harness panic, which already failed the run.
        self.sched.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record `v` if it is the first violation; stop every thread.
    pub fn report(&self, v: Violation) {
        let mut slot = self.violation.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            *slot = Some(v);
        }
        self.abort.store(true, Ordering::SeqCst);
    }

    /// Has a violation been recorded?
    pub fn aborted(&self) -> bool {
        self.abort.load(Ordering::Relaxed)
    }

    /// The first violation, if any.
    pub fn take_violation(&self) -> Option<Violation> {
        self.violation
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }

    /// The realized schedule so far.
    pub fn switch_log(&self) -> Vec<Switch> {
        self.lock_sched().log.clone()
    }

    /// `get_state_synchronize_rcu()`: the RCU reader state of every CPU now.
    pub fn rcu_snapshot(&self) -> GpState {
        GpState(self.rcu.iter().map(|r| r.load(Ordering::Relaxed)).collect())
    }

    /// `poll_state_synchronize_rcu()`: has every CPU that was inside a read-side section when
    /// `gp` was taken left that section since?
    pub fn rcu_gp_done(&self, gp: &GpState) -> bool {
        gp.0.iter()
            .zip(&self.rcu)
            .all(|(&then, now)| then & 1 == 0 || now.load(Ordering::Relaxed) != then)
    }

    /// Is any thread other than `me` inside an irq-off section?
    pub fn other_irqs_off(&self, me: usize) -> bool {
        self.irqs_off
            .iter()
            .enumerate()
            .any(|(t, d)| t != me && d.load(Ordering::Relaxed) > 0)
    }
}
