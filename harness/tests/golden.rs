//! Snapshot tests: the race diagrams and text reproducers of the seed programs are committed
//! under tests/golden, so a change in what people read is reviewed in the diff, not silently
//! accepted. After an intended change: `MMFUZZ_BLESS=1 cargo test -p harness --test golden`.

use harness::diagram::race_diagram;
use harness::format::to_text;
use harness::run;
use harness::seeds::SEEDS;
use std::path::PathBuf;

fn check(name: &str, actual: &str) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("MMFUZZ_BLESS").is_some() {
        std::fs::write(&path, actual).expect("bless");
        return;
    }
    let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with MMFUZZ_BLESS=1 to create it)",
            path.display()
        )
    });
    if want != actual {
        let line = want
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .map_or_else(
                || want.lines().count().min(actual.lines().count()) + 1,
                |i| i + 1,
            );
        panic!(
            "{} differs from the output at line {line}; review the change and re-bless with MMFUZZ_BLESS=1\n--- golden\n{}\n+++ actual\n{}",
            path.display(),
            want.lines().nth(line - 1).unwrap_or(""),
            actual.lines().nth(line - 1).unwrap_or("")
        );
    }
}

#[test]
fn seed_race_diagrams_are_unchanged() {
    for (name, text) in SEEDS {
        let f = harness::format::parse_text(text).expect("seed parses");
        let out = run(&f);
        check(&format!("{name}.diagram.txt"), &race_diagram(&f, &out));
        check(&format!("{name}.canonical.mmprog"), &to_text(&f, &[]));
    }
}
