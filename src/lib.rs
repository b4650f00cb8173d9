//! # mfa-gate
//!
//! A reverse proxy that adds TOTP multi-factor authentication in front of legacy admin
//! consoles. The console keeps checking its own passwords; once it has accepted one, the
//! gate asks for a TOTP code (enrolling the user with a QR code the first time), issues
//! its own session cookie and passes traffic through.
//!
//! ## Layout
//!
//! From the top down; a module imports only from the rows below it.
//!
//! | layer | modules |
//! |---|---|
//! | commands | [`cli`] (`serve`, `check-config`, `demo`, `user …`, `token …`, `store …`), [`demo`], [`user_cmd`], [`enrollment_cmd`] (`user invite/import/export`), [`token_cmd`], [`store_cmd`] (`store migrate`), [`admin_socket`], [`logging`] (log formats) |
//! | listening | [`server`]: listeners (plain/TLS; bound, or passed by systemd), connection deadlines and caps, the direct lane (session GETs without hyper), shutdown, reload on SIGHUP, systemd, the metrics listener |
//! | routing | [`gate`]: the one router — checks, site, client, session; errors become pages there; [`access_log`]: each request's count and access line |
//! | handlers | [`first_factor`] (how each mode learns "password accepted"), [`endpoints`] (the gate's own pages, one a file), [`passthrough`] (the console with a session), [`machine`] (a request with a machine token) |
//! | services | [`sessions`] (which session a request carries; its cookie; its ends), [`pending`] (logins in progress), [`second_factor`] (a code under the lockout; step-up), [`users`] (list/show/reset/unlock), [`enrollment_policy`] (who may enroll; invitations), [`import`] (import and export of secrets), [`tokens`] (machine tokens: scope, create/list/revoke) |
//! | state | [`state`]: the shared [`state::Gate`] and one request's [`state::Ctx`] |
//! | forwarding | [`proxy`]: the pooled client to the consoles, header hygiene, upgrades |
//! | pages | [`pages`]: HTML, escaped; [`pages::refusal`] turns an [`error::Error`] into a page or JSON |
//! | data | [`config`] (TOML → validated), [`store`] (the contract, sealing, sled, PostgreSQL) |
//! | core | [`error`], [`upstream_tls`] (trusting an https console), [`response`], [`request`], [`urls`], [`totp`], [`session`] (cookie codec), [`cookies`], [`identity`], [`target`], [`throttle`], [`recovery`], [`keys`], [`live`], [`verified`] (sessions already verified), [`audit`], [`metrics`] (the registry), [`framing`], [`clock`] |

pub mod access_log;
pub mod admin_socket;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cookies;
pub mod demo;
pub mod endpoints;
pub mod enrollment_cmd;
pub mod enrollment_policy;
pub mod error;
pub mod first_factor;
pub mod framing;
pub mod gate;
pub mod identity;
pub mod import;
pub mod keys;
pub mod live;
pub mod logging;
pub mod machine;
pub mod metrics;
pub mod pages;
pub mod passthrough;
pub mod pending;
pub mod proxy;
pub mod recovery;
pub mod request;
pub mod response;
pub mod second_factor;
pub mod server;
pub mod session;
pub mod sessions;
pub mod state;
pub mod store;
pub mod store_cmd;
pub mod target;
pub mod throttle;
pub mod token_cmd;
pub mod tokens;
pub mod totp;
pub mod upstream_tls;
pub mod urls;
pub mod user_cmd;
pub mod users;
pub mod verified;
