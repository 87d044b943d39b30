//! The text form (`.mmprog`), for people. Canonical form:
//!
//! ```text
//! # mmfuzz program
//! # bugs: gup-no-head-recheck
//! # order: 3
//! # world: 4
//! thread 0:
//!   gup_fast anon:3 get
//!   put 0.0
//! thread 1:
//!   split anon:0
//! schedule:
//!   priorities 0 1
//!   preempt 0@5 -> 1
//!   preempt 1@7
//! faults:
//!   fail 0#2
//! nmis:
//!   nmi 1@12
//! ```
//!
//! * `#` at the start of a line or after whitespace starts a comment (so `fail 0#2` is not
//!   one). Blank lines are ignored and indentation is free.
//! * Comments of the form `# bugs: ...`, `# order: N` and `# world: N` before the first
//!   `thread` line are the header; missing keys take their defaults ([`Header::default`]).
//!   Any other comment is free text.
//! * `thread N:` sections come in order 0, 1, 2, ..., then an optional `schedule:` section
//!   (`priorities T T ...` at most once, `preempt T@N` or `preempt T@N -> U`), then an
//!   optional `faults:` section (`fail T#N`), then an optional `nmis:` section (`nmi T@N`).
//! * Ops: `read A`, `write A V`, `gup_fast A get|pin [write]`, `gup A get|pin [write]`,
//!   `put H`, `read_pinned H`, `write_pinned H V`, `split A`, `zap A LEN`, `vmalloc N`,
//!   `vfree H`, `vwrite H V`, `set_memory_np`, `hibernate`, `pin_longterm A [write]`,
//!   `unpin_dirty H`, `writeback`, `release_buffers D` (`D` is `data:<page>`), `vhost_map A`,
//!   `vhost_write H V`, `vhost_unmap H`, and on the text file
//!   `readahead F`, `evict F`, `collapse F`, `split_file F`, `seek_data F`, `seek_hole F`,
//!   `mincore F`, `build_id`, where an address `A` is `<vma>:<page>` (`anon:3`), a file page
//!   `F` is `text:<page>`, a handle `H` is `<thread>.<index>` (`0.1`), and numbers are
//!   decimal or `0x` hex (values print as lowercase hex).

use super::{check_order, check_world, FormatError, Location};
use crate::program::{Addr, DataPage, Fault, FilePage, Handle, Header, Nmi, Op, ProgFile, Program};
use mm_impl::bugs::Bugs;
use mm_impl::mm_types::VmaKind;
use mm_impl::sync::Preemption;
use std::fmt::{self, Write};

/// The free comment that opens every printed program.
const TITLE: &str = "mmfuzz program";
/// The keys of the header comments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum HeaderKey {
    /// `# bugs: a,b` (or `none`).
    Bugs,
    /// `# order: N`.
    Order,
    /// `# world: N`.
    World,
}

impl HeaderKey {
    /// Every key, in printing order.
    const ALL: [HeaderKey; 3] = [HeaderKey::Bugs, HeaderKey::Order, HeaderKey::World];

    /// The key in text.
    fn name(self) -> &'static str {
        match self {
            HeaderKey::Bugs => "bugs",
            HeaderKey::Order => "order",
            HeaderKey::World => "world",
        }
    }
}
/// Every op with its argument shape, for error messages.
const OP_USAGE: [(&str, &str); 34] = [
    ("read", "read <vma>:<page>"),
    ("write", "write <vma>:<page> <value>"),
    ("gup_fast", "gup_fast <vma>:<page> get|pin [write]"),
    ("gup", "gup <vma>:<page> get|pin [write]"),
    ("put", "put <thread>.<index>"),
    ("read_pinned", "read_pinned <thread>.<index>"),
    ("write_pinned", "write_pinned <thread>.<index> <value>"),
    ("split", "split <vma>:<page>"),
    ("zap", "zap <vma>:<page> <pages>"),
    ("readahead", "readahead text:<page>"),
    ("evict", "evict text:<page>"),
    ("collapse", "collapse text:<page>"),
    ("split_file", "split_file text:<page>"),
    ("seek_data", "seek_data text:<page>"),
    ("seek_hole", "seek_hole text:<page>"),
    ("mincore", "mincore text:<page>"),
    ("build_id", "build_id"),
    ("vmalloc", "vmalloc <pages>"),
    ("vfree", "vfree <thread>.<index>"),
    ("vwrite", "vwrite <thread>.<index> <value>"),
    ("set_memory_np", "set_memory_np"),
    ("hibernate", "hibernate"),
    ("pin_longterm", "pin_longterm <vma>:<page> [write]"),
    ("unpin_dirty", "unpin_dirty <thread>.<index>"),
    ("writeback", "writeback"),
    ("release_buffers", "release_buffers data:<page>"),
    ("uffd_copy", "uffd_copy <vma>:<page> <value>"),
    ("collapse_shmem", "collapse_shmem <page>"),
    ("iommu_read", "iommu_read <vma>:<page>"),
    ("iommu_write", "iommu_write <vma>:<page> <value>"),
    ("vhost_map", "vhost_map <vma>:<page>"),
    ("vhost_write", "vhost_write <thread>.<index> <value>"),
    ("vhost_unmap", "vhost_unmap <thread>.<index>"),
    ("collapse_pte_mapped", "collapse_pte_mapped <vma>:<page>"),
];

/// Append one line to `out`.
fn push_line(out: &mut String, args: fmt::Arguments<'_>) {
    // Writing into a String cannot fail.
    let _ = out.write_fmt(args);
    out.push('\n');
}

/// An address as text: `anon:3`.
fn addr_text(a: Addr) -> String {
    format!("{}:{}", a.vma.name(), a.page)
}

/// A handle as text: `0.1`.
fn handle_text(h: Handle) -> String {
    format!("{}.{}", h.thread, h.index)
}

/// One op as a line of program text (without indentation), e.g. `gup_fast anon:3 pin write`.
pub fn op_to_text(op: &Op) -> String {
    let name = op.name();
    match *op {
        Op::Touch { at, write: None } => format!("{name} {}", addr_text(at)),
        Op::Touch { at, write: Some(v) } => format!("{name} {} {v:#x}", addr_text(at)),
        Op::GupFast { at, pin, write } | Op::Gup { at, pin, write } => format!(
            "{name} {} {}{}",
            addr_text(at),
            if pin { "pin" } else { "get" },
            if write { " write" } else { "" }
        ),
        Op::Put { h } | Op::ReadPinned { h } => format!("{name} {}", handle_text(h)),
        Op::WritePinned { h, val } => format!("{name} {} {val:#x}", handle_text(h)),
        Op::Split { at } => format!("{name} {}", addr_text(at)),
        Op::Zap { at, len } => format!("{name} {} {len}", addr_text(at)),
        Op::Readahead { at }
        | Op::Evict { at }
        | Op::Collapse { at }
        | Op::SplitFile { at }
        | Op::SeekData { at }
        | Op::SeekHole { at }
        | Op::Mincore { at } => format!("{name} {at}"),
        Op::BuildId => name.to_string(),
        Op::Vmalloc { pages } => format!("{name} {pages}"),
        Op::Vfree { h } => format!("{name} {}", handle_text(h)),
        Op::Vwrite { h, val } => format!("{name} {} {val:#x}", handle_text(h)),
        Op::SetMemoryNp | Op::Hibernate | Op::Writeback => name.to_string(),
        Op::PinLongterm { at, write } => format!(
            "{name} {}{}",
            addr_text(at),
            if write { " write" } else { "" }
        ),
        Op::UnpinDirty { h } => format!("{name} {}", handle_text(h)),
        Op::ReleaseBuffers { at } => format!("{name} {at}"),
        Op::UffdCopy { at, val } | Op::IommuWrite { at, val } => {
            format!("{name} {} {val:#x}", addr_text(at))
        }
        Op::CollapseShmem { page } => format!("{name} {page}"),
        Op::IommuRead { at } | Op::VhostMap { at } | Op::CollapsePteMapped { at } => {
            format!("{name} {}", addr_text(at))
        }
        Op::VhostWrite { h, val } => format!("{name} {} {val:#x}", handle_text(h)),
        Op::VhostUnmap { h } => format!("{name} {}", handle_text(h)),
    }
}

/// The canonical text form of a program file. `comments` are extra free comment lines (without
/// the leading `# `, e.g. `seed: 001_152161d19b4eb998.txt`) printed right after the header;
/// a comment holding newlines becomes several lines, and one that would read as a header key
/// (`order: 5`) is printed in parentheses so that it cannot change the header.
pub fn to_text(f: &ProgFile, comments: &[String]) -> String {
    let mut out = String::new();
    let h = &f.header;
    push_line(&mut out, format_args!("# {TITLE}"));
    push_line(&mut out, format_args!("# bugs: {}", h.bugs));
    push_line(&mut out, format_args!("# order: {}", h.order));
    push_line(&mut out, format_args!("# world: {}", h.world));
    for piece in comments.iter().flat_map(|c| c.split('\n')) {
        let piece = piece.trim_end_matches('\r');
        if piece.is_empty() {
            push_line(&mut out, format_args!("#"));
        } else if header_entry(piece).is_some() {
            push_line(&mut out, format_args!("# ({piece})"));
        } else {
            push_line(&mut out, format_args!("# {piece}"));
        }
    }
    let p = &f.program;
    for (t, ops) in p.threads.iter().enumerate() {
        push_line(&mut out, format_args!("thread {t}:"));
        for op in ops {
            push_line(&mut out, format_args!("  {}", op_to_text(op)));
        }
    }
    let s = &p.schedule;
    if !s.priorities.is_empty() || !s.preemptions.is_empty() {
        push_line(&mut out, format_args!("schedule:"));
        if !s.priorities.is_empty() {
            let list: Vec<String> = s.priorities.iter().map(u8::to_string).collect();
            push_line(&mut out, format_args!("  priorities {}", list.join(" ")));
        }
        for pr in &s.preemptions {
            match pr.to {
                Some(to) => push_line(
                    &mut out,
                    format_args!("  preempt {}@{} -> {to}", pr.thread, pr.at),
                ),
                None => push_line(&mut out, format_args!("  preempt {}@{}", pr.thread, pr.at)),
            }
        }
    }
    if !p.faults.is_empty() {
        push_line(&mut out, format_args!("faults:"));
        for f in &p.faults {
            push_line(&mut out, format_args!("  fail {}#{}", f.thread, f.nth));
        }
    }
    if !p.nmis.is_empty() {
        push_line(&mut out, format_args!("nmis:"));
        for n in &p.nmis {
            push_line(&mut out, format_args!("  nmi {}@{}", n.thread, n.at));
        }
    }
    out
}

/// The part of a line before its comment: `#` starts a comment at the start of the line or
/// after whitespace.
fn strip_comment(line: &str) -> &str {
    let mut after_space = true;
    for (i, c) in line.char_indices() {
        if c == '#' && after_space {
            return &line[..i];
        }
        after_space = c.is_whitespace();
    }
    line
}

/// If the body of a comment (after `#`) is a header entry `key: value`, the key and the raw
/// value.
fn header_entry(body: &str) -> Option<(HeaderKey, &str)> {
    let (key, value) = body.split_once(':')?;
    let key = key.trim();
    HeaderKey::ALL
        .into_iter()
        .find(|k| k.name() == key)
        .map(|k| (k, value))
}

/// A decimal or `0x`-hex number that fits in `T` (at most `max`).
fn num<T: TryFrom<u64> + fmt::Display>(tok: &str, what: &str, max: T) -> Result<T, String> {
    let (digits, radix) = match tok.strip_prefix("0x").or_else(|| tok.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (tok, 10),
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return Err(format!(
            "bad {what} '{tok}': expected a decimal or 0x-hex number"
        ));
    }
    u64::from_str_radix(digits, radix)
        .ok()
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| format!("{what} '{tok}' is too large (at most {max})"))
}

/// An address `<vma>:<page>`.
fn parse_addr(tok: &str) -> Result<Addr, String> {
    let Some((vma, page)) = tok.split_once(':') else {
        return Err(format!(
            "bad address '{tok}': expected <vma>:<page>, such as anon:3"
        ));
    };
    let Some(vma) = VmaKind::from_name(vma) else {
        let known: Vec<&str> = VmaKind::ALL.iter().map(|k| k.name()).collect();
        return Err(format!(
            "bad address '{tok}': unknown VMA '{vma}' (known: {})",
            known.join(", ")
        ));
    };
    let page = num(page, "page", u8::MAX).map_err(|e| format!("bad address '{tok}': {e}"))?;
    Ok(Addr { vma, page })
}

/// A file page `text:<page>`.
fn parse_file_page(tok: &str) -> Result<FilePage, String> {
    match tok.split_once(':') {
        Some(("text", page)) => Ok(FilePage(
            num(page, "page", u8::MAX).map_err(|e| format!("bad file page '{tok}': {e}"))?,
        )),
        _ => Err(format!(
            "bad file page '{tok}': expected text:<page>, such as text:0"
        )),
    }
}

/// A data-file page `data:<page>`.
fn parse_data_page(tok: &str) -> Result<DataPage, String> {
    match tok.split_once(':') {
        Some(("data", page)) => Ok(DataPage(
            num(page, "page", u8::MAX).map_err(|e| format!("bad data page '{tok}': {e}"))?,
        )),
        _ => Err(format!(
            "bad data page '{tok}': expected data:<page>, such as data:0"
        )),
    }
}

/// A handle `<thread>.<index>`.
fn parse_handle(tok: &str) -> Result<Handle, String> {
    let Some((thread, index)) = tok.split_once('.') else {
        return Err(format!(
            "bad handle '{tok}': expected <thread>.<index>, such as 0.1"
        ));
    };
    let bad = |e: String| format!("bad handle '{tok}': {e}");
    Ok(Handle {
        thread: num(thread, "thread", u8::MAX).map_err(bad)?,
        index: num(index, "index", u8::MAX).map_err(bad)?,
    })
}

/// The `get|pin [write]` flags of a GUP op.
fn parse_gup_flags(name: &str, flags: &[&str]) -> Result<(bool, bool), String> {
    let pin = match flags.first() {
        Some(&"get") => false,
        Some(&"pin") => true,
        Some(other) => {
            return Err(format!(
                "'{name}' takes 'get' or 'pin' after the address, found '{other}'"
            ))
        }
        None => return Err(format!("'{name}' needs 'get' or 'pin' after the address")),
    };
    match flags.get(1..).unwrap_or_default() {
        [] => Ok((pin, false)),
        ["write"] => Ok((pin, true)),
        [other, ..] => Err(format!(
            "'{name}' takes only 'write' after '{}', found '{other}'",
            if pin { "pin" } else { "get" }
        )),
    }
}

/// One op line, split into words.
fn parse_op(words: &[&str]) -> Result<Op, String> {
    let Some((&name, args)) = words.split_first() else {
        return Err("empty op line".to_string());
    };
    let Some(&(_, usage)) = OP_USAGE.iter().find(|(n, _)| *n == name) else {
        let known: Vec<&str> = OP_USAGE.iter().map(|(n, _)| *n).collect();
        return Err(format!("unknown op '{name}' (known: {})", known.join(", ")));
    };
    let arity = || format!("expected '{usage}', found '{}'", words.join(" "));
    let op = match (name, args) {
        ("read", [a]) => Op::Touch {
            at: parse_addr(a)?,
            write: None,
        },
        ("write", [a, v]) => Op::Touch {
            at: parse_addr(a)?,
            write: Some(num(v, "value", u16::MAX)?),
        },
        ("gup_fast" | "gup", [a, flags @ ..]) if (1..=2).contains(&flags.len()) => {
            let at = parse_addr(a)?;
            let (pin, write) = parse_gup_flags(name, flags)?;
            if name == "gup" {
                Op::Gup { at, pin, write }
            } else {
                Op::GupFast { at, pin, write }
            }
        }
        ("put", [h]) => Op::Put {
            h: parse_handle(h)?,
        },
        ("read_pinned", [h]) => Op::ReadPinned {
            h: parse_handle(h)?,
        },
        ("write_pinned", [h, v]) => Op::WritePinned {
            h: parse_handle(h)?,
            val: num(v, "value", u16::MAX)?,
        },
        ("split", [a]) => Op::Split { at: parse_addr(a)? },
        ("zap", [a, len]) => Op::Zap {
            at: parse_addr(a)?,
            len: num(len, "length", u8::MAX)?,
        },
        ("readahead", [f]) => Op::Readahead {
            at: parse_file_page(f)?,
        },
        ("evict", [f]) => Op::Evict {
            at: parse_file_page(f)?,
        },
        ("collapse", [f]) => Op::Collapse {
            at: parse_file_page(f)?,
        },
        ("split_file", [f]) => Op::SplitFile {
            at: parse_file_page(f)?,
        },
        ("seek_data", [f]) => Op::SeekData {
            at: parse_file_page(f)?,
        },
        ("seek_hole", [f]) => Op::SeekHole {
            at: parse_file_page(f)?,
        },
        ("mincore", [f]) => Op::Mincore {
            at: parse_file_page(f)?,
        },
        ("build_id", []) => Op::BuildId,
        ("vmalloc", [n]) => Op::Vmalloc {
            pages: num(n, "pages", u8::MAX)?,
        },
        ("vfree", [h]) => Op::Vfree {
            h: parse_handle(h)?,
        },
        ("vwrite", [h, v]) => Op::Vwrite {
            h: parse_handle(h)?,
            val: num(v, "value", u16::MAX)?,
        },
        ("set_memory_np", []) => Op::SetMemoryNp,
        ("hibernate", []) => Op::Hibernate,
        ("pin_longterm", [a]) => Op::PinLongterm {
            at: parse_addr(a)?,
            write: false,
        },
        ("pin_longterm", [a, w]) => {
            if *w != "write" {
                return Err(format!(
                    "'pin_longterm' takes only 'write' after the address, found '{w}'"
                ));
            }
            Op::PinLongterm {
                at: parse_addr(a)?,
                write: true,
            }
        }
        ("unpin_dirty", [h]) => Op::UnpinDirty {
            h: parse_handle(h)?,
        },
        ("writeback", []) => Op::Writeback,
        ("release_buffers", [p]) => Op::ReleaseBuffers {
            at: parse_data_page(p)?,
        },
        ("uffd_copy", [a, v]) => Op::UffdCopy {
            at: parse_addr(a)?,
            val: num(v, "value", u16::MAX)?,
        },
        ("collapse_shmem", [n]) => Op::CollapseShmem {
            page: num(n, "page", u8::MAX)?,
        },
        ("iommu_read", [a]) => Op::IommuRead { at: parse_addr(a)? },
        ("vhost_map", [a]) => Op::VhostMap { at: parse_addr(a)? },
        ("vhost_write", [h, v]) => Op::VhostWrite {
            h: parse_handle(h)?,
            val: num(v, "value", u16::MAX)?,
        },
        ("vhost_unmap", [h]) => Op::VhostUnmap {
            h: parse_handle(h)?,
        },
        ("iommu_write", [a, v]) => Op::IommuWrite {
            at: parse_addr(a)?,
            val: num(v, "value", u16::MAX)?,
        },
        ("collapse_pte_mapped", [a]) => Op::CollapsePteMapped { at: parse_addr(a)? },
        _ => return Err(arity()),
    };
    Ok(op)
}

/// The argument of a `preempt` line: `T@N` or `T@N -> U` (spaces free).
fn parse_preempt(args: &[&str]) -> Result<Preemption, String> {
    let spec = args.join(" ");
    let bad = |e: &str| {
        format!("bad preemption '{spec}': {e}expected 'preempt <thread>@<point>' or 'preempt <thread>@<point> -> <thread>'")
    };
    let compact = args.concat();
    let (lhs, to) = match compact.split_once("->") {
        Some((lhs, to)) => (lhs, Some(to)),
        None => (compact.as_str(), None),
    };
    let Some((thread, at)) = lhs.split_once('@') else {
        return Err(bad(""));
    };
    let thread = num(thread, "thread", u8::MAX).map_err(|e| bad(&format!("{e}; ")))?;
    let at = num(at, "scheduling point", u32::MAX).map_err(|e| bad(&format!("{e}; ")))?;
    let to = match to {
        Some(to) => Some(num(to, "thread", u8::MAX).map_err(|e| bad(&format!("{e}; ")))?),
        None => None,
    };
    Ok(Preemption { thread, at, to })
}

/// A `fail T#N` line, split into words.
fn parse_fault(words: &[&str]) -> Result<Fault, String> {
    let usage = || {
        format!(
            "expected 'fail <thread>#<allocation>', found '{}'",
            words.join(" ")
        )
    };
    let (thread, nth) = match words {
        ["fail", spec] => spec.split_once('#').ok_or_else(usage)?,
        _ => return Err(usage()),
    };
    Ok(Fault {
        thread: num(thread, "thread", u8::MAX)?,
        nth: num(nth, "allocation number", u32::MAX)?,
    })
}

/// A `nmi T@N` line, split into words.
fn parse_nmi(words: &[&str]) -> Result<Nmi, String> {
    let usage = || {
        format!(
            "expected 'nmi <thread>@<point>', found '{}'",
            words.join(" ")
        )
    };
    let (thread, at) = match words {
        ["nmi", spec] => spec.split_once('@').ok_or_else(usage)?,
        _ => return Err(usage()),
    };
    Ok(Nmi {
        thread: num(thread, "thread", u8::MAX)?,
        at: num(at, "scheduling point", u32::MAX)?,
    })
}

/// The sections of a program text, in the order they must come.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
enum Section {
    /// Before the first `thread` line: header and free comments.
    #[default]
    Preamble,
    /// Inside a `thread N:` section.
    Thread,
    /// Inside `schedule:`.
    Schedule,
    /// Inside `faults:`.
    Faults,
    /// Inside `nmis:`.
    Nmis,
}

impl Section {
    /// The section's name in text.
    fn name(self) -> &'static str {
        match self {
            Section::Preamble => "header",
            Section::Thread => "thread",
            Section::Schedule => "schedule",
            Section::Faults => "faults",
            Section::Nmis => "nmis",
        }
    }
}

/// Line-by-line parser state.
#[derive(Default)]
struct Parser {
    /// Where we are.
    section: Section,
    /// The header read so far (defaults for missing keys).
    header: Header,
    /// The header entries seen so far: key, line and value. They are checked together when
    /// the preamble ends, the world version first: a program written for another world is
    /// reported as such rather than for an order or a bug switch this build lacks.
    header_entries: Vec<(HeaderKey, usize, String)>,
    /// Have the header entries been checked and applied?
    header_done: bool,
    /// The program read so far.
    program: Program,
    /// The line of the `priorities` line, if seen.
    priorities_line: Option<usize>,
}

impl Parser {
    /// Take one line (1-based number `no`).
    fn line(&mut self, no: usize, raw: &str) -> Result<(), FormatError> {
        if !self.header_done && !strip_comment(raw).trim().is_empty() {
            self.apply_header()?;
        }
        self.body_line(no, raw)
            .map_err(|m| FormatError::new(Location::Line(no), m))
    }

    /// Check the header entries and fill in the header; errors name the entry's line.
    fn apply_header(&mut self) -> Result<(), FormatError> {
        self.header_done = true;
        for key in [HeaderKey::World, HeaderKey::Order, HeaderKey::Bugs] {
            let Some((_, no, value)) = self.header_entries.iter().find(|(k, _, _)| *k == key)
            else {
                continue;
            };
            let at = |m: String| FormatError::new(Location::Line(*no), m);
            match key {
                HeaderKey::World => {
                    let world = num(value, "world version", u32::MAX).map_err(at)?;
                    check_world(world).map_err(at)?;
                    self.header.world = world;
                }
                HeaderKey::Order => {
                    let order = num(value, "order", u8::MAX).map_err(at)?;
                    check_order(order).map_err(at)?;
                    self.header.order = order;
                }
                HeaderKey::Bugs => self.header.bugs = Bugs::parse(value).map_err(at)?,
            }
        }
        Ok(())
    }

    /// Take one line; errors are about that line.
    fn body_line(&mut self, no: usize, raw: &str) -> Result<(), String> {
        let code = strip_comment(raw).trim();
        if code.is_empty() {
            if self.section == Section::Preamble {
                self.header_line(no, raw)?;
            }
            return Ok(());
        }
        let words: Vec<&str> = code.split_whitespace().collect();
        match words.first().copied().unwrap_or_default() {
            "thread" | "thread:" => self.thread_header(code, &words),
            "schedule" | "schedule:" => self.section_header(code, Section::Schedule),
            "faults" | "faults:" => self.section_header(code, Section::Faults),
            "nmis" | "nmis:" => self.section_header(code, Section::Nmis),
            _ => match self.section {
                Section::Preamble => Err(format!("expected 'thread 0:', found '{code}'")),
                Section::Thread => {
                    let op = parse_op(&words)?;
                    match self.program.threads.last_mut() {
                        Some(ops) => ops.push(op),
                        None => return Err(format!("op '{code}' outside a thread section")),
                    }
                    Ok(())
                }
                Section::Schedule => self.schedule_line(no, &words),
                Section::Faults => {
                    let fault = parse_fault(&words)?;
                    self.program.faults.push(fault);
                    Ok(())
                }
                Section::Nmis => {
                    let nmi = parse_nmi(&words)?;
                    self.program.nmis.push(nmi);
                    Ok(())
                }
            },
        }
    }

    /// A comment line before the first thread: a header entry or a free comment.
    fn header_line(&mut self, no: usize, raw: &str) -> Result<(), String> {
        let Some(body) = raw.trim_start().strip_prefix('#') else {
            return Ok(());
        };
        let Some((key, value)) = header_entry(body) else {
            return Ok(());
        };
        if let Some((_, first, _)) = self.header_entries.iter().find(|(k, _, _)| *k == key) {
            return Err(format!(
                "second '{}' header line (the first is line {first})",
                key.name()
            ));
        }
        let value = strip_comment(value).trim().to_string();
        self.header_entries.push((key, no, value));
        Ok(())
    }

    /// A `thread N:` line.
    fn thread_header(&mut self, code: &str, words: &[&str]) -> Result<(), String> {
        let expected = self.program.threads.len();
        let compact = words.concat();
        let number = compact
            .strip_prefix("thread")
            .and_then(|rest| rest.strip_suffix(':'))
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("expected 'thread {expected}:', found '{code}'"))?;
        if self.section > Section::Thread {
            return Err(format!(
                "'{code}' after the '{}:' section: the threads come first",
                self.section.name()
            ));
        }
        let n = num(number, "thread number", u64::MAX)?;
        if u64::try_from(expected).ok() != Some(n) {
            return Err(format!(
                "expected 'thread {expected}:', found '{code}' (threads are numbered 0, 1, 2, ... in order)"
            ));
        }
        self.program.threads.push(Vec::new());
        self.section = Section::Thread;
        Ok(())
    }

    /// A `schedule:`, `faults:` or `nmis:` line.
    fn section_header(&mut self, code: &str, which: Section) -> Result<(), String> {
        let name = which.name();
        if code.split_whitespace().collect::<String>() != format!("{name}:") {
            return Err(format!("expected '{name}:', found '{code}'"));
        }
        if self.section == Section::Preamble {
            return Err(format!(
                "'{name}:' before 'thread 0:': a program starts with its threads"
            ));
        }
        if self.section == which {
            return Err(format!("second '{name}:' section"));
        }
        if self.section > which {
            return Err(format!(
                "'{name}:' after '{}:': the order is threads, schedule, faults, nmis",
                self.section.name()
            ));
        }
        self.section = which;
        Ok(())
    }

    /// A line of the `schedule:` section.
    fn schedule_line(&mut self, no: usize, words: &[&str]) -> Result<(), String> {
        match words.split_first() {
            Some((&"priorities", threads)) => {
                if let Some(first) = self.priorities_line {
                    return Err(format!("second 'priorities' line (the first is line {first})"));
                }
                self.priorities_line = Some(no);
                self.program.schedule.priorities = threads
                    .iter()
                    .map(|t| num(t, "thread", u8::MAX))
                    .collect::<Result<_, _>>()?;
                Ok(())
            }
            Some((&"preempt", args)) => {
                let p = parse_preempt(args)?;
                self.program.schedule.preemptions.push(p);
                Ok(())
            }
            _ => Err(format!(
                "unknown schedule line '{}': expected 'priorities <thread> ...' or 'preempt <thread>@<point> [-> <thread>]'",
                words.join(" ")
            )),
        }
    }

    /// The parsed file, if its program respects the limits.
    fn finish(mut self) -> Result<ProgFile, FormatError> {
        if !self.header_done {
            self.apply_header()?;
        }
        let file = ProgFile {
            header: self.header,
            program: self.program,
        };
        file.program
            .validate()
            .map_err(|m| FormatError::new(Location::Whole, m))?;
        Ok(file)
    }
}

/// Parse the text form. Errors name the line (1-based), or the whole file for limits that
/// [`Program::validate`] checks.
pub fn parse_text(src: &str) -> Result<ProgFile, FormatError> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let mut parser = Parser::default();
    for (i, raw) in src.lines().enumerate() {
        parser.line(i + 1, raw)?;
    }
    parser.finish()
}
