//! Why the gate refuses a request: one enum of refusals. Handlers (the first-factor
//! modes, the gate's endpoints, the proxy) return it; the router turns it into a page, or
//! JSON for the API, in one place ([`crate::pages::refusal`]). What is wrong inside the
//! gate (a store failure, a sealed record that does not open) goes to the log there, never
//! to the browser.

use std::borrow::Cow;

use http::HeaderValue;

use crate::store::seal::SealError;
use crate::store::StoreError;

/// A refusal, or a failure the request cannot get past.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A malformed or ambiguous request (400), with the sentence to show.
    #[error("bad request: {0}")]
    BadRequest(Cow<'static, str>),
    /// A user name the gate cannot key an enrollment by (400).
    #[error("a user name that cannot be used")]
    BadUserName,
    /// No such page (404).
    #[error("no such page")]
    NotFound,
    /// A page asked with a method it does not take (405).
    #[error("method not allowed")]
    MethodNotAllowed { allow: &'static str },
    /// A form larger than the page takes (413).
    #[error("request body too large")]
    PayloadTooLarge,
    /// A form that did not arrive in time (408; the connection closes).
    #[error("request body too slow")]
    RequestTimeout,
    /// Cross-site, or without the form's token (403).
    #[error("cross-site request or bad token")]
    CrossSite,
    /// The client's attempt quota is spent (429 with `Retry-After`).
    #[error("too many attempts from this client")]
    TooManyAttempts { wait: u64 },
    /// The account backs off (429 with `Retry-After`) or is locked until an admin unlocks
    /// it (`wait: None`, 403).
    #[error("account locked")]
    Locked { wait: Option<u64> },
    /// A step-up code was wrong, already used, or missing (403).
    #[error("step-up code not accepted")]
    StepUpRefused,
    /// The login in progress is gone: expired, finished, or ended by a reset, lock or
    /// unlock (400).
    #[error("sign-in expired")]
    SignInExpired,
    /// Form mode without a session, for a request that is not a page view (401).
    #[error("sign-in required")]
    SignInRequired { login_page: String },
    /// Basic mode without credentials: the console's own challenge (401).
    #[error("credentials required")]
    Challenge(HeaderValue),
    /// An enrolled user asked to enroll again (409).
    #[error("already enrolled")]
    AlreadyEnrolled { login: String },
    /// A page that needs a gate session, asked without one (401; the admin API).
    #[error("not signed in")]
    NotSignedIn,
    /// A signed-in user who is not an admin of this realm (403).
    #[error("not an administrator")]
    NotAdmin { user: String },
    /// An admin action on a user the realm does not know (404).
    #[error("no such user")]
    NoSuchUser {
        realm: String,
        user: String,
        back: String,
    },
    /// An admin action without its confirmation (400).
    #[error("not confirmed")]
    NotConfirmed { back: String },
    /// The console signed in another user than the one the gate judged (403).
    #[error("the console named another user")]
    IdentityMismatch,
    /// The site cannot log anyone in as configured (502); what to fix is logged.
    #[error("misconfigured: {0}")]
    Misconfigured(&'static str),
    /// The cap on logins in progress is reached (503).
    #[error("too many logins in progress")]
    TooManyInProgress,
    /// The console gave no usable answer (502/504).
    #[error("{0}")]
    Upstream(#[from] UpstreamError),
    /// The store failed (503: fail closed).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The operating system's random generator failed (500).
    #[error("the random generator failed")]
    Random,
    /// Sealing or opening a secret failed (500: fail closed).
    #[error("{0}")]
    Seal(#[from] SealError),
    /// A client that is not a browser (its `Accept` names no `text/html`) asked for a
    /// console page without a session: it cannot do the code step (401, never a redirect).
    #[error("second factor required")]
    SecondFactorRequired,
    /// A machine token that is unknown, revoked or expired, or a token header that is not
    /// one token (401); the reason for the client.
    #[error("machine token refused: {0}")]
    TokenRefused(&'static str),
    /// A machine token outside its scope (site, network, method, path), or sent to the
    /// gate's own pages (403); the reason for the client.
    #[error("machine token out of scope: {0}")]
    TokenOutOfScope(&'static str),
}

impl From<getrandom::Error> for Error {
    fn from(_: getrandom::Error) -> Error {
        Error::Random
    }
}

/// Why the console gave no usable answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// No response head within the site's `upstream_timeout`.
    #[error("the console did not answer in time")]
    Timeout,
    /// The connection failed.
    #[error("the console cannot be reached")]
    Unreachable,
    /// The TLS connection to an `https://` console failed (its certificate was not
    /// accepted, most often); the reason is logged.
    #[error("the console's TLS certificate was not accepted")]
    Tls,
    /// The request could not be built, or the answer was broken or too large.
    #[error("the console's answer is unusable")]
    Invalid,
}

/// What handlers return.
pub type Result<T, E = Error> = std::result::Result<T, E>;
