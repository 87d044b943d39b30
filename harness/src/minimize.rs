//! Crash minimization: the smallest program (threads, ops, preemptions, faults) that still
//! reproduces the same signature, by greedy removal to a fixpoint (delta debugging, one element
//! at a time; runs are tens of microseconds, so the simple search is fast enough).
//!
//! Schedules are addressed per thread (thread, n-th point), so removing another thread's ops,
//! or a thread's ops after its preempted point, leaves the preemption where it was.

use crate::executor::{run, Verdict};
use crate::program::{Handle, Op, ProgFile, Program};
use oracles::signature::Signature;

/// What minimization produced.
#[derive(Clone, Debug)]
pub struct Minimized {
    /// The smallest program found; it reproduces `signature`.
    pub file: ProgFile,
    /// The signature kept.
    pub signature: Signature,
    /// Executions spent.
    pub runs: usize,
}

/// Minimize `file` keeping its signature, spending at most `budget` executions. `None` if the
/// program does not fail in the first place.
pub fn minimize(file: &ProgFile, budget: usize) -> Option<Minimized> {
    let signature = run(file).verdict.signature()?.clone();
    Some(minimize_keeping(
        file,
        signature,
        budget.saturating_sub(1),
        1,
    ))
}

/// Minimize `file`, which is known to fail with `signature` (a caller that just ran it need not
/// run it again), spending at most `budget` more executions. `spent` is reported back in `runs`.
pub fn minimize_keeping(
    file: &ProgFile,
    signature: Signature,
    budget: usize,
    spent: usize,
) -> Minimized {
    let budget = budget.saturating_add(spent);
    let mut best = file.clone();
    let mut runs = spent;
    let keeps = |f: &ProgFile, runs: &mut usize| -> bool {
        *runs += 1;
        f.program.validate().is_ok()
            && matches!(&run(f).verdict, Verdict::Fail { signature: s, .. } if *s == signature)
    };
    loop {
        let mut changed = false;
        for cand in candidates(&best.program) {
            if runs >= budget {
                return Minimized {
                    file: best,
                    signature,
                    runs,
                };
            }
            let f = ProgFile {
                header: best.header.clone(),
                program: cand,
            };
            if keeps(&f, &mut runs) {
                best = f;
                changed = true;
                break;
            }
        }
        if !changed {
            return Minimized {
                file: best,
                signature,
                runs,
            };
        }
    }
}

/// Smaller variants of `p`, largest cuts first.
fn candidates(p: &Program) -> Vec<Program> {
    let mut out = Vec::new();
    if p.threads.len() > 1 {
        for t in (0..p.threads.len()).rev() {
            out.push(remove_thread(p, t));
        }
    }
    for t in 0..p.threads.len() {
        for i in (0..p.threads[t].len()).rev() {
            out.push(remove_op(p, t, i));
        }
    }
    for k in (0..p.schedule.preemptions.len()).rev() {
        let mut q = p.clone();
        q.schedule.preemptions.remove(k);
        out.push(q);
    }
    for k in (0..p.faults.len()).rev() {
        let mut q = p.clone();
        q.faults.remove(k);
        out.push(q);
    }
    if !p.schedule.priorities.is_empty() {
        let mut q = p.clone();
        q.schedule.priorities.pop();
        out.push(q);
    }
    for t in 0..p.threads.len() {
        for i in 0..p.threads[t].len() {
            if let Some(op) = simpler(p.threads[t][i]) {
                let mut q = p.clone();
                q.threads[t][i] = op;
                out.push(q);
            }
        }
    }
    out
}

/// A simpler form of an op: shorter zaps, zero written values, a plain FOLL_GET.
fn simpler(op: Op) -> Option<Op> {
    match op {
        Op::Zap { at, len } if len > 1 => Some(Op::Zap { at, len: 1 }),
        Op::Touch { at, write: Some(v) } if v != 0 => Some(Op::Touch { at, write: Some(0) }),
        Op::WritePinned { h, val } if val != 0 => Some(Op::WritePinned { h, val: 0 }),
        Op::GupFast { at, pin, write } if pin || write => Some(Op::GupFast {
            at,
            pin: false,
            write: false,
        }),
        Op::Gup { at, pin, write } if pin || write => Some(Op::Gup {
            at,
            pin: false,
            write: false,
        }),
        _ => None,
    }
}

/// Renumber every handle of a program.
fn map_handles(p: &mut Program, f: impl Fn(Handle) -> Handle) {
    for ops in &mut p.threads {
        for op in ops.iter_mut() {
            match op {
                Op::Put { h } | Op::ReadPinned { h } | Op::WritePinned { h, .. } => *h = f(*h),
                _ => {}
            }
        }
    }
}

/// A handle no op creates (ops on it are defined no-ops).
const GONE: u8 = u8::MAX;

fn remove_op(p: &Program, t: usize, i: usize) -> Program {
    let mut q = p.clone();
    let created = p.handle_of(t, i);
    q.threads[t].remove(i);
    if let Some(c) = created {
        map_handles(&mut q, |h| {
            if h.thread != c.thread || h.index < c.index {
                h
            } else if h.index == c.index {
                Handle {
                    thread: h.thread,
                    index: GONE,
                }
            } else {
                Handle {
                    thread: h.thread,
                    index: h.index - 1,
                }
            }
        });
    }
    q
}

fn remove_thread(p: &Program, t: usize) -> Program {
    let mut q = p.clone();
    q.threads.remove(t);
    let t = t as u8;
    let down = |u: u8| if u > t { u - 1 } else { u };
    map_handles(&mut q, |h| {
        if h.thread == t {
            Handle {
                thread: GONE,
                index: h.index,
            }
        } else {
            Handle {
                thread: down(h.thread),
                index: h.index,
            }
        }
    });
    q.schedule.priorities = q
        .schedule
        .priorities
        .iter()
        .filter(|&&u| u != t)
        .map(|&u| down(u))
        .collect();
    q.schedule.preemptions = q
        .schedule
        .preemptions
        .iter()
        .filter(|pr| pr.thread != t)
        .map(|pr| {
            let mut pr = *pr;
            pr.thread = down(pr.thread);
            pr.to = match pr.to {
                Some(u) if u == t => None,
                Some(u) => Some(down(u)),
                None => None,
            };
            pr
        })
        .collect();
    q.faults = q
        .faults
        .iter()
        .filter(|f| f.thread != t)
        .map(|f| {
            let mut f = *f;
            f.thread = down(f.thread);
            f
        })
        .collect();
    q
}
