//! Range retrieval: reading every value of an attribute a server hands out in ranges.
//!
//! Active Directory never returns more than `MaxValRange` (1,500 by default) values of one
//! attribute in one answer: for a bigger group it answers `member;range=0-1499` instead of
//! `member`, and the client asks for `member;range=1500-*` and so on until a range ends in `*`
//! (MS-ADTS 3.1.1.3.1.3.3). A client that looks for `member` alone reads such a group as empty,
//! the failure that makes sync tools revoke whole groups.
//!
//! So every attribute description a server returns is parsed ([`Description`]): a `range`
//! option is continued until its `*`, whatever the directory; an option roster does not
//! understand is an error, never "no values". A sequence that stops short (a range without `*`
//! and no next one, a gap, a chunk with fewer values than its range says, an error or a dropped
//! connection on a later chunk) is an error naming the group and the last range read.

use std::fmt;

use super::search::Entry;

/// A `range=lo-hi` option of an attribute description.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Range {
    /// Values `lo..=hi`; more follow.
    Part {
        /// The index of the first value.
        lo: u64,
        /// The index of the last value.
        hi: u64,
    },
    /// Values from `lo` to the end (`range=lo-*`).
    Last {
        /// The index of the first value.
        lo: u64,
    },
}

impl Range {
    /// The index of the first value.
    pub fn lo(self) -> u64 {
        match self {
            Range::Part { lo, .. } | Range::Last { lo } => lo,
        }
    }
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Range::Part { lo, hi } => write!(f, "{lo}-{hi}"),
            Range::Last { lo } => write!(f, "{lo}-*"),
        }
    }
}

/// An attribute description as a server returned it (`member`, `member;range=0-1499`).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Description<'a> {
    /// The attribute type, before any option.
    pub name: &'a str,
    /// Its `range` option, if any.
    pub range: Option<Range>,
    /// The first other option, which roster does not understand.
    pub unknown: Option<&'a str>,
}

impl<'a> Description<'a> {
    /// Splits `text` into the type and its options. A malformed `range` counts as unknown.
    pub fn parse(text: &'a str) -> Self {
        let mut parts = text.split(';');
        let name = parts.next().unwrap_or_default();
        let mut out = Description {
            name,
            range: None,
            unknown: None,
        };
        for option in parts {
            match parse_range(option) {
                Some(r) if out.range.is_none() => out.range = Some(r),
                _ => {
                    out.unknown.get_or_insert(option);
                }
            }
        }
        out
    }
}

/// `range=lo-hi` or `range=lo-*` (the option name in any case); `None` for anything else.
fn parse_range(option: &str) -> Option<Range> {
    let (key, value) = option.split_once('=')?;
    if !key.eq_ignore_ascii_case("range") {
        return None;
    }
    let (lo, hi) = value.split_once('-')?;
    let lo = lo.parse::<u64>().ok()?;
    if hi == "*" {
        return Some(Range::Last { lo });
    }
    let hi = hi.parse::<u64>().ok()?;
    (hi >= lo).then_some(Range::Part { lo, hi })
}

/// The values of attribute `attr` in `entry`, taken out of it, with their range if the server
/// ranged them. `Err` says what is wrong: an unknown option, values that are not text, or the
/// attribute twice.
pub(super) fn take(entry: &mut Entry, attr: &str) -> Result<(Vec<String>, Option<Range>), String> {
    if let Some(key) = entry
        .binary
        .iter()
        .find(|k| Description::parse(k).name.eq_ignore_ascii_case(attr))
    {
        return Err(format!(
            "attribute `{key}` has values that are not UTF-8 text"
        ));
    }
    let mut found: Option<(usize, Option<Range>)> = None;
    for (i, (key, _)) in entry.attrs.iter().enumerate() {
        let d = Description::parse(key);
        if !d.name.eq_ignore_ascii_case(attr) {
            continue;
        }
        if let Some(option) = d.unknown {
            return Err(format!(
                "the server returned `{key}`, with an option (`{option}`) roster does not \
                 understand; refusing to read it as having no values"
            ));
        }
        if let Some((first, _)) = found {
            let first = &entry.attrs[first].0;
            return Err(format!("the server returned both `{first}` and `{key}`"));
        }
        found = Some((i, d.range));
    }
    Ok(match found {
        Some((i, range)) => (entry.attrs.remove(i).1, range),
        None => (Vec::new(), None),
    })
}

/// Checks one chunk of a ranged read: it starts at `expected` and holds as many values as its
/// range says (a last range holds any number). `Err` says what is wrong.
pub(super) fn check_chunk(range: Range, expected: u64, count: usize) -> Result<(), String> {
    if range.lo() != expected {
        return Err(format!(
            "the server answered with range {range} where {expected}-… was due: a gap or an \
             overlap in the values"
        ));
    }
    if let Range::Part { lo, hi } = range {
        let want = hi - lo + 1;
        if count as u64 != want {
            return Err(format!(
                "range {range} should hold {want} values but held {count}"
            ));
        }
    }
    Ok(())
}

/// The attribute description asking for the values from `next` on: `size` of them, or, with no
/// size, as many as the server will give.
pub(super) fn ask(attr: &str, next: u64, size: Option<u32>) -> String {
    match size {
        Some(size) => format!("{attr};range={next}-{}", next + u64::from(size) - 1),
        None => format!("{attr};range={next}-*"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(attrs: &[(&str, &[&str])]) -> Entry {
        Entry {
            dn: "cn=g,dc=x".into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.iter().map(|s| (*s).to_owned()).collect()))
                .collect(),
            binary: Vec::new(),
        }
    }

    #[test]
    fn descriptions_split_type_range_and_unknown_options() {
        assert_eq!(
            Description::parse("member;range=0-1499"),
            Description {
                name: "member",
                range: Some(Range::Part { lo: 0, hi: 1499 }),
                unknown: None
            }
        );
        assert_eq!(
            Description::parse("Member;Range=1500-*").range,
            Some(Range::Last { lo: 1500 })
        );
        assert_eq!(Description::parse("member").range, None);
        assert_eq!(Description::parse("member;x-foo").unknown, Some("x-foo"));
        // A malformed or reversed range is not a range roster could continue.
        for bad in [
            "range=5-1",
            "range=a-*",
            "range=0",
            "range=-1-5",
            "range=0-*x",
        ] {
            let text = format!("member;{bad}");
            let d = Description::parse(&text);
            assert_eq!((d.range, d.unknown), (None, Some(bad)), "{bad}");
        }
        assert_eq!(
            Description::parse("member;range=0-9;range=10-*").unknown,
            Some("range=10-*")
        );
    }

    #[test]
    fn take_finds_plain_and_ranged_values_and_refuses_what_it_cannot_read() {
        let mut e = entry(&[("MEMBER", &["a", "b"]), ("cn", &["g"])]);
        assert_eq!(
            take(&mut e, "member"),
            Ok((vec!["a".into(), "b".into()], None))
        );
        assert!(
            e.values("MEMBER").is_empty() && e.attrs.len() == 1,
            "taken out of the entry"
        );

        let mut e = entry(&[("member;range=0-1", &["a", "b"])]);
        assert_eq!(
            take(&mut e, "member"),
            Ok((
                vec!["a".into(), "b".into()],
                Some(Range::Part { lo: 0, hi: 1 })
            ))
        );

        let mut e = entry(&[("cn", &["g"])]);
        assert_eq!(take(&mut e, "member"), Ok((Vec::new(), None)));

        let mut e = entry(&[("member;x-foo", &["a"])]);
        let err = take(&mut e, "member").expect_err("refused");
        assert!(err.contains("x-foo") && err.contains("refusing"), "{err}");

        let mut e = entry(&[("member", &["a"]), ("member;range=0-0", &["a"])]);
        assert!(
            take(&mut e, "member")
                .expect_err("refused")
                .contains("both")
        );

        let mut e = entry(&[]);
        e.binary.push("member".into());
        assert!(
            take(&mut e, "member")
                .expect_err("refused")
                .contains("UTF-8")
        );
    }

    #[test]
    fn chunks_must_start_where_due_and_hold_their_range() {
        assert_eq!(
            check_chunk(Range::Part { lo: 0, hi: 1499 }, 0, 1500),
            Ok(())
        );
        assert_eq!(check_chunk(Range::Last { lo: 1500 }, 1500, 1), Ok(()));
        assert_eq!(check_chunk(Range::Last { lo: 1500 }, 1500, 0), Ok(()));
        assert!(check_chunk(Range::Part { lo: 0, hi: 1499 }, 0, 1499).is_err());
        // A later chunk holds hi - lo + 1 values, no more and no fewer.
        assert_eq!(
            check_chunk(Range::Part { lo: 1500, hi: 2999 }, 1500, 1500),
            Ok(())
        );
        assert!(check_chunk(Range::Part { lo: 1500, hi: 2999 }, 1500, 4500).is_err());
        assert!(check_chunk(Range::Part { lo: 1500, hi: 2999 }, 1500, 1499).is_err());
        assert!(check_chunk(Range::Part { lo: 1600, hi: 2000 }, 1500, 401).is_err());
        assert!(check_chunk(Range::Last { lo: 1400 }, 1500, 3).is_err());
    }

    #[test]
    fn ranges_read_as_the_server_writes_them() {
        // Error messages name the last range read in the server's own notation.
        assert_eq!(Range::Part { lo: 0, hi: 1499 }.to_string(), "0-1499");
        assert_eq!(Range::Last { lo: 1500 }.to_string(), "1500-*");
    }

    #[test]
    fn asks_for_sized_or_open_ranges() {
        assert_eq!(ask("member", 1000, Some(1000)), "member;range=1000-1999");
        assert_eq!(ask("member", 0, Some(1)), "member;range=0-0");
        assert_eq!(ask("member", 1500, None), "member;range=1500-*");
    }
}
