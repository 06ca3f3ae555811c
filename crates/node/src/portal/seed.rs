//! The demo's portal users: every user of [`Demo::users`] gets the demo password and an
//! authenticator secret in their organisation's store, so `guoku demo` can print how to
//! sign in.
//!
//! Demo only, like the demo's key-store PIN: the password is one constant, the portal key
//! is a constant ([`demo_key`]), and each user's TOTP secret is derived from the login
//! ([`demo_totp_secret`]), so a resumed demo prints the same secrets without ever reading
//! one back from the store (which keeps them sealed and never shows them). A deployment
//! enrols each user with a fresh random secret ([`super::TotpSecret::generate`]), shown to
//! them once.

use std::fmt;

use guoku_store::access::UserRecord;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::PortalError;
use super::totp::{PortalKey, SECRET_LEN, TotpSecret};
use crate::access::{Password, hash_password};
use crate::api::TOKEN_ONLY_HASH;
use crate::demo::Demo;

/// The demo users' password. Demo only.
pub const DEMO_PASSWORD: &str = "Guoku-demo-2026";

/// Who the demo's portal records are written by.
const SEED_ACTOR: &str = "demo-seed";

/// The issuer authenticator apps show for the demo's secrets.
const ISSUER: &str = "guoku";

/// The demo's portal key: a constant, so every start of a demo opens the secrets an
/// earlier one sealed. Demo only; a deployment generates its own ([`PortalKey::generate`])
/// and keeps it with its other keys.
#[must_use]
pub fn demo_key() -> PortalKey {
    PortalKey::from_bytes(crate::demo::portal_key_bytes())
}

/// The demo user `login`'s TOTP secret, derived from the login under the demo key. Demo
/// only.
#[must_use]
pub fn demo_totp_secret(login: &str) -> TotpSecret {
    let derived = demo_key().derive("guoku demo: totp secrets v1");
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(&derived[..]).expect("HMAC takes any key");
    mac.update(login.as_bytes());
    let full: [u8; 32] = mac.finalize().into_bytes().into();
    let mut secret = [0u8; SECRET_LEN];
    secret.copy_from_slice(&full[..SECRET_LEN]);
    TotpSecret::from_bytes(secret)
}

/// How a demo user signs in to the portal, to print at start. `Debug` leaves the password
/// and the secret out.
#[derive(Clone, PartialEq, Eq)]
pub struct DemoLogin {
    pub login: String,
    /// The person's name.
    pub name: String,
    /// The organisation's name and code (the one to choose at sign-in).
    pub organisation: String,
    pub org_code: String,
    /// [`DEMO_PASSWORD`].
    pub password: &'static str,
    /// The authenticator secret as an `otpauth://totp/…` URI (an app takes it as a QR code
    /// or a link).
    pub otpauth_uri: String,
    /// The same secret in base32, to type into an app.
    pub secret_base32: String,
    /// The code at the time of seeding (a hint: codes change every 30 seconds).
    pub code_now: String,
}

impl fmt::Debug for DemoLogin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoLogin")
            .field("login", &self.login)
            .field("name", &self.name)
            .field("organisation", &self.organisation)
            .field("org_code", &self.org_code)
            .finish_non_exhaustive()
    }
}

/// Gives every demo user the demo password and an authenticator secret in their
/// organisation's store, leaving alone what is there (so a resumed demo keeps a password or
/// secret set since): a user whose stored hash is still the API-token-only placeholder gets
/// the demo password (a `set_password` event); a user with no second factor gets the
/// demo secret, sealed with [`demo_key`]. Returns what to print, in [`Demo::users`] order.
///
/// # Errors
/// [`PortalError::MissingUser`] if [`Demo::open`] did not store a user it lists; a store or
/// hashing failure.
pub async fn seed_demo_users(demo: &Demo) -> Result<Vec<DemoLogin>, PortalError> {
    let key = demo_key();
    let mut out = Vec::with_capacity(demo.users.len());
    for party in demo.parties() {
        let (_, now) = party.now();
        let access = party.store.access();
        let sessions = party.store.sessions();
        for user in demo.users.iter().filter(|u| u.org_code == party.org_code()) {
            let record = access
                .user_by_login(&user.login)
                .await?
                .ok_or_else(|| PortalError::MissingUser(user.login.clone()))?;
            if record.password_hash == TOKEN_ONLY_HASH {
                set_demo_password(&party.store, &record, now).await?;
            }
            let secret = demo_totp_secret(&user.login);
            if sessions.totp(record.id).await?.is_none() {
                sessions
                    .put_totp(record.id, secret.seal(&key, record.id)?, now)
                    .await?;
            }
            out.push(DemoLogin {
                login: user.login.clone(),
                name: user.name.clone(),
                organisation: user.organisation.clone(),
                org_code: user.org_code.clone(),
                password: DEMO_PASSWORD,
                otpauth_uri: secret.otpauth_uri(ISSUER, &user.login).to_string(),
                secret_base32: secret.base32().to_string(),
                code_now: secret.code_at(now),
            });
        }
    }
    let order = |login: &str| demo.users.iter().position(|u| u.login == login);
    out.sort_by_key(|l| order(&l.login));
    Ok(out)
}

async fn set_demo_password(
    store: &guoku_store::Store,
    record: &UserRecord,
    now: u64,
) -> Result<(), PortalError> {
    let password = Password::new(DEMO_PASSWORD)?;
    let hash = tokio::task::spawn_blocking(move || hash_password(&password, &mut rand::rng()))
        .await
        .map_err(|e| PortalError::Runtime(e.to_string()))??;
    store
        .access()
        .set_password_hash(record.id, hash, SEED_ACTOR, now)
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_secrets_differ_per_login_and_stay_the_same() {
        let a = demo_totp_secret("11430000006-maker");
        let b = demo_totp_secret("11430000006-checker");
        assert_eq!(*a.base32(), *demo_totp_secret("11430000006-maker").base32());
        assert_ne!(*a.base32(), *b.base32());
        assert_eq!(a.base32().len(), 32, "160 bits in base32");
        assert!(crate::access::check_new_password(&Password::new(DEMO_PASSWORD).unwrap()).is_ok());
    }
}
