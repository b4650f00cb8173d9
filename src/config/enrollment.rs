//! The enrollment policy of a realm: `enrollment = "open" | "invite"`, `enroll_from`
//! networks, an `enroll_until` date closing the rollout window, and the `contact` text the
//! refusal pages show. Sites of one realm share one user namespace, so they must state
//! the same policy (otherwise the laxest site would decide for all).

use std::ops::Range;
use std::time::UNIX_EPOCH;

use ipnet::IpNet;
use toml::Spanned;

use super::values::has_control;
use super::{ConfigError, Locator, Site};

/// Whether a user without a second factor may enroll on first login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Enrollment {
    /// Whoever passes the console's password step enrolls (the default).
    Open,
    /// Only with a one-time invitation an admin issued for that user.
    Invite,
}

/// Who may enroll, from where and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollmentPolicy {
    pub enrollment: Enrollment,
    /// Networks enrollment is allowed from (the client address as the gate believes it,
    /// see `trusted_proxies`); empty: from anywhere.
    pub enroll_from: Vec<IpNet>,
    /// Unix time after which nobody enrolls any more (the end of a rollout window).
    pub enroll_until: Option<u64>,
    /// Whom to ask, shown on the pages that refuse an enrollment.
    pub contact: String,
}

/// The `contact` text when none is configured.
pub const DEFAULT_CONTACT: &str = "your administrator";

impl Default for EnrollmentPolicy {
    fn default() -> EnrollmentPolicy {
        EnrollmentPolicy {
            enrollment: Enrollment::Open,
            enroll_from: Vec::new(),
            enroll_until: None,
            contact: DEFAULT_CONTACT.to_string(),
        }
    }
}

pub(super) fn validate(
    at: &Locator<'_>,
    enrollment: Option<&Spanned<String>>,
    enroll_from: Option<&Spanned<Vec<Spanned<String>>>>,
    enroll_until: Option<&Spanned<String>>,
    contact: Option<&Spanned<String>>,
) -> Result<EnrollmentPolicy, ConfigError> {
    let enrollment = match enrollment {
        None => Enrollment::Open,
        Some(e) if e.get_ref() == "open" => Enrollment::Open,
        Some(e) if e.get_ref() == "invite" => Enrollment::Invite,
        Some(e) => {
            return Err(at.at(
                e,
                &format!("unknown enrollment policy {:?}", e.get_ref()),
                "\"open\" (anyone who passes the console's password enrolls, the default) or \
                 \"invite\" (only with an invitation: `mfa-gate user invite REALM/USER`)",
            ))
        }
    };
    let enroll_from = match enroll_from {
        None => Vec::new(),
        Some(list) if list.get_ref().is_empty() => {
            return Err(at.at(
                list,
                "enroll_from is empty, so nobody could ever enroll",
                "networks such as enroll_from = [\"10.0.0.0/8\"], or leave it out to allow any",
            ))
        }
        Some(list) => super::values::networks(at, list.get_ref().clone())?,
    };
    let enroll_until = enroll_until
        .map(|u| {
            humantime::parse_rfc3339(u.get_ref())
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_secs())
                .ok_or_else(|| {
                    at.at(
                        u,
                        &format!("cannot read {:?} as a UTC date and time", u.get_ref()),
                        "RFC 3339 in UTC, e.g. enroll_until = \"2027-01-31T00:00:00Z\"",
                    )
                })
        })
        .transpose()?;
    let contact = match contact {
        None => DEFAULT_CONTACT.to_string(),
        Some(c)
            if c.get_ref().trim().is_empty()
                || has_control(c.get_ref())
                || c.get_ref().len() > 200 =>
        {
            return Err(at.at(
                c,
                "the contact text is empty, too long or has a control character",
                "one line saying whom to ask, e.g. contact = \"the IT desk, extension 4242\"",
            ))
        }
        Some(c) => c.get_ref().trim().to_string(),
    };
    Ok(EnrollmentPolicy {
        enrollment,
        enroll_from,
        enroll_until,
        contact,
    })
}

/// Sites of one realm must state the same policy.
pub(super) fn same_in_realm(
    at: &Locator<'_>,
    name_span: Range<usize>,
    site: &Site,
    before: &[Site],
) -> Result<(), ConfigError> {
    match before
        .iter()
        .find(|s| s.realm == site.realm && s.enrollment != site.enrollment)
    {
        None => Ok(()),
        Some(other) => Err(at.error(
            name_span,
            &format!(
                "site {:?} shares realm {:?} with site {:?}, but states another enrollment policy",
                site.name, site.realm, other.name
            ),
            "the same enrollment, enroll_from, enroll_until and contact in every [[site]] of a realm",
        )),
    }
}
