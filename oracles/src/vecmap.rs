//! A small ordered map on a sorted vector: the spec's states are tiny and are cloned, compared
//! and hashed at every step of the linearizability search, where one contiguous allocation
//! beats a B-tree.

use std::ops::Index;

/// An ordered map from `K` to `V` kept as a vector sorted by key.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VecMap<K, V>(Vec<(K, V)>);

impl<K: Ord + Copy, V: Copy> VecMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        VecMap(Vec::new())
    }

    fn find(&self, k: &K) -> Result<usize, usize> {
        self.0.binary_search_by(|(q, _)| q.cmp(k))
    }

    /// The value of `k`.
    pub fn get(&self, k: &K) -> Option<&V> {
        self.find(k).ok().map(|i| &self.0[i].1)
    }

    /// Is `k` present?
    pub fn contains_key(&self, k: &K) -> bool {
        self.find(k).is_ok()
    }

    /// Set `k` to `v`; the old value, if any.
    pub fn insert(&mut self, k: K, v: V) -> Option<V> {
        match self.find(&k) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, v)),
            Err(i) => {
                self.0.insert(i, (k, v));
                None
            }
        }
    }

    /// Set `k` to `v` unless present.
    pub fn or_insert(&mut self, k: K, v: V) {
        if let Err(i) = self.find(&k) {
            self.0.insert(i, (k, v));
        }
    }

    /// Remove `k`; its value, if it was present.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.find(k).ok().map(|i| self.0.remove(i).1)
    }

    /// Values in key order.
    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.0.iter().map(|(_, v)| v)
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Is it empty?
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<K: Ord + Copy, V: Copy> FromIterator<(K, V)> for VecMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(it: I) -> Self {
        let mut v: Vec<(K, V)> = it.into_iter().collect();
        v.sort_by_key(|a| a.0);
        v.dedup_by(|a, b| a.0 == b.0);
        VecMap(v)
    }
}

impl<K: Ord + Copy, V: Copy> Index<&K> for VecMap<K, V> {
    type Output = V;
    fn index(&self, k: &K) -> &V {
        self.get(k).expect("key present")
    }
}

#[cfg(test)]
mod tests {
    use super::VecMap;

    #[test]
    fn behaves_like_an_ordered_map() {
        let mut m: VecMap<u32, u32> = VecMap::new();
        assert_eq!(m.insert(5, 50), None);
        assert_eq!(m.insert(1, 10), None);
        assert_eq!(m.insert(5, 55), Some(50));
        m.or_insert(1, 99);
        m.or_insert(3, 30);
        assert_eq!(
            m.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>(),
            vec![(1, 10), (3, 30), (5, 55)]
        );
        assert_eq!(m[&3], 30);
        assert_eq!(m.remove(&3), Some(30));
        assert!(!m.contains_key(&3));
        assert_eq!(m.len(), 2);
        let n: VecMap<u32, u32> = [(9, 1), (2, 2), (9, 3)].into_iter().collect();
        assert_eq!(n.values().copied().collect::<Vec<_>>(), vec![2, 1]);
    }
}
