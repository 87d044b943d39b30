//! The executor's engine room: one long-lived shuttle `Runner` on its own OS thread, fed one
//! execution after another, and the scheduler that hands shuttle the facade's decisions.
//!
//! `Runner::run` consumes the runner and the runner is `!Send`, and building a fresh one per
//! execution costs tens of microseconds, so the runner lives on a dedicated thread whose
//! scheduler blocks in `new_execution` until the next job arrives. A harness panic kills that
//! thread; [`Machine`] notices (the job's reply channel closes) and starts a new one.

use super::ctx::Ctx;
use super::exec::{Exec, Switch, SwitchReason};
use super::site::Event;
use shuttle::scheduler::{Schedule, Scheduler, Task, TaskId};
use shuttle::{Config, MaxSteps, Runner};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

type Body = Box<dyn FnOnce() + Send>;

struct Job {
    exec: Arc<Exec>,
    body: Body,
}

/// Hands shuttle the task the facade chose (`SchedState::next`); shuttle itself decides nothing.
struct FacadeScheduler {
    rx: Receiver<Job>,
    slot: Arc<Mutex<Option<Body>>>,
    exec: Option<Arc<Exec>>,
}

impl Scheduler for FacadeScheduler {
    fn new_execution(&mut self) -> Option<Schedule> {
        let job = self.rx.recv().ok()?;
        *self.slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(job.body);
        self.exec = Some(job.exec);
        Some(Schedule::new(0))
    }

    fn next_task(
        &mut self,
        runnable: &[&Task],
        current: Option<TaskId>,
        _is_yielding: bool,
    ) -> Option<TaskId> {
        let is_runnable = |id: usize| runnable.iter().any(|t| usize::from(t.id()) == id);
        if let Some(want) = self.exec.as_ref().and_then(|e| e.lock_sched().next) {
            // Once the facade has decided, its choice is always runnable (model CPUs never
            // block in shuttle; the main task is woken when the last CPU exits). Anything else
            // would make the switch log lie about who ran: a harness bug, so fail loudly.
            assert!(
                is_runnable(want),
                "harness bug: the facade chose task {want}, which is not runnable"
            );
            return Some(TaskId::from(want));
        }
        // Before the facade decides anything (the main task spawning CPUs): keep running it.
        if let Some(c) = current {
            if is_runnable(c.into()) {
                return Some(c);
            }
        }
        runnable.iter().map(|t| t.id()).min()
    }

    fn next_u64(&mut self) -> u64 {
        0
    }
}

/// One execution of a batch: its shared state and the main task's body.
pub type BatchJob<R> = (Arc<Exec>, Box<dyn FnOnce() -> R + Send>);

/// The main task died: the harness (not the model) is broken. Carries the panic message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HarnessPanic(pub String);

/// A long-lived deterministic executor.
pub struct Machine {
    tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    restarts: u32,
}

impl Default for Machine {
    fn default() -> Self {
        Machine::new()
    }
}

impl Machine {
    /// Start the runner thread.
    pub fn new() -> Machine {
        let (tx, rx) = channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("mmfuzz-shuttle".into())
            .spawn(move || {
                let slot: Arc<Mutex<Option<Body>>> = Arc::new(Mutex::new(None));
                let sched = FacadeScheduler {
                    rx,
                    slot: Arc::clone(&slot),
                    exec: None,
                };
                let mut config = Config::new();
                config.max_steps = MaxSteps::ContinueAfter(usize::MAX / 2);
                config.stack_size = 1 << 18;
                config.silence_warnings = true;
                let runner = Runner::new(sched, config);
                runner.run(move || {
                    let body = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                    if let Some(body) = body {
                        body();
                    }
                });
            })
            .expect("spawning the executor thread");
        Machine {
            tx: Some(tx),
            thread: Some(thread),
            restarts: 0,
        }
    }

    /// How many times the runner thread was restarted after a harness panic.
    pub fn restarts(&self) -> u32 {
        self.restarts
    }

    /// Run `body` as the main task of one execution scheduled by the facade of `exec`.
    pub fn execute<R, F>(&mut self, exec: Arc<Exec>, body: F) -> Result<R, HarnessPanic>
    where
        R: Send + 'static,
        F: FnOnce() -> R + Send + 'static,
    {
        let job: BatchJob<R> = (exec, Box::new(body));
        let (mut done, panic) = self.execute_batch(vec![job]);
        match (done.pop(), panic) {
            (Some(r), None) => Ok(r),
            (_, Some(p)) => Err(p),
            (None, None) => Err(HarnessPanic("executor returned nothing".into())),
        }
    }

    /// Run several executions back to back on the runner thread. Handing an execution to the
    /// runner thread and back costs two OS context switches; a batch pays them once.
    /// Returns the results of the executions that completed, in order; if one panicked, the
    /// panic (it was execution number `results.len()`; the rest did not run), and the runner
    /// has been restarted.
    pub fn execute_batch<R: Send + 'static>(
        &mut self,
        jobs: Vec<BatchJob<R>>,
    ) -> (Vec<R>, Option<HarnessPanic>) {
        let n = jobs.len();
        let (rtx, rrx) = channel::<R>();
        let mut sent = 0;
        for (exec, body) in jobs {
            let rtx = rtx.clone();
            let job = Job {
                exec,
                body: Box::new(move || {
                    let r = body();
                    let _ = rtx.send(r);
                }),
            };
            if self.tx.as_ref().is_none_or(|tx| tx.send(job).is_err()) {
                break;
            }
            sent += 1;
        }
        drop(rtx);
        let mut out = Vec::with_capacity(n);
        while out.len() < sent {
            match rrx.recv() {
                Ok(r) => out.push(r),
                Err(_) => break,
            }
        }
        if out.len() == n {
            return (out, None);
        }
        // The runner thread is gone: collect its panic and start a fresh one.
        let msg = self.reap();
        let fresh = Machine::new();
        let restarts = self.restarts + 1;
        *self = fresh;
        self.restarts = restarts;
        (out, Some(HarnessPanic(msg)))
    }

    fn reap(&mut self) -> String {
        self.tx = None;
        match self.thread.take().map(|t| t.join()) {
            Some(Err(payload)) => payload
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| payload.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "non-string panic payload".into()),
            _ => "executor thread exited".into(),
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// What one model CPU leaves behind.
pub struct CpuResult<T> {
    /// The body's return value.
    pub value: T,
    /// Its trace.
    pub events: Vec<Event>,
}

/// The work of one model CPU: runs on its own shuttle task with its own [`Ctx`].
pub type CpuBody<T> = Box<dyn FnOnce(&mut Ctx) -> T + Send>;

/// Inside an execution's main task: run one body per model CPU under the facade's schedule and
/// wait for all of them. Thread `t` is shuttle task `t + 1`.
pub fn run_cpus<T: Send + 'static>(exec: &Arc<Exec>, bodies: Vec<CpuBody<T>>) -> Vec<CpuResult<T>> {
    assert_eq!(bodies.len(), exec.nthreads(), "one body per model CPU");
    let mut handles = Vec::with_capacity(bodies.len());
    for (t, body) in bodies.into_iter().enumerate() {
        let exec = Arc::clone(exec);
        handles.push(shuttle::thread::spawn(move || {
            debug_assert_eq!(
                usize::from(shuttle::current::me()),
                t + 1,
                "task id of cpu{t}"
            );
            let mut ctx = Ctx::new(t as u8, exec);
            let value = body(&mut ctx);
            ctx.exit();
            CpuResult {
                value,
                events: ctx.take_events(),
            }
        }));
    }
    {
        let mut s = exec.lock_sched();
        let first = s.pick(None);
        s.log.push(Switch {
            from: None,
            at: 0,
            to: first.map(|t| t as u8),
            reason: SwitchReason::Start,
            ev: 0,
        });
        s.next = first.map(|t| t + 1);
    }
    handles
        .into_iter()
        .map(|h| match h.join() {
            Ok(r) => r,
            Err(p) => std::panic::resume_unwind(p),
        })
        .collect()
}
