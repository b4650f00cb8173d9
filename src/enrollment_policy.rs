//! Who may enroll a second factor: the realm's [`EnrollmentPolicy`] (open or by
//! invitation, from which networks, until when) and the one-time invitations an admin
//! issues.
//!
//! An invitation is a 128-bit random value, shown once as a code (Base32, grouped by
//! four) and as a link to the login page carrying it; the store keeps only its SHA-256
//! (in the user's record, see [`crate::store::Invitation`]). It never signs anyone in: it
//! is only looked at inside a login whose console password was accepted, and consumed in
//! the same atomic step as the enrollment that uses it. A newer invitation replaces an
//! older one; a reset deletes it (and ends every login in progress that carried it).

use std::net::IpAddr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::audit;
pub use crate::config::{Enrollment, EnrollmentPolicy};
use crate::store::{Outcome, Store, StoreError, UserOp, UserRecord};

/// Why an enrollment is refused by the policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The rollout window (`enroll_until`) has closed.
    WindowClosed,
    /// The client is outside every `enroll_from` network.
    NotFromHere,
    /// The realm enrolls by invitation only and there is no valid one.
    NeedsInvitation,
}

impl Refusal {
    /// The audit detail of the refusal.
    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::WindowClosed => "enrollment window closed",
            Refusal::NotFromHere => "enrollment not allowed from this network",
            Refusal::NeedsInvitation => "no valid invitation",
        }
    }
}

/// The checks that do not depend on an invitation: the window, then the network.
///
/// # Errors
/// The [`Refusal`] that applies first.
pub fn check_place_and_time(
    policy: &EnrollmentPolicy,
    client: IpAddr,
    now: u64,
) -> Result<(), Refusal> {
    if policy.enroll_until.is_some_and(|until| now >= until) {
        return Err(Refusal::WindowClosed);
    }
    let client = canonical_ip(client);
    if !policy.enroll_from.is_empty() && !policy.enroll_from.iter().any(|n| n.contains(&client)) {
        return Err(Refusal::NotFromHere);
    }
    Ok(())
}

/// Every check, with whether the user holds a valid invitation at `now`.
///
/// # Errors
/// The [`Refusal`] that applies first.
pub fn check(
    policy: &EnrollmentPolicy,
    client: IpAddr,
    now: u64,
    invited: bool,
) -> Result<(), Refusal> {
    check_place_and_time(policy, client, now)?;
    if policy.enrollment == Enrollment::Invite && !invited {
        return Err(Refusal::NeedsInvitation);
    }
    Ok(())
}

/// An IPv4-mapped IPv6 address as the IPv4 address it is.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Bytes of randomness in an invitation.
const INVITATION_BYTES: usize = 16;

/// A new invitation code (Base32 of 128 random bits, grouped by four) and its stored hash.
///
/// # Errors
/// The OS random generator failed.
pub fn new_invitation() -> Result<(String, String), getrandom::Error> {
    let mut value = [0u8; INVITATION_BYTES];
    getrandom::fill(&mut value)?;
    let text = data_encoding::BASE32_NOPAD.encode(&value);
    let chars: Vec<char> = text.chars().collect();
    let code = chars
        .chunks(4)
        .map(|c| c.iter().collect::<String>())
        .collect::<Vec<_>>()
        .join("-");
    Ok((code, hash_value(&value)))
}

fn hash_value(value: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha256::digest(value))
}

/// The stored hash of a typed code, if it can be an invitation at all (case, spaces and
/// dashes do not matter).
pub fn invitation_hash(typed: &str) -> Option<String> {
    if typed.len() > 64 {
        return None;
    }
    let text: String = typed
        .chars()
        .filter(|c| *c != '-' && *c != ' ')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let value = data_encoding::BASE32_NOPAD.decode(text.as_bytes()).ok()?;
    (value.len() == INVITATION_BYTES).then(|| hash_value(&value))
}

/// Whether `record` holds an unexpired invitation whose hash is `hash`, compared in
/// constant time.
pub fn invitation_matches(record: Option<&UserRecord>, hash: &str, now: u64) -> bool {
    use subtle::ConstantTimeEq;
    record
        .and_then(|r| r.invitation.as_ref())
        .is_some_and(|i| now < i.expires && bool::from(i.hash.as_bytes().ct_eq(hash.as_bytes())))
}

/// An invitation as issued: shown once, never stored in this form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// The code to type on the enrollment page.
    pub code: String,
    /// Unix time from which it is no longer valid.
    pub expires: u64,
}

/// What issuing an invitation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invited {
    Issued(Issued),
    /// The user is enrolled already: reset them first.
    AlreadyEnrolled,
}

/// Issues a one-time invitation for `realm`/`user`, valid for `valid_secs` from `now`
/// (replacing an earlier one), and audits it. `user` must already be in its canonical
/// spelling.
///
/// # Errors
/// The random generator or the store failed.
pub async fn invite(
    store: &dyn Store,
    realm: &str,
    user: &str,
    valid_secs: u64,
    by: &str,
    now: u64,
) -> Result<Invited, StoreError> {
    let (code, hash) =
        new_invitation().map_err(|e| StoreError::Io(format!("random generator: {e}")))?;
    let expires = now.saturating_add(valid_secs);
    let op = UserOp::Invite {
        hash: &hash,
        expires,
        by,
    };
    let outcome = store.apply(realm, user, op, now).await?;
    let detail = match outcome {
        Outcome::Applied => format!("valid until {expires}"),
        _ => "refused: already enrolled".to_string(),
    };
    audit::info(
        "invitation_issued",
        &audit::Event {
            realm: Some(realm),
            user: Some(user),
            by: Some(by),
            detail: Some(&detail),
            ..audit::Event::default()
        },
    );
    Ok(match outcome {
        Outcome::Applied => Invited::Issued(Issued { code, expires }),
        _ => Invited::AlreadyEnrolled,
    })
}

/// The link that carries an invitation to the login page: `base` is the site's origin
/// (`https://host`), `login` the login page's path.
pub fn invitation_link(base: &str, login: &str, code: &str) -> String {
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("invite", code)
        .finish();
    format!("{base}{login}?{query}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipnet::IpNet;

    fn policy(enrollment: Enrollment, from: &[&str], until: Option<u64>) -> EnrollmentPolicy {
        EnrollmentPolicy {
            enrollment,
            enroll_from: from
                .iter()
                .filter_map(|n| n.parse::<IpNet>().ok())
                .collect(),
            enroll_until: until,
            ..EnrollmentPolicy::default()
        }
    }

    #[test]
    fn window_network_and_invitation_in_that_order() {
        let ten: IpAddr = [10, 1, 2, 3].into();
        let out: IpAddr = [192, 0, 2, 1].into();
        let open = policy(Enrollment::Open, &[], None);
        assert_eq!(check(&open, out, 5, false), Ok(()));
        let p = policy(Enrollment::Invite, &["10.0.0.0/8"], Some(100));
        assert_eq!(check(&p, ten, 99, true), Ok(()));
        assert_eq!(check(&p, ten, 99, false), Err(Refusal::NeedsInvitation));
        assert_eq!(check(&p, out, 99, true), Err(Refusal::NotFromHere));
        assert_eq!(check(&p, ten, 100, true), Err(Refusal::WindowClosed));
        let mapped: IpAddr = "::ffff:10.9.9.9".parse().unwrap_or(out);
        assert_eq!(check(&p, mapped, 1, true), Ok(()), "IPv4-mapped is IPv4");
    }

    #[test]
    fn codes_round_trip_to_their_hash_only() -> Result<(), getrandom::Error> {
        let (code, hash) = new_invitation()?;
        assert_eq!(code.len(), 26 + 6, "{code}");
        assert_eq!(invitation_hash(&code).as_deref(), Some(hash.as_str()));
        let typed = code.to_lowercase().replace('-', " ");
        assert_eq!(invitation_hash(&typed).as_deref(), Some(hash.as_str()));
        assert_eq!(invitation_hash("ABCD"), None);
        assert_eq!(invitation_hash(&"A".repeat(100)), None);
        assert_ne!(new_invitation()?.1, hash);
        Ok(())
    }

    #[test]
    fn invitations_expire_and_are_consumed_once() {
        let mut r = UserRecord::default();
        let (_, hash) = new_invitation().expect("random");
        let (rec, o) = UserRecord::apply(
            Some(r.clone()),
            &UserOp::Invite {
                hash: &hash,
                expires: 100,
                by: "t",
            },
            10,
        );
        assert_eq!(o, Outcome::Applied);
        r = rec.unwrap_or_default();
        assert!(invitation_matches(Some(&r), &hash, 99));
        assert!(!invitation_matches(Some(&r), &hash, 100));
        let sealed = crate::store::seal::seal(
            &[1; 32],
            crate::store::seal::Purpose::Active,
            "r",
            "u",
            b"12345678901234567890",
        )
        .expect("seal");
        // A login that started after the invitation (which ended older ones).
        assert_eq!(r.epoch, 1, "an invitation ends the logins in progress");
        let enroll = UserOp::Enroll {
            secret: &sealed,
            step: 1,
            recovery: &[],
            epoch: 1,
            from: "10.0.0.1",
            invitation: true,
        };
        let (_, o) = UserRecord::apply(Some(r.clone()), &enroll, 100);
        assert_eq!(o, Outcome::InvitationInvalid, "expired");
        let (after, o) = UserRecord::apply(Some(r), &enroll, 50);
        assert_eq!(o, Outcome::Applied);
        let after = after.unwrap_or_default();
        assert!(after.invitation.is_none(), "consumed");
        assert_eq!(after.enrolled_from.as_deref(), Some("10.0.0.1"));
        let (reset, _) = UserRecord::apply(Some(after), &UserOp::Reset, 60);
        let (_, o) = UserRecord::apply(reset, &enroll, 70);
        assert_eq!(o, Outcome::Stale, "a reset ends the login");
    }
}
