//! Race diagrams: a failing run drawn as the seed threads draw races by hand, one column per
//! CPU, one row per step, with the kernel function, the object and the value read or written.

use crate::executor::{Outcome, Verdict};
use crate::program::ProgFile;
use mm_impl::sync::{Access, EventKind, SwitchReason};
use oracles::mm_spec::MmRet;
use std::fmt::Write;

const WIDTH: usize = 58;

fn ret_text(r: &MmRet) -> String {
    match r {
        MmRet::Value(v) => format!("{v:#x}"),
        MmRet::Done => "ok".into(),
        MmRet::Handle(h) => format!("handle {}", crate::program::handle_text(*h)),
        MmRet::Fallback => "0 pages (fall back)".into(),
        MmRet::NoHandle => "no such handle".into(),
        MmRet::Split(s) => format!("{s:?}"),
        MmRet::Errno(e) => format!("-{}", crate::executor::errno_name(*e)),
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() <= WIDTH {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(WIDTH - 1).collect();
        t.push('…');
        t
    }
}

/// Draw `out` (the run of `file`). Every scheduling point is a row, numbered per CPU (`#n` is
/// what a `preempt T@n` line in the schedule refers to).
pub fn race_diagram(file: &ProgFile, out: &Outcome) -> String {
    let n = file.program.threads.len();
    let mut s = String::new();
    let _ = write!(s, "{:>5} ", "step");
    for t in 0..n {
        let _ = write!(s, "| {:<WIDTH$} ", format!("cpu{t}"));
    }
    s.push('\n');
    let _ = writeln!(s, "{}", "-".repeat(6 + n * (WIDTH + 3)));
    let mut npoint = vec![0u32; n];
    let mut sw = out.switches.iter().skip(1).peekable();
    let mut pos_in_thread = vec![0u32; n];
    let row = |s: &mut String, step: usize, t: usize, text: &str| {
        let _ = write!(s, "{step:>5} ");
        for c in 0..n {
            let cell = if c == t { clip(text) } else { String::new() };
            let _ = write!(s, "| {cell:<WIDTH$} ");
        }
        s.push('\n');
    };
    for (step, te) in out.trace.iter().enumerate() {
        let t = te.thread as usize;
        let ev = &te.ev;
        let text = match ev.kind {
            EventKind::OpBegin => {
                let op = file.program.threads[t][ev.val as usize];
                format!("▶ {op}")
            }
            EventKind::OpEnd => {
                let rec = out
                    .history
                    .iter()
                    .find(|r| r.thread as usize == t && r.index == ev.val as usize);
                let ret = rec.and_then(|r| r.response.map(|(_, r)| ret_text(&r))).unwrap_or_default();
                format!("◀ {}", ret)
            }
            EventKind::Barrier => format!("  {}: {}", ev.site.func, ev.site.what),
            EventKind::Point(acc) => {
                npoint[t] += 1;
                let obj = ev.obj.describe();
                let val = match acc {
                    Access::Relax => String::new(),
                    Access::Read => format!(" -> {:#x}", ev.val),
                    Access::Write | Access::Rmw => format!(" = {:#x}", ev.val),
                };
                let on = if obj.is_empty() { String::new() } else { format!(" {obj}") };
                format!("#{} {}: {}{on}{val}", npoint[t], ev.site.func, ev.site.what)
            }
        };
        pos_in_thread[t] += 1;
        row(&mut s, step + 1, t, &text);
        while let Some(w) = sw.peek() {
            let Some(from) = w.from else {
                sw.next();
                continue;
            };
            if from as usize != t || w.ev != pos_in_thread[t] {
                break;
            }
            let why = match w.reason {
                SwitchReason::Preempt => "preempted",
                SwitchReason::Spin => "spins: cpu_relax()",
                SwitchReason::Exit => "done",
                SwitchReason::Start => "start",
            };
            let to = w.to.map(|t| format!("cpu{t}")).unwrap_or_else(|| "nobody".into());
            let _ = writeln!(s, "{:>5}   ~~ cpu{from} {why} at point #{}, cpu {to} runs ~~", "", w.at);
            sw.next();
        }
    }
    match &out.verdict {
        Verdict::Pass => s.push_str("verdict: PASS\n"),
        Verdict::Fail { signature, violation } => {
            let _ = writeln!(s, "verdict: FAIL {signature}\n  {violation}");
        }
        Verdict::Unknown(why) => {
            let _ = writeln!(s, "verdict: UNKNOWN ({why})");
        }
        Verdict::HarnessPanic(m) => {
            let _ = writeln!(s, "verdict: HARNESS PANIC ({m})");
        }
    }
    s
}
