//! `token create|list|revoke`: the requests the CLI sends (over the admin socket or
//! straight to the store) and their one answer, [`answer`]. Every create and revoke is
//! audited; nothing here ever returns a token's hash, and only a create returns the token.

use http::Method;
use serde::{Deserialize, Serialize};

use super::{check_pattern, hash, new_token, parse_network, TokenRecord, MAX_LIFETIME};
use crate::audit;
use crate::config::Config;
use crate::store::{Store, StoreError};

/// What `token create` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewToken {
    pub name: String,
    pub site: String,
    pub paths: Vec<String>,
    pub methods: Vec<String>,
    /// Client networks; empty: any.
    pub from: Vec<String>,
    /// Lifetime in seconds.
    pub lifetime: u64,
}

impl NewToken {
    /// Checks the request against the configuration; returns it with methods upper-cased
    /// and networks written canonically.
    ///
    /// # Errors
    /// What is wrong, for the person at the CLI.
    pub fn validated(mut self, config: &Config) -> Result<NewToken, String> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if !name_ok {
            return Err("the name must be 1 to 64 letters, digits, '-', '_' or '.'".into());
        }
        if !config.sites.iter().any(|s| s.name == self.site) {
            let names: Vec<&str> = config.sites.iter().map(|s| s.name.as_str()).collect();
            return Err(format!(
                "no site {:?} in the configuration (sites: {})",
                self.site,
                names.join(", ")
            ));
        }
        if self.paths.is_empty() {
            return Err("name at least one path (e.g. --paths '/api/*')".into());
        }
        for p in &self.paths {
            check_pattern(p)?;
        }
        if self.methods.is_empty() {
            return Err("name at least one method (e.g. --methods GET)".into());
        }
        for m in &mut self.methods {
            *m = m.to_ascii_uppercase();
            if Method::from_bytes(m.as_bytes()).is_err() || m == "CONNECT" {
                return Err(format!("{m:?} is not a method a token can allow"));
            }
        }
        let mut from = Vec::with_capacity(self.from.len());
        for n in &self.from {
            match parse_network(n) {
                Some(net) => from.push(net.to_string()),
                None => {
                    return Err(format!(
                        "{n:?} is not a network such as \"10.0.0.0/8\" or \"192.0.2.7\""
                    ))
                }
            }
        }
        self.from = from;
        if self.lifetime == 0 || self.lifetime > MAX_LIFETIME {
            return Err("the expiry must be between one second and ten years".into());
        }
        Ok(self)
    }
}

/// One token as an admin sees it. Never contains the token or its hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub id: String,
    pub name: String,
    pub site: String,
    pub paths: Vec<String>,
    pub methods: Vec<String>,
    pub from: Vec<String>,
    pub created: u64,
    pub expires: u64,
    pub revoked: Option<u64>,
    pub last_used: Option<u64>,
    pub created_by: String,
}

impl TokenView {
    fn new(t: &TokenRecord) -> TokenView {
        TokenView {
            id: t.id.clone(),
            name: t.name.clone(),
            site: t.site.clone(),
            paths: t.paths.clone(),
            methods: t.methods.clone(),
            from: t.from.clone(),
            created: t.created,
            expires: t.expires,
            revoked: t.revoked,
            last_used: t.last_used,
            created_by: t.created_by.clone(),
        }
    }

    /// `active`, `expired` or `revoked` at `now`.
    pub fn state(&self, now: u64) -> &'static str {
        if self.revoked.is_some() {
            "revoked"
        } else if now >= self.expires {
            "expired"
        } else {
            "active"
        }
    }
}

/// A request of `mfa-gate token …`, over the admin socket or on the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    TokenCreate(NewToken),
    TokenList {
        site: Option<String>,
    },
    /// By name (of a token not revoked yet) or id.
    TokenRevoke {
        token: String,
    },
}

/// The answer to a [`Request`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Answer {
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The new token, in the answer to a create only (shown once, stored nowhere).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<TokenView>>,
    /// A revoke that found no such token.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub not_found: bool,
}

impl Answer {
    fn error(text: impl Into<String>) -> Answer {
        Answer {
            ok: false,
            error: Some(text.into()),
            ..Answer::default()
        }
    }
}

/// Answers a token request on `store`, acting as `by` at `now`.
pub async fn answer(
    store: &dyn Store,
    config: &Config,
    req: &Request,
    by: &str,
    now: u64,
) -> Answer {
    let result = match req {
        Request::TokenCreate(new) => match new.clone().validated(config) {
            Ok(new) => create(store, new, by, now).await,
            Err(why) => return Answer::error(why),
        },
        Request::TokenList { site } => list(store, site.as_deref()).await.map(|t| Answer {
            ok: true,
            tokens: Some(t),
            ..Answer::default()
        }),
        Request::TokenRevoke { token } => revoke(store, token, by, now).await,
    };
    result.unwrap_or_else(|e| Answer::error(e.to_string()))
}

async fn create(
    store: &dyn Store,
    new: NewToken,
    by: &str,
    now: u64,
) -> Result<Answer, StoreError> {
    let taken = store
        .tokens()
        .await?
        .into_iter()
        .any(|(_, t)| t.name == new.name && t.revoked.is_none() && now < t.expires);
    if taken {
        return Ok(Answer::error(format!(
            "a token named {:?} exists already; revoke it first or choose another name",
            new.name
        )));
    }
    let token = new_token().map_err(|e| StoreError::Io(format!("random generator: {e}")))?;
    let mut id = [0u8; 6];
    getrandom::fill(&mut id).map_err(|e| StoreError::Io(format!("random generator: {e}")))?;
    let record = TokenRecord {
        id: data_encoding::HEXLOWER.encode(&id),
        name: new.name,
        site: new.site,
        paths: new.paths,
        methods: new.methods,
        from: new.from,
        created: now,
        expires: now.saturating_add(new.lifetime),
        revoked: None,
        last_used: None,
        created_by: by.to_string(),
    };
    store.put_token(&hash(&token), &record).await?;
    audit::info(
        "token_created",
        &audit::Event {
            site: Some(&record.site),
            by: Some(by),
            detail: Some(&record.name),
            ..audit::Event::default()
        },
    );
    Ok(Answer {
        ok: true,
        token: Some(token),
        tokens: Some(vec![TokenView::new(&record)]),
        ..Answer::default()
    })
}

/// Every token (of one site), oldest first.
///
/// # Errors
/// The store cannot be read.
pub async fn list(store: &dyn Store, site: Option<&str>) -> Result<Vec<TokenView>, StoreError> {
    let mut out: Vec<TokenView> = store
        .tokens()
        .await?
        .iter()
        .filter(|(_, t)| site.is_none_or(|s| t.site == s))
        .map(|(_, t)| TokenView::new(t))
        .collect();
    out.sort_by(|a, b| (a.created, &a.name).cmp(&(b.created, &b.name)));
    Ok(out)
}

async fn revoke(store: &dyn Store, which: &str, by: &str, now: u64) -> Result<Answer, StoreError> {
    let all = store.tokens().await?;
    let by_id: Vec<&(String, TokenRecord)> = all.iter().filter(|(_, t)| t.id == which).collect();
    let matches: Vec<&(String, TokenRecord)> = if by_id.is_empty() {
        // By name: the live token of that name (an expired one may share it, since
        // names of expired tokens can be used again; it opens nothing any more).
        let named = |live: bool| -> Vec<&(String, TokenRecord)> {
            all.iter()
                .filter(|(_, t)| {
                    t.name == which && t.revoked.is_none() && (!live || now < t.expires)
                })
                .collect()
        };
        match named(true) {
            live if live.is_empty() => named(false),
            live => live,
        }
    } else {
        by_id
    };
    let (hash, token) = match matches.as_slice() {
        [] => {
            return Ok(Answer {
                not_found: true,
                ..Answer::error(format!("no token {which:?} (that is not revoked yet)"))
            })
        }
        [one] => (&one.0, &one.1),
        _ => {
            return Ok(Answer::error(format!(
                "several tokens are named {which:?}; revoke one by its id (see token list)"
            )))
        }
    };
    store.revoke_token(hash, now).await?;
    audit::info(
        "token_revoked",
        &audit::Event {
            site: Some(&token.site),
            by: Some(by),
            detail: Some(&token.name),
            ..audit::Event::default()
        },
    );
    let mut view = TokenView::new(token);
    view.revoked = view.revoked.or(Some(now));
    Ok(Answer {
        ok: true,
        tokens: Some(vec![view]),
        ..Answer::default()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::store::sled::SledStore;

    fn record(id: &str, expires: u64) -> TokenRecord {
        TokenRecord {
            id: id.into(),
            name: "backup".into(),
            site: "router".into(),
            paths: vec!["/api/*".into()],
            methods: vec!["GET".into()],
            from: Vec::new(),
            created: 100,
            expires,
            revoked: None,
            last_used: None,
            created_by: "test".into(),
        }
    }

    #[tokio::test]
    async fn revoking_by_name_takes_the_live_token_over_an_expired_namesake() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(&dir.path().join("s")).unwrap();
        store.put_token("h-old", &record("old", 500)).await.unwrap();
        store
            .put_token("h-new", &record("new", 5000))
            .await
            .unwrap();
        let answer = revoke(&store, "backup", "test", 1000).await.unwrap();
        assert!(answer.ok, "{answer:?}");
        assert!(store
            .token("h-new")
            .await
            .unwrap()
            .unwrap()
            .revoked
            .is_some());
        assert!(store
            .token("h-old")
            .await
            .unwrap()
            .unwrap()
            .revoked
            .is_none());
        // With only expired namesakes left, the name still finds one to revoke.
        let answer = revoke(&store, "backup", "test", 1000).await.unwrap();
        assert!(answer.ok, "{answer:?}");
    }
}
