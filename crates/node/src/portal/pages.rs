//! The pages, as askama templates (compiled and checked with the crate; every `{{ }}`
//! HTML-escaped unless marked `|safe`, which only the frame uses, for a body another
//! template rendered and escaped). The sources are inline, so the portal needs no template
//! directory: a page is a body template plus the [`Frame`] around it.
//!
//! Every visible text comes from [`Texts`]; what the user or the store supplied (names,
//! logins, codes) is escaped like everything else.

use askama::Template;

use super::i18n::Texts;

/// htmx's configuration: no inline styles or scripts (the pages' Content Security Policy
/// allows neither), requests to this site only, and 4xx answers swapped in like 2xx ones,
/// so a refused form shows its message. No history cache: htmx would otherwise keep copies
/// of signed-in pages (names, form tokens) in the browser's session storage and show them
/// again on Back after signing out; without it, Back asks the server, which sends a
/// signed-out user to the sign-in form.
const HTMX_CONFIG: &str = r#"{"historyCacheSize":0,"refreshOnHistoryMiss":true,"includeIndicatorStyles":false,"allowEval":false,"allowScriptTags":false,"selfRequestsOnly":true,"responseHandling":[{"code":"204","swap":false},{"code":"[2345]..","swap":true}]}"#;

/// The frame of every page: head, language switch, sign-out, footer.
#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<!DOCTYPE html>
<html lang="{{ html_lang }}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="htmx-config" content="{{ htmx_config }}">
<title>{{ title }} · {{ t.portal_name }}</title>
<link rel="stylesheet" href="/assets/portal.css">
<script src="/assets/htmx.min.js" defer></script>
</head>
<body hx-boost="true">
<header>
<span class="brand">{{ t.portal_name }}</span>
{% if let Some(lang_csrf) = lang_csrf %}<form class="inline" method="post" action="/lang">
<input type="hidden" name="csrf" value="{{ lang_csrf }}">
<input type="hidden" name="next" value="{{ next }}">
<span class="label">{{ t.language }}</span>
<button type="submit" name="lang" value="zh"{% if lang == "zh" %} aria-pressed="true"{% endif %}>{{ t.lang_zh }}</button>
<button type="submit" name="lang" value="en"{% if lang == "en" %} aria-pressed="true"{% endif %}>{{ t.lang_en }}</button>
</form>{% endif %}
{% if let Some(csrf) = logout_csrf %}<form class="inline" method="post" action="/logout">
<input type="hidden" name="csrf" value="{{ csrf }}">
<button type="submit">{{ t.sign_out }}</button>
</form>{% endif %}
</header>
{% if !nav.is_empty() %}<nav class="desk" aria-label="{{ t.navigation }}"><ul>
{% for link in nav %}<li><a href="{{ link.href }}"{% if link.current %} aria-current="page"{% endif %}>{{ link.text }}</a></li>
{% endfor %}</ul></nav>{% endif %}
<main>
{{ body|safe }}
</main>
<footer>{{ t.footer }}</footer>
</body>
</html>
"#
)]
pub(crate) struct Frame<'a> {
    pub t: &'static Texts,
    pub html_lang: &'static str,
    pub lang: &'static str,
    pub title: &'a str,
    pub htmx_config: &'static str,
    /// The token of the language switch's form (`None`: no switch, as on message pages).
    pub lang_csrf: Option<&'a str>,
    /// Where the language switch returns to.
    pub next: &'a str,
    /// The sign-out form's token, when there is a session to end.
    pub logout_csrf: Option<&'a str>,
    /// The page's own body, rendered (and escaped) by its template.
    pub body: &'a str,
    /// The desk's navigation (empty outside the desks).
    pub nav: &'a [super::desk::NavLink],
}

impl Frame<'_> {
    pub(crate) fn htmx_config() -> &'static str {
        HTMX_CONFIG
    }
}

/// An organisation to choose at sign-in.
pub(crate) struct OrgChoice {
    pub code: String,
    pub name: String,
    pub selected: bool,
}

/// The password form.
#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ t.sign_in_title }}</h1>
<p class="hint">{{ t.sign_in_hint }}</p>
{% if let Some(error) = error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="/login" class="card">
<input type="hidden" name="csrf" value="{{ csrf }}">
{% if orgs.len() == 1 %}{% for org in orgs %}<input type="hidden" name="org" value="{{ org.code }}">
<p>{{ t.organisation }}: {{ org.name }}</p>{% endfor %}{% else %}<label>{{ t.organisation }}
<select name="org" required>
{% for org in orgs %}<option value="{{ org.code }}"{% if org.selected %} selected{% endif %}>{{ org.name }} ({{ org.code }})</option>
{% endfor %}</select></label>{% endif %}
<label>{{ t.login }}
<input name="login" value="{{ login }}" required maxlength="64" autocomplete="username" autocapitalize="none" spellcheck="false"></label>
<label>{{ t.password }}
<input name="password" type="password" required maxlength="128" autocomplete="current-password"></label>
<button type="submit">{{ t.sign_in_button }}</button>
</form>
"#
)]
pub(crate) struct LoginBody<'a> {
    pub t: &'static Texts,
    pub csrf: &'a str,
    pub orgs: Vec<OrgChoice>,
    /// The login typed before (kept when the form comes back with an error).
    pub login: &'a str,
    pub error: Option<String>,
}

/// The code form.
#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ t.second_factor_title }}</h1>
<p class="hint">{{ t.second_factor_hint }}</p>
{% if let Some(error) = error %}<p class="error" role="alert">{{ error }}</p>{% endif %}
<form method="post" action="/login/totp" class="card">
<input type="hidden" name="csrf" value="{{ csrf }}">
<p>{{ name }} ({{ login }})</p>
<label>{{ t.code }}
<input name="code" required inputmode="numeric" pattern="[0-9]{6}" maxlength="6" autocomplete="one-time-code"></label>
<button type="submit">{{ t.verify_button }}</button>
</form>
"#
)]
pub(crate) struct CodeBody<'a> {
    pub t: &'static Texts,
    pub csrf: &'a str,
    pub name: &'a str,
    pub login: &'a str,
    pub error: Option<String>,
}

/// A division the user sees.
pub(crate) struct DivisionLine {
    pub code: String,
    pub name: String,
}

/// The signed-in home page: who you are, your organisation and its role, posts and
/// divisions, the API.
#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ t.home_title }} · {{ org_name }}</h1>
<section class="card">
<h2>{{ t.account }}</h2>
<dl>
<dt>{{ t.signed_in_as }}</dt><dd>{{ name }} ({{ login }})</dd>
<dt>{{ t.organisation }}</dt><dd>{{ org_name }} ({{ org_code }})</dd>
<dt>{{ t.role }}</dt><dd class="role">{{ role }}</dd>
<dt>{{ t.posts }}</dt><dd class="posts">{% for post in posts %}<span class="tag">{{ post }}</span>{% endfor %}{% if posts.is_empty() %}{{ t.none }}{% endif %}</dd>
</dl>
<p class="hint">{{ session_note }}</p>
</section>
<section class="card">
<h2>{{ t.divisions }}</h2>
<p class="hint">{{ t.divisions_hint }}</p>
{% if divisions.is_empty() %}<p>{{ t.none }}</p>{% else %}<ul class="divisions">
{% for d in divisions %}<li><code>{{ d.code }}</code> {{ d.name }}</li>
{% endfor %}</ul>{% endif %}
</section>
{{ role_panel|safe }}
<section class="card">
<h2>{{ t.your_work }}</h2>
<p>{{ work }}</p>
</section>
<section class="card">
<h2>{{ t.api_title }}</h2>
<p class="hint">{{ t.api_hint }}</p>
<p><a href="/api/v1/openapi.json" hx-boost="false">{{ t.api_description }}</a></p>
</section>
"#
)]
pub(crate) struct HomeBody<'a> {
    pub t: &'static Texts,
    pub name: &'a str,
    pub login: &'a str,
    pub org_name: &'a str,
    pub org_code: &'a str,
    pub role: &'static str,
    pub work: &'static str,
    pub posts: Vec<String>,
    pub divisions: Vec<DivisionLine>,
    pub session_note: String,
    /// The role's own panel (a budget unit's quotas), rendered and escaped by its template.
    pub role_panel: String,
}

/// A message: a refusal, a missing page, an error.
#[derive(Template)]
#[template(
    ext = "html",
    source = r#"<h1>{{ title }}</h1>
<p class="error" role="alert">{{ message }}</p>
<p><a href="{{ link }}">{{ link_text }}</a></p>
"#
)]
pub(crate) struct MessageBody<'a> {
    pub title: &'a str,
    pub message: &'a str,
    pub link: &'a str,
    pub link_text: &'a str,
}
