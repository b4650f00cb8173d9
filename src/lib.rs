//! # mfa-gate
//!
//! A reverse proxy that adds TOTP multi-factor authentication in front of legacy admin
//! consoles. The console keeps checking its own passwords; once it has accepted one, the
//! gate asks for a TOTP code (enrolling the user with a QR code the first time), issues
//! its own session cookie and passes traffic through.
//!
//! ## Layout
//!
//! | module | what lives there |
//! |---|---|
//! | [`cli`] | `serve`, `check-config`, `demo`, `user list/show/reset/unlock` |
//! | [`admin_socket`] | the root-only unix socket the CLI uses to reach the daemon |
//! | [`audit`] | the one writer of audit events (escaped, on `mfa_gate::audit`) |
//! | [`admin`] | the admin web page and JSON API |
//! | [`cookies`] | request cookies parsed and rebuilt as consoles read them; `Set-Cookie` filtering |
//! | [`config`] | TOML → validated [`config::Config`], errors with file:line:column |
//! | [`server`] | listeners (plain/TLS), accept loop, graceful shutdown, systemd notify |
//! | [`gate`] | the decision for one request: refuse, gate page, challenge, or pass |
//! | [`framing`] | raw-byte guard against Content-Length + Transfer-Encoding |
//! | [`target`] | request-target checks and the reserved-prefix routing decision |
//! | [`flow`] | the gate's endpoints: login page, enroll/verify submissions, logout |
//! | [`first_factor`] | how each mode learns "password accepted" (`basic`) |
//! | [`proxy`] | pooled upstream client, header hygiene, upgrades, 502/504 |
//! | [`second_factor`] | a code (or recovery code) checked under the lockout: login and step-up |
//! | [`totp`] | pure TOTP: code syntax, check with skew, secrets, otpauth URI |
//! | [`session`] | cookie codec, expiry checks, the one cookie builder |
//! | [`store`] | the storage contract, sealing of secrets, the sled implementation |
//! | [`throttle`] | per-IP limiter |
//! | [`recovery`] | recovery codes: generation, normal form, keyed hashes |
//! | [`live`] | long-lived traffic of sessions (WebSocket, streams), cut when a session ends |
//! | [`keys`] | master key file and derived keys |
//! | [`pages`] | HTML pages, escaped by construction |
//! | [`demo`] | the demo console and configuration |
//! | [`users`] | list/show/reset/unlock for the CLI, admin socket and admin page |
//! | [`clock`] | time as a parameter |

pub mod admin;
pub mod admin_socket;
pub mod audit;
pub mod cli;
pub mod clock;
pub mod config;
pub mod cookies;
pub mod demo;
pub mod first_factor;
pub mod flow;
pub mod framing;
pub mod gate;
pub mod keys;
pub mod live;
pub mod pages;
pub mod proxy;
pub mod recovery;
pub mod second_factor;
pub mod server;
pub mod session;
pub mod store;
pub mod target;
pub mod throttle;
pub mod totp;
pub mod user_cmd;
pub mod users;
