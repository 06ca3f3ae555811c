//! Signing in with two factors: the password, then a TOTP code, both counting towards one
//! lockout.
//!
//! The policy is `crate::access`'s (Argon2id, constant-time verification, a dummy
//! verification for unknown and locked users, [`after_failure`]/[`after_success`]); what
//! differs from `access::login` is when the counter is cleared. A right password alone
//! clears nothing: only a right code after it does. So five wrong attempts in a row —
//! passwords or codes, in any mix — lock the user, and knowing the password does not buy
//! more guesses at the code.
//!
//! Nothing here tells a stranger whether a login exists or is locked: unknown logins,
//! locked users and wrong passwords get the same refusal after the same Argon2 cost. Only
//! someone who gave the right password learns more (switched off, no second factor,
//! locked at the code).

use guoku_store::Store;
use guoku_store::access::{UserRecord, UserStatus};

use super::PortalError;
use super::totp::{PortalKey, TotpSecret};
use crate::access::{
    LockoutPolicy, Password, after_failure, after_success, verify_dummy, verify_password,
};

/// Why a sign-in step was refused. Nothing but the login counter changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Unknown login, wrong password, or a user locked (which one is not said).
    BadCredentials,
    /// The right password for a user who is switched off.
    Disabled,
    /// The right password for a user with no authenticator enrolled.
    NoSecondFactor,
    /// The right password for a user whose posts break the policy.
    Inconsistent,
    /// A wrong, reused or malformed code.
    WrongCode,
    /// Locked, found at the code step (after a right password).
    Locked,
}

/// Runs `job` on the blocking pool (Argon2 takes tens of milliseconds).
async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, PortalError> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| PortalError::Runtime(e.to_string()))
}

/// A password that cannot be one (empty or too long) still costs a verification.
fn placeholder() -> Password {
    Password::new("guoku: not a password").expect("a valid length")
}

/// The first step: `login`'s password at `now`. A wrong password counts towards the lock
/// (a `login_failed` event); a right one changes nothing. Returns the user, who must still
/// give a code.
///
/// # Errors
/// [`PortalError`] when the store or the password check fails.
pub(crate) async fn check_password(
    store: &Store,
    login: &str,
    password: &str,
    now: u64,
    policy: LockoutPolicy,
) -> Result<Result<UserRecord, Refusal>, PortalError> {
    let access = store.access();
    let candidate = Password::new(password).ok();
    let record = access.user_by_login(login).await?;
    let Some(record) = record.filter(|r| !r.login_state.is_locked(now)) else {
        let password = candidate.unwrap_or_else(placeholder);
        blocking(move || verify_dummy(&password)).await?;
        return Ok(Err(Refusal::BadCredentials));
    };
    let right = match candidate {
        Some(password) => {
            let hash = record.password_hash.clone();
            // A hash that is not Argon2id (a user who signs in by API token only) matches
            // no password.
            blocking(move || match verify_password(&password, &hash) {
                Ok(right) => right,
                Err(_) => {
                    verify_dummy(&password);
                    false
                }
            })
            .await?
        }
        None => {
            blocking(|| verify_dummy(&placeholder())).await?;
            false
        }
    };
    if !right {
        access
            .update_login(record.id, "login_failed", &record.login, now, move |s| {
                after_failure(s, now, policy)
            })
            .await?;
        return Ok(Err(Refusal::BadCredentials));
    }
    if record.status != UserStatus::Active {
        return Ok(Err(Refusal::Disabled));
    }
    Ok(Ok(record))
}

/// The second step: `code` for the user `record` (who gave the right password) at `now`.
/// A wrong code counts towards the lock (a `second_factor_failed` event); a right one is
/// used up (its time step is recorded, so it is not taken again) and clears the counter
/// (a `login` event). Returns the user as signed in.
///
/// # Errors
/// [`PortalError`] when the store fails or the stored secret does not open with `key`.
pub(crate) async fn check_code(
    store: &Store,
    key: &PortalKey,
    user: guoku_store::access::UserId,
    code: &str,
    now: u64,
    policy: LockoutPolicy,
) -> Result<Result<UserRecord, Refusal>, PortalError> {
    let access = store.access();
    let sessions = store.sessions();
    let Some(record) = access.user(user).await? else {
        return Ok(Err(Refusal::BadCredentials));
    };
    if record.login_state.is_locked(now) {
        return Ok(Err(Refusal::Locked));
    }
    if record.status != UserStatus::Active {
        return Ok(Err(Refusal::Disabled));
    }
    let Some(factor) = sessions.totp(user).await? else {
        return Ok(Err(Refusal::NoSecondFactor));
    };
    let secret = TotpSecret::unseal(key, user, &factor.sealed)?;
    let step = secret.verify(code, now, factor.last_step);
    let accepted = match step {
        Some(step) => sessions.use_totp_step(user, step).await?,
        None => false,
    };
    if !accepted {
        let (_, after) = access
            .update_login(user, "second_factor_failed", &record.login, now, move |s| {
                after_failure(s, now, policy)
            })
            .await?;
        let refusal = if after.login_state.is_locked(now) {
            Refusal::Locked
        } else {
            Refusal::WrongCode
        };
        return Ok(Err(refusal));
    }
    let (before, after) = access
        .update_login(user, "login", &record.login, now, move |s| {
            after_success(s, now)
        })
        .await?;
    // Wrong attempts that arrived meanwhile may have locked the user: the lock wins.
    if before.is_locked(now) {
        return Ok(Err(Refusal::Locked));
    }
    Ok(Ok(after))
}

/// The cost of a password check with nothing to check against (a login at an organisation
/// this node does not serve), so the answer takes as long as a real refusal.
///
/// # Errors
/// [`PortalError::Runtime`] when the blocking pool is gone.
pub(crate) async fn dummy_check(password: &str) -> Result<(), PortalError> {
    let password = Password::new(password).unwrap_or_else(|_| placeholder());
    blocking(move || verify_dummy(&password)).await
}
