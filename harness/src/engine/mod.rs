//! Program and schedule generation for the baseline engines (random walk, PCT) and the
//! exhaustive enumerator. The engine is a seam: LibAFL and honggfuzz drive [`crate::run`] too.

pub mod exhaustive;
pub mod pct;
pub mod random;

use crate::program::{
    Addr, DataPage, Fault, FilePage, Nmi, Op, Program, Schedule, MAX_NMIS, MAX_OPS, MAX_THREADS,
};
use arbitrary::{Arbitrary, Unstructured};
use mm_impl::mm_types::VmaKind;
use rand::rngs::StdRng;
use rand::{Rng, RngExt};

/// Which schedule strategy a campaign uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum EngineKind {
    /// One random choice at every scheduling point (baseline).
    Random,
    /// PCT: random priorities and a few change points (baseline).
    Pct,
}

impl EngineKind {
    /// Name for reports.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Random => "random",
            EngineKind::Pct => "pct",
        }
    }
}

fn bytes(rng: &mut StdRng, n: usize) -> Vec<u8> {
    let mut b = vec![0u8; n];
    rng.fill_bytes(&mut b);
    b
}

/// One random op.
pub fn random_op(rng: &mut StdRng) -> Op {
    loop {
        let b = bytes(rng, 32);
        if let Ok(op) = Op::arbitrary(&mut Unstructured::new(&b)) {
            return op;
        }
    }
}

/// A random program of any shape the limits allow (no schedule: the engine adds one).
pub fn random_program(rng: &mut StdRng) -> Program {
    loop {
        let b = bytes(rng, 512);
        if let Ok(mut p) = Program::arbitrary(&mut Unstructured::new(&b)) {
            p.schedule = Schedule::default();
            if p.validate().is_ok() && p.nops() > 0 {
                return p;
            }
        }
    }
}

/// A random program of exactly `threads` threads of `ops` ops each, no faults (for benchmarks).
pub fn random_program_shape(rng: &mut StdRng, threads: usize, ops: usize) -> Program {
    Program {
        threads: (0..threads)
            .map(|_| (0..ops).map(|_| random_op(rng)).collect())
            .collect(),
        schedule: Schedule::default(),
        faults: Vec::new(),
        nmis: Vec::new(),
    }
}

/// A small structural mutation: replace, insert, delete or swap ops, retarget an address, or
/// add/remove an injected fault. The schedule is left to the engine.
pub fn mutate(p: &Program, rng: &mut StdRng) -> Program {
    let mut q = p.clone();
    let t = rng.random_range(0..q.threads.len());
    match rng.random_range(0..7u8) {
        0 if !q.threads[t].is_empty() => {
            let i = rng.random_range(0..q.threads[t].len());
            q.threads[t][i] = random_op(rng);
        }
        1 if q.threads[t].len() < MAX_OPS => {
            let i = rng.random_range(0..=q.threads[t].len());
            q.threads[t].insert(i, random_op(rng));
        }
        2 if !q.threads[t].is_empty() => {
            let i = rng.random_range(0..q.threads[t].len());
            q.threads[t].remove(i);
        }
        3 if q.threads.len() < MAX_THREADS => {
            q.threads.push(
                (0..rng.random_range(1..4))
                    .map(|_| random_op(rng))
                    .collect(),
            );
        }
        4 => {
            for op in q.threads[t].iter_mut() {
                if let Op::Readahead { at }
                | Op::Evict { at }
                | Op::Collapse { at }
                | Op::SplitFile { at }
                | Op::SeekData { at }
                | Op::SeekHole { at }
                | Op::Mincore { at } = op
                {
                    if rng.random_bool(0.5) {
                        *at = FilePage(rng.random_range(0..64));
                    }
                }
                if let Op::ReleaseBuffers { at } = op {
                    if rng.random_bool(0.5) {
                        *at = DataPage(rng.random_range(0..32));
                    }
                }
                if let Op::Touch { at, .. }
                | Op::GupFast { at, .. }
                | Op::Gup { at, .. }
                | Op::Split { at }
                | Op::Zap { at, .. }
                | Op::PinLongterm { at, .. }
                | Op::VhostMap { at }
                | Op::UffdCopy { at, .. }
                | Op::IommuRead { at }
                | Op::IommuWrite { at, .. }
                | Op::CollapsePteMapped { at } = op
                {
                    if rng.random_bool(0.5) {
                        *at = Addr {
                            vma: at.vma,
                            page: rng.random_range(0..32),
                        };
                    } else if rng.random_bool(0.25) {
                        // Move it to another VMA: the same op on another kind of memory.
                        *at = Addr {
                            vma: VmaKind::ALL[rng.random_range(0..VmaKind::ALL.len())],
                            page: at.page,
                        };
                    }
                }
                if let Op::CollapseShmem { page } = op {
                    if rng.random_bool(0.5) {
                        *page = rng.random_range(0..32);
                    }
                }
            }
        }
        5 => {
            // Add, move or drop an NMI.
            if q.nmis.len() < MAX_NMIS && (q.nmis.is_empty() || rng.random_bool(0.5)) {
                q.nmis.push(Nmi {
                    thread: t as u8,
                    at: rng.random_range(1..200),
                });
            } else if rng.random_bool(0.5) {
                let k = rng.random_range(0..q.nmis.len());
                q.nmis[k].at = rng.random_range(1..200);
            } else {
                q.nmis.clear();
            }
        }
        _ => {
            if q.faults.is_empty() || rng.random_bool(0.5) {
                q.faults.push(Fault {
                    thread: t as u8,
                    nth: rng.random_range(1..6),
                });
            } else {
                q.faults.clear();
            }
        }
    }
    if q.validate().is_err() || q.nops() == 0 {
        return p.clone();
    }
    q
}
