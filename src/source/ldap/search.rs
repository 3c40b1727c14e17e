//! The searches the LDAP source makes: paged searches of a subtree, counted page by page, and
//! single-entry reads (the rootDSE, a group's next range of members).
//!
//! Every search must end in success: any other result (a size or time limit, a broken
//! connection, a paging control that goes missing) is an error that says the read is
//! incomplete, and the source load fails with it.

use ldap3::controls::{Control, ControlType, PagedResults};
use ldap3::{Ldap, Scope, SearchEntry};
use tracing::debug;

use super::{LdapSourceConfig, describe, text_of};
use crate::source::SourceError;

/// How every message about a short read ends.
pub(super) const INCOMPLETE: &str = "the read is incomplete";

/// The entries of a search and how many pages they came in.
#[derive(Debug, Default)]
pub(super) struct Searched {
    /// Every entry, in the order the server sent them.
    pub entries: Vec<SearchEntry>,
    /// Pages read (1 for a search that fit one page).
    pub pages: usize,
}

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

/// All entries under `base` that match `filter`, read with the Simple Paged Results control
/// page by page; an error unless every page ended in success.
pub(super) async fn paged(
    at: &At<'_>,
    ldap: &mut Ldap,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[String],
) -> Result<Searched, SourceError> {
    let doing = format!("searching {base} for {filter}");
    let mut out = Searched::default();
    let mut cookie = Vec::new();
    loop {
        let control = PagedResults {
            size: at.cfg.page_size,
            cookie: std::mem::take(&mut cookie),
        };
        let before = out.entries.len();
        let result = one_search(
            at,
            ldap.with_timeout(at.cfg.timeout).with_controls(control),
            base,
            scope,
            filter,
            attrs,
            &mut out.entries,
            &doing,
        )
        .await?;
        out.pages += 1;
        let next = result.ctrls.iter().find_map(|c| match c {
            Control(Some(ControlType::PagedResults), raw) => {
                Some(raw.parse::<PagedResults>().cookie)
            }
            _ => None,
        });
        match next {
            Some(c) if !c.is_empty() => cookie = c,
            // The last page: an empty cookie, or (a server that does not page) no control.
            _ => break,
        }
        // A server that keeps paging without sending anything would keep us here forever.
        if out.entries.len() == before {
            return Err(at.error(
                &doing,
                format!(
                    "the server sent an empty page {} with a cookie for more; the read is \
                     incomplete",
                    out.pages
                ),
            ));
        }
    }
    debug!(%base, entries = out.entries.len(), pages = out.pages, "searched");
    Ok(out)
}

/// The one entry at `dn`, with `attrs`; `None` if the server returned none.
pub(super) async fn entry(
    at: &At<'_>,
    ldap: &mut Ldap,
    dn: &str,
    attrs: &[String],
    doing: &str,
) -> Result<Option<SearchEntry>, SourceError> {
    let mut entries = Vec::new();
    one_search(
        at,
        ldap.with_timeout(at.cfg.timeout),
        dn,
        Scope::Base,
        "(objectClass=*)",
        attrs,
        &mut entries,
        doing,
    )
    .await?;
    if entries.len() > 1 {
        return Err(at.error(
            doing,
            format!("a base search returned {} entries", entries.len()),
        ));
    }
    Ok(entries.pop())
}

/// One search operation: its entries appended to `into`, its final result returned when it is
/// success.
#[allow(clippy::too_many_arguments)]
async fn one_search(
    at: &At<'_>,
    ldap: &mut Ldap,
    base: &str,
    scope: Scope,
    filter: &str,
    attrs: &[String],
    into: &mut Vec<SearchEntry>,
    doing: &str,
) -> Result<ldap3::LdapResult, SourceError> {
    let mut stream = ldap
        .streaming_search(base, scope, filter, attrs)
        .await
        .map_err(|e| at.error(doing, describe(&e)))?;
    loop {
        match stream.next().await {
            Ok(Some(entry)) if entry.is_ref() || entry.is_intermediate() => {}
            Ok(Some(entry)) => into.push(SearchEntry::construct(entry)),
            Ok(None) => break,
            Err(e) => {
                let _ = stream.finish().await;
                return Err(at.error(doing, format!("{}; {INCOMPLETE}", describe(&e))));
            }
        }
    }
    let done = stream.finish().await;
    if done.rc != 0 {
        let why = match done.rc {
            3 => "time limit exceeded (result code 3)".to_owned(),
            4 => {
                "the server stopped at its size limit (result code 4, sizeLimitExceeded)".to_owned()
            }
            11 => "administrative limit exceeded (result code 11); lower page_size".to_owned(),
            32 => "no such object (result code 32): check the base DN".to_owned(),
            rc => format!("result code {rc}"),
        };
        let after = match into.len() {
            0 => String::new(),
            n => format!(" after {n} entries"),
        };
        return Err(at.error(
            doing,
            format!("{why}{}{after}; {INCOMPLETE}", text_of(&done.text)),
        ));
    }
    Ok(done)
}
