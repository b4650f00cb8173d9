//! The admin's invitation pages: the confirmation (with a fresh code of the admin's own,
//! and how long the invitation is valid) and the invitation, shown once.

use super::admin::utc_minute;
use super::{esc, layout};
use crate::urls::Urls;

/// What the confirmation shows.
pub struct Confirm<'a> {
    pub realm: &'a str,
    pub user: &'a str,
    /// The user's state now ("not enrolled", "not enrolled, invited", "no record yet").
    pub state: &'a str,
    pub urls: &'a Urls,
    pub csrf: &'a str,
}

/// Renders the confirmation: a POST form and a way back.
pub fn render_confirm(p: &Confirm<'_>) -> String {
    let title = format!("Invite {}?", p.user);
    let body = format!(
        "<h1>{title}</h1><p id=\"explain\">A one-time invitation lets {user} set up two-factor \
authentication once, after signing in to the console with their own password. It replaces any \
earlier invitation of {user}; it is shown only once.</p>\
<p class=\"muted\">Realm <strong>{realm}</strong>; current state: {state}.</p>\
<form method=\"post\" action=\"{action}\">\
<input type=\"hidden\" name=\"user\" value=\"{user}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"confirm\" value=\"yes\">\
<label for=\"valid\">Valid for (hours, at most 720)</label>\
<input type=\"text\" id=\"valid\" name=\"valid_hours\" value=\"72\" inputmode=\"numeric\" maxlength=\"3\">\
<label for=\"code\">A current code from your own app, to confirm</label>\
<input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" pattern=\"[0-9]{{6}}\" \
maxlength=\"6\" autocomplete=\"one-time-code\" required>\
<button type=\"submit\">Invite {user}</button>\
<a class=\"cancel\" href=\"{cancel}\">Cancel</a></form>",
        title = esc(&title),
        user = esc(p.user),
        realm = esc(p.realm),
        state = esc(p.state),
        action = esc(&p.urls.admin_action("invite")),
        cancel = esc(&p.urls.admin()),
        csrf = esc(p.csrf),
    );
    layout(&title, &body)
}

/// Renders the invitation, shown once.
pub fn render_issued(user: &str, code: &str, link: &str, expires: u64, back: &str) -> String {
    let title = format!("Invitation for {user}");
    let body = format!(
        "<h1>{title_e}</h1><p>Give {user_e} this code or link; it is shown only now and works \
once, until {until} UTC. {user_e} signs in to the console first, then enters the code on the \
set-up page (or opens the link).</p>\
<p class=\"secret\" id=\"invitation-code\">{code}</p>\
<p><a id=\"invitation-link\" href=\"{link}\">{link}</a></p>\
<p><a href=\"{back}\">Back to the users</a></p>",
        title_e = esc(&title),
        user_e = esc(user),
        until = esc(&utc_minute(expires)),
        code = esc(code),
        link = esc(link),
        back = esc(back),
    );
    layout(&title, &body)
}
