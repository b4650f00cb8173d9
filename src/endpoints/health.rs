//! `healthz`: liveness and readiness — `ok` when the store answers.

use http::{Response, StatusCode};

use crate::error::Error;
use crate::response::{text, Body};
use crate::state::Gate;

/// `GET healthz`.
///
/// # Errors
/// The store does not answer (503).
pub async fn check(gate: &Gate) -> Result<Response<Body>, Error> {
    gate.store.session_revoked("healthz").await?;
    Ok(text(StatusCode::OK, "ok\n"))
}
