//! `healthz`: liveness and readiness — `ok` when the store answers; `degraded` (still 200)
//! when a shared database is down but this gate passes recently checked sessions: every
//! instance shares the database, so taking them all out of a load balancer helps nobody.

use http::{Response, StatusCode};

use crate::error::Error;
use crate::response::{text, Body};
use crate::state::Gate;
use crate::store::Health;

/// `GET healthz`.
///
/// # Errors
/// None: a store that does not answer is a 503 page of its own.
pub async fn check(gate: &Gate) -> Result<Response<Body>, Error> {
    Ok(match gate.store.health().await {
        Health::Ok => text(StatusCode::OK, "ok\n"),
        Health::Degraded(why) => {
            tracing::warn!(why, "healthz: degraded");
            text(StatusCode::OK, "degraded: the database does not answer\n")
        }
        Health::Down(why) => {
            tracing::error!(why, "healthz: the store does not answer");
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "down: the store does not answer\n",
            )
        }
    })
}
