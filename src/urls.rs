//! The addresses of the gate's own pages, under the reserved prefix (`/.mfa/` by
//! default): built here and nowhere else.

/// The gate's page addresses for one prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Urls {
    prefix: String,
}

impl Urls {
    /// `prefix` is the configured reserved prefix, `/NAME/`.
    pub fn new(prefix: &str) -> Urls {
        Urls {
            prefix: prefix.to_string(),
        }
    }

    fn at(&self, rest: &str) -> String {
        format!("{}{rest}", self.prefix)
    }

    /// The login page (enrollment or verification).
    pub fn login(&self) -> String {
        self.at("login")
    }
    pub fn enroll(&self) -> String {
        self.at("enroll")
    }
    /// Where an invitation code is posted.
    pub fn invite(&self) -> String {
        self.at("invite")
    }
    pub fn verify(&self) -> String {
        self.at("verify")
    }
    pub fn logout(&self) -> String {
        self.at("logout")
    }
    pub fn recovery(&self) -> String {
        self.at("recovery")
    }
    /// The admin page: the users of the realm.
    pub fn admin(&self) -> String {
        self.at("admin")
    }
    /// Where the confirmation page of `action` posts.
    pub fn admin_action(&self, action: &str) -> String {
        self.at(&format!("admin/{action}"))
    }
    /// The confirmation page of an invitation for `user`.
    pub fn admin_invite(&self, user: &str) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("user", user)
            .finish();
        self.at(&format!("admin/invite?{query}"))
    }
    /// The confirmation page of `action` for `user`.
    pub fn admin_confirm(&self, action: &str, user: &str) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("action", action)
            .append_pair("user", user)
            .finish();
        self.at(&format!("admin/confirm?{query}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_is_under_the_prefix() {
        let u = Urls::new("/.mfa/");
        assert_eq!(u.login(), "/.mfa/login");
        assert_eq!(u.admin_action("reset"), "/.mfa/admin/reset");
        assert_eq!(
            u.admin_confirm("reset", "a&b c"),
            "/.mfa/admin/confirm?action=reset&user=a%26b+c"
        );
        assert_eq!(Urls::new("/_gate/").logout(), "/_gate/logout");
    }
}
