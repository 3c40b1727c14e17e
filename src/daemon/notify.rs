//! What the daemon tells systemd (`Type=notify`, `sd_notify(3)`): ready, reloading, stopping, its
//! status line and the watchdog. Every message is a no-op when `NOTIFY_SOCKET` is unset, and a
//! message that cannot be sent is logged, never fatal: systemd going away must not stop the
//! reconciling.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "could not notify the service manager");
    }
}

/// `READY=1` with a status line: start-up (config loaded, listener up) or a reload is done.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `STATUS=…`: a one-line summary, such as the last run's.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// `RELOADING=1` with `MONOTONIC_USEC=` (which `Type=notify-reload` requires, and plain
/// `Type=notify` accepts): a reload has started; [`ready`] ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// `STOPPING=1` with a status line: the daemon is on its way out.
pub fn stopping(status: &str) {
    send(&[NotifyState::Stopping, NotifyState::Status(status)]);
}

/// `WATCHDOG=1`: the daemon's loop is alive.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to send `WATCHDOG=1`: half of `WATCHDOG_USEC`, as `sd_watchdog_enabled(3)`
/// advises; `None` when systemd asked for no watchdog (or asked it of another process).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled()
        .map(|d| d / 2)
        .filter(|d| !d.is_zero())
}
