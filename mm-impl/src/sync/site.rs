//! Scheduling-point sites, shared-object names and the per-task event record.

use serde::{Deserialize, Serialize};

/// Where in the model a scheduling point sits: the kernel function and the access it makes.
///
/// `id` is a compile-time FNV-1a hash of both strings, so coverage maps and signatures built
/// from sites are stable across processes (no pointer values, no `HashMap` seeds).
#[derive(Debug)]
pub struct Site {
    /// Kernel function the access belongs to (`try_get_folio`).
    pub func: &'static str,
    /// The access in kernel terms (`READ_ONCE(page->compound_head)`).
    pub what: &'static str,
    /// Stable hash of `func` and `what`.
    pub id: u32,
}

const fn fnv1a(s: &str, mut h: u32) -> u32 {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        h ^= b[i] as u32;
        h = h.wrapping_mul(0x0100_0193);
        i += 1;
    }
    h
}

impl Site {
    /// A site; use the [`site!`](crate::site) macro so it is a promoted `&'static`.
    pub const fn new(func: &'static str, what: &'static str) -> Site {
        let h = fnv1a(what, fnv1a(func, 0x811c_9dc5) ^ 0x2f);
        Site { func, what, id: h }
    }
}

/// `site!("func", "access")`: a `&'static Site` built at compile time.
#[macro_export]
macro_rules! site {
    ($func:literal, $what:literal) => {{
        const S: $crate::sync::Site = $crate::sync::Site::new($func, $what);
        &S
    }};
}

/// Kind of access a scheduling point makes to its object.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Access {
    /// A load (READ_ONCE, acquire load, lock-word read).
    Read,
    /// A store (WRITE_ONCE, release store, unlock).
    Write,
    /// A read-modify-write (atomic add, cmpxchg, lock acquisition).
    Rmw,
    /// `cpu_relax()` in a retry or spin loop.
    Relax,
}

/// The shared object a point touches: a tag in the top 4 bits and an index below.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Obj(pub u32);

impl Obj {
    const SHIFT: u32 = 28;
    /// No particular object (cpu_relax, barriers).
    pub const NONE: Obj = Obj(0);
    /// `struct page` number `pfn` (all of its fields).
    pub const fn page(pfn: u32) -> Obj {
        Obj((1 << Self::SHIFT) | pfn)
    }
    /// PTE slot `idx` of the page-table page `table_pfn`.
    pub const fn pte(table_pfn: u32, idx: u32) -> Obj {
        Obj((2 << Self::SHIFT) | (table_pfn << 6) | idx)
    }
    /// PMD slot `idx` of the single mm.
    pub const fn pmd(idx: u32) -> Obj {
        Obj((3 << Self::SHIFT) | idx)
    }
    /// A lock, by its lock id.
    pub const fn lock(id: u32) -> Obj {
        Obj((4 << Self::SHIFT) | id)
    }
    /// Any other named object (counters, sequence counts).
    pub const fn other(id: u32) -> Obj {
        Obj((5 << Self::SHIFT) | id)
    }
    /// Slot `idx` of the page cache's xarray (root slots first, then node slots).
    pub const fn xa_slot(idx: u32) -> Obj {
        Obj((6 << Self::SHIFT) | idx)
    }
    /// Human-readable name for race diagrams.
    pub fn describe(self) -> String {
        let tag = self.0 >> Self::SHIFT;
        let idx = self.0 & ((1 << Self::SHIFT) - 1);
        match tag {
            0 => String::new(),
            1 => format!("page#{idx}"),
            2 => format!("pte[{}]@pt#{}", idx & 63, idx >> 6),
            3 => format!("pmd[{idx}]"),
            4 => format!("lock#{idx}"),
            6 => format!("xa[{idx}]"),
            _ => format!("obj#{idx}"),
        }
    }
}

/// What a per-task event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A scheduling point.
    Point(Access),
    /// A memory barrier (smp_wmb, smp_rmb, smp_mb): recorded, not a point.
    Barrier,
    /// A plain store to a field nothing reads locklessly at that moment (a page being prepared
    /// or freed, a lock-protected field): recorded and counted as a write, not a point.
    Plain,
    /// The task started operation number `obj.0` of its list.
    OpBegin,
    /// The task finished operation number `obj.0` of its list.
    OpEnd,
}

/// One entry of a task's trace. Points, barriers and op boundaries, in task order.
#[derive(Clone, Copy, Debug)]
pub struct Event {
    /// Where.
    pub site: &'static Site,
    /// On what.
    pub obj: Obj,
    /// The value read or written (or the op index for op boundaries).
    pub val: u64,
    /// What kind of event.
    pub kind: EventKind,
}

/// Placeholder site for op boundaries.
pub static OP_SITE: Site = Site::new("op", "boundary");
