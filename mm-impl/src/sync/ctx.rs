//! The per-task CPU context: scheduling points, preemption, spinning, irq state, fault plan.
//!
//! Kernel code reaches per-CPU state through `current`/`this_cpu`; the model passes a `&mut Ctx`
//! explicitly instead, because every shuttle task shares one OS thread (a `thread_local!` would
//! be shared by all CPUs) and because an explicit context keeps executions deterministic.

use super::exec::{Exec, SwitchReason};
use super::lock::LockClass;
use super::site::{Access, Event, EventKind, Obj, Site, OP_SITE};
use crate::violation::{Kind, Violation};
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// The running thread must stop: a violation was recorded (by it or another CPU).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stop;

/// Result of every model function that can reach a scheduling point.
pub type KResult<T> = Result<T, Stop>;

/// What an NMI runs: called with the CPU's context and the NMI's number in the plan.
pub type NmiHandler = Box<dyn FnMut(&mut Ctx, usize) -> KResult<()> + Send>;

/// One model CPU (= one program thread), owned by its shuttle task.
pub struct Ctx {
    tid: u8,
    exec: Arc<Exec>,
    /// Scheduling points taken so far (the address space of preemptions and NMIs).
    npoints: u32,
    nwrites: u64,
    nallocs: u32,
    irq_depth: u32,
    /// `rcu_read_lock()` nesting.
    rcu_depth: u32,
    /// Locks held, outermost first, for lockdep and deadlock detection.
    pub(crate) held: Vec<(LockClass, Obj)>,
    /// This task's trace, in order.
    events: Vec<Event>,
    /// Planned preemptions of this thread: (at, to), sorted by `at`.
    preempts: Vec<(u32, Option<u8>)>,
    cursor: usize,
    /// Allocation numbers (1-based) of this thread that fail.
    faults: Vec<u32>,
    rng: Option<u64>,
    max_points: u32,
    /// Teardown context on the main task: no other CPU exists, nothing to switch to.
    solo: bool,
    trace_values: bool,
    /// Times this CPU got the CPU back after a switch.
    switches_in: u64,
    /// Total published writes when this CPU last gave up the CPU: what its last observations saw.
    out_epoch: u64,
    /// Published writes when this CPU first gave up the CPU during the current scheduling
    /// point (an NMI's points run inside it, and can be preempted), and that value for the
    /// last point taken outside NMI context.
    first_out: Option<u64>,
    first_out_prev: Option<u64>,
    /// Planned NMIs of this CPU: (at, NMI number), sorted by `at`.
    nmis: Vec<(u32, usize)>,
    nmi_cursor: usize,
    /// Inside an NMI handler (NMIs do not nest).
    in_nmi: bool,
    nmi_handler: Option<NmiHandler>,
    /// Running deferred kernel work (a non-freezable worker): the freezer may catch it at any
    /// preemptible point, not only at an op boundary.
    kwork: bool,
}

impl Ctx {
    /// The context of model thread `tid` under the execution's plan.
    pub fn new(tid: u8, exec: Arc<Exec>) -> Ctx {
        let mut preempts: Vec<(u32, Option<u8>)> = exec
            .plan
            .preemptions
            .iter()
            .filter(|p| p.thread == tid && p.at > 0)
            .map(|p| (p.at, p.to))
            .collect();
        preempts.sort();
        let mut faults: Vec<u32> = exec
            .plan
            .faults
            .iter()
            .filter(|f| f.0 == tid)
            .map(|f| f.1)
            .collect();
        faults.sort();
        let mut nmis: Vec<(u32, usize)> = exec
            .plan
            .nmis
            .iter()
            .enumerate()
            .filter(|(_, n)| n.0 == tid)
            .map(|(k, n)| (n.1, k))
            .collect();
        nmis.sort();
        let rng = exec
            .plan
            .random
            .map(|r| splitmix(r.seed ^ (u64::from(tid) + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)));
        let max_points = match exec.plan.max_points_per_thread {
            0 => 200_000,
            n => n,
        };
        Ctx {
            tid,
            exec,
            npoints: 0,
            nwrites: 0,
            nallocs: 0,
            irq_depth: 0,
            rcu_depth: 0,
            held: Vec::new(),
            events: Vec::with_capacity(256),
            preempts,
            cursor: 0,
            faults,
            rng,
            max_points,
            solo: false,
            trace_values: true,
            switches_in: 0,
            out_epoch: 0,
            first_out: None,
            first_out_prev: None,
            nmis,
            nmi_cursor: 0,
            in_nmi: false,
            nmi_handler: None,
            kwork: false,
        }
    }

    /// A context for single-threaded setup and teardown on the main task (no switching).
    pub fn solo(exec: Arc<Exec>) -> Ctx {
        let tid = exec.nthreads() as u8;
        let mut c = Ctx::new(tid, exec);
        c.solo = true;
        c.preempts.clear();
        c.faults.clear();
        c.nmis.clear();
        c.rng = None;
        c
    }

    /// Install what this CPU's planned NMIs run.
    pub fn set_nmi_handler(&mut self, h: NmiHandler) {
        self.nmi_handler = Some(h);
    }

    /// Is this CPU inside an NMI handler?
    pub fn in_nmi(&self) -> bool {
        self.in_nmi
    }

    /// Run the NMIs planned at or before the current point. The handler runs inline on this
    /// CPU's task, whatever the interrupted code holds (spinlocks, irqs off), and not nested.
    fn fire_nmis(&mut self, upto: u32) -> KResult<()> {
        while !self.in_nmi
            && self.nmi_cursor < self.nmis.len()
            && self.nmis[self.nmi_cursor].0 <= upto
        {
            let k = self.nmis[self.nmi_cursor].1;
            self.nmi_cursor += 1;
            let Some(mut h) = self.nmi_handler.take() else {
                continue;
            };
            self.in_nmi = true;
            let r = h(self, k);
            self.in_nmi = false;
            self.nmi_handler = Some(h);
            r?;
        }
        Ok(())
    }

    /// The CPU's thread has finished: NMIs planned past its last point run now, on the idle CPU.
    pub fn run_remaining_nmis(&mut self) -> KResult<()> {
        self.fire_nmis(u32::MAX)
    }

    /// This CPU's number (= the program thread index).
    pub fn tid(&self) -> u8 {
        self.tid
    }

    /// Scheduling points taken so far.
    pub fn npoints(&self) -> u32 {
        self.npoints
    }

    /// The execution this CPU belongs to.
    pub fn exec(&self) -> &Arc<Exec> {
        &self.exec
    }

    /// Hand the trace over (at thread exit).
    pub fn take_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The scheduling point itself: stop if aborted, count it, and switch CPUs if the plan says
    /// so. Called *before* the access, so a preemption at point n lands before access n.
    #[inline]
    pub(crate) fn sched_point(&mut self) -> KResult<()> {
        if self.exec.aborted() {
            return Err(Stop);
        }
        if !self.in_nmi {
            self.first_out = None;
        }
        // An NMI planned at this point arrives before it: its own points take the numbers from
        // here on, and the interrupted access comes after them, so every point number names
        // exactly one place (preemptions and replayed random walks rely on that).
        if self.nmi_cursor < self.nmis.len() && self.nmis[self.nmi_cursor].0 <= self.npoints + 1 {
            self.fire_nmis(self.npoints + 1)?;
        }
        self.npoints += 1;
        if self.npoints > self.max_points {
            return Err(self.violation(
                Kind::StepBudget,
                "scheduler",
                None,
                format!("more than {} scheduling points on one CPU", self.max_points),
            ));
        }
        if self.cursor < self.preempts.len() && self.preempts[self.cursor].0 <= self.npoints {
            let mut to = None;
            while self.cursor < self.preempts.len() && self.preempts[self.cursor].0 <= self.npoints
            {
                to = self.preempts[self.cursor].1;
                self.cursor += 1;
            }
            self.preempt(to)?;
        } else if self.rng.is_some() {
            self.random_step()?;
        }
        if !self.in_nmi {
            self.first_out_prev = self.first_out;
        }
        Ok(())
    }

    /// Record a completed access in the trace.
    #[inline]
    pub(crate) fn record(
        &mut self,
        site: &'static Site,
        obj: Obj,
        acc: Access,
        val: u64,
        wrote: bool,
    ) {
        if wrote {
            self.nwrites += 1;
        }
        let val = if self.trace_values { val } else { 0 };
        self.events.push(Event {
            site,
            obj,
            val,
            kind: EventKind::Point(acc),
        });
    }

    /// Record a plain store (not a scheduling point): it still counts as progress for the
    /// spin detector and shows in race diagrams.
    #[inline]
    pub(crate) fn record_plain(&mut self, site: &'static Site, obj: Obj, val: u64) {
        self.nwrites += 1;
        self.events.push(Event {
            site,
            obj,
            val: if self.trace_values { val } else { 0 },
            kind: EventKind::Plain,
        });
    }

    /// A scheduling point with no access of its own (e.g. a lockless walk step).
    pub fn point(&mut self, site: &'static Site, obj: Obj, acc: Access, val: u64) -> KResult<()> {
        self.sched_point()?;
        self.record(site, obj, acc, val, false);
        Ok(())
    }

    /// Mark the start of op `idx` of this thread in the trace.
    pub fn op_begin(&mut self, idx: usize) {
        self.events.push(Event {
            site: &OP_SITE,
            obj: Obj::NONE,
            val: idx as u64,
            kind: EventKind::OpBegin,
        });
    }

    /// Mark the end of op `idx` of this thread in the trace.
    pub fn op_end(&mut self, idx: usize) {
        self.events.push(Event {
            site: &OP_SITE,
            obj: Obj::NONE,
            val: idx as u64,
            kind: EventKind::OpEnd,
        });
    }

    fn barrier(&mut self, site: &'static Site) {
        self.events.push(Event {
            site,
            obj: Obj::NONE,
            val: 0,
            kind: EventKind::Barrier,
        });
    }

    /// `smp_wmb()`: order earlier stores before later ones (recorded for store-buffer emulation).
    pub fn smp_wmb(&mut self, site: &'static Site) {
        self.barrier(site);
    }

    /// `smp_rmb()`: order earlier loads before later ones.
    pub fn smp_rmb(&mut self, site: &'static Site) {
        self.barrier(site);
    }

    /// `smp_mb()`: full barrier.
    pub fn smp_mb(&mut self, site: &'static Site) {
        self.barrier(site);
    }

    /// Record `kind` as the execution's violation (if first) and return the stop token.
    pub fn violation(&mut self, kind: Kind, func: &str, pfn: Option<u32>, detail: String) -> Stop {
        self.exec.report(Violation {
            kind,
            func: func.to_string(),
            thread: if self.solo { None } else { Some(self.tid) },
            pfn,
            detail,
        });
        Stop
    }

    /// Fault plan: does this thread's next allocation fail? Counts every allocation attempt.
    pub fn should_fail_alloc(&mut self) -> bool {
        self.nallocs += 1;
        self.faults.binary_search(&self.nallocs).is_ok()
    }

    /// `local_irq_disable()` (also the gup-fast lockless-walk section).
    pub fn local_irq_disable(&mut self) {
        let was = self.in_rcu_reader();
        self.irq_depth += 1;
        if !self.solo {
            self.exec.irqs_off[self.tid as usize].store(self.irq_depth, Ordering::Relaxed);
        }
        self.rcu_transition(was);
    }

    /// `local_irq_enable()`.
    pub fn local_irq_enable(&mut self) {
        debug_assert!(self.irq_depth > 0, "unbalanced local_irq_enable");
        let was = self.in_rcu_reader();
        self.irq_depth = self.irq_depth.saturating_sub(1);
        if !self.solo {
            self.exec.irqs_off[self.tid as usize].store(self.irq_depth, Ordering::Relaxed);
        }
        self.rcu_transition(was);
    }

    /// `rcu_read_lock()`: a read-side section (what `pte_offset_map()` takes for a lockless
    /// walk of a PTE table that `pte_free_defer()` may retire). Not a scheduling point.
    pub fn rcu_read_lock(&mut self) {
        let was = self.in_rcu_reader();
        self.rcu_depth += 1;
        self.rcu_transition(was);
    }

    /// `rcu_read_unlock()`.
    pub fn rcu_read_unlock(&mut self) {
        debug_assert!(self.rcu_depth > 0, "unbalanced rcu_read_unlock");
        let was = self.in_rcu_reader();
        self.rcu_depth = self.rcu_depth.saturating_sub(1);
        self.rcu_transition(was);
    }

    /// Inside an RCU read-side section (irqs off counts: the flavours are merged)?
    pub fn in_rcu_reader(&self) -> bool {
        self.irq_depth > 0 || self.rcu_depth > 0
    }

    /// Publish entering or leaving a read-side section, for grace-period polling.
    fn rcu_transition(&mut self, was: bool) {
        let now = self.in_rcu_reader();
        if self.solo || was == now {
            return;
        }
        let r = &self.exec.rcu[self.tid as usize];
        let v = r.load(Ordering::Relaxed);
        // Entering sets the low bit; leaving clears it and counts one more section left.
        r.store(if now { v | 1 } else { (v | 1) + 1 }, Ordering::Relaxed);
    }

    /// Are interrupts off on this CPU?
    pub fn irqs_disabled(&self) -> bool {
        self.irq_depth > 0
    }

    /// `cpu_relax()` in a retry or spin loop: a scheduling point where the CPU is handed to a
    /// thread that can make progress. If none can (every live CPU spun without any write since),
    /// the run is a deadlock.
    pub fn cpu_relax(&mut self, site: &'static Site) -> KResult<()> {
        self.sched_point()?;
        // If the CPU was switched out between its check and this relax, its check saw the
        // state of when it left, not the current one: it is not stuck yet.
        // That includes a switch while an NMI ran between the check and this relax.
        let seen_then = self.first_out_prev;
        self.record(site, Obj::NONE, Access::Relax, 0, false);
        if self.solo {
            return Err(self.violation(
                Kind::Deadlock,
                site.func,
                None,
                "teardown spins: nothing else can make progress".into(),
            ));
        }
        let me = self.tid as usize;
        let mut s = self.exec.lock_sched();
        s.writes[me] = self.nwrites;
        let total = s.total_writes();
        let seen = seen_then.unwrap_or(total);
        let prev = s.spin_epoch[me].replace(seen);
        s.spun_twice[me] = prev == Some(seen) && seen != u64::MAX;
        let fresh = s
            .live()
            .filter(|&t| t != me && !s.stuck(t, total))
            .max_by_key(|&t| s.prio[t]);
        match fresh {
            Some(to) => {
                let left = self.hand_over(&mut s, to, SwitchReason::Spin);
                drop(s);
                self.left_at(left);
                self.yield_cpu()
            }
            None if seen == total && prev == Some(total) => {
                let waits = s.waits.clone();
                drop(s);
                Err(self.violation(
                    Kind::Deadlock,
                    site.func,
                    None,
                    format!("every CPU spins without progress; lock waits {waits:?}"),
                ))
            }
            None => Ok(()),
        }
    }

    /// A planned preemption: drop to the lowest priority and hand the CPU over.
    /// Consumed without effect when no other thread is runnable.
    fn preempt(&mut self, to: Option<u8>) -> KResult<()> {
        let me = self.tid as usize;
        let mut s = self.exec.lock_sched();
        if s.live().all(|t| t == me) {
            return Ok(());
        }
        s.writes[me] = self.nwrites;
        s.lower(me);
        let target = match to.map(usize::from) {
            Some(t) if t != me && t < s.finished.len() && !s.finished[t] && !s.frozen[t] => t,
            _ => match s.pick(Some(me)) {
                Some(t) => t,
                None => return Ok(()),
            },
        };
        let left = self.hand_over(&mut s, target, SwitchReason::Preempt);
        drop(s);
        self.left_at(left);
        self.yield_cpu()
    }

    /// Random-walk baseline: pick uniformly among runnable threads at this point.
    fn random_step(&mut self) -> KResult<()> {
        let me = self.tid as usize;
        let live: Vec<usize> = self.exec.lock_sched().live().collect();
        if live.len() < 2 {
            return Ok(());
        }
        let state = self.rng.get_or_insert(0);
        *state = splitmix(*state);
        let pick = live[(*state % live.len() as u64) as usize];
        if pick == me {
            return Ok(());
        }
        self.preempt(Some(pick as u8))
    }

    /// Give the CPU to thread `to`: log the switch and name the next task. Returns the
    /// published writes at that moment, what this CPU had seen when it left ([`Ctx::left_at`]).
    fn hand_over(&self, s: &mut super::exec::SchedState, to: usize, reason: SwitchReason) -> u64 {
        s.log.push(super::exec::Switch {
            from: Some(self.tid),
            at: self.npoints,
            to: Some(to as u8),
            reason,
            ev: self.events.len() as u32,
        });
        s.next = Some(to + 1);
        s.total_writes()
    }

    /// Remember the epoch this CPU left at (the first one since its last point, for an NMI).
    fn left_at(&mut self, epoch: u64) {
        self.out_epoch = epoch;
        self.first_out.get_or_insert(epoch);
    }

    fn yield_cpu(&mut self) -> KResult<()> {
        shuttle::thread::yield_now();
        self.switches_in += 1;
        if self.exec.aborted() {
            return Err(Stop);
        }
        // Deferred kernel work is not frozen, it is simply not run while the snapshot is taken:
        // wherever it was preempted counts as its stopping point, if that point is preemptible
        // (not inside an NMI, a spinlock or an irq-off section).
        if self.kwork
            && !self.in_nmi
            && self.irq_depth == 0
            && self.held.iter().all(|(c, _)| c.sleeps())
        {
            return self.try_to_freeze();
        }
        Ok(())
    }

    /// Called by the thread wrapper when this thread has no more work: give the CPU to the
    /// highest-priority live thread, or back to the main task.
    pub fn exit(&mut self) {
        let me = self.tid as usize;
        let mut s = self.exec.lock_sched();
        s.writes[me] = self.nwrites;
        s.finished[me] = true;
        s.waits[me] = None;
        let mut to = s.pick(None);
        if to.is_none() && s.frozen.iter().any(|&f| f) {
            // The freezer is gone without thawing (it cannot be, but a frozen task left behind
            // would hang the main task's join): thaw them.
            s.frozen.iter_mut().for_each(|f| *f = false);
            s.freezer = None;
            to = s.pick(None);
        }
        s.log.push(super::exec::Switch {
            from: Some(self.tid),
            at: self.npoints,
            to: to.map(|t| t as u8),
            reason: SwitchReason::Exit,
            ev: self.events.len() as u32,
        });
        s.next = Some(to.map_or(0, |t| t + 1));
        if !self.solo {
            self.exec.irqs_off[me].store(0, Ordering::Relaxed);
            let r = &self.exec.rcu[me];
            let v = r.load(Ordering::Relaxed);
            if v & 1 != 0 {
                r.store(v + 1, Ordering::Relaxed);
            }
        }
    }

    /// Before spinning on a lock owned by `owners`: report a deadlock if waiting closes a cycle.
    pub(crate) fn wait_for(&mut self, lock: Obj, owners: u32, site: &'static Site) -> KResult<()> {
        if self.solo {
            return Err(self.violation(
                Kind::Deadlock,
                site.func,
                None,
                format!("teardown waits for {} held by {owners:#b}", lock.describe()),
            ));
        }
        let me = self.tid as usize;
        let mut s = self.exec.lock_sched();
        s.writes[me] = self.nwrites;
        if owners & (1 << me) != 0 || s.wait_cycle(me, owners) {
            let waits = s.waits.clone();
            drop(s);
            return Err(self.violation(
                Kind::Deadlock,
                site.func,
                None,
                format!(
                    "cpu{me} waits for {} held by cpus {owners:#b}; waits {waits:?}",
                    lock.describe()
                ),
            ));
        }
        let total = s.total_writes();
        s.waits[me] = Some((lock, owners, total));
        Ok(())
    }

    /// The wait is over (the lock was acquired).
    pub(crate) fn wait_done(&mut self) {
        if !self.solo {
            let me = self.tid as usize;
            let mut s = self.exec.lock_sched();
            s.waits[me] = None;
        }
    }

    /// Bit of this CPU in lock owner masks (the solo context uses bit 31).
    pub(crate) fn owner_bit(&self) -> u32 {
        if self.solo {
            1 << 31
        } else {
            1 << self.tid
        }
    }
}

impl Ctx {
    /// Mark this CPU as running deferred kernel work (vfree's work), or user ops again.
    pub fn set_kernel_work(&mut self, on: bool) {
        self.kwork = on;
    }

    /// Record a step that is not a scheduling point (the snapshot's copy runs with every other
    /// CPU frozen): it shows in race diagrams.
    pub fn note(&mut self, site: &'static Site, obj: Obj, val: u64) {
        self.record_plain(site, obj, val);
    }

    /// Is a freezer other than this CPU at work (`freezing(current)`)?
    pub fn freezing(&self) -> bool {
        let me = self.tid as usize;
        !self.solo && self.exec.lock_sched().freezer.is_some_and(|f| f != me)
    }

    /// kernel/freezer.c `try_to_freeze()` / `__refrigerator()`: if a freezer is at work, stop
    /// here until `thaw_processes()`. Not a scheduling point: it reads `pm_freezing` only.
    pub fn try_to_freeze(&mut self) -> KResult<()> {
        if !self.freezing() {
            return Ok(());
        }
        let me = self.tid as usize;
        let mut s = self.exec.lock_sched();
        s.writes[me] = self.nwrites;
        s.frozen[me] = true;
        let Some(to) = s.pick(None) else {
            // Nobody left to run (the freezer stopped): nothing to wait for.
            s.frozen[me] = false;
            return Ok(());
        };
        let left = self.hand_over(&mut s, to, SwitchReason::Freeze);
        drop(s);
        self.left_at(left);
        // Scheduled again only once thawed (frozen threads are not live).
        shuttle::thread::yield_now();
        self.switches_in += 1;
        if self.exec.aborted() {
            return Err(Stop);
        }
        Ok(())
    }

    /// kernel/power/process.c `freeze_processes()` + `try_to_freeze_tasks()`: announce the
    /// freeze and hand the CPU to every other thread until each sits in the refrigerator.
    /// Gives up after `rounds` hand-overs (the kernel's 20 s timeout, made deterministic); the
    /// caller then thaws and fails with EBUSY. Returns whether every thread froze.
    pub fn freeze_processes(&mut self, rounds: u32) -> KResult<bool> {
        let me = self.tid as usize;
        {
            let mut s = self.exec.lock_sched();
            if s.freezer.is_some() {
                return Ok(false);
            }
            s.freezer = Some(me);
        }
        for _ in 0..rounds {
            let mut s = self.exec.lock_sched();
            s.writes[me] = self.nwrites;
            // Prefer a thread that can make progress over one spinning on a frozen holder.
            let Some(to) = s.pick(Some(me)) else {
                return Ok(true);
            };
            // The freezer is always worth switching to: it counts rounds toward its timeout.
            s.spin_epoch[me] = None;
            let left = self.hand_over(&mut s, to, SwitchReason::Freezer);
            drop(s);
            self.left_at(left);
            shuttle::thread::yield_now();
            self.switches_in += 1;
            if self.exec.aborted() {
                self.thaw_processes();
                return Err(Stop);
            }
        }
        Ok(false)
    }

    /// kernel/power/process.c `thaw_processes()`: every frozen thread is runnable again. Not a
    /// scheduling point; the thawed threads run when the scheduler next picks them.
    pub fn thaw_processes(&mut self) {
        let me = self.tid as usize;
        let mut s = self.exec.lock_sched();
        if s.freezer == Some(me) {
            s.freezer = None;
            s.frozen.iter_mut().for_each(|f| *f = false);
        }
    }
}

/// SplitMix64 step: a tiny deterministic generator, enough for the random-walk baseline.
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}
