//! What every signed-in business page shares (the "desks" of issue 6): who is asking, at
//! which organisation, in which language, the form token, the navigation of their role and
//! posts, the checked POST, and the one-time form ids that make a double-clicked submit
//! act once.
//!
//! A desk page is served at `/o/{org}/…`. [`Inner::desk`] answers a GET: the session must
//! be signed in at `org` (another organisation's page is 403, no session goes to the
//! sign-in form), the user active and their posts consistent. [`Inner::desk_post`] also
//! checks the origin and the CSRF token in constant time before a handler sees the form.
//!
//! **Authorisation is the access policy's** ([`crate::access`]): a desk page asks
//! [`Desk::may`] for the action it serves, and [`Desk::sees`] for the division of every
//! record it shows or touches; a record outside the user's divisions (or, for a budget
//! unit's user, outside their unit) is "not found", as in the API.

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use guoku_domain::AdmDivCode;
use guoku_seal::keystore::{KeyStoreFile, Pin};
use guoku_store::access::{UserRecord, UserStatus};
use guoku_store::idempotency::{Begin, IdempotencyConfig, StoredResponse, request_fingerprint};
use guoku_store::sessions::SessionStage;

use super::i18n::{Lang, Texts};
use super::{Inner, Page, Rejected, home_path, message, rejected, render, see_other, session};
use crate::access::{self as policy, Action, Principal};
use crate::exchange::Transport;
use crate::party::Party;

/// A link of the navigation bar.
pub(crate) struct NavLink {
    pub href: String,
    pub text: &'static str,
    pub current: bool,
}

/// A signed-in user at a page of their organisation.
pub(crate) struct Desk<T> {
    pub party: Arc<Party<T>>,
    pub user: UserRecord,
    pub principal: Principal,
    pub lang: Lang,
    /// The session's form token, hex.
    pub csrf: String,
    /// The party's clock at the request (unix seconds).
    pub now: u64,
    /// The path asked for (the language switch returns to it).
    pub path: String,
}

/// A POSTed form's fields, in order.
pub(crate) struct Fields(Vec<(String, String)>);

impl Fields {
    /// The first value of `name`, trimmed; `None` when absent or blank.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// Every value of `name` (checkboxes), untrimmed blanks dropped.
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.trim())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// The value of `name`, or an empty string (to show a form again as it was typed).
    pub fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_owned()
    }
}

/// What a desk handler answers before its own work: a response to send as it is (sign in,
/// 403, a refused form), or the desk.
pub(crate) type Opened<D> = Result<D, Response>;

impl<T: Transport> Inner<T> {
    /// The signed-in user at `org`'s pages, or the answer that sends them elsewhere.
    pub(crate) async fn desk(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        org: &str,
        lang: Lang,
    ) -> Result<Opened<Desk<T>>, super::PortalError> {
        let t = lang.texts();
        let Some((party, _)) = self.cookie_session(headers) else {
            return Ok(Err(see_other("/login", Vec::new())));
        };
        if party.org_code() != org {
            // Signed in at another organisation: not yours to open. Otherwise: sign in.
            return Ok(Err(match self.session(headers, false).await? {
                Some(c) if c.record.stage == SessionStage::SignedIn => {
                    let home = home_path(c.party.org_code());
                    message(
                        lang,
                        StatusCode::FORBIDDEN,
                        t.forbidden_title,
                        t.other_organisation,
                        &home,
                        t.back_home,
                    )
                }
                _ => see_other("/login", Vec::new()),
            }));
        }
        let Some(current) = self.session(headers, true).await? else {
            return Ok(Err(see_other("/login", vec![self.clear_session_cookie()])));
        };
        if current.record.stage != SessionStage::SignedIn {
            return Ok(Err(see_other("/login/totp", Vec::new())));
        }
        let user = party.store.access().user(current.record.user).await?;
        let Some(user) = user.filter(|u| u.status == UserStatus::Active) else {
            party.store.sessions().end(&current.id_hash).await?;
            return Ok(Err(see_other("/login", vec![self.clear_session_cookie()])));
        };
        let Ok(principal) = Principal::from_record(&user) else {
            return Ok(Err(message(
                lang,
                StatusCode::FORBIDDEN,
                t.forbidden_title,
                t.access_inconsistent,
                "/login",
                t.start_again,
            )));
        };
        Ok(Ok(Desk {
            party,
            user,
            principal,
            lang,
            csrf: session::hex(&current.record.csrf_token),
            now: current.now,
            path: uri.path().to_owned(),
        }))
    }

    /// A POST to `org`'s pages: from this site, a form, with the session's token; then the
    /// desk and the fields. Nothing was changed when it answers `Err`.
    pub(crate) async fn desk_post(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        body: &Bytes,
        org: &str,
        lang: Lang,
    ) -> Result<Opened<(Desk<T>, Fields)>, super::PortalError> {
        let pairs = match self.form_pairs(headers, uri, body) {
            Ok(pairs) => pairs,
            Err(why) => return Ok(Err(rejected(lang, why))),
        };
        self.desk_checked(headers, uri, org, lang, pairs).await
    }

    /// A POST whose fields were read another way (a multipart upload): from this site, with
    /// the session's token; then the desk and the fields.
    pub(crate) async fn desk_upload(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        org: &str,
        lang: Lang,
        pairs: Vec<(String, String)>,
    ) -> Result<Opened<(Desk<T>, Fields)>, super::PortalError> {
        if !session::same_origin(headers, uri) {
            return Ok(Err(rejected(lang, Rejected::Forgery)));
        }
        self.desk_checked(headers, uri, org, lang, pairs).await
    }

    async fn desk_checked(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        org: &str,
        lang: Lang,
        pairs: Vec<(String, String)>,
    ) -> Result<Opened<(Desk<T>, Fields)>, super::PortalError> {
        let desk = match self.desk(headers, uri, org, lang).await? {
            Ok(desk) => desk,
            Err(response) => return Ok(Err(response)),
        };
        let presented = pairs
            .iter()
            .find(|(k, _)| k == "csrf")
            .map(|(_, v)| v.as_str());
        let Some(current) = self.session(headers, false).await? else {
            return Ok(Err(see_other("/login", vec![self.clear_session_cookie()])));
        };
        if !session::token_matches(&current.record.csrf_token, presented) {
            return Ok(Err(rejected(lang, Rejected::Forgery)));
        }
        Ok(Ok((desk, Fields(pairs))))
    }

    /// A POSTed form's fields, if it comes from this site and is a form.
    fn form_pairs(
        &self,
        headers: &HeaderMap,
        uri: &Uri,
        body: &[u8],
    ) -> Result<Vec<(String, String)>, Rejected> {
        // The same checks as the sign-in forms (origin, content type), then every field.
        self.form(headers, uri, body)?;
        serde_urlencoded::from_bytes(body).map_err(|_| Rejected::Malformed)
    }
}

impl<T: Transport> Desk<T> {
    /// The texts of the page's language.
    pub fn t(&self) -> &'static Texts {
        self.lang.texts()
    }

    /// The organisation's code.
    pub fn org(&self) -> &str {
        self.party.org_code()
    }

    /// The path of `rest` under the organisation (`rest` starts with `/`).
    pub fn href(&self, rest: &str) -> String {
        format!("{}{rest}", home_path(self.org()))
    }

    /// Whether the user may take `action` somewhere (posts and status).
    pub fn may(&self, action: Action) -> bool {
        policy::may_somewhere(&self.principal, action).is_ok()
    }

    /// Whether the user sees `division` (theirs or under one of theirs).
    pub fn sees(&self, division: &AdmDivCode) -> bool {
        self.principal.sees(division)
    }

    /// Whether the user sees the division written `code`; a code that does not parse is
    /// nobody's.
    pub fn sees_code(&self, code: &str) -> bool {
        code.parse::<AdmDivCode>().is_ok_and(|d| self.sees(&d))
    }

    /// The 403 page for an action the user's posts do not allow.
    pub fn forbidden(&self) -> Response {
        let t = self.t();
        message(
            self.lang,
            StatusCode::FORBIDDEN,
            t.forbidden_title,
            t.post_forbids,
            &home_path(self.org()),
            t.back_home,
        )
    }

    /// The 404 page: the record does not exist, or not for this user.
    pub fn not_found(&self) -> Response {
        let t = self.t();
        message(
            self.lang,
            StatusCode::NOT_FOUND,
            t.not_found_title,
            t.record_not_found,
            &home_path(self.org()),
            t.back_home,
        )
    }

    /// The navigation of the user's role and posts, `current` marking this page's link.
    pub fn nav(&self) -> Vec<NavLink> {
        let t = self.t();
        let mut links = vec![(self.href(""), t.home_title)];
        for (rest, text) in super::nav_of(self) {
            links.push((self.href(rest), text));
        }
        let current = links
            .iter()
            .filter(|(href, _)| self.path == *href || self.path.starts_with(&format!("{href}/")))
            .map(|(href, _)| href.len())
            .max();
        links
            .into_iter()
            .map(|(href, text)| NavLink {
                current: Some(href.len()) == current
                    && (self.path == href || self.path.starts_with(&format!("{href}/"))),
                href,
                text,
            })
            .collect()
    }

    /// A page with `body` (rendered by its template) in the frame, with the navigation.
    pub fn page(
        &self,
        status: StatusCode,
        title: &str,
        body: String,
    ) -> Result<Response, super::PortalError> {
        render(
            self.lang,
            Page {
                status,
                title,
                body,
                next: Some(&self.path),
                frame_token: Some(self.csrf.clone()),
                signed: true,
                cookies: Vec::new(),
                nav: self.nav(),
            },
        )
    }

    /// A fresh one-time form id for a form that moves money or vouchers.
    pub fn form_id(&self) -> FormId {
        FormId::new()
    }

    /// Runs `work` once for the form id in `fields` (`form_id`): the first submit runs it
    /// and remembers where it led; a repeat (a double click, a reload) goes there without
    /// running it again; a repeat while the first still runs is told to wait.
    ///
    /// `work` answers `Ok(location)` (a path of this site, the 303's target) when it did
    /// what the form asked, or `Err(response)` for a form shown again with its errors
    /// (nothing was done, so the same form id may be submitted again).
    pub async fn once<F>(&self, fields: &Fields, work: F) -> Result<Response, super::PortalError>
    where
        F: Future<Output = Result<Result<String, Response>, super::PortalError>>,
    {
        let Some(id) = fields
            .get("form_id")
            .filter(|id| FormId::is_well_formed(id))
        else {
            return Ok(rejected(self.lang, Rejected::Malformed));
        };
        let keys = self
            .party
            .store
            .idempotency(IdempotencyConfig::default())
            .map_err(super::PortalError::from)?;
        let key = format!("portal:{id}");
        // The form id alone decides: the same id with other fields is the same submit.
        let fingerprint = request_fingerprint("POST", "portal-form", id.as_bytes());
        let begin = keys
            .begin(self.user.id, &key, fingerprint, self.now)
            .await
            .map_err(super::PortalError::from)?;
        let lease = match begin {
            Begin::Replay(stored) => {
                let location = String::from_utf8(stored.body).unwrap_or_default();
                return Ok(if location.starts_with('/') {
                    see_other(&location, Vec::new())
                } else {
                    see_other(&self.href(""), Vec::new())
                });
            }
            Begin::InProgress { .. } => {
                let t = self.t();
                return Ok(message(
                    self.lang,
                    StatusCode::CONFLICT,
                    t.in_progress_title,
                    t.in_progress,
                    &self.path,
                    t.back,
                ));
            }
            Begin::Proceed(lease) => lease,
        };
        match work.await {
            Ok(Ok(location)) => {
                let stored = StoredResponse {
                    status: StatusCode::SEE_OTHER.as_u16(),
                    body: location.clone().into_bytes(),
                };
                if let Err(e) = keys.complete(&lease, stored).await {
                    tracing::error!(error = %e, "portal: a form's outcome could not be kept");
                }
                Ok(see_other(&location, Vec::new()))
            }
            Ok(Err(response)) => {
                if let Err(e) = keys.abandon(&lease).await {
                    tracing::error!(error = %e, "portal: a form id could not be given up");
                }
                Ok(response)
            }
            Err(e) => {
                if let Err(e) = keys.abandon(&lease).await {
                    tracing::error!(error = %e, "portal: a form id could not be given up");
                }
                Err(e)
            }
        }
    }
}

/// The file of an organisation's signer key store, in its key directory.
pub(crate) const SIGNER_KEY_FILE: &str = "signer.key";

/// The signing PIN typed into a form, or the message for its field.
pub(crate) fn read_pin(t: &Texts, text: Option<&str>) -> Result<Pin, &'static str> {
    match text {
        None => Err(t.pin_required),
        Some(text) => Pin::new(text).map_err(|_| t.pin_malformed),
    }
}

/// Whether `pin` opens the organisation's signer key store in `key_dir` (off the async
/// threads: the key derivation is deliberately slow): `Ok(Err(message))` for the PIN
/// field when not. A wrong PIN counts towards the key store's lock.
pub(crate) async fn open_signer(
    t: &Texts,
    key_dir: Option<&std::path::Path>,
    pin: Pin,
) -> Result<Result<(), String>, super::PortalError> {
    let Some(dir) = key_dir else {
        return Ok(Err(t.no_key_store.to_owned()));
    };
    let path = dir.join(SIGNER_KEY_FILE);
    let opened =
        tokio::task::spawn_blocking(move || KeyStoreFile::open(path).unlock(&pin).map(drop))
            .await
            .map_err(|e| super::PortalError::Runtime(e.to_string()))?;
    match opened {
        Ok(()) => Ok(Ok(())),
        Err(guoku_seal::Error::WrongPin { remaining }) => Ok(Err(super::i18n::fill(
            t.pin_wrong,
            &[("remaining", &remaining.to_string())],
        ))),
        Err(guoku_seal::Error::Locked) => Ok(Err(t.pin_locked.to_owned())),
        Err(e) => Err(super::PortalError::Work(format!(
            "the signer's key store: {e}"
        ))),
    }
}

/// An error shown next to its field.
#[derive(Clone, Debug)]
pub(crate) struct FieldError {
    pub field: &'static str,
    pub message: String,
}

/// The errors of a form, by field.
#[derive(Clone, Debug, Default)]
pub(crate) struct FieldErrors(pub Vec<FieldError>);

impl FieldErrors {
    /// Records `message` for `field`.
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.push(FieldError {
            field,
            message: message.into(),
        });
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The messages of `field`, joined (askama templates call this next to the field).
    pub fn of(&self, field: &str) -> String {
        self.0
            .iter()
            .filter(|e| e.field == field)
            .map(|e| e.message.as_str())
            .collect::<Vec<_>>()
            .join("；")
    }

    /// Whether `field` has an error.
    pub fn has(&self, field: &str) -> bool {
        self.0.iter().any(|e| e.field == field)
    }
}

/// A template's rendering as a page body.
pub(crate) fn body(template: &impl Template) -> Result<String, super::PortalError> {
    Ok(template.render()?)
}

/// A one-time id for a form that moves money or vouchers: 128 random bits, hex. The first
/// submit with it acts; a repeat finds the first one's outcome ([`Desk::once`]).
pub(crate) struct FormId(String);

impl FormId {
    pub(crate) fn new() -> Self {
        let mut bytes = [0u8; 16];
        rand::fill(&mut bytes);
        Self(session::hex(&bytes))
    }

    /// Whether `id` looks like one (32 lowercase hex digits).
    pub(crate) fn is_well_formed(id: &str) -> bool {
        id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    }
}

impl std::fmt::Display for FormId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
