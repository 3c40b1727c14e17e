//! An LDAP proxy that answers like Windows Active Directory does about big multi-valued
//! attributes, in front of a server that does not (Samba, OpenLDAP's `slapd`).
//!
//! Windows AD returns at most `MaxValRange` (1,500) values of an attribute in one answer; a client
//! reads the rest by *range retrieval* (MS-ADTS 3.1.1.3.1.3.3): it asks for `member;range=LO-HI`
//! or `member;range=LO-*`, and the server names the values it returns `member;range=LO-HI`, with
//! `*` for HI when they include the last value. Samba honours explicit ranges but never truncates a
//! plain `member` read, and slapd knows no ranges at all, so neither can show roster what AD does.
//! This proxy does, for the attribute `member` only:
//!
//! - **Plain `member`** (also `*` or an empty attribute list, which include it): an entry with more
//!   than [`MAX_VAL_RANGE`] values comes back with its first 1,500 values as
//!   `member;range=0-1499`; smaller ones pass unchanged.
//! - **`member;range=LO-HI` / `member;range=LO-*`** (the option in any case): the proxy asks the
//!   upstream for plain `member` and cuts the range itself, so it works in front of slapd too.
//!   The answer holds values `LO..=min(HI, LO+1499, last)`, named `member;range=LO-*` when that
//!   reaches the last value, else `member;range=LO-END`. So `range=0-*` of 5,000 values answers
//!   `member;range=0-1499`, as AD's MaxValRange does.
//! - **LO past the end** (LO ≥ the number of values): Windows AD fails the search with
//!   `operationsError` unless the request carries the `LDAP_SERVER_RANGE_RETRIEVAL_NOERR_OID`
//!   control ([`RANGE_RETRIEVAL_NOERR_OID`], MS-ADTS 3.1.1.3.4.1.22), in which case it succeeds
//!   with no values. The proxy does the same: the entry is withheld and the search ends with
//!   result code 1 (`operationsError`), or with the control the entry comes without `member`.
//!   (Samba differs: it answers `member;range=LO-*` with no values, see its
//!   `source4/dsdb/samdb/ldb_modules/ranged_results.c`.)
//! - An entry without `member` (an empty group) stays without it: AD has no values to range.
//! - A range the proxy cannot parse, or with LO > HI, is forwarded unchanged for the upstream to
//!   judge (Samba answers `unwillingToPerform` to LO > HI).
//!
//! Every other operation (binds, unbinds, other searches, paged-results and other controls,
//! extended operations) is forwarded byte for byte; each client connection gets its own upstream
//! connection, so message ids pass through unchanged. StartTLS cannot work through it (the proxy
//! does not speak TLS); use plain `ldap://`.
//!
//! # Faults
//!
//! Switched at run time with [`AdProxy::set_fault`]; each one stays on until switched off.
//!
//! - [`Fault::DropLastChunk`]: the answer that would end the range (`member;range=LO-*`) is named
//!   `member;range=LO-LAST` instead (LAST the index of the last value; the values are the right
//!   ones). A client that trusts it asks for `member;range=LAST+1-*` next and gets
//!   `operationsError` (or, with the NOERR control, an entry without `member`): a range that never
//!   ends.
//! - [`Fault::OmitLastChunk`]: the answer that would end the range comes without any `member`
//!   attribute (the entry itself is still returned), as if the values had vanished.
//! - [`Fault::CloseBetweenChunks`]: a continuation request (a `member` range with LO > 0) closes
//!   the client's connection at once, without an answer.
//! - [`Fault::UnknownOption`]: every `member` attribute the proxy answers for a search that
//!   asked for it gets the option `x-foo` right after the type: `member;x-foo`, or
//!   `member;x-foo;range=0-1499` for a ranged answer. A client must treat an attribute option it
//!   does not know as an error, not as some other attribute or as "no members".
//!
//! # Counting
//!
//! [`AdProxy::stats`] counts connections, search requests, searches that asked for a `member`
//! range, continuations (ranges with LO > 0) and plain reads cut to `member;range=0-1499`.
//!
//! The proxy runs on its own thread with its own Tokio runtime, so it serves whatever the test
//! does meanwhile (an async test on a current-thread runtime, or a blocking `ldapsearch`).
//! Dropping the [`AdProxy`] stops it and closes every connection.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io;
use std::net::{SocketAddr, TcpListener as StdListener, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use ldap3_proto::proto::{LdapMsg, LdapOp, LdapResult, LdapResultCode, LdapSearchResultEntry};
use ldap3_proto::{LdapCodec, control::LdapControl};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_util::bytes::BytesMut;
use tokio_util::codec::{Decoder, Encoder};

/// Windows AD's default `MaxValRange`: the most values of one attribute in one answer.
pub const MAX_VAL_RANGE: usize = 1500;
/// `LDAP_SERVER_RANGE_RETRIEVAL_NOERR_OID`: with it, a range past the end is no error.
pub const RANGE_RETRIEVAL_NOERR_OID: &str = "1.2.840.113556.1.4.1948";
/// The option [`Fault::UnknownOption`] adds.
pub const UNKNOWN_OPTION: &str = "x-foo";

/// The largest LDAP message the proxy accepts (a 5,000-member entry is ~250 KB).
const MAX_MESSAGE: usize = 64 << 20;

/// A misbehaviour the proxy can be told to show (see the module documentation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The final range is named `member;range=LO-LAST`, not `member;range=LO-*`.
    DropLastChunk,
    /// The final range's answer has no `member` attribute.
    OmitLastChunk,
    /// A continuation request (range LO > 0) closes the client connection.
    CloseBetweenChunks,
    /// Answered `member` attributes carry the unknown option `x-foo`.
    UnknownOption,
}

/// The fault switches, shared with the proxy's connections.
#[derive(Debug, Default)]
pub struct Faults {
    drop_last_chunk: AtomicBool,
    omit_last_chunk: AtomicBool,
    close_between_chunks: AtomicBool,
    unknown_option: AtomicBool,
}

impl Faults {
    fn flag(&self, fault: Fault) -> &AtomicBool {
        match fault {
            Fault::DropLastChunk => &self.drop_last_chunk,
            Fault::OmitLastChunk => &self.omit_last_chunk,
            Fault::CloseBetweenChunks => &self.close_between_chunks,
            Fault::UnknownOption => &self.unknown_option,
        }
    }

    /// Switches `fault` on or off; it applies from the next message the proxy handles.
    pub fn set(&self, fault: Fault, on: bool) {
        self.flag(fault).store(on, Ordering::SeqCst);
    }

    /// Whether `fault` is on.
    pub fn is_on(&self, fault: Fault) -> bool {
        self.flag(fault).load(Ordering::SeqCst)
    }
}

/// What the proxy has seen since it started (or since [`AdProxy::reset_stats`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Client connections accepted.
    pub connections: usize,
    /// Search requests, of any kind.
    pub searches: usize,
    /// Searches that asked for a `member;range=…` the proxy serves.
    pub ranged_searches: usize,
    /// Of those, the continuations: LO > 0.
    pub continuations: usize,
    /// Entries whose plain `member` was cut to `member;range=0-1499`.
    pub truncated: usize,
}

#[derive(Debug, Default)]
struct Counters {
    connections: AtomicUsize,
    searches: AtomicUsize,
    ranged_searches: AtomicUsize,
    continuations: AtomicUsize,
    truncated: AtomicUsize,
}

impl Counters {
    fn bump(counter: &AtomicUsize) {
        counter.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Default)]
struct Shared {
    faults: Faults,
    counters: Counters,
}

/// A running proxy on `127.0.0.1:<free port>`; stopped when dropped.
pub struct AdProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AdProxy {
    /// Starts a proxy in front of `upstream`: `ldap://host:port` (port 389 when omitted) or
    /// `host:port`. Panics when it cannot listen or the upstream address does not resolve.
    pub fn start(upstream: &str) -> AdProxy {
        let upstream = parse_upstream(upstream);
        let listener = StdListener::bind("127.0.0.1:0").expect("bind the AD proxy");
        listener
            .set_nonblocking(true)
            .expect("make the AD proxy's listener non-blocking");
        let addr = listener.local_addr().expect("the AD proxy's address");
        let shared = Arc::new(Shared::default());
        let (tx, rx) = oneshot::channel();
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name(format!("adproxy-{}", addr.port()))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the AD proxy");
                runtime.block_on(accept_loop(listener, upstream, thread_shared, rx));
                // Dropping the runtime here cancels every connection task, closing its sockets.
            })
            .expect("spawn the AD proxy thread");
        AdProxy {
            addr,
            upstream,
            shared,
            shutdown: Some(tx),
            thread: Some(thread),
        }
    }

    /// `ldap://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("ldap://{}", self.addr)
    }

    /// The address the proxy listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address it forwards to.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Switches `fault` on or off.
    pub fn set_fault(&self, fault: Fault, on: bool) {
        self.shared.faults.set(fault, on);
    }

    /// The fault switches (to read them, or to switch several).
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// The counts so far.
    pub fn stats(&self) -> Stats {
        let c = &self.shared.counters;
        let get = |a: &AtomicUsize| a.load(Ordering::SeqCst);
        Stats {
            connections: get(&c.connections),
            searches: get(&c.searches),
            ranged_searches: get(&c.ranged_searches),
            continuations: get(&c.continuations),
            truncated: get(&c.truncated),
        }
    }

    /// Sets every count back to zero.
    pub fn reset_stats(&self) {
        let c = &self.shared.counters;
        for a in [
            &c.connections,
            &c.searches,
            &c.ranged_searches,
            &c.continuations,
            &c.truncated,
        ] {
            a.store(0, Ordering::SeqCst);
        }
    }
}

impl Drop for AdProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn parse_upstream(upstream: &str) -> SocketAddr {
    let rest = upstream
        .strip_prefix("ldap://")
        .unwrap_or(upstream)
        .trim_end_matches('/');
    let with_port = if rest
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        rest.to_owned()
    } else {
        format!("{rest}:389")
    };
    with_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .unwrap_or_else(|| panic!("AD proxy: cannot resolve the upstream {upstream:?}"))
}

async fn accept_loop(
    listener: StdListener,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: oneshot::Receiver<()>,
) {
    let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
        return;
    };
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => {
                // An accept error (e.g. too many open files) only loses that client.
                if let Ok((client, _)) = accepted {
                    Counters::bump(&shared.counters.connections);
                    tokio::spawn(serve(client, upstream, Arc::clone(&shared)));
                }
            }
        }
    }
}

/// What a client asked of `member` in one search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Want {
    /// Plain `member` (or all attributes): AD truncates big values at MaxValRange.
    Plain,
    /// `member;range=LO-HI` (`hi: None` for `*`).
    Range { lo: usize, hi: Option<usize> },
}

/// A search the proxy rewrites answers for, keyed by message id.
#[derive(Debug)]
struct Search {
    want: Want,
    /// The request carried the RANGE_RETRIEVAL_NOERR control.
    noerr: bool,
    /// A range started past the end: the search ends with operationsError.
    failed: bool,
}

type Searches = Arc<Mutex<HashMap<i32, Search>>>;

/// One client connection: its own upstream connection, one task per direction. When either
/// direction ends (EOF, error, or a fault that closes), both sockets are closed.
async fn serve(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>) {
    let Ok(up) = TcpStream::connect(upstream).await else {
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (up_read, up_write) = up.into_split();
    let searches: Searches = Arc::default();
    tokio::select! {
        _ = client_to_upstream(client_read, up_write, Arc::clone(&searches), &shared) => {}
        _ = upstream_to_client(up_read, client_write, searches, &shared) => {}
    }
}

async fn client_to_upstream(
    client: impl AsyncRead + Unpin,
    mut up: impl tokio::io::AsyncWrite + Unpin,
    searches: Searches,
    shared: &Shared,
) -> io::Result<()> {
    let mut client = BufReader::new(client);
    while let Some(frame) = read_frame(&mut client).await? {
        let frame = match header(&frame) {
            Some((_, OP_SEARCH_REQUEST)) => {
                Counters::bump(&shared.counters.searches);
                match on_search_request(&frame, &searches, shared) {
                    Forward::Raw => frame,
                    Forward::Rewritten(bytes) => bytes,
                    Forward::Close => return Ok(()),
                }
            }
            _ => frame,
        };
        up.write_all(&frame).await?;
    }
    Ok(())
}

async fn upstream_to_client(
    up: impl AsyncRead + Unpin,
    mut client: impl tokio::io::AsyncWrite + Unpin,
    searches: Searches,
    shared: &Shared,
) -> io::Result<()> {
    let mut up = BufReader::new(up);
    while let Some(frame) = read_frame(&mut up).await? {
        let out = match header(&frame) {
            Some((id, op @ (OP_SEARCH_ENTRY | OP_SEARCH_DONE))) => {
                on_search_answer(id, op, frame, &searches, shared)
            }
            _ => Some(frame),
        };
        if let Some(bytes) = out {
            client.write_all(&bytes).await?;
        }
    }
    Ok(())
}

/// What to do with a client's search request.
enum Forward {
    Raw,
    Rewritten(Vec<u8>),
    Close,
}

fn on_search_request(frame: &[u8], searches: &Searches, shared: &Shared) -> Forward {
    // A request ldap3_proto cannot decode is not one the proxy needs to understand.
    let Some(mut msg) = decode(frame) else {
        return Forward::Raw;
    };
    let LdapOp::SearchRequest(req) = &mut msg.op else {
        return Forward::Raw;
    };
    let mut want = None;
    let mut rewritten = false;
    for attr in req.attrs.iter_mut() {
        match classify(attr) {
            Some(Want::Range { lo, hi }) if want.is_none() => {
                want = Some(Want::Range { lo, hi });
                // The upstream reads every value; the proxy cuts the range.
                *attr = "member".to_owned();
                rewritten = true;
            }
            Some(Want::Plain) if want.is_none() => want = Some(Want::Plain),
            _ => {}
        }
    }
    if want.is_none() && (req.attrs.is_empty() || req.attrs.iter().any(|a| a == "*")) {
        want = Some(Want::Plain);
    }
    let Some(want) = want else {
        return Forward::Raw;
    };
    let counters = &shared.counters;
    if let Want::Range { lo, .. } = want {
        Counters::bump(&counters.ranged_searches);
        if lo > 0 {
            Counters::bump(&counters.continuations);
            if shared.faults.is_on(Fault::CloseBetweenChunks) {
                return Forward::Close;
            }
        }
    }
    let noerr = msg
        .ctrl
        .iter()
        .any(|c| matches!(c, LdapControl::Unknown { oid, .. } if oid == RANGE_RETRIEVAL_NOERR_OID));
    if let Ok(mut map) = searches.lock() {
        map.insert(
            msg.msgid,
            Search {
                want,
                noerr,
                failed: false,
            },
        );
    }
    if rewritten {
        match encode(msg) {
            Some(bytes) => Forward::Rewritten(bytes),
            // Forwarding the range unchanged would let the upstream answer in its own way and
            // hide the proxy's failure; a closed connection is loud.
            None => Forward::Close,
        }
    } else {
        Forward::Raw
    }
}

/// `member` → Plain; `member;range=LO-HI` / `member;range=LO-*` (any case) → Range; anything
/// else (other attributes, other options, a malformed or inverted range) → None.
fn classify(attr: &str) -> Option<Want> {
    let mut parts = attr.split(';');
    if !parts.next()?.eq_ignore_ascii_case("member") {
        return None;
    }
    let options: Vec<&str> = parts.collect();
    match options.as_slice() {
        [] => Some(Want::Plain),
        [option] => {
            let (key, range) = option.split_once('=')?;
            if !key.eq_ignore_ascii_case("range") {
                return None;
            }
            let (lo, hi) = range.split_once('-')?;
            let lo: usize = lo.parse().ok()?;
            let hi = match hi {
                "*" => None,
                n => Some(n.parse::<usize>().ok()?),
            };
            if hi.is_some_and(|hi| hi < lo) {
                return None;
            }
            Some(Want::Range { lo, hi })
        }
        _ => None,
    }
}

/// Rewrites one answer of a search the proxy tracks; `None` withholds it.
fn on_search_answer(
    id: i32,
    op: u8,
    frame: Vec<u8>,
    searches: &Searches,
    shared: &Shared,
) -> Option<Vec<u8>> {
    let Ok(mut map) = searches.lock() else {
        return Some(frame);
    };
    if op == OP_SEARCH_DONE {
        return match map.remove(&id) {
            Some(Search { failed: true, .. }) => {
                let done = LdapMsg {
                    msgid: id,
                    op: LdapOp::SearchResultDone(LdapResult {
                        code: LdapResultCode::OperationsError,
                        matcheddn: String::new(),
                        // Not AD's wording (its text carries a Win32 code): only the
                        // result code is AD's.
                        message: "AD proxy: the member range starts past the last value \
                                  (no LDAP_SERVER_RANGE_RETRIEVAL_NOERR_OID control)"
                            .to_owned(),
                        referral: Vec::new(),
                    }),
                    ctrl: Vec::new(),
                };
                encode(done)
            }
            _ => Some(frame),
        };
    }
    let Some(search) = map.get_mut(&id) else {
        return Some(frame);
    };
    if search.failed {
        return None;
    }
    let Some(mut msg) = decode(&frame) else {
        return Some(frame);
    };
    let LdapOp::SearchResultEntry(entry) = &mut msg.op else {
        return Some(frame);
    };
    match shape_entry(entry, search, shared) {
        Shaped::Unchanged => Some(frame),
        Shaped::Changed => encode(msg),
        Shaped::Withhold => None,
    }
}

enum Shaped {
    Unchanged,
    Changed,
    Withhold,
}

/// Applies AD's range rules (and the faults) to the `member` attribute of one entry.
fn shape_entry(entry: &mut LdapSearchResultEntry, search: &mut Search, shared: &Shared) -> Shaped {
    let faults = &shared.faults;
    let Some(i) = entry
        .attributes
        .iter()
        .position(|a| a.atype.eq_ignore_ascii_case("member"))
    else {
        return Shaped::Unchanged;
    };
    let n = entry.attributes[i].vals.len();
    let name = match search.want {
        Want::Plain if n > MAX_VAL_RANGE => {
            entry.attributes[i].vals.truncate(MAX_VAL_RANGE);
            Counters::bump(&shared.counters.truncated);
            Some(format!("range=0-{}", MAX_VAL_RANGE - 1))
        }
        Want::Plain => None,
        Want::Range { lo, .. } if lo >= n => {
            if search.noerr {
                entry.attributes.remove(i);
                return Shaped::Changed;
            }
            search.failed = true;
            return Shaped::Withhold;
        }
        Want::Range { lo, hi } => {
            let last = n - 1;
            let end = (lo + MAX_VAL_RANGE - 1)
                .min(hi.unwrap_or(usize::MAX))
                .min(last);
            let attr = &mut entry.attributes[i];
            attr.vals.truncate(end + 1);
            attr.vals.drain(..lo);
            if end == last {
                if faults.is_on(Fault::OmitLastChunk) {
                    entry.attributes.remove(i);
                    return Shaped::Changed;
                }
                if faults.is_on(Fault::DropLastChunk) {
                    Some(format!("range={lo}-{end}"))
                } else {
                    Some(format!("range={lo}-*"))
                }
            } else {
                Some(format!("range={lo}-{end}"))
            }
        }
    };
    let unknown = faults.is_on(Fault::UnknownOption);
    if name.is_none() && !unknown {
        return Shaped::Unchanged;
    }
    let mut atype = entry.attributes[i].atype.clone();
    if unknown {
        atype.push(';');
        atype.push_str(UNKNOWN_OPTION);
    }
    if let Some(range) = name {
        atype.push(';');
        atype.push_str(&range);
    }
    entry.attributes[i].atype = atype;
    Shaped::Changed
}

/// BER tag of a SearchRequest (`[APPLICATION 3]`, constructed).
const OP_SEARCH_REQUEST: u8 = 0x63;
/// BER tag of a SearchResultEntry (`[APPLICATION 4]`, constructed).
const OP_SEARCH_ENTRY: u8 = 0x64;
/// BER tag of a SearchResultDone (`[APPLICATION 5]`, constructed).
const OP_SEARCH_DONE: u8 = 0x65;

/// Reads one LDAPMessage (a BER SEQUENCE) whole; `None` at a clean end of stream. Framing is
/// done here rather than by `LdapCodec` so that messages the proxy does not touch are
/// forwarded exactly as sent, even ones `ldap3_proto` could not decode.
async fn read_frame(r: &mut (impl AsyncRead + Unpin)) -> io::Result<Option<Vec<u8>>> {
    let mut tag = [0u8; 1];
    match r.read_exact(&mut tag).await {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    if tag[0] != 0x30 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not an LDAPMessage",
        ));
    }
    let mut frame = vec![tag[0]];
    let mut first = [0u8; 1];
    r.read_exact(&mut first).await?;
    frame.push(first[0]);
    let len = if first[0] < 0x80 {
        usize::from(first[0])
    } else {
        // Long form; LDAP forbids the indefinite form (0x80).
        let count = usize::from(first[0] & 0x7f);
        if count == 0 || count > 4 {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "bad BER length"));
        }
        let mut bytes = [0u8; 4];
        r.read_exact(&mut bytes[..count]).await?;
        frame.extend_from_slice(&bytes[..count]);
        bytes[..count]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    if len > MAX_MESSAGE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "LDAP message too large",
        ));
    }
    let start = frame.len();
    frame.resize(start + len, 0);
    r.read_exact(&mut frame[start..]).await?;
    Ok(Some(frame))
}

/// The message id and protocolOp tag of a framed LDAPMessage, read without decoding the rest.
fn header(frame: &[u8]) -> Option<(i32, u8)> {
    // Skip the SEQUENCE tag and its length.
    let mut i = 1;
    let first = *frame.get(i)?;
    i += 1 + if first < 0x80 {
        0
    } else {
        usize::from(first & 0x7f)
    };
    // messageID INTEGER (0..2^31-1, at most 4 content bytes in practice).
    if *frame.get(i)? != 0x02 {
        return None;
    }
    let len = usize::from(*frame.get(i + 1)?);
    if len == 0 || len > 5 {
        return None;
    }
    let bytes = frame.get(i + 2..i + 2 + len)?;
    let id = bytes.iter().fold(0i64, |acc, b| (acc << 8) | i64::from(*b));
    let op = *frame.get(i + 2 + len)?;
    Some((i32::try_from(id).ok()?, op))
}

fn decode(frame: &[u8]) -> Option<LdapMsg> {
    let mut buf = BytesMut::from(frame);
    LdapCodec::new(Some(MAX_MESSAGE), None)
        .decode(&mut buf)
        .ok()
        .flatten()
}

fn encode(msg: LdapMsg) -> Option<Vec<u8>> {
    let mut buf = BytesMut::new();
    LdapCodec::new(Some(MAX_MESSAGE), None)
        .encode(msg, &mut buf)
        .ok()?;
    Some(buf.to_vec())
}
