//! The VinylDNS server's side of AWS Signature Version 4, for the simulator: how the server reads
//! an `Authorization` header, rebuilds the canonical request from what it received, and checks
//! the signature with an HMAC-SHA256 chain.
//!
//! Written from the server's authenticator, not from roster's signer, so that a misreading in
//! one is caught by the other. Where the server differs from the AWS rules, this follows the
//! server:
//! - the canonical URI is the received path decoded and rendered again as the server's HTTP
//!   layer renders a path: every segment singly percent-encoded, with the unreserved characters,
//!   `! $ & ' ( ) * + , ; =`, `:` and `@` left literal; dot segments and empty segments are
//!   dropped. A client that encodes `@` and then lets its signer encode the path once more signs
//!   `%2540`, which never matches;
//! - the query is decoded (`+` as a space) and every name and value encoded again, strictly;
//! - the region and service are whatever the request's own credential scope names;
//! - `X-Amz-Date` (else `Date`) gives the time; there is no clock-skew check;
//! - a signed header the request lacks is left out of the canonical headers, not refused.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The signature algorithm the server accepts.
const SCHEME: &str = "AWS4-HMAC-SHA256";

/// Why the server refused a request's authentication.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// No `Authorization` header.
    #[error("Authorization header not found")]
    Missing,
    /// An `Authorization` header that does not match the server's pattern.
    #[error("Authorization header could not be parsed")]
    Unparsable,
    /// A header that names no access key.
    #[error("accessKey not found")]
    NoAccessKey,
    /// An access key the server does not know.
    #[error("Account with accessKey {0} specified was not found")]
    UnknownKey(String),
    /// The signature does not match the request.
    #[error("Request signature could not be validated")]
    BadSignature,
    /// Neither `X-Amz-Date` nor `Date` can be read: the server fails with a 500 here.
    #[error("no readable X-Amz-Date or Date header")]
    NoDate,
}

/// A request as the server received it.
#[derive(Clone, Copy, Debug)]
pub struct Incoming<'a> {
    /// The method.
    pub method: &'a str,
    /// The path as received (still percent-encoded).
    pub path: &'a str,
    /// The query as received, without `?`.
    pub query: Option<&'a str>,
    /// Every header as `(name, value)`, in the order received.
    pub headers: &'a [(String, String)],
    /// The body.
    pub body: &'a [u8],
}

impl Incoming<'_> {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }
}

/// The parts of an `Authorization` header the server reads.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Parsed<'h> {
    access_key: &'h str,
    scope: &'h str,
    signed_headers: &'h str,
    signature: &'h str,
}

/// Reads `AWS4-HMAC-SHA256 Credential=AK/yyyymmdd/region/service/aws4_request,
/// SignedHeaders=a;b, Signature=<64 lower-case hex>` as the server's pattern does: spaces
/// are allowed only before `Credential`, `SignedHeaders` and `Signature`, and nothing may
/// follow the signature.
fn parse(header: &str) -> Option<Parsed<'_>> {
    let rest = header.strip_prefix(SCHEME)?.trim_start_matches(' ');
    let rest = rest.strip_prefix("Credential=")?;
    let (access_key, rest) = rest.split_once('/')?;
    let (scope, rest) = rest.split_once(',')?;
    let parts: Vec<&str> = scope.split('/').collect();
    let [date, _region, _service, "aws4_request"] = parts.as_slice() else {
        return None;
    };
    if date.len() != 8 || !date.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let rest = rest
        .trim_start_matches(' ')
        .strip_prefix("SignedHeaders=")?;
    let (signed_headers, rest) = rest.split_once(',')?;
    if signed_headers.is_empty() {
        return None;
    }
    let signature = rest.trim_start_matches(' ').strip_prefix("Signature=")?;
    let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
    if signature.len() != 64 || !signature.bytes().all(hex) {
        return None;
    }
    Some(Parsed {
        access_key,
        scope,
        signed_headers,
        signature,
    })
}

/// Authenticates a request as the server does, in the server's order: the header, its form,
/// the access key, then the signature. `secret_of` gives a known access key's secret. Returns the
/// access key.
pub fn authenticate(
    req: &Incoming<'_>,
    secret_of: impl Fn(&str) -> Option<String>,
) -> Result<String, AuthFailure> {
    let header = req.header("authorization").ok_or(AuthFailure::Missing)?;
    let parsed = parse(header).ok_or(AuthFailure::Unparsable)?;
    if parsed.access_key.is_empty() {
        return Err(AuthFailure::NoAccessKey);
    }
    let secret = secret_of(parsed.access_key)
        .ok_or_else(|| AuthFailure::UnknownKey(parsed.access_key.to_owned()))?;
    let date = request_time(req).ok_or(AuthFailure::NoDate)?;
    let creq = canonical_request(req, parsed.signed_headers);
    let to_sign = format!(
        "{SCHEME}\n{date}\n{}\n{}",
        parsed.scope,
        hex(&Sha256::digest(creq.as_bytes()))
    );
    let key = parsed
        .scope
        .split('/')
        .fold(format!("AWS4{secret}").into_bytes(), |k, part| {
            hmac(&k, part.as_bytes())
        });
    if hex(&hmac(&key, to_sign.as_bytes())) == parsed.signature {
        Ok(parsed.access_key.to_owned())
    } else {
        Err(AuthFailure::BadSignature)
    }
}

/// The canonical request the server builds: method, canonical URI, canonical query, the signed
/// headers it finds (sorted, `name:value`), an empty line, the signed-header list as received,
/// and the body's SHA-256.
pub fn canonical_request(req: &Incoming<'_>, signed_headers: &str) -> String {
    let mut names: Vec<String> = signed_headers
        .split(';')
        .map(str::to_ascii_lowercase)
        .collect();
    names.sort();
    names.dedup();
    let mut lines = vec![
        req.method.to_owned(),
        canonical_uri(req.path),
        canonical_query(req.query.unwrap_or("")),
    ];
    for name in &names {
        let value = match name.as_str() {
            "content-type" => Some(content_type(req.header("content-type"))),
            "content-length" => Some(req.body.len().to_string()),
            other => req.header(other).map(str::to_owned),
        };
        if let Some(v) = value {
            lines.push(format!("{name}:{v}"));
        }
    }
    lines.push(String::new());
    lines.push(signed_headers.to_owned());
    // The server reads the body as UTF-8 text and hashes that text's bytes.
    let body = String::from_utf8_lossy(req.body);
    lines.push(hex(&Sha256::digest(body.as_bytes())));
    lines.join("\n")
}

/// The entity's content type as the server's HTTP layer renders it: the media type in lower
/// case and a charset in upper case; no header means `application/octet-stream`.
fn content_type(header: Option<&str>) -> String {
    let Some(h) = header else {
        return "application/octet-stream".to_owned();
    };
    let mut parts = h.split(';').map(str::trim);
    let mut out = parts.next().unwrap_or_default().to_ascii_lowercase();
    for p in parts {
        match p.split_once('=') {
            Some((k, v)) if k.trim().eq_ignore_ascii_case("charset") => {
                out.push_str("; charset=");
                out.push_str(&v.trim().to_ascii_uppercase());
            }
            Some((k, v)) => {
                out.push_str(&format!("; {}={}", k.trim(), v.trim()));
            }
            None => {}
        }
    }
    out
}

/// The canonical URI of a received path: decoded, each segment rendered again as the server's
/// HTTP layer renders it, then normalised (no `.` or empty segments, `x/..` removed).
pub fn canonical_uri(raw: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    for seg in raw.split('/') {
        let seg = render_segment(&decode(seg, false));
        match seg.as_str() {
            "" | "." => {}
            ".." => {
                if out.last().is_some_and(|s| s != "..") {
                    out.pop();
                } else {
                    out.push(seg);
                }
            }
            _ => out.push(seg),
        }
    }
    let trailing = raw.len() > 1 && raw.ends_with('/');
    let mut path = format!("/{}", out.join("/"));
    if trailing && path.len() > 1 {
        path.push('/');
    }
    path
}

/// The canonical query: every `name=value` decoded (`+` is a space), encoded again strictly,
/// sorted, without repeats.
pub fn canonical_query(raw: &str) -> String {
    let mut pairs: Vec<(String, String)> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (strict(&decode(k, true)), strict(&decode(v, true)))
        })
        .collect();
    pairs.sort();
    pairs.dedup();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Percent-decodes (and, in a query, reads `+` as a space); a `%` not followed by two hex
/// digits stays as it is.
fn decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hexval = |c: u8| (c as char).to_digit(16).and_then(|d| u8::try_from(d).ok());
        match b[i] {
            b'%' if i + 2 < b.len() => match (hexval(b[i + 1]), hexval(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A path segment as the server renders it: unreserved characters, sub-delimiters, `:` and `@`
/// literal, every other byte of the UTF-8 form as `%XX`.
fn render_segment(s: &str) -> String {
    let keep = |c: u8| c.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&c);
    encode_with(s, keep)
}

/// Strict encoding: only `A-Z a-z 0-9 - . _ ~` literal.
fn strict(s: &str) -> String {
    encode_with(s, |c| c.is_ascii_alphanumeric() || b"-._~".contains(&c))
}

fn encode_with(s: &str, keep: impl Fn(u8) -> bool) -> String {
    let mut out = String::with_capacity(s.len());
    for &c in s.as_bytes() {
        if keep(c) {
            out.push(char::from(c));
        } else {
            out.push_str(&format!("%{c:02X}"));
        }
    }
    out
}

/// The request's time as the server prints it (`yyyyMMdd'T'HHmmss'Z'`), from `X-Amz-Date`, else
/// from `Date` in the same form.
fn request_time(req: &Incoming<'_>) -> Option<String> {
    let raw = req.header("x-amz-date").or_else(|| req.header("date"))?;
    let b = raw.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|s| s.iter().all(u8::is_ascii_digit));
    let ok = b.len() == 16 && digits(0..8) && b[8] == b'T' && digits(9..15) && b[15] == b'Z';
    ok.then(|| raw.to_owned())
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // An HMAC takes a key of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn the_canonical_uri_is_the_path_as_the_server_renders_it() {
        assert_eq!(
            canonical_uri("/users/jane%40corp.com"),
            "/users/jane@corp.com"
        );
        assert_eq!(
            canonical_uri("/users/jane@corp.com"),
            "/users/jane@corp.com"
        );
        assert_eq!(canonical_uri("/users/o'neil"), "/users/o'neil");
        assert_eq!(canonical_uri("/users/o%27neil"), "/users/o'neil");
        assert_eq!(canonical_uri("/users/a%20b"), "/users/a%20b");
        assert_eq!(canonical_uri("/users/a+b"), "/users/a+b");
        assert_eq!(canonical_uri("/users/%C3%A9"), "/users/%C3%A9");
        assert_eq!(canonical_uri("/users/%c3%a9"), "/users/%C3%A9");
        assert_eq!(canonical_uri("/users/a%2Fb"), "/users/a%2Fb");
        // Encoded twice, the name is another one.
        assert_eq!(
            canonical_uri("/users/jane%2540corp.com"),
            "/users/jane%2540corp.com"
        );
        assert_eq!(canonical_uri("/groups/./x/../y"), "/groups/y");
        assert_eq!(canonical_uri("/"), "/");
    }

    #[test]
    fn the_canonical_query_is_decoded_and_encoded_again() {
        assert_eq!(canonical_query("b=1&a=x+y"), "a=x%20y&b=1");
        assert_eq!(canonical_query("a=%2A%7e"), "a=%2A~");
        assert_eq!(canonical_query(""), "");
        assert_eq!(canonical_query("flag"), "flag=");
    }

    #[test]
    fn the_header_is_read_as_the_server_reads_it() {
        let sig = "a".repeat(64);
        let h = format!(
            "AWS4-HMAC-SHA256 Credential=AK/20250102/us-east-1/VinylDNS/aws4_request, \
             SignedHeaders=host;x-amz-date, Signature={sig}"
        );
        let p = parse(&h).unwrap();
        assert_eq!(p.access_key, "AK");
        assert_eq!(p.scope, "20250102/us-east-1/VinylDNS/aws4_request");
        assert_eq!(p.signed_headers, "host;x-amz-date");
        assert!(
            parse(&h.to_uppercase()).is_none(),
            "upper-case hex is refused"
        );
        assert!(parse(&format!("{h} ")).is_none(), "nothing may follow");
        assert!(parse("Bearer x").is_none());
        let no_key = h.replace("Credential=AK/", "Credential=/");
        assert_eq!(parse(&no_key).unwrap().access_key, "");
    }

    #[test]
    fn a_stray_percent_is_kept() {
        assert_eq!(decode("a%zz%", false), "a%zz%");
        assert_eq!(decode("%41%4", false), "A%4");
    }
}
