//! Seed 002 (retract_page_tables() against UFFDIO_COPY, and an IOMMU that walks the CPU page
//! tables): what the generic found/clean tests of `seed_switches.rs` do not show: that the
//! clean runs reach the recheck and the notifier window the switches remove, that the device
//! walk through a freed table is caught at the walk, and the sequential semantics of the new
//! ops on the default world.

mod common;
use common::{fixed, load};

use harness::engine::pct::Pct;
use harness::format::{parse_text, to_text};
use harness::program::{ProgFile, Schedule};
use harness::{run, Outcome, Verdict};
use mm_impl::errno::Errno;
use mm_impl::khugepaged::CollapseOutcome;
use mm_impl::violation::Kind;
use oracles::mm_spec::MmRet;

/// Trace positions of the events at `what`, with the value each read or wrote.
fn events(o: &Outcome, what: &str) -> Vec<(usize, u64)> {
    o.trace
        .iter()
        .enumerate()
        .filter(|(_, te)| te.ev.site.what == what)
        .map(|(i, te)| (i, te.ev.val))
        .collect()
}

/// Results of the ops of a one-thread program, in order.
fn results(o: &Outcome) -> Vec<Option<MmRet>> {
    o.history
        .iter()
        .map(|r| r.response.map(|(_, ret)| ret))
        .collect()
}

fn program(body: &str) -> ProgFile {
    parse_text(&format!(
        "# mmfuzz program\n# bugs: none\n# order: 3\n# world: 4\n{body}"
    ))
    .expect("parses")
}

#[test]
fn fixed_model_pct_schedules_reach_the_recheck_under_ptl() {
    // The clean runs are not vacuous: under PCT, the fixed retract_page_tables() does meet a
    // vma->anon_vma that UFFDIO_COPY set after its racy pre-check, and skips the table.
    let mut f = fixed(load("retract-uffd-copy.mmprog"));
    f.program.schedule = Schedule::default();
    let calib = run(&f);
    let mut pct = Pct::new(0x002, 3);
    let mut hits = 0;
    for _ in 0..2_000 {
        f.program.schedule = pct.schedule(&calib.points);
        let o = run(&f);
        assert_eq!(o.verdict, Verdict::Pass, "{:?}", f.program.schedule);
        let pre = events(&o, "READ_ONCE(vma->anon_vma)");
        let re = events(&o, "vma->anon_vma (recheck under ptl)");
        // The pre-check saw NULL, the recheck saw the anon_vma: the skip that the fix adds.
        if pre.iter().any(|&(_, v)| v == 0) && re.iter().any(|&(_, v)| v == 1) {
            hits += 1;
        }
    }
    assert!(
        hits > 0,
        "no PCT schedule put UFFDIO_COPY inside the window"
    );
}

#[test]
fn fixed_model_pct_schedules_flush_the_iommu_inside_the_notifier_window() {
    // Under PCT, some fixed run has the device walk before the retract (its paging-structure
    // cache holds the table), the table retired, and the device walk from the PMD again
    // afterwards: the notifier flushed the cached pointer.
    let mut f = fixed(load("retract-iommu-walk.mmprog"));
    f.program.schedule = Schedule::default();
    let calib = run(&f);
    let mut pct = Pct::new(0x002, 3);
    let mut hits = 0;
    for _ in 0..2_000 {
        f.program.schedule = pct.schedule(&calib.points);
        let o = run(&f);
        assert_eq!(o.verdict, Verdict::Pass, "{:?}", f.program.schedule);
        let pmd_reads = events(&o, "read the PMD");
        let Some(&(clear, _)) = events(&o, "pmdp_huge_get_and_clear()").first() else {
            continue;
        };
        let window = events(&o, "invalidate_seq |= 1 (in progress)");
        if pmd_reads.iter().any(|&(i, _)| i < clear)
            && pmd_reads.iter().any(|&(i, _)| i > clear)
            && window.iter().any(|&(i, _)| i < clear)
        {
            hits += 1;
        }
    }
    assert!(
        hits > 0,
        "no PCT schedule had the IOMMU cache the table before the retract"
    );
}

#[test]
fn the_device_walk_through_the_freed_table_is_caught_at_the_walk() {
    let o = run(&load("retract-iommu-walk.mmprog"));
    let Verdict::Fail { violation, .. } = &o.verdict else {
        panic!("{:?}", o.verdict)
    };
    assert_eq!(violation.kind, Kind::IommuWalkFreedTable);
    assert_eq!(violation.func, "iommu_walk");
    // The page it names is the table retract_page_tables() cleared from the PMD.
    let (_, cleared) = events(&o, "pmdp_huge_get_and_clear()")[0];
    let table = u32::try_from(cleared >> 12).expect("a pfn");
    assert_eq!(violation.pfn, Some(table));
}

#[test]
fn the_lost_copy_reads_the_files_page_again() {
    // Jann Horn's race as the seed draws it: UFFDIO_COPY succeeded, but the read that follows
    // the v1 retract maps the file's (collapsed) page, not the copied data.
    let o = run(&load("retract-uffd-copy.mmprog"));
    assert_eq!(o.verdict.kind(), Some(Kind::PageLeak));
    let r = results(&o);
    assert!(
        r.contains(&Some(MmRet::Done)),
        "UFFDIO_COPY succeeded: {r:?}"
    );
    assert!(
        r.contains(&Some(MmRet::Value(0x5003))),
        "the read sees the file's page: {r:?}"
    );
    assert!(!r.contains(&Some(MmRet::Value(0x77))), "{r:?}");
}

#[test]
fn shmem_uffd_and_iommu_ops_do_what_the_kernel_does_alone() {
    let o = run(&program(
        "thread 0:\n  read shmem:9\n  read shmem:3\n  write shmem:3 0x1\n  uffd_copy shmem:3 0x11\n  uffd_copy shmem:4 0x22\n  read shmem:4\n  uffd_copy shmem:9 0x33\n  read shmem:9\n  uffd_copy anon:1 0x44\n  collapse_shmem 8\n  iommu_read shmem:4\n  iommu_write shmem:4 0x5\n  iommu_write anon:2 0x66\n  read anon:2\n",
    ));
    assert_eq!(o.verdict, Verdict::Pass);
    assert_eq!(
        results(&o),
        [
            // A hole in a MISSING-registered VMA fails at once.
            MmRet::Errno(Errno::EFAULT),
            // The file's page, mapped read-only.
            MmRet::Value(0x5003),
            MmRet::Errno(Errno::EFAULT),
            // Something is mapped there already.
            MmRet::Errno(Errno::EEXIST),
            MmRet::Done,
            MmRet::Value(0x22),
            // UFFDIO_COPY fills the hole with an anonymous page.
            MmRet::Done,
            MmRet::Value(0x33),
            // The anon VMA is not registered.
            MmRet::Errno(Errno::ENOENT),
            // The range with holes is registered MISSING: 6.6 rolls back.
            MmRet::Collapse(CollapseOutcome::ExceedNone),
            // The device sees what the CPU sees, and cannot write a read-only mapping.
            MmRet::Value(0x22),
            MmRet::Errno(Errno::EFAULT),
            MmRet::Value(0x102),
            MmRet::Value(0x66),
        ]
        .map(Some)
    );
}

#[test]
fn collapse_keeps_contents_and_retracts_the_table_until_uffd_copy() {
    // Collapse of the fully cached range retires its PTE table (nothing maps it); the data a
    // later read sees is the file's, copied into the huge page. After UFFDIO_COPY gave the VMA
    // an anon_vma, a later collapse leaves the table alone (the pre-check skips it).
    let o = run(&program(
        "thread 0:\n  collapse_shmem 0\n  read shmem:2\n  uffd_copy shmem:5 0x55\n  zap shmem:2 1\n  read shmem:5\n",
    ));
    assert_eq!(o.verdict, Verdict::Pass);
    assert_eq!(
        results(&o),
        [
            MmRet::Collapse(CollapseOutcome::Collapsed),
            MmRet::Value(0x5002),
            MmRet::Done,
            MmRet::Done,
            MmRet::Value(0x55),
        ]
        .map(Some)
    );
    assert_eq!(events(&o, "pmdp_huge_get_and_clear()").len(), 1);
    // A mapped page is unmapped (try_to_unmap) while it is locked, then collapsed; the next
    // read maps the huge page's copy. A GUP reference on it makes the collapse fail instead.
    let o = run(&program(
        "thread 0:\n  read shmem:2\n  collapse_shmem 0\n  read shmem:2\n",
    ));
    assert_eq!(o.verdict, Verdict::Pass);
    let r = results(&o);
    assert_eq!(r[1], Some(MmRet::Collapse(CollapseOutcome::Collapsed)));
    assert_eq!(r[2], Some(MmRet::Value(0x5002)));
    assert!(!events(&o, "ptep_clear_flush()").is_empty());
    let o = run(&program(
        "thread 0:\n  gup shmem:4 get\n  zap shmem:4 1\n  collapse_shmem 0\n  read shmem:4\n",
    ));
    assert_eq!(o.verdict, Verdict::Pass);
    assert_eq!(results(&o)[2], Some(MmRet::Collapse(CollapseOutcome::Busy)));
}

#[test]
fn new_ops_round_trip_through_the_text_form() {
    let src = "# mmfuzz program\n# bugs: none\n# order: 3\n# world: 4\nthread 0:\n  uffd_copy shmem:3 0x77\n  collapse_shmem 8\n  iommu_read anon:1\n  iommu_write shmem:2 0x5\n";
    let f = parse_text(src).expect("parses");
    assert_eq!(to_text(&f, &[]), src);
    assert!(parse_text("thread 0:\n  uffd_copy shmem:3\n").is_err());
    assert!(parse_text("thread 0:\n  collapse_shmem shmem:3\n").is_err());
    assert!(parse_text("thread 0:\n  iommu_read 3\n").is_err());
}

#[test]
fn collapse_pte_mapped_thp_unmaps_the_huge_folio_and_stops_at_anon_ptes() {
    // After the collapse retired the table, a read maps the huge folio's page by a PTE again;
    // collapse_pte_mapped_thp() unmaps it and retires that table too (the device that walked
    // it is flushed by the notifier), so UFFDIO_COPY may fill the address afterwards.
    let o = run(&program(
        "thread 0:\n  collapse_shmem 0\n  read shmem:2\n  iommu_read shmem:2\n  collapse_pte_mapped shmem:2\n  iommu_read shmem:2\n  uffd_copy shmem:2 0x77\n  read shmem:2\n  collapse_pte_mapped shmem:0\n  collapse_pte_mapped anon:0\n  collapse_pte_mapped shmem:9\n",
    ));
    assert_eq!(o.verdict, Verdict::Pass);
    assert_eq!(
        results(&o),
        [
            MmRet::Collapse(CollapseOutcome::Collapsed),
            MmRet::Value(0x5002),
            MmRet::Value(0x5002),
            MmRet::Collapse(CollapseOutcome::Collapsed),
            // The device's page request faults the page in again.
            MmRet::Value(0x5002),
            // The device's fault mapped it: UFFDIO_COPY finds it there.
            MmRet::Errno(Errno::EEXIST),
            MmRet::Value(0x5002),
            MmRet::Collapse(CollapseOutcome::Collapsed),
            // Not a file-backed VMA.
            MmRet::Collapse(CollapseOutcome::Fail),
            // The range with holes is cached in small folios: not a PMD-sized folio.
            MmRet::Collapse(CollapseOutcome::Fail),
        ]
        .map(Some)
    );
    // Two tables were retired by collapse_pte_mapped_thp, one by retract_page_tables.
    assert_eq!(events(&o, "pmdp_huge_get_and_clear()").len(), 3);

    // An anonymous PTE from UFFDIO_COPY in the range: it fails and leaves the table.
    let o = run(&program(
        "thread 0:\n  uffd_copy shmem:5 0x55\n  collapse_shmem 0\n  read shmem:2\n  collapse_pte_mapped shmem:2\n  read shmem:5\n",
    ));
    assert_eq!(o.verdict, Verdict::Pass);
    assert_eq!(
        results(&o),
        [
            MmRet::Done,
            MmRet::Collapse(CollapseOutcome::Collapsed),
            MmRet::Value(0x5002),
            MmRet::Collapse(CollapseOutcome::Fail),
            MmRet::Value(0x55),
        ]
        .map(Some)
    );
    assert!(events(&o, "pmdp_huge_get_and_clear()").is_empty());
}
