//! Who may do what, where and when: posts (岗位), segregation of duties (DESIGN invariant 9),
//! division visibility (两级建设、五级应用), business windows, and passwords.
//!
//! # The policy (pure)
//! - **Posts.** The business posts maker (经办), checker (审核) and signer (签章), and the
//!   three administrators of 三权分立: the system administrator (users, divisions, units,
//!   banks), the security administrator (grants posts and divisions, unlocks users, keys and
//!   seals) and the audit administrator (reads everything, changes nothing). An
//!   administrator post is held alone: never with another administrator post, never with a
//!   business post ([`check_posts`]). What each post may do is one table, [`Action::posts`].
//! - **Divisions.** A user granted a division sees it and every division under it in its
//!   AdmDivCode chain: `430000` sees `430100` and `430102`; `430102` sees neither `430103`
//!   nor `430000` ([`Principal::sees`]). [`may`] checks the post and the division.
//! - **Steps on a voucher** ([`Step`]): make (经办), check (审核), approve (复核), sign
//!   (签章), each once, in that order; approve and sign need a check first (a received
//!   voucher has no make step in this library). Every step is taken by a different person:
//!   the maker cannot check, approve or sign their own voucher, the checker cannot approve
//!   it, and the signer did none of the others ([`check_step`]). The store records each
//!   step with who took it and when, checking under the voucher's lock.
//! - **Business windows.** [`window_open`] says whether `now` falls in a division's window
//!   (its hours, days and UTC offset); the flows call [`check_window`] where the standard
//!   requires it (a bank pays only inside finance's window). The self-service counter takes
//!   vouchers at any hour.
//! - **Passwords**: Argon2id (m = 19 MiB, t = 2, p = 1, 16-byte salt from the caller's
//!   random source) as a PHC string; verification compares in constant time, and a login
//!   for an unknown user verifies against a dummy hash at the same cost, so timing does not
//!   tell which logins exist. Five wrong passwords in a row lock the user for
//!   [`LockoutPolicy::lock_secs`]. [`Password`] is wiped on drop and prints as asterisks;
//!   no error or log line carries a password or a hash.
//!
//! # The glue (I/O through the store)
//! [`login`], [`take_step`], [`create_user`], [`grant_post`] and [`grant_division`] combine
//! the policy with the store's records; the store reads the guarded rows under a lock and
//! lets the policy decide, so concurrent requests cannot slip past a check together.
//! Argon2 runs on the blocking pool, never on a runtime worker.
//!
//! The clock (`now`) and randomness are passed in.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use guoku_domain::AdmDivCode;
use guoku_store::Store;
use guoku_store::access::{
    AccessError, BusinessWindow, Division, LoginState, NewUser, StepRecord, UserId, UserRecord,
    UserStatus,
};
use guoku_voucher::VoucherKey;
use rand_core::CryptoRng;
use zeroize::Zeroizing;

// ---------------------------------------------------------------------------------------
// Posts and actions

/// A post (岗位) a user holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Post {
    /// 经办: makes vouchers.
    Maker,
    /// 审核: checks and approves (复核) vouchers, returns and voids them.
    Checker,
    /// 签章: signs and seals vouchers.
    Signer,
    /// 系统管理员: users, divisions, budget units, banks.
    SystemAdmin,
    /// 安全管理员: grants posts and divisions, unlocks users, keys and seals.
    SecurityAdmin,
    /// 审计管理员: reads everything, including the administrative log; changes nothing.
    AuditAdmin,
}

impl Post {
    /// Every post.
    pub const ALL: [Post; 6] = [
        Post::Maker,
        Post::Checker,
        Post::Signer,
        Post::SystemAdmin,
        Post::SecurityAdmin,
        Post::AuditAdmin,
    ];

    /// The code the store keeps.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Post::Maker => "maker",
            Post::Checker => "checker",
            Post::Signer => "signer",
            Post::SystemAdmin => "system_admin",
            Post::SecurityAdmin => "security_admin",
            Post::AuditAdmin => "audit_admin",
        }
    }

    /// One of the three administrators (三权分立).
    #[must_use]
    pub fn is_admin(self) -> bool {
        matches!(
            self,
            Post::SystemAdmin | Post::SecurityAdmin | Post::AuditAdmin
        )
    }

    /// The post a personal certificate names for this post (its `title`), if any.
    #[must_use]
    pub fn cert_post(self) -> Option<guoku_seal::pki::Post> {
        match self {
            Post::Maker => Some(guoku_seal::pki::Post::Maker),
            Post::Checker => Some(guoku_seal::pki::Post::Checker),
            Post::Signer => Some(guoku_seal::pki::Post::Signer),
            _ => None,
        }
    }
}

impl fmt::Display for Post {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl From<guoku_seal::pki::Post> for Post {
    /// The business post a personal certificate names (the inverse of [`Post::cert_post`]).
    fn from(post: guoku_seal::pki::Post) -> Self {
        match post {
            guoku_seal::pki::Post::Maker => Post::Maker,
            guoku_seal::pki::Post::Checker => Post::Checker,
            guoku_seal::pki::Post::Signer => Post::Signer,
        }
    }
}

impl FromStr for Post {
    type Err = PolicyError;

    fn from_str(s: &str) -> Result<Self, PolicyError> {
        Post::ALL
            .into_iter()
            .find(|p| p.code() == s)
            .ok_or_else(|| PolicyError::UnknownPost(s.to_owned()))
    }
}

/// What a user asks to do, in a division.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Read vouchers, their states and steps.
    ViewVouchers,
    /// Read books: quotas, balances, reports.
    ViewBooks,
    /// Make a voucher (经办).
    MakeVoucher,
    /// Check a voucher (审核).
    CheckVoucher,
    /// Approve a checked voucher (复核).
    ApproveVoucher,
    /// Sign and seal a voucher (签章) and send it.
    SignVoucher,
    /// Return a received voucher (退回).
    ReturnVoucher,
    /// Void a sent voucher not yet acknowledged (作废).
    VoidVoucher,
    /// Store divisions, their business windows, budget units and banks.
    ManageDivisions,
    /// Create users, switch them on or off, reset passwords.
    ManageUsers,
    /// Grant and revoke posts and divisions; unlock users.
    GrantAccess,
    /// Manage keys, certificates and seal positions.
    ManageSeals,
    /// Read users, their posts and divisions.
    ViewUsers,
    /// Read the administrative log and the voucher event log.
    ViewAuditLog,
}

impl Action {
    /// Every action.
    pub const ALL: [Action; 14] = [
        Action::ViewVouchers,
        Action::ViewBooks,
        Action::MakeVoucher,
        Action::CheckVoucher,
        Action::ApproveVoucher,
        Action::SignVoucher,
        Action::ReturnVoucher,
        Action::VoidVoucher,
        Action::ManageDivisions,
        Action::ManageUsers,
        Action::GrantAccess,
        Action::ManageSeals,
        Action::ViewUsers,
        Action::ViewAuditLog,
    ];

    /// The posts that may take this action: the whole permission matrix.
    #[must_use]
    pub fn posts(self) -> &'static [Post] {
        use Post::*;
        match self {
            Action::ViewVouchers | Action::ViewBooks => &[Maker, Checker, Signer, AuditAdmin],
            Action::MakeVoucher => &[Maker],
            Action::CheckVoucher
            | Action::ApproveVoucher
            | Action::ReturnVoucher
            | Action::VoidVoucher => &[Checker],
            Action::SignVoucher => &[Signer],
            Action::ManageDivisions | Action::ManageUsers => &[SystemAdmin],
            Action::GrantAccess | Action::ManageSeals => &[SecurityAdmin],
            Action::ViewUsers => &[SystemAdmin, SecurityAdmin, AuditAdmin],
            Action::ViewAuditLog => &[AuditAdmin],
        }
    }

    /// Whether the action only reads.
    #[must_use]
    pub fn is_read_only(self) -> bool {
        matches!(
            self,
            Action::ViewVouchers | Action::ViewBooks | Action::ViewUsers | Action::ViewAuditLog
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// A step taken on a voucher.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Step {
    /// 经办
    Make,
    /// 审核 (processing state 40)
    Check,
    /// 复核 (processing state 50)
    Approve,
    /// 签章
    Sign,
}

impl Step {
    /// Every step, in order.
    pub const ALL: [Step; 4] = [Step::Make, Step::Check, Step::Approve, Step::Sign];

    /// The code the store keeps.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Step::Make => "make",
            Step::Check => "check",
            Step::Approve => "approve",
            Step::Sign => "sign",
        }
    }

    /// The step whose code is `code`.
    #[must_use]
    pub fn from_code(code: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|s| s.code() == code)
    }

    /// The action taking this step is.
    #[must_use]
    pub fn action(self) -> Action {
        match self {
            Step::Make => Action::MakeVoucher,
            Step::Check => Action::CheckVoucher,
            Step::Approve => Action::ApproveVoucher,
            Step::Sign => Action::SignVoucher,
        }
    }

    /// The step that must come before this one, if any.
    #[must_use]
    pub fn needs(self) -> Option<Step> {
        match self {
            Step::Make | Step::Check => None,
            Step::Approve | Step::Sign => Some(Step::Check),
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

// ---------------------------------------------------------------------------------------
// Refusals

/// Why a step or a grant breaks segregation of duties. Retrying cannot help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SodViolation {
    /// The user already took another step on this voucher.
    #[error("whoever took the {earlier} step on a voucher may not take its {step} step")]
    SameUser { step: Step, earlier: Step },
    /// The step was already taken on this voucher.
    #[error("the {step} step was already taken on this voucher")]
    Repeated { step: Step },
    /// A later step was already taken.
    #[error("the {step} step cannot follow the {after} step")]
    OutOfOrder { step: Step, after: Step },
    /// A step that must come first was not taken.
    #[error("the {step} step needs the {needs} step first")]
    Missing { step: Step, needs: Step },
    /// The voucher holds a step this policy does not know (a newer program wrote it).
    #[error("the voucher holds an unknown step {code:?}")]
    UnknownStep { code: String },
    /// Two posts one person may not hold together (三权分立).
    #[error("a holder of {held} may not also be {wanted}")]
    IncompatiblePosts { held: Post, wanted: Post },
    /// A security administrator may not change their own access.
    #[error("nobody may grant themselves access")]
    SelfGrant,
}

/// Why a stored user cannot be turned into a [`Principal`]. Retrying cannot help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The user holds a post this program does not know.
    #[error("unknown post {0:?}")]
    UnknownPost(String),
    /// The user's posts break segregation of duties (granted outside this policy).
    #[error(transparent)]
    Sod(#[from] SodViolation),
}

/// Why [`may`] refused. Retrying cannot help until an administrator changes the grants.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The user is switched off.
    #[error("the user is disabled")]
    Disabled,
    /// None of the user's posts may take the action.
    #[error("{action} needs one of the posts {needs:?}")]
    Post {
        action: Action,
        needs: &'static [Post],
    },
    /// The division is not one of the user's, nor under one of them.
    #[error("division {division} is outside the user's divisions")]
    Division { division: AdmDivCode },
}

// ---------------------------------------------------------------------------------------
// Principals and `may`

/// A user as the policy sees them: posts, divisions, whether active.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    pub id: UserId,
    pub login: String,
    pub posts: BTreeSet<Post>,
    /// Granted divisions; each grants the divisions under it.
    pub divisions: Vec<AdmDivCode>,
    /// The budget units (AgencyCode) a unit's user acts for; empty for everybody else, who
    /// is scoped by division alone.
    pub units: BTreeSet<String>,
    pub active: bool,
}

impl Principal {
    /// The policy's view of a stored user.
    ///
    /// # Errors
    /// [`PolicyError`] for an unknown post or posts that break segregation of duties.
    pub fn from_record(record: &UserRecord) -> Result<Self, PolicyError> {
        let mut posts = BTreeSet::new();
        for code in &record.posts {
            let post: Post = code.parse()?;
            check_posts(&posts, post)?;
            posts.insert(post);
        }
        Ok(Self {
            id: record.id,
            login: record.login.clone(),
            posts,
            divisions: record.divisions.clone(),
            units: record.units.iter().cloned().collect(),
            active: record.status == UserStatus::Active,
        })
    }

    /// Whether the user acts for the budget unit `agency` (the AgencyCode of a voucher or
    /// draft; `None` when it names none): always, unless the user is a unit's user, who
    /// acts only for their units and for no record without a unit.
    #[must_use]
    pub fn acts_for(&self, agency: Option<&str>) -> bool {
        self.units.is_empty() || agency.is_some_and(|a| self.units.contains(a))
    }

    /// Whether the user holds `post`.
    #[must_use]
    pub fn holds(&self, post: Post) -> bool {
        self.posts.contains(&post)
    }

    /// Whether `division` is one of the user's divisions or lies under one.
    #[must_use]
    pub fn sees(&self, division: &AdmDivCode) -> bool {
        self.divisions
            .iter()
            .any(|granted| division.is_within(granted))
    }

    /// The divisions among `all` the user sees.
    #[must_use]
    pub fn visible<'a>(&self, all: &'a [Division]) -> Vec<&'a Division> {
        all.iter().filter(|d| self.sees(&d.code)).collect()
    }
}

/// Whether `user` may take `action` in `division`: active, holding one of the action's
/// posts, and seeing the division.
///
/// # Errors
/// [`Denied`], naming the first rule that fails.
pub fn may(user: &Principal, action: Action, division: &AdmDivCode) -> Result<(), Denied> {
    may_somewhere(user, action)?;
    if !user.sees(division) {
        return Err(Denied::Division {
            division: *division,
        });
    }
    Ok(())
}

/// Whether `user` may take `action` at all (in some division): active and holding one of
/// its posts. For acts not tied to one division, such as creating a user.
///
/// # Errors
/// [`Denied::Disabled`] or [`Denied::Post`].
pub fn may_somewhere(user: &Principal, action: Action) -> Result<(), Denied> {
    if !user.active {
        return Err(Denied::Disabled);
    }
    let needs = action.posts();
    if !needs.iter().any(|p| user.holds(*p)) {
        return Err(Denied::Post { action, needs });
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Segregation of duties

/// Whether `user` may take `step` on a voucher whose steps so far are `steps_so_far`: each
/// step once, in order, approve and sign after a check, and every step by a different user.
///
/// # Errors
/// The [`SodViolation`]; checked in the order repeated, out of order, same user, missing.
pub fn check_step(
    steps_so_far: &[StepRecord],
    user: UserId,
    step: Step,
) -> Result<(), SodViolation> {
    let mut taken = Vec::with_capacity(steps_so_far.len());
    for record in steps_so_far {
        let earlier = Step::from_code(&record.step).ok_or_else(|| SodViolation::UnknownStep {
            code: record.step.clone(),
        })?;
        taken.push((earlier, record.user));
    }
    if taken.iter().any(|(s, _)| *s == step) {
        return Err(SodViolation::Repeated { step });
    }
    if let Some((after, _)) = taken.iter().filter(|(s, _)| *s > step).max() {
        return Err(SodViolation::OutOfOrder {
            step,
            after: *after,
        });
    }
    if let Some((earlier, _)) = taken.iter().find(|(_, u)| *u == user) {
        return Err(SodViolation::SameUser {
            step,
            earlier: *earlier,
        });
    }
    if let Some(needs) = step.needs()
        && !taken.iter().any(|(s, _)| *s == needs)
    {
        return Err(SodViolation::Missing { step, needs });
    }
    Ok(())
}

/// Whether a user holding `held` may also hold `wanted`: an administrator post is held
/// alone (三权分立; administrators do no business).
///
/// # Errors
/// [`SodViolation::IncompatiblePosts`].
pub fn check_posts(held: &BTreeSet<Post>, wanted: Post) -> Result<(), SodViolation> {
    let clash = held
        .iter()
        .find(|h| **h != wanted && (h.is_admin() || wanted.is_admin()));
    match clash {
        Some(held) => Err(SodViolation::IncompatiblePosts {
            held: *held,
            wanted,
        }),
        None => Ok(()),
    }
}

/// Whether `granter` may change the access of `target`: never their own.
///
/// # Errors
/// [`SodViolation::SelfGrant`].
pub fn check_grant(granter: &Principal, target: UserId) -> Result<(), SodViolation> {
    if granter.id == target {
        Err(SodViolation::SelfGrant)
    } else {
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Business windows

/// Whether `now` (unix seconds) falls inside `window`: on one of its days, from its opening
/// minute up to (not including) its closing minute, in its local time.
#[must_use]
pub fn window_open(window: &BusinessWindow, now: u64) -> bool {
    let local = i128::from(now) + i128::from(window.utc_offset_min()) * 60;
    let day = local.div_euclid(86_400);
    let minute = local.rem_euclid(86_400) / 60;
    // 1970-01-01 was a Thursday; bit 0 is Monday.
    let weekday = (day + 3).rem_euclid(7);
    let on_day = window.days() & (1 << weekday) != 0;
    on_day && (i128::from(window.open_min())..i128::from(window.close_min())).contains(&minute)
}

/// `now` is outside a division's business window. Retrying later can help.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{division} is outside its business window at {now}")]
pub struct OutsideWindow {
    pub division: AdmDivCode,
    pub now: u64,
}

/// Whether `division` does business at `now`.
///
/// # Errors
/// [`OutsideWindow`].
pub fn check_window(division: &Division, now: u64) -> Result<(), OutsideWindow> {
    if window_open(&division.window, now) {
        Ok(())
    } else {
        Err(OutsideWindow {
            division: division.code,
            now,
        })
    }
}

// ---------------------------------------------------------------------------------------
// Passwords

/// Argon2id memory cost, KiB (19 MiB).
pub const KDF_M_COST_KIB: u32 = 19_456;
/// Argon2id passes.
pub const KDF_T_COST: u32 = 2;
/// Argon2id lanes.
pub const KDF_P_COST: u32 = 1;
/// Salt length, bytes.
pub const SALT_LEN: usize = 16;
/// Hash length, bytes.
const HASH_LEN: usize = 32;
/// The largest costs a stored hash may ask for (bounds what verifying one can cost).
const KDF_MAX: (u32, u32, u32) = (1 << 20, 16, 16);

/// A password. Wiped on drop; `Debug` prints asterisks; never displayed.
#[derive(Clone)]
pub struct Password(Zeroizing<String>);

impl Password {
    /// Longest password accepted, in bytes.
    pub const MAX_BYTES: usize = 128;
    /// Fewest characters of a new password.
    pub const MIN_CHARS: usize = 8;

    /// Wraps a password of 1..=[`Password::MAX_BYTES`] bytes.
    ///
    /// # Errors
    /// [`PasswordError::Length`].
    pub fn new(password: impl Into<String>) -> Result<Self, PasswordError> {
        let password = Zeroizing::new(password.into());
        if password.is_empty() || password.len() > Self::MAX_BYTES {
            return Err(PasswordError::Length);
        }
        Ok(Self(password))
    }

    fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(****)")
    }
}

/// Why a password could not be hashed or checked. None carries a password or a hash.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    /// Empty or longer than [`Password::MAX_BYTES`].
    #[error("a password is 1 to 128 bytes")]
    Length,
    /// A new password that is too weak.
    #[error(
        "a new password has at least 8 characters from three of: lower case, upper case, digits, others"
    )]
    Weak,
    /// The stored hash is not an Argon2id PHC string within the accepted costs.
    #[error("the stored password hash is not a supported Argon2id PHC string")]
    UnsupportedHash,
    /// Argon2 failed (an out-of-memory, or a bug).
    #[error("password hashing failed: {0}")]
    Hashing(String),
}

/// Whether `password` is strong enough to be set: at least [`Password::MIN_CHARS`]
/// characters from three of lower case, upper case, digits and others (as 等级保护 asks).
///
/// # Errors
/// [`PasswordError::Weak`].
pub fn check_new_password(password: &Password) -> Result<(), PasswordError> {
    let text = &*password.0;
    let classes = [
        text.chars().any(|c| c.is_ascii_lowercase()),
        text.chars().any(|c| c.is_ascii_uppercase()),
        text.chars().any(|c| c.is_ascii_digit()),
        text.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    if text.chars().count() < Password::MIN_CHARS || classes.iter().filter(|c| **c).count() < 3 {
        return Err(PasswordError::Weak);
    }
    Ok(())
}

fn hasher() -> Result<Argon2<'static>, PasswordError> {
    let params = Params::new(KDF_M_COST_KIB, KDF_T_COST, KDF_P_COST, Some(HASH_LEN))
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Ok(Argon2::new(Algorithm::Argon2id, Version::V0x13, params))
}

fn hash_with_salt(password: &Password, salt: &[u8]) -> Result<String, PasswordError> {
    hasher()?
        .hash_password_with_salt(password.expose(), salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Hashes a new password (which must pass [`check_new_password`]) with a fresh salt from
/// `rng`: an Argon2id PHC string (`$argon2id$v=19$m=19456,t=2,p=1$…`). Slow by design
/// (tens of milliseconds): call it off the async runtime.
///
/// # Errors
/// [`PasswordError::Weak`]; [`PasswordError::Hashing`].
pub fn hash_password(
    password: &Password,
    rng: &mut impl CryptoRng,
) -> Result<String, PasswordError> {
    check_new_password(password)?;
    let mut salt = [0u8; SALT_LEN];
    rng.fill_bytes(&mut salt);
    hash_with_salt(password, &salt)
}

fn parse_hash(phc: &str) -> Result<PasswordHash, PasswordError> {
    let hash = PasswordHash::new(phc).map_err(|_| PasswordError::UnsupportedHash)?;
    if hash.algorithm.as_str() != "argon2id" || hash.version != Some(0x13) {
        return Err(PasswordError::UnsupportedHash);
    }
    let params = Params::try_from(&hash).map_err(|_| PasswordError::UnsupportedHash)?;
    let (m, t, p) = KDF_MAX;
    let within = (KDF_M_COST_KIB..=m).contains(&params.m_cost())
        && (KDF_T_COST..=t).contains(&params.t_cost())
        && (KDF_P_COST..=p).contains(&params.p_cost());
    if !within {
        return Err(PasswordError::UnsupportedHash);
    }
    Ok(hash)
}

/// Whether `password` matches the stored PHC string `phc`, compared in constant time.
/// Slow by design: call it off the async runtime.
///
/// # Errors
/// [`PasswordError::UnsupportedHash`] for a hash that is not Argon2id v19 within the
/// accepted costs; [`PasswordError::Hashing`].
pub fn verify_password(password: &Password, phc: &str) -> Result<bool, PasswordError> {
    let hash = parse_hash(phc)?;
    match Argon2::default().verify_password(password.expose(), &hash) {
        Ok(()) => Ok(true),
        Err(argon2::password_hash::Error::PasswordInvalid) => Ok(false),
        Err(e) => Err(PasswordError::Hashing(e.to_string())),
    }
}

/// The hash an unknown login is verified against: same algorithm and costs as a real one.
fn dummy_hash() -> &'static str {
    static DUMMY: OnceLock<String> = OnceLock::new();
    DUMMY.get_or_init(|| {
        let password = Password::new("guoku: no such user").expect("a valid length");
        // A fixed salt: this hash guards nothing, it only costs the same time.
        hash_with_salt(&password, b"guoku-dummy-salt").expect("Argon2id with fixed parameters")
    })
}

/// Verifies `password` against a dummy hash at the cost of a real verification and
/// discards the outcome, so a login for an unknown, locked or disabled user takes as long
/// as one for a real user.
pub fn verify_dummy(password: &Password) {
    let _ = verify_password(password, dummy_hash());
}

/// Whether a stored hash uses weaker (or other) parameters than the current ones and
/// should be replaced at the next successful login.
#[must_use]
pub fn needs_rehash(phc: &str) -> bool {
    match parse_hash(phc) {
        Ok(hash) => Params::try_from(&hash).map_or(true, |p| {
            (p.m_cost(), p.t_cost(), p.p_cost()) != (KDF_M_COST_KIB, KDF_T_COST, KDF_P_COST)
        }),
        Err(_) => true,
    }
}

// ---------------------------------------------------------------------------------------
// Lockout

/// How many wrong passwords lock a user, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LockoutPolicy {
    /// Consecutive wrong passwords that lock the user.
    pub max_failures: u32,
    /// Seconds the lock lasts.
    pub lock_secs: u64,
}

impl Default for LockoutPolicy {
    /// Five wrong passwords lock the user for 30 minutes.
    fn default() -> Self {
        Self {
            max_failures: 5,
            lock_secs: 30 * 60,
        }
    }
}

/// The login counter after a wrong password at `now`: one more failure (counting afresh
/// once an earlier lock has ended); the `max_failures`-th locks until `now + lock_secs`.
#[must_use]
pub fn after_failure(state: LoginState, now: u64, policy: LockoutPolicy) -> LoginState {
    if state.is_locked(now) {
        return state;
    }
    let before = if state.locked_until.is_some() {
        0
    } else {
        state.failed_attempts
    };
    let failed_attempts = before.saturating_add(1);
    let locked_until =
        (failed_attempts >= policy.max_failures).then(|| now.saturating_add(policy.lock_secs));
    LoginState {
        failed_attempts,
        locked_until,
    }
}

/// The login counter after a right password: clear, unless the user is locked at `now`
/// (then unchanged: a lock is not lifted by guessing right).
#[must_use]
pub fn after_success(state: LoginState, now: u64) -> LoginState {
    if state.is_locked(now) {
        state
    } else {
        LoginState::default()
    }
}

// ---------------------------------------------------------------------------------------
// Glue

/// Why a login was refused.
#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    /// Unknown login or wrong password (which one is not said).
    #[error("wrong login or password")]
    BadCredentials,
    /// Too many wrong passwords: refused until `until`, whatever the password.
    #[error("too many wrong passwords: locked until {until}")]
    Locked { until: u64 },
    /// The right password for a user who is switched off.
    #[error("the user is disabled")]
    Disabled,
    /// The user's posts break the policy (granted outside it); an administrator must fix
    /// them.
    #[error("the user's access is inconsistent: {0}")]
    Policy(#[from] PolicyError),
    /// The stored hash cannot be checked.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The store failed.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The blocking pool is gone (the runtime is shutting down).
    #[error("the password check could not run: {0}")]
    Runtime(String),
}

impl LoginError {
    /// Whether retrying the same login may succeed (a lock ends; the store may recover).
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Locked { .. } | Self::Runtime(_) => true,
            Self::Access(e) => e.is_retryable(),
            _ => false,
        }
    }
}

async fn blocking<T: Send + 'static>(
    job: impl FnOnce() -> T + Send + 'static,
) -> Result<T, LoginError> {
    tokio::task::spawn_blocking(job)
        .await
        .map_err(|e| LoginError::Runtime(e.to_string()))
}

/// Logs `login` in with `password` at `now`: the user's [`Principal`], or why not. A wrong
/// password counts towards the lock ([`after_failure`]); a right one clears the counter.
/// Unknown, locked and disabled users cost the same Argon2 verification as the others.
/// Records a `login` or `login_failed` event.
///
/// # Errors
/// [`LoginError`].
pub async fn login(
    store: &Store,
    login: &str,
    password: &Password,
    now: u64,
    policy: LockoutPolicy,
) -> Result<Principal, LoginError> {
    let access = store.access();
    let Some(record) = access.user_by_login(login).await? else {
        let password = password.clone();
        blocking(move || verify_dummy(&password)).await?;
        return Err(LoginError::BadCredentials);
    };
    if let (true, Some(until)) = (
        record.login_state.is_locked(now),
        record.login_state.locked_until,
    ) {
        let password = password.clone();
        blocking(move || verify_dummy(&password)).await?;
        return Err(LoginError::Locked { until });
    }
    let (candidate, hash) = (password.clone(), record.password_hash.clone());
    let right = blocking(move || verify_password(&candidate, &hash)).await??;
    if !right {
        access
            .update_login(record.id, "login_failed", &record.login, now, move |s| {
                after_failure(s, now, policy)
            })
            .await?;
        // The failure that locks is still just a wrong password to the one who made it.
        return Err(LoginError::BadCredentials);
    }
    if record.status != UserStatus::Active {
        return Err(LoginError::Disabled);
    }
    let (before, after) = access
        .update_login(record.id, "login", &record.login, now, move |s| {
            after_success(s, now)
        })
        .await?;
    // Wrong passwords that arrived meanwhile may have locked the user: the lock wins.
    if let (true, Some(until)) = (before.is_locked(now), before.locked_until) {
        return Err(LoginError::Locked { until });
    }
    Ok(Principal::from_record(&after)?)
}

/// Why a step, a grant or a user creation was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccessDenied {
    /// The acting user may not do this here.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// It would break segregation of duties.
    #[error(transparent)]
    Sod(#[from] SodViolation),
    /// The stored posts break the policy.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A voucher key's AdmDivCode does not parse.
    #[error("bad AdmDivCode {0:?}")]
    BadDivision(String),
    /// The new password.
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// The store refused or failed.
    #[error(transparent)]
    Access(#[from] AccessError),
    /// The blocking pool is gone.
    #[error("the password hash could not be made: {0}")]
    Runtime(String),
}

impl AccessDenied {
    /// Whether retrying the same call may succeed.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Access(e) => e.is_retryable(),
            Self::Runtime(_) => true,
            _ => false,
        }
    }
}

/// `user` takes `step` on the voucher `key` at `now`: allowed by their posts in the
/// voucher's division ([`may`]), and by segregation of duties on the steps already taken
/// ([`check_step`], checked under the voucher's lock). The step is recorded with who and
/// when.
///
/// # Errors
/// [`AccessDenied`].
pub async fn take_step(
    store: &Store,
    user: &Principal,
    key: &VoucherKey,
    step: Step,
    now: u64,
) -> Result<StepRecord, AccessDenied> {
    let division: AdmDivCode = key
        .adm_div_code
        .parse()
        .map_err(|_| AccessDenied::BadDivision(key.adm_div_code.clone()))?;
    may(user, step.action(), &division)?;
    let id = user.id;
    let recorded = store
        .access()
        .record_step(key, step.code(), id, now, move |so_far| {
            check_step(so_far, id, step)
        })
        .await?;
    Ok(recorded?)
}

/// A system administrator creates a user with an initial password (which must pass
/// [`check_new_password`]), hashed with a salt from `rng` off the async runtime.
///
/// # Errors
/// [`AccessDenied`]; the store's [`AccessError::Duplicate`] for a taken login.
pub async fn create_user<R: CryptoRng + Send + 'static>(
    store: &Store,
    admin: &Principal,
    login: &str,
    display_name: &str,
    password: &Password,
    mut rng: R,
    now: u64,
) -> Result<UserRecord, AccessDenied> {
    may_somewhere(admin, Action::ManageUsers)?;
    let password = password.clone();
    let hash = tokio::task::spawn_blocking(move || hash_password(&password, &mut rng))
        .await
        .map_err(|e| AccessDenied::Runtime(e.to_string()))??;
    let new = NewUser {
        login: login.to_owned(),
        display_name: display_name.to_owned(),
        password_hash: hash,
    };
    Ok(store.access().create_user(new, &admin.login, now).await?)
}

/// A security administrator grants `post` to `target`: allowed in every division the
/// target holds, never to themselves, and never a combination [`check_posts`] refuses
/// (checked on the posts the target holds, under the target's lock).
///
/// # Errors
/// [`AccessDenied`].
pub async fn grant_post(
    store: &Store,
    granter: &Principal,
    target: UserId,
    post: Post,
    now: u64,
) -> Result<UserRecord, AccessDenied> {
    may_somewhere(granter, Action::GrantAccess)?;
    check_grant(granter, target)?;
    let access = store.access();
    let current = access
        .user(target)
        .await?
        .ok_or_else(|| AccessError::NotFound {
            what: "user",
            id: target.to_string(),
        })?;
    for division in &current.divisions {
        may(granter, Action::GrantAccess, division)?;
    }
    let granted = access
        .grant_post(target, post.code(), &granter.login, now, move |held| {
            let mut posts = BTreeSet::new();
            for code in held {
                posts.insert(code.parse::<Post>()?);
            }
            check_posts(&posts, post).map_err(PolicyError::from)
        })
        .await?;
    Ok(granted?)
}

/// A security administrator grants `division` (and the divisions under it) to `target`:
/// only a division the administrator sees, never to themselves.
///
/// # Errors
/// [`AccessDenied`].
pub async fn grant_division(
    store: &Store,
    granter: &Principal,
    target: UserId,
    division: &AdmDivCode,
    now: u64,
) -> Result<UserRecord, AccessDenied> {
    may(granter, Action::GrantAccess, division)?;
    check_grant(granter, target)?;
    Ok(store
        .access()
        .grant_division(target, division, &granter.login, now)
        .await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for post in Post::ALL {
            assert_eq!(post.code().parse::<Post>().unwrap(), post);
        }
        for step in Step::ALL {
            assert_eq!(Step::from_code(step.code()), Some(step));
        }
        assert!("root".parse::<Post>().is_err());
        assert_eq!(Step::from_code("stamp"), None);
    }

    #[test]
    fn the_business_posts_match_the_certificate_posts() {
        let certified: Vec<_> = Post::ALL.iter().filter_map(|p| p.cert_post()).collect();
        assert_eq!(certified, guoku_seal::pki::Post::ALL);
        for post in guoku_seal::pki::Post::ALL {
            assert_eq!(Post::from(post).cert_post(), Some(post));
        }
    }
}
