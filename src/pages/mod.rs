//! The gate's own HTML pages: one page a file, every interpolated value escaped by
//! [`esc`], no JavaScript and no external assets (inline CSS and inline SVG only). Pages
//! are strings; [`crate::response::html`] sends them. [`refusal`] is the one place a
//! refusal becomes a page (or JSON).

pub mod admin;
pub mod admin_invite;
pub mod enroll;
pub mod enroll_policy;
pub mod message;
pub mod recovery;
pub mod refusal;
pub mod session;
pub mod verify;

/// Escapes text for HTML element content and quoted attribute values.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;background:#f3f4f6;color:#111;margin:0}\
main{max-width:28rem;margin:3rem auto;background:#fff;padding:2rem;border-radius:.75rem;\
box-shadow:0 1px 4px rgba(0,0,0,.15)}h1{font-size:1.4rem;margin-top:0}\
.qr{display:block;margin:1rem auto;width:220px;height:220px}\
.secret{font-family:ui-monospace,monospace;font-size:1.1rem;letter-spacing:.05em;\
background:#f3f4f6;padding:.5rem;border-radius:.25rem;text-align:center;word-break:normal;overflow-wrap:anywhere}\
label{display:block;margin-top:1rem;font-weight:600}\
input[type=text]{font-size:1.5rem;letter-spacing:.3em;width:100%;box-sizing:border-box;\
padding:.5rem;margin-top:.25rem;font-family:ui-monospace,monospace}\
button{margin-top:1rem;font-size:1rem;padding:.6rem 1.2rem;border:0;border-radius:.4rem;\
background:#1d4ed8;color:#fff;cursor:pointer}.codes{font-family:ui-monospace,monospace;font-size:1.1rem;columns:2}.error{background:#fee2e2;color:#991b1b;\
padding:.6rem;border-radius:.4rem}.muted{color:#555;font-size:.9rem}";

/// Wraps a page body in the common document.
pub fn layout(title: &str, body: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<title>{}</title><style>{STYLE}</style></head><body><main>{body}</main></body></html>\n",
        esc(title)
    )
}

/// An error banner, or nothing.
pub fn error_banner(error: Option<&str>) -> String {
    error.map_or_else(String::new, |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e))
    })
}
