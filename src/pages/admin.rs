//! The admin pages: the users of a realm, the confirmation of a reset or unlock.
//!
//! Every value is escaped with [`esc`]; links carry the user name percent-encoded.

use super::{esc, layout};
use crate::store::UserView;
use crate::urls::Urls;

/// What an admin can do to a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Reset,
    Unlock,
}

impl Action {
    /// The name used in URLs and forms.
    pub fn name(self) -> &'static str {
        match self {
            Action::Reset => "reset",
            Action::Unlock => "unlock",
        }
    }

    pub fn parse(text: &str) -> Option<Action> {
        match text {
            "reset" => Some(Action::Reset),
            "unlock" => Some(Action::Unlock),
            _ => None,
        }
    }

    /// What the action does to `user`, in one sentence.
    pub fn explain(self, user: &str) -> String {
        match self {
            Action::Reset => format!(
                "Reset {user}: their authenticator, recovery codes and lockout are cleared and \
their sessions end now; they set up two-factor authentication again at their next sign-in."
            ),
            Action::Unlock => format!(
                "Unlock {user}: the lockout after wrong codes is lifted; their authenticator and \
recovery codes stay as they are."
            ),
        }
    }
}

/// Extra style for the wider admin pages (the common layout is sized for a login form).
const ADMIN_STYLE: &str = "<style>main{max-width:64rem}table{border-collapse:collapse;width:100%;\
font-size:.95rem}th,td{text-align:left;padding:.4rem .5rem;border-bottom:1px solid #e5e7eb;\
vertical-align:top}th{background:#f9fafb}td.num{text-align:right}.actions a{margin-right:.6rem}\
.danger{background:#b91c1c}.cancel{margin-left:1rem}</style>";

/// What the user list shows.
pub struct UserList<'a> {
    /// The signed-in admin.
    pub admin: &'a str,
    pub realm: &'a str,
    pub users: &'a [UserView],
    pub now: u64,
    /// The addresses of the gate's pages.
    pub urls: &'a Urls,
}

/// Renders the user list.
pub fn render_list(p: &UserList<'_>) -> String {
    let rows: String = p
        .users
        .iter()
        .map(|u| {
            format!(
                "<tr data-user=\"{user}\"><td>{user}</td><td class=\"state\">{state}</td>\
<td>{enrolled}</td><td class=\"from\">{from}</td><td>{last}</td><td class=\"num\">{failures}</td>\
<td class=\"num\">{codes}</td><td class=\"actions\"><a href=\"{reset}\">Reset…</a>\
<a href=\"{unlock}\">Unlock…</a>{invite}</td></tr>",
                user = esc(&u.user),
                state = esc(&u.state(p.now)),
                enrolled = esc(&when(u.enrolled_at)),
                last = esc(&when(u.last_login)),
                failures = u.failures,
                codes = u.recovery_codes_left,
                reset = esc(&p.urls.admin_confirm(Action::Reset.name(), &u.user)),
                unlock = esc(&p.urls.admin_confirm(Action::Unlock.name(), &u.user)),
                from = esc(u.enrolled_from.as_deref().unwrap_or("—")),
                invite = if u.enrolled {
                    String::new()
                } else {
                    format!(
                        "<a href=\"{}\">Invite…</a>",
                        esc(&p.urls.admin_invite(&u.user))
                    )
                },
            )
        })
        .collect();
    let table = if p.users.is_empty() {
        "<p id=\"no-users\">Nobody has signed in through the gate in this realm yet.</p>"
            .to_string()
    } else {
        format!(
            "<table id=\"users\"><thead><tr><th>User</th><th>State</th><th>Enrolled at (UTC)</th>\
<th>Enrolled from</th><th>Last sign-in (UTC)</th><th>Failures</th><th>Recovery codes left</th><th></th></tr></thead>\
<tbody>{rows}</tbody></table>"
        )
    };
    let body = format!(
        "{ADMIN_STYLE}<h1>Users of realm {realm}</h1>\
<p class=\"muted\">Signed in as <strong>{admin}</strong>, administrator of this realm. \
Times are UTC. <a href=\"{logout}\">Sign out</a></p>{table}\
<form method=\"get\" action=\"{invite}\" id=\"invite\"><label for=\"invite-user\">Invite a user to set up \
two-factor authentication</label><input type=\"text\" id=\"invite-user\" name=\"user\" required>\
<button type=\"submit\">Invite…</button></form>",
        realm = esc(p.realm),
        admin = esc(p.admin),
        logout = esc(&p.urls.logout()),
        invite = esc(&p.urls.admin_action("invite")),
    );
    layout(&format!("Users of realm {}", p.realm), &body)
}

/// What the confirmation page shows.
pub struct Confirm<'a> {
    pub action: Action,
    pub user: &'a UserView,
    pub now: u64,
    pub urls: &'a Urls,
    pub csrf: &'a str,
}

/// Renders the confirmation page: what will happen, a POST form and a way back.
pub fn render_confirm(p: &Confirm<'_>) -> String {
    let (title, button) = match p.action {
        Action::Reset => (format!("Reset {}?", p.user.user), "Reset"),
        Action::Unlock => (format!("Unlock {}?", p.user.user), "Unlock"),
    };
    let class = match p.action {
        Action::Reset => " class=\"danger\"",
        Action::Unlock => "",
    };
    let body = format!(
        "{ADMIN_STYLE}<h1>{title}</h1><p id=\"explain\">{explain}</p>\
<p class=\"muted\">Realm <strong>{realm}</strong>; current state: {state}.</p>\
<form method=\"post\" action=\"{action}\">\
<input type=\"hidden\" name=\"user\" value=\"{user}\">\
<input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
<input type=\"hidden\" name=\"confirm\" value=\"yes\">\
<label for=\"code\">A current code from your own app, to confirm</label>\
<input type=\"text\" id=\"code\" name=\"code\" inputmode=\"numeric\" pattern=\"[0-9]{{6}}\" \
maxlength=\"6\" autocomplete=\"one-time-code\" required>\
<button type=\"submit\"{class}>{button} {user}</button>\
<a class=\"cancel\" href=\"{cancel}\">Cancel</a></form>",
        title = esc(&title),
        explain = esc(&p.action.explain(&p.user.user)),
        realm = esc(&p.user.realm),
        state = esc(&p.user.state(p.now)),
        action = esc(&p.urls.admin_action(p.action.name())),
        cancel = esc(&p.urls.admin()),
        user = esc(&p.user.user),
        csrf = esc(p.csrf),
    );
    layout(&title, &body)
}

/// A unix time as UTC `YYYY-MM-DD HH:MM`, or `—`.
fn when(t: Option<u64>) -> String {
    t.map_or_else(|| "—".to_string(), utc_minute)
}

/// Formats unix seconds as UTC `YYYY-MM-DD HH:MM` (proleptic Gregorian calendar).
pub fn utc_minute(unix: u64) -> String {
    let days = unix / 86_400;
    let secs = unix % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        secs / 3600,
        (secs % 3600) / 60
    )
}

/// Days since 1970-01-01 → (year, month, day); H. Hinnant's `civil_from_days`.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z % 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times() {
        assert_eq!(utc_minute(0), "1970-01-01 00:00");
        assert_eq!(utc_minute(59), "1970-01-01 00:00");
        assert_eq!(utc_minute(1_767_225_610), "2026-01-01 00:00");
        assert_eq!(utc_minute(951_782_400), "2000-02-29 00:00");
        assert_eq!(utc_minute(951_868_799), "2000-02-29 23:59");
        assert_eq!(utc_minute(1_111_111_109), "2005-03-18 01:58");
        assert_eq!(utc_minute(2_000_000_000), "2033-05-18 03:33");
        assert_eq!(utc_minute(4_102_444_800), "2100-01-01 00:00");
        assert_eq!(utc_minute(4_107_456_000), "2100-02-28 00:00");
        assert_eq!(utc_minute(4_107_542_400), "2100-03-01 00:00");
        assert_eq!(when(None), "—");
    }

    fn view(user: &str) -> UserView {
        UserView {
            realm: "r<&>".into(),
            user: user.into(),
            enrolled: true,
            enrolled_at: Some(0),
            last_login: None,
            failures: 3,
            locked_until: 0,
            hard_locked: false,
            recovery_codes_left: 10,
            enrolled_from: Some("10.0.0.1".into()),
            invited_until: None,
        }
    }

    #[test]
    fn names_are_escaped_and_links_encoded() {
        let users = [view("<script>x&y\"")];
        let page = render_list(&UserList {
            admin: "<admin>",
            realm: "r<&>",
            users: &users,
            now: 0,
            urls: &Urls::new("/.mfa/"),
        });
        assert!(!page.contains("<script>x"));
        assert!(!page.contains("<admin>"));
        assert!(page.contains("&lt;script&gt;x&amp;y&quot;"));
        assert!(page.contains("Users of realm r&lt;&amp;&gt;"));
        assert!(page
            .contains("href=\"/.mfa/admin/confirm?action=reset&amp;user=%3Cscript%3Ex%26y%22\""));
        let confirm = render_confirm(&Confirm {
            action: Action::Reset,
            user: &users[0],
            now: 0,
            urls: &Urls::new("/.mfa/"),
            csrf: "t\"",
        });
        assert!(!confirm.contains("<script>x"));
        assert!(confirm.contains("name=\"user\" value=\"&lt;script&gt;x&amp;y&quot;\""));
        assert!(confirm.contains("name=\"csrf\" value=\"t&quot;\""));
        assert!(confirm.contains("action=\"/.mfa/admin/reset\""));
    }
}
