//! The deterministic executor: one program in, one [`Outcome`] out.
//!
//! The world is built afresh on the shuttle main task, one shuttle task per program thread runs
//! its ops through the model, then the main task judges the run: the first violation the model
//! reported, else the teardown ledger, else the sequential spec.

use crate::program::{vmalloc_pages, Addr, DataPage, FilePage, Handle, Op, ProgFile, Program};
use mm_impl::buffer::try_to_free_buffers;
use mm_impl::buildid::build_id_parse;
use mm_impl::errno::Errno;
use mm_impl::filemap::mapping_seek_hole_data;
use mm_impl::gup::{get_user_pages, gup_fast, unpin_user_page, Foll};
use mm_impl::gup::{pin_user_pages_longterm, unpin_user_page_dirty_lock};
use mm_impl::huge_memory::split_huge_pages_in_file;
use mm_impl::huge_memory::split_huge_pages_pid;
use mm_impl::iommu::iommu_dma;
use mm_impl::khugepaged::{collapse_file, collapse_pte_mapped_thp};
use mm_impl::memory::{
    handle_mm_fault, kernel_access_page, user_access, zap_page_range, UserAccess,
};
use mm_impl::mincore::mincore_page;
use mm_impl::mm_types::VmaKind;
use mm_impl::page_alloc::alloc_pages;
use mm_impl::page_ref::{folio_maybe_dma_pinned_peek, folio_put_refs};
use mm_impl::readahead::page_cache_ra_unbounded;
use mm_impl::set_memory::{free_direct_map_tables, set_memory_block};
use mm_impl::snapshot::hibernate;
use mm_impl::sync::{
    run_cpus, BatchJob, CpuBody, Ctx, Event, EventKind, Exec, HarnessPanic, KResult, Machine,
    RandomWalk, SchedPlan, Stop, Switch,
};
use mm_impl::userfaultfd::uffdio_copy;
use mm_impl::vhost::{vhost_put_used, vhost_setup_vq_map, vhost_uninit_vq_map, VhostWrite};
use mm_impl::violation::{Kind, Violation};
use mm_impl::vmalloc::{vfree, vmalloc, vwrite, VmStruct};
use mm_impl::vmscan::mapping_evict_folio;
use mm_impl::world::{
    data_file_data, initial_anon_data, resolve_addr, shmem_initial, text_pages, vma_layout, World,
    WorldConfig, BUILD_ID, SHARED_PMDS, SHMEM_PMDS,
};
use mm_impl::writeback::write_cache_pages;
use oracles::consequence::{self, ImageCheck};
use oracles::ledger::HeldRef;
use oracles::linearizability::{check_partitioned, Check, Entry};
use oracles::mm_spec::{MmOp, MmRet, MmSpec};
use oracles::signature::Signature;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// Default budget of the linearizability search (steps).
pub const CHECK_BUDGET: u64 = 200_000;

/// Op-boundary events of NMI `k` carry `NMI_OP_BASE + k` (a thread's own ops carry their index).
pub const NMI_OP_BASE: u64 = 1 << 20;

/// Partition keys of the text file's huge-page ranges start here (anon ranges are below).
const FILE_KEY_BASE: u64 = 1 << 32;
/// Partition key of build-id lookups (their spec has no state).
const BUILD_ID_KEY: u64 = 1 << 33;

/// How to run a program beyond what its file says.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Random switching at every point (the random baseline); the realized switches are logged.
    pub random: Option<RandomWalk>,
    /// Budget of the linearizability search; 0 means [`CHECK_BUDGET`].
    pub check_budget: u64,
    /// Skip the linearizability check (to measure its cost by difference in benchmarks: a run
    /// that skips it passes without having been judged against the spec).
    pub skip_check: bool,
}

/// The judgement of one execution.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    /// Every check held.
    Pass,
    /// A finding.
    Fail {
        /// Deduplication key.
        signature: Signature,
        /// What was seen.
        violation: Violation,
    },
    /// Undecided (step budget or checker budget), counted apart.
    Unknown(String),
    /// The harness itself panicked: a bug in mmfuzz, not in the model.
    HarnessPanic(String),
    /// The program breaks the limits (built through the API, not read from a file) and did not run.
    Invalid(String),
}

impl Verdict {
    /// Is it a finding?
    pub fn is_fail(&self) -> bool {
        matches!(self, Verdict::Fail { .. })
    }

    /// The signature of a finding.
    pub fn signature(&self) -> Option<&Signature> {
        match self {
            Verdict::Fail { signature, .. } => Some(signature),
            _ => None,
        }
    }

    /// The kind of a finding.
    pub fn kind(&self) -> Option<Kind> {
        self.signature().map(|s| s.kind)
    }
}

/// One operation as it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpRecord {
    /// Thread (for an NMI: the CPU it interrupted).
    pub thread: u8,
    /// Index in the thread's list (for an NMI: its number in the NMI plan).
    pub index: usize,
    /// An NMI's build-id lookup: its own process in the history.
    pub nmi: bool,
    /// The op.
    pub op: Op,
    /// Position of its start in the merged trace.
    pub invoke: usize,
    /// Position of its end and its result, if it returned.
    pub response: Option<(usize, MmRet)>,
}

/// One event of the merged trace.
#[derive(Clone, Copy, Debug)]
pub struct TraceEvent {
    /// The CPU.
    pub thread: u8,
    /// What it did.
    pub ev: Event,
}

/// Everything one execution produced.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The judgement.
    pub verdict: Verdict,
    /// The ops, in program order per thread.
    pub history: Vec<OpRecord>,
    /// The realized schedule.
    pub switches: Vec<Switch>,
    /// All CPUs' events in execution order.
    pub trace: Vec<TraceEvent>,
    /// Scheduling points taken per thread.
    pub points: Vec<u32>,
    /// The linearizability checker's answer (`None` when it did not run).
    pub check: Option<Check>,
    /// Wall time the linearizability checker took, in nanoseconds.
    pub check_nanos: u64,
}

impl Outcome {
    /// The outcome of a program that was not run because it is invalid.
    fn refused(program: &Program, why: String) -> Outcome {
        Outcome {
            verdict: Verdict::Invalid(why),
            history: Vec::new(),
            switches: Vec::new(),
            trace: Vec::new(),
            points: vec![0; program.threads.len()],
            check: None,
            check_nanos: 0,
        }
    }

    /// Total scheduling points.
    pub fn total_points(&self) -> u64 {
        self.points.iter().map(|&p| u64::from(p)).sum()
    }

    /// A stable 64-bit digest of everything observable about the run (verdict, results, switch
    /// log, every trace event), for determinism checks across runs and processes.
    pub fn digest(&self) -> u64 {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        let mut eat = |x: u64| {
            for b in x.to_le_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0100_0000_01b3);
            }
        };
        for b in format!("{:?}", self.verdict).bytes() {
            eat(u64::from(b));
        }
        for r in &self.history {
            eat(r.invoke as u64);
            for b in format!("{:?}", r.response).bytes() {
                eat(u64::from(b));
            }
        }
        for s in &self.switches {
            eat(u64::from(s.from.unwrap_or(255)) << 40
                | u64::from(s.at) << 8
                | u64::from(s.to.unwrap_or(255)));
        }
        for te in &self.trace {
            eat(u64::from(te.thread) << 32 | u64::from(te.ev.site.id));
            eat(u64::from(te.ev.obj.0));
            eat(te.ev.val);
        }
        h
    }

    /// Interleaving coverage: for consecutive points on the same object by different CPUs, a
    /// stable hash of the (earlier site, later site) pair. Sorted and deduplicated.
    pub fn interleaving_edges(&self) -> Vec<u32> {
        let mut last: BTreeMap<u32, (u8, u32)> = BTreeMap::new();
        let mut edges = Vec::new();
        for te in &self.trace {
            if !matches!(te.ev.kind, EventKind::Point(_)) || te.ev.obj.0 == 0 {
                continue;
            }
            let site = te.ev.site.id;
            if let Some(&(t, prev)) = last.get(&te.ev.obj.0) {
                if t != te.thread {
                    edges.push(prev.rotate_left(7) ^ site.wrapping_mul(0x9e37_79b1));
                }
            }
            last.insert(te.ev.obj.0, (te.thread, site));
        }
        edges.sort_unstable();
        edges.dedup();
        edges
    }
}

/// A GUP reference held by the program, as the op's result described it.
#[derive(Clone, Copy, Debug)]
struct Held {
    page: u32,
    owner: u32,
    foll: Foll,
    /// FOLL_WRITE: a device may write through it.
    write: bool,
    /// FOLL_LONGTERM: held across syncs.
    longterm: bool,
}

type Handles = Arc<Mutex<BTreeMap<Handle, Held>>>;

fn lock(h: &Handles) -> std::sync::MutexGuard<'_, BTreeMap<Handle, Held>> {
    h.lock().unwrap_or_else(|e| e.into_inner())
}

/// Kernel allocations the program holds, as the operations' results named them: vmalloc areas
/// and set_memory_np blocks (head pfn).
#[derive(Debug, Default)]
struct KernelHandles {
    vmalloc: BTreeMap<Handle, VmStruct>,
    np_blocks: BTreeMap<Handle, u32>,
    /// vhost aliases: the id the device gave each.
    vhost: BTreeMap<Handle, u32>,
}

type KHandles = Arc<Mutex<KernelHandles>>;

fn klock(h: &KHandles) -> std::sync::MutexGuard<'_, KernelHandles> {
    h.lock().unwrap_or_else(|e| e.into_inner())
}

/// Virtual page of a program address (the page index is taken modulo the VMA's size).
pub fn resolve(w: &World, at: Addr) -> u32 {
    resolve_addr(w.cfg.order, at.vma, u32::from(at.page))
}

fn resolve_cfg(cfg: WorldConfig, at: Addr) -> u32 {
    resolve_addr(cfg.order, at.vma, u32::from(at.page))
}

/// Page of the text file a program names (taken modulo the file's size).
pub fn file_page(order: u8, at: FilePage) -> u32 {
    u32::from(at.0) % text_pages(order)
}

/// Page of the data file a program names (taken modulo the file's size).
pub fn data_page(order: u8, at: DataPage) -> u32 {
    u32::from(at.0) % (SHARED_PMDS << order)
}

/// `build_id_parse()` as an op result.
fn build_id_ret(r: Result<u64, Errno>) -> MmRet {
    match r {
        Ok(id) => MmRet::Value(id),
        Err(e) => MmRet::Errno(e),
    }
}

fn run_op(
    ctx: &mut Ctx,
    w: &World,
    handles: &Handles,
    kh: &KHandles,
    op: &Op,
    h: Option<Handle>,
) -> KResult<MmRet> {
    Ok(match *op {
        Op::Touch { at, write } => {
            let vpn = resolve(w, at);
            let write = write.map(u64::from);
            loop {
                match user_access(ctx, w, vpn, write)? {
                    UserAccess::Done(v) => break MmRet::Value(v),
                    UserAccess::Fault => {
                        w.mm.mmap_lock.down_read(ctx)?;
                        let r = handle_mm_fault(ctx, w, at.vma, vpn, write.is_some())?;
                        w.mm.mmap_lock.up_read(ctx)?;
                        if let Err(e) = r {
                            break MmRet::Errno(e);
                        }
                    }
                }
            }
        }
        Op::GupFast { at, pin, write } => {
            let foll = if pin { Foll::Pin } else { Foll::Get };
            match gup_fast(ctx, w, resolve(w, at), write, foll)? {
                Some(page) => held(w, handles, h, page, foll, write, false),
                None => MmRet::Fallback,
            }
        }
        Op::Gup { at, pin, write } => {
            let foll = if pin { Foll::Pin } else { Foll::Get };
            match get_user_pages(ctx, w, at.vma, resolve(w, at), write, foll)? {
                Ok(page) => held(w, handles, h, page, foll, write, false),
                Err(e) => MmRet::Errno(e),
            }
        }
        Op::Put { h } => release_handle(ctx, w, handles, h, false)?,
        Op::UnpinDirty { h } => release_handle(ctx, w, handles, h, true)?,
        Op::ReadPinned { h } => {
            let lookup = || lock(handles).get(&h).map(|r| r.page);
            match kernel_access_page(ctx, w, lookup, None, "read_pinned")? {
                Some(v) => MmRet::Value(v),
                None => MmRet::NoHandle,
            }
        }
        Op::WritePinned { h, val } => {
            let lookup = || lock(handles).get(&h).map(|r| r.page);
            match kernel_access_page(ctx, w, lookup, Some(u64::from(val)), "write_pinned")? {
                Some(_) => MmRet::Done,
                None => MmRet::NoHandle,
            }
        }
        Op::Split { at } => MmRet::Split(split_huge_pages_pid(ctx, w, resolve(w, at))?),
        Op::Zap { at, len } => {
            let vpn = resolve(w, at);
            let vma = w.vma(at.vma);
            let n = u32::from(len.max(1)).min(vma.start + vma.pages - vpn);
            w.mm.mmap_lock.down_read(ctx)?;
            zap_page_range(ctx, w, at.vma, vpn, n)?;
            w.mm.mmap_lock.up_read(ctx)?;
            MmRet::Done
        }
        Op::Readahead { at } => MmRet::Ra(page_cache_ra_unbounded(
            ctx,
            w,
            &w.text,
            file_page(w.cfg.order, at),
        )?),
        Op::Evict { at } => MmRet::Evict(mapping_evict_folio(
            ctx,
            w,
            &w.text,
            file_page(w.cfg.order, at),
        )?),
        Op::Collapse { at } => MmRet::Collapse(collapse_file(
            ctx,
            w,
            &w.text,
            file_page(w.cfg.order, at) >> w.cfg.order,
        )?),
        Op::SplitFile { at } => MmRet::Split(split_huge_pages_in_file(
            ctx,
            w,
            &w.text,
            file_page(w.cfg.order, at),
        )?),
        Op::SeekData { at } | Op::SeekHole { at } => {
            let seek_data = matches!(op, Op::SeekData { .. });
            match mapping_seek_hole_data(ctx, w, &w.text, file_page(w.cfg.order, at), seek_data)? {
                Ok(p) => MmRet::Value(u64::from(p)),
                Err(e) => MmRet::Errno(e),
            }
        }
        Op::Mincore { at } => MmRet::Value(u64::from(mincore_page(
            ctx,
            w,
            &w.text,
            file_page(w.cfg.order, at),
        )?)),
        Op::BuildId => build_id_ret(build_id_parse(ctx, w, &w.text)?),
        Op::Vmalloc { pages } => match vmalloc(ctx, w, vmalloc_pages(pages))? {
            Ok(area) => {
                let h = h.expect("vmalloc creates a handle");
                klock(kh).vmalloc.insert(h, area);
                MmRet::Handle(h)
            }
            Err(e) => MmRet::Errno(e),
        },
        Op::Vfree { h } => {
            // find_vmap_area() + unlink: one step, so two vfrees of one area cannot both win.
            ctx.point(
                mm_impl::site!("find_vmap_area", "unlink the vmap_area"),
                mm_impl::sync::Obj::NONE,
                mm_impl::sync::Access::Rmw,
                0,
            )?;
            let Some(area) = klock(kh).vmalloc.remove(&h) else {
                return Ok(MmRet::NoHandle);
            };
            // vfree's work runs as deferred kernel work: preemptible, not freezable.
            ctx.set_kernel_work(true);
            let r = vfree(ctx, w, &area);
            ctx.set_kernel_work(false);
            r?;
            MmRet::Done
        }
        Op::Vwrite { h, val } => {
            let lookup = || klock(kh).vmalloc.get(&h).cloned();
            if vwrite(ctx, w, lookup, u64::from(val))? {
                MmRet::Done
            } else {
                MmRet::NoHandle
            }
        }
        Op::SetMemoryNp => {
            let Some(first) = alloc_pages(ctx, w, u32::from(w.cfg.order))? else {
                return Ok(MmRet::Errno(Errno::ENOMEM));
            };
            set_memory_block(ctx, w, first, false)?;
            let h = h.expect("set_memory_np creates a handle");
            klock(kh).np_blocks.insert(h, first);
            MmRet::Handle(h)
        }
        Op::PinLongterm { at, write } => {
            match pin_user_pages_longterm(ctx, w, at.vma, resolve(w, at), write)? {
                Ok(page) => held(w, handles, h, page, Foll::Pin, write, true),
                Err(e) => MmRet::Errno(e),
            }
        }
        Op::VhostMap { at } => match vhost_setup_vq_map(ctx, w, at.vma, resolve(w, at))? {
            Ok(id) => {
                let h = h.expect("vhost_map creates a handle");
                klock(kh).vhost.insert(h, id);
                MmRet::Handle(h)
            }
            Err(e) => MmRet::Errno(e),
        },
        Op::VhostWrite { h, val } => {
            let Some(id) = klock(kh).vhost.get(&h).copied() else {
                return Ok(MmRet::NoHandle);
            };
            match vhost_put_used(ctx, w, id, u64::from(val))? {
                VhostWrite::Done => MmRet::Done,
                VhostWrite::Invalidated => MmRet::Errno(Errno::EAGAIN),
                VhostWrite::ReadOnly => MmRet::Errno(Errno::EFAULT),
                VhostWrite::NoMap => MmRet::NoHandle,
            }
        }
        Op::VhostUnmap { h } => {
            let Some(id) = klock(kh).vhost.remove(&h) else {
                return Ok(MmRet::NoHandle);
            };
            vhost_uninit_vq_map(ctx, w, id)?;
            MmRet::Done
        }
        Op::Writeback => {
            write_cache_pages(ctx, w, &w.data)?;
            MmRet::Done
        }
        Op::ReleaseBuffers { at } => MmRet::Release(try_to_free_buffers(
            ctx,
            w,
            &w.data,
            data_page(w.cfg.order, at),
        )?),
        Op::Hibernate => {
            let mut check = ImageCheck::default();
            let mut oracle = |w: &World, image: Option<&Vec<(u32, u64)>>| check.observe(w, image);
            match hibernate(ctx, w, &mut oracle)? {
                Ok(n) => MmRet::Image(n),
                Err(e) => MmRet::Errno(e),
            }
        }
        Op::UffdCopy { at, val } => match uffdio_copy(ctx, w, resolve(w, at), u64::from(val))? {
            Ok(()) => MmRet::Done,
            Err(e) => MmRet::Errno(e),
        },
        Op::CollapseShmem { page } => MmRet::Collapse(collapse_file(
            ctx,
            w,
            &w.shmem,
            shmem_page(w.cfg.order, page) >> w.cfg.order,
        )?),
        Op::IommuRead { at } => match iommu_dma(ctx, w, resolve(w, at), None)? {
            Ok(v) => MmRet::Value(v),
            Err(e) => MmRet::Errno(e),
        },
        Op::CollapsePteMapped { at } => {
            MmRet::Collapse(collapse_pte_mapped_thp(ctx, w, resolve(w, at))?)
        }
        Op::IommuWrite { at, val } => {
            match iommu_dma(ctx, w, resolve(w, at), Some(u64::from(val)))? {
                // A store reports the old value, as a user write does.
                Ok(v) => MmRet::Value(v),
                Err(e) => MmRet::Errno(e),
            }
        }
    })
}

/// Page of the shmem file a program names (taken modulo the file's size).
pub fn shmem_page(order: u8, page: u8) -> u32 {
    u32::from(page) % (SHMEM_PMDS << order)
}

/// Record a reference GUP returned; its owner is the page's folio *now*, at return time.
fn held(
    w: &World,
    handles: &Handles,
    h: Option<Handle>,
    page: u32,
    foll: Foll,
    write: bool,
    longterm: bool,
) -> MmRet {
    let h = h.expect("handle-creating op has a handle");
    let owner = w.page(page).folio_peek();
    lock(handles).insert(
        h,
        Held {
            page,
            owner,
            foll,
            write,
            longterm,
        },
    );
    MmRet::Handle(h)
}

/// `put_page()` / `unpin_user_page()` of a handle (`dirty`: `unpin_user_pages_dirty_lock()`),
/// with the consequence check at unpin: the pinned folio must look pinned to the rest of the
/// kernel (`folio_maybe_dma_pinned()`, which fork and writeback rely on).
fn release_handle(
    ctx: &mut Ctx,
    w: &World,
    handles: &Handles,
    h: Handle,
    dirty: bool,
) -> KResult<MmRet> {
    let Some(r) = lock(handles).remove(&h) else {
        return Ok(MmRet::NoHandle);
    };
    if r.foll == Foll::Pin {
        let folio = w.page(r.page).folio_peek();
        if !w.page(r.page).is_free() && !folio_maybe_dma_pinned_peek(w, folio) {
            let p = w.page(folio);
            return Err(ctx.violation(
                Kind::PinAccounting,
                "unpin_user_page",
                Some(r.page),
                format!(
                    "pfn {} is pinned but folio_maybe_dma_pinned(folio {folio}) is false (refcount {}, pincount {})",
                    r.page,
                    p.refcount.peek(),
                    p.pincount.peek()
                ),
            ));
        }
    }
    // unpin_user_pages_dirty_lock() is for writable pins, whose FOLL_WRITE fault went through
    // page_mkwrite: a FOLL_GET reference is released with a plain put_page() (dirtying pages
    // behind get_user_pages() is the bug FOLL_PIN fixed), a read-only pin is never dirtied.
    if dirty && r.foll == Foll::Pin && r.write {
        unpin_user_page_dirty_lock(ctx, w, r.page, r.foll)?;
    } else {
        unpin_user_page(ctx, w, r.page, r.foll)?;
    }
    Ok(MmRet::Done)
}

/// Results of the NMIs, by number in the plan (`None`: never returned).
type NmiResults = Arc<Mutex<Vec<Option<MmRet>>>>;

/// What the main task hands back.
struct Raw {
    results: Vec<(Vec<Option<MmRet>>, Vec<Event>)>,
    nmis: Vec<Option<MmRet>>,
    violation: Option<Violation>,
    switches: Vec<Switch>,
}

/// Run the threads and the teardown inside one shuttle execution.
fn execute_body(exec: Arc<Exec>, cfg: WorldConfig, program: Arc<Program>) -> Raw {
    let mut solo = Ctx::solo(Arc::clone(&exec));
    let world = match World::new(&mut solo, cfg) {
        Ok(w) => Arc::new(w),
        Err(Stop) => {
            return Raw {
                results: Vec::new(),
                nmis: Vec::new(),
                violation: exec.take_violation(),
                switches: Vec::new(),
            }
        }
    };
    let handles: Handles = Arc::new(Mutex::new(BTreeMap::new()));
    let nmis: NmiResults = Arc::new(Mutex::new(vec![None; program.nmis.len()]));
    let kh: KHandles = Arc::new(Mutex::new(KernelHandles::default()));
    let mut bodies: Vec<CpuBody<Vec<Option<MmRet>>>> = Vec::new();
    for t in 0..program.threads.len() {
        let (w, hs, p, k) = (
            Arc::clone(&world),
            Arc::clone(&handles),
            Arc::clone(&program),
            Arc::clone(&kh),
        );
        let (wn, nr) = (Arc::clone(&world), Arc::clone(&nmis));
        bodies.push(Box::new(move |ctx: &mut Ctx| {
            // The NMI handler: a build-id lookup, its own process in the history.
            ctx.set_nmi_handler(Box::new(move |ctx: &mut Ctx, nmi: usize| {
                ctx.op_begin(NMI_OP_BASE as usize + nmi);
                let r = build_id_parse(ctx, &wn, &wn.text)?;
                ctx.op_end(NMI_OP_BASE as usize + nmi);
                nr.lock().unwrap_or_else(|e| e.into_inner())[nmi] = Some(build_id_ret(r));
                Ok(())
            }));
            let mut out = Vec::with_capacity(p.threads[t].len());
            for (i, op) in p.threads[t].iter().enumerate() {
                // irq_work runs when the CPU next takes interrupts, at the latest between ops;
                // a user task freezes on its way back to user space, between its ops too.
                if mm_impl::page_alloc::irq_work_run(ctx, &w).is_err()
                    || ctx.try_to_freeze().is_err()
                {
                    return out;
                }
                ctx.op_begin(i);
                match run_op(ctx, &w, &hs, &k, op, p.handle_of(t, i)) {
                    Ok(r) => {
                        ctx.op_end(i);
                        out.push(Some(r));
                    }
                    Err(Stop) => {
                        out.push(None);
                        return out;
                    }
                }
            }
            // NMIs planned past the thread's last point hit the idle CPU.
            let _ = ctx.run_remaining_nmis();
            out
        }));
    }
    let cpus = run_cpus(&exec, bodies);
    let switches = exec.switch_log();
    let mut violation = exec.take_violation();
    if violation.is_none() {
        violation = teardown(&exec, &world, &handles, &kh);
    }
    let nmis = nmis.lock().unwrap_or_else(|e| e.into_inner()).clone();
    Raw {
        results: cpus.into_iter().map(|c| (c.value, c.events)).collect(),
        nmis,
        violation,
        switches,
    }
}

/// Judge the final state, then release every owner and check that nothing leaked.
fn teardown(exec: &Arc<Exec>, w: &World, handles: &Handles, kh: &KHandles) -> Option<Violation> {
    let held: Vec<(Handle, Held)> = lock(handles).iter().map(|(h, r)| (*h, *r)).collect();
    let mut refs: Vec<HeldRef> = held
        .iter()
        .map(|(_, r)| HeldRef {
            page: r.page,
            owner: r.owner,
            pin: r.foll == Foll::Pin,
        })
        .collect();
    // The RFC's vhost aliases hold a GUP reference each (the fixed ones hold none).
    refs.extend(
        w.vhost
            .peek()
            .iter()
            .filter(|m| m.gup_ref)
            .map(|m| HeldRef {
                page: m.page,
                owner: w.page(m.page).folio_peek(),
                pin: false,
            }),
    );
    let aliases: Vec<u32> = klock(kh).vhost.values().copied().collect();
    let (areas, blocks): (Vec<VmStruct>, Vec<u32>) = {
        let k = klock(kh);
        (
            k.vmalloc.values().cloned().collect(),
            k.np_blocks.values().copied().collect(),
        )
    };
    let kernel: Vec<u32> = areas
        .iter()
        .flat_map(|a| a.pages.iter().copied())
        .chain(blocks.iter().copied())
        .collect();
    if let Some(v) = consequence::before_release(w, &refs, &kernel) {
        return Some(v);
    }
    let mut ctx = Ctx::solo(Arc::clone(exec));
    let (longterm, short): (Vec<&Held>, Vec<&Held>) =
        held.iter().map(|(_, r)| r).partition(|r| r.longterm);
    let synced = (|| -> KResult<()> {
        // vhost stops: its aliases are unmapped (and, in the RFC, their pages dirtied).
        for &id in &aliases {
            vhost_uninit_vq_map(&mut ctx, w, id)?;
        }
        // Short-term references end before the final sync, as an O_DIRECT read completes:
        // a writable pin dirties its page on the way out.
        for r in &short {
            if r.write && r.foll == Foll::Pin {
                unpin_user_page_dirty_lock(&mut ctx, w, r.page, r.foll)?;
            } else {
                unpin_user_page(&mut ctx, w, r.page, r.foll)?;
            }
        }
        // The final sync; long-term pins outlive it.
        write_cache_pages(&mut ctx, w, &w.data)?;
        Ok(())
    })();
    if synced.is_err() {
        return exec.take_violation();
    }
    if let Some(v) = lost_writes(w, &longterm) {
        return Some(v);
    }
    let released = (|| -> KResult<()> {
        for r in &longterm {
            if r.write && r.foll == Foll::Pin {
                unpin_user_page_dirty_lock(&mut ctx, w, r.page, r.foll)?;
            } else {
                unpin_user_page(&mut ctx, w, r.page, r.foll)?;
            }
        }
        for a in &areas {
            vfree(&mut ctx, w, a)?;
        }
        for &b in &blocks {
            // The set_memory_np caller restores its block before freeing it.
            set_memory_block(&mut ctx, w, b, true)?;
            folio_put_refs(&mut ctx, w, b, 1)?;
        }
        w.exit_mmap(&mut ctx)?;
        free_direct_map_tables(&mut ctx, w)
    })();
    if released.is_err() {
        return exec.take_violation();
    }
    consequence::after_release(w)
}

/// Consequence check after the final sync: whatever a device wrote through a long-term writable
/// pin of a data-file page must be on disk, since a sync is all a long-term user gets. Reads the
/// page and the disk, never the model's dirty bookkeeping.
fn lost_writes(w: &World, longterm: &[&Held]) -> Option<Violation> {
    let vma = w.vma(VmaKind::Shared);
    longterm
        .iter()
        .filter(|r| r.write)
        .find_map(|r| {
            let page = w.page(r.page);
            let index = page.index.peek();
            let mapped_file_page = r.owner == r.page
                && !page.is_free()
                && page.flags.peek() & mm_impl::mm_types::PG_ANON == 0
                && index < vma.pages
                && mm_impl::filemap::page_cache_refs(w, &w.data)
                    .iter()
                    .any(|&(f, _)| f == r.page);
            if !mapped_file_page {
                return None;
            }
            let (now, disk) = (page.data.peek(), w.disk[index as usize].peek());
            (now != disk).then(|| Violation {
                kind: Kind::LostWrite,
                func: "final sync".into(),
                thread: None,
                pfn: Some(r.page),
                detail: format!(
                    "page {index} of the data file holds {now:#x} (written through a long-term pin) but the disk has {disk:#x} after the final sync"
                ),
            })
        })
}

/// A reusable executor (one shuttle runner thread).
pub struct Executor {
    machine: Machine,
}

impl Default for Executor {
    fn default() -> Self {
        Executor::new()
    }
}

impl Executor {
    /// Start an executor.
    pub fn new() -> Executor {
        Executor {
            machine: Machine::new(),
        }
    }

    /// Run `file` (its header chooses bugs and order).
    pub fn run(&mut self, file: &ProgFile, opts: &RunOptions) -> Outcome {
        let mut out = self.run_many(std::slice::from_ref(file), opts);
        out.pop().expect("one outcome per program")
    }

    /// Run several programs back to back (one handoff to the runner thread for all of them).
    /// Outcomes are in the same order; a harness panic in one does not stop the others.
    pub fn run_many(&mut self, files: &[ProgFile], opts: &RunOptions) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(files.len());
        let mut rest = files;
        while !rest.is_empty() {
            // A program built through the API (not a file) may break the limits a file would
            // have been refused for: say so instead of running it.
            if let Err(e) = rest[0]
                .header
                .validate()
                .and_then(|_| rest[0].program.validate())
            {
                outcomes.push(Outcome::refused(&rest[0].program, e));
                rest = &rest[1..];
                continue;
            }
            let valid = rest
                .iter()
                .take_while(|f| f.header.validate().is_ok() && f.program.validate().is_ok())
                .count();
            let jobs: Vec<BatchJob<Raw>> = rest[..valid].iter().map(|f| job(f, opts)).collect();
            let (raws, panic) = self.machine.execute_batch(jobs);
            let done = raws.len();
            for (raw, file) in raws.into_iter().zip(rest) {
                outcomes.push(judge(file, opts, raw));
            }
            match panic {
                Some(HarnessPanic(msg)) => {
                    outcomes.push(Outcome {
                        verdict: Verdict::HarnessPanic(msg),
                        history: Vec::new(),
                        switches: Vec::new(),
                        trace: Vec::new(),
                        points: vec![0; rest[done].program.threads.len()],
                        check: None,
                        check_nanos: 0,
                    });
                    rest = &rest[done + 1..];
                }
                None => rest = &rest[done..],
            }
        }
        outcomes
    }
}

/// One execution of `file`, ready for the runner thread.
fn job(file: &ProgFile, opts: &RunOptions) -> BatchJob<Raw> {
    let program = &file.program;
    let plan = SchedPlan {
        priorities: program.schedule.priorities.clone(),
        preemptions: program.schedule.preemptions.clone(),
        random: opts.random,
        faults: program.faults.iter().map(|f| (f.thread, f.nth)).collect(),
        max_points_per_thread: 0,
        nmis: program.nmis.iter().map(|n| (n.thread, n.at)).collect(),
    };
    let exec = Arc::new(Exec::new(program.threads.len(), plan));
    let (e2, cfg, shared) = (
        Arc::clone(&exec),
        file.header.world_config(),
        Arc::new(program.clone()),
    );
    (exec, Box::new(move || execute_body(e2, cfg, shared)))
}

/// Merge the traces along the switch log, build the history, and decide the verdict.
fn judge(file: &ProgFile, opts: &RunOptions, raw: Raw) -> Outcome {
    let program = &file.program;
    let n = raw.results.len();
    let mut cursor = vec![0usize; n];
    let mut trace: Vec<TraceEvent> =
        Vec::with_capacity(raw.results.iter().map(|r| r.1.len()).sum());
    let mut emit = |t: usize, upto: usize, trace: &mut Vec<TraceEvent>| {
        let evs = &raw.results[t].1;
        let upto = upto.min(evs.len());
        for ev in &evs[cursor[t].min(upto)..upto] {
            trace.push(TraceEvent {
                thread: t as u8,
                ev: *ev,
            });
        }
        cursor[t] = cursor[t].max(upto);
    };
    for sw in &raw.switches {
        if let Some(from) = sw.from {
            if (from as usize) < n {
                emit(from as usize, sw.ev as usize, &mut trace);
            }
        }
    }
    for t in 0..n {
        emit(t, usize::MAX, &mut trace);
    }
    let points = raw
        .results
        .iter()
        .map(|r| {
            r.1.iter()
                .filter(|e| matches!(e.kind, EventKind::Point(_)))
                .count() as u32
        })
        .collect();

    // Trace position of each op's start and end, indexed [thread][op].
    let mut begin: Vec<Vec<usize>> = program.threads.iter().map(|t| vec![0; t.len()]).collect();
    let mut end: Vec<Vec<Option<usize>>> = program
        .threads
        .iter()
        .map(|t| vec![None; t.len()])
        .collect();
    let mut nmi_begin: Vec<Option<(u8, usize)>> = vec![None; program.nmis.len()];
    let mut nmi_end: Vec<Option<usize>> = vec![None; program.nmis.len()];
    for (pos, te) in trace.iter().enumerate() {
        let (t, i) = (te.thread as usize, te.ev.val as usize);
        if te.ev.val >= NMI_OP_BASE && matches!(te.ev.kind, EventKind::OpBegin | EventKind::OpEnd) {
            let k = (te.ev.val - NMI_OP_BASE) as usize;
            match te.ev.kind {
                EventKind::OpBegin => nmi_begin[k] = Some((te.thread, pos)),
                _ => nmi_end[k] = Some(pos),
            }
            continue;
        }
        match te.ev.kind {
            EventKind::OpBegin => begin[t][i] = pos,
            EventKind::OpEnd => end[t][i] = Some(pos),
            _ => {}
        }
    }
    let mut history = Vec::with_capacity(program.nops());
    for (t, (results, _)) in raw.results.iter().enumerate() {
        for (i, r) in results.iter().enumerate() {
            history.push(OpRecord {
                thread: t as u8,
                index: i,
                nmi: false,
                op: program.threads[t][i],
                invoke: begin[t][i],
                response: match (r, end[t][i]) {
                    (Some(r), Some(p)) => Some((p, *r)),
                    _ => None,
                },
            });
        }
    }

    for (k, b) in nmi_begin.iter().enumerate() {
        let Some((t, invoke)) = *b else { continue };
        history.push(OpRecord {
            thread: t,
            index: k,
            nmi: true,
            op: Op::BuildId,
            invoke,
            response: match (raw.nmis.get(k).copied().flatten(), nmi_end[k]) {
                (Some(r), Some(p)) => Some((p, r)),
                _ => None,
            },
        });
    }

    let mut check_result = None;
    let mut check_nanos = 0;
    let verdict = match raw.violation {
        Some(v) if v.kind == Kind::StepBudget => Verdict::Unknown(v.to_string()),
        Some(v) => Verdict::Fail {
            signature: Signature::of(&v),
            violation: v,
        },
        None if opts.skip_check => Verdict::Pass,
        None => {
            let cfg = file.header.world_config();
            let spec = cached_world_spec(cfg);
            let (entries, owner) = spec_history(cfg, program, &history);
            let budget = if opts.check_budget == 0 {
                CHECK_BUDGET
            } else {
                opts.check_budget
            };
            let t0 = std::time::Instant::now();
            let c = check_by_range(cfg, program, &spec, &entries, budget);
            check_nanos = t0.elapsed().as_nanos() as u64;
            let v = match &c {
                Check::Linearizable => Verdict::Pass,
                Check::Unknown => {
                    Verdict::Unknown("linearizability checker budget exhausted".into())
                }
                Check::NotLinearizable { longest } => {
                    let v = Violation {
                        kind: Kind::NotLinearizable,
                        func: "mm_spec".into(),
                        thread: None,
                        pfn: None,
                        detail: format!(
                            "no order of the {} ops explains their results; longest explainable prefix: {}",
                            entries.len(),
                            longest
                                .iter()
                                .map(|&i| format!("t{}#{}", history[owner[i]].thread, history[owner[i]].index))
                                .collect::<Vec<_>>()
                                .join(" ")
                        ),
                    };
                    Verdict::Fail {
                        signature: Signature::of(&v),
                        violation: v,
                    }
                }
            };
            check_result = Some(c);
            v
        }
    };
    Outcome {
        verdict,
        history,
        switches: raw.switches,
        trace,
        points,
        check: check_result,
        check_nanos,
    }
}

/// The history the linearizability checker sees, and for each entry the index of the op it
/// comes from.
///
/// - A range zap clears one PTE at a time under each table's PTE lock. Whatever takes that lock
///   (a split's lookup, a fault installing PTEs) sees each table's part atomically; lockless
///   observers of one address (the MMU walk of a user access, gup-fast, a fault that fails
///   before taking the lock) can see it half done. So a zap is one entry per page such a
///   concurrent observer addresses, and one atomic entry per table for the rest.
/// - A faulting op may populate its huge-page range more than once (fault, lose it to a racing
///   zap, retry): one of those populations is an optional entry of its own.
/// - A GUP that returned a handle adds a `Publish` entry at its return: only from then on can
///   other threads name the handle.
pub fn spec_history(
    cfg: WorldConfig,
    program: &Program,
    history: &[OpRecord],
) -> (Vec<Entry<MmOp, MmRet>>, Vec<usize>) {
    let mut entries: Vec<Entry<MmOp, MmRet>> = Vec::new();
    let mut owner: Vec<usize> = Vec::new();
    let huge = 1u32 << cfg.order;
    let end_of = |r: &OpRecord| r.response.map_or(usize::MAX, |(p, _)| p);
    // The address op `r` observes without the PTE lock, if any.
    let observes = |r: &OpRecord| -> Option<u32> {
        match spec_op(cfg, program, r) {
            MmOp::Touch { vpn, .. }
            | MmOp::Gup { vpn, .. }
            | MmOp::GupFast { vpn, .. }
            | MmOp::PinLongterm { vpn, .. }
            | MmOp::VhostMap { vpn, .. } => Some(vpn),
            _ => None,
        }
    };
    for (k, r) in history.iter().enumerate() {
        let ops = match spec_op(cfg, program, r) {
            MmOp::Zap { vpn, len } => {
                let range = vpn..vpn + len;
                let mut seen: Vec<u32> = history
                    .iter()
                    .enumerate()
                    .filter(|&(j, o)| j != k && o.invoke < end_of(r) && r.invoke < end_of(o))
                    .filter_map(|(_, o)| observes(o))
                    .filter(|a| range.contains(a))
                    .collect();
                seen.sort_unstable();
                seen.dedup();
                let mut parts: Vec<MmOp> =
                    seen.iter().map(|&a| MmOp::Zap { vpn: a, len: 1 }).collect();
                // The rest, one atomic entry per PTE table (maximal runs within a table).
                let mut a = vpn;
                while a < vpn + len {
                    if seen.binary_search(&a).is_ok() {
                        a += 1;
                        continue;
                    }
                    let start = a;
                    let table_end = (a | (huge - 1)) + 1;
                    while a < vpn + len && a < table_end && seen.binary_search(&a).is_err() {
                        a += 1;
                    }
                    parts.push(MmOp::Zap {
                        vpn: start,
                        len: a - start,
                    });
                }
                parts
            }
            // A SEEK_DATA (SEEK_HOLE) walk looks at each page at an instant of its own: a probe
            // per page it passed as a hole (as data), and one for the page it returned.
            MmOp::SeekProbe {
                page: start,
                data: seek_data,
            } => {
                let end = text_pages(cfg.order);
                // A probe of no page, for results the walk cannot give: the spec refuses it.
                let impossible = MmOp::SeekProbe {
                    page: u32::MAX,
                    data: seek_data,
                };
                match r.response {
                    Some((_, MmRet::Value(found))) => {
                        let found = u32::try_from(found).unwrap_or(u32::MAX);
                        let mut probes: Vec<MmOp> = (start..found.min(end))
                            .map(|page| MmOp::SeekProbe {
                                page,
                                data: !seek_data,
                            })
                            .collect();
                        if found < start || found > end || (seek_data && found == end) {
                            probes.push(impossible);
                        } else if found < end {
                            // SEEK_HOLE may stop at the end of the file, which is no page.
                            probes.push(MmOp::SeekProbe {
                                page: found,
                                data: seek_data,
                            });
                        }
                        probes
                    }
                    Some((_, MmRet::Errno(Errno::ENXIO))) if seek_data => (start..end)
                        .map(|page| MmOp::SeekProbe { page, data: false })
                        .collect(),
                    Some(_) => vec![impossible],
                    None => Vec::new(),
                }
            }
            op => vec![op],
        };
        let faults_at = match ops.first() {
            Some(
                MmOp::Touch { vpn, .. }
                | MmOp::Gup { vpn, .. }
                | MmOp::PinLongterm { vpn, .. }
                | MmOp::VhostMap { vpn, .. },
            ) => Some(*vpn),
            _ => None,
        };
        for op in ops {
            let ret = match (&op, r.response) {
                (MmOp::SeekProbe { .. }, Some((p, _))) => Some((p, MmRet::Done)),
                (_, resp) => resp,
            };
            entries.push(match ret {
                Some((p, ret)) => Entry::returned(op, r.invoke as u64, p as u64, ret),
                None => Entry::pending(op, r.invoke as u64),
            });
            owner.push(k);
        }
        // A faulting op may populate its huge-page range more than once (fault, lose it to a
        // racing zap, retry): one of those populations is an optional effect of its own.
        if let Some(vpn) = faults_at {
            let by = r.response.map_or(u64::MAX, |(p, _)| p as u64);
            entries.push(Entry::optional(MmOp::Populate { vpn }, r.invoke as u64, by));
            owner.push(k);
        }
        let gup = matches!(
            r.op,
            Op::Gup { .. } | Op::GupFast { .. } | Op::PinLongterm { .. } | Op::VhostMap { .. }
        );
        if let (true, Some((p, MmRet::Handle(h)))) = (gup, r.response) {
            let publish = if matches!(r.op, Op::VhostMap { .. }) {
                MmOp::PublishAlias { h }
            } else {
                MmOp::Publish { h }
            };
            entries.push(Entry::returned(publish, p as u64, p as u64, MmRet::Done));
            owner.push(k);
        }
    }
    (entries, owner)
}

/// Check a history part by part. The spec is a product over huge-page ranges: mappings, page
/// identities and fault-around are per range, and a handle lives in the range of the GUP that
/// created it. So the history is linearizable iff each range's sub-history is
/// (P-compositionality), and each part is searched on its own. Longest prefixes are reported
/// in the whole history's entry indices.
pub fn check_by_range(
    cfg: WorldConfig,
    program: &Program,
    spec: &MmSpec,
    entries: &[Entry<MmOp, MmRet>],
    budget: u64,
) -> Check {
    let range_of_handle = |h: Handle| -> u32 {
        program
            .creator_of(h)
            .and_then(|(t, i)| match program.threads[t][i] {
                Op::Gup { at, .. }
                | Op::GupFast { at, .. }
                | Op::PinLongterm { at, .. }
                | Op::VhostMap { at } => Some(resolve_cfg(cfg, at) >> cfg.order),
                _ => None,
            })
            .unwrap_or(u32::MAX)
    };
    let key = |e: &Entry<MmOp, MmRet>| -> u64 {
        match &e.op {
            MmOp::Touch { vpn, .. }
            | MmOp::Gup { vpn, .. }
            | MmOp::GupFast { vpn, .. }
            | MmOp::Split { vpn }
            | MmOp::Zap { vpn, .. }
            | MmOp::UffdCopy { vpn, .. }
            | MmOp::CollapsePteMapped { vpn }
            | MmOp::Populate { vpn } => u64::from(vpn >> cfg.order),
            // The shmem file's range `r` is mapped by exactly one huge range of its VMA.
            MmOp::CollapseShmem { range } => {
                u64::from((vma_layout(cfg.order, VmaKind::Shmem).0 >> cfg.order) + range)
            }
            MmOp::Put { h }
            | MmOp::ReadPinned { h }
            | MmOp::WritePinned { h, .. }
            | MmOp::Publish { h } => u64::from(range_of_handle(*h)),
            // The text file's state is a product over its huge-page ranges too.
            MmOp::Readahead { page }
            | MmOp::Evict { page }
            | MmOp::SplitFile { page }
            | MmOp::SeekProbe { page, .. }
            | MmOp::Mincore { page } => FILE_KEY_BASE + u64::from(page >> cfg.order),
            MmOp::Collapse { range } => FILE_KEY_BASE + u64::from(*range),
            MmOp::BuildId => BUILD_ID_KEY,
            MmOp::PinLongterm { vpn, .. } => u64::from(vpn >> cfg.order),
            MmOp::UnpinDirty { h }
            | MmOp::VhostWrite { h, .. }
            | MmOp::VhostUnmap { h }
            | MmOp::PublishAlias { h } => u64::from(range_of_handle(*h)),
            MmOp::VhostMap { vpn, .. } => u64::from(vpn >> cfg.order),
            // Their results say nothing about user-visible state.
            MmOp::Writeback | MmOp::ReleaseBuffers => 1 << 42,
            // Kernel allocations are independent of the user address space and of each other;
            // hibernate's spec is independent of everything (its image is a consequence check).
            MmOp::Vmalloc { h }
            | MmOp::Vfree { h }
            | MmOp::Vwrite { h }
            | MmOp::SetMemoryNp { h } => 1 << 40 | u64::from(h.thread) << 8 | u64::from(h.index),
            MmOp::Hibernate => 1 << 41,
        }
    };
    check_partitioned(spec, entries, key, budget)
}

/// The specs already built, one per huge-page order (nothing else of a header changes the spec):
/// a spec caches its initial state, so reusing it saves building that state per execution.
static SPECS: Mutex<Vec<(u8, Arc<MmSpec>)>> = Mutex::new(Vec::new());

/// [`world_spec`], shared across executions.
fn cached_world_spec(cfg: WorldConfig) -> Arc<MmSpec> {
    let mut specs = SPECS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, s)) = specs.iter().find(|(o, _)| *o == cfg.order) {
        return Arc::clone(s);
    }
    let s = Arc::new(world_spec(cfg));
    specs.push((cfg.order, Arc::clone(&s)));
    s
}

/// The spec of the default world at `cfg`.
pub fn world_spec(cfg: WorldConfig) -> MmSpec {
    MmSpec {
        order: cfg.order,
        initial: (0..1u32 << cfg.order)
            .map(|i| {
                (
                    resolve_addr(cfg.order, VmaKind::Anon, i),
                    initial_anon_data(i),
                )
            })
            // The shared mapping names the data file's pages from the start.
            .chain((0..SHARED_PMDS << cfg.order).map(|i| {
                (
                    resolve_addr(cfg.order, VmaKind::Shared, i),
                    data_file_data(i),
                )
            }))
            .collect(),
        file_cached: (1u64 << (1u32 << cfg.order)) - 1,
        build_id: BUILD_ID,
        file_pages: text_pages(cfg.order),
        init_cache: std::sync::OnceLock::new(),
        shared: {
            let (start, pages) = vma_layout(cfg.order, VmaKind::Shared);
            (start, start + pages)
        },
        shmem_start: vma_layout(cfg.order, VmaKind::Shmem).0,
        shmem_file: (0..SHMEM_PMDS << cfg.order)
            .map(|i| shmem_initial(cfg.order, i))
            .collect(),
    }
}

/// The spec's view of an op (address resolved, handle named).
pub fn spec_op(cfg: WorldConfig, program: &Program, r: &OpRecord) -> MmOp {
    if r.nmi {
        return MmOp::BuildId;
    }
    let h = program.handle_of(r.thread as usize, r.index);
    let fp = |at: FilePage| file_page(cfg.order, at);
    match r.op {
        Op::Touch { at, write } => MmOp::Touch {
            vpn: resolve_cfg(cfg, at),
            write: write.map(u64::from),
        },
        Op::GupFast { at, .. } => MmOp::GupFast {
            vpn: resolve_cfg(cfg, at),
            h: h.expect("gup creates a handle"),
        },
        Op::Gup { at, write, .. } => MmOp::Gup {
            vpn: resolve_cfg(cfg, at),
            h: h.expect("gup creates a handle"),
            write,
        },
        Op::Put { h } => MmOp::Put { h },
        Op::ReadPinned { h } => MmOp::ReadPinned { h },
        Op::WritePinned { h, val } => MmOp::WritePinned {
            h,
            val: u64::from(val),
        },
        Op::Split { at } => MmOp::Split {
            vpn: resolve_cfg(cfg, at),
        },
        Op::Zap { at, len } => {
            let vpn = resolve_cfg(cfg, at);
            let (start, pages) = vma_layout(cfg.order, at.vma);
            MmOp::Zap {
                vpn,
                len: u32::from(len.max(1)).min(start + pages - vpn),
            }
        }
        Op::Readahead { at } => MmOp::Readahead { page: fp(at) },
        Op::Evict { at } => MmOp::Evict { page: fp(at) },
        Op::Collapse { at } => MmOp::Collapse {
            range: fp(at) >> cfg.order,
        },
        Op::SplitFile { at } => MmOp::SplitFile { page: fp(at) },
        // The start page and what the walk looks for; spec_history turns it into its probes.
        Op::SeekData { at } => MmOp::SeekProbe {
            page: fp(at),
            data: true,
        },
        Op::SeekHole { at } => MmOp::SeekProbe {
            page: fp(at),
            data: false,
        },
        Op::Mincore { at } => MmOp::Mincore { page: fp(at) },
        Op::BuildId => MmOp::BuildId,
        Op::Vmalloc { .. } => MmOp::Vmalloc {
            h: h.expect("vmalloc creates a handle"),
        },
        Op::Vfree { h } => MmOp::Vfree { h },
        Op::Vwrite { h, .. } => MmOp::Vwrite { h },
        Op::SetMemoryNp => MmOp::SetMemoryNp {
            h: h.expect("set_memory_np creates a handle"),
        },
        Op::Hibernate => MmOp::Hibernate,
        Op::PinLongterm { at, write } => MmOp::PinLongterm {
            vpn: resolve_cfg(cfg, at),
            h: h.expect("pin_longterm creates a handle"),
            write,
        },
        Op::UnpinDirty { h } => MmOp::UnpinDirty { h },
        Op::Writeback => MmOp::Writeback,
        Op::ReleaseBuffers { .. } => MmOp::ReleaseBuffers,
        Op::VhostMap { at } => MmOp::VhostMap {
            vpn: resolve_cfg(cfg, at),
            h: h.expect("vhost_map creates a handle"),
        },
        Op::VhostWrite { h, val } => MmOp::VhostWrite {
            h,
            val: u64::from(val),
        },
        Op::VhostUnmap { h } => MmOp::VhostUnmap { h },
        Op::UffdCopy { at, val } => MmOp::UffdCopy {
            vpn: resolve_cfg(cfg, at),
            val: u64::from(val),
        },
        Op::CollapseShmem { page } => MmOp::CollapseShmem {
            range: shmem_page(cfg.order, page) >> cfg.order,
        },
        // A device access with page requests: what a user access at that address may see.
        Op::IommuRead { at } => MmOp::Touch {
            vpn: resolve_cfg(cfg, at),
            write: None,
        },
        Op::IommuWrite { at, val } => MmOp::Touch {
            vpn: resolve_cfg(cfg, at),
            write: Some(u64::from(val)),
        },
        Op::CollapsePteMapped { at } => MmOp::CollapsePteMapped {
            vpn: resolve_cfg(cfg, at),
        },
    }
}

/// A pool of executors shared by the process, so callers in several OS threads run in parallel
/// without each starting its own runner thread per call.
static POOL: Mutex<Vec<Executor>> = Mutex::new(Vec::new());

/// The one entry point every engine, the minimizer, the CLI and the tests use.
pub fn run(file: &ProgFile) -> Outcome {
    run_with(file, &RunOptions::default())
}

/// [`run`] with options.
pub fn run_with(file: &ProgFile, opts: &RunOptions) -> Outcome {
    run_many(std::slice::from_ref(file), opts)
        .pop()
        .expect("one outcome per program")
}

/// Run a batch of programs: the same outcomes as one [`run`] each, with one handoff to the
/// runner thread for the whole batch.
pub fn run_many(files: &[ProgFile], opts: &RunOptions) -> Vec<Outcome> {
    let mut ex = POOL
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .pop()
        .unwrap_or_default();
    let out = ex.run_many(files, opts);
    POOL.lock().unwrap_or_else(|e| e.into_inner()).push(ex);
    out
}

/// Errno as a short string (for reports).
pub fn errno_name(e: Errno) -> &'static str {
    match e {
        Errno::ENOMEM => "ENOMEM",
        Errno::EFAULT => "EFAULT",
        Errno::EAGAIN => "EAGAIN",
        Errno::EBUSY => "EBUSY",
        Errno::EINVAL => "EINVAL",
        Errno::ENXIO => "ENXIO",
        Errno::EEXIST => "EEXIST",
        Errno::ENOENT => "ENOENT",
    }
}
