//! The recovery-codes page, shown once after enrollment (and after regenerating).

use super::{esc, layout};

/// Renders the codes with a link onwards.
pub fn render(codes: &[String], continue_to: &str) -> String {
    let list: String = codes
        .iter()
        .map(|c| format!("<li><code>{}</code></li>", esc(c)))
        .collect();
    let body = format!(
        "<h1>Save your recovery codes</h1>\
<p>If you lose your phone, each of these codes signs you in once instead of a six-digit \
code. Print them or keep them somewhere safe: <strong>they are shown only now</strong>.</p>\
<ol class=\"codes\" id=\"recovery-codes\">{list}</ol>\
<p><a href=\"{href}\" id=\"continue\">I have saved them — continue</a></p>",
        href = esc(continue_to),
    );
    layout("Save your recovery codes", &body)
}
