//! Minimization keeps the signature and removes what the race does not need.

use harness::minimize::minimize;
use harness::program::{Addr, Fault, Op};
use harness::run;
use harness::seeds::seed;
use mm_impl::bugs::Bugs;
use mm_impl::mm_types::VmaKind;

#[test]
fn a_bloated_001_reproducer_shrinks_to_the_race() {
    let core = seed("gup-split-race.mmprog").expect("seed");
    let want = run(&core)
        .verdict
        .signature()
        .cloned()
        .expect("the seed fails");
    let a = |page| Addr {
        vma: VmaKind::Anon,
        page,
    };
    let mut big = core.clone();
    big.program.threads[1].push(Op::Touch {
        at: a(2),
        write: Some(0x77),
    });
    big.program.threads[1].push(Op::Zap { at: a(12), len: 3 });
    big.program.threads.push(vec![
        Op::Touch {
            at: a(9),
            write: None,
        },
        Op::Gup {
            at: a(10),
            pin: true,
            write: true,
        },
        Op::ReadPinned {
            h: harness::program::Handle {
                thread: 2,
                index: 0,
            },
        },
        Op::Zap { at: a(14), len: 2 },
    ]);
    big.program.faults.push(Fault { thread: 2, nth: 9 });
    assert_eq!(
        run(&big).verdict.signature(),
        Some(&want),
        "the bloated program still fails the same way"
    );
    let m = minimize(&big, 5_000).expect("it fails, so it minimizes");
    assert_eq!(m.signature, want);
    assert_eq!(
        run(&m.file).verdict.signature(),
        Some(&want),
        "the result replays"
    );
    assert!(
        m.file.program.nops() <= core.program.nops(),
        "{} ops left",
        m.file.program.nops()
    );
    assert_eq!(m.file.program.threads.len(), 2);
    assert!(m.file.program.faults.is_empty());
}

#[test]
fn a_passing_program_is_not_minimized() {
    let mut f = seed("gup-split-race.mmprog").expect("seed");
    f.header.bugs = Bugs::NONE;
    assert!(minimize(&f, 100).is_none());
}
