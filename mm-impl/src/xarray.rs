//! lib/xarray.c: the page cache's index, two levels deep. A root slot per huge-page range holds
//! nothing, a multi-order entry (a huge folio, a shadow) or a node of 2^order single-index slots.
//!
//! Readers walk it locklessly (RCU); writers hold `xa_lock`. Nodes are never reused within an
//! execution, which is what RCU-deferred freeing guarantees a reader that still holds a pointer
//! to a node the tree no longer links: it reads the node's old slots (RETRY after a shrink).

use crate::errno::Errno;
use crate::site;
use crate::sync::{Ctx, KAtomicU64, KResult, LockClass, Obj, SpinLock};

/// An entry as stored in a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XaEntry {
    /// Nothing.
    Empty,
    /// `XA_RETRY_ENTRY`: the node was unlinked (or a slot is reserved); walk again from the root.
    Retry,
    /// An internal node pointer.
    Node(u32),
    /// A folio, by its head pfn.
    Folio(u32),
    /// A value entry (`xa_mk_value`): a shadow or swap entry (the model's eviction leaves none).
    Value(u32),
}

impl XaEntry {
    /// The slot word.
    pub fn encode(self) -> u64 {
        match self {
            XaEntry::Empty => 0,
            XaEntry::Retry => 1,
            XaEntry::Node(n) => (u64::from(n) << 3) | 2,
            XaEntry::Folio(f) => (u64::from(f) << 3) | 3,
            XaEntry::Value(v) => (u64::from(v) << 3) | 4,
        }
    }

    /// The entry a slot word holds.
    pub fn decode(x: u64) -> XaEntry {
        let p = (x >> 3) as u32;
        match x & 7 {
            0 => XaEntry::Empty,
            1 => XaEntry::Retry,
            2 => XaEntry::Node(p),
            3 => XaEntry::Folio(p),
            _ => XaEntry::Value(p),
        }
    }
}

/// Where a lookup found its entry, so `xas_reload()` can read the same slot again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XaSlot {
    /// Root slot of a range.
    Root(u32),
    /// Slot `offset` of node `node`.
    Node(u32, u32),
}

/// `struct xarray` of one mapping.
#[derive(Debug)]
pub struct XArray {
    order: u8,
    /// One root slot per huge-page range.
    pub root: Vec<KAtomicU64>,
    /// Node `n` owns slots `[n << order, (n + 1) << order)`.
    pub nodes: Vec<KAtomicU64>,
    /// `xa_lock`; its data is the number of nodes handed out so far.
    pub xa_lock: SpinLock<u32>,
}

/// Nodes an execution can allocate beyond one per range (each split or small store into an
/// empty range takes one); past that, node allocation fails with ENOMEM as a slab would.
const SPARE_NODES: u32 = 32;

impl XArray {
    /// An empty array of `ranges` huge-page ranges.
    pub fn new(order: u8, ranges: u32, lock_id: u32) -> XArray {
        let per = 1u32 << order;
        let nnodes = ranges + SPARE_NODES;
        XArray {
            order,
            root: (0..ranges)
                .map(|r| KAtomicU64::new(0, Obj::xa_slot(r)))
                .collect(),
            nodes: (0..nnodes * per)
                .map(|i| KAtomicU64::new(0, Obj::xa_slot(ranges + i)))
                .collect(),
            xa_lock: SpinLock::new(lock_id, LockClass::XaLock, 0),
        }
    }

    /// Slots per node.
    pub fn per_node(&self) -> u32 {
        1 << self.order
    }

    /// The atomic behind a slot.
    pub fn slot(&self, s: XaSlot) -> &KAtomicU64 {
        match s {
            XaSlot::Root(r) => &self.root[r as usize],
            XaSlot::Node(n, i) => &self.nodes[((n << self.order) | i) as usize],
        }
    }

    /// Checker view: the entry for `index` (no scheduling point).
    pub fn peek(&self, index: u32) -> XaEntry {
        match XaEntry::decode(self.root[(index >> self.order) as usize].peek()) {
            XaEntry::Node(n) => XaEntry::decode(
                self.slot(XaSlot::Node(n, index & (self.per_node() - 1)))
                    .peek(),
            ),
            e => e,
        }
    }
}

/// `xas_load()`: walk from the root to `index` with READ_ONCE at each level.
pub fn xas_load(ctx: &mut Ctx, xa: &XArray, index: u32) -> KResult<(XaEntry, XaSlot)> {
    let r = index >> xa.order;
    let head = XaEntry::decode(
        xa.root[r as usize].read_once(ctx, site!("xas_load", "xa_head(): READ_ONCE(root slot)"))?,
    );
    match head {
        XaEntry::Node(n) => {
            let s = XaSlot::Node(n, index & (xa.per_node() - 1));
            let e = xa
                .slot(s)
                .read_once(ctx, site!("xas_descend", "READ_ONCE(node->slots[offset])"))?;
            Ok((XaEntry::decode(e), s))
        }
        e => Ok((e, XaSlot::Root(r))),
    }
}

/// `xas_reload()`: read the slot a lookup found its entry in again.
pub fn xas_reload(ctx: &mut Ctx, xa: &XArray, s: XaSlot) -> KResult<XaEntry> {
    Ok(XaEntry::decode(xa.slot(s).read_once(
        ctx,
        site!("xas_reload", "READ_ONCE(slot) again"),
    )?))
}

/// `xas_create()`'s node allocation (`xa_lock` held): a fresh node whose slots all hold `fill`.
fn xas_alloc(ctx: &mut Ctx, xa: &XArray, fill: XaEntry) -> KResult<Result<u32, Errno>> {
    if ctx.should_fail_alloc() {
        return Ok(Err(Errno::ENOMEM));
    }
    let n = {
        let mut next = xa.xa_lock.data(ctx);
        if *next as usize >= xa.nodes.len() >> xa.order {
            return Ok(Err(Errno::ENOMEM));
        }
        *next += 1;
        *next - 1
    };
    // The node is private until rcu_assign_pointer() publishes it.
    for i in 0..xa.per_node() {
        xa.slot(XaSlot::Node(n, i)).store_plain(
            ctx,
            site!("xas_alloc", "initialise node slots"),
            fill.encode(),
        );
    }
    Ok(Ok(n))
}

/// `xas_store()` of a single-index entry (`xa_lock` held). A range whose root holds nothing or
/// a shadow gets a node first (`xas_create()`); the caller never stores into a range whose
/// root holds a huge folio (that takes `xas_split()`).
pub fn xas_store(
    ctx: &mut Ctx,
    xa: &XArray,
    index: u32,
    entry: XaEntry,
) -> KResult<Result<(), Errno>> {
    let r = index >> xa.order;
    let off = index & (xa.per_node() - 1);
    let head = XaEntry::decode(xa.root[r as usize].peek());
    let n = match head {
        XaEntry::Node(n) => n,
        XaEntry::Folio(_) => {
            unreachable!("a single-index store into a huge entry needs xas_split()")
        }
        fill => {
            let n = match xas_alloc(ctx, xa, fill)? {
                Ok(n) => n,
                Err(e) => return Ok(Err(e)),
            };
            xa.slot(XaSlot::Node(n, off)).store_plain(
                ctx,
                site!("xas_store", "slot of the new node"),
                entry.encode(),
            );
            xa.root[r as usize].store_release(
                ctx,
                site!("xas_create", "rcu_assign_pointer(root, node)"),
                XaEntry::Node(n).encode(),
            )?;
            return Ok(Ok(()));
        }
    };
    xa.slot(XaSlot::Node(n, off)).write_once(
        ctx,
        site!("xas_store", "rcu_assign_pointer(node->slots[offset])"),
        entry.encode(),
    )?;
    Ok(Ok(()))
}

/// `xas_store()` of a multi-order entry covering range `r` (`xa_lock` held): the entry goes in
/// the root, then the node it replaced is freed, its slots turned into RETRY entries
/// (`xas_free_nodes()`), so a reader that loaded the old node walks again.
pub fn xas_store_order(ctx: &mut Ctx, xa: &XArray, r: u32, entry: XaEntry) -> KResult<()> {
    let old = XaEntry::decode(xa.root[r as usize].peek());
    xa.root[r as usize].store_release(
        ctx,
        site!("xas_store", "rcu_assign_pointer(root, multi-order entry)"),
        entry.encode(),
    )?;
    if let XaEntry::Node(n) = old {
        ctx.smp_wmb(site!("xas_free_nodes", "smp_wmb() before RETRY entries"));
        for i in 0..xa.per_node() {
            xa.slot(XaSlot::Node(n, i)).write_once(
                ctx,
                site!("xas_free_nodes", "node->slots[i] = XA_RETRY_ENTRY"),
                XaEntry::Retry.encode(),
            )?;
        }
    }
    Ok(())
}

/// `xas_split_alloc()` + `xas_split()` (`xa_lock` held): replace the multi-order entry of range
/// `r` with a node whose slots all name the same folio, so tails can be stored one by one.
pub fn xas_split(ctx: &mut Ctx, xa: &XArray, r: u32) -> KResult<Result<(), Errno>> {
    let old = XaEntry::decode(xa.root[r as usize].peek());
    let n = match xas_alloc(ctx, xa, old)? {
        Ok(n) => n,
        Err(e) => return Ok(Err(e)),
    };
    xa.root[r as usize].store_release(
        ctx,
        site!("xas_split", "rcu_assign_pointer(root, node)"),
        XaEntry::Node(n).encode(),
    )?;
    Ok(Ok(()))
}
