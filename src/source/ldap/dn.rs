//! Distinguished names as directories write them (RFC 4514): parsing, one canonical spelling
//! for comparing DNs a directory spells differently, and the fast paths that let a large load
//! skip the parser for the plain DNs nearly every directory uses.

/// Whether `dn` lies under `base` (both normalised).
pub(super) fn is_under(dn: &str, base: &str) -> bool {
    base.is_empty()
        || dn == base
        || (dn.len() > base.len()
            && dn.ends_with(base)
            && dn.as_bytes()[dn.len() - base.len() - 1] == b',')
}

/// The only character a DN treats as insignificant around its separators (RFC 4514): a tab or
/// any other Unicode space is part of a value or type, so every trim here is of this alone.
const SPACE_CHAR: char = ' ';

/// One RDN component: attribute type and value, unescaped.
type Ava = (String, String);

/// Parses a DN string (RFC 4514) into RDNs of attribute-value pairs, unescaping values.
pub(super) fn parse_dn(dn: &str) -> Option<Vec<Vec<Ava>>> {
    let mut rdns = Vec::new();
    let mut rdn = Vec::new();
    let mut chars = dn.trim_matches(SPACE_CHAR).chars().peekable();
    if chars.peek().is_none() {
        return Some(rdns);
    }
    loop {
        // Attribute type.
        let mut attr = String::new();
        let mut has_value = false;
        for c in chars.by_ref() {
            if c == '=' {
                has_value = true;
                break;
            }
            attr.push(c);
        }
        let attr = attr.trim_matches(SPACE_CHAR).to_owned();
        if attr.is_empty() || !has_value {
            return None;
        }
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        // Value, up to an unescaped `,`, `+` or the end.
        let mut bytes: Vec<u8> = Vec::new();
        let mut end = None;
        let mut trailing_spaces = 0;
        let quoted = chars.peek() == Some(&'"');
        if quoted {
            chars.next();
        }
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    let a = chars.next()?;
                    if a.is_ascii_hexdigit() {
                        let b = chars.next()?;
                        let byte = u8::from_str_radix(&format!("{a}{b}"), 16).ok()?;
                        bytes.push(byte);
                    } else {
                        let mut buf = [0; 4];
                        bytes.extend_from_slice(a.encode_utf8(&mut buf).as_bytes());
                    }
                    trailing_spaces = 0;
                }
                '"' if quoted => {
                    // Skip to the separator.
                    for c in chars.by_ref() {
                        if c == ',' || c == ';' || c == '+' {
                            end = Some(c);
                            break;
                        }
                    }
                    break;
                }
                ',' | ';' | '+' if !quoted => {
                    end = Some(c);
                    break;
                }
                c => {
                    trailing_spaces = if c == ' ' { trailing_spaces + 1 } else { 0 };
                    let mut buf = [0; 4];
                    bytes.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                }
            }
        }
        bytes.truncate(bytes.len() - trailing_spaces);
        let value = String::from_utf8(bytes).ok()?;
        rdn.push((attr, value));
        match end {
            Some('+') => {}
            Some(_) => {
                rdns.push(std::mem::take(&mut rdn));
                while chars.peek() == Some(&' ') {
                    chars.next();
                }
            }
            None => {
                rdns.push(rdn);
                return Some(rdns);
            }
        }
    }
}

/// A DN in one canonical spelling, for comparing DNs that a directory spells differently:
/// attribute types and values lowercased, escapes resolved and re-applied one way, spaces around
/// separators dropped, the parts of a multi-valued RDN sorted. `None` if it does not parse.
pub(super) fn normalize_dn(dn: &str) -> Option<String> {
    if is_plain(dn) {
        return normalize_plain(dn);
    }
    let rdns = parse_dn(dn)?;
    let parts: Vec<String> = rdns
        .into_iter()
        .map(|rdn| {
            let mut avas: Vec<String> = rdn
                .into_iter()
                .map(|(a, v)| format!("{}={}", a.to_lowercase(), escape(&v.to_lowercase())))
                .collect();
            avas.sort();
            avas.join("+")
        })
        .collect();
    Some(parts.join(","))
}

/// The first RDN's attribute type and value (unescaped, as written), if it has exactly one.
pub(super) fn first_rdn(dn: &str) -> Option<(String, String)> {
    if is_plain(dn) {
        return plain_first_rdn(dn).map(|(a, v)| (a.to_owned(), v.to_owned()));
    }
    let mut rdns = parse_dn(dn)?;
    if rdns.is_empty() {
        return None;
    }
    let mut first = rdns.swap_remove(0);
    (first.len() == 1).then(|| first.swap_remove(0))
}

/// Whether a DN needs none of the parser's care: ASCII, and no escapes, quotes, multi-valued RDNs,
/// or characters the canonical form escapes. Nearly every DN in a directory is such a DN, and
/// reading them without allocating per character is what keeps a large load fast.
pub(super) fn is_plain(dn: &str) -> bool {
    shape(dn).plain
}

/// What one pass over a DN's bytes tells the member path, so that a million member DNs are each
/// read once rather than once per question.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Shape {
    /// [`is_plain`].
    pub plain: bool,
    /// Whether it contains a space.
    pub space: bool,
    /// Whether some RDN starts with `=` (an empty attribute type: not a DN).
    pub empty_attr: bool,
    /// Where the first `,` is (the length if nowhere).
    comma: usize,
    /// Where the first `=` is (the length if nowhere).
    eq: usize,
}

impl Shape {
    /// [`plain_first_rdn`] of the DN this is the shape of, from the positions found.
    pub fn first_rdn<'a>(&self, dn: &'a str) -> Option<(&'a str, &'a str)> {
        (self.eq < self.comma).then(|| {
            (
                dn[..self.eq].trim_matches(SPACE_CHAR),
                dn[self.eq + 1..self.comma].trim_matches(SPACE_CHAR),
            )
        })
    }
}

/// What a byte is to [`shape`], as bits: not ASCII or a character the canonical form escapes
/// (the DN is not plain), a space, a comma, an equals sign.
const SPECIAL: u8 = 1;
const SPACE: u8 = 2;
const COMMA: u8 = 4;
const EQUALS: u8 = 8;

/// The bits of every byte, looked up rather than matched: the loop over a million DNs is tight,
/// and only commas and equals signs take a branch.
const BYTES: [u8; 256] = {
    let mut t = [0; 256];
    let mut b = 0x80;
    while b < 256 {
        t[b] = SPECIAL;
        b += 1;
    }
    t[b',' as usize] = COMMA;
    t[b'=' as usize] = EQUALS;
    t[b' ' as usize] = SPACE;
    let special = [b'\\', b'"', b'+', b';', b'#', b'<', b'>'];
    let mut i = 0;
    while i < special.len() {
        t[special[i] as usize] = SPECIAL;
        i += 1;
    }
    t
};

/// [`Shape`] of a DN, in one pass over its bytes.
pub(super) fn shape(dn: &str) -> Shape {
    let (mut rdns_ok, mut empty_attr) = (true, false);
    let (mut comma, mut eq) = (dn.len(), dn.len());
    // Every bit seen, the `=` signs in the current RDN (a plain DN has exactly one in each),
    // and where the current RDN starts.
    let (mut seen, mut eqs, mut rdn_start) = (0u8, 0u32, 0usize);
    for (i, &b) in dn.as_bytes().iter().enumerate() {
        let bits = BYTES[usize::from(b)];
        seen |= bits;
        if bits == COMMA {
            rdns_ok &= eqs == 1;
            eqs = 0;
            rdn_start = i + 1;
            comma = comma.min(i);
        } else if bits == EQUALS {
            empty_attr |= i == rdn_start;
            eqs += 1;
            eq = eq.min(i);
        }
    }
    let plain = rdns_ok && eqs == 1 && seen & SPECIAL == 0;
    // Blank is plain too: the plain path reads it as the empty DN, as the parser does.
    Shape {
        plain: plain || dn.trim_matches(SPACE_CHAR).is_empty(),
        space: seen & SPACE != 0,
        empty_attr,
        comma,
        eq,
    }
}

/// The user key of a member DN that is plainly a user's: a plain DN without spaces, whose first
/// RDN is `key_attr=value`, under `user_base`, and whose first attribute starts no group's DN.
/// `None` means "ask the full path", never "not a user".
#[cfg(test)]
fn quick_user_key<'a>(
    dn: &'a str,
    key_attr: &str,
    user_base: &str,
    group_rdn_attrs: &[String],
) -> Option<&'a str> {
    quick_user_key_shaped(dn, shape(dn), key_attr, user_base, group_rdn_attrs)
}

/// [`quick_user_key`] of a DN whose [`Shape`] is known.
pub(super) fn quick_user_key_shaped<'a>(
    dn: &'a str,
    shape: Shape,
    key_attr: &str,
    user_base: &str,
    group_rdn_attrs: &[String],
) -> Option<&'a str> {
    if shape.space || !shape.plain {
        return None;
    }
    let (attr, value) = shape.first_rdn(dn)?;
    if !attr.eq_ignore_ascii_case(key_attr)
        || group_rdn_attrs.iter().any(|g| g.eq_ignore_ascii_case(attr))
    {
        return None;
    }
    // Without spaces, a plain DN's normal form is its lowercase: compare the suffix so.
    let under = user_base.is_empty()
        || (dn.len() > user_base.len()
            && dn.as_bytes()[dn.len() - user_base.len() - 1] == b','
            && dn[dn.len() - user_base.len()..].eq_ignore_ascii_case(user_base));
    under.then_some(value)
}

/// [`normalize_dn`] into a reused buffer, allocating nothing for a plain DN without spaces (whose
/// normal form is its lowercase). `false` if the DN does not parse.
pub(super) fn normalize_into(dn: &str, buf: &mut String) -> bool {
    let dn = dn.trim_matches(SPACE_CHAR);
    normalize_shaped(dn, shape(dn), buf)
}

/// [`normalize_into`] of a DN whose [`Shape`] is known.
pub(super) fn normalize_shaped(dn: &str, shape: Shape, buf: &mut String) -> bool {
    buf.clear();
    // The shape is of the DN as given; the fast path needs it trimmed, which it nearly always is.
    let trimmed = dn.trim_matches(SPACE_CHAR);
    if trimmed.len() != dn.len() {
        return normalize_into(trimmed, buf);
    }
    if !shape.space && shape.plain && !shape.empty_attr {
        buf.push_str(dn);
        buf.make_ascii_lowercase();
        return true;
    }
    match normalize_dn(dn) {
        Some(n) => {
            buf.push_str(&n);
            true
        }
        None => false,
    }
}

/// [`first_rdn`] of a DN for which [`is_plain`] holds, borrowed.
pub(super) fn plain_first_rdn(dn: &str) -> Option<(&str, &str)> {
    let (a, v) = dn.split(',').next()?.split_once('=')?;
    Some((a.trim_matches(SPACE_CHAR), v.trim_matches(SPACE_CHAR)))
}

/// [`normalize_dn`] of a DN for which [`is_plain`] holds: the same result, without the parser.
fn normalize_plain(dn: &str) -> Option<String> {
    let dn = dn.trim_matches(SPACE_CHAR);
    // Without spaces there is nothing to trim: lowercasing is the whole work.
    if !dn.contains(' ') && !dn.is_empty() {
        return dn
            .split(',')
            .all(|rdn| !rdn.starts_with('='))
            .then(|| dn.to_ascii_lowercase());
    }
    let mut out = String::with_capacity(dn.len());
    if dn.is_empty() {
        return Some(out);
    }
    for (i, rdn) in dn.split(',').enumerate() {
        let (a, v) = rdn.split_once('=')?;
        let a = a.trim_matches(SPACE_CHAR);
        if a.is_empty() {
            return None;
        }
        if i > 0 {
            out.push(',');
        }
        out.extend(a.chars().map(|c| c.to_ascii_lowercase()));
        out.push('=');
        out.extend(
            v.trim_matches(SPACE_CHAR)
                .chars()
                .map(|c| c.to_ascii_lowercase()),
        );
    }
    Some(out)
}

fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for (i, c) in v.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i + 1 == v.chars().count() => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_that_differ_in_case_spacing_and_escaping_normalise_alike() {
        let a = normalize_dn("CN=Smith\\, John, OU=People,dc=Example,dc=org");
        let b = normalize_dn("cn=smith\\2C john,ou=people,DC=example,DC=ORG");
        assert_eq!(a, b);
        assert_eq!(
            a.as_deref(),
            Some("cn=smith\\, john,ou=people,dc=example,dc=org")
        );
    }

    #[test]
    fn non_ascii_and_hex_escapes_decode() {
        assert_eq!(
            normalize_dn("cn=Zo\\C3\\AB,ou=people"),
            normalize_dn("CN=ZOË,ou=People")
        );
        assert_eq!(first_rdn("uid=Zoë+cn=x,ou=p"), None);
        assert_eq!(
            first_rdn("uid=j\\,doe,ou=people,dc=example,dc=org"),
            Some(("uid".into(), "j,doe".into()))
        );
    }

    #[test]
    fn malformed_dns_are_rejected_not_guessed() {
        assert_eq!(parse_dn("no-equals-sign"), None);
        assert_eq!(parse_dn("cn=a\\"), None);
        assert_eq!(
            parse_dn("cn=a\\zq"),
            Some(vec![vec![("cn".into(), "azq".into())]])
        );
    }

    #[test]
    fn the_plain_path_agrees_with_the_parser() {
        for dn in [
            "uid=user00001,ou=people,dc=example,dc=org",
            " UID = User00001 , OU=People ,dc=Example,dc=org ",
            "cn=Group 7,ou=groups,dc=example,dc=org",
            "",
            "cn=",
        ] {
            assert!(is_plain(dn), "{dn}");
            let slow = parse_dn(dn).map(|rdns| {
                rdns.into_iter()
                    .map(|rdn| {
                        rdn.into_iter()
                            .map(|(a, v)| {
                                format!("{}={}", a.to_lowercase(), escape(&v.to_lowercase()))
                            })
                            .collect::<Vec<_>>()
                            .join("+")
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            });
            assert_eq!(normalize_plain(dn), slow, "{dn:?}");
        }
        assert!(!is_plain("cn=a\\,b,dc=x") && !is_plain("cn=Zoë") && !is_plain("cn=a+uid=b"));
        assert!(!is_plain("cn=a=b,dc=x"));
        let mut buf = String::new();
        for dn in [
            "UID=A,dc=X",
            " uid = a , dc=x",
            "cn=Zo\\C3\\AB,dc=x",
            "cn=a\\,b,dc=x",
            "=x",
        ] {
            let ok = normalize_into(dn, &mut buf);
            assert_eq!(ok.then(|| buf.clone()), normalize_dn(dn), "{dn:?}");
        }
    }

    #[test]
    fn quick_keys_only_for_plain_user_dns_under_the_base() {
        let base = "ou=people,dc=x";
        let cn = ["cn".to_owned()];
        assert_eq!(
            quick_user_key("UID=Ann,OU=People,DC=x", "uid", base, &cn),
            Some("Ann")
        );
        assert_eq!(
            quick_user_key("uid=ann,ou=others,dc=x", "uid", base, &cn),
            None
        );
        assert_eq!(
            quick_user_key("uid=ann,xou=people,dc=x", "uid", base, &cn),
            None
        );
        assert_eq!(
            quick_user_key("cn=ann,ou=people,dc=x", "cn", base, &cn),
            None
        );
        assert_eq!(
            quick_user_key("uid=a\\,b,ou=people,dc=x", "uid", base, &cn),
            None
        );
        assert_eq!(
            quick_user_key("uid=ann, ou=people,dc=x", "uid", base, &cn),
            None
        );
    }

    #[test]
    fn only_a_space_is_insignificant_around_separators() {
        // A tab or an ideographic space is part of the type or value, on every path alike.
        assert_eq!(normalize_dn("a\t=b"), Some("a\t=b".to_owned()));
        assert_eq!(normalize_dn(" a = B "), Some("a=b".to_owned()));
        let mut buf = String::new();
        assert!(normalize_into("\u{3000}a\t=", &mut buf));
        assert_eq!(Some(buf), normalize_dn("\u{3000}a\t="));
    }

    #[test]
    fn multi_valued_rdns_compare_in_any_order() {
        assert_eq!(
            normalize_dn("cn=a+uid=b,dc=x"),
            normalize_dn("uid=B+cn=A,dc=x")
        );
    }

    #[test]
    fn membership_under_a_base_is_by_whole_rdns() {
        assert!(is_under("uid=a,ou=people,dc=x", "ou=people,dc=x"));
        assert!(!is_under("uid=a,ou=otherpeople,dc=x", "people,dc=x"));
    }

    /// [`is_plain`] by the letter of its definition: the reference for [`shape`].
    fn plain_by_the_letter(dn: &str) -> bool {
        dn.trim_matches(SPACE_CHAR).is_empty()
            || (dn.bytes().all(|b| {
                b.is_ascii() && !matches!(b, b'\\' | b'"' | b'+' | b';' | b'#' | b'<' | b'>')
            }) && dn
                .split(',')
                .all(|rdn| rdn.bytes().filter(|b| *b == b'=').count() == 1))
    }

    proptest::proptest! {
        #[test]
        fn shape_agrees_with_the_questions_it_answers_for_any_string(
            dn in "[a-cA-C =,\\\\+\"#;<>\t\u{e9}\u{3000}]{0,14}"
        ) {
            let s = shape(&dn);
            proptest::prop_assert_eq!(s.plain, plain_by_the_letter(&dn));
            proptest::prop_assert_eq!(s.space, dn.contains(' '));
            proptest::prop_assert_eq!(
                s.empty_attr,
                dn.split(',').any(|rdn| rdn.starts_with('='))
            );
            if s.plain {
                proptest::prop_assert_eq!(s.first_rdn(&dn), plain_first_rdn(&dn));
            }
            let mut buf = String::new();
            let ok = normalize_into(&dn, &mut buf);
            proptest::prop_assert_eq!(ok.then_some(buf), normalize_dn(&dn));
        }
    }
}
