//! Names compared as a target compares them, and the differences of two sets of names.
//!
//! A plan of a million memberships must cost about what walking the sorted member sets costs
//! (issue 14), so a name is folded (lowercased where the target ignores case) only where folding
//! changes it, and two sets are merged in their sorted order wherever that order is the target's.

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{BTreeSet, HashSet};

/// A name as a target compares it (lowercased where the target ignores case), borrowed where
/// folding leaves it as it is; [`super::fold`] is its owned form.
pub fn folded(name: &str, case_insensitive: bool) -> Cow<'_, str> {
    if !case_insensitive || is_folded(name) {
        Cow::Borrowed(name)
    } else {
        Cow::Owned(name.to_lowercase())
    }
}

/// Whether lowercasing leaves `s` as it is.
pub(super) fn is_folded(s: &str) -> bool {
    ascii_folded(s.as_bytes()) || (!s.is_ascii() && s.to_lowercase() == s)
}

/// Whether `b` is ASCII without an upper-case letter, tested eight bytes at a time: the planner
/// asks this of every name and member it merges on a case-insensitive target.
fn ascii_folded(b: &[u8]) -> bool {
    if b.len() < 8 {
        // Padded with zero bytes, which are plain.
        return plain_word(word(b));
    }
    // The last word overlaps the chunks where the length is not a multiple of eight.
    b.chunks_exact(8).all(|c| plain_word(word(c))) && plain_word(word(&b[b.len() - 8..]))
}

/// Up to eight bytes as a big-endian word (padded with zero bytes), so that words order as their
/// bytes do.
fn word(c: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a[..c.len()].copy_from_slice(c);
    u64::from_be_bytes(a)
}

/// Eight one bytes.
const ONES: u64 = u64::from_ne_bytes([1; 8]);
/// The high bit of each of eight bytes.
const HIGH: u64 = ONES * 0x80;
/// Added to a word of ASCII bytes, sets the high bit of each byte from `A` up (no byte carries
/// into the next).
const FROM_A: u64 = ONES * (0x80 - b'A' as u64);
/// Added to a word of ASCII bytes, sets the high bit of each byte from `[`, past `Z`, up.
const PAST_Z: u64 = ONES * (0x80 - b'[' as u64);

/// Whether the eight bytes of `w` are ASCII without an upper-case letter.
fn plain_word(w: u64) -> bool {
    w & HIGH == 0 && w.wrapping_add(FROM_A) & !w.wrapping_add(PAST_Z) & HIGH == 0
}

/// How `x` and `y` order (as `str`s order, byte by byte) and, when they are equal, whether they
/// are ASCII without an upper-case letter (`false` otherwise). One pass over both, eight bytes at
/// a time: merging the member sets of a case-insensitive target compares and checks every
/// member, and the two apart cost about twice the comparison alone.
pub(super) fn cmp_plain(x: &[u8], y: &[u8]) -> (Ordering, bool) {
    let n = x.len().min(y.len());
    let mut plain = true;
    // Words of a length known here, so that they are single loads: fewer than eight bytes are
    // compared one by one; else eight at a time, then the last eight, overlapping bytes already
    // found equal, where the length is not a multiple of eight.
    if n < 8 {
        for (&a, &b) in x.iter().zip(y) {
            if a != b {
                return (a.cmp(&b), false);
            }
            plain &= a.is_ascii() && !a.is_ascii_uppercase();
        }
    } else {
        let mut i = 0;
        while i + 8 <= n {
            let (a, b) = (word(&x[i..i + 8]), word(&y[i..i + 8]));
            if a != b {
                return (a.cmp(&b), false);
            }
            plain &= plain_word(a);
            i += 8;
        }
        if i < n {
            let (a, b) = (word(&x[n - 8..n]), word(&y[n - 8..n]));
            if a != b {
                return (a.cmp(&b), false);
            }
            plain &= plain_word(a);
        }
    }
    match x.len().cmp(&y.len()) {
        Ordering::Equal => (Ordering::Equal, plain),
        longer_or_shorter => (longer_or_shorter, false),
    }
}

/// What to add to and remove from `have` to make it `want`, comparing names as the target does,
/// into `add` and `remove` (emptied first). Both lists come out sorted: additions in `want`'s
/// order, removals in `have`'s.
///
/// The sets are merged (see [`merge`]) unless the target ignores case and an element is not
/// folded; then, and only then, both sides are folded and compared through hash sets.
pub(super) fn set_diff<'a, T: AsRef<str> + Ord>(
    have: Option<&'a BTreeSet<T>>,
    want: &'a BTreeSet<T>,
    ci: bool,
    add: &mut Vec<&'a T>,
    remove: &mut Vec<&'a T>,
) {
    add.clear();
    remove.clear();
    let Some(have) = have else {
        add.extend(want);
        return;
    };
    if merge(have, want, ci, add, remove) {
        return;
    }
    add.clear();
    remove.clear();
    let have_keys: HashSet<Cow<'_, str>> = have.iter().map(|x| folded(x.as_ref(), ci)).collect();
    let want_keys: HashSet<Cow<'_, str>> = want.iter().map(|x| folded(x.as_ref(), ci)).collect();
    add.extend(
        want.iter()
            .filter(|x| !have_keys.contains(&*folded(x.as_ref(), ci))),
    );
    remove.extend(
        have.iter()
            .filter(|x| !want_keys.contains(&*folded(x.as_ref(), ci))),
    );
}

/// The exact difference of two sorted sets, found by walking them together. Where the target
/// ignores case it is the target's difference only if folding changes no element (then two
/// elements are alike when folded exactly when they are equal, and the sets' order is the folded
/// order), so this returns false, with `add` and `remove` partly filled, at the first element that
/// folding would change.
///
/// `T`'s order must be that of its string, as it is for `UserKey` and `GroupName`: the sets are
/// in that order, and the walk compares strings.
fn merge<'a, T: AsRef<str> + Ord>(
    have: &'a BTreeSet<T>,
    want: &'a BTreeSet<T>,
    ci: bool,
    add: &mut Vec<&'a T>,
    remove: &mut Vec<&'a T>,
) -> bool {
    let as_is = |x: &T| !ci || is_folded(x.as_ref());
    let (mut h, mut w) = (have.iter(), want.iter());
    let (mut a, mut b) = (h.next(), w.next());
    loop {
        match (a, b) {
            (Some(x), Some(y)) => match cmp_plain(x.as_ref().as_bytes(), y.as_ref().as_bytes()) {
                (Ordering::Less, _) => {
                    if !as_is(x) {
                        return false;
                    }
                    remove.push(x);
                    a = h.next();
                }
                (Ordering::Greater, _) => {
                    if !as_is(y) {
                        return false;
                    }
                    add.push(y);
                    b = w.next();
                }
                (Ordering::Equal, plain) => {
                    if !plain && !as_is(x) {
                        return false;
                    }
                    a = h.next();
                    b = w.next();
                }
            },
            (Some(x), None) => {
                if !as_is(x) {
                    return false;
                }
                remove.push(x);
                a = h.next();
            }
            (None, Some(y)) => {
                if !as_is(y) {
                    return false;
                }
                add.push(y);
                b = w.next();
            }
            (None, None) => return true,
        }
    }
}
