//! Plain message pages: errors (400, 403, 413, 429, 502, 503, 504…) and notices.

use http::{Response, StatusCode};

use super::{esc, html, layout};
use crate::proxy::Body;

/// A page with a title, one explanatory sentence and an optional link.
pub fn page(
    status: StatusCode,
    title: &str,
    text: &str,
    link: Option<(&str, &str)>,
) -> Response<Body> {
    let link = link.map_or_else(String::new, |(href, label)| {
        format!("<p><a href=\"{}\">{}</a></p>", esc(href), esc(label))
    });
    let body = format!(
        "<h1>{}</h1><p>{}</p>{link}<p class=\"muted\">mfa-gate · {} {}</p>",
        esc(title),
        esc(text),
        status.as_u16(),
        esc(status.canonical_reason().unwrap_or("")),
    );
    html(status, layout(title, &body))
}

/// 400 with the reason.
pub fn bad_request(text: &str) -> Response<Body> {
    page(StatusCode::BAD_REQUEST, "Bad request", text, None)
}

/// 405 for a gate page asked with the wrong method.
pub fn method_not_allowed() -> Response<Body> {
    page(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method not allowed",
        "This page does not accept that kind of request.",
        None,
    )
}
