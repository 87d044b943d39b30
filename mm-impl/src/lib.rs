//! mm-impl: a threaded model of the Linux kernel's memory management.
//!
//! One file per kernel area, named after the kernel file it models; functions keep the kernel's
//! names. All shared state is reached through the [`sync`] facade, which turns every atomic access,
//! lock operation and `cpu_relax()` into a deterministic scheduling point.

#![warn(missing_docs)]

pub mod buffer;
pub mod bugs;
pub mod buildid;
pub mod errno;
pub mod filemap;
pub mod filemap_fault;
pub mod gup;
pub mod huge_memory;
pub mod iommu;
pub mod khugepaged;
pub mod memory;
pub mod mincore;
pub mod mm_types;
pub mod mmu_notifier;
pub mod page_alloc;
pub mod page_ref;
pub mod readahead;
pub mod rmap;
pub mod set_memory;
pub mod shmem;
pub mod snapshot;
pub mod sync;
pub mod userfaultfd;
pub mod vhost;
pub mod violation;
pub mod vmalloc;
pub mod vmscan;
pub mod world;
pub mod writeback;
pub mod xarray;
