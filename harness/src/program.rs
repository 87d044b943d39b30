//! Programs: threads of mm operations in the fixed default world, plus the schedule and the
//! fault plan that make a run reproducible. Every value a fuzzer can produce is a valid program.

use arbitrary::{Arbitrary, Unstructured};
use mm_impl::bugs::Bugs;
use mm_impl::mm_types::VmaKind;
use mm_impl::sync::Preemption;
use mm_impl::world::{WorldConfig, DEFAULT_ORDER, MAX_ORDER, MIN_ORDER, WORLD_VERSION};
pub use oracles::mm_spec::Handle;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Most threads a program may have.
pub const MAX_THREADS: usize = 4;
/// Most ops per thread.
pub const MAX_OPS: usize = 16;
/// Most preemptions in a schedule. Generated schedules use a few; a random walk's realized
/// schedule (one entry per switch) can use many, and its reproducer must still load.
pub const MAX_PREEMPTIONS: usize = 100_000;
/// Most injected faults.
pub const MAX_FAULTS: usize = 8;
/// Most NMIs.
pub const MAX_NMIS: usize = 4;

/// A page of the text file (taken modulo the file's size), written `text:N`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Arbitrary,
)]
pub struct FilePage(pub u8);

/// A page of the data file behind the shared mapping (taken modulo its size), written `data:N`.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Arbitrary,
)]
pub struct DataPage(pub u8);

impl fmt::Display for DataPage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "data:{}", self.0)
    }
}

impl fmt::Display for FilePage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "text:{}", self.0)
    }
}

/// An address: a VMA of the default world and a page index in it (taken modulo its size).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Addr {
    /// Which VMA.
    pub vma: VmaKind,
    /// Page index inside it.
    pub page: u8,
}

impl<'a> Arbitrary<'a> for Addr {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        Ok(Addr {
            vma: *u.choose(&VmaKind::ALL)?,
            page: u.arbitrary()?,
        })
    }
}

/// One operation of a program thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Arbitrary)]
pub enum Op {
    /// User load (`write: None`) or store of a value, faulting the page in if needed.
    Touch {
        /// Where.
        at: Addr,
        /// Value to store.
        write: Option<u16>,
    },
    /// `get_user_pages_fast_only()` (`pin: false`) or `pin_user_pages_fast_only()`: lockless,
    /// may fall back. Creates a handle on success.
    GupFast {
        /// Where.
        at: Addr,
        /// FOLL_PIN instead of FOLL_GET.
        pin: bool,
        /// FOLL_WRITE.
        write: bool,
    },
    /// `get_user_pages()` / `pin_user_pages()`: the slow path under mmap_lock; faults in.
    Gup {
        /// Where.
        at: Addr,
        /// FOLL_PIN instead of FOLL_GET.
        pin: bool,
        /// FOLL_WRITE.
        write: bool,
    },
    /// `put_page()` or `unpin_user_page()` on the page a handle holds.
    Put {
        /// Which.
        h: Handle,
    },
    /// A kernel or device read through a handle's page.
    ReadPinned {
        /// Which.
        h: Handle,
    },
    /// A kernel or device write through a handle's page.
    WritePinned {
        /// Which.
        h: Handle,
        /// Value.
        val: u16,
    },
    /// debugfs `split_huge_pages` on the THP mapped at an address.
    Split {
        /// Where.
        at: Addr,
    },
    /// `madvise(MADV_DONTNEED)` of `len` pages (at least one) from an address.
    Zap {
        /// First page.
        at: Addr,
        /// Pages.
        len: u8,
    },
    /// `readahead()` of one page of the text file: insert a locked folio, read, mark uptodate.
    Readahead {
        /// Which page.
        at: FilePage,
    },
    /// `invalidate_mapping_pages()` of a page of the text file (`POSIX_FADV_DONTNEED`): evict
    /// its folio if it is clean and unused.
    Evict {
        /// Which page.
        at: FilePage,
    },
    /// khugepaged `collapse_file()` of the huge-page range holding a page of the text file.
    Collapse {
        /// A page of the range.
        at: FilePage,
    },
    /// debugfs `split_huge_pages` of the text file's folio at a page.
    SplitFile {
        /// Which page.
        at: FilePage,
    },
    /// `lseek(SEEK_DATA)` on the text file from a page.
    SeekData {
        /// Start page.
        at: FilePage,
    },
    /// `lseek(SEEK_HOLE)` on the text file from a page (the end of the file is a hole).
    SeekHole {
        /// Start page.
        at: FilePage,
    },
    /// `mincore()` of one page of the text mapping.
    Mincore {
        /// Which page.
        at: FilePage,
    },
    /// `build_id_parse()` of the text mapping from task context (a perf/BPF stack walk).
    BuildId,
    /// `vmalloc()` of `pages` pages (1 to 4) with VM_FLUSH_RESET_PERMS. Creates a handle.
    Vmalloc {
        /// Pages (taken modulo 4, plus one).
        pages: u8,
    },
    /// `vfree()` of a vmalloc handle's area, run as deferred kernel work.
    Vfree {
        /// Which.
        h: Handle,
    },
    /// A kernel store of `val` through a vmalloc handle's alias, into every page of the area.
    Vwrite {
        /// Which.
        h: Handle,
        /// Value.
        val: u16,
    },
    /// A new `set_memory_np()` caller: allocate one direct-map block and make it not present
    /// as a whole. Creates a handle (the block stays not present until teardown).
    SetMemoryNp,
    /// `hibernate()`: freeze every thread, snapshot, thaw.
    Hibernate,
    /// `pin_user_pages_fast(FOLL_LONGTERM)` (RDMA, vfio): a pin held for a long time, which a
    /// sync does not wait for. Creates a handle.
    PinLongterm {
        /// Where.
        at: Addr,
        /// FOLL_WRITE.
        write: bool,
    },
    /// `unpin_user_pages_dirty_lock(make_dirty)` (the end of an O_DIRECT read, a device that
    /// wrote): `set_page_dirty_lock()`, then release the pin. On a FOLL_GET reference or a
    /// read-only pin it is a plain release: only writable pins may be dirtied this way.
    UnpinDirty {
        /// Which.
        h: Handle,
    },
    /// `sync_file_range()`/writeback of the data file: write every dirty page to disk.
    Writeback,
    /// `try_to_free_buffers()` on a data-file page, as reclaim does for a clean page.
    ReleaseBuffers {
        /// Which page.
        at: DataPage,
    },
    /// `ioctl(UFFDIO_COPY)` of one page holding `val` to an address (the private shmem VMA is
    /// the one registered with userfaultfd; elsewhere it fails with ENOENT).
    UffdCopy {
        /// Where.
        at: Addr,
        /// Contents of the copied page.
        val: u16,
    },
    /// khugepaged `collapse_file()` of the huge-page range holding a page of the shmem file,
    /// with `retract_page_tables()` of the VMAs that map it.
    CollapseShmem {
        /// A page of the shmem file (taken modulo its size).
        page: u8,
    },
    /// A DMA read by a device whose IOMMU shares the mm's page tables (SVA): it walks them
    /// itself, caches what it read, and faults pages in through the CPU (page requests).
    IommuRead {
        /// Where.
        at: Addr,
    },
    /// A DMA write of `val` through the IOMMU.
    IommuWrite {
        /// Where.
        at: Addr,
        /// Value.
        val: u16,
    },
    /// vhost's `vmap()` of the user page at an address, kept valid by its mmu notifier.
    /// Creates a handle.
    VhostMap {
        /// Where.
        at: Addr,
    },
    /// A vhost store through its alias (refused once an invalidation tore it down).
    VhostWrite {
        /// Which alias.
        h: Handle,
        /// Value.
        val: u16,
    },
    /// vhost's unmap of an alias (`vhost_uninit_vq_maps()`).
    VhostUnmap {
        /// Which alias.
        h: Handle,
    },
    /// khugepaged `collapse_pte_mapped_thp()` of the huge range holding an address: unmap the
    /// PTEs that map a huge page-cache folio and retire their table.
    CollapsePteMapped {
        /// Where.
        at: Addr,
    },
}

/// Pages a `vmalloc` op allocates.
pub fn vmalloc_pages(pages: u8) -> u32 {
    u32::from(pages % 4) + 1
}

impl Op {
    /// Does this op create a handle (and so take the next handle index of its thread)?
    pub fn creates_handle(&self) -> bool {
        matches!(
            self,
            Op::GupFast { .. }
                | Op::Gup { .. }
                | Op::Vmalloc { .. }
                | Op::SetMemoryNp
                | Op::PinLongterm { .. }
                | Op::VhostMap { .. }
        )
    }

    /// The op's name in program text and race diagrams.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Touch { write: None, .. } => "read",
            Op::Touch { write: Some(_), .. } => "write",
            Op::GupFast { .. } => "gup_fast",
            Op::Gup { .. } => "gup",
            Op::Put { .. } => "put",
            Op::ReadPinned { .. } => "read_pinned",
            Op::WritePinned { .. } => "write_pinned",
            Op::Split { .. } => "split",
            Op::Zap { .. } => "zap",
            Op::Readahead { .. } => "readahead",
            Op::Evict { .. } => "evict",
            Op::Collapse { .. } => "collapse",
            Op::SplitFile { .. } => "split_file",
            Op::SeekData { .. } => "seek_data",
            Op::SeekHole { .. } => "seek_hole",
            Op::Mincore { .. } => "mincore",
            Op::BuildId => "build_id",
            Op::Vmalloc { .. } => "vmalloc",
            Op::Vfree { .. } => "vfree",
            Op::Vwrite { .. } => "vwrite",
            Op::SetMemoryNp => "set_memory_np",
            Op::Hibernate => "hibernate",
            Op::PinLongterm { .. } => "pin_longterm",
            Op::UnpinDirty { .. } => "unpin_dirty",
            Op::Writeback => "writeback",
            Op::ReleaseBuffers { .. } => "release_buffers",
            Op::UffdCopy { .. } => "uffd_copy",
            Op::CollapseShmem { .. } => "collapse_shmem",
            Op::IommuRead { .. } => "iommu_read",
            Op::IommuWrite { .. } => "iommu_write",
            Op::VhostMap { .. } => "vhost_map",
            Op::VhostWrite { .. } => "vhost_write",
            Op::VhostUnmap { .. } => "vhost_unmap",
            Op::CollapsePteMapped { .. } => "collapse_pte_mapped",
        }
    }
}

/// An injected allocation failure: the `nth` allocation (1-based) made by `thread` fails.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Arbitrary,
)]
pub struct Fault {
    /// The thread.
    pub thread: u8,
    /// Its allocation number, from 1.
    pub nth: u32,
}

/// An NMI: before the `at`-th scheduling point (1-based) of `thread`, a build-id lookup runs
/// in NMI context on that CPU (or on the idle CPU once the thread has finished).
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Arbitrary,
)]
pub struct Nmi {
    /// The interrupted CPU.
    pub thread: u8,
    /// Its scheduling point number, from 1.
    pub at: u32,
}

/// The schedule: initial priorities and preemptions, PCT-style, over the default policy
/// (run the current thread until it finishes, spins in `cpu_relax()` or is preempted).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    /// Threads from highest to lowest priority; unnamed threads follow in index order.
    pub priorities: Vec<u8>,
    /// Preemptions, addressed per thread.
    pub preemptions: Vec<Preemption>,
}

impl<'a> Arbitrary<'a> for Schedule {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let np = u.int_in_range(0..=MAX_THREADS)?;
        let priorities = (0..np)
            .map(|_| u.int_in_range(0..=MAX_THREADS as u8 - 1))
            .collect::<Result<_, _>>()?;
        let n = u.int_in_range(0..=8usize)?;
        let mut preemptions = Vec::with_capacity(n);
        for _ in 0..n {
            preemptions.push(Preemption {
                thread: u.int_in_range(0..=MAX_THREADS as u8 - 1)?,
                at: u.int_in_range(1..=400)?,
                to: if u.arbitrary()? {
                    Some(u.int_in_range(0..=MAX_THREADS as u8 - 1)?)
                } else {
                    None
                },
            });
        }
        Ok(Schedule {
            priorities,
            preemptions,
        })
    }
}

/// A program: what the threads do, how they interleave, and which allocations fail.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// One op list per thread (= CPU).
    pub threads: Vec<Vec<Op>>,
    /// Where threads are preempted.
    pub schedule: Schedule,
    /// Which allocations fail.
    pub faults: Vec<Fault>,
    /// Where NMIs interrupt.
    pub nmis: Vec<Nmi>,
}

impl<'a> Arbitrary<'a> for Program {
    fn arbitrary(u: &mut Unstructured<'a>) -> arbitrary::Result<Self> {
        let nt = u.int_in_range(1..=MAX_THREADS)?;
        let mut threads = Vec::with_capacity(nt);
        for _ in 0..nt {
            let n = u.int_in_range(0..=8usize)?;
            threads.push(
                (0..n)
                    .map(|_| u.arbitrary())
                    .collect::<Result<Vec<Op>, _>>()?,
            );
        }
        let schedule = u.arbitrary()?;
        let nf = u.int_in_range(0..=2usize)?;
        let faults = (0..nf)
            .map(|_| {
                Ok(Fault {
                    thread: u.int_in_range(0..=nt as u8 - 1)?,
                    nth: u.int_in_range(1..=8)?,
                })
            })
            .collect::<arbitrary::Result<_>>()?;
        let nn = u.int_in_range(0..=2usize)?;
        let nmis = (0..nn)
            .map(|_| {
                Ok(Nmi {
                    thread: u.int_in_range(0..=nt as u8 - 1)?,
                    at: u.int_in_range(1..=200)?,
                })
            })
            .collect::<arbitrary::Result<_>>()?;
        Ok(Program {
            threads,
            schedule,
            faults,
            nmis,
        })
    }
}

impl Program {
    /// Check the limits a program must respect (files may be hand-edited).
    pub fn validate(&self) -> Result<(), String> {
        if self.threads.is_empty() || self.threads.len() > MAX_THREADS {
            return Err(format!(
                "a program has 1 to {MAX_THREADS} threads, this one has {}",
                self.threads.len()
            ));
        }
        if let Some((t, ops)) = self
            .threads
            .iter()
            .enumerate()
            .find(|(_, o)| o.len() > MAX_OPS)
        {
            return Err(format!(
                "thread {t} has {} ops, at most {MAX_OPS} are allowed",
                ops.len()
            ));
        }
        if self.schedule.preemptions.len() > MAX_PREEMPTIONS {
            return Err(format!("at most {MAX_PREEMPTIONS} preemptions are allowed"));
        }
        if self.faults.len() > MAX_FAULTS {
            return Err(format!("at most {MAX_FAULTS} faults are allowed"));
        }
        if self.nmis.len() > MAX_NMIS {
            return Err(format!("at most {MAX_NMIS} NMIs are allowed"));
        }
        if let Some(n) = self
            .nmis
            .iter()
            .find(|n| usize::from(n.thread) >= self.threads.len())
        {
            return Err(format!(
                "an NMI interrupts thread {}, but the program has {} threads",
                n.thread,
                self.threads.len()
            ));
        }
        if let Some(n) = self.nmis.iter().find(|n| n.at == 0) {
            return Err(format!(
                "NMI on thread {} at point 0: points count from 1",
                n.thread
            ));
        }
        Ok(())
    }

    /// The handle op `op` of `thread` creates, if it creates one.
    pub fn handle_of(&self, thread: usize, op: usize) -> Option<Handle> {
        let ops = &self.threads[thread];
        if !ops[op].creates_handle() {
            return None;
        }
        let index = ops[..op].iter().filter(|o| o.creates_handle()).count();
        Some(Handle {
            thread: thread as u8,
            index: index as u8,
        })
    }

    /// The (thread, op index) of the op that creates handle `h`, if the program has one.
    pub fn creator_of(&self, h: Handle) -> Option<(usize, usize)> {
        let t = usize::from(h.thread);
        let ops = self.threads.get(t)?;
        let i = ops
            .iter()
            .enumerate()
            .filter(|(_, o)| o.creates_handle())
            .nth(usize::from(h.index))?
            .0;
        Some((t, i))
    }

    /// Number of ops over all threads.
    pub fn nops(&self) -> usize {
        self.threads.iter().map(Vec::len).sum()
    }
}

/// What a program file carries besides the program, so that it replays with no flags.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Switched-on bugs.
    pub bugs: Bugs,
    /// Huge-page order.
    pub order: u8,
    /// World version the program was written against.
    pub world: u32,
}

impl Default for Header {
    fn default() -> Self {
        Header {
            bugs: Bugs::NONE,
            order: DEFAULT_ORDER,
            world: WORLD_VERSION,
        }
    }
}

impl Header {
    /// Check the world version a header names.
    pub fn check_world(world: u32) -> Result<(), String> {
        if world == WORLD_VERSION {
            Ok(())
        } else {
            Err(format!("program written for world version {world}, this build models version {WORLD_VERSION}"))
        }
    }

    /// Check a huge-page order.
    pub fn check_order(order: u8) -> Result<(), String> {
        if (MIN_ORDER..=MAX_ORDER).contains(&order) {
            Ok(())
        } else {
            Err(format!(
                "huge-page order {order} is outside the modelled range {MIN_ORDER}..={MAX_ORDER}"
            ))
        }
    }

    /// World version, order range, and a bug set of known, modelled switches only (a decoded
    /// set may hold any bits).
    pub fn validate(&self) -> Result<(), String> {
        Header::check_world(self.world)?;
        Header::check_order(self.order)?;
        match Bugs::parse(&self.bugs.to_string()) {
            Ok(b) if b == self.bugs => Ok(()),
            Ok(_) => Err(format!(
                "the bug set {:?} holds unknown switches",
                self.bugs
            )),
            Err(e) => Err(e),
        }
    }

    /// The world parameters.
    pub fn world_config(&self) -> WorldConfig {
        WorldConfig {
            order: self.order,
            bugs: self.bugs,
        }
    }
}

/// A program with its header: the unit stored in files.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgFile {
    /// Replay parameters.
    pub header: Header,
    /// The program.
    pub program: Program,
}

impl fmt::Display for Addr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.vma.name(), self.page)
    }
}

/// `thread.index`, as program text writes a handle.
pub fn handle_text(h: Handle) -> String {
    format!("{}.{}", h.thread, h.index)
}

/// One op in program-text form (`gup_fast anon:3 pin write`): the same text as a program file.
impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&crate::format::op_to_text(self))
    }
}
