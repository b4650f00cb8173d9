//! What every request needs: the configuration, the store, the keys, the clock, the client
//! to the consoles and the registry of long-lived traffic — [`Gate`], a cheap `Clone` over
//! an `Arc` — and what the router learns about one request before it hands it on
//! ([`Ctx`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use http::header::HeaderValue;

use crate::clock::Clock;
use crate::config::{Config, FirstFactor, Site};
use crate::cookies::ConsoleCookie;
use crate::error::Error;
use crate::keys::Keys;
use crate::live::Live;
use crate::metrics::{Metrics, SiteMetrics};
use crate::proxy::{ConsoleClient, Forwarding};
use crate::request::BodyDeadline;
use crate::session::{Names, Session};
use crate::store::Store;
use crate::throttle;
use crate::urls::Urls;
use crate::verified::Verified;

/// The gate's state; a cheap `Clone` over an `Arc`.
#[derive(Clone, Debug)]
pub struct Gate {
    inner: Arc<Inner>,
}

/// The state behind [`Gate`].
#[derive(Debug)]
pub struct Inner {
    pub config: Config,
    pub store: Arc<dyn Store>,
    pub keys: Keys,
    pub clock: Arc<dyn Clock>,
    /// The pooled client to the consoles.
    pub console: ConsoleClient,
    /// The gate's cookie names (`__Host-` prefixed when browsers use https).
    pub names: Names,
    /// The addresses of the gate's own pages.
    pub urls: Urls,
    /// The long-lived traffic of sessions, cut when a session ends.
    pub live: Live,
    /// Sessions already decrypted and bound (see [`crate::sessions::current`]).
    pub verified: Verified,
    /// `Strict-Transport-Security` for every answer, when browsers use https.
    pub hsts: Option<HeaderValue>,
    /// Each site's Basic-probe calibration (see `first_factor::basic`). A tokio `Mutex`,
    /// held across the calibration probes, so concurrent first logins wait for one
    /// calibration instead of starting several.
    pub calibrations: Vec<tokio::sync::Mutex<Calibration>>,
    /// The metrics registry: made once per process and handed from gate to gate
    /// ([`Gate::reloaded`]), so counters survive a new configuration.
    pub metrics: Arc<Metrics>,
    /// Each site's counters, in the order of `config.sites` (found by index per request;
    /// a site keeps its counters across a reload as long as it keeps its name).
    pub site_metrics: Vec<Arc<SiteMetrics>>,
    /// Recent machine-token traffic: batched last-use writes and audit events.
    pub tokens: crate::tokens::Uses,
}

/// Logs at start how each `https://` console's certificate is checked, loudly where it
/// is not checked at all.
fn announce_upstream_tls(config: &Config) {
    for site in &config.sites {
        let Some(tls) = &site.upstream.tls else {
            continue;
        };
        if tls.trust == crate::upstream_tls::Trust::Insecure {
            tracing::warn!(
                site = %site.name,
                upstream = %site.upstream.authority,
                "upstream_insecure = true: the console's TLS certificate is NOT checked, so \
                 anyone on the network path to it can read and change its traffic, passwords \
                 included; pin its certificate with upstream_pin instead"
            );
        } else {
            tracing::info!(site = %site.name, upstream = %site.upstream.authority, "console over https: {}", tls.describe());
        }
    }
}

/// A Basic site's probe: its challenge once known to tell a right password from a wrong
/// one, or when it was last found unable to.
#[derive(Debug, Clone)]
pub enum Calibration {
    Unknown,
    Ready(HeaderValue),
    Failed { at: u64 },
}

/// One request, as the router resolved it before handing it on.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// Which `[[site]]` the `Host` names.
    pub site_index: usize,
    pub peer: SocketAddr,
    /// The client: the peer, or what a trusted proxy says.
    pub client_ip: IpAddr,
    pub host: HeaderValue,
    /// Whether the connection is TLS.
    pub tls: bool,
    /// Whether the browser sees https (see `public_scheme`).
    pub https: bool,
}

impl std::ops::Deref for Gate {
    type Target = Inner;
    fn deref(&self) -> &Inner {
        &self.inner
    }
}

impl Gate {
    /// Whether `other` is this very gate (not one built from the same configuration).
    pub fn same(&self, other: &Gate) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    pub fn new(config: Config, store: Arc<dyn Store>, keys: Keys, clock: Arc<dyn Clock>) -> Gate {
        let calibrations = config
            .sites
            .iter()
            .map(|_| tokio::sync::Mutex::new(Calibration::Unknown))
            .collect();
        Gate::build(
            config,
            store,
            keys,
            clock,
            Live::default(),
            calibrations,
            Metrics::new(),
        )
    }

    /// The gate of a reloaded configuration (`server reload`): the same open store, keys
    /// and clock, and the same registry of long-lived traffic, so sessions, lockouts,
    /// logins in progress and the replay guard (all in the store) and open WebSockets
    /// carry over. A Basic site whose probe is unchanged keeps its calibration. New: the
    /// pool of console connections (the upstreams may have changed) and the memory of
    /// verified sessions (a cache, judged under the old sites' rules; a session is
    /// verified again at its next request).
    pub fn reloaded(&self, config: Config) -> Gate {
        let calibrations = config
            .sites
            .iter()
            .map(|site| {
                let kept = self
                    .config
                    .sites
                    .iter()
                    .zip(&self.calibrations)
                    .find(|(old, _)| same_probe(old, site))
                    .and_then(|(_, slot)| slot.try_lock().ok().map(|c| c.clone()));
                tokio::sync::Mutex::new(kept.unwrap_or(Calibration::Unknown))
            })
            .collect();
        Gate::build(
            config,
            Arc::clone(&self.store),
            self.keys.clone(),
            Arc::clone(&self.clock),
            self.live.clone(),
            calibrations,
            Arc::clone(&self.metrics),
        )
    }

    fn build(
        config: Config,
        store: Arc<dyn Store>,
        keys: Keys,
        clock: Arc<dyn Clock>,
        live: Live,
        calibrations: Vec<tokio::sync::Mutex<Calibration>>,
        metrics: Arc<Metrics>,
    ) -> Gate {
        let names = Names::new(config.server.public_https);
        let hsts = config
            .server
            .hsts_max_age
            .filter(|_| config.server.public_https)
            .and_then(|d| HeaderValue::from_str(&format!("max-age={}", d.as_secs())).ok());
        announce_upstream_tls(&config);
        let site_metrics = metrics.sites(config.sites.iter().map(|s| s.name.as_str()));
        Gate {
            inner: Arc::new(Inner {
                metrics,
                site_metrics,
                urls: Urls::new(&config.server.prefix),
                config,
                store,
                keys,
                clock,
                console: ConsoleClient::new(),
                names,
                live,
                verified: Verified::default(),
                hsts,
                calibrations,
                tokens: crate::tokens::Uses::default(),
            }),
        }
    }

    /// The site of a request.
    pub fn site(&self, ctx: &Ctx) -> &Site {
        // `site_index` always comes from the router's lookup over the same list.
        &self.config.sites[ctx
            .site_index
            .min(self.config.sites.len().saturating_sub(1))]
    }

    /// The counters of the site of a request.
    pub fn site_metrics(&self, ctx: &Ctx) -> Option<&SiteMetrics> {
        self.site_metrics.get(ctx.site_index).map(|s| &**s)
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// How long a form of the gate's own pages may take to arrive.
    pub fn body_deadline(&self) -> BodyDeadline {
        BodyDeadline {
            grace: self.config.server.header_timeout,
            bytes_per_sec: self.config.server.min_body_rate,
        }
    }

    /// The admins of a realm: everyone listed in `admins` by a site of that realm.
    pub fn realm_admins(&self, realm: &str) -> Vec<&str> {
        self.config
            .sites
            .iter()
            .filter(|s| s.realm == realm)
            .flat_map(|s| s.admins.iter().map(String::as_str))
            .collect()
    }

    /// Takes one attempt at a secret (a password step, a code) from the client's quota
    /// (`throttle.per_ip`, kept in the store).
    ///
    /// # Errors
    /// [`Error::TooManyAttempts`] with the wait, or a store failure.
    pub async fn take_attempt(&self, ctx: &Ctx) -> Result<(), Error> {
        let quota = throttle::Quota::per_minute(self.config.throttle.per_ip_per_minute);
        let key = throttle::client_key(ctx.client_ip);
        match self
            .store
            .take_attempt(&key, self.clock.now_millis(), quota)
            .await?
        {
            None => Ok(()),
            Some(wait_ms) => Err(Error::TooManyAttempts {
                wait: wait_ms.div_ceil(1000).max(1),
            }),
        }
    }

    /// How a request of site `ctx` is forwarded: for `session` (whose cookie says `seen`)
    /// or without one, with `console_cookie` deciding what of the console's own session
    /// cookie may reach it.
    pub fn forwarding<'a>(
        &'a self,
        ctx: &'a Ctx,
        session: Option<(&'a Session, u64)>,
        console_cookie: ConsoleCookie<'a>,
        drop_authorization: bool,
    ) -> Forwarding<'a> {
        let site = self.site(ctx);
        Forwarding {
            peer: ctx.peer.ip(),
            peer_trusted: self
                .config
                .server
                .trusted_proxies
                .iter()
                .any(|n| n.contains(&ctx.peer.ip())),
            https: ctx.https,
            host: &ctx.host,
            session,
            live: &self.live,
            console_cookie,
            strip: &site.strip_headers,
            drop_authorization,
            metrics: self.site_metrics(ctx),
        }
    }
}

/// Whether two sites' Basic probes are the same request judged the same way (so a
/// calibration of one holds for the other).
fn same_probe(old: &Site, new: &Site) -> bool {
    let (FirstFactor::Basic(a), FirstFactor::Basic(b)) = (&old.first_factor, &new.first_factor)
    else {
        return false;
    };
    a == b
        && old.name == new.name
        && old.hosts.first() == new.hosts.first()
        && old.upstream.scheme == new.upstream.scheme
        && old.upstream.authority == new.upstream.authority
        // An https console is calibrated again: its certificate or trust may have changed.
        && old.upstream.tls.is_none()
        && new.upstream.tls.is_none()
}
