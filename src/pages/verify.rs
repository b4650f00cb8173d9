//! The verification page: one field for the six-digit code.

use super::{error_banner, esc, layout};

/// What the verification page shows.
pub struct Verify<'a> {
    pub issuer: &'a str,
    pub user: &'a str,
    pub action: &'a str,
    pub csrf: &'a str,
    pub error: Option<&'a str>,
}

/// Renders the page.
pub fn render(p: &Verify<'_>) -> String {
    let body = format!(
        "<h1>Two-factor authentication</h1>\
<p>Signed in to <strong>{issuer}</strong> as <strong>{user}</strong>. Enter the code from \
your authenticator app.</p>{error}\
<form method=\"post\" action=\"{action}\" autocomplete=\"off\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label for=\"code\">Six-digit code</label>\
<input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" pattern=\"[0-9]{{6}}\" \
maxlength=\"6\" autocomplete=\"one-time-code\" required autofocus>\
<button type=\"submit\">Verify</button></form>",
        issuer = esc(p.issuer),
        user = esc(p.user),
        error = error_banner(p.error),
        action = esc(p.action),
        csrf = esc(p.csrf),
    );
    layout("Two-factor authentication", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_escaped() {
        let page = render(&Verify {
            issuer: "Acme",
            user: "<script>alert(1)</script>",
            action: "/.mfa/verify",
            csrf: "t",
            error: Some("a \"quoted\" <b>"),
        });
        assert!(!page.contains("<script>alert"));
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(page.contains("a &quot;quoted&quot; &lt;b&gt;"));
    }
}
