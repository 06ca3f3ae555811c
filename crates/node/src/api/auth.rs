//! Who is calling: `Authorization: Bearer <token>` resolved to a [`Principal`] (login,
//! organisation, post) by an [`Authenticator`].
//!
//! [`TokenTable`] is the simple one: a list of (SHA-256 of the token, principal). A token
//! is hashed once and compared with every entry in constant time ([`subtle`]), the whole
//! list every time, so neither the comparison nor the position of a match shows in the
//! time taken. Tokens themselves are never stored, only their hashes; the ones
//! [`TokenTable::with_random_tokens`] makes are handed out once as [`ApiToken`]s (a secret:
//! Debug prints asterisks, memory wiped on drop).

use guoku_seal::pki::{OrgRole, Post};
use guoku_store::access::UserId;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::{ConditionallySelectable, ConstantTimeEq};

use crate::demo::Demo;

/// Longest bearer token taken, in bytes (longer ones are refused unhashed).
pub const TOKEN_MAX_BYTES: usize = 512;

/// An authenticated caller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// The user's number (idempotency keys are kept per user).
    pub user: UserId,
    /// The login, recorded as the actor of every event the request causes.
    pub login: String,
    /// The organisation the user works for: the only party they may act on or read.
    pub org: String,
    /// The user's post.
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

/// The demo's users as principals: three per organisation (maker, checker, signer), logged
/// in as `<org code>-<post>` like [`Demo::users`], numbered from 1 in that order.
#[must_use]
pub fn demo_principals(demo: &Demo) -> Vec<Principal> {
    let posts = [
        (Post::Maker, "maker"),
        (Post::Checker, "checker"),
        (Post::Signer, "signer"),
    ];
    let mut out = Vec::new();
    for org in demo.province.orgs() {
        for (post, name) in posts {
            let n = u64::try_from(out.len() + 1).unwrap_or(u64::MAX);
            out.push(Principal {
                user: UserId(n),
                login: format!("{}-{name}", org.code),
                org: org.code.to_owned(),
                post,
            });
        }
    }
    out
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
