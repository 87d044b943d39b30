//! The checker on hand-built histories of small models: known linearizable ones pass, known
//! non-linearizable ones fail, pending operations are handled both ways, optional effects stay
//! inside their deadline, and a pathological history answers Unknown within its budget.

use oracles::linearizability::{check, Check, Entry, Model};

/// A read/write register holding a small integer.
struct Register;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RegOp {
    Write(u8),
    Read,
}

impl Model for Register {
    type State = u8;
    type Op = RegOp;
    type Ret = u8;
    fn init(&self) -> u8 {
        0
    }
    fn step(&self, s: &u8, op: &RegOp, ret: &u8) -> Option<u8> {
        match op {
            RegOp::Write(v) => Some(*v),
            RegOp::Read => (s == ret).then_some(*s),
        }
    }
    fn step_pending(&self, _s: &u8, op: &RegOp) -> Vec<u8> {
        match op {
            RegOp::Write(v) => vec![*v],
            RegOp::Read => vec![],
        }
    }
}

fn w(v: u8, inv: u64, resp: u64) -> Entry<RegOp, u8> {
    Entry::returned(RegOp::Write(v), inv, resp, 0)
}
fn r(v: u8, inv: u64, resp: u64) -> Entry<RegOp, u8> {
    Entry::returned(RegOp::Read, inv, resp, v)
}

#[test]
fn sequential_register_history_is_linearizable() {
    let h = vec![w(1, 0, 1), r(1, 2, 3), w(2, 4, 5), r(2, 6, 7)];
    assert_eq!(check(&Register, &h, 1000), Check::Linearizable);
}

#[test]
fn stale_read_after_a_completed_write_is_not_linearizable() {
    // w(1) completes before the read starts, so the read cannot see the initial 0.
    let h = vec![w(1, 0, 1), r(0, 2, 3)];
    assert!(matches!(
        check(&Register, &h, 1000),
        Check::NotLinearizable { .. }
    ));
}

#[test]
fn overlapping_write_may_be_seen_or_not() {
    // The read overlaps the write: both 0 and 1 are fine.
    for v in [0, 1] {
        let h = vec![w(1, 0, 10), r(v, 2, 3)];
        assert_eq!(check(&Register, &h, 1000), Check::Linearizable, "read {v}");
    }
    // 2 was never written.
    let h = vec![w(1, 0, 10), r(2, 2, 3)];
    assert!(matches!(
        check(&Register, &h, 1000),
        Check::NotLinearizable { .. }
    ));
}

#[test]
fn reads_must_agree_on_the_order_of_concurrent_writes() {
    // w(1) and w(2) overlap; one reader sees 1 then 2, another 2 then 1: impossible.
    let h = vec![
        w(1, 0, 20),
        w(2, 0, 20),
        r(1, 1, 2),
        r(2, 3, 4),
        r(2, 5, 6),
        r(1, 7, 8),
    ];
    assert!(matches!(
        check(&Register, &h, 100_000),
        Check::NotLinearizable { .. }
    ));
    // Both readers seeing 1 then 2 is fine.
    let h = vec![
        w(1, 0, 20),
        w(2, 0, 20),
        r(1, 1, 2),
        r(2, 3, 4),
        r(1, 1, 2),
        r(2, 5, 6),
    ];
    assert_eq!(check(&Register, &h, 100_000), Check::Linearizable);
}

#[test]
fn a_pending_write_may_or_may_not_have_happened() {
    // The writer never returned (the run stopped). A later read of 5 needs it to have
    // happened; a later read of 0 needs it not to have happened. Both are explainable.
    for v in [5, 0] {
        let h = vec![Entry::pending(RegOp::Write(5), 0), r(v, 3, 4)];
        assert_eq!(check(&Register, &h, 1000), Check::Linearizable, "read {v}");
    }
    // But not a value nobody wrote.
    let h = vec![Entry::pending(RegOp::Write(5), 0), r(7, 3, 4)];
    assert!(matches!(
        check(&Register, &h, 1000),
        Check::NotLinearizable { .. }
    ));
    // And once it is seen, it stays.
    let h = vec![Entry::pending(RegOp::Write(5), 0), r(5, 3, 4), r(0, 5, 6)];
    assert!(matches!(
        check(&Register, &h, 1000),
        Check::NotLinearizable { .. }
    ));
}

#[test]
fn an_optional_effect_cannot_happen_after_its_deadline() {
    // The optional write(9) may happen up to time 4. A read at [5,6] after a read of 0 at
    // [2,3] cannot see it: the write would have to land after time 4.
    let ok = vec![Entry::optional(RegOp::Write(9), 0, 4), r(9, 2, 3)];
    assert_eq!(check(&Register, &ok, 1000), Check::Linearizable);
    let skipped = vec![Entry::optional(RegOp::Write(9), 0, 4), r(0, 2, 3)];
    assert_eq!(check(&Register, &skipped, 1000), Check::Linearizable);
    let late = vec![
        Entry::optional(RegOp::Write(9), 0, 4),
        r(0, 5, 6),
        r(9, 7, 8),
    ];
    assert!(matches!(
        check(&Register, &late, 1000),
        Check::NotLinearizable { .. }
    ));
}

/// A key-value map with put and get, keys and values small.
struct Kv;

#[derive(Clone, Copy, Debug)]
enum KvOp {
    Put(u8, u8),
    Get(u8),
}

impl Model for Kv {
    type State = [u8; 4];
    type Op = KvOp;
    type Ret = u8;
    fn init(&self) -> [u8; 4] {
        [0; 4]
    }
    fn step(&self, s: &[u8; 4], op: &KvOp, ret: &u8) -> Option<[u8; 4]> {
        let mut n = *s;
        match *op {
            KvOp::Put(k, v) => {
                n[k as usize] = v;
                Some(n)
            }
            KvOp::Get(k) => (s[k as usize] == *ret).then_some(n),
        }
    }
    fn step_pending(&self, s: &[u8; 4], op: &KvOp) -> Vec<[u8; 4]> {
        match *op {
            KvOp::Put(k, v) => {
                let mut n = *s;
                n[k as usize] = v;
                vec![n]
            }
            KvOp::Get(_) => vec![],
        }
    }
}

#[test]
fn kv_histories() {
    let put = |k, v, i, r| Entry::returned(KvOp::Put(k, v), i, r, 0);
    let get = |k, v, i, r| Entry::returned(KvOp::Get(k), i, r, v);
    // Independent keys, overlapping freely.
    let h = vec![
        put(0, 1, 0, 10),
        put(1, 2, 0, 10),
        get(1, 2, 11, 12),
        get(0, 1, 11, 12),
        get(2, 0, 1, 2),
    ];
    assert_eq!(check(&Kv, &h, 10_000), Check::Linearizable);
    // A get that returns a value from the future.
    let h = vec![get(3, 7, 0, 1), put(3, 7, 2, 3)];
    assert!(matches!(
        check(&Kv, &h, 10_000),
        Check::NotLinearizable { .. }
    ));
    // Two gets of one key disagreeing on the order of two overlapping puts.
    let h = vec![
        put(2, 1, 0, 20),
        put(2, 2, 0, 20),
        get(2, 1, 1, 2),
        get(2, 2, 3, 4),
        get(2, 1, 5, 6),
    ];
    assert!(matches!(
        check(&Kv, &h, 100_000),
        Check::NotLinearizable { .. }
    ));
}

#[test]
fn a_pathological_history_is_unknown_within_the_budget() {
    // 40 writes that all overlap, then a read of a value nobody wrote: proving that takes a
    // search over every order of the writes (memoised on subsets: 2^40). The budget stops it.
    let mut h: Vec<Entry<RegOp, u8>> = (0..40).map(|i| w(i as u8 % 200 + 1, 0, 100)).collect();
    h.push(r(255, 101, 102));
    let t = std::time::Instant::now();
    assert_eq!(check(&Register, &h, 50_000), Check::Unknown);
    assert!(
        t.elapsed() < std::time::Duration::from_secs(10),
        "the budget bounds the time"
    );
}

#[test]
fn a_failing_history_reports_its_longest_explainable_prefix() {
    let h = vec![w(1, 0, 1), r(1, 2, 3), r(0, 4, 5)];
    match check(&Register, &h, 1000) {
        Check::NotLinearizable { longest } => assert_eq!(longest, vec![0, 1]),
        c => panic!("{c:?}"),
    }
}

#[test]
fn partitioned_check_agrees_and_maps_indices_back() {
    use oracles::linearizability::check_partitioned;
    let put = |k, v, i, r| Entry::returned(KvOp::Put(k, v), i, r, 0);
    let get = |k, v, i, r| Entry::returned(KvOp::Get(k), i, r, v);
    let key = |e: &Entry<KvOp, u8>| match e.op {
        KvOp::Put(k, _) | KvOp::Get(k) => u64::from(k),
    };
    let ok = vec![
        put(0, 1, 0, 10),
        put(1, 2, 0, 10),
        get(1, 2, 11, 12),
        get(0, 1, 11, 12),
    ];
    assert_eq!(check_partitioned(&Kv, &ok, key, 1000), Check::Linearizable);
    // Key 1 is fine; key 0 reads a value from the future. The failing part's longest prefix
    // is reported in whole-history indices (entry 2 is key 0's put).
    let bad = vec![
        put(1, 5, 0, 1),
        get(0, 7, 2, 3),
        put(0, 7, 4, 5),
        get(1, 5, 6, 7),
    ];
    match check_partitioned(&Kv, &bad, key, 1000) {
        Check::NotLinearizable { longest } => {
            assert!(longest.iter().all(|&i| i == 1 || i == 2), "{longest:?}")
        }
        c => panic!("{c:?}"),
    }
    assert_ne!(check(&Kv, &bad, 1000), Check::Linearizable);
}
