//! Shared words of the model: every access is a scheduling point taken with the kernel's ordering.
//!
//! Shuttle runs every task on one OS thread, so the std orderings chosen here cost nothing and
//! change nothing today; they are taken (and the barriers recorded) so that store-buffer
//! emulation can later be added here without touching a call site.

use super::ctx::{Ctx, KResult};
use super::site::{Access, Obj, Site};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release, SeqCst};

macro_rules! katomic {
    ($name:ident, $std:ty, $t:ty) => {
        /// A shared word with kernel-style accessors; each access is a scheduling point.
        #[derive(Debug)]
        pub struct $name {
            v: $std,
            obj: Obj,
        }

        impl $name {
            /// A word belonging to object `obj`.
            pub fn new(v: $t, obj: Obj) -> Self {
                Self {
                    v: <$std>::new(v),
                    obj,
                }
            }

            /// The object this word belongs to.
            pub fn obj(&self) -> Obj {
                self.obj
            }

            /// `READ_ONCE()`.
            #[inline]
            pub fn read_once(&self, ctx: &mut Ctx, site: &'static Site) -> KResult<$t> {
                ctx.sched_point()?;
                let v = self.v.load(Relaxed);
                ctx.record(site, self.obj, Access::Read, v as u64, false);
                Ok(v)
            }

            /// `smp_load_acquire()`.
            #[inline]
            pub fn load_acquire(&self, ctx: &mut Ctx, site: &'static Site) -> KResult<$t> {
                ctx.sched_point()?;
                let v = self.v.load(Acquire);
                ctx.record(site, self.obj, Access::Read, v as u64, false);
                Ok(v)
            }

            /// `WRITE_ONCE()`.
            #[inline]
            pub fn write_once(&self, ctx: &mut Ctx, site: &'static Site, v: $t) -> KResult<()> {
                ctx.sched_point()?;
                self.v.store(v, Relaxed);
                ctx.record(site, self.obj, Access::Write, v as u64, true);
                Ok(())
            }

            /// `smp_store_release()`.
            #[inline]
            pub fn store_release(&self, ctx: &mut Ctx, site: &'static Site, v: $t) -> KResult<()> {
                ctx.sched_point()?;
                self.v.store(v, Release);
                ctx.record(site, self.obj, Access::Write, v as u64, true);
                Ok(())
            }

            /// `atomic_add_return()` (full barrier); returns the new value.
            #[inline]
            pub fn add_return(&self, ctx: &mut Ctx, site: &'static Site, d: $t) -> KResult<$t> {
                ctx.sched_point()?;
                let v = self.v.fetch_add(d, SeqCst).wrapping_add(d);
                ctx.record(site, self.obj, Access::Rmw, v as u64, true);
                Ok(v)
            }

            /// `atomic_fetch_or()` (full barrier); returns the old value.
            #[inline]
            pub fn fetch_or(&self, ctx: &mut Ctx, site: &'static Site, m: $t) -> KResult<$t> {
                ctx.sched_point()?;
                let v = self.v.fetch_or(m, SeqCst);
                ctx.record(site, self.obj, Access::Rmw, v as u64, true);
                Ok(v)
            }

            /// `clear_bit_unlock()`-style release and-not; returns the old value.
            #[inline]
            pub fn fetch_andnot_release(
                &self,
                ctx: &mut Ctx,
                site: &'static Site,
                m: $t,
            ) -> KResult<$t> {
                ctx.sched_point()?;
                let v = self.v.fetch_and(!m, Release);
                ctx.record(site, self.obj, Access::Rmw, v as u64, true);
                Ok(v)
            }

            /// `cmpxchg()` (full barrier): `Ok(old)` if it was `old` and is now `new`, else `Err(actual)`.
            #[inline]
            pub fn cmpxchg(
                &self,
                ctx: &mut Ctx,
                site: &'static Site,
                old: $t,
                new: $t,
            ) -> KResult<Result<$t, $t>> {
                ctx.sched_point()?;
                let r = self.v.compare_exchange(old, new, SeqCst, SeqCst);
                match r {
                    Ok(_) => ctx.record(site, self.obj, Access::Rmw, new as u64, true),
                    Err(v) => ctx.record(site, self.obj, Access::Read, v as u64, false),
                }
                Ok(r)
            }

            /// `xchg()` (full barrier); returns the old value.
            #[inline]
            pub fn xchg(&self, ctx: &mut Ctx, site: &'static Site, v: $t) -> KResult<$t> {
                ctx.sched_point()?;
                let old = self.v.swap(v, SeqCst);
                ctx.record(site, self.obj, Access::Rmw, old as u64, true);
                Ok(old)
            }

            /// Read without a scheduling point: for checkers and single-threaded setup/teardown only.
            #[inline]
            pub fn peek(&self) -> $t {
                self.v.load(Relaxed)
            }

            /// A plain store during a run: not a scheduling point (nothing reads the field
            /// locklessly at that moment), but recorded and counted as a write.
            #[inline]
            pub fn store_plain(&self, ctx: &mut Ctx, site: &'static Site, v: $t) {
                self.v.store(v, Relaxed);
                ctx.record_plain(site, self.obj, v as u64);
            }

            /// Write without a scheduling point or a record: for building the world, and for
            /// fields reset together with one traced store beside them (`prep_new_page`).
            #[inline]
            pub fn set_plain(&self, v: $t) {
                self.v.store(v, Relaxed)
            }
        }
    };
}

katomic!(KAtomicU32, std::sync::atomic::AtomicU32, u32);
katomic!(KAtomicI32, std::sync::atomic::AtomicI32, i32);
katomic!(KAtomicU64, std::sync::atomic::AtomicU64, u64);
