//! Campaigns: a PCT campaign from a fixed seed finds 001; crash directories hold replayable
//! reproducers, written once per signature; the fixed model gives no crash.

use harness::campaign::{run_campaign, CampaignConfig};
use harness::engine::EngineKind;
use harness::format::load;
use harness::run;
use mm_impl::bugs::{Bug, Bugs};
use oracles::signature::expected_kinds;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

fn out_dir(name: &str) -> PathBuf {
    let d = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn cfg(engine: EngineKind, bugs: Bugs, out: PathBuf, max_execs: u64) -> CampaignConfig {
    CampaignConfig {
        engine,
        bugs,
        order: 3,
        duration: None,
        max_execs: Some(max_execs),
        out,
        seed: 7,
        jobs: 1,
        corpus: harness::seeds::embedded()
            .into_iter()
            .map(|(_, f)| f)
            .collect(),
        pct_changes: 3,
        stop_on_crash: false,
    }
}

/// Run a campaign to its limit with no stop flag and no progress output.
fn campaign(c: CampaignConfig) -> harness::campaign::Summary {
    run_campaign(c, Arc::new(AtomicBool::new(false)), &mut |_, _, _| {}).expect("campaign runs")
}

#[test]
fn pct_campaign_from_a_fixed_seed_finds_001() {
    let out = out_dir("campaign-pct-001");
    let bug = Bug::GupNoHeadRecheck;
    let s = campaign(cfg(
        EngineKind::Pct,
        Bugs::NONE.with(bug),
        out.clone(),
        20_000,
    ));
    let hit = s
        .found
        .iter()
        .find(|f| expected_kinds(bug).contains(&f.signature.kind))
        .unwrap_or_else(|| panic!("no 001 signature in {} execs: {:?}", s.execs, s.found));
    assert!(hit.at_exec <= 20_000);
    // The reproducer replays, with no flags, to the same signature.
    let repro = load(&hit.dir.join("repro.mmprog")).expect("text reproducer loads");
    assert_eq!(run(&repro).verdict.signature(), Some(&hit.signature));
    let bin = load(&hit.dir.join("repro.mmfz")).expect("binary reproducer loads");
    assert_eq!(bin, repro);
    assert!(std::fs::read_to_string(hit.dir.join("report.txt"))
        .expect("report")
        .contains("verdict: FAIL"));
    // Each signature once.
    let mut sigs: Vec<_> = s.found.iter().map(|f| f.signature.clone()).collect();
    sigs.dedup();
    assert_eq!(sigs.len(), s.found.len());
    assert!(out.join("stats.txt").exists());
}

#[test]
fn a_restarted_campaign_does_not_rewrite_known_signatures() {
    let out = out_dir("campaign-restart");
    let c = cfg(
        EngineKind::Pct,
        Bugs::NONE.with(Bug::GupPinBiasEarly),
        out.clone(),
        12_000,
    );
    let first = campaign(c.clone());
    assert!(
        !first.found.is_empty(),
        "pin-bias-early found in 12000 execs"
    );
    let second = campaign(c);
    for f in &second.found {
        assert!(
            !first.found.iter().any(|g| g.signature == f.signature),
            "{} written twice",
            f.signature
        );
    }
}

#[test]
fn fixed_model_campaigns_find_nothing() {
    for engine in [EngineKind::Pct, EngineKind::Random] {
        let out = out_dir(&format!("campaign-fixed-{}", engine.name()));
        let s = campaign(cfg(engine, Bugs::NONE, out, 3_000));
        assert!(s.found.is_empty(), "{}: {:?}", engine.name(), s.found);
        assert_eq!(s.panics, 0);
        assert!(s.execs >= 3_000);
    }
}

#[test]
fn an_incomplete_crash_directory_does_not_hide_its_signature() {
    let out = out_dir("campaign-incomplete");
    let c = cfg(
        EngineKind::Pct,
        Bugs::NONE.with(Bug::GupPinBiasEarly),
        out.clone(),
        12_000,
    );
    let first = campaign(c.clone());
    let dir = first.found.first().expect("found").dir.clone();
    // Simulate a campaign killed while writing: the directory exists but holds nothing.
    std::fs::remove_dir_all(&dir).expect("remove");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(dir.join("report.txt"), "half written").expect("partial file");
    let second = campaign(c);
    assert!(
        second.found.iter().any(|f| f.dir == dir),
        "the signature is found and written again"
    );
    assert!(dir.join("repro.mmfz").is_file() && dir.join("repro.mmprog").is_file());
    // No temporary directories are left behind.
    let leftovers: Vec<_> = std::fs::read_dir(out.join("crashes"))
        .expect("crashes")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    assert!(leftovers.is_empty());
}
