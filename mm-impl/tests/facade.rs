//! Facade and model smoke tests: the shuttle runner, preemption, deadlock detection, restart.

use mm_impl::gup::{gup_fast, unpin_user_page, Foll};
use mm_impl::huge_memory::{split_huge_pages_pid, SplitOutcome};
use mm_impl::mm_types::VmaKind;
use mm_impl::sync::*;
use mm_impl::violation::Kind;
use mm_impl::world::{World, WorldConfig};
use std::sync::Arc;

type Body = Box<dyn FnOnce(&mut Ctx) -> u32 + Send>;

fn run(
    plan: SchedPlan,
    n: usize,
    mk: impl FnOnce() -> Vec<Body> + Send + 'static,
) -> (Vec<u32>, Option<mm_impl::violation::Violation>, Vec<Switch>) {
    let mut m = Machine::new();
    let exec = Arc::new(Exec::new(n, plan));
    let e2 = Arc::clone(&exec);
    let vals = m
        .execute(Arc::clone(&exec), move || {
            run_cpus(&e2, mk())
                .into_iter()
                .map(|r| r.value)
                .collect::<Vec<_>>()
        })
        .expect("no harness panic");
    (vals, exec.take_violation(), exec.switch_log())
}

type Locks = Arc<(SpinLock<()>, SpinLock<()>)>;

/// cpu0 takes the PMD lock then the PTE lock (the documented order); cpu1 takes them in
/// `second` order. cpu0 is preempted while holding the first lock, so the two contend.
fn two_lockers(second_inverted: bool) -> Option<mm_impl::violation::Violation> {
    let locks: Locks = Arc::new((
        SpinLock::new(100, LockClass::Pml, ()),
        SpinLock::new(101, LockClass::Ptl, ()),
    ));
    let (l0, l1) = (Arc::clone(&locks), Arc::clone(&locks));
    let plan = SchedPlan {
        priorities: vec![0, 1],
        // cpu0's 2nd point is the PTE-lock attempt: it holds the PMD lock when preempted.
        preemptions: vec![Preemption {
            thread: 0,
            at: 2,
            to: Some(1),
        }],
        ..Default::default()
    };
    let (_, v, log) = run(plan, 2, move || {
        let a: Body = Box::new(move |ctx| {
            let _ = (|| -> KResult<()> {
                l0.0.lock(ctx)?;
                l0.1.lock(ctx)?;
                l0.1.unlock(ctx)?;
                l0.0.unlock(ctx)
            })();
            0
        });
        let b: Body = Box::new(move |ctx| {
            let _ = (|| -> KResult<()> {
                let (first, second) = if second_inverted {
                    (&l1.1, &l1.0)
                } else {
                    (&l1.0, &l1.1)
                };
                first.lock(ctx)?;
                second.lock(ctx)?;
                second.unlock(ctx)?;
                first.unlock(ctx)
            })();
            0
        });
        vec![a, b]
    });
    // The preemption really happened inside cpu0's critical section.
    assert!(log
        .iter()
        .any(|s| s.from == Some(0) && s.reason == SwitchReason::Preempt));
    v
}

#[test]
fn taking_locks_in_the_documented_order_under_contention_is_fine() {
    assert_eq!(two_lockers(false), None);
}

#[test]
fn a_lock_order_inversion_is_reported_before_anyone_waits() {
    // cpu1 takes the PTE lock, then the PMD lock: against mm/rmap.c's order. Lockdep reports it
    // at the acquisition, as a value, before the AB-BA wait could become a hang.
    let v = two_lockers(true).expect("a violation");
    assert_eq!(v.kind, Kind::LockOrder, "{v}");
    assert_eq!(v.thread, Some(1));
}

#[test]
fn cpus_spinning_on_each_other_are_a_deadlock_violation() {
    let flags = Arc::new((
        KAtomicU32::new(0, Obj::other(7)),
        KAtomicU32::new(0, Obj::other(8)),
    ));
    let (f0, f1) = (Arc::clone(&flags), Arc::clone(&flags));
    let (_, v, _) = run(SchedPlan::default(), 2, move || {
        let a: Body = Box::new(move |ctx| {
            while f0
                .1
                .read_once(ctx, mm_impl::site!("t", "wait b"))
                .map(|v| v == 0)
                .unwrap_or(false)
            {
                if ctx.cpu_relax(mm_impl::site!("t", "relax")).is_err() {
                    break;
                }
            }
            0
        });
        let b: Body = Box::new(move |ctx| {
            while f1
                .0
                .read_once(ctx, mm_impl::site!("t", "wait a"))
                .map(|v| v == 0)
                .unwrap_or(false)
            {
                if ctx.cpu_relax(mm_impl::site!("t", "relax")).is_err() {
                    break;
                }
            }
            0
        });
        vec![a, b]
    });
    assert_eq!(v.expect("a violation").kind, Kind::Deadlock);
}

#[test]
fn preemption_lands_before_the_named_point() {
    let plan = SchedPlan {
        priorities: vec![0, 1],
        preemptions: vec![Preemption {
            thread: 0,
            at: 3,
            to: Some(1),
        }],
        ..Default::default()
    };
    let (_, v, log) = run(plan, 2, || {
        let mk = || -> Body {
            Box::new(|ctx| {
                for _ in 0..5 {
                    ctx.point(mm_impl::site!("test", "step"), Obj::NONE, Access::Read, 0)
                        .unwrap();
                }
                ctx.npoints()
            })
        };
        vec![mk(), mk()]
    });
    assert!(v.is_none());
    assert_eq!(log[0].to, Some(0));
    assert_eq!(
        (log[1].from, log[1].at, log[1].to, log[1].reason),
        (Some(0), 3, Some(1), SwitchReason::Preempt)
    );
    assert_eq!(log[2].reason, SwitchReason::Exit);
    assert_eq!(log[2].from, Some(1));
}

#[test]
fn harness_panic_restarts_the_runner() {
    let mut m = Machine::new();
    let exec = Arc::new(Exec::new(1, SchedPlan::default()));
    let r: Result<(), HarnessPanic> =
        m.execute(Arc::clone(&exec), || panic!("deliberate harness bug"));
    assert!(r.unwrap_err().0.contains("deliberate"));
    assert_eq!(m.restarts(), 1);
    let exec = Arc::new(Exec::new(1, SchedPlan::default()));
    let r = m.execute(exec, || 7);
    assert_eq!(r, Ok(7));
}

#[test]
fn gup_fast_then_split_is_busy_and_unpin_balances() {
    let (vals, v, _) = run(SchedPlan::default(), 1, || {
        let b: Body = Box::new(|ctx| {
            let w = World::new(ctx, WorldConfig::default()).unwrap();
            let p = gup_fast(ctx, &w, 3, false, Foll::Pin)
                .unwrap()
                .expect("mapped");
            let busy = split_huge_pages_pid(ctx, &w, 0).unwrap();
            assert_eq!(busy, SplitOutcome::Busy);
            unpin_user_page(ctx, &w, p, Foll::Pin).unwrap();
            let ok = split_huge_pages_pid(ctx, &w, 0).unwrap();
            assert_eq!(ok, SplitOutcome::Split);
            w.exit_mmap(ctx).unwrap();
            w.pages.iter().filter(|p| !p.is_free()).count() as u32
        });
        vec![b]
    });
    assert!(v.is_none(), "{v:?}");
    assert_eq!(vals, vec![0], "every page free after exit_mmap");
    let _ = VmaKind::Anon;
}

#[test]
fn a_waiting_writer_holds_back_new_readers() {
    let sem = Arc::new((
        RwSem::new(200, LockClass::MmapLock),
        KAtomicU32::new(0, Obj::other(9)),
    ));
    let (s0, s1, s2) = (Arc::clone(&sem), Arc::clone(&sem), Arc::clone(&sem));
    let plan = SchedPlan {
        priorities: vec![0, 1, 2],
        // cpu0 is preempted while it holds the read lock.
        preemptions: vec![Preemption {
            thread: 0,
            at: 2,
            to: Some(1),
        }],
        ..Default::default()
    };
    let (vals, v, _) = run(plan, 3, move || {
        let a: Body = Box::new(move |ctx| {
            let _ = (|| -> KResult<()> {
                s0.0.down_read(ctx)?;
                ctx.point(mm_impl::site!("t", "read side"), Obj::NONE, Access::Read, 0)?;
                s0.0.up_read(ctx)
            })();
            0
        });
        let b: Body = Box::new(move |ctx| {
            let _ = (|| -> KResult<()> {
                s1.0.down_write(ctx)?;
                s1.1.add_return(ctx, mm_impl::site!("t", "write side"), 1)?;
                s1.0.up_write(ctx)
            })();
            0
        });
        let c: Body = Box::new(move |ctx| {
            (|| -> KResult<u32> {
                s2.0.down_read(ctx)?;
                let seen = s2.1.read_once(ctx, mm_impl::site!("t", "second reader"))?;
                s2.0.up_read(ctx)?;
                Ok(seen)
            })()
            .unwrap_or(u32::MAX)
        });
        vec![a, b, c]
    });
    assert_eq!(v, None);
    // The second reader arrived while the writer waited: it got in only after the writer.
    assert_eq!(vals[2], 1);
}

/// cpu0 runs deferred kernel work that holds lock L (of `class`) when it is preempted; cpu1 is
/// a user thread in the middle of an op that needs L; cpu2 freezes. Returns what
/// freeze_processes() said (1: every thread froze) and the violation, if any.
fn freeze_against_a_lock_holder(class: LockClass) -> (u32, Option<mm_impl::violation::Violation>) {
    let l: Arc<SpinLock<()>> = Arc::new(SpinLock::new(200, class, ()));
    let (l0, l1) = (Arc::clone(&l), Arc::clone(&l));
    let plan = SchedPlan {
        priorities: vec![1, 0, 2],
        preemptions: vec![
            // cpu1 is preempted before it tries L; cpu0 once it holds L.
            Preemption {
                thread: 1,
                at: 1,
                to: Some(0),
            },
            Preemption {
                thread: 0,
                at: 2,
                to: Some(2),
            },
        ],
        ..Default::default()
    };
    let (vals, v, _) = run(plan, 3, move || {
        let kwork: Body = Box::new(move |ctx| {
            ctx.set_kernel_work(true);
            let _ = (|| -> KResult<()> {
                l0.lock(ctx)?;
                ctx.point(
                    mm_impl::site!("test", "work under L"),
                    Obj::NONE,
                    Access::Read,
                    0,
                )?;
                l0.unlock(ctx)
            })();
            0
        });
        let user: Body = Box::new(move |ctx| {
            let _ = (|| -> KResult<()> {
                ctx.point(
                    mm_impl::site!("test", "op start"),
                    Obj::NONE,
                    Access::Read,
                    0,
                )?;
                l1.lock(ctx)?;
                l1.unlock(ctx)?;
                // The op boundary: a user task freezes only here.
                ctx.try_to_freeze()
            })();
            0
        });
        let freezer: Body = Box::new(move |ctx| {
            let froze = ctx.freeze_processes(8).unwrap_or(false);
            ctx.thaw_processes();
            u32::from(froze)
        });
        vec![kwork, user, freezer]
    });
    (vals[2], v)
}

#[test]
fn kernel_work_freezes_holding_a_mutex_and_the_freezer_gives_up_with_ebusy() {
    // cpu0 is frozen holding a sleeping lock; cpu1 cannot reach its op boundary without it:
    // the freezer times out (EBUSY), thaws, and everyone finishes without a deadlock report.
    let (froze, v) = freeze_against_a_lock_holder(LockClass::VmapPurge);
    assert_eq!(v, None);
    assert_eq!(froze, 0, "the freezer must give up");
}

#[test]
fn kernel_work_holding_a_spinlock_runs_on_until_it_is_freezable() {
    // The same with a spinlock: cpu0 is not preemptible while holding it, so it is not frozen
    // there; it releases L, cpu1 gets to its op boundary, and the freeze succeeds.
    let (froze, v) = freeze_against_a_lock_holder(LockClass::Cpa);
    assert_eq!(v, None);
    assert_eq!(froze, 1, "every thread reaches a freezable point");
}
