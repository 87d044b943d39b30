//! The mm spec rejects what the kernel must never show, on hand-built histories: each case has
//! a twin that it must accept, so a spec that accepted everything would fail here.

use mm_impl::errno::Errno;
use mm_impl::huge_memory::SplitOutcome;
use oracles::linearizability::{check, Check, Entry};
use oracles::mm_spec::{Handle, MmOp, MmRet, MmSpec};

/// One huge range of 4 pages (order 2), pages 0..4 mapped with 0x100 + i; 8 pages in all.
fn spec() -> MmSpec {
    MmSpec {
        order: 2,
        initial: (0..4).map(|i| (i, 0x100 + u64::from(i))).collect(),
        // Text file range 0 (pages 0..4) cached; range 1 (4..8) not.
        file_cached: 0b1111,
        build_id: 0xb1d,
        file_pages: 8,
        init_cache: std::sync::OnceLock::new(),
        // No shared mapping in these histories.
        shared: (0, 0),
        shmem_start: 64,
        shmem_file: Vec::new(),
    }
}

/// A sequential history: entry k runs in [2k, 2k + 1].
fn seq(ops: Vec<(MmOp, MmRet)>) -> Vec<Entry<MmOp, MmRet>> {
    ops.into_iter()
        .enumerate()
        .map(|(k, (op, ret))| Entry::returned(op, 2 * k as u64, 2 * k as u64 + 1, ret))
        .collect()
}

fn accepts(h: Vec<(MmOp, MmRet)>) -> bool {
    check(&spec(), &seq(h), 100_000) == Check::Linearizable
}

const H: Handle = Handle {
    thread: 0,
    index: 0,
};

fn read(vpn: u32) -> MmOp {
    MmOp::Touch { vpn, write: None }
}

#[test]
fn a_read_after_a_completed_zap_sees_a_fresh_zero_page() {
    let zap = (MmOp::Zap { vpn: 1, len: 1 }, MmRet::Done);
    assert!(accepts(vec![zap.clone(), (read(1), MmRet::Value(0))]));
    assert!(
        !accepts(vec![zap, (read(1), MmRet::Value(0x101))]),
        "old data after MADV_DONTNEED"
    );
}

#[test]
fn a_pin_keeps_seeing_its_page_after_a_zap() {
    let pin = vec![
        (
            MmOp::Gup {
                vpn: 2,
                h: H,
                write: false,
            },
            MmRet::Handle(H),
        ),
        (MmOp::Publish { h: H }, MmRet::Done),
        (MmOp::Zap { vpn: 2, len: 1 }, MmRet::Done),
        (
            MmOp::Touch {
                vpn: 2,
                write: Some(7),
            },
            MmRet::Value(0),
        ),
    ];
    let mut ok = pin.clone();
    ok.push((MmOp::ReadPinned { h: H }, MmRet::Value(0x102)));
    assert!(accepts(ok));
    let mut bad = pin;
    bad.push((MmOp::ReadPinned { h: H }, MmRet::Value(7)));
    assert!(
        !accepts(bad),
        "the pin read the new page at the address, not the page it pinned"
    );
}

#[test]
fn a_pin_and_the_mapping_share_writes_while_mapped() {
    let base = vec![
        (MmOp::GupFast { vpn: 3, h: H }, MmRet::Handle(H)),
        (MmOp::Publish { h: H }, MmRet::Done),
        (MmOp::WritePinned { h: H, val: 9 }, MmRet::Done),
    ];
    let mut ok = base.clone();
    ok.push((read(3), MmRet::Value(9)));
    assert!(accepts(ok));
    let mut bad = base;
    bad.push((read(3), MmRet::Value(0x103)));
    assert!(
        !accepts(bad),
        "a DMA write through the pin is lost for the user"
    );
}

#[test]
fn handles_exist_exactly_between_publication_and_put() {
    let live = vec![
        (
            MmOp::Gup {
                vpn: 0,
                h: H,
                write: false,
            },
            MmRet::Handle(H),
        ),
        (MmOp::Publish { h: H }, MmRet::Done),
    ];
    let mut bad = live.clone();
    bad.push((MmOp::Put { h: H }, MmRet::NoHandle));
    assert!(!accepts(bad), "put said NoHandle for a live handle");
    let mut ok = live.clone();
    ok.push((MmOp::Put { h: H }, MmRet::Done));
    ok.push((MmOp::ReadPinned { h: H }, MmRet::NoHandle));
    assert!(accepts(ok));
    let mut twice = live;
    twice.push((MmOp::Put { h: H }, MmRet::Done));
    twice.push((MmOp::Put { h: H }, MmRet::Done));
    assert!(!accepts(twice), "a handle was put twice");
}

#[test]
fn split_and_gup_fast_see_what_is_mapped() {
    assert!(!accepts(vec![(
        MmOp::Split { vpn: 1 },
        MmRet::Split(SplitOutcome::NotMapped)
    )]));
    assert!(accepts(vec![(
        MmOp::Split { vpn: 1 },
        MmRet::Split(SplitOutcome::Busy)
    )]));
    // Page 5 is in the empty second range: nothing to split, nothing for gup-fast to take.
    assert!(accepts(vec![(
        MmOp::Split { vpn: 5 },
        MmRet::Split(SplitOutcome::NotMapped)
    )]));
    assert!(!accepts(vec![(
        MmOp::Split { vpn: 5 },
        MmRet::Split(SplitOutcome::Split)
    )]));
    assert!(!accepts(vec![(
        MmOp::GupFast { vpn: 5, h: H },
        MmRet::Handle(H)
    )]));
    assert!(accepts(vec![(
        MmOp::GupFast { vpn: 5, h: H },
        MmRet::Fallback
    )]));
}

#[test]
fn a_fault_may_map_its_whole_empty_range_but_not_another() {
    // A read of page 5 faults the empty range 4..8 in (mTHP): page 6 may now be mapped.
    let fault = (read(5), MmRet::Value(0));
    assert!(accepts(vec![
        fault.clone(),
        (MmOp::GupFast { vpn: 6, h: H }, MmRet::Handle(H))
    ]));
    assert!(accepts(vec![
        fault.clone(),
        (
            MmOp::Split { vpn: 6 },
            MmRet::Split(SplitOutcome::NotMapped)
        )
    ]));
    // ... and once one observation decided it, the others must agree.
    assert!(!accepts(vec![
        fault,
        (
            MmOp::Split { vpn: 6 },
            MmRet::Split(SplitOutcome::NotMapped)
        ),
        (MmOp::GupFast { vpn: 6, h: H }, MmRet::Handle(H)),
    ]));
}

#[test]
fn contents_never_change_by_themselves() {
    assert!(!accepts(vec![(read(0), MmRet::Value(0x999))]));
    assert!(accepts(vec![
        (read(0), MmRet::Value(0x100)),
        (MmOp::Split { vpn: 0 }, MmRet::Split(SplitOutcome::Split)),
        (read(0), MmRet::Value(0x100))
    ]));
    assert!(
        !accepts(vec![
            (MmOp::Split { vpn: 0 }, MmRet::Split(SplitOutcome::Split)),
            (read(0), MmRet::Value(0))
        ]),
        "a split lost data"
    );
    assert!(accepts(vec![
        (
            MmOp::Touch {
                vpn: 0,
                write: Some(5)
            },
            MmRet::Errno(Errno::ENOMEM)
        ),
        (read(0), MmRet::Value(0x100))
    ]));
}

// The text file (seed 000): residency changes only by readahead and eviction; collapse and
// split never change it; SEEK_DATA/SEEK_HOLE probes and mincore must agree with it; the build
// id is the file's or EFAULT.

use mm_impl::khugepaged::CollapseOutcome;
use mm_impl::readahead::RaOutcome;
use mm_impl::vmscan::EvictOutcome;

#[test]
fn mincore_follows_eviction_and_readahead() {
    let evict = (
        MmOp::Evict { page: 1 },
        MmRet::Evict(EvictOutcome::Evicted(1)),
    );
    let ra = (MmOp::Readahead { page: 1 }, MmRet::Ra(RaOutcome::Read));
    assert!(accepts(vec![
        evict.clone(),
        (MmOp::Mincore { page: 1 }, MmRet::Value(0))
    ]));
    assert!(
        !accepts(vec![
            evict.clone(),
            (MmOp::Mincore { page: 1 }, MmRet::Value(1))
        ]),
        "an evicted page reported resident"
    );
    assert!(accepts(vec![
        evict.clone(),
        ra.clone(),
        (MmOp::Mincore { page: 1 }, MmRet::Value(1))
    ]));
    assert!(
        !accepts(vec![(MmOp::Mincore { page: 2 }, MmRet::Value(0))]),
        "a resident page reported missing"
    );
    assert!(
        !accepts(vec![(MmOp::Mincore { page: 2 }, MmRet::Value(7))]),
        "mincore returns 0 or 1"
    );
    // Readahead reads in only what was not resident.
    assert!(!accepts(vec![ra]), "page 1 was resident already");
}

#[test]
fn collapse_needs_every_page_and_keeps_them_resident() {
    let collapsed = (
        MmOp::Collapse { range: 0 },
        MmRet::Collapse(CollapseOutcome::Collapsed),
    );
    let evict3 = (
        MmOp::Evict { page: 3 },
        MmRet::Evict(EvictOutcome::Evicted(1)),
    );
    assert!(accepts(vec![
        collapsed.clone(),
        (MmOp::Mincore { page: 0 }, MmRet::Value(1))
    ]));
    assert!(
        !accepts(vec![evict3.clone(), collapsed.clone()]),
        "collapsed a range with a page missing"
    );
    // After the collapse the range is one folio: evicting any page evicts all four.
    let evict_all = (
        MmOp::Evict { page: 2 },
        MmRet::Evict(EvictOutcome::Evicted(4)),
    );
    assert!(accepts(vec![
        collapsed.clone(),
        evict_all.clone(),
        (MmOp::Mincore { page: 0 }, MmRet::Value(0))
    ]));
    assert!(
        !accepts(vec![collapsed.clone(), evict3]),
        "evicted one page of a huge folio"
    );
    let split = (
        MmOp::SplitFile { page: 1 },
        MmRet::Split(SplitOutcome::Split),
    );
    assert!(accepts(vec![collapsed.clone(), split.clone()]));
    assert!(
        !accepts(vec![split]),
        "split a range that was never collapsed"
    );
}

#[test]
fn seek_probes_agree_with_residency() {
    let probe = |page, data| (MmOp::SeekProbe { page, data }, MmRet::Done);
    assert!(accepts(vec![probe(0, true), probe(5, false)]));
    assert!(
        !accepts(vec![probe(0, false)]),
        "resident data read as a hole"
    );
    assert!(!accepts(vec![probe(5, true)]), "a hole read as data");
    assert!(
        !accepts(vec![probe(8, false)]),
        "a probe past the end of the file"
    );
}

#[test]
fn build_id_is_the_files_or_efault() {
    assert!(accepts(vec![(MmOp::BuildId, MmRet::Value(0xb1d))]));
    assert!(accepts(vec![(MmOp::BuildId, MmRet::Errno(Errno::EFAULT))]));
    assert!(
        !accepts(vec![(MmOp::BuildId, MmRet::Value(0))]),
        "zeros parsed as the build id"
    );
    assert!(!accepts(vec![(MmOp::BuildId, MmRet::Errno(Errno::ENOMEM))]));
}
