//! Which roster process this is: `"<hostname>:<pid>"`, or `ROSTER_INSTANCE` when set.
//!
//! Two roster daemons may run side by side as an active/standby pair, against the same target
//! APIs and the same etcd. Their requests look alike, so each process names itself: the id goes
//! into the `User-Agent` of every request roster sends ([`user_agent`]), where a server's access
//! log (or a simulator's call log) can tell the two apart. The hostname alone is not enough (two
//! instances on one host, as in tests), hence the pid; tests that run two daemons set
//! `ROSTER_INSTANCE` to names they can assert on.
//!
//! Both values are computed once, on first use, and never change for the life of the process.

use std::sync::OnceLock;

/// The environment variable that, when set and not blank, replaces the computed instance id.
pub const ENV: &str = "ROSTER_INSTANCE";

/// This process's instance id: `ROSTER_INSTANCE` when set (trimmed, not blank), else
/// `"<hostname>:<pid>"` with the hostname from `/proc/sys/kernel/hostname` (`"localhost"` when
/// that cannot be read or is empty).
pub fn id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let from_env = std::env::var(ENV).ok();
        compute(
            from_env.as_deref(),
            hostname().as_deref(),
            std::process::id(),
        )
    })
}

/// The `User-Agent` roster sends: `roster/<version> (<instance id>)`.
pub fn user_agent() -> &'static str {
    static AGENT: OnceLock<String> = OnceLock::new();
    AGENT.get_or_init(|| format!("roster/{} ({})", env!("CARGO_PKG_VERSION"), id()))
}

/// The id from an explicit value, the hostname and the pid (apart from [`id`] for the tests).
fn compute(from_env: Option<&str>, hostname: Option<&str>, pid: u32) -> String {
    if let Some(v) = from_env.map(str::trim).filter(|v| !v.is_empty()) {
        // A header value may not hold control characters; an id that cannot be sent as one is
        // worse than a mangled one.
        return v
            .chars()
            .map(|c| if c.is_control() { '_' } else { c })
            .collect();
    }
    let host = hostname.map(str::trim).filter(|h| !h.is_empty());
    format!("{}:{pid}", host.unwrap_or("localhost"))
}

/// The kernel's hostname (Linux); `None` elsewhere or when unreadable.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname").ok()
}

#[cfg(test)]
mod tests {
    use super::compute;

    #[test]
    fn hostname_and_pid_unless_overridden() {
        assert_eq!(compute(None, Some("db1\n"), 42), "db1:42");
        assert_eq!(compute(None, None, 7), "localhost:7");
        assert_eq!(compute(None, Some("  "), 7), "localhost:7");
        assert_eq!(compute(Some(" a "), Some("db1"), 7), "a");
        assert_eq!(compute(Some(""), Some("db1"), 7), "db1:7");
        assert_eq!(compute(Some("a\nb"), None, 7), "a_b");
    }

    #[test]
    fn user_agent_names_version_and_instance() {
        let agent = super::user_agent();
        assert!(agent.starts_with(concat!("roster/", env!("CARGO_PKG_VERSION"), " (")));
        assert!(agent.ends_with(&format!("{})", super::id())));
    }
}
