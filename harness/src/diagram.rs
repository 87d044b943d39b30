//! Race diagrams: a failing run drawn as the seed threads draw races by hand, one column per
//! CPU, one row per step, with the kernel function, the object and the value read or written.

use crate::executor::{Outcome, Verdict, NMI_OP_BASE};
use crate::program::ProgFile;
use mm_impl::sync::{Access, EventKind, SwitchReason};
use oracles::mm_spec::MmRet;
use std::fmt::Write;

/// Widest a column gets; longer cells are cut with an ellipsis.
const MAX_WIDTH: usize = 96;

fn ret_text(r: &MmRet) -> String {
    match r {
        MmRet::Value(v) => format!("{v:#x}"),
        MmRet::Done => "ok".into(),
        MmRet::Handle(h) => format!("handle {}", crate::program::handle_text(*h)),
        MmRet::Fallback => "0 pages (fall back)".into(),
        MmRet::NoHandle => "no such handle".into(),
        MmRet::Split(s) => format!("{s:?}"),
        MmRet::Errno(e) => format!("-{}", crate::executor::errno_name(*e)),
        MmRet::Ra(o) => format!("{o:?}"),
        MmRet::Evict(o) => format!("{o:?}"),
        MmRet::Collapse(o) => format!("{o:?}"),
        MmRet::Image(n) => format!("image of {n} pages"),
        MmRet::Release(o) => format!("{o:?}"),
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() <= MAX_WIDTH {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(MAX_WIDTH - 1).collect();
        t.push('…');
        t
    }
}

/// Draw `out` (the run of `file`). Every scheduling point is a row, numbered per CPU (`#n` is
/// what a `preempt T@n` line in the schedule refers to); switches are drawn between rows.
pub fn race_diagram(file: &ProgFile, out: &Outcome) -> String {
    let n = file.program.threads.len();
    // First pass: the rows (cpu, text) and the notes between them.
    enum Row {
        Cell(usize, String),
        Note(String),
    }
    let mut rows = Vec::with_capacity(out.trace.len() + out.switches.len());
    let mut npoint = vec![0u32; n];
    let mut pos_in_thread = vec![0u32; n];
    let mut sw = out.switches.iter().skip(1).peekable();
    for te in &out.trace {
        let t = te.thread as usize;
        let ev = &te.ev;
        let text = match ev.kind {
            EventKind::OpBegin if ev.val >= NMI_OP_BASE => {
                format!("▶ NMI {}: build_id (in NMI)", ev.val - NMI_OP_BASE)
            }
            EventKind::OpBegin => format!("▶ {}", file.program.threads[t][ev.val as usize]),
            EventKind::OpEnd => {
                let (nmi, index) = if ev.val >= NMI_OP_BASE {
                    (true, (ev.val - NMI_OP_BASE) as usize)
                } else {
                    (false, ev.val as usize)
                };
                let ret = out
                    .history
                    .iter()
                    .find(|r| r.thread as usize == t && r.index == index && r.nmi == nmi)
                    .and_then(|r| r.response.map(|(_, r)| ret_text(&r)))
                    .unwrap_or_default();
                format!("◀ {ret}")
            }
            EventKind::Barrier => format!("   {}: {}", ev.site.func, ev.site.what),
            EventKind::Plain => {
                let obj = ev.obj.describe();
                format!(
                    "   {}: {} [{obj}] := {:#x}",
                    ev.site.func, ev.site.what, ev.val
                )
            }
            EventKind::Point(acc) => {
                npoint[t] += 1;
                let obj = ev.obj.describe();
                let val = match acc {
                    Access::Relax => String::new(),
                    Access::Read => format!(" -> {:#x}", ev.val),
                    Access::Write | Access::Rmw => format!(" := {:#x}", ev.val),
                };
                let on = if obj.is_empty() {
                    String::new()
                } else {
                    format!(" [{obj}]")
                };
                format!("#{} {}: {}{on}{val}", npoint[t], ev.site.func, ev.site.what)
            }
        };
        rows.push(Row::Cell(t, clip(&text)));
        pos_in_thread[t] += 1;
        while let Some(w) = sw.peek() {
            let Some(from) = w.from else {
                sw.next();
                continue;
            };
            // A switch is drawn once its CPU has drawn every event before it; a CPU that
            // switches out again without a new event (into the refrigerator) is drawn at once.
            let f = from as usize;
            if f >= n || w.ev > pos_in_thread[f] {
                break;
            }
            let why = match w.reason {
                SwitchReason::Preempt => "preempted",
                SwitchReason::Spin => "spins in cpu_relax()",
                SwitchReason::Exit => "done",
                SwitchReason::Start => "starts",
                SwitchReason::Freeze => "freezes (refrigerator)",
                SwitchReason::Freezer => "freezes the others",
            };
            let to =
                w.to.map(|t| format!("cpu{t} runs"))
                    .unwrap_or_else(|| "all done".into());
            rows.push(Row::Note(format!(
                "~~ cpu{from} {why} at point #{}; {to} ~~",
                w.at
            )));
            sw.next();
        }
    }
    // Second pass: columns as wide as their widest cell.
    let mut width: Vec<usize> = (0..n).map(|t| format!("cpu{t}").len()).collect();
    for r in &rows {
        if let Row::Cell(t, text) = r {
            width[*t] = width[*t].max(text.chars().count());
        }
    }
    let mut s = String::new();
    let _ = write!(s, "{:>5} ", "step");
    for (t, w) in width.iter().enumerate() {
        let _ = write!(s, "| {:<w$} ", format!("cpu{t}"));
    }
    s.push('\n');
    let _ = writeln!(
        s,
        "{}",
        "-".repeat(6 + width.iter().map(|w| w + 3).sum::<usize>())
    );
    let mut step = 0;
    for r in &rows {
        match r {
            Row::Cell(t, text) => {
                step += 1;
                let _ = write!(s, "{step:>5} ");
                for (c, w) in width.iter().enumerate() {
                    let cell = if c == *t { text.as_str() } else { "" };
                    let _ = write!(s, "| {cell:<w$} ");
                }
                s.truncate(s.trim_end().len());
                s.push('\n');
            }
            Row::Note(note) => {
                let _ = writeln!(s, "{:>5}   {note}", "");
            }
        }
    }
    match &out.verdict {
        Verdict::Pass => s.push_str("verdict: PASS\n"),
        Verdict::Fail {
            signature,
            violation,
        } => {
            let _ = writeln!(s, "verdict: FAIL {signature}\n  {violation}");
        }
        Verdict::Unknown(why) => {
            let _ = writeln!(s, "verdict: UNKNOWN ({why})");
        }
        Verdict::HarnessPanic(m) => {
            let _ = writeln!(s, "verdict: HARNESS PANIC ({m})");
        }
        Verdict::Invalid(m) => {
            let _ = writeln!(s, "verdict: INVALID PROGRAM ({m})");
        }
    }
    s
}
