//! The pages of an enrollment the realm's policy does not allow (yet): the invitation
//! form of an invite-only realm, and the refusal outside the allowed networks or after
//! the rollout window. Neither shows a QR code or a secret: none was made.

use super::{error_banner, esc, layout};

/// The invitation form.
pub struct Invitation<'a> {
    pub issuer: &'a str,
    pub user: &'a str,
    /// Whom to ask (the realm's `contact`).
    pub contact: &'a str,
    pub action: &'a str,
    pub csrf: &'a str,
    /// The code from the invitation link, if the page was opened through it.
    pub prefill: &'a str,
    pub error: Option<&'a str>,
}

/// Renders the invitation form.
pub fn render_invitation(p: &Invitation<'_>) -> String {
    let body = format!(
        "<h1>Invitation needed</h1>\
<p id=\"needs-invitation\">Signed in to <strong>{issuer}</strong> as <strong>{user}</strong>. \
Two-factor authentication is set up here by invitation only. Ask <strong id=\"contact\">{contact}</strong> \
for an invitation for {user}, then enter its code here.</p>{error}\
<form method=\"post\" action=\"{action}\" autocomplete=\"off\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<label for=\"invitation\">Invitation code</label>\
<input type=\"text\" id=\"invitation\" name=\"invitation\" value=\"{prefill}\" maxlength=\"64\" \
spellcheck=\"false\" required autofocus>\
<button type=\"submit\">Continue</button></form>",
        issuer = esc(p.issuer),
        user = esc(p.user),
        contact = esc(p.contact),
        error = error_banner(p.error),
        action = esc(p.action),
        csrf = esc(p.csrf),
        prefill = esc(p.prefill),
    );
    layout("Invitation needed", &body)
}

/// Renders the refusal: why, and whom to ask.
pub fn render_refused(user: &str, why: &str, contact: &str) -> String {
    let body = format!(
        "<h1>Two-factor set-up not available</h1>\
<p id=\"refused\">{user} has no two-factor authentication yet, and {why} Ask \
<strong id=\"contact\">{contact}</strong> for help.</p>",
        user = esc(user),
        why = esc(why),
        contact = esc(contact),
    );
    layout("Two-factor set-up not available", &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_escaped() {
        let page = render_invitation(&Invitation {
            issuer: "Acme",
            user: "<u>",
            contact: "IT <desk>",
            action: "/.mfa/invite",
            csrf: "t",
            prefill: "\"><script>",
            error: None,
        });
        assert!(!page.contains("<script>") && !page.contains("<u>") && !page.contains("<desk>"));
        assert!(page.contains("value=\"&quot;&gt;&lt;script&gt;\""));
        let page = render_refused("<u>", "it is <late>.", "x&y");
        assert!(page.contains("&lt;late&gt;") && page.contains("x&amp;y"));
    }
}
