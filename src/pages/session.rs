//! The pages of a signed-in person: replace the recovery codes, sign out.

use super::{esc, layout};

/// The form that replaces the recovery codes (after a fresh code).
pub struct Recovery<'a> {
    pub user: &'a str,
    /// Unused recovery codes left.
    pub left: usize,
    pub action: &'a str,
    pub csrf: &'a str,
}

/// Renders the recovery-codes form.
pub fn recovery(p: &Recovery<'_>) -> String {
    let body = format!(
        "<h1>Recovery codes</h1><p>Signed in as <strong>{user}</strong>; {left} unused recovery \
code{s} left.</p><p>New codes replace all old ones, which stop working at once.</p>\
<form method=\"post\" action=\"{action}\" autocomplete=\"off\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label for=\"code\">A current code from your app, to confirm</label>\
<input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" pattern=\"[0-9]{{6}}\" \
maxlength=\"6\" autocomplete=\"one-time-code\" required>\
<button type=\"submit\">Make new recovery codes</button></form>",
        user = esc(p.user),
        left = p.left,
        s = if p.left == 1 { "" } else { "s" },
        action = esc(p.action),
        csrf = esc(p.csrf),
    );
    layout("Recovery codes", &body)
}

/// The sign-out form of a session.
pub fn logout(user: &str, action: &str, csrf: &str) -> String {
    let body = format!(
        "<h1>Sign out</h1><p>Signed in as <strong>{}</strong>.</p>\
<form method=\"post\" action=\"{}\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
<button type=\"submit\">Sign out</button></form>",
        esc(user),
        esc(action),
        esc(csrf),
    );
    layout("Sign out", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let page = recovery(&Recovery {
            user: "<b>",
            left: 1,
            action: "/.mfa/recovery",
            csrf: "\"t",
        });
        assert!(page.contains("&lt;b&gt;") && page.contains("1 unused recovery code left"));
        assert!(page.contains("value=\"&quot;t\""));
        assert!(logout("<i>", "/.mfa/logout", "x").contains("&lt;i&gt;"));
    }
}
