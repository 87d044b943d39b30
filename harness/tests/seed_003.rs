//! Seed 003 (the direct map, vfree's VM_FLUSH_RESET_PERMS and the hibernate snapshot): what the
//! generic found/clean tests of `seed_switches.rs` do not show: that the clean runs reach the
//! code the switches change, and that the new ops round-trip.

mod common;
use common::{fixed, load};

use harness::engine::pct::Pct;
use harness::program::Schedule;
use harness::run;

#[test]
fn fixed_model_pct_schedules_reach_the_remap_and_the_abort() {
    // The clean tests are not vacuous: under the same PCT schedules, the fixed snapshot does
    // meet a page vfree left invalid (and remaps it), and the failed split does abort it.
    use oracles::mm_spec::MmRet;
    let remapped = |o: &harness::Outcome| {
        o.trace
            .iter()
            .any(|te| te.ev.site.what == "!kernel_page_present(s_page)")
    };
    let mut f = fixed(load("hibernate-trust-present.mmprog"));
    f.program.schedule = Schedule::default();
    let calib = run(&f);
    let mut pct = Pct::new(0x003, 3);
    let mut hits = 0;
    for _ in 0..2_000 {
        f.program.schedule = pct.schedule(&calib.points);
        hits += u32::from(remapped(&run(&f)));
    }
    assert!(
        hits > 0,
        "no PCT schedule caught vfree between invalid and default"
    );

    let out = run(&fixed(load("hibernate-map-unchecked.mmprog")));
    let hib = out
        .history
        .iter()
        .find(|r| r.op == harness::program::Op::Hibernate)
        .and_then(|r| r.response)
        .map(|(_, r)| r);
    assert_eq!(
        hib,
        Some(MmRet::Errno(mm_impl::errno::Errno::ENOMEM)),
        "the fixed snapshot aborts when the remap's split fails"
    );
}

#[test]
fn new_ops_round_trip_through_the_text_form() {
    use harness::format::{parse_text, to_text};
    let src = "# mmfuzz program\n# bugs: none\n# order: 3\n# world: 4\nthread 0:\n  vmalloc 3\n  vwrite 0.0 0x12\n  vfree 0.0\n  set_memory_np\n  hibernate\n";
    let f = parse_text(src).expect("parses");
    assert_eq!(to_text(&f, &[]), src);
    assert_eq!(parse_text(&to_text(&f, &[])).expect("reparses"), f);
    // Handles count vmalloc and set_memory_np like GUP: 0.0 is the area, 0.1 the block.
    assert_eq!(
        f.program.handle_of(0, 3).map(|h| (h.thread, h.index)),
        Some((0, 1))
    );
    assert!(parse_text("thread 0:\n  hibernate now\n").is_err());
    assert!(parse_text("thread 0:\n  vfree\n").is_err());
}
