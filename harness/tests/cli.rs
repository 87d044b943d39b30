//! The `mmfuzz` binary: exit statuses, help on every subcommand, clear errors for bad input.

use std::process::Command;

fn mmfuzz(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_mmfuzz"))
        .args(args)
        .output()
        .expect("run mmfuzz");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn seed(name: &str) -> String {
    format!("{}/../corpora/seeds/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn every_subcommand_has_help() {
    for sub in [
        vec![],
        vec!["run"],
        vec!["bugs"],
        vec!["fuzz"],
        vec!["bench"],
        vec!["bench", "throughput"],
        vec!["bench", "find"],
        vec!["convert"],
    ] {
        let mut args = sub.clone();
        args.push("--help");
        let (code, out, _) = mmfuzz(&args);
        assert_eq!(code, 0, "{sub:?} --help");
        assert!(out.contains("Usage"), "{sub:?} --help prints usage");
    }
}

#[test]
fn run_exit_status_says_pass_or_fail() {
    let (code, out, _) = mmfuzz(&["run", &seed("gup-split-race.mmprog")]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("FAIL bad-page-state@free_pages_prepare"),
        "{out}"
    );
    let (code, out, _) = mmfuzz(&["run", "--bug", "none", &seed("gup-split-race.mmprog")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("PASS"));
}

#[test]
fn trace_draws_the_race() {
    let (_, out, _) = mmfuzz(&["run", "--trace", &seed("gup-split-race.mmprog")]);
    for want in [
        "cpu0",
        "cpu1",
        "try_get_folio",
        "folio_ref_try_add",
        "__split_huge_page_tail",
        "clear_compound_head",
        "preempted at point #4",
        "verdict: FAIL",
    ] {
        assert!(out.contains(want), "diagram lacks {want:?}");
    }
}

#[test]
fn bad_input_gets_a_clear_error() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let bad = dir.join("bad.mmprog");
    std::fs::write(
        &bad,
        "# mmfuzz program\nthread 0:\n  gup_fast anon:3 get\n  frobnicate anon:1\n",
    )
    .expect("write");
    let (code, _, err) = mmfuzz(&["run", bad.to_str().expect("utf8")]);
    assert_eq!(code, 2);
    assert!(
        err.contains("bad.mmprog") && err.contains("line 4"),
        "{err}"
    );
    let (code, _, err) = mmfuzz(&[
        "run",
        "--bug",
        "no-such-bug",
        &seed("gup-split-race.mmprog"),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no-such-bug"), "{err}");
    let (code, _, err) = mmfuzz(&["fuzz", "--duration", "5x"]);
    assert_ne!(code, 0);
    assert!(err.contains("unknown unit"), "{err}");
    let (code, _, err) = mmfuzz(&[
        "run",
        "--bug",
        "no-such-switch",
        &seed("gup-split-race.mmprog"),
    ]);
    assert_eq!(code, 2);
    assert!(err.contains("no-such-switch"), "{err}");
}

#[test]
fn bugs_lists_every_switch() {
    let (code, out, _) = mmfuzz(&["bugs"]);
    assert_eq!(code, 0);
    for name in [
        "gup-no-head-recheck",
        "gup-pin-bias-early",
        "retract-no-recheck",
        "pin-writeback-race",
    ] {
        assert!(out.contains(name), "{name}");
    }
}

#[test]
fn fuzz_writes_crash_directories_and_stats() {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("cli-fuzz");
    let _ = std::fs::remove_dir_all(&out);
    let (code, stdout, _) = mmfuzz(&[
        "fuzz",
        "--bug",
        "gup-pin-bias-early",
        "--max-execs",
        "20000",
        "--seed",
        "3",
        "--quiet",
        "--out",
        out.to_str().expect("utf8"),
    ]);
    assert_eq!(code, 1, "a finding gives exit status 1: {stdout}");
    assert!(stdout.contains("found pin-accounting@"), "{stdout}");
    let crashes: Vec<_> = std::fs::read_dir(out.join("crashes"))
        .expect("crashes dir")
        .collect();
    assert!(!crashes.is_empty());
    assert!(out.join("stats.txt").exists());
}

#[test]
fn convert_round_trips_text_and_binary() {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    let bin = dir.join("seed.mmfz");
    let txt = dir.join("seed-back.mmprog");
    assert_eq!(
        mmfuzz(&[
            "convert",
            &seed("gup-split-race.mmprog"),
            bin.to_str().expect("utf8")
        ])
        .0,
        0
    );
    assert_eq!(
        mmfuzz(&[
            "convert",
            bin.to_str().expect("utf8"),
            txt.to_str().expect("utf8")
        ])
        .0,
        0
    );
    let (code, out, _) = mmfuzz(&["run", txt.to_str().expect("utf8")]);
    assert_eq!(code, 1, "{out}");
}
