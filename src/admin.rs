//! The admin web page and JSON API under the reserved prefix (`admin`, `api/…`).

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use crate::gate::{Ctx, Gate};
use crate::pages::message;
use crate::proxy::Body;

/// Routes `admin…` and `api/…` requests.
pub async fn handle(_gate: &Gate, _ctx: &Ctx, _req: Request<Incoming>, _rest: &str) -> Response<Body> {
    message::page(StatusCode::NOT_FOUND, "Not found", "The admin pages are not built yet.", None)
}
