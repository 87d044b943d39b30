//! The sequential spec of the program operations: what a user, a driver holding a GUP
//! reference and the debugfs split may observe, in terms of abstract page identities.
//!
//! A pin names a physical page, not an address: after a zap the address gets a fresh zero page
//! while the pin keeps seeing the old one. Contents never change except by a write through the
//! address or through the pin.

use crate::linearizability::Model;
use crate::vecmap::VecMap;
use mm_impl::buffer::ReleaseOutcome;
use mm_impl::errno::Errno;
use mm_impl::huge_memory::SplitOutcome;
use mm_impl::khugepaged::CollapseOutcome;
use mm_impl::readahead::RaOutcome;
use mm_impl::vmscan::EvictOutcome;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A GUP reference handle, named by (creating thread, index among its handle-creating ops).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Handle {
    /// Thread whose op created it.
    pub thread: u8,
    /// Ordinal of that op among the thread's handle-creating ops (0-based).
    pub index: u8,
}

impl<'a> arbitrary::Arbitrary<'a> for Handle {
    fn arbitrary(u: &mut arbitrary::Unstructured<'a>) -> arbitrary::Result<Self> {
        // Programs have few threads and few handle-creating ops: aim where handles exist.
        Ok(Handle {
            thread: u.int_in_range(0..=3)?,
            index: u.int_in_range(0..=7)?,
        })
    }
}

/// An operation with its address resolved to a virtual page number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MmOp {
    /// User load (`write: None`) or store; returns the old contents.
    Touch {
        /// Virtual page.
        vpn: u32,
        /// Value stored.
        write: Option<u64>,
    },
    /// `get/pin_user_pages_fast_only()`: may fall back; never faults.
    GupFast {
        /// Virtual page.
        vpn: u32,
        /// The handle it creates on success.
        h: Handle,
    },
    /// `get/pin_user_pages()`: faults the page in.
    Gup {
        /// Virtual page.
        vpn: u32,
        /// The handle it creates on success.
        h: Handle,
        /// FOLL_WRITE (fails with EFAULT on the read-only shmem mapping).
        write: bool,
    },
    /// `put_page()` / `unpin_user_page()`.
    Put {
        /// Which reference.
        h: Handle,
    },
    /// Kernel (DMA) read through the reference.
    ReadPinned {
        /// Which reference.
        h: Handle,
    },
    /// Kernel (DMA) write through the reference.
    WritePinned {
        /// Which reference.
        h: Handle,
        /// Value.
        val: u64,
    },
    /// debugfs split of the THP mapped at `vpn`.
    Split {
        /// Virtual page.
        vpn: u32,
    },
    /// The program learns a handle: the instant a GUP op returns it to its thread. The GUP
    /// takes the reference somewhere inside its interval; other threads can name the handle
    /// only from its return on.
    Publish {
        /// Which reference.
        h: Handle,
    },
    /// A fault at `vpn` mapped the empty rest of its huge-page range (mTHP), as an optional
    /// effect inside a faulting op: a fault can populate the range, lose it to a racing zap,
    /// and retry, so this need not coincide with the op's own linearization point.
    Populate {
        /// The faulting address.
        vpn: u32,
    },
    /// MADV_DONTNEED of `[vpn, vpn + len)`.
    Zap {
        /// First page.
        vpn: u32,
        /// Pages.
        len: u32,
    },
    /// Readahead of one page of the text file.
    Readahead {
        /// File page.
        page: u32,
    },
    /// Eviction of the folio caching a page of the text file.
    Evict {
        /// File page.
        page: u32,
    },
    /// khugepaged's `collapse_file()` of one huge-page range of the text file.
    Collapse {
        /// Range number.
        range: u32,
    },
    /// debugfs split of the folio caching a page of the text file.
    SplitFile {
        /// File page.
        page: u32,
    },
    /// What a SEEK_DATA walk saw at one page: data or a hole. A walk looks at each page at
    /// some instant of its own, so one SEEK_DATA is one probe per page it passed.
    SeekProbe {
        /// File page.
        page: u32,
        /// Seen as data?
        data: bool,
    },
    /// `mincore()` of one page of the text mapping.
    Mincore {
        /// File page.
        page: u32,
    },
    /// `build_id_parse()` of the text mapping (from a task or an NMI).
    BuildId,
    /// `vmalloc()` with VM_FLUSH_RESET_PERMS: a new area named `h`, or ENOMEM.
    Vmalloc {
        /// The handle it creates on success.
        h: Handle,
    },
    /// `vfree()` of the area `h`.
    Vfree {
        /// Which area.
        h: Handle,
    },
    /// A kernel store through the vmalloc alias of area `h`.
    Vwrite {
        /// Which area.
        h: Handle,
    },
    /// A kernel buffer of one direct-map block made not present with `set_memory_np()`.
    SetMemoryNp {
        /// The handle it creates on success.
        h: Handle,
    },
    /// `hibernate()`: an image, or ENOMEM (a remap failed), or EBUSY (a thread did not freeze).
    /// The image's contents are checked against memory by a consequence check.
    Hibernate,
    /// `pin_user_pages_fast(FOLL_LONGTERM)`: like `Gup`, but a writable long-term pin of a
    /// file that needs dirty tracking may be refused (EFAULT).
    PinLongterm {
        /// Virtual page.
        vpn: u32,
        /// The handle it creates on success.
        h: Handle,
        /// FOLL_WRITE.
        write: bool,
    },
    /// `unpin_user_pages_dirty_lock()`: like `Put`.
    UnpinDirty {
        /// Which reference.
        h: Handle,
    },
    /// Writeback of the data file (what reached the disk is a consequence check).
    Writeback,
    /// vhost's vmap of the page at `vpn`: an alias of that page (like a GUP reference).
    VhostMap {
        /// Virtual page.
        vpn: u32,
        /// The handle it creates on success.
        h: Handle,
    },
    /// A vhost store through an alias: it lands in the aliased page, or is refused.
    VhostWrite {
        /// Which alias.
        h: Handle,
        /// Value.
        val: u64,
    },
    /// vhost's unmap of an alias.
    VhostUnmap {
        /// Which alias.
        h: Handle,
    },
    /// `Publish` of a vhost alias: from its `VhostMap`'s return on, other threads can name it.
    PublishAlias {
        /// Which alias.
        h: Handle,
    },
    /// `try_to_free_buffers()` on a data-file page (no user-visible effect).
    ReleaseBuffers,
    /// `UFFDIO_COPY` of a page holding `val` to `vpn`: sets the page's contents where nothing
    /// is mapped (EEXIST where something is), or EAGAIN/ENOMEM with no effect; ENOENT outside
    /// the registered shmem VMA.
    UffdCopy {
        /// Virtual page.
        vpn: u32,
        /// Contents of the copied page.
        val: u64,
    },
    /// khugepaged's `collapse_file()` of one huge-page range of the shmem file (with
    /// `retract_page_tables()`): never changes what any address or page holds.
    CollapseShmem {
        /// Range number.
        range: u32,
    },
    /// khugepaged's `collapse_pte_mapped_thp()` of the huge range holding `vpn`: unmaps the
    /// file's pages there (contents unchanged) or fails.
    CollapsePteMapped {
        /// Virtual page.
        vpn: u32,
    },
}

/// What an operation returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MmRet {
    /// A value read.
    Value(u64),
    /// Done, nothing to report.
    Done,
    /// A reference was taken: the named handle now exists.
    Handle(Handle),
    /// gup-fast found nothing it could take locklessly.
    Fallback,
    /// The handle does not exist (never created, failed, or already released).
    NoHandle,
    /// What the split did.
    Split(SplitOutcome),
    /// An error.
    Errno(Errno),
    /// What readahead did.
    Ra(RaOutcome),
    /// What eviction did.
    Evict(EvictOutcome),
    /// What collapse did.
    Collapse(CollapseOutcome),
    /// A hibernation image of this many pages.
    Image(u32),
    /// What releasing buffers did.
    Release(ReleaseOutcome),
}

/// What an address maps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    /// A page (by identity).
    Page(u32),
    /// A fault in the same huge-page range may have mapped a fresh zero page here (anon mTHP
    /// maps the whole range when it is empty), or not. Resolved by the first op that can tell.
    Maybe,
    /// The shmem file's page, mapped or not: a `collapse_pte_mapped_thp()` that failed may
    /// have cleared its PTE before it met one it could not take. Reads see the same page
    /// either way; resolved by the first op that can tell (UFFDIO_COPY, gup-fast, split).
    MaybeFile(u32),
}

/// Abstract state.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct MmState {
    /// Address -> what it maps; absent means nothing.
    mapping: VecMap<u32, Slot>,
    /// Page identity -> contents.
    content: VecMap<u32, u64>,
    /// References taken but not yet returned to the program -> page identity.
    grabbed: VecMap<Handle, u32>,
    /// Live references the program can name -> page identity.
    handles: VecMap<Handle, u32>,
    /// Live vhost vmap aliases the program can name -> page identity.
    aliases: VecMap<Handle, u32>,
    /// Live vmalloc areas.
    vmallocs: VecMap<Handle, ()>,
    next: u32,
    /// Text file pages resident (bit per page): cached and uptodate. What mincore() reports,
    /// and, as the page cache is all SEEK_DATA consults, what it must see as data.
    file_incore: u64,
    /// Huge-page ranges of the text file cached as one huge folio (bit per range).
    file_huge: u64,
    /// Shmem file page -> page identity (holes are absent; the file never gains or loses a
    /// page: there is no write, truncate or fallocate op).
    shmem_file: VecMap<u32, u32>,
}

impl MmState {
    /// Renumber page identities in order of first appearance (mappings by address, then
    /// handles) and drop unreachable contents, so states that differ only in the order pages
    /// were created compare equal and the checker's cache recognises them.
    fn canonical(self) -> MmState {
        if self.is_canonical() {
            return self;
        }
        let mut map: BTreeMap<u32, u32> = BTreeMap::new();
        let ids = self
            .mapping
            .values()
            .filter_map(|s| match s {
                Slot::Page(id) | Slot::MaybeFile(id) => Some(*id),
                Slot::Maybe => None,
            })
            .chain(self.grabbed.values().copied())
            .chain(self.handles.values().copied())
            .chain(self.aliases.values().copied())
            .chain(self.shmem_file.values().copied());
        for id in ids {
            let n = map.len() as u32;
            map.entry(id).or_insert(n);
        }
        MmState {
            mapping: self
                .mapping
                .iter()
                .map(|(&v, s)| {
                    (
                        v,
                        match s {
                            Slot::Page(id) => Slot::Page(map[id]),
                            Slot::MaybeFile(id) => Slot::MaybeFile(map[id]),
                            Slot::Maybe => Slot::Maybe,
                        },
                    )
                })
                .collect(),
            content: map
                .iter()
                .map(|(old, new)| (*new, self.content[old]))
                .collect(),
            grabbed: self.grabbed.iter().map(|(h, id)| (*h, map[id])).collect(),
            handles: self.handles.iter().map(|(h, id)| (*h, map[id])).collect(),
            aliases: self.aliases.iter().map(|(h, id)| (*h, map[id])).collect(),
            vmallocs: self.vmallocs,
            next: map.len() as u32,
            file_incore: self.file_incore,
            file_huge: self.file_huge,
            shmem_file: self
                .shmem_file
                .iter()
                .map(|(&i, id)| (i, map[id]))
                .collect(),
        }
    }

    /// Are the identities already numbered in order of first appearance, with nothing
    /// unreachable? (The common case: then `canonical` allocates nothing.)
    fn is_canonical(&self) -> bool {
        let mut next = 0u32;
        let mut seen = |id: u32| {
            if id == next {
                next += 1;
                true
            } else {
                id < next
            }
        };
        let mapped = self.mapping.values().all(|s| match s {
            Slot::Page(id) | Slot::MaybeFile(id) => seen(*id),
            Slot::Maybe => true,
        });
        mapped
            && self.grabbed.values().all(|&id| seen(id))
            && self.handles.values().all(|&id| seen(id))
            && self.aliases.values().all(|&id| seen(id))
            && self.shmem_file.values().all(|&id| seen(id))
            && self.content.len() as u32 == next
            && self.next == next
    }

    fn fresh(&mut self) -> u32 {
        let id = self.next;
        self.next += 1;
        self.content.insert(id, 0);
        id
    }
    /// The page at `vpn`, faulting one in (with `order`'s fault-around) if there is none.
    fn fault(&mut self, vpn: u32, order: u8) -> u32 {
        if let Some(Slot::Page(id)) = self.mapping.get(&vpn) {
            return *id;
        }
        // Nothing (or maybe nothing) is mapped: this may be a real fault, which may map the
        // whole empty huge-page range around it.
        let id = self.fresh();
        self.mapping.insert(vpn, Slot::Page(id));
        let base = vpn & !((1u32 << order) - 1);
        for a in base..base + (1 << order) {
            self.mapping.or_insert(a, Slot::Maybe);
        }
        id
    }

    /// The page mapped at `vpn` without faulting, resolving `Maybe` as mapped.
    fn mapped(&mut self, vpn: u32) -> Option<u32> {
        match self.mapping.get(&vpn)? {
            Slot::Page(id) => Some(*id),
            Slot::MaybeFile(id) => {
                let id = *id;
                self.mapping.insert(vpn, Slot::Page(id));
                Some(id)
            }
            Slot::Maybe => {
                let id = self.fresh();
                self.mapping.insert(vpn, Slot::Page(id));
                Some(id)
            }
        }
    }

    /// Resolve a `Maybe` at `vpn` as "nothing mapped". False if a page is definitely there.
    fn unmapped(&mut self, vpn: u32) -> bool {
        match self.mapping.get(&vpn) {
            None => true,
            Some(Slot::Maybe | Slot::MaybeFile(_)) => {
                self.mapping.remove(&vpn);
                true
            }
            Some(Slot::Page(_)) => false,
        }
    }
}

/// The spec of the default world: `initial` maps pages with the given contents.
#[derive(Clone, Debug)]
pub struct MmSpec {
    /// (vpn, contents) mapped before the threads start.
    pub initial: Vec<(u32, u64)>,
    /// Huge-page order: a fault may map the whole aligned range of 2^order pages.
    pub order: u8,
    /// Text file pages cached (uptodate) before the threads start, one bit per page.
    pub file_cached: u64,
    /// The text file's build id.
    pub build_id: u64,
    /// Pages of the text file (at most 64).
    pub file_pages: u32,
    /// Virtual pages `[start, end)` of the shared file mapping: what they map is the data
    /// file's pages, which a zap unmaps but does not replace.
    pub shared: (u32, u32),
    /// First virtual page of the private shmem VMA, which maps shmem file page `i` at
    /// `shmem_start + i`.
    pub shmem_start: u32,
    /// Initial contents of each shmem file page (`None`: a hole); empty if there is no shmem VMA.
    pub shmem_file: Vec<Option<u64>>,
    /// The initial state, built on first use (every partition of a check starts from it).
    pub init_cache: std::sync::OnceLock<MmState>,
}

impl Model for MmSpec {
    type State = MmState;
    type Op = MmOp;
    type Ret = MmRet;

    fn init(&self) -> MmState {
        // Every partition of every check starts here: build it once per spec.
        self.init_cache.get_or_init(|| self.build_init()).clone()
    }

    fn step(&self, s0: &MmState, op: &MmOp, ret: &MmRet) -> Option<MmState> {
        self.step_raw(s0, op, ret).map(MmState::canonical)
    }

    fn step_pending(&self, s: &MmState, op: &MmOp) -> Vec<MmState> {
        self.step_pending_raw(s, op)
    }

    fn step_in_place(&self, s: &mut MmState, op: &MmOp, ret: &MmRet) -> bool {
        self.apply(s, op, ret)
    }

    /// The only optional effect is `Populate`, which turns empty slots into `Maybe` (anon) or
    /// `MaybeFile` (shmem); either allows everything an empty slot allows (it can still be
    /// resolved as empty), so applying it never makes a later step impossible that was
    /// possible without it.
    fn optional_is_monotone(&self) -> bool {
        true
    }
}

impl MmSpec {
    /// The initial state: the pages mapped and cached before the threads start.
    fn build_init(&self) -> MmState {
        let mut s = MmState {
            mapping: VecMap::new(),
            content: VecMap::new(),
            grabbed: VecMap::new(),
            handles: VecMap::new(),
            aliases: VecMap::new(),
            vmallocs: VecMap::new(),
            next: 0,
            file_incore: self.file_cached,
            file_huge: 0,
            shmem_file: VecMap::new(),
        };
        for &(vpn, v) in &self.initial {
            let id = s.fresh();
            s.content.insert(id, v);
            s.mapping.insert(vpn, Slot::Page(id));
        }
        for (index, v) in self.shmem_file.iter().enumerate() {
            if let Some(v) = v {
                let id = s.fresh();
                s.content.insert(id, *v);
                s.shmem_file.insert(index as u32, id);
            }
        }
        s.canonical()
    }

    /// Apply `op` returning `ret` to `s` in place: the spec's rules. False if `ret` is
    /// impossible in `s` (then `s` is left half-changed and must be dropped).
    fn apply(&self, s: &mut MmState, op: &MmOp, ret: &MmRet) -> bool {
        if let Some(ok) = self.apply_shmem(s, op, ret) {
            return ok;
        }
        match (op, ret) {
            // A fault may fail to allocate (the fault plan) and change nothing visible. Not
            // only on an unmapped page: a lockless fault can see the transient none PTE that
            // try_to_migrate_one() leaves between ptep_clear_flush() and the migration entry,
            // and fail its allocation before it takes the PTE lock.
            (MmOp::Touch { .. } | MmOp::Gup { .. }, MmRet::Errno(Errno::ENOMEM)) => true,
            (MmOp::Touch { vpn, write }, MmRet::Value(v)) => {
                let id = s.fault(*vpn, self.order);
                if s.content[&id] != *v {
                    return false;
                }
                if let Some(w) = write {
                    s.content.insert(id, *w);
                }
                true
            }
            (MmOp::GupFast { .. }, MmRet::Fallback) => true,
            (MmOp::GupFast { vpn, h }, MmRet::Handle(got)) if got == h => match s.mapped(*vpn) {
                Some(id) => {
                    s.grabbed.insert(*h, id);
                    true
                }
                None => false,
            },
            (MmOp::Gup { vpn, h, .. }, MmRet::Handle(got)) if got == h => {
                let id = s.fault(*vpn, self.order);
                s.grabbed.insert(*h, id);
                true
            }
            (MmOp::Publish { h }, MmRet::Done) => match s.grabbed.remove(h) {
                Some(id) => {
                    s.handles.insert(*h, id);
                    true
                }
                None => false,
            },
            (MmOp::PublishAlias { h }, MmRet::Done) => match s.grabbed.remove(h) {
                Some(id) => {
                    s.aliases.insert(*h, id);
                    true
                }
                None => false,
            },
            (MmOp::Put { h } | MmOp::UnpinDirty { h }, MmRet::Done) => {
                s.handles.remove(h).is_some()
            }
            (MmOp::PinLongterm { vpn, h, .. }, MmRet::Handle(got)) if got == h => {
                let id = s.fault(*vpn, self.order);
                s.grabbed.insert(*h, id);
                true
            }
            (MmOp::PinLongterm { .. }, MmRet::Errno(Errno::ENOMEM)) => true,
            // Refused only where the device could write a page behind writeback's back.
            (MmOp::PinLongterm { vpn, write, .. }, MmRet::Errno(Errno::EFAULT)) => {
                *write && self.is_shared(*vpn)
            }
            (MmOp::Writeback, MmRet::Done) | (MmOp::ReleaseBuffers, MmRet::Release(_)) => true,
            (MmOp::VhostMap { vpn, h }, MmRet::Handle(got)) if got == h => {
                let id = s.fault(*vpn, self.order);
                s.grabbed.insert(*h, id);
                true
            }
            (MmOp::VhostMap { .. }, MmRet::Errno(Errno::ENOMEM)) => true,
            // Stored through the alias: the page's contents change, as a pinned DMA write's.
            (MmOp::VhostWrite { h, val }, MmRet::Done) => match s.aliases.get(h) {
                Some(&id) => {
                    s.content.insert(id, *val);
                    true
                }
                None => false,
            },
            // Refused: the alias was torn down by an invalidation, or is read-only.
            (MmOp::VhostWrite { h, .. }, MmRet::Errno(Errno::EAGAIN | Errno::EFAULT)) => {
                s.aliases.contains_key(h)
            }
            (MmOp::VhostUnmap { h }, MmRet::Done) => s.aliases.remove(h).is_some(),
            (MmOp::VhostWrite { h, .. } | MmOp::VhostUnmap { h }, MmRet::NoHandle) => {
                !s.aliases.contains_key(h)
            }
            (MmOp::ReadPinned { h }, MmRet::Value(v)) => {
                s.handles.get(h).is_some_and(|id| s.content[id] == *v)
            }
            (MmOp::WritePinned { h, val }, MmRet::Done) => match s.handles.get(h) {
                Some(&id) => {
                    s.content.insert(id, *val);
                    true
                }
                None => false,
            },
            (
                MmOp::Put { h }
                | MmOp::UnpinDirty { h }
                | MmOp::ReadPinned { h }
                | MmOp::WritePinned { h, .. },
                MmRet::NoHandle,
            ) => !s.handles.contains_key(h),
            // A shared file page stays the same page whether a PTE maps it at the moment or not.
            (MmOp::Split { vpn }, MmRet::Split(_)) if self.is_shared(*vpn) => true,
            (MmOp::Split { vpn }, MmRet::Split(SplitOutcome::NotMapped)) => s.unmapped(*vpn),
            (MmOp::Split { vpn }, MmRet::Split(_)) => s.mapped(*vpn).is_some(),
            (MmOp::Vmalloc { .. } | MmOp::SetMemoryNp { .. }, MmRet::Errno(Errno::ENOMEM)) => true,
            (MmOp::Vmalloc { h }, MmRet::Handle(got)) if got == h => {
                s.vmallocs.insert(*h, ());
                true
            }
            (MmOp::SetMemoryNp { h }, MmRet::Handle(got)) => got == h,
            (MmOp::Vfree { h }, MmRet::Done) => s.vmallocs.remove(h).is_some(),
            (MmOp::Vwrite { h }, MmRet::Done) => s.vmallocs.contains_key(h),
            (MmOp::Vfree { h } | MmOp::Vwrite { h }, MmRet::NoHandle) => {
                !s.vmallocs.contains_key(h)
            }
            (MmOp::Hibernate, MmRet::Image(_) | MmRet::Errno(Errno::ENOMEM | Errno::EBUSY)) => true,
            (MmOp::Zap { vpn, len }, MmRet::Done) => {
                // A zap of the shared mapping unmaps the file's pages; the next fault maps the
                // same cached pages again, so what the addresses name does not change.
                for a in (*vpn..vpn + len).filter(|a| !self.is_shared(*a)) {
                    s.mapping.remove(&a);
                }
                true
            }
            _ => self.apply_file(s, op, ret),
        }
    }

    /// Is `vpn` in the shared file mapping?
    fn is_shared(&self, vpn: u32) -> bool {
        (self.shared.0..self.shared.1).contains(&vpn)
    }

    /// The shmem file page `vpn` maps in the shmem VMA, if it is in that VMA.
    fn shmem_index(&self, vpn: u32) -> Option<u32> {
        vpn.checked_sub(self.shmem_start)
            .filter(|&i| (i as usize) < self.shmem_file.len())
    }

    /// The private shmem VMA's rules (`None`: the op is not about it). A read fault maps the
    /// file's page (the mapping is read-only, a write fails), a hole fails at once (userfaultfd
    /// MISSING); `UFFDIO_COPY` maps a new page with the copied contents where nothing is mapped.
    fn apply_shmem(&self, s: &mut MmState, op: &MmOp, ret: &MmRet) -> Option<bool> {
        // What a read fault at `vpn` maps: the page already mapped, else the file's page.
        fn fault(s: &mut MmState, vpn: u32, index: u32) -> Option<u32> {
            if let Some(Slot::Page(id) | Slot::MaybeFile(id)) = s.mapping.get(&vpn) {
                let id = *id;
                s.mapping.insert(vpn, Slot::Page(id));
                return Some(id);
            }
            let id = *s.shmem_file.get(&index)?;
            s.mapping.insert(vpn, Slot::Page(id));
            Some(id)
        }
        let ok = match (op, ret) {
            (MmOp::UffdCopy { vpn, .. }, r) if self.shmem_index(*vpn).is_none() => {
                *r == MmRet::Errno(Errno::ENOENT)
            }
            (MmOp::UffdCopy { vpn, val }, MmRet::Done) => {
                if !s.unmapped(*vpn) {
                    return Some(false);
                }
                let id = s.fresh();
                s.content.insert(id, *val);
                s.mapping.insert(*vpn, Slot::Page(id));
                true
            }
            (MmOp::UffdCopy { vpn, .. }, MmRet::Errno(Errno::EEXIST)) => s.mapped(*vpn).is_some(),
            (MmOp::UffdCopy { .. }, MmRet::Errno(Errno::EAGAIN | Errno::ENOMEM)) => true,
            (MmOp::UffdCopy { .. }, _) => false,
            // collapse_file unmaps the file's pages it collapses (contents unchanged); one that
            // failed may have unmapped some before it stopped. Anonymous pages stay mapped.
            (MmOp::CollapseShmem { range }, MmRet::Collapse(o)) => {
                let nr = 1u32 << self.order;
                for index in range * nr..(range + 1) * nr {
                    let vpn = self.shmem_start + index;
                    let Some(&fid) = s.shmem_file.get(&index) else {
                        continue;
                    };
                    if let Some(Slot::Page(id) | Slot::MaybeFile(id)) = s.mapping.get(&vpn) {
                        if *id == fid {
                            if *o == CollapseOutcome::Collapsed {
                                s.mapping.remove(&vpn);
                            } else {
                                s.mapping.insert(vpn, Slot::MaybeFile(fid));
                            }
                        }
                    }
                }
                true
            }
            (MmOp::CollapseShmem { .. }, _) => false,
            (MmOp::CollapsePteMapped { vpn }, ret) => {
                let Some(index) = self.shmem_index(*vpn) else {
                    // Not a file-backed VMA.
                    return Some(*ret == MmRet::Collapse(CollapseOutcome::Fail));
                };
                let nr = 1u32 << self.order;
                let (hindex, haddr) = (index & !(nr - 1), vpn & !(nr - 1));
                let file = |s: &MmState, a: u32| s.shmem_file.get(&(hindex + a - haddr)).copied();
                match ret {
                    // Every PTE was none or the file's page: all are unmapped now.
                    MmRet::Collapse(CollapseOutcome::Collapsed) => {
                        for a in haddr..haddr + nr {
                            match s.mapping.get(&a) {
                                None => {}
                                Some(Slot::Page(id) | Slot::MaybeFile(id))
                                    if Some(*id) == file(s, a) =>
                                {
                                    s.mapping.remove(&a);
                                }
                                Some(_) => return Some(false),
                            }
                        }
                        true
                    }
                    // Nothing cached at the range's start.
                    MmRet::Collapse(CollapseOutcome::NotCached) => file(s, haddr).is_none(),
                    // It may have cleared file PTEs before meeting one it could not take.
                    MmRet::Collapse(CollapseOutcome::Fail) => {
                        for a in haddr..haddr + nr {
                            if let Some(Slot::Page(id)) = s.mapping.get(&a) {
                                if Some(*id) == file(s, a) {
                                    let id = *id;
                                    s.mapping.insert(a, Slot::MaybeFile(id));
                                }
                            }
                        }
                        true
                    }
                    _ => false,
                }
            }
            (MmOp::Touch { vpn, write }, ret) => {
                let index = self.shmem_index(*vpn)?;
                match (write, ret) {
                    (_, MmRet::Errno(Errno::ENOMEM)) => true,
                    (Some(_), r) => *r == MmRet::Errno(Errno::EFAULT),
                    (None, MmRet::Value(v)) => {
                        fault(s, *vpn, index).is_some_and(|id| s.content[&id] == *v)
                    }
                    (None, MmRet::Errno(Errno::EFAULT)) => fault(s, *vpn, index).is_none(),
                    _ => false,
                }
            }
            // vhost maps a read-only page read-only; the RFC's write GUP is refused (EFAULT).
            (MmOp::VhostMap { vpn, h }, ret) => {
                let index = self.shmem_index(*vpn)?;
                match ret {
                    MmRet::Errno(Errno::ENOMEM | Errno::EFAULT) => true,
                    MmRet::Handle(got) if got == h => match fault(s, *vpn, index) {
                        Some(id) => {
                            s.grabbed.insert(*h, id);
                            true
                        }
                        None => false,
                    },
                    _ => false,
                }
            }
            (MmOp::Gup { vpn, h, write } | MmOp::PinLongterm { vpn, h, write }, ret) => {
                let index = self.shmem_index(*vpn)?;
                match ret {
                    MmRet::Errno(Errno::ENOMEM) => true,
                    MmRet::Errno(Errno::EFAULT) => *write || fault(s, *vpn, index).is_none(),
                    MmRet::Handle(got) if got == h && !*write => match fault(s, *vpn, index) {
                        Some(id) => {
                            s.grabbed.insert(*h, id);
                            true
                        }
                        None => false,
                    },
                    _ => false,
                }
            }
            // A fault in the shmem VMA maps the file's page (no fault-around), possibly before
            // the op's own linearization point (the op retries its access after the fault). As
            // an optional effect it must be monotone: `MaybeFile` allows all that nothing does.
            (MmOp::Populate { vpn }, _) => {
                let index = self.shmem_index(*vpn)?;
                if let (None, Some(&id)) = (s.mapping.get(vpn), s.shmem_file.get(&index)) {
                    s.mapping.insert(*vpn, Slot::MaybeFile(id));
                }
                true
            }
            _ => return None,
        };
        Some(ok)
    }

    /// The text file's rules: pages become resident by readahead and stop being resident by
    /// eviction, nothing else; collapse and split change folio sizes, never residency.
    fn apply_file(&self, s: &mut MmState, op: &MmOp, ret: &MmRet) -> bool {
        let bit = |page: u32| 1u64.checked_shl(page).unwrap_or(0);
        let range_mask = |range: u32| ((1u64 << (1u32 << self.order)) - 1) << (range << self.order);
        let range_of = |page: u32| page >> self.order;
        match (op, ret) {
            // Read in: the page was not resident (its folio was inserted where none was) and is
            // now resident data.
            (MmOp::Readahead { page }, MmRet::Ra(RaOutcome::Read)) => {
                if s.file_incore & bit(*page) != 0 {
                    return false;
                }
                s.file_incore |= bit(*page);
                true
            }
            // Something was cached already (perhaps still being read by someone else).
            (MmOp::Readahead { .. }, MmRet::Ra(RaOutcome::Cached | RaOutcome::NoMem)) => true,
            // Eviction drops the whole folio.
            (MmOp::Evict { page }, MmRet::Evict(EvictOutcome::Evicted(nr))) => {
                let r = range_of(*page);
                if s.file_incore & bit(*page) == 0 {
                    return false;
                }
                if s.file_huge & bit(r) != 0 {
                    if *nr != 1 << self.order {
                        return false;
                    }
                    s.file_incore &= !range_mask(r);
                    s.file_huge &= !bit(r);
                } else {
                    if *nr != 1 {
                        return false;
                    }
                    s.file_incore &= !bit(*page);
                }
                true
            }
            (MmOp::Evict { page }, MmRet::Evict(EvictOutcome::NotCached)) => {
                s.file_incore & bit(*page) == 0
            }
            (MmOp::Evict { .. }, MmRet::Evict(EvictOutcome::Busy)) => true,
            // A collapse needs every page resident in small folios; contents do not change.
            (MmOp::Collapse { range }, MmRet::Collapse(CollapseOutcome::Collapsed)) => {
                if s.file_incore & range_mask(*range) != range_mask(*range)
                    || s.file_huge & bit(*range) != 0
                {
                    return false;
                }
                s.file_huge |= bit(*range);
                true
            }
            (MmOp::Collapse { .. }, MmRet::Collapse(_)) => true,
            (MmOp::SplitFile { page }, MmRet::Split(SplitOutcome::Split)) => {
                let r = range_of(*page);
                if s.file_huge & bit(r) == 0 {
                    return false;
                }
                s.file_huge &= !bit(r);
                true
            }
            (MmOp::SplitFile { page }, MmRet::Split(SplitOutcome::NotHuge)) => {
                s.file_huge & bit(range_of(*page)) == 0
            }
            (MmOp::SplitFile { page }, MmRet::Split(SplitOutcome::NotMapped)) => {
                s.file_incore & bit(*page) == 0
            }
            (MmOp::SplitFile { .. }, MmRet::Split(SplitOutcome::Busy | SplitOutcome::Locked)) => {
                true
            }
            (MmOp::SeekProbe { page, data }, MmRet::Done) => {
                *page < self.file_pages && (s.file_incore & bit(*page) != 0) == *data
            }
            (MmOp::Mincore { page }, MmRet::Value(v)) => {
                *v <= 1 && (s.file_incore & bit(*page) != 0) == (*v == 1)
            }
            // Exactly the file's build id, or EFAULT when the page cannot be used right now.
            (MmOp::BuildId, MmRet::Value(v)) => *v == self.build_id,
            (MmOp::BuildId, MmRet::Errno(Errno::EFAULT)) => true,
            _ => false,
        }
    }

    fn step_raw(&self, s0: &MmState, op: &MmOp, ret: &MmRet) -> Option<MmState> {
        let mut s = s0.clone();
        self.apply(&mut s, op, ret).then_some(s)
    }

    fn step_pending_raw(&self, s: &MmState, op: &MmOp) -> Vec<MmState> {
        // A pending op may have taken effect with any result it could have returned.
        let mut out = Vec::new();
        let candidates: Vec<MmRet> = match op {
            MmOp::Touch { vpn, write } => match self.shmem_index(*vpn) {
                // A pending shmem access changes at most which page is mapped.
                Some(index) => {
                    let id = match s.mapping.get(vpn) {
                        Some(Slot::Page(id)) => Some(*id),
                        _ => s.shmem_file.get(&index).copied(),
                    };
                    match (write, id) {
                        (None, Some(id)) => vec![MmRet::Value(s.content[&id])],
                        _ => vec![],
                    }
                }
                None => {
                    let mut st = s.clone();
                    let id = st.fault(*vpn, self.order);
                    vec![MmRet::Value(st.content[&id])]
                }
            },
            MmOp::GupFast { h, .. } | MmOp::Gup { h, .. } | MmOp::PinLongterm { h, .. } => {
                vec![MmRet::Handle(*h)]
            }
            MmOp::UnpinDirty { .. }
            | MmOp::Writeback
            | MmOp::VhostWrite { .. }
            | MmOp::VhostUnmap { .. }
            | MmOp::PublishAlias { .. } => vec![MmRet::Done],
            MmOp::VhostMap { h, .. } => vec![MmRet::Handle(*h)],
            MmOp::ReleaseBuffers => vec![],
            MmOp::Put { .. }
            | MmOp::WritePinned { .. }
            | MmOp::Zap { .. }
            | MmOp::Publish { .. } => vec![MmRet::Done],
            MmOp::ReadPinned { .. } | MmOp::Split { .. } => vec![],
            MmOp::Readahead { .. } => {
                vec![MmRet::Ra(RaOutcome::Read), MmRet::Ra(RaOutcome::Cached)]
            }
            MmOp::Evict { .. } => vec![
                MmRet::Evict(EvictOutcome::Evicted(1)),
                MmRet::Evict(EvictOutcome::Evicted(1 << self.order)),
                MmRet::Evict(EvictOutcome::Busy),
            ],
            MmOp::Collapse { .. } => vec![
                MmRet::Collapse(CollapseOutcome::Collapsed),
                MmRet::Collapse(CollapseOutcome::Busy),
            ],
            MmOp::SplitFile { .. } => vec![
                MmRet::Split(SplitOutcome::Split),
                MmRet::Split(SplitOutcome::Busy),
            ],
            MmOp::SeekProbe { .. } | MmOp::Mincore { .. } | MmOp::BuildId => vec![],
            MmOp::Vmalloc { h } | MmOp::SetMemoryNp { h } => vec![MmRet::Handle(*h)],
            MmOp::Vfree { .. } | MmOp::Vwrite { .. } => vec![MmRet::Done],
            MmOp::Hibernate => vec![MmRet::Image(0)],
            MmOp::UffdCopy { .. } => vec![MmRet::Done, MmRet::Errno(Errno::EEXIST)],
            MmOp::CollapseShmem { .. } => vec![MmRet::Collapse(CollapseOutcome::Collapsed)],
            MmOp::CollapsePteMapped { .. } => vec![
                MmRet::Collapse(CollapseOutcome::Collapsed),
                MmRet::Collapse(CollapseOutcome::Fail),
            ],
            MmOp::Populate { vpn } if self.shmem_index(*vpn).is_some() => {
                return self.step(s, op, &MmRet::Done).into_iter().collect();
            }
            MmOp::Populate { vpn } => {
                let mut st = s.clone();
                let base = vpn & !((1u32 << self.order) - 1);
                for a in base..base + (1 << self.order) {
                    st.mapping.or_insert(a, Slot::Maybe);
                }
                return vec![st.canonical()];
            }
        };
        for r in candidates {
            if let Some(ns) = self.step(s, op, &r) {
                out.push(ns);
            }
        }
        out
    }
}
