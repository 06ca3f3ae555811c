//! Who is calling: `Authorization: Bearer <token>` resolved to a [`Principal`] (login,
//! organisation, post) by an [`Authenticator`].
//!
//! [`TokenTable`] is the simple one: a list of (SHA-256 of the token, principal). A token
//! is hashed once and compared with every entry in constant time ([`subtle`]), the whole
//! list every time, so neither the comparison nor the position of a match shows in the
//! time taken. Tokens themselves are never stored, only their hashes; the ones
//! [`TokenTable::with_random_tokens`] makes are handed out once as [`ApiToken`]s (a secret:
//! Debug prints asterisks, memory wiped on drop).

use guoku_domain::AdmDivCode;
use guoku_seal::pki::{OrgRole, Post};
use guoku_store::Store;
use guoku_store::access::{AccessError, Division, NewUser, UserId};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::demo::Demo;

/// Longest bearer token taken, in bytes (longer ones are refused unhashed).
pub const TOKEN_MAX_BYTES: usize = 512;

/// An authenticated caller: who the token names. What they may do at the party they act
/// on — posts, divisions, whether switched on — is that party's access record of the same
/// login, narrowed to `post` ([`super::scope`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The token table's number for the user (for the table's own use; the API keys steps
    /// and idempotency keys by the user's number in the acting party's store).
    pub user: UserId,
    /// The login, recorded as the actor of every event the request causes.
    pub login: String,
    /// The organisation the user works for: the only party they may act on or read.
    pub org: String,
    /// The post the token was issued for: the only one it acts in.
    pub post: Post,
}

/// Resolves a bearer token to the principal holding it.
pub trait Authenticator: Send + Sync {
    /// The principal holding `token`, or `None` for a token nobody holds.
    fn authenticate(&self, token: &str) -> Option<Principal>;
}

/// An API token as handed to its holder once. Secret: Debug prints asterisks.
#[derive(Debug)]
pub struct ApiToken(SecretString);

impl ApiToken {
    /// The token text, for printing it to its holder once.
    #[must_use]
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// The SHA-256 of a token, the form a [`TokenTable`] keeps.
#[must_use]
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// Tokens by their SHA-256, each naming its principal.
#[derive(Clone, Debug, Default)]
pub struct TokenTable {
    entries: Vec<([u8; 32], Principal)>,
}

impl TokenTable {
    /// A table of (SHA-256 of a token, its principal).
    #[must_use]
    pub fn new(entries: Vec<([u8; 32], Principal)>) -> Self {
        Self { entries }
    }

    /// A fresh random token for each principal (32 random bytes, hex, prefixed `gk_`):
    /// the table, and each principal's token to hand out once.
    #[must_use]
    pub fn with_random_tokens(principals: Vec<Principal>) -> (Self, Vec<(Principal, ApiToken)>) {
        let mut entries = Vec::with_capacity(principals.len());
        let mut handed = Vec::with_capacity(principals.len());
        for principal in principals {
            let mut bytes = [0u8; 32];
            rand::fill(&mut bytes);
            let text: String = std::iter::once("gk_".to_owned())
                .chain(bytes.iter().map(|b| format!("{b:02x}")))
                .collect();
            entries.push((token_hash(&text), principal.clone()));
            handed.push((principal, ApiToken(SecretString::from(text))));
        }
        (Self { entries }, handed)
    }

    /// How many tokens the table knows.
    #[must_use]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether it knows none.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl Authenticator for TokenTable {
    fn authenticate(&self, token: &str) -> Option<Principal> {
        if token.is_empty() || token.len() > TOKEN_MAX_BYTES {
            return None;
        }
        let hash = token_hash(token);
        // 0: no match; i + 1: entry i. Every entry is compared, whatever matched.
        let mut found = 0u32;
        for (i, (entry, _)) in self.entries.iter().enumerate() {
            let position = u32::try_from(i + 1).unwrap_or(u32::MAX);
            found = u32::conditional_select(&found, &position, entry.ct_eq(&hash));
        }
        let index = usize::try_from(found).ok()?.checked_sub(1)?;
        self.entries.get(index).map(|(_, p)| p.clone())
    }
}

/// The demo's users as principals ([`Demo::users`]: a maker, a checker and a signer of
/// every organisation, who see the whole province, and finance's county trio, who see
/// 430102 only), numbered from 1 in that order. What each may do is the access record of
/// the same login in its organisation's store, which the demo writes
/// ([`super::scope`]).
#[must_use]
pub fn demo_principals(demo: &Demo) -> Vec<Principal> {
    demo.users
        .iter()
        .enumerate()
        .filter_map(|(i, user)| {
            // Administrators hold no business post and take no API token.
            Some(Principal {
                user: UserId(u64::try_from(i + 1).unwrap_or(u64::MAX)),
                login: user.login.clone(),
                org: user.org_code.clone(),
                post: user.post.cert_post()?,
            })
        })
        .collect()
}

/// The password hash stored for users created by [`register_token_users`]: not a hash of
/// anything, so no password logs them in; they act with their API tokens.
pub const TOKEN_ONLY_HASH: &str = "$guoku$api-token-only";

/// Writes into `store`'s access records what the API needs to know of users it knows by
/// token (a `guoku serve` tokens file), leaving alone what is there: each of `divisions`
/// (with its business window, parents first), and each principal as a user holding its
/// post (added to the posts it holds) and seeing `sees` (and the divisions under them).
/// Afterwards an administrator's changes (a revoked post, a disabled user) are kept.
///
/// # Errors
/// The store's refusal ([`AccessError::NotFound`] for a division of `sees` neither stored
/// nor in `divisions`; [`AccessError::InvalidArgument`] for a login or name out of its
/// rules) or failure.
pub async fn register_token_users(
    store: &Store,
    divisions: &[Division],
    principals: &[Principal],
    sees: &[AdmDivCode],
    actor: &str,
    now: u64,
) -> Result<(), AccessError> {
    let access = store.access();
    for division in divisions {
        if access.division(&division.code).await?.is_none() {
            access.put_division(division, actor, now).await?;
        }
    }
    for principal in principals {
        let record = match access.user_by_login(&principal.login).await? {
            Some(record) => record,
            None => {
                let new = NewUser {
                    login: principal.login.clone(),
                    display_name: principal.login.clone(),
                    password_hash: TOKEN_ONLY_HASH.to_owned(),
                };
                access.create_user(new, actor, now).await?
            }
        };
        let post = crate::access::Post::from(principal.post).code();
        if !record.posts.iter().any(|p| p == post) {
            access
                .grant_post(record.id, post, actor, now, |_| {
                    Ok::<(), std::convert::Infallible>(())
                })
                .await?
                .unwrap_or_else(|never| match never {});
        }
        for division in sees {
            if !record.divisions.contains(division) {
                access
                    .grant_division(record.id, division, actor, now)
                    .await?;
            }
        }
    }
    Ok(())
}

/// How a role is named in answers.
#[must_use]
pub fn role_name(role: OrgRole) -> &'static str {
    match role {
        OrgRole::Finance => "finance",
        OrgRole::Pboc => "pboc",
        OrgRole::AgentBank => "agent_bank",
        OrgRole::BudgetUnit => "budget_unit",
    }
}
