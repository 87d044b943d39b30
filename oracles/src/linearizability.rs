//! A linearizability checker generic over a sequential [`Model`]: Wing & Gong's search with
//! Lowe's cache of (linearized set, state) pairs, as porcupine does. Past its step budget it
//! answers [`Check::Unknown`], never hangs.

use std::collections::BTreeSet;

/// A sequential specification. `step` is given the observed result, so a nondeterministic
/// operation (gup-fast may fall back, a split may be busy) is one that accepts several results.
pub trait Model {
    /// Abstract state.
    type State: Clone + Ord;
    /// Operation with its arguments.
    type Op;
    /// Observed result.
    type Ret;
    /// The initial state.
    fn init(&self) -> Self::State;
    /// The state after `op` returned `ret` in `s`, or `None` if `ret` is impossible there.
    fn step(&self, s: &Self::State, op: &Self::Op, ret: &Self::Ret) -> Option<Self::State>;
    /// States an operation that never returned (or an optional effect) may have left; it may
    /// also not have happened at all.
    fn step_pending(&self, s: &Self::State, op: &Self::Op) -> Vec<Self::State>;

    /// [`Model::step`] in place, for the checker's fast path; false if `ret` is impossible
    /// (then `s` may be left half-changed and is dropped). Override to avoid the clone.
    fn step_in_place(&self, s: &mut Self::State, op: &Self::Op, ret: &Self::Ret) -> bool {
        match self.step(s, op, ret) {
            Some(n) => {
                *s = n;
                true
            }
            None => false,
        }
    }

    /// May the fast path apply an optional effect whenever it can, because applying one never
    /// makes a later step impossible? Models must opt in and say why.
    fn optional_is_monotone(&self) -> bool {
        false
    }
}

/// One operation of a concurrent history. Times are positions in one global order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<O, R> {
    /// The operation.
    pub op: O,
    /// When it was invoked.
    pub invoke: u64,
    /// When it returned and what, or `None` if it never did.
    pub response: Option<(u64, R)>,
    /// For an entry without a response: the latest time it may have taken effect (an optional
    /// side effect inside another operation's interval). `None`: unbounded (a pending op).
    pub may_happen_by: Option<u64>,
}

impl<O, R> Entry<O, R> {
    /// An operation that returned `ret` at `response`.
    pub fn returned(op: O, invoke: u64, response: u64, ret: R) -> Self {
        Entry {
            op,
            invoke,
            response: Some((response, ret)),
            may_happen_by: None,
        }
    }

    /// An operation that never returned: it may or may not have taken effect.
    pub fn pending(op: O, invoke: u64) -> Self {
        Entry {
            op,
            invoke,
            response: None,
            may_happen_by: None,
        }
    }

    /// An effect that may have happened, once, between `invoke` and `by`, or not at all.
    pub fn optional(op: O, invoke: u64, by: u64) -> Self {
        Entry {
            op,
            invoke,
            response: None,
            may_happen_by: Some(by),
        }
    }

    /// The latest time this entry can take effect.
    fn deadline(&self) -> u64 {
        match (&self.response, self.may_happen_by) {
            (Some((t, _)), _) => *t,
            (None, Some(t)) => t,
            (None, None) => u64::MAX,
        }
    }
}

/// The verdict on a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Check {
    /// Some real-time-consistent order explains every result.
    Linearizable,
    /// None does. `longest` is the longest explainable prefix (entry indices, in order).
    NotLinearizable {
        /// Entry indices of the longest prefix that could be explained.
        longest: Vec<usize>,
    },
    /// The budget ran out.
    Unknown,
}

/// Most entries a history may have.
pub const MAX_ENTRIES: usize = 256;

/// A set of entry indices.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Set([u64; MAX_ENTRIES / 64]);

impl Set {
    #[inline]
    fn has(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }
    #[inline]
    fn with(mut self, i: usize) -> Set {
        self.0[i / 64] |= 1 << (i % 64);
        self
    }
    #[inline]
    fn covers(&self, other: &Set) -> bool {
        self.0.iter().zip(other.0.iter()).all(|(a, b)| a & b == *b)
    }
}

/// Check `history` against `model` within `budget` search steps. A history longer than
/// [`MAX_ENTRIES`] is [`Check::Unknown`].
pub fn check<M: Model>(model: &M, history: &[Entry<M::Op, M::Ret>], budget: u64) -> Check {
    if history.len() > MAX_ENTRIES {
        return Check::Unknown;
    }
    let n = history.len();
    // Two orders that respect real time, each usually a linearization: every op at its
    // response, or every op at its invocation. Try both before searching.
    let mut by_invoke: Vec<usize> = (0..n).collect();
    by_invoke.sort_by_key(|&i| (history[i].invoke, history[i].deadline(), i));
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by_key(|&i| (history[i].deadline(), history[i].invoke, i));
    if fast_path(model, history, &order) || fast_path(model, history, &by_invoke) {
        return Check::Linearizable;
    }
    let done_mask = history
        .iter()
        .enumerate()
        .filter(|(_, e)| e.response.is_some())
        .fold(Set::default(), |m, (i, _)| m.with(i));
    let mut search = Search {
        model,
        history,
        seen: BTreeSet::new(),
        steps: 0,
        budget,
        path: Vec::new(),
        longest: Vec::new(),
        n,
        done_mask,
        order,
    };
    match search.go(Set::default(), model.init()) {
        Some(true) => Check::Linearizable,
        Some(false) => Check::NotLinearizable {
            longest: search.longest,
        },
        None => Check::Unknown,
    }
}

/// Most histories are linearizable in real-time order (by response, pending ops left out):
/// try exactly that sequence, stepping one state in place, before searching.
fn fast_path<M: Model>(model: &M, history: &[Entry<M::Op, M::Ret>], order: &[usize]) -> bool {
    let mut s = model.init();
    for &i in order {
        let e = &history[i];
        match (&e.response, e.may_happen_by) {
            (Some((_, r)), _) if !model.step_in_place(&mut s, &e.op, r) => return false,
            (Some(_), _) => {}
            (None, Some(_)) if model.optional_is_monotone() => {
                if let Some(n) = model.step_pending(&s, &e.op).into_iter().next() {
                    s = n;
                }
            }
            // A pending op is taken not to have happened here; the search tries both.
            _ => {}
        }
    }
    true
}

struct Search<'a, M: Model> {
    model: &'a M,
    history: &'a [Entry<M::Op, M::Ret>],
    seen: BTreeSet<(Set, M::State)>,
    steps: u64,
    budget: u64,
    path: Vec<usize>,
    longest: Vec<usize>,
    n: usize,
    /// Entries that returned: all of them must be linearized.
    done_mask: Set,
    /// Entry indices by (deadline, invoke).
    order: Vec<usize>,
}

impl<M: Model> Search<'_, M> {
    /// `Some(true)`: found; `Some(false)`: none below here; `None`: out of budget.
    fn go(&mut self, lin: Set, s: M::State) -> Option<bool> {
        if lin.covers(&self.done_mask) {
            return Some(true);
        }
        self.steps += 1;
        if self.steps > self.budget {
            return None;
        }
        if self.path.len() > self.longest.len() {
            self.longest = self.path.clone();
        }
        // An entry may go next only if no unlinearized entry returned before it was invoked.
        let horizon = (0..self.n)
            .filter(|&i| !lin.has(i))
            .filter_map(|i| self.history[i].response.as_ref().map(|(t, _)| *t))
            .min()
            .unwrap_or(u64::MAX);
        // Nothing may go after an entry that was invoked after its deadline. (For returned
        // entries the horizon already guarantees it; this bounds optional effects.)
        let latest_invoke = (0..self.n)
            .filter(|&i| lin.has(i))
            .map(|i| self.history[i].invoke)
            .max()
            .unwrap_or(0);
        // Earliest deadline first: the first path tried is the real-time order, which is
        // usually a linearization, so most searches never backtrack.
        let candidates: Vec<usize> = self
            .order
            .iter()
            .copied()
            .filter(|&i| {
                !lin.has(i)
                    && self.history[i].invoke <= horizon
                    && self.history[i].deadline() >= latest_invoke
            })
            .collect();
        // Remember only nodes with a choice. A node without one may be walked again from
        // another path, but that walk is a short chain that ends at a remembered node.
        if candidates.len() > 1 && !self.seen.insert((lin, s.clone())) {
            return Some(false);
        }
        for i in candidates {
            let e = &self.history[i];
            let nexts = match &e.response {
                Some((_, r)) => self
                    .model
                    .step(&s, &e.op, r)
                    .into_iter()
                    .collect::<Vec<_>>(),
                None => self.model.step_pending(&s, &e.op),
            };
            for ns in nexts {
                self.path.push(i);
                let r = self.go(lin.with(i), ns);
                self.path.pop();
                match r {
                    Some(false) => {}
                    other => return other,
                }
            }
        }
        Some(false)
    }
}

/// Check a history whose model is a product of independent parts (P-compositionality: Herlihy
/// & Wing; used by porcupine's partitioned models). `key` names the part an entry acts on;
/// the history is linearizable iff each part's sub-history is, so each part is searched on its
/// own, which turns one search over n entries into several small ones. Longest prefixes are
/// reported in indices of the whole history.
pub fn check_partitioned<M: Model>(
    model: &M,
    history: &[Entry<M::Op, M::Ret>],
    key: impl Fn(&Entry<M::Op, M::Ret>) -> u64,
    budget: u64,
) -> Check
where
    M::Op: Clone,
    M::Ret: Clone,
{
    let mut parts: std::collections::BTreeMap<u64, Vec<usize>> = std::collections::BTreeMap::new();
    for (i, e) in history.iter().enumerate() {
        parts.entry(key(e)).or_default().push(i);
    }
    let mut unknown = false;
    for idx in parts.values() {
        let sub: Vec<Entry<M::Op, M::Ret>> = idx.iter().map(|&i| history[i].clone()).collect();
        match check(model, &sub, budget) {
            Check::Linearizable => {}
            Check::Unknown => unknown = true,
            Check::NotLinearizable { longest } => {
                return Check::NotLinearizable {
                    longest: longest.into_iter().map(|j| idx[j]).collect(),
                }
            }
        }
    }
    if unknown {
        Check::Unknown
    } else {
        Check::Linearizable
    }
}
