//! Fuzz campaigns with the baseline engines: generate programs (random, or mutated from the
//! starting corpus), give them schedules, run them, and keep one reproducer per new signature.

use crate::diagram::race_diagram;
use crate::engine::pct::Pct;
use crate::engine::random::realized_schedule;
use crate::engine::{mutate, random_program, EngineKind};
use crate::executor::{run, run_many, run_with, Outcome, RunOptions, Verdict};
use crate::format::{encode, to_text, write_atomic};
use crate::program::{Header, ProgFile, Program, Schedule};
use mm_impl::bugs::Bugs;
use mm_impl::sync::RandomWalk;
use oracles::signature::Signature;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Executions a campaign spends minimizing each new crash.
pub const MINIMIZE_BUDGET: usize = 5_000;

/// PCT schedules tried per generated program (after one unpreempted calibration run).
pub const SCHEDULES_PER_PROGRAM: usize = 8;

/// Everything a campaign needs.
#[derive(Clone, Debug)]
pub struct CampaignConfig {
    /// Schedule strategy.
    pub engine: EngineKind,
    /// Bug switches (the campaign chooses them; program headers are overridden).
    pub bugs: Bugs,
    /// Huge-page order.
    pub order: u8,
    /// Stop after this long (None: until stopped).
    pub duration: Option<Duration>,
    /// Stop after this many executions (None: no limit).
    pub max_execs: Option<u64>,
    /// Output directory (crashes under `OUT/crashes/<signature>/`).
    pub out: PathBuf,
    /// Seed of the first worker (worker i uses seed + i).
    pub seed: u64,
    /// Worker threads.
    pub jobs: usize,
    /// Starting corpus.
    pub corpus: Vec<ProgFile>,
    /// Most PCT change points per schedule.
    pub pct_changes: usize,
    /// Stop at the first new signature.
    pub stop_on_crash: bool,
}

/// Counters shared by the workers.
#[derive(Default, Debug)]
pub struct Counters {
    /// Executions.
    pub execs: AtomicU64,
    /// Failing executions (all, not only new signatures).
    pub fails: AtomicU64,
    /// Unknown verdicts.
    pub unknown: AtomicU64,
    /// Harness panics.
    pub panics: AtomicU64,
    /// Scheduling points.
    pub points: AtomicU64,
}

/// A signature seen by this campaign.
#[derive(Clone, Debug)]
pub struct Found {
    /// The signature.
    pub signature: Signature,
    /// Executions done (by all workers) when it was first seen.
    pub at_exec: u64,
    /// Where its reproducer lives.
    pub dir: PathBuf,
}

/// What a campaign reports at the end.
#[derive(Clone, Debug)]
pub struct Summary {
    /// Executions.
    pub execs: u64,
    /// Failing executions.
    pub fails: u64,
    /// Unknown verdicts.
    pub unknown: u64,
    /// Harness panics.
    pub panics: u64,
    /// Scheduling points.
    pub points: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// New signatures, in the order found.
    pub found: Vec<Found>,
}

struct Shared {
    cfg: CampaignConfig,
    counters: Counters,
    known: Mutex<BTreeSet<String>>,
    found: Mutex<Vec<Found>>,
    stop: Arc<AtomicBool>,
    start: Instant,
}

impl Shared {
    fn done(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
            || self.cfg.duration.is_some_and(|d| self.start.elapsed() >= d)
            || self
                .cfg
                .max_execs
                .is_some_and(|m| self.counters.execs.load(Ordering::Relaxed) >= m)
    }
}

/// Names of the signature directories already in `OUT/crashes` (so a restarted campaign does
/// not write a known signature again).
fn known_signatures(out: &Path) -> BTreeSet<String> {
    std::fs::read_dir(out.join("crashes"))
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                // Only complete crash directories count (a reproducer was written into it).
                .filter(|e| e.path().join("repro.mmfz").is_file())
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| !n.starts_with('.'))
                .collect()
        })
        .unwrap_or_default()
}

/// Run a campaign until its duration, its execution limit, or `stop`.
/// `progress` is called about once a second with the counters.
pub fn run_campaign(
    cfg: CampaignConfig,
    stop: Arc<AtomicBool>,
    progress: &mut dyn FnMut(&Counters, Duration, usize),
) -> std::io::Result<Summary> {
    std::fs::create_dir_all(cfg.out.join("crashes"))?;
    let shared = Arc::new(Shared {
        known: Mutex::new(known_signatures(&cfg.out)),
        cfg,
        counters: Counters::default(),
        found: Mutex::new(Vec::new()),
        stop,
        start: Instant::now(),
    });
    let mut workers = Vec::new();
    for job in 0..shared.cfg.jobs.max(1) {
        let sh = Arc::clone(&shared);
        workers.push(
            std::thread::Builder::new()
                .name(format!("mmfuzz-worker{job}"))
                .spawn(move || {
                    let r = worker(&sh, job as u64);
                    if r.is_err() {
                        // Nothing would be recorded any more: stop every worker.
                        sh.stop.store(true, Ordering::Relaxed);
                    }
                    r
                })?,
        );
    }
    while workers.iter().any(|w| !w.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        let found = shared.found.lock().map(|f| f.len()).unwrap_or(0);
        progress(&shared.counters, shared.start.elapsed(), found);
    }
    let mut err = None;
    for w in workers {
        match w.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => err = Some(e),
            Err(_) => err = Some(std::io::Error::other("a campaign worker panicked")),
        }
    }
    if let Some(e) = err {
        return Err(e);
    }
    let c = &shared.counters;
    let found = shared.found.lock().map(|f| f.clone()).unwrap_or_default();
    let summary = Summary {
        execs: c.execs.load(Ordering::Relaxed),
        fails: c.fails.load(Ordering::Relaxed),
        unknown: c.unknown.load(Ordering::Relaxed),
        panics: c.panics.load(Ordering::Relaxed),
        points: c.points.load(Ordering::Relaxed),
        elapsed: shared.start.elapsed(),
        found,
    };
    write_atomic(
        &shared.cfg.out.join("stats.txt"),
        summary_text(&shared.cfg, &summary).as_bytes(),
    )?;
    Ok(summary)
}

/// The end-of-campaign report, as printed and as written to `OUT/stats.txt`.
pub fn summary_text(cfg: &CampaignConfig, s: &Summary) -> String {
    let secs = s.elapsed.as_secs_f64().max(1e-9);
    let mut t = format!(
        "engine {} bugs {} order {} seed {} jobs {}\nexecs {} ({:.0}/s), points {} ({:.2}M/s), fails {}, unknown {}, harness panics {}, elapsed {:.1}s\n",
        cfg.engine.name(),
        cfg.bugs,
        cfg.order,
        cfg.seed,
        cfg.jobs,
        s.execs,
        s.execs as f64 / secs,
        s.points,
        s.points as f64 / secs / 1e6,
        s.fails,
        s.unknown,
        s.panics,
        secs
    );
    for f in &s.found {
        t.push_str(&format!(
            "found {} at exec {} -> {}\n",
            f.signature,
            f.at_exec,
            f.dir.display()
        ));
    }
    t
}

fn worker(sh: &Shared, job: u64) -> std::io::Result<()> {
    let seed = sh.cfg.seed.wrapping_add(job);
    let mut rng = StdRng::seed_from_u64(seed);
    let mut pct = Pct::new(seed ^ 0x5eed_f9c7, sh.cfg.pct_changes);
    let header = Header {
        bugs: sh.cfg.bugs,
        order: sh.cfg.order,
        ..Header::default()
    };
    while !sh.done() {
        let program = pick_program(sh, &mut rng);
        let mut file = ProgFile {
            header: header.clone(),
            program,
        };
        match sh.cfg.engine {
            EngineKind::Pct => {
                file.program.schedule = Schedule::default();
                let calib = run(&file);
                record(sh, &file, &calib, "pct")?;
                let batch: Vec<ProgFile> = (0..SCHEDULES_PER_PROGRAM)
                    .map(|_| {
                        let mut g = file.clone();
                        g.program.schedule = pct.schedule(&calib.points);
                        g
                    })
                    .collect();
                for (g, out) in batch.iter().zip(run_many(&batch, &RunOptions::default())) {
                    if sh.done() {
                        break;
                    }
                    record(sh, g, &out, "pct")?;
                }
            }
            EngineKind::Random => {
                let mut prio: Vec<u8> = (0..file.program.threads.len() as u8).collect();
                prio.shuffle(&mut rng);
                file.program.schedule = Schedule {
                    priorities: prio.clone(),
                    preemptions: Vec::new(),
                };
                let opts = RunOptions {
                    random: Some(RandomWalk { seed: rng.random() }),
                    ..RunOptions::default()
                };
                let out = run_with(&file, &opts);
                // The reproducer replays the walk's realized switches with no random walk.
                file.program.schedule = realized_schedule(&prio, &out);
                record(sh, &file, &out, "random")?;
            }
        }
    }
    Ok(())
}

fn pick_program(sh: &Shared, rng: &mut StdRng) -> Program {
    if !sh.cfg.corpus.is_empty() && rng.random_bool(0.5) {
        let base = &sh.cfg.corpus[rng.random_range(0..sh.cfg.corpus.len())].program;
        if rng.random_bool(0.5) {
            base.clone()
        } else {
            mutate(base, rng)
        }
    } else {
        random_program(rng)
    }
}

fn record(sh: &Shared, file: &ProgFile, out: &Outcome, engine: &str) -> std::io::Result<()> {
    let c = &sh.counters;
    let exec_no = c.execs.fetch_add(1, Ordering::Relaxed) + 1;
    c.points.fetch_add(out.total_points(), Ordering::Relaxed);
    match &out.verdict {
        Verdict::Pass => {}
        Verdict::Unknown(_) => {
            c.unknown.fetch_add(1, Ordering::Relaxed);
        }
        Verdict::Invalid(msg) => {
            // Generated programs are valid by construction: this is a harness bug too.
            c.panics.fetch_add(1, Ordering::Relaxed);
            eprintln!("mmfuzz: generated an invalid program: {msg}");
        }
        Verdict::HarnessPanic(msg) => {
            c.panics.fetch_add(1, Ordering::Relaxed);
            let dir = sh.cfg.out.join("harness-panics");
            std::fs::create_dir_all(&dir)?;
            let name = format!("panic-{exec_no}.mmprog");
            let text = to_text(file, &[format!("harness panic: {msg}")]);
            write_atomic(&dir.join(name), text.as_bytes())?;
        }
        Verdict::Fail {
            signature,
            violation,
        } => {
            c.fails.fetch_add(1, Ordering::Relaxed);
            let name = signature.dir_name();
            if sh
                .known
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .contains(&name)
            {
                return Ok(());
            }
            // A reproducer must replay to the same signature before it may claim it; one that
            // does not (nondeterminism: a harness bug) is reported and the next one is tried.
            let replays = run(file).verdict.signature() == Some(signature);
            if !replays {
                eprintln!(
                    "mmfuzz: a reproducer of {signature} did not replay (please report): not kept"
                );
                return Ok(());
            }
            if !sh
                .known
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(name.clone())
            {
                return Ok(());
            }
            let comments = vec![
                format!("signature: {signature}"),
                format!("violation: {violation}"),
                format!(
                    "found by engine {engine} at execution {exec_no}, campaign seed {}",
                    sh.cfg.seed
                ),
                "replays: yes".to_string(),
            ];
            // The reproducer people read is the minimized one; the program as found is kept.
            let original = file;
            // The replay above already established the signature: minimize from it.
            let min =
                crate::minimize::minimize_keeping(original, signature.clone(), MINIMIZE_BUDGET, 0);
            let out_min = run(&min.file);
            let (file, out) = (&min.file, &out_min);
            // Everything goes into a temporary directory renamed into place at the end, so a
            // crash directory is either complete or absent (never an empty one that would
            // hide the signature from the next campaign).
            let crashes = sh.cfg.out.join("crashes");
            let tmp = crashes.join(format!(".tmp-{name}-{}-{exec_no}", std::process::id()));
            std::fs::create_dir_all(&tmp)?;
            write_atomic(
                &tmp.join("repro.mmprog"),
                to_text(file, &comments).as_bytes(),
            )?;
            write_atomic(
                &tmp.join("original.mmprog"),
                to_text(original, &comments).as_bytes(),
            )?;
            write_atomic(&tmp.join("repro.mmfz"), &encode(file))?;
            let report = format!("{}\n\n{}", comments.join("\n"), race_diagram(file, out));
            write_atomic(&tmp.join("report.txt"), report.as_bytes())?;
            let dir = crashes.join(&name);
            if std::fs::rename(&tmp, &dir).is_err() {
                if dir.join("repro.mmfz").is_file() {
                    // Another campaign wrote a complete one meanwhile: theirs stands.
                    let _ = std::fs::remove_dir_all(&tmp);
                } else {
                    // An incomplete directory left by a killed campaign: replace it.
                    std::fs::remove_dir_all(&dir)?;
                    std::fs::rename(&tmp, &dir)?;
                }
            }
            sh.found
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(Found {
                    signature: signature.clone(),
                    at_exec: exec_no,
                    dir,
                });
            if sh.cfg.stop_on_crash {
                sh.stop.store(true, Ordering::Relaxed);
            }
        }
    }
    Ok(())
}
