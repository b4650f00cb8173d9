//! Prometheus metrics: a small registry of atomic counters, written out in the text
//! exposition format by [`Metrics::render`] for the separate metrics listener
//! (`[metrics] listen`, see `server::metrics_endpoint`).
//!
//! The hot path only does relaxed atomic additions on counters it already holds: a
//! request's site counters are found by index ([`crate::state::Gate::site_metrics`]),
//! never by name, and nothing is locked or allocated per request. The registry lives in
//! an `Arc` beside the gate, not in anything built from the configuration: a gate rebuilt
//! from a new configuration takes the same [`Metrics`] (`Gate::with_metrics`), and a
//! site keeps its counters as long as it keeps its name.
//!
//! Hand-rolled rather than `prometheus-client`: its histogram takes a lock on every
//! observation, and its label families a lock and a hash per lookup; what is needed here
//! (fixed label sets, one histogram) fits in this file.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use http::StatusCode;

/// How many slots a counter is spread over: each thread adds to its own, on its own cache
/// line, so the worker threads never write one line by turns on every request (threads
/// beyond this share slots). A read adds the slots up.
const SLOTS: usize = 4;

/// This thread's slot.
fn slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SLOT: usize = NEXT.fetch_add(1, Relaxed) % SLOTS;
    }
    SLOT.with(|s| *s)
}

/// One slot, alone on its cache line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Slot(AtomicU64);

/// A monotonically increasing count.
#[derive(Debug, Default)]
pub struct Counter([Slot; SLOTS]);

impl Counter {
    pub fn inc(&self) {
        if let Some(s) = self.0.get(slot()) {
            s.0.fetch_add(1, Relaxed);
        }
    }

    pub fn get(&self) -> u64 {
        self.0.iter().map(|s| s.0.load(Relaxed)).sum()
    }
}

/// Upper bounds of the latency buckets, in microseconds (5 ms … 10 s).
const BUCKETS_MICROS: [u64; 11] = [
    5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 5_000_000,
    10_000_000,
];

/// A latency histogram: a count per bucket (the last one is `+Inf`) and the sum, in one
/// part per slot (see [`Counter`]).
#[derive(Debug, Default)]
pub struct Histogram([HistogramPart; SLOTS]);

#[derive(Debug, Default)]
#[repr(align(64))]
struct HistogramPart {
    buckets: [AtomicU64; BUCKETS_MICROS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, took: Duration) {
        let Some(part) = self.0.get(slot()) else {
            return;
        };
        let micros = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        let i = BUCKETS_MICROS
            .iter()
            .position(|&bound| micros <= bound)
            .unwrap_or(BUCKETS_MICROS.len());
        if let Some(bucket) = part.buckets.get(i) {
            bucket.fetch_add(1, Relaxed);
        }
        part.sum_micros.fetch_add(micros, Relaxed);
    }

    /// The count of bucket `i`, over every slot.
    fn bucket(&self, i: usize) -> u64 {
        self.0
            .iter()
            .filter_map(|p| p.buckets.get(i))
            .map(|b| b.load(Relaxed))
            .sum()
    }

    fn sum_micros(&self) -> u64 {
        self.0.iter().map(|p| p.sum_micros.load(Relaxed)).sum()
    }

    /// How many observations so far.
    pub fn count(&self) -> u64 {
        (0..=BUCKETS_MICROS.len()).map(|i| self.bucket(i)).sum()
    }
}

/// The status classes a request is counted under.
const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

fn class_index(status: StatusCode) -> usize {
    usize::from(status.as_u16() / 100)
        .saturating_sub(1)
        .min(STATUS_CLASSES.len() - 1)
}

/// One site's counters.
#[derive(Debug)]
pub struct SiteMetrics {
    name: String,
    requests: [Counter; STATUS_CLASSES.len()],
    upstream: Histogram,
    upstream_errors: [Counter; UpstreamFailure::ALL.len()],
}

impl SiteMetrics {
    fn new(name: &str) -> SiteMetrics {
        SiteMetrics {
            name: name.to_string(),
            requests: Default::default(),
            upstream: Histogram::default(),
            upstream_errors: Default::default(),
        }
    }

    /// One request of this site answered with `status`.
    pub fn request(&self, status: StatusCode) {
        if let Some(c) = self.requests.get(class_index(status)) {
            c.inc();
        }
    }

    /// The time the console took to send its response head.
    pub fn upstream(&self) -> &Histogram {
        &self.upstream
    }

    /// The console gave no answer.
    pub fn upstream_failed(&self, why: UpstreamFailure) {
        if let Some(c) = self.upstream_errors.get(why as usize) {
            c.inc();
        }
    }

    /// Requests answered with a status of class `class` (`"2xx"`), for tests.
    pub fn requests(&self, class: &str) -> u64 {
        STATUS_CLASSES
            .iter()
            .position(|c| *c == class)
            .and_then(|i| self.requests.get(i))
            .map_or(0, Counter::get)
    }
}

/// Why the console gave no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamFailure {
    Timeout = 0,
    Unreachable = 1,
    /// The TLS connection to an `https://` console failed (its certificate, mostly).
    Tls = 2,
}

impl UpstreamFailure {
    const ALL: [&'static str; 3] = ["timeout", "unreachable", "tls"];
}

/// A login step's outcome (`mfa_gate_logins_total{factor, outcome}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Login {
    /// The console accepted the password; the gate now asks for a code.
    PasswordAccepted = 0,
    /// The console refused the password.
    PasswordRefused,
    /// The gate refused the login itself: an ambiguous login form, or the console's
    /// identity page naming another user.
    PasswordRejected,
    /// A correct code.
    CodeOk,
    /// A recovery code instead of a code.
    RecoveryCode,
    /// A wrong code (or recovery code).
    CodeWrong,
    /// A code already used.
    CodeReplayed,
    /// Refused unchecked: the account is locked.
    Locked,
}

impl Login {
    const LABELS: [(&'static str, &'static str); 8] = [
        ("password", "accepted"),
        ("password", "refused"),
        ("password", "rejected"),
        ("code", "ok"),
        ("code", "recovery_code"),
        ("code", "wrong"),
        ("code", "replayed"),
        ("code", "locked"),
    ];
}

/// The registry: every counter of the gate. Shared as `Arc<Metrics>`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Every site seen so far, by name (locked when a gate is built and on a scrape only).
    sites: Mutex<Vec<Arc<SiteMetrics>>>,
    /// Requests refused before a site was known (bad framing or `Host`).
    without_site: [Counter; STATUS_CLASSES.len()],
    logins: [Counter; Login::LABELS.len()],
    enrollments: Counter,
    enroll_wrong_codes: Counter,
    resets: Counter,
    unlocks: Counter,
    /// Accounts that entered the back-off (`[0]`) or the hard lock (`[1]`).
    lockouts: [Counter; 2],
    /// Requests whose session cookie was checked: valid (`[0]`) or not (`[1]`).
    session_checks: [Counter; 2],
    connections: Counter,
    open_connections: AtomicU64,
    /// Requests answered by the direct lane, and connections it handed to the full router.
    lane: [Counter; 2],
    /// The connections each worker thread serves (set once the workers start).
    worker_loads: OnceLock<Arc<[AtomicUsize]>>,
}

/// What a metric is counted for, outside the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Enrolled,
    EnrollWrongCode,
    Reset,
    Unlock,
    /// The account entered the back-off after `lock_after` failures.
    Backoff,
    /// The account is locked until an admin unlocks it.
    HardLock,
}

impl Metrics {
    pub fn new() -> Arc<Metrics> {
        Arc::new(Metrics::default())
    }

    /// The counters of sites `names`, in that order: those of a site already known by its
    /// name (from an earlier configuration), new ones otherwise.
    pub fn sites<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Vec<Arc<SiteMetrics>> {
        let mut sites = self.sites.lock().unwrap_or_else(PoisonError::into_inner);
        names
            .into_iter()
            .map(|name| {
                if let Some(s) = sites.iter().find(|s| s.name == name) {
                    return Arc::clone(s);
                }
                let s = Arc::new(SiteMetrics::new(name));
                sites.push(Arc::clone(&s));
                s
            })
            .collect()
    }

    /// A request refused before its site was known.
    pub fn request_without_site(&self, status: StatusCode) {
        if let Some(c) = self.without_site.get(class_index(status)) {
            c.inc();
        }
    }

    pub fn login(&self, outcome: Login) {
        if let Some(c) = self.logins.get(outcome as usize) {
            c.inc();
        }
    }

    pub fn event(&self, event: Event) {
        match event {
            Event::Enrolled => self.enrollments.inc(),
            Event::EnrollWrongCode => self.enroll_wrong_codes.inc(),
            Event::Reset => self.resets.inc(),
            Event::Unlock => self.unlocks.inc(),
            Event::Backoff => self.lockouts[0].inc(),
            Event::HardLock => self.lockouts[1].inc(),
        }
    }

    /// A request's session cookie was checked; `valid`: it carried a session.
    pub fn session_checked(&self, valid: bool) {
        self.session_checks[usize::from(!valid)].inc();
    }

    /// A request was answered by the direct lane ([`crate::server::lane`]).
    pub fn lane_answered(&self) {
        self.lane[0].inc();
    }

    /// The direct lane handed a connection to the full router.
    pub fn lane_handed_over(&self) {
        self.lane[1].inc();
    }

    /// Reports the connections each worker thread serves from `loads` (the server's
    /// spread of connections over its workers); the first call counts.
    pub fn watch_workers(&self, loads: Arc<[AtomicUsize]>) {
        let _ = self.worker_loads.set(loads);
    }

    /// A connection was accepted; it counts as open until the guard is dropped.
    pub fn connection_opened(self: &Arc<Self>) -> OpenConnection {
        self.connections.inc();
        self.open_connections.fetch_add(1, Relaxed);
        OpenConnection(Arc::clone(self))
    }

    /// The metrics in the Prometheus text exposition format (version 0.0.4).
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let sites: Vec<Arc<SiteMetrics>> = self
            .sites
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let w = &mut out;
        header(
            w,
            "mfa_gate_build_info",
            "gauge",
            "The version of mfa-gate.",
        );
        sample(
            w,
            "mfa_gate_build_info",
            &[("version", env!("CARGO_PKG_VERSION"))],
            1,
        );

        header(
            w,
            "mfa_gate_requests_total",
            "counter",
            "Requests answered, by site and status class.",
        );
        for s in &sites {
            for (class, c) in STATUS_CLASSES.iter().zip(&s.requests) {
                sample(
                    w,
                    "mfa_gate_requests_total",
                    &[("site", &s.name), ("status", class)],
                    c.get(),
                );
            }
        }
        header(
            w,
            "mfa_gate_requests_without_site_total",
            "counter",
            "Requests refused before a site was known (bad framing or Host), by status class.",
        );
        for (class, c) in STATUS_CLASSES.iter().zip(&self.without_site) {
            sample(
                w,
                "mfa_gate_requests_without_site_total",
                &[("status", class)],
                c.get(),
            );
        }

        let name = "mfa_gate_upstream_duration_seconds";
        header(
            w,
            name,
            "histogram",
            "Time the console took to send its response head to a forwarded request, by site.",
        );
        for s in &sites {
            let mut cumulative = 0;
            for i in 0..=BUCKETS_MICROS.len() {
                cumulative += s.upstream.bucket(i);
                let le = BUCKETS_MICROS
                    .get(i)
                    .map_or_else(|| "+Inf".to_string(), |&us| seconds(us));
                sample(
                    w,
                    "mfa_gate_upstream_duration_seconds_bucket",
                    &[("site", &s.name), ("le", &le)],
                    cumulative,
                );
            }
            let sum = seconds(s.upstream.sum_micros());
            let _ = writeln!(w, "{name}_sum{{site=\"{}\"}} {sum}", escape(&s.name));
            sample(
                w,
                "mfa_gate_upstream_duration_seconds_count",
                &[("site", &s.name)],
                cumulative,
            );
        }
        header(
            w,
            "mfa_gate_upstream_errors_total",
            "counter",
            "Forwarded requests the console did not answer, by site and reason.",
        );
        for s in &sites {
            for (why, c) in UpstreamFailure::ALL.iter().zip(&s.upstream_errors) {
                sample(
                    w,
                    "mfa_gate_upstream_errors_total",
                    &[("site", &s.name), ("reason", why)],
                    c.get(),
                );
            }
        }

        header(
            w,
            "mfa_gate_logins_total",
            "counter",
            "Login steps by factor (password, code) and outcome.",
        );
        for ((factor, outcome), c) in Login::LABELS.iter().zip(&self.logins) {
            sample(
                w,
                "mfa_gate_logins_total",
                &[("factor", factor), ("outcome", outcome)],
                c.get(),
            );
        }
        header(
            w,
            "mfa_gate_enrollments_total",
            "counter",
            "Enrollment attempts: an authenticator activated (ok) or a wrong first code.",
        );
        sample(
            w,
            "mfa_gate_enrollments_total",
            &[("outcome", "ok")],
            self.enrollments.get(),
        );
        sample(
            w,
            "mfa_gate_enrollments_total",
            &[("outcome", "wrong_code")],
            self.enroll_wrong_codes.get(),
        );
        counter(
            w,
            "mfa_gate_resets_total",
            "Admin resets of a user's second factor.",
            self.resets.get(),
        );
        counter(
            w,
            "mfa_gate_unlocks_total",
            "Admin unlocks of a locked account.",
            self.unlocks.get(),
        );
        header(
            w,
            "mfa_gate_lockouts_total",
            "counter",
            "Wrong codes that left an account locked: in the back-off, or hard-locked until an admin unlocks it.",
        );
        for (kind, c) in ["backoff", "hard"].iter().zip(&self.lockouts) {
            sample(w, "mfa_gate_lockouts_total", &[("kind", kind)], c.get());
        }
        header(
            w,
            "mfa_gate_session_checks_total",
            "counter",
            "Requests that carried a session cookie, by whether it was a valid session.",
        );
        for (result, c) in ["valid", "invalid"].iter().zip(&self.session_checks) {
            sample(
                w,
                "mfa_gate_session_checks_total",
                &[("result", result)],
                c.get(),
            );
        }
        counter(
            w,
            "mfa_gate_connections_total",
            "Client connections accepted.",
            self.connections.get(),
        );
        counter(
            w,
            "mfa_gate_direct_lane_requests_total",
            "Requests of a session forwarded by the direct lane (the rest go through the full router).",
            self.lane[0].get(),
        );
        counter(
            w,
            "mfa_gate_direct_lane_handovers_total",
            "Client connections the direct lane handed to the full router at a request it does not take.",
            self.lane[1].get(),
        );
        header(
            w,
            "mfa_gate_open_connections",
            "gauge",
            "Client connections open now.",
        );
        sample(
            w,
            "mfa_gate_open_connections",
            &[],
            self.open_connections.load(Relaxed),
        );
        if let Some(loads) = self.worker_loads.get() {
            header(
                w,
                "mfa_gate_worker_connections",
                "gauge",
                "Client connections each worker thread serves now.",
            );
            for (i, load) in loads.iter().enumerate() {
                let worker = i.to_string();
                let n = load.load(Relaxed) as u64;
                sample(w, "mfa_gate_worker_connections", &[("worker", &worker)], n);
            }
        }
        out
    }
}

/// An open connection (see [`Metrics::connection_opened`]).
#[derive(Debug)]
pub struct OpenConnection(Arc<Metrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.open_connections.fetch_sub(1, Relaxed);
    }
}

fn header(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn counter(w: &mut String, name: &str, help: &str, value: u64) {
    header(w, name, "counter", help);
    sample(w, name, &[], value);
}

fn sample(w: &mut String, name: &str, labels: &[(&str, &str)], value: u64) {
    w.push_str(name);
    if !labels.is_empty() {
        w.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                w.push(',');
            }
            let _ = write!(w, "{k}=\"{}\"", escape(v));
        }
        w.push('}');
    }
    let _ = writeln!(w, " {value}");
}

/// A label value as the exposition format quotes it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Microseconds as seconds, exactly (`0.005`, `2.5`, `10`).
fn seconds(micros: u64) -> String {
    let (whole, frac) = (micros / 1_000_000, micros % 1_000_000);
    if frac == 0 {
        whole.to_string()
    } else {
        let frac = format!("{frac:06}");
        format!("{whole}.{}", frac.trim_end_matches('0'))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(text: &str, series: &str) -> Option<u64> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn counts_from_many_threads_add_up_over_the_slots() {
        let m = Metrics::new();
        let site = m.sites(["a"]).remove(0);
        std::thread::scope(|scope| {
            // More threads than slots: some share one.
            for _ in 0..SLOTS + 3 {
                scope.spawn(|| {
                    for _ in 0..1000 {
                        m.lane_answered();
                        site.upstream().observe(Duration::from_millis(1));
                    }
                });
            }
        });
        let threads = (SLOTS + 3) as u64;
        assert_eq!(m.lane[0].get(), threads * 1000);
        assert_eq!(site.upstream().count(), threads * 1000);
        assert_eq!(site.upstream().sum_micros(), threads * 1000 * 1000);
    }

    #[test]
    fn counters_and_the_histogram_render_in_the_text_format() {
        let m = Metrics::new();
        let sites = m.sites(["a", "b"]);
        sites[0].request(StatusCode::OK);
        sites[0].request(StatusCode::BAD_GATEWAY);
        sites[0].upstream().observe(Duration::from_millis(3));
        sites[0].upstream().observe(Duration::from_millis(30));
        sites[0].upstream().observe(Duration::from_secs(60));
        m.login(Login::CodeWrong);
        m.event(Event::HardLock);
        let open = m.connection_opened();
        let text = m.render();
        let v = |s: &str| value(&text, s);
        assert_eq!(
            v(r#"mfa_gate_requests_total{site="a",status="2xx"}"#),
            Some(1)
        );
        assert_eq!(
            v(r#"mfa_gate_requests_total{site="a",status="5xx"}"#),
            Some(1)
        );
        assert_eq!(
            v(r#"mfa_gate_requests_total{site="b",status="2xx"}"#),
            Some(0)
        );
        let bucket = |le: &str| {
            v(&format!(
                r#"mfa_gate_upstream_duration_seconds_bucket{{site="a",le="{le}"}}"#
            ))
        };
        assert_eq!(bucket("0.005"), Some(1));
        assert_eq!(bucket("0.025"), Some(1));
        assert_eq!(bucket("0.05"), Some(2));
        assert_eq!(bucket("10"), Some(2));
        assert_eq!(bucket("+Inf"), Some(3));
        assert_eq!(
            v(r#"mfa_gate_upstream_duration_seconds_count{site="a"}"#),
            Some(3)
        );
        assert!(text.contains("mfa_gate_upstream_duration_seconds_sum{site=\"a\"} 60.033\n"));
        assert_eq!(
            v(r#"mfa_gate_logins_total{factor="code",outcome="wrong"}"#),
            Some(1)
        );
        assert_eq!(v(r#"mfa_gate_lockouts_total{kind="hard"}"#), Some(1));
        assert_eq!(v("mfa_gate_open_connections"), Some(1));
        drop(open);
        assert_eq!(value(&m.render(), "mfa_gate_open_connections"), Some(0));
        // Every sample line is `name{labels} value`, every family has HELP and TYPE.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (series, value) = line.rsplit_once(' ').unwrap_or_default();
            assert!(value.parse::<f64>().is_ok(), "{line}");
            let name = series.split('{').next().unwrap_or_default();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|_| name.contains("duration")))
                .unwrap_or(name);
            assert!(text.contains(&format!("# TYPE {family} ")), "{line}");
        }
    }

    #[test]
    fn a_site_keeps_its_counters_across_a_new_configuration() {
        let m = Metrics::new();
        m.sites(["a"])[0].request(StatusCode::OK);
        let again = m.sites(["c", "a"]);
        assert_eq!(again[1].requests("2xx"), 1);
        assert_eq!(again[0].requests("2xx"), 0);
    }

    #[test]
    fn seconds_are_exact() {
        assert_eq!(seconds(5_000), "0.005");
        assert_eq!(seconds(2_500_000), "2.5");
        assert_eq!(seconds(10_000_000), "10");
        assert_eq!(seconds(1), "0.000001");
    }
}
