//! Log output: where standard error goes decides how lines look.
//!
//! | format | standard error | lines |
//! |---|---|---|
//! | `auto` | a terminal | human, coloured, with timestamps |
//! | `auto` | journald (`JOURNAL_STREAM` names it) | `<6>INFO target: message k=v`: a syslog priority journald reads, no colours, no timestamp (journald keeps its own) |
//! | `auto` | anything else (a file, a pipe) | human, no colours, with timestamps |
//! | `human` | any | human, no colours, with timestamps |
//! | `json` | any | one JSON object per line (`timestamp`, `level`, `target`, `fields` flattened) |
//!
//! `RUST_LOG` filters (default `info`). Audit events are on the target `mfa_gate::audit`,
//! access lines on `mfa_gate::access`. No line carries a code, a secret, a password or a
//! cookie: the audit module is never given one, and access lines name the path only.

use std::io::IsTerminal;

use tracing::{Level, Subscriber};
use tracing_subscriber::fmt::format::{Format, FormatEvent, FormatFields, Full, Writer};
use tracing_subscriber::fmt::{FmtContext, MakeWriter};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Where standard error goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    Terminal,
    Journal,
    Other,
}

/// Where standard error goes: journald when `JOURNAL_STREAM` (set by systemd) names the
/// very file standard error is, as `DEVICE:INODE`.
pub fn output() -> Output {
    let stderr = std::io::stderr();
    if stderr.is_terminal() {
        return Output::Terminal;
    }
    let journal = std::env::var("JOURNAL_STREAM").ok().is_some_and(|named| {
        rustix::fs::fstat(&stderr).is_ok_and(|st| named == format!("{}:{}", st.st_dev, st.st_ino))
    });
    if journal {
        Output::Journal
    } else {
        Output::Other
    }
}

/// Installs the global subscriber writing to standard error (once; later calls do nothing).
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let subscriber = subscriber(format, output(), filter, std::io::stderr);
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// The subscriber for `format` on `output`, writing to `writer`.
pub fn subscriber<W>(
    format: LogFormat,
    output: Output,
    filter: EnvFilter,
    writer: W,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    match (format, output) {
        (LogFormat::Json, _) => Box::new(builder.json().flatten_event(true).finish()),
        (LogFormat::Auto, Output::Terminal) => Box::new(builder.with_ansi(true).finish()),
        (LogFormat::Auto, Output::Journal) => Box::new(
            builder
                .with_ansi(false)
                .event_format(Journald(plain()))
                .finish(),
        ),
        (LogFormat::Auto | LogFormat::Human, _) => Box::new(builder.with_ansi(false).finish()),
    }
}

/// The human line after its syslog priority (`<3>` error … `<7>` debug), which journald
/// strips and keeps as the entry's priority (`journalctl -p warning`).
struct Journald(Format<Full, ()>);

impl<S, N> FormatEvent<S, N> for Journald
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let priority = match *event.metadata().level() {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            _ => 7,
        };
        write!(writer, "<{priority}>")?;
        self.0.format_event(ctx, writer, event)
    }
}

/// The human line without time or colours.
fn plain() -> Format<Full, ()> {
    Format::default().without_time().with_ansi(false)
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

    fn lines(format: LogFormat, output: Output) -> String {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = subscriber(format, output, EnvFilter::new("debug"), move || {
            writer.clone()
        });
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "mfa_gate::audit", event = "login_ok", user = "alice", "audit");
            tracing::warn!(user = "bob", "careful");
            tracing::debug!("detail");
        });
        let bytes = sink.0.lock().map(|v| v.clone()).unwrap_or_default();
        String::from_utf8(bytes).unwrap_or_default()
    }

    #[test]
    fn journald_lines_carry_a_priority_and_no_time_or_colour() {
        let text = lines(LogFormat::Auto, Output::Journal);
        let l: Vec<&str> = text.lines().collect();
        assert_eq!(l.len(), 3, "{text}");
        assert!(
            l[0].starts_with("<6> INFO mfa_gate::audit: audit event=\"login_ok\" user=\"alice\""),
            "{text}"
        );
        assert!(l[1].starts_with("<4> WARN "), "{text}");
        assert!(l[2].starts_with("<7>DEBUG "), "{text}");
        assert!(!text.contains('\x1b'), "no colours: {text}");
        assert!(!text.contains("20"), "no timestamp: {text}");
    }

    #[test]
    fn plain_lines_have_time_and_no_colour_json_is_one_object_a_line() {
        let text = lines(LogFormat::Human, Output::Terminal);
        assert!(!text.contains('\x1b'), "{text}");
        assert!(
            text.lines().all(|l| l.starts_with("20")),
            "timestamps: {text}"
        );
        let text = lines(LogFormat::Auto, Output::Other);
        assert!(!text.contains('\x1b') && text.lines().all(|l| l.starts_with("20")));
        let text = lines(LogFormat::Json, Output::Journal);
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            assert!(
                v.get("timestamp").is_some() && v.get("level").is_some(),
                "{line}"
            );
        }
        assert!(text.contains(r#""event":"login_ok""#), "{text}");
    }
}
