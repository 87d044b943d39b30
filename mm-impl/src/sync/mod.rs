//! The sync facade: the only code that knows about shuttle.
//!
//! Scheduling points are atomic operations, READ_ONCE/WRITE_ONCE of shared fields, lock
//! acquisitions and releases, `cpu_relax()` in retry and spin loops, and explicit lockless-walk
//! steps. Plain accesses to lock-protected fields are not points. Each point records
//! (thread, site, object, access, value) in the task's own trace.

mod atomic;
mod ctx;
mod exec;
mod lock;
mod runner;
mod site;

pub use atomic::{KAtomicI32, KAtomicU32, KAtomicU64};
pub use ctx::{splitmix, Ctx, KResult, NmiHandler, Stop};
pub use exec::{Exec, GpState, Preemption, RandomWalk, SchedPlan, Switch, SwitchReason};
pub use lock::{LockClass, RwSem, SpinLock};
pub use runner::{run_cpus, BatchJob, CpuBody, CpuResult, HarnessPanic, Machine};
pub use site::{Access, Event, EventKind, Obj, Site, OP_SITE};
