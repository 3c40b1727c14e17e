//! An index of names for the simulators' lookups and lists, so that a request costs what it
//! touches rather than a pass over every group (issue 14: 20,000 groups, answers within 1 ms).
//!
//! The simulators look groups and users up by name in several ways: exactly, or by the name
//! folded to lower case (whether that applies is a [`Behaviour`](super::contensis::Behaviour)
//! switch that a test can flip at run time), always picking the first match in id order when
//! more than one matches. They also list groups sorted case-insensitively. A [`NameIndex`] keeps
//! every entry under its *folded* name whatever the switches say, with its exact name and id
//! beside it: an exact lookup looks in the folded name's bucket for the exact name, a folded
//! lookup takes the whole bucket, so a switch flipped at run time needs no rebuild. The buckets
//! are kept in folded order, which is the order the lists are sorted in.

use std::collections::BTreeMap;

/// How a [`NameIndex`] folds names for case-insensitive comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fold {
    /// [`str::to_lowercase`], as [`name_key`](super::name_key) compares names.
    Unicode,
    /// [`str::to_ascii_lowercase`], as `eq_ignore_ascii_case` compares ids.
    Ascii,
}

/// The order of entries whose folded names are equal (`"Ops"` and `"ops"`), when iterating: the
/// tie-break of the list the index stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tie {
    /// By exact name, then by id (a list sorted by folded name, then name).
    Name,
    /// By id (a list sorted by folded name only, stable over the id order of the records).
    Id,
}

/// Names indexed by their folded form: each entry an exact name and the id it belongs to (a
/// record may have several entries, such as a user's username and e-mail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameIndex<Id> {
    fold: Fold,
    tie: Tie,
    /// Folded name → its entries (exact name, id), kept sorted by [`Tie`]. A bucket almost
    /// always holds one entry; it holds more only for names that differ by case alone.
    buckets: BTreeMap<String, Vec<(String, Id)>>,
    len: usize,
}

impl<Id: Ord + Clone> NameIndex<Id> {
    /// An empty index.
    pub fn new(fold: Fold, tie: Tie) -> Self {
        Self {
            fold,
            tie,
            buckets: BTreeMap::new(),
            len: 0,
        }
    }

    /// `name` folded as this index folds names.
    pub fn fold(&self, name: &str) -> String {
        match self.fold {
            Fold::Unicode => name.to_lowercase(),
            Fold::Ascii => name.to_ascii_lowercase(),
        }
    }

    /// How many entries there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn order(tie: Tie, a: &(String, Id), b: &(String, Id)) -> std::cmp::Ordering {
        match tie {
            Tie::Name => a.cmp(b),
            Tie::Id => (&a.1, &a.0).cmp(&(&b.1, &b.0)),
        }
    }

    /// Adds an entry; adding one that is there already changes nothing.
    pub fn insert(&mut self, name: &str, id: Id) {
        let tie = self.tie;
        let bucket = self.buckets.entry(self.fold(name)).or_default();
        let entry = (name.to_owned(), id);
        if let Err(at) = bucket.binary_search_by(|e| Self::order(tie, e, &entry)) {
            bucket.insert(at, entry);
            self.len += 1;
        }
    }

    /// Removes an entry; says whether it was there.
    pub fn remove(&mut self, name: &str, id: &Id) -> bool {
        let folded = self.fold(name);
        let Some(bucket) = self.buckets.get_mut(&folded) else {
            return false;
        };
        let Some(at) = bucket.iter().position(|(n, i)| n == name && i == id) else {
            return false;
        };
        bucket.remove(at);
        if bucket.is_empty() {
            self.buckets.remove(&folded);
        }
        self.len -= 1;
        true
    }

    /// The ids of the entries named `name`: exactly, or when `folded` by the folded name (in no
    /// particular order; an id appears once per matching entry).
    pub fn matching<'a>(&'a self, name: &str, folded: bool) -> impl Iterator<Item = &'a Id> + 'a {
        let exact = (!folded).then(|| name.to_owned());
        self.buckets
            .get(&self.fold(name))
            .into_iter()
            .flatten()
            .filter(move |(n, _)| exact.as_ref().is_none_or(|e| e == n))
            .map(|(_, id)| id)
    }

    /// The least id of the entries named `name` (exactly, or when `folded` by the folded
    /// name): what a scan of the records in id order finds first.
    pub fn first(&self, name: &str, folded: bool) -> Option<&Id> {
        self.matching(name, folded).min()
    }

    /// The lookup most simulators make: an exact match first, then, when `case_insensitive`,
    /// one by the folded name; the least id of either.
    pub fn find(&self, name: &str, case_insensitive: bool) -> Option<&Id> {
        self.first(name, false)
            .or_else(|| self.first(name, true).filter(|_| case_insensitive))
    }

    /// Every entry as (folded name, exact name, id), in folded order then by [`Tie`].
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&str, &str, &Id)> + '_ {
        self.buckets.iter().flat_map(|(folded, bucket)| {
            bucket
                .iter()
                .map(move |(name, id)| (folded.as_str(), name.as_str(), id))
        })
    }

    /// The entries whose folded name is greater than `folded` (already folded), in order.
    pub fn after<'a>(
        &'a self,
        folded: &str,
    ) -> impl Iterator<Item = (&'a str, &'a str, &'a Id)> + 'a {
        use std::ops::Bound::{Excluded, Unbounded};
        self.buckets
            .range::<str, _>((Excluded(folded), Unbounded))
            .flat_map(|(folded, bucket)| {
                bucket
                    .iter()
                    .map(move |(name, id)| (folded.as_str(), name.as_str(), id))
            })
    }

    /// The entries whose folded name starts with `prefix` folded, in order.
    pub fn starting_with<'a>(
        &'a self,
        prefix: &str,
    ) -> impl Iterator<Item = (&'a str, &'a str, &'a Id)> + 'a {
        use std::ops::Bound::{Included, Unbounded};
        let prefix = self.fold(prefix);
        self.buckets
            .range::<str, _>((Included(prefix.as_str()), Unbounded))
            .take_while(move |(folded, _)| folded.starts_with(prefix.as_str()))
            .flat_map(|(folded, bucket)| {
                bucket
                    .iter()
                    .map(move |(name, id)| (folded.as_str(), name.as_str(), id))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(tie: Tie) -> NameIndex<u32> {
        let mut ix = NameIndex::new(Fold::Unicode, tie);
        ix.insert("ops", 5);
        ix.insert("Ops", 2);
        ix.insert("Dev", 9);
        ix.insert("ÉTÉ", 1);
        ix
    }

    #[test]
    fn exact_first_then_folded_by_least_id() {
        let ix = index(Tie::Name);
        assert_eq!(ix.find("ops", true), Some(&5));
        assert_eq!(ix.find("Ops", true), Some(&2));
        assert_eq!(ix.find("OPS", true), Some(&2));
        assert_eq!(ix.find("OPS", false), None);
        assert_eq!(ix.find("été", true), Some(&1));
        assert_eq!(ix.first("oPs", true), Some(&2));
        let mut all: Vec<u32> = ix.matching("OPS", true).copied().collect();
        all.sort_unstable();
        assert_eq!(all, [2, 5]);
    }

    #[test]
    fn iterates_in_folded_order_with_the_tie_break() {
        let names = |ix: &NameIndex<u32>| -> Vec<String> {
            ix.iter().map(|(_, n, id)| format!("{n}#{id}")).collect()
        };
        assert_eq!(
            names(&index(Tie::Name)),
            ["Dev#9", "Ops#2", "ops#5", "ÉTÉ#1"]
        );
        assert_eq!(names(&index(Tie::Id)), ["Dev#9", "Ops#2", "ops#5", "ÉTÉ#1"]);
        let mut ix = index(Tie::Id);
        ix.insert("OPS", 3);
        assert_eq!(names(&ix), ["Dev#9", "Ops#2", "OPS#3", "ops#5", "ÉTÉ#1"]);
        let mut ix = index(Tie::Name);
        ix.insert("OPS", 3);
        assert_eq!(names(&ix), ["Dev#9", "OPS#3", "Ops#2", "ops#5", "ÉTÉ#1"]);
        let rev: Vec<&str> = ix.iter().rev().map(|(_, n, _)| n).collect();
        assert_eq!(rev, ["ÉTÉ", "ops", "Ops", "OPS", "Dev"]);
    }

    #[test]
    fn insert_twice_and_remove_keep_the_count() {
        let mut ix = index(Tie::Name);
        assert_eq!(ix.len(), 4);
        ix.insert("ops", 5);
        assert_eq!(ix.len(), 4);
        assert!(!ix.remove("ops", &2));
        assert!(ix.remove("ops", &5));
        assert!(ix.remove("Ops", &2));
        assert_eq!(ix.len(), 2);
        assert_eq!(ix.find("ops", true), None);
        assert_eq!(ix.iter().count(), 2);
    }

    #[test]
    fn ranges_after_and_by_prefix() {
        let ix = index(Tie::Name);
        let after: Vec<&str> = ix.after("dev").map(|(_, n, _)| n).collect();
        assert_eq!(after, ["Ops", "ops", "ÉTÉ"]);
        let pre: Vec<&str> = ix.starting_with("O").map(|(_, n, _)| n).collect();
        assert_eq!(pre, ["Ops", "ops"]);
        assert_eq!(ix.starting_with("x").count(), 0);
    }

    #[test]
    fn ascii_folding_leaves_other_letters_alone() {
        let mut ix = NameIndex::new(Fold::Ascii, Tie::Id);
        ix.insert("ABC-É", 1u32);
        assert_eq!(ix.first("abc-É", true), Some(&1));
        assert_eq!(ix.first("abc-é", true), None);
    }
}
