//! Audit events: every login outcome, enrollment, recovery-code use, lockout, reset,
//! unlock and refusal of an admin, on the log target `mfa_gate::audit`.
//!
//! One function writes them all, so every event has the same fields, and every value a
//! client can choose (a user name, a reason) is logged as one quoted, escaped value: a
//! name such as `alice ip=10.0.0.66 event="login_ok"` or one with a line break cannot
//! forge another field or another line. Codes, secrets, passwords and cookies are never
//! given to it.

use std::net::IpAddr;

/// The log target of audit events.
pub const TARGET: &str = "mfa_gate::audit";

/// Who and where an event is about; every field is optional.
#[derive(Debug, Default, Clone, Copy)]
pub struct Event<'a> {
    pub site: Option<&'a str>,
    pub realm: Option<&'a str>,
    pub user: Option<&'a str>,
    /// The client's address (as the gate believes it: see `trusted_proxies`).
    pub ip: Option<IpAddr>,
    /// Who acted, for admin actions (`admin alice`, `cli(uid=0)`).
    pub by: Option<&'a str>,
    /// One more value: what the console said, why a login was refused, an outcome.
    pub detail: Option<&'a str>,
}

/// How loud an event is: refusals that point at an attack are warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warn,
}

/// Writes one audit event.
pub fn record(level: Level, event: &'static str, e: &Event<'_>) {
    // `&str` values are written quoted and escaped by every tracing formatter.
    let ip = e.ip.map(tracing::field::display);
    match level {
        Level::Info => tracing::info!(
            target: TARGET,
            event,
            site = e.site,
            realm = e.realm,
            user = e.user,
            ip,
            by = e.by,
            detail = e.detail
        ),
        Level::Warn => tracing::warn!(
            target: TARGET,
            event,
            site = e.site,
            realm = e.realm,
            user = e.user,
            ip,
            by = e.by,
            detail = e.detail
        ),
    }
}

/// [`record`] at [`Level::Info`].
pub fn info(event: &'static str, e: &Event<'_>) {
    record(Level::Info, event, e);
}

/// [`record`] at [`Level::Warn`].
pub fn warn(event: &'static str, e: &Event<'_>) {
    record(Level::Warn, event, e);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_user_name_cannot_forge_a_field_or_a_line() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            info(
                "login_ok",
                &Event {
                    realm: Some("r"),
                    user: Some("alice ip=10.0.0.66 event=\"login_ok\"\nFAKE event=\"reset\""),
                    ip: Some([192, 0, 2, 1].into()),
                    ..Event::default()
                },
            );
        });
        let text = String::from_utf8(sink.0.lock().map(|v| v.clone()).unwrap_or_default())
            .unwrap_or_default();
        assert_eq!(text.lines().count(), 1, "{text}");
        let quoted = r#"user="alice ip=10.0.0.66 event=\"login_ok\"\nFAKE event=\"reset\"""#;
        assert!(text.contains(quoted), "one quoted, escaped value: {text}");
        let rest = text.replace(quoted, "user=USER");
        assert_eq!(rest.matches("event=").count(), 1, "{text}");
        assert_eq!(rest.matches(" ip=").count(), 1, "{text}");
    }
}
