//! Who acts, and where.
//!
//! A bearer token names a [`super::Principal`]: a login, an organisation and the post the
//! token was issued for. What that login may do is the access layer's record of the same
//! login in the acting party's store ([`guoku_store::access`]): its posts, its divisions
//! and whether it is switched on. So revoking a post or a division, or disabling a user,
//! takes effect at the next request, and every step the API records names a user the store
//! knows. The token's post narrows the user's posts: a token acts in its own post only.
//!
//! Each route then asks [`Acting::may_act`] (the post may take the action at all: else 403)
//! or [`Acting::may_act_on`] (and the voucher's division is one the user sees, in its
//! AdmDivCode chain: else 404, exactly as if the voucher did not exist, so a user learns
//! nothing about other divisions' vouchers).

use std::collections::BTreeSet;

use guoku_domain::AdmDivCode;
use guoku_store::access::UserId;
use guoku_voucher::VoucherKey;

use super::Caller;
use super::error::{ApiError, ErrorCode};
use crate::access::{Action, Denied, Post, Principal as AccessPrincipal, may_somewhere};
use crate::exchange::Transport;
use crate::party::Party;

/// The user acting in a request.
#[derive(Clone, Debug)]
pub(crate) struct Acting {
    /// The login: the actor of every event the request causes.
    pub login: String,
    /// The access record as the policy sees it, its posts narrowed to the token's.
    pub who: AccessPrincipal,
}

fn post_names(posts: &[Post]) -> String {
    posts
        .iter()
        .map(|p| p.code())
        .collect::<Vec<_>>()
        .join(" or ")
}

fn denied(e: &Denied) -> ApiError {
    match e {
        Denied::Disabled => ApiError::forbidden("your user is disabled"),
        Denied::Post { action, needs } => {
            ApiError::forbidden(format!("{action} needs the post {}", post_names(needs)))
        }
        // Not a refusal the caller may see: the voucher "does not exist" for them.
        Denied::Division { .. } => ApiError::new(ErrorCode::VoucherNotFound),
    }
}

/// The division of a voucher key; a key whose AdmDivCode does not parse names no voucher.
pub(crate) fn division_of(key: &VoucherKey) -> Result<AdmDivCode, ApiError> {
    key.adm_div_code
        .parse()
        .map_err(|_| ApiError::new(ErrorCode::VoucherNotFound))
}

impl Acting {
    /// The user's number in the acting party's store (steps and idempotency keys are kept
    /// under it).
    pub fn user(&self) -> UserId {
        self.who.id
    }

    /// Whether the user may take `action` at all: 403 naming the post it needs.
    pub fn may_act(&self, action: Action) -> Result<(), ApiError> {
        may_somewhere(&self.who, action).map_err(|e| denied(&e))
    }

    /// Whether the user may take one of `actions` (the first their post allows) at all.
    pub fn may_act_any(&self, actions: &[Action]) -> Result<Action, ApiError> {
        let mut first = None;
        for action in actions {
            match may_somewhere(&self.who, *action) {
                Ok(()) => return Ok(*action),
                Err(e) => {
                    first.get_or_insert(e);
                }
            }
        }
        Err(first.map_or_else(|| ApiError::internal("no action asked"), |e| denied(&e)))
    }

    /// Whether `division` is one of the user's or under one: else 404.
    pub fn sees(&self, division: &AdmDivCode) -> Result<(), ApiError> {
        if self.who.sees(division) {
            Ok(())
        } else {
            Err(ApiError::new(ErrorCode::VoucherNotFound))
        }
    }

    /// Whether the user may take `action` on the voucher `key`: 403 for the post, 404 for
    /// a division the user does not see. The voucher's division.
    pub fn may_act_on(&self, action: Action, key: &VoucherKey) -> Result<AdmDivCode, ApiError> {
        self.may_act(action)?;
        let division = division_of(key)?;
        self.sees(&division)?;
        Ok(division)
    }
}

/// The user `caller`'s token names, as the access records of `party`'s store know them.
///
/// # Errors
/// 403 when the login holds no access there, is disabled, holds posts the policy refuses,
/// or no longer holds the post its token names; the store's failure.
pub(crate) async fn acting<T: Transport>(
    party: &Party<T>,
    caller: &Caller,
) -> Result<Acting, ApiError> {
    let login = caller.principal.login.as_str();
    let record = party
        .store
        .access()
        .user_by_login(login)
        .await?
        .ok_or_else(|| {
            ApiError::forbidden(format!(
                "{login} holds no access at this node: an administrator must create the user"
            ))
        })?;
    let mut who = AccessPrincipal::from_record(&record).map_err(|e| {
        ApiError::forbidden(format!(
            "{login}'s access is inconsistent ({e}): an administrator must fix it"
        ))
    })?;
    if !who.active {
        return Err(ApiError::forbidden("your user is disabled"));
    }
    let post = Post::from(caller.principal.post);
    if !who.holds(post) {
        return Err(ApiError::forbidden(format!(
            "the {post} post your token names is not granted to {login}"
        )));
    }
    who.posts = BTreeSet::from([post]);
    Ok(Acting {
        login: login.to_owned(),
        who,
    })
}
