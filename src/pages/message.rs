//! Plain message pages: a title, one sentence and an optional link (refusals, notices).

use http::{Response, StatusCode};

use super::{esc, layout};
use crate::response::{html, Body};

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
