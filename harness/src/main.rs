//! `mmfuzz`: run, fuzz and benchmark the mm model.

use anyhow::{bail, Context, Result};
use clap::{Args, Parser, Subcommand};
use harness::bench::{executions_to_find, throughput};
use harness::campaign::{run_campaign, summary_text, CampaignConfig};
use harness::cli_util::{median, parse_duration};
use harness::diagram::race_diagram;
use harness::engine::EngineKind;
use harness::format::{encode, load, to_text, write_atomic, FormatError};
use harness::program::{ProgFile, MAX_OPS, MAX_THREADS};
use harness::{run, Verdict};
use mm_impl::bugs::{Bug, Bugs, BUGS};
use mm_impl::world::{DEFAULT_ORDER, MAX_ORDER, MIN_ORDER};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Coverage-guided concurrency fuzzing of a threaded model of Linux memory management.
#[derive(Parser)]
#[command(name = "mmfuzz", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Replay program files (.mmprog text or binary) and print their verdicts.
    ///
    /// Each file replays with its own header (bugs, order); flags override it.
    /// Exit status: 0 all pass, 1 some finding, 2 bad input, 3 undecided (unknown) only.
    Run(RunArgs),
    /// List the bug switches with their seed thread, upstream status and what they restore.
    Bugs,
    /// Run a fuzz campaign (with no arguments: the fixed model, the embedded seed corpus,
    /// output under ./mmfuzz-out, until Ctrl-C).
    Fuzz(FuzzArgs),
    /// Measure throughput or executions-to-find; see BENCHMARKS.md.
    Bench(BenchArgs),
    /// Shrink a failing program to the smallest one with the same signature.
    Minimize {
        /// The failing program.
        input: PathBuf,
        /// Where to write the result (default: INPUT with .min.mmprog).
        #[arg(short, long)]
        output: Option<PathBuf>,
        /// Most executions to spend.
        #[arg(long, default_value_t = 20_000)]
        budget: usize,
    },
    /// Convert a program between text (.mmprog) and binary (.mmfz) forms, by the output's extension.
    Convert {
        /// Input program file.
        input: PathBuf,
        /// Output file: .mmprog writes text, anything else binary.
        output: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Program files.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Bug switches to use instead of the file's (comma-separated; "none" for the fixed model).
    #[arg(long, value_name = "LIST")]
    bug: Option<String>,
    /// Huge-page order to use instead of the file's.
    #[arg(long)]
    order: Option<u8>,
    /// Print the race diagram (one column per CPU, one row per step).
    #[arg(long)]
    trace: bool,
    /// Print a digest of the whole run (for determinism checks).
    #[arg(long)]
    digest: bool,
    /// Print every op with its start and end step and its result.
    #[arg(long)]
    history: bool,
}

#[derive(Args)]
struct FuzzArgs {
    /// Schedule strategy (LibAFL and honggfuzz engines come in a later release).
    #[arg(long, value_enum, default_value = "pct")]
    engine: EngineKind,
    /// Bug switches to turn on (comma-separated). Default: the fixed model.
    #[arg(long, value_name = "LIST", default_value = "none")]
    bug: String,
    /// Huge-page order (2..=5).
    #[arg(long, default_value_t = DEFAULT_ORDER)]
    order: u8,
    /// Stop after this long (e.g. 60s, 10m, 8h). Default: until Ctrl-C.
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Stop after this many executions.
    #[arg(long)]
    max_execs: Option<u64>,
    /// Output directory.
    #[arg(long, default_value = "mmfuzz-out")]
    out: PathBuf,
    /// Campaign seed (printed; default from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Worker threads.
    #[arg(long, default_value_t = 1)]
    jobs: usize,
    /// Starting corpus directory (default: the embedded corpora/seeds programs).
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// Most PCT priority change points per schedule.
    #[arg(long, default_value_t = 3)]
    pct_changes: usize,
    /// Stop at the first new signature.
    #[arg(long)]
    stop_on_crash: bool,
    /// No live progress line.
    #[arg(long)]
    quiet: bool,
}

#[derive(Args)]
struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
}

#[derive(Subcommand)]
enum BenchWhat {
    /// Executions and scheduling points per second on random programs (fixed model, one core).
    Throughput {
        /// Repetitions (the median is reported).
        #[arg(long, default_value_t = 5, value_parser = at_least_one)]
        runs: usize,
        /// Random programs per repetition (each runs unpreempted and under one PCT schedule).
        #[arg(long, default_value_t = 5000)]
        programs: usize,
        /// Threads per program (1..=4).
        #[arg(long, default_value_t = 3, value_parser = thread_count)]
        threads: usize,
        /// Ops per thread (0..=16).
        #[arg(long, default_value_t = 6, value_parser = op_count)]
        ops: usize,
        /// Huge-page order.
        #[arg(long, default_value_t = DEFAULT_ORDER)]
        order: u8,
        /// Skip the linearizability check (to measure its cost by difference).
        #[arg(long)]
        no_check: bool,
    },
    /// The linearizability checker on the heaviest histories: random-walk runs of big programs.
    Checker {
        /// Executions.
        #[arg(long, default_value_t = 2000)]
        runs: u64,
        /// Threads per program (1..=4).
        #[arg(long, default_value_t = 4, value_parser = thread_count)]
        threads: usize,
        /// Ops per thread (0..=16).
        #[arg(long, default_value_t = 16, value_parser = op_count)]
        ops: usize,
        /// Seed.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Raw scheduling points per second of the sync facade (no model, no checker).
    Facade {
        /// Repetitions (the median is reported).
        #[arg(long, default_value_t = 5, value_parser = at_least_one)]
        runs: usize,
        /// Model CPUs (1..=16).
        #[arg(long, default_value_t = 2, value_parser = cpu_count)]
        cpus: usize,
        /// Scheduling points per CPU (at most 1,000,000,000).
        #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u32).range(2..=1_000_000_000))]
        points: u32,
        /// A preemption (CPU switch) every this many points per CPU (0: never).
        #[arg(long, default_value_t = 50)]
        every: u32,
    },
    /// Executions to find a bug from its seed program with the hand-written schedule removed.
    Find {
        /// The switch.
        #[arg(long)]
        bug: String,
        /// Engines to measure.
        #[arg(long, value_enum, value_delimiter = ',', default_value = "pct,random")]
        engine: Vec<EngineKind>,
        /// Huge-page orders.
        #[arg(long, value_delimiter = ',', default_value = "2,3,4")]
        order: Vec<u8>,
        /// Seeds per (engine, order); the median is reported.
        #[arg(long, default_value_t = 10)]
        seeds: u64,
        /// Give up after this many executions per seed.
        #[arg(long, default_value_t = 100_000)]
        max_execs: u64,
        /// Start from this program file instead of the first embedded seed that switches the
        /// bug on (its own switches stay on too).
        #[arg(long)]
        program: Option<std::path::PathBuf>,
    },
}

fn ranged(s: &str, lo: usize, hi: usize) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (lo..=hi).contains(&n) {
        Ok(n)
    } else {
        Err(format!("{n} is out of range {lo}..={hi}"))
    }
}

fn at_least_one(s: &str) -> Result<usize, String> {
    ranged(s, 1, usize::MAX)
}

fn thread_count(s: &str) -> Result<usize, String> {
    ranged(s, 1, MAX_THREADS)
}

fn op_count(s: &str) -> Result<usize, String> {
    ranged(s, 0, MAX_OPS)
}

fn cpu_count(s: &str) -> Result<usize, String> {
    ranged(s, 1, 16)
}

/// `println!` that ends the process quietly when stdout is closed (`mmfuzz run --trace | head`)
/// instead of panicking on the broken pipe.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        if let Err(e) = writeln!(std::io::stdout(), $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let r = match cli.cmd {
        None => fuzz(FuzzArgs::default_args()),
        Some(Cmd::Run(a)) => cmd_run(a),
        Some(Cmd::Bugs) => cmd_bugs(),
        Some(Cmd::Fuzz(a)) => fuzz(a),
        Some(Cmd::Bench(a)) => bench(a),
        Some(Cmd::Convert { input, output }) => convert(&input, &output),
        Some(Cmd::Minimize {
            input,
            output,
            budget,
        }) => cmd_minimize(&input, output, budget),
    };
    match r {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mmfuzz: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

impl FuzzArgs {
    fn default_args() -> FuzzArgs {
        FuzzArgs {
            engine: EngineKind::Pct,
            bug: "none".into(),
            order: DEFAULT_ORDER,
            duration: None,
            max_execs: None,
            out: PathBuf::from("mmfuzz-out"),
            seed: None,
            jobs: 1,
            corpus: None,
            pct_changes: 3,
            stop_on_crash: false,
            quiet: false,
        }
    }
}

fn check_order(o: u8) -> Result<u8> {
    if !(MIN_ORDER..=MAX_ORDER).contains(&o) {
        bail!("--order {o} is out of range {MIN_ORDER}..={MAX_ORDER}");
    }
    Ok(o)
}

fn parse_bugs(s: &str) -> Result<Bugs> {
    Bugs::parse(s).map_err(|e| anyhow::anyhow!("--bug: {e}"))
}

fn cmd_run(a: RunArgs) -> Result<ExitCode> {
    let bugs = a.bug.as_deref().map(parse_bugs).transpose()?;
    let order = a.order.map(check_order).transpose()?;
    let (mut fails, mut unknown, mut bad) = (0, 0, 0);
    for path in &a.files {
        let mut f = match load(path) {
            Ok(f) => f,
            Err(e) => {
                eprintln!("mmfuzz: {e}");
                bad += 1;
                continue;
            }
        };
        if let Some(b) = bugs {
            f.header.bugs = b;
        }
        if let Some(o) = order {
            f.header.order = o;
        }
        let out = run(&f);
        if a.trace {
            outln!("{}", race_diagram(&f, &out));
        }
        if a.history {
            for r in &out.history {
                let end = match r.response {
                    Some((p, ret)) => format!("{p:>5}  {ret:?}"),
                    None => "    -  (did not return)".into(),
                };
                let who = if r.nmi {
                    format!("nmi{:<2}", r.index)
                } else {
                    format!("op{:<2} ", r.index)
                };
                outln!(
                    "  cpu{} {who} {:<28} steps {:>5} .. {end}",
                    r.thread,
                    r.op.to_string(),
                    r.invoke
                );
            }
        }
        let what = match &out.verdict {
            Verdict::Pass => "PASS".to_string(),
            Verdict::Fail {
                signature,
                violation,
            } => {
                fails += 1;
                format!("FAIL {signature}\n  {violation}")
            }
            Verdict::Unknown(w) => {
                unknown += 1;
                format!("UNKNOWN ({w})")
            }
            Verdict::HarnessPanic(m) => {
                fails += 1;
                format!("HARNESS PANIC (a bug in mmfuzz): {m}")
            }
            Verdict::Invalid(m) => {
                bad += 1;
                format!("INVALID (not run): {m}")
            }
        };
        outln!(
            "{}: {what}  [bugs {}, order {}, {} points, {} switches]",
            path.display(),
            f.header.bugs,
            f.header.order,
            out.total_points(),
            out.switches.len().saturating_sub(1)
        );
        if a.digest {
            outln!("digest {:016x}", out.digest());
        }
    }
    Ok(ExitCode::from(if bad > 0 {
        2
    } else if fails > 0 {
        1
    } else if unknown > 0 {
        3
    } else {
        0
    }))
}

fn cmd_bugs() -> Result<ExitCode> {
    outln!(
        "{:<26} {:<26} {:<28} {:<9} restores",
        "switch",
        "seed",
        "upstream",
        "modelled"
    );
    for b in BUGS.iter() {
        outln!(
            "{:<26} {:<26} {:<28} {:<9} {}",
            b.name,
            b.seed,
            b.status,
            if b.modelled { "yes" } else { "not yet" },
            b.restores
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn load_corpus(dir: &Path) -> Result<Vec<ProgFile>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading corpus directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    let mut out = Vec::new();
    for p in files {
        match load(&p) {
            Ok(f) => out.push(f),
            // A bad corpus file never stops a campaign: say which and go on.
            Err(e) => eprintln!("mmfuzz: skipping corpus file: {e}"),
        }
    }
    Ok(out)
}

fn fuzz(a: FuzzArgs) -> Result<ExitCode> {
    let bugs = parse_bugs(&a.bug)?;
    let order = check_order(a.order)?;
    if a.jobs == 0 {
        bail!("--jobs must be at least 1");
    }
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0)
    });
    let corpus = match &a.corpus {
        Some(dir) => load_corpus(dir)?,
        None => harness::seeds::embedded()
            .into_iter()
            .map(|(_, f)| f)
            .collect(),
    };
    let cfg = CampaignConfig {
        engine: a.engine,
        bugs,
        order,
        duration: a.duration,
        max_execs: a.max_execs,
        out: a.out.clone(),
        seed,
        jobs: a.jobs,
        corpus,
        pct_changes: a.pct_changes,
        stop_on_crash: a.stop_on_crash,
    };
    eprintln!(
        "mmfuzz fuzz: engine {} bugs {} order {} seed {} jobs {} corpus {} programs, output {}{}",
        cfg.engine.name(),
        cfg.bugs,
        cfg.order,
        cfg.seed,
        cfg.jobs,
        cfg.corpus.len(),
        cfg.out.display(),
        match (cfg.duration, cfg.max_execs) {
            (Some(d), _) => format!(", for {}s", d.as_secs()),
            (None, Some(n)) => format!(", for {n} executions"),
            (None, None) => ", until Ctrl-C".into(),
        }
    );
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = Arc::clone(&stop);
        ctrlc::set_handler(move || stop.store(true, Ordering::Relaxed))
            .context("installing the Ctrl-C handler")?;
    }
    let tty = std::io::stderr().is_terminal();
    let mut last = Duration::ZERO;
    let quiet = a.quiet;
    let mut progress = |c: &harness::campaign::Counters, el: Duration, found: usize| {
        let every = if tty {
            Duration::from_secs(1)
        } else {
            Duration::from_secs(10)
        };
        if quiet || el < last + every {
            return;
        }
        last = el;
        let execs = c.execs.load(Ordering::Relaxed);
        let line = format!(
            "[{:>6.0}s] execs {execs} ({:.0}/s)  points {:.1}M  crashes {found} signatures, {} failing runs  unknown {}",
            el.as_secs_f64(),
            execs as f64 / el.as_secs_f64().max(1e-9),
            c.points.load(Ordering::Relaxed) as f64 / 1e6,
            c.fails.load(Ordering::Relaxed),
            c.unknown.load(Ordering::Relaxed),
        );
        if tty {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
    };
    let summary = run_campaign(cfg.clone(), stop, &mut progress)
        .with_context(|| format!("campaign output under {}", cfg.out.display()))?;
    if tty && !quiet {
        eprintln!();
    }
    print!("{}", summary_text(&cfg, &summary));
    Ok(if summary.found.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn bench(a: BenchArgs) -> Result<ExitCode> {
    match a.what {
        BenchWhat::Throughput {
            runs,
            programs,
            threads,
            ops,
            order,
            no_check,
        } => {
            check_order(order)?;
            let mut eps = Vec::new();
            let mut pps = Vec::new();
            let mut ppe = Vec::new();
            let mut share = Vec::new();
            for r in 0..runs {
                let t = throughput(r as u64, programs, threads, ops, order, no_check);
                outln!(
                    "run {r}: {} execs in {:.2}s: {:.0} exec/s, {:.2}M points/s, {:.0} points/exec, checker {:.1}% of the time, {} unknown, {} fails",
                    t.execs,
                    t.secs,
                    t.execs_per_sec(),
                    t.points_per_sec() / 1e6,
                    t.points_per_exec(),
                    100.0 * t.check_secs / t.secs,
                    t.unknown,
                    t.fails
                );
                share.push(100.0 * t.check_secs / t.secs);
                eps.push(t.execs_per_sec());
                pps.push(t.points_per_sec());
                ppe.push(t.points_per_exec());
            }
            outln!(
                "median of {runs}: {:.0} exec/s, {:.2}M points/s, {:.0} points/exec, checker {:.1}% of the time ({threads} threads x {ops} ops, order {order})",
                median(&eps).unwrap_or(0.0),
                median(&pps).unwrap_or(0.0) / 1e6,
                median(&ppe).unwrap_or(0.0),
                median(&share).unwrap_or(0.0)
            );
        }
        BenchWhat::Checker {
            runs,
            threads,
            ops,
            seed,
        } => {
            let c = harness::bench::checker_stress(seed, runs, threads, ops);
            let pct = |p: usize| {
                let i = (c.micros.len() * p / 100).min(c.micros.len().saturating_sub(1));
                c.micros.get(i).copied().unwrap_or(0)
            };
            outln!(
                "{} random-walk runs of {threads} x {ops} programs: {} Unknown ({:.2}%); largest decided history {} entries; check time median {} us, p99 {} us, max {} us",
                c.runs,
                c.unknown,
                100.0 * c.unknown as f64 / c.runs.max(1) as f64,
                c.largest_decided,
                pct(50),
                pct(99),
                c.micros.last().copied().unwrap_or(0)
            );
        }
        BenchWhat::Facade {
            runs,
            cpus,
            points,
            every,
        } => {
            let mut pps = Vec::new();
            for r in 0..runs {
                let t = harness::bench::facade(cpus, points, every);
                outln!(
                    "run {r}: {} points in {:.3}s: {:.2}M points/s",
                    t.points,
                    t.secs,
                    t.points_per_sec() / 1e6
                );
                pps.push(t.points_per_sec());
            }
            outln!(
                "median of {runs}: {:.2}M points/s ({cpus} CPUs, a switch every {every} points)",
                median(&pps).unwrap_or(0.0) / 1e6
            );
        }
        BenchWhat::Find {
            bug,
            engine,
            order,
            seeds,
            max_execs,
            program,
        } => {
            let b = Bug::from_name(&bug).with_context(|| format!("unknown bug switch '{bug}'"))?;
            let seed_file = match program {
                Some(path) => harness::format::load(&path)?,
                None => harness::seeds::embedded()
                    .into_iter()
                    .map(|(_, f)| f)
                    .find(|f| f.header.bugs.has(b))
                    .with_context(|| format!("no seed program for {bug}"))?,
            };
            for e in &engine {
                for &o in &order {
                    check_order(o)?;
                    let mut found = Vec::new();
                    for s in 0..seeds {
                        if let Some(n) = executions_to_find(&seed_file, b, *e, o, s, max_execs) {
                            found.push(n as f64);
                        }
                    }
                    let med = if found.len() as u64 * 2 > seeds {
                        // More than half found: the median is a number of executions.
                        let mut all = found.clone();
                        all.resize(seeds as usize, f64::INFINITY);
                        format!("{:.0}", median(&all).unwrap_or(f64::INFINITY))
                    } else {
                        format!("> {max_execs}")
                    };
                    outln!(
                        "{bug} engine {} order {o}: found by {}/{seeds} seeds within {max_execs} execs; median executions {med}; per seed {:?}",
                        e.name(),
                        found.len(),
                        found.iter().map(|&x| x as u64).collect::<Vec<_>>()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_minimize(input: &Path, output: Option<PathBuf>, budget: usize) -> Result<ExitCode> {
    let f = load(input).map_err(|e: FormatError| anyhow::anyhow!("{e}"))?;
    let Some(m) = harness::minimize::minimize(&f, budget) else {
        bail!(
            "{} does not fail, so there is nothing to minimize (mmfuzz run shows its verdict)",
            input.display()
        );
    };
    let out = output.unwrap_or_else(|| input.with_extension("min.mmprog"));
    let comments = vec![
        format!("signature: {}", m.signature),
        format!("minimized from {} ({} executions)", input.display(), m.runs),
    ];
    write_atomic(&out, to_text(&m.file, &comments).as_bytes())
        .with_context(|| format!("writing {}", out.display()))?;
    outln!(
        "{}: {} ops, {} preemptions, {} faults -> {}: {} ops, {} preemptions, {} faults; signature {} kept ({} executions)",
        input.display(),
        f.program.nops(),
        f.program.schedule.preemptions.len(),
        f.program.faults.len(),
        out.display(),
        m.file.program.nops(),
        m.file.program.schedule.preemptions.len(),
        m.file.program.faults.len(),
        m.signature,
        m.runs
    );
    Ok(ExitCode::SUCCESS)
}

fn convert(input: &Path, output: &Path) -> Result<ExitCode> {
    let f = load(input).map_err(|e: FormatError| anyhow::anyhow!("{e}"))?;
    let text = output.extension().is_some_and(|e| e == "mmprog");
    let bytes = if text {
        to_text(&f, &[]).into_bytes()
    } else {
        encode(&f)
    };
    write_atomic(output, &bytes).with_context(|| format!("writing {}", output.display()))?;
    Ok(ExitCode::SUCCESS)
}
