//! Session ids, cookies and CSRF checks: the parts of a request the portal trusts only
//! after checking.
//!
//! - **Session ids** are 256 random bits, sent to the browser in hex and stored only as
//!   their SHA-256 ([`guoku_store::sessions`]). The session cookie names the organisation
//!   too (`<org code>.<id>`), so the portal knows which party's store keeps the session;
//!   an id moved to another organisation's name finds nothing there.
//! - **Cookies** are `HttpOnly`, `SameSite=Strict`, `Path=/`, and `Secure` unless the
//!   configuration turns it off for a plain-HTTP demo; with `Secure` they carry the
//!   `__Host-` prefix, so no other host (a sibling subdomain) can set them.
//! - **CSRF**: every form carries a token in a hidden field, checked in constant time on
//!   every POST. A session's token is the one stored with it. Before sign-in there is no
//!   session, so the login form's token is an HMAC, under the portal's key, of a random
//!   pre-session cookie: a site that can neither read nor set that cookie cannot forge it.
//!   Each POST must also come from this origin: `Sec-Fetch-Site`, when the browser sends
//!   it, must say `same-origin`, and `Origin`, when sent, must name this host.

use axum::http::header::{COOKIE, HOST, ORIGIN};
use axum::http::{HeaderMap, HeaderValue, Uri};
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::totp::PortalKey;

/// Bytes of a session id, a CSRF token and a pre-session value.
pub(crate) const TOKEN_LEN: usize = 32;
/// The language cookie: `zh` or `en`.
pub(crate) const LANG_COOKIE: &str = "gk_lang";
/// How long the language cookie lasts, in seconds (a year).
pub(crate) const LANG_COOKIE_SECS: u64 = 365 * 24 * 60 * 60;

/// The names of the portal's own cookies, which depend on whether they are `Secure`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CookieNames {
    pub session: &'static str,
    pub pre: &'static str,
}

impl CookieNames {
    pub(crate) fn new(secure: bool) -> Self {
        if secure {
            Self {
                session: "__Host-gk_session",
                pre: "__Host-gk_pre",
            }
        } else {
            Self {
                session: "gk_session",
                pre: "gk_pre",
            }
        }
    }
}

/// A session id. Wiped on drop; never logged.
pub(crate) struct SessionId(Zeroizing<[u8; TOKEN_LEN]>);

impl SessionId {
    pub(crate) fn generate() -> Self {
        Self(random())
    }

    /// The id's SHA-256, the only form the store sees.
    pub(crate) fn hash(&self) -> [u8; 32] {
        Sha256::digest(&self.0[..]).into()
    }

    fn from_hex(text: &str) -> Option<Self> {
        let mut bytes = Zeroizing::new([0u8; TOKEN_LEN]);
        decode_hex(text, &mut bytes[..])?;
        Some(Self(bytes))
    }

    /// The session cookie's value for a session of `org`.
    pub(crate) fn cookie_value(&self, org: &str) -> Zeroizing<String> {
        Zeroizing::new(format!("{org}.{}", hex(&self.0[..])))
    }

    /// The organisation and id a session cookie's value names, if well formed.
    pub(crate) fn parse_cookie(value: &str) -> Option<(&str, SessionId)> {
        let (org, id) = value.split_once('.')?;
        let plain = !org.is_empty()
            && org.len() <= 64
            && org
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !plain {
            return None;
        }
        Some((org, SessionId::from_hex(id)?))
    }
}

/// 32 random bytes.
pub(crate) fn random() -> Zeroizing<[u8; TOKEN_LEN]> {
    let mut bytes = Zeroizing::new([0u8; TOKEN_LEN]);
    rand::fill(&mut bytes[..]);
    bytes
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn decode_hex(text: &str, out: &mut [u8]) -> Option<()> {
    if text.len() != out.len() * 2 {
        return None;
    }
    for (i, pair) in text.as_bytes().chunks_exact(2).enumerate() {
        let digit = |c: u8| char::from(c).to_digit(16);
        let (hi, lo) = (digit(pair[0])?, digit(pair[1])?);
        out[i] = u8::try_from(hi * 16 + lo).ok()?;
    }
    Some(())
}

/// A fresh pre-session value (the login form's CSRF cookie), in hex.
pub(crate) fn new_pre_value() -> String {
    hex(&random()[..])
}

/// Whether `value` is a well-formed pre-session value.
pub(crate) fn is_pre_value(value: &str) -> bool {
    let mut scratch = [0u8; TOKEN_LEN];
    decode_hex(value, &mut scratch).is_some()
}

/// The login form's CSRF token for the pre-session value `pre`.
pub(crate) fn login_token(key: &PortalKey, pre: &str) -> [u8; TOKEN_LEN] {
    let derived = key.derive("guoku portal: login form csrf v1");
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(&derived[..]).expect("HMAC takes any key");
    mac.update(pre.as_bytes());
    mac.finalize().into_bytes().into()
}

/// Whether the token a form sent (`presented`, hex) is `expected`, compared in constant
/// time (a missing or malformed token is simply wrong).
pub(crate) fn token_matches(expected: &[u8; TOKEN_LEN], presented: Option<&str>) -> bool {
    let mut got = [0u8; TOKEN_LEN];
    let well_formed = presented.is_some_and(|p| decode_hex(p, &mut got).is_some());
    let same: bool = expected.ct_eq(&got).into();
    well_formed && same
}

/// The value of cookie `name`, if the request carries it (the first, if several).
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let (k, v) = pair.trim().split_once('=')?;
            (k.trim() == name).then(|| v.trim().trim_matches('"'))
        })
}

/// A `Set-Cookie` value: `HttpOnly`, `SameSite=Strict`, `Path=/`, `Secure` if `secure`, and
/// `Max-Age` when given (without it the cookie ends with the browser session).
pub(crate) fn set_cookie(
    name: &str,
    value: &str,
    secure: bool,
    max_age: Option<u64>,
) -> HeaderValue {
    let mut text = format!("{name}={value}; Path=/; HttpOnly; SameSite=Strict");
    if secure {
        text.push_str("; Secure");
    }
    if let Some(age) = max_age {
        text.push_str(&format!("; Max-Age={age}"));
    }
    HeaderValue::from_str(&text).expect("cookie names and values are visible ASCII")
}

/// A `Set-Cookie` value that removes cookie `name`.
pub(crate) fn clear_cookie(name: &str, secure: bool) -> HeaderValue {
    set_cookie(name, "", secure, Some(0))
}

/// Whether a POST comes from this site: `Sec-Fetch-Site` (when sent) says `same-origin`
/// (or `none`: typed by the user), and `Origin` (when sent) names the host the request was
/// made to. Browsers send at least one of them with every cross-site POST.
pub(crate) fn same_origin(headers: &HeaderMap, uri: &Uri) -> bool {
    if let Some(site) = headers.get("sec-fetch-site")
        && !matches!(site.to_str(), Ok("same-origin" | "none"))
    {
        return false;
    }
    let Some(origin) = headers.get(ORIGIN) else {
        return true;
    };
    let Ok(origin) = origin.to_str() else {
        return false;
    };
    let Some(authority) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        // "null" (a sandboxed or privacy-sensitive context) and anything else.
        return false;
    };
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    host.is_some_and(|h| h.eq_ignore_ascii_case(authority))
}

/// `next` if it is a path on this site (so a redirect to it cannot leave the site): it
/// starts with one `/`, holds only visible ASCII and no backslash.
pub(crate) fn local_path(next: &str) -> Option<&str> {
    let local = next.starts_with('/')
        && !next.starts_with("//")
        && next.len() <= 512
        && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\');
    local.then_some(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn session_cookies_round_trip_and_refuse_junk() {
        let id = SessionId::generate();
        let value = id.cookie_value("11430000006");
        let (org, parsed) = SessionId::parse_cookie(&value).unwrap();
        assert_eq!(org, "11430000006");
        assert_eq!(parsed.hash(), id.hash());
        assert_ne!(SessionId::generate().hash(), id.hash());
        let hex_id = &value[12..];
        for bad in [
            String::new(),
            format!(".{hex_id}"),
            "11430000006.".to_owned(),
            format!("11430000006.{}", &hex_id[1..]),
            format!("114 30000006.{hex_id}"),
            format!("11430000006.{}zz", &hex_id[2..]),
        ] {
            assert!(SessionId::parse_cookie(&bad).is_none(), "{bad:?}");
        }
    }

    #[test]
    fn tokens_match_only_exactly() {
        let key = PortalKey::from_bytes([1; 32]);
        let pre = new_pre_value();
        assert!(is_pre_value(&pre) && !is_pre_value("abc"));
        let token = login_token(&key, &pre);
        assert!(token_matches(&token, Some(&hex(&token))));
        assert!(!token_matches(&token, None));
        assert!(!token_matches(&token, Some("")));
        assert!(!token_matches(
            &token,
            Some(&hex(&login_token(&key, &new_pre_value())))
        ));
        assert_ne!(
            token,
            login_token(&PortalKey::from_bytes([2; 32]), &pre),
            "another key, another token"
        );
        let mut other = token;
        other[31] ^= 1;
        assert!(!token_matches(&token, Some(&hex(&other))));
        assert!(!token_matches(&[0; 32], Some("00")), "short");
    }

    #[test]
    fn cookies_are_read_from_every_cookie_header() {
        let h = headers(&[("cookie", "a=1; gk_lang=en"), ("cookie", "gk_pre=\"x\"")]);
        assert_eq!(cookie(&h, "gk_lang"), Some("en"));
        assert_eq!(cookie(&h, "gk_pre"), Some("x"));
        assert_eq!(cookie(&h, "gk"), None);
        let set = set_cookie("gk_session", "v", true, None);
        assert_eq!(
            set.to_str().unwrap(),
            "gk_session=v; Path=/; HttpOnly; SameSite=Strict; Secure"
        );
        let gone = clear_cookie("gk_pre", false);
        assert_eq!(
            gone.to_str().unwrap(),
            "gk_pre=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"
        );
    }

    #[test]
    fn only_same_origin_posts_pass() {
        let uri: Uri = "/logout".parse().unwrap();
        let ok = [
            headers(&[]),
            headers(&[("sec-fetch-site", "same-origin")]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
            ]),
            headers(&[
                ("host", "Portal.example"),
                ("origin", "https://portal.example"),
            ]),
        ];
        for h in ok {
            assert!(same_origin(&h, &uri), "{h:?}");
        }
        let refused = [
            headers(&[("sec-fetch-site", "cross-site")]),
            headers(&[("sec-fetch-site", "same-site")]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://evil.example"),
            ]),
            headers(&[("host", "127.0.0.1:8080"), ("origin", "null")]),
            headers(&[("origin", "http://127.0.0.1:8080")]),
            headers(&[
                ("host", "127.0.0.1:8080"),
                ("origin", "http://127.0.0.1:8080"),
                ("sec-fetch-site", "cross-site"),
            ]),
        ];
        for h in refused {
            assert!(!same_origin(&h, &uri), "{h:?}");
        }
        let absolute: Uri = "http://127.0.0.1:8080/logout".parse().unwrap();
        assert!(same_origin(
            &headers(&[("origin", "http://127.0.0.1:8080")]),
            &absolute
        ));
    }

    #[test]
    fn redirects_stay_on_the_site() {
        for ok in ["/", "/o/11430000006", "/login?x=1"] {
            assert_eq!(local_path(ok), Some(ok));
        }
        for bad in [
            "",
            "//evil.example",
            "/\\evil.example",
            "https://evil.example",
            "/a b",
            "/\u{4e2d}",
        ] {
            assert_eq!(local_path(bad), None, "{bad:?}");
        }
    }
}
