//! The searches the LDAP source makes: paged searches of a subtree, read page by page, and
//! single-entry reads (the rootDSE, a group's next range of members).
//!
//! Every search must end in success: any other result (a size or time limit, a broken
//! connection, a paging control that goes missing or cannot be read) is an error that says the
//! read is incomplete, and the source load fails with it. A page that ends in anything but
//! success ends the search, even if the server also sent a cookie, so a partial page can never
//! be followed by a "successful" end.
//!
//! The paging loop is roster's own rather than ldap3's adapters, for three reasons: it counts
//! the pages it reads; it asks for the next page as soon as a page's last message is in and only
//! then hands that page over, so the server works on page N+1 while roster works on page N; and
//! it reads entries straight out of the parsed messages (moving the value buffers, not copying
//! them) instead of through `SearchEntry::construct`, which builds a map per entry and panics on
//! a malformed message. A malformed message here is an error, never a panic or a guess.

use ldap3::asn1::{PL, StructureTag, TagClass, parse_tag};
use ldap3::controls::RawControl;
use ldap3::{Ldap, LdapResult, ResultEntry, Scope, SearchStream};
use tracing::debug;

use super::{LdapSourceConfig, describe, text_of};
use crate::source::SourceError;

/// How every message about a short read ends.
pub(super) const INCOMPLETE: &str = "the read is incomplete";

/// The OID of the Paged Results control (RFC 2696).
const PAGED_RESULTS: &str = "1.2.840.113556.1.4.319";
/// The protocol op of a SearchResultEntry (RFC 4511, `[APPLICATION 4]`).
const SEARCH_RESULT_ENTRY: u64 = 4;
/// The protocol op of a SearchResultReference (`[APPLICATION 19]`).
const SEARCH_RESULT_REFERENCE: u64 = 19;
/// The protocol op of an IntermediateResponse (`[APPLICATION 25]`).
const INTERMEDIATE_RESPONSE: u64 = 25;

/// What a search is for, to say in messages: the server and the search.
pub(super) struct At<'a> {
    /// The source's config (its timeout and page size).
    pub cfg: &'a LdapSourceConfig,
    /// The server URL.
    pub server: &'a str,
}

impl At<'_> {
    /// An error of this search.
    pub fn error(&self, doing: &str, message: impl Into<String>) -> SourceError {
        self.cfg.error(self.server, doing, message)
    }
}

/// One entry as a search returned it.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Entry {
    /// The DN as the server wrote it.
    pub dn: String,
    /// Each text attribute (its description as the server wrote it) with its values, in the
    /// server's order; of a description sent twice, the later values.
    pub attrs: Vec<(String, Vec<String>)>,
    /// The descriptions of attributes with a value that is not UTF-8 text (`objectGUID`): kept
    /// by name so that a reader can tell "binary" from "absent".
    pub binary: Vec<String>,
}

impl Entry {
    /// The values of an attribute, whatever the case the server spells its name in.
    pub fn values(&self, attr: &str) -> &[String] {
        self.attrs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(attr))
            .map_or(&[], |(_, v)| v.as_slice())
    }

    /// Whether the attribute came with a value that is not text.
    pub fn is_binary(&self, attr: &str) -> bool {
        self.binary.iter().any(|k| k.eq_ignore_ascii_case(attr))
    }
}

/// What to search: the arguments of one paged search.
pub(super) struct Query<'a> {
    /// The search base.
    pub base: &'a str,
    /// The search scope.
    pub scope: Scope,
    /// The filter.
    pub filter: &'a str,
    /// The attributes to return.
    pub attrs: Vec<String>,
}

/// A paged search read one page at a time, for a caller that works on each page while the
/// server sends the next: [`next_page`](Self::next_page) asks for page N+1 as soon as page N's
/// last message is in, then returns page N to be turned into [`Entry`]s one by one.
///
/// Every page must end in success: otherwise `next_page` fails, the pages already returned are
/// a partial read to be thrown away, and there are no more pages.
pub(super) struct Paged<'a> {
    at: &'a At<'a>,
    ldap: &'a mut Ldap,
    query: &'a Query<'a>,
    doing: String,
    /// The page in flight; `None` once the last page has been returned (or the search failed).
    stream: Option<SearchStream<'static, String, Vec<String>>>,
    pages: usize,
    entries: usize,
}

impl<'a> Paged<'a> {
    /// Sends the first page's request.
    pub async fn start(
        at: &'a At<'a>,
        ldap: &'a mut Ldap,
        query: &'a Query<'a>,
    ) -> Result<Self, SourceError> {
        let doing = format!("searching {} for {}", query.base, query.filter);
        let stream = match start_page(at.cfg, ldap, query, Vec::new()).await {
            Ok(stream) => stream,
            Err(e) => return Err(at.error(&doing, describe(&e))),
        };
        Ok(Paged {
            at,
            ldap,
            query,
            doing,
            stream: Some(stream),
            pages: 0,
            entries: 0,
        })
    }

    /// The pages read so far (each is one search request and its result).
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// An error of this search; the message ends by saying the read is incomplete.
    pub fn incomplete(&self, why: &str) -> SourceError {
        self.at.error(&self.doing, format!("{why}; {INCOMPLETE}"))
    }

    /// The next page, `None` after the last one.
    pub async fn next_page(&mut self) -> Result<Option<Page>, SourceError> {
        let Some(mut stream) = self.stream.take() else {
            return Ok(None);
        };
        // Drain the page as fast as it comes: the next request goes out only after its end.
        let mut raw: Vec<ResultEntry> = Vec::new();
        loop {
            match stream.next().await {
                Ok(Some(re)) => raw.push(re),
                Ok(None) => break,
                Err(e) => {
                    let _ = stream.finish().await;
                    return Err(self.incomplete(&describe(&e)));
                }
            }
        }
        let done = stream.finish().await;
        self.pages += 1;
        let before = self.entries;
        self.entries += raw
            .iter()
            .filter(|re| !re.is_ref() && !re.is_intermediate())
            .count();
        if done.rc != 0 {
            return Err(self.incomplete(&format!(
                "{}{} after {} entries",
                result_code(done.rc),
                text_of(&done.text),
                self.entries
            )));
        }
        let cookie = next_cookie(&done).map_err(|why| self.incomplete(&why))?;
        if cookie.is_empty() {
            debug!(base = %self.query.base, entries = self.entries, pages = self.pages, "searched");
        } else if self.entries == before {
            // A server that keeps paging without sending anything would keep us here forever.
            return Err(self.incomplete(&format!(
                "the server sent an empty page {} with a cookie for more",
                self.pages
            )));
        } else {
            match start_page(self.at.cfg, self.ldap, self.query, cookie).await {
                Ok(next) => self.stream = Some(next),
                Err(e) => return Err(self.incomplete(&describe(&e))),
            }
        }
        Ok(Some(Page(raw.into_iter())))
    }
}

/// One page's messages, turned into [`Entry`]s one at a time as the caller takes them, so that
/// each entry is worked on while its bytes are still in the cache. A malformed message is an
/// `Err` saying what is wrong with it: pass it to [`Paged::incomplete`], and read no further.
pub(super) struct Page(std::vec::IntoIter<ResultEntry>);

impl Iterator for Page {
    type Item = Result<Entry, String>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match entry_of(self.0.next()?.0) {
                Ok(Some(e)) => return Some(Ok(e)),
                Ok(None) => {}
                Err(why) => return Some(Err(why)),
            }
        }
    }
}

/// Sends one page's search request: the query with a Paged Results control carrying `cookie`.
async fn start_page(
    cfg: &LdapSourceConfig,
    ldap: &mut Ldap,
    query: &Query<'_>,
    cookie: Vec<u8>,
) -> ldap3::result::Result<SearchStream<'static, String, Vec<String>>> {
    let control: RawControl = ldap3::controls::PagedResults {
        size: cfg.page_size,
        cookie,
    }
    .into();
    ldap.with_timeout(cfg.timeout)
        .with_controls(vec![control])
        .streaming_search(query.base, query.scope, query.filter, query.attrs.clone())
        .await
}

/// The one entry at `dn`, with `attrs`; `None` if the server returned none.
pub(super) async fn entry(
    at: &At<'_>,
    ldap: &mut Ldap,
    dn: &str,
    attrs: &[String],
    doing: &str,
) -> Result<Option<Entry>, SourceError> {
    let incomplete = |why: String| at.error(doing, format!("{why}; {INCOMPLETE}"));
    let mut stream = ldap
        .with_timeout(at.cfg.timeout)
        .streaming_search(dn, Scope::Base, "(objectClass=*)", attrs.to_vec())
        .await
        .map_err(|e| at.error(doing, describe(&e)))?;
    let mut entries = Vec::new();
    loop {
        match stream.next().await {
            Ok(Some(re)) => match entry_of(re.0) {
                Ok(Some(e)) => entries.push(e),
                Ok(None) => {}
                Err(why) => {
                    let _ = stream.finish().await;
                    return Err(incomplete(why));
                }
            },
            Ok(None) => break,
            Err(e) => {
                let _ = stream.finish().await;
                return Err(incomplete(describe(&e)));
            }
        }
    }
    let done = stream.finish().await;
    if done.rc != 0 {
        return Err(incomplete(format!(
            "{}{}",
            result_code(done.rc),
            text_of(&done.text)
        )));
    }
    if entries.len() > 1 {
        return Err(at.error(
            doing,
            format!("a base search returned {} entries", entries.len()),
        ));
    }
    Ok(entries.pop())
}

/// Why a result code ended a search, in words an operator can act on.
fn result_code(rc: u32) -> String {
    match rc {
        3 => "time limit exceeded (result code 3)".to_owned(),
        4 => "the server stopped at its size limit (result code 4, sizeLimitExceeded)".to_owned(),
        11 => "administrative limit exceeded (result code 11); lower page_size".to_owned(),
        32 => "no such object (result code 32): check the base DN".to_owned(),
        rc => format!("result code {rc}"),
    }
}

/// The cookie of the Paged Results control of a page's result: empty when there is no control
/// (a server that does not page sends everything at once) or when this was the last page.
fn next_cookie(done: &LdapResult) -> Result<Vec<u8>, String> {
    let Some(control) = done.ctrls.iter().find(|c| c.1.ctype == PAGED_RESULTS) else {
        return Ok(Vec::new());
    };
    let malformed = || "malformed paged results control in the server's answer".to_owned();
    let value = control.1.val.as_deref().ok_or_else(malformed)?;
    let (_, tag) = parse_tag(value).map_err(|_| malformed())?;
    // realSearchControlValue ::= SEQUENCE { size INTEGER, cookie OCTET STRING }
    let PL::C(mut parts) = tag.payload else {
        return Err(malformed());
    };
    if parts.len() != 2 {
        return Err(malformed());
    }
    match parts.pop() {
        Some(StructureTag {
            payload: PL::P(cookie),
            ..
        }) => Ok(cookie),
        _ => Err(malformed()),
    }
}

/// Reads one search result message: `Some` entry, `None` for a referral or an intermediate
/// message (skipped, as ldap3's adapters skip them), `Err` for a message that does not have
/// the shape RFC 4511 gives it:
/// `SEQUENCE { objectName LDAPDN, attributes SEQUENCE OF SEQUENCE { type, vals SET OF value } }`.
fn entry_of(tag: StructureTag) -> Result<Option<Entry>, String> {
    let malformed = |why: &str| format!("malformed search result entry ({why})");
    if tag.class != TagClass::Application || tag.id != SEARCH_RESULT_ENTRY {
        return if tag.id == INTERMEDIATE_RESPONSE || tag.id == SEARCH_RESULT_REFERENCE {
            Ok(None)
        } else {
            Err(malformed("unexpected message"))
        };
    }
    let PL::C(parts) = tag.payload else {
        return Err(malformed("not a sequence"));
    };
    let mut parts = parts.into_iter();
    let Some(StructureTag {
        payload: PL::P(dn), ..
    }) = parts.next()
    else {
        return Err(malformed("no DN"));
    };
    let dn = String::from_utf8(dn).map_err(|_| malformed("the DN is not UTF-8"))?;
    let Some(StructureTag {
        payload: PL::C(list),
        ..
    }) = parts.next()
    else {
        return Err(malformed("no attribute list"));
    };
    let mut out = Entry {
        dn,
        attrs: Vec::with_capacity(list.len()),
        binary: Vec::new(),
    };
    for a in list {
        let PL::C(pair) = a.payload else {
            return Err(malformed("an attribute is not a sequence"));
        };
        let mut pair = pair.into_iter();
        let (
            Some(StructureTag {
                payload: PL::P(name),
                ..
            }),
            Some(StructureTag {
                payload: PL::C(vals),
                ..
            }),
        ) = (pair.next(), pair.next())
        else {
            return Err(malformed("an attribute is not a type and a set of values"));
        };
        let name =
            String::from_utf8(name).map_err(|_| malformed("an attribute type is not UTF-8"))?;
        let mut values = Vec::with_capacity(vals.len());
        let mut binary = false;
        for v in vals {
            let PL::P(bytes) = v.payload else {
                return Err(malformed("a value is not an octet string"));
            };
            match String::from_utf8(bytes) {
                Ok(s) => values.push(s),
                Err(_) => binary = true,
            }
        }
        // An attribute with any value that is not text is not a text attribute.
        if binary {
            out.attrs.retain(|(k, _)| *k != name);
            if !out.binary.contains(&name) {
                out.binary.push(name);
            }
            continue;
        }
        out.binary.retain(|k| *k != name);
        match out.attrs.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = values,
            None => out.attrs.push((name, values)),
        }
    }
    Ok(Some(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ldap3::asn1::{ASNTag, OctetString, Sequence, Set, Tag};

    fn octets(b: &[u8]) -> Tag {
        Tag::OctetString(OctetString {
            inner: b.to_vec(),
            ..Default::default()
        })
    }

    fn attr(name: &str, vals: &[&[u8]]) -> Tag {
        Tag::Sequence(Sequence {
            inner: vec![
                octets(name.as_bytes()),
                Tag::Set(Set {
                    inner: vals.iter().map(|v| octets(v)).collect(),
                    ..Default::default()
                }),
            ],
            ..Default::default()
        })
    }

    fn message(dn: &[u8], attrs: Vec<Tag>) -> StructureTag {
        Tag::Sequence(Sequence {
            id: SEARCH_RESULT_ENTRY,
            class: TagClass::Application,
            inner: vec![
                octets(dn),
                Tag::Sequence(Sequence {
                    inner: attrs,
                    ..Default::default()
                }),
            ],
        })
        .into_structure()
    }

    #[test]
    fn entries_read_as_ldap3_reads_them_and_binary_attributes_are_named() {
        let tag = message(
            b"cn=G,ou=groups",
            vec![
                attr("cn", &[b"G"]),
                attr("member", &[b"uid=a,ou=p", b"uid=b,ou=p"]),
                attr("objectGUID", &[b"\xff\xd8"]),
                attr("mixed", &[b"text", b"\xff"]),
                attr("Dup", &[b"1"]),
                attr("Dup", &[b"2"]),
            ],
        );
        let theirs = ldap3::SearchEntry::construct(ResultEntry::new(tag.clone()));
        let ours = entry_of(tag).expect("well formed").expect("an entry");
        assert_eq!(ours.dn, theirs.dn);
        assert_eq!(ours.attrs.len(), theirs.attrs.len());
        for (k, v) in &ours.attrs {
            assert_eq!(Some(v), theirs.attrs.get(k), "{k}");
        }
        let mut binary = ours.binary.clone();
        binary.sort();
        let mut bin_theirs: Vec<String> = theirs.bin_attrs.keys().cloned().collect();
        bin_theirs.sort();
        assert_eq!(binary, bin_theirs);
        assert_eq!(ours.values("MEMBER"), ["uid=a,ou=p", "uid=b,ou=p"]);
        assert!(ours.values("objectGUID").is_empty() && ours.values("mixed").is_empty());
        assert!(ours.is_binary("OBJECTGUID") && ours.is_binary("mixed"));
        assert!(!ours.is_binary("member"));
        assert_eq!(ours.values("dup"), ["2"]);
    }

    #[test]
    fn a_description_sent_twice_keeps_its_later_values_whether_text_or_binary() {
        let tag = message(
            b"cn=G",
            vec![
                attr("a", &[b"1"]),
                attr("a", &[b"\xff"]),
                attr("b", &[b"\xff"]),
                attr("b", &[b"2"]),
            ],
        );
        let e = entry_of(tag).expect("well formed").expect("an entry");
        assert!(e.is_binary("a") && e.values("a").is_empty());
        assert!(!e.is_binary("b"));
        assert_eq!(e.values("b"), ["2"]);
    }

    #[test]
    fn malformed_entries_are_errors_not_panics() {
        let no_attrs = Tag::Sequence(Sequence {
            id: SEARCH_RESULT_ENTRY,
            class: TagClass::Application,
            inner: vec![octets(b"cn=x")],
        })
        .into_structure();
        assert!(entry_of(no_attrs).is_err());
        assert!(entry_of(message(b"\xff", vec![])).is_err());
        let bad_value = Tag::Sequence(Sequence {
            id: SEARCH_RESULT_ENTRY,
            class: TagClass::Application,
            inner: vec![
                octets(b"cn=x"),
                Tag::Sequence(Sequence {
                    inner: vec![octets(b"cn")],
                    ..Default::default()
                }),
            ],
        })
        .into_structure();
        assert!(entry_of(bad_value).is_err());
        let other = Tag::Sequence(Sequence {
            id: 5,
            class: TagClass::Application,
            inner: vec![],
        })
        .into_structure();
        assert!(entry_of(other).is_err());
        let referral = Tag::Sequence(Sequence {
            id: SEARCH_RESULT_REFERENCE,
            class: TagClass::Application,
            inner: vec![octets(b"ldap://elsewhere")],
        })
        .into_structure();
        assert_eq!(entry_of(referral), Ok(None));
    }

    #[test]
    fn the_cookie_is_read_from_the_control_and_a_bad_control_is_an_error() {
        let with = |val: Option<Vec<u8>>| LdapResult {
            rc: 0,
            matched: String::new(),
            text: String::new(),
            refs: Vec::new(),
            ctrls: vec![ldap3::controls::Control(
                None,
                RawControl {
                    ctype: PAGED_RESULTS.to_owned(),
                    crit: false,
                    val,
                },
            )],
        };
        let encoded = |cookie: &[u8]| {
            let raw: RawControl = ldap3::controls::PagedResults {
                size: 7,
                cookie: cookie.to_vec(),
            }
            .into();
            raw.val
        };
        assert_eq!(next_cookie(&with(encoded(b"abc"))), Ok(b"abc".to_vec()));
        assert_eq!(next_cookie(&with(encoded(b""))), Ok(Vec::new()));
        assert!(next_cookie(&with(None)).is_err());
        assert!(next_cookie(&with(Some(vec![0x30, 0x05, 0x02]))).is_err());
        let mut none = with(None);
        none.ctrls.clear();
        assert_eq!(next_cookie(&none), Ok(Vec::new()));
    }
}
