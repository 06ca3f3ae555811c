//! A browser window on the portal, with the few steps a journey takes: open a path, fill a
//! field, choose an option or a file, click a button, wait for something to show, read
//! text, go back, fetch a file with the window's cookies, open another window.
//!
//! Waiting never sleeps: [`Tab::wait_for`] runs in the page, resolving as soon as a
//! `MutationObserver` sees the element (or rejecting after [`WAIT_MS`]); when the page
//! navigates meanwhile (its JavaScript context is replaced), it waits for the navigation
//! and looks again, at most [`WAIT_TRIES`] times.
//!
//! Every failure panics with what was expected and the page's URL and text, so a broken
//! journey says where it stopped.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use base64::Engine;
use chromiumoxide::Page;
use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::cdp::browser_protocol::dom::SetFileInputFilesParams;
use chromiumoxide::cdp::browser_protocol::input::InsertTextParams;
use chromiumoxide::cdp::js_protocol::runtime::{CallArgument, CallFunctionOnParams};
use chromiumoxide::error::CdpError;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::chromium::Chromium;

/// How long one look for an element lasts in the page, in milliseconds.
pub const WAIT_MS: u64 = 15_000;
/// Looks for an element at most (a look ends early when the page navigates).
pub const WAIT_TRIES: usize = 8;

/// Resolves when an element matching `selector` (and holding `text`, when not null)
/// exists; rejects after `ms`.
const WAIT_JS: &str = r"(selector, text, ms) => new Promise((resolve, reject) => {
  const found = () => Array.from(document.querySelectorAll(selector))
    .some((e) => text === null || e.textContent.includes(text));
  if (found()) { resolve(true); return; }
  let timer = null;
  const observer = new MutationObserver(() => {
    if (found()) { observer.disconnect(); clearTimeout(timer); resolve(true); }
  });
  observer.observe(document, { subtree: true, childList: true, characterData: true, attributes: true });
  timer = setTimeout(() => { observer.disconnect(); reject(new Error('not shown within ' + ms + ' ms')); }, ms);
})";

/// Fetches `url` with the page's cookies (also the `HttpOnly` ones, which `document.cookie`
/// cannot read): status, content type, body in base64.
const FETCH_JS: &str = r"async (url) => {
  const answer = await fetch(url, { credentials: 'same-origin', redirect: 'follow' });
  const bytes = new Uint8Array(await answer.arrayBuffer());
  let text = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return { status: answer.status, content_type: answer.headers.get('content-type'),
           url: answer.url, base64: btoa(text) };
}";

/// A file fetched by the page.
#[derive(Debug)]
pub struct Download {
    pub status: u16,
    pub content_type: Option<String>,
    /// Where it came from after redirects.
    pub url: String,
    pub bytes: Vec<u8>,
}

/// A window of the shared browser (a private browser context with one page).
pub struct Tab {
    chromium: Arc<Chromium>,
    context: Option<BrowserContextId>,
    pub page: Page,
    base: String,
    /// The mark [`Tab::mark_page`] put on the page shown last.
    mark: AtomicU64,
}

impl Tab {
    pub(super) fn new(
        chromium: Arc<Chromium>,
        context: BrowserContextId,
        page: Page,
        base: &str,
    ) -> Tab {
        Tab {
            chromium,
            context: Some(context),
            page,
            base: base.trim_end_matches('/').to_owned(),
            mark: AtomicU64::new(0),
        }
    }

    /// Marks the page shown now, so [`Tab::next_page`] can tell the next one from it: htmx
    /// swaps the body in place, a full load replaces the document, a page restored from
    /// history carries an older mark; in each case this mark is gone.
    pub async fn mark_page(&self) {
        let mark = self.mark.fetch_add(1, Ordering::SeqCst) + 1;
        let marked: bool = self
            .call(
                "(mark) => { const m = document.querySelector('main'); \
                 if (!m) return false; m.setAttribute('data-test-mark', mark); return true; }",
                &[json!(mark.to_string())],
            )
            .await;
        assert!(marked, "no <main> to mark\n{}", self.where_am_i().await);
    }

    /// Waits for the page after the one [`Tab::mark_page`] marked last.
    pub async fn next_page(&self) {
        let mark = self.mark.load(Ordering::SeqCst);
        self.wait_for(&format!("main:not([data-test-mark=\"{mark}\"])"))
            .await;
    }

    /// The absolute URL of `path` on the portal.
    pub fn url_of(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Opens `path` (as typing it in the address bar) and waits for it to load.
    pub async fn open(&self, path: &str) {
        let url = self.url_of(path);
        self.page
            .goto(url.as_str())
            .await
            .unwrap_or_else(|e| panic!("cannot open {url}: {e}"));
    }

    /// Runs `function` in the page with `args`: its value (promises awaited).
    pub async fn call<T: DeserializeOwned>(&self, function: &str, args: &[Value]) -> T {
        match self.try_call(function, args).await {
            Ok(v) => v,
            Err(e) => panic!("{e}\n{}", self.where_am_i().await),
        }
    }

    async fn try_call<T: DeserializeOwned>(
        &self,
        function: &str,
        args: &[Value],
    ) -> Result<T, String> {
        let mut params = CallFunctionOnParams::builder().function_declaration(function);
        for arg in args {
            params = params.argument(CallArgument::builder().value(arg.clone()).build());
        }
        let params = params.build().map_err(|e| e.to_string())?;
        let value = self
            .page
            .evaluate_function(params)
            .await
            .map_err(|e| match e {
                // The script's own error, not the protocol's whole record of it.
                CdpError::JavascriptException(details) => details
                    .exception
                    .and_then(|e| e.description)
                    .unwrap_or(details.text),
                other => other.to_string(),
            })?;
        value.into_value().map_err(|e| e.to_string())
    }

    /// Waits until an element matching the CSS `selector` shows.
    pub async fn wait_for(&self, selector: &str) {
        self.wait(selector, None).await;
    }

    /// Waits until an element matching `selector` shows holding `text`.
    pub async fn wait_for_text(&self, selector: &str, text: &str) {
        self.wait(selector, Some(text)).await;
    }

    /// Waits until an element matching `selector` shows, looking for at most `ms` at a
    /// time (for what takes longer than a click's answer, e.g. a batch job's progress).
    pub async fn wait_for_within(&self, selector: &str, ms: u64) {
        self.wait_ms(selector, None, ms).await;
    }

    async fn wait(&self, selector: &str, text: Option<&str>) {
        self.wait_ms(selector, text, WAIT_MS).await;
    }

    async fn wait_ms(&self, selector: &str, text: Option<&str>, ms: u64) {
        let args = [json!(selector), json!(text), json!(ms)];
        let mut why = String::new();
        for _ in 0..WAIT_TRIES {
            match self.try_call::<bool>(WAIT_JS, &args).await {
                Ok(true) => return,
                Ok(false) => why = "the wait answered false".into(),
                Err(e) => {
                    if e.contains("not shown within") {
                        why = e;
                        break;
                    }
                    // The page navigated while we looked: look again once it has loaded.
                    why = e;
                    let _ = self.page.wait_for_navigation().await;
                }
            }
        }
        panic!(
            "waited for {selector:?}{}: {why}\n{}",
            text.map(|t| format!(" holding {t:?}")).unwrap_or_default(),
            self.where_am_i().await
        );
    }

    /// Whether an element matching `selector` (holding `text`, if given) is there now.
    pub async fn has(&self, selector: &str, text: Option<&str>) -> bool {
        self.call(
            "(selector, text) => Array.from(document.querySelectorAll(selector))\
             .some((e) => text === null || e.textContent.includes(text))",
            &[json!(selector), json!(text)],
        )
        .await
    }

    /// The text of the first element matching `selector` (waiting for it).
    pub async fn text(&self, selector: &str) -> String {
        self.wait_for(selector).await;
        self.call(
            "(selector) => document.querySelector(selector).innerText",
            &[json!(selector)],
        )
        .await
    }

    /// The attribute `name` of the first element matching `selector` (waiting for it).
    pub async fn attribute(&self, selector: &str, name: &str) -> Option<String> {
        self.wait_for(selector).await;
        self.call(
            "(selector, name) => document.querySelector(selector).getAttribute(name)",
            &[json!(selector), json!(name)],
        )
        .await
    }

    /// The page's visible text.
    pub async fn body_text(&self) -> String {
        self.text("body").await
    }

    /// The page's address now.
    pub async fn location(&self) -> String {
        self.call("() => location.href", &[]).await
    }

    /// The path of [`Tab::location`].
    pub async fn path(&self) -> String {
        self.call("() => location.pathname", &[]).await
    }

    /// Types `value` into the field named `name` (emptied first), as a person would: key
    /// by key, except Chinese text, which an input method commits whole (the protocol's
    /// `Input.insertText`; the keyboard the protocol emulates has no key for `长`).
    pub async fn fill(&self, name: &str, value: &str) {
        let selector = format!("[name=\"{name}\"]");
        self.wait_for(&selector).await;
        let _: bool = self
            .call(
                "(selector) => { const e = document.querySelector(selector); e.value = ''; \
                 e.focus(); return true; }",
                &[json!(selector)],
            )
            .await;
        let field = self.element(&selector).await;
        let typed = if value.is_ascii() {
            field.type_str(value).await.map(|_| ())
        } else {
            self.page
                .execute(InsertTextParams::new(value))
                .await
                .map(|_| ())
        };
        if let Err(e) = typed {
            panic!(
                "cannot type {value:?} into {selector}: {e}\n{}",
                self.where_am_i().await
            );
        }
    }

    /// Chooses the option `value` of the `<select>` named `name`.
    pub async fn select(&self, name: &str, value: &str) {
        let selector = format!("select[name=\"{name}\"]");
        self.wait_for(&selector).await;
        let chosen: bool = self
            .call(
                "(selector, value) => { const s = document.querySelector(selector); \
                 if (!Array.from(s.options).some((o) => o.value === value)) return false; \
                 s.value = value; s.dispatchEvent(new Event('input', { bubbles: true })); \
                 s.dispatchEvent(new Event('change', { bubbles: true })); return true; }",
                &[json!(selector), json!(value)],
            )
            .await;
        assert!(
            chosen,
            "{selector} has no option {value:?}\n{}",
            self.where_am_i().await
        );
    }

    /// Clicks the element matching `selector` with the mouse (waiting for it).
    pub async fn click(&self, selector: &str) {
        self.wait_for(selector).await;
        self.element(selector)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("cannot click {selector}: {e}"));
    }

    /// Clicks the button (or submit input) whose text is `text`, within `scope` (a CSS
    /// selector, e.g. `main` or `form[action="/login"]`).
    pub async fn click_button(&self, scope: &str, text: &str) {
        self.clicks_on_button(scope, text, 1).await;
    }

    /// Clicks that button `times` times in a row as fast as the mouse can (a double-clicked
    /// submit is `times = 2`).
    pub async fn clicks_on_button(&self, scope: &str, text: &str, times: usize) {
        let selector = self.mark_button(scope, text).await;
        let button = self.element(&selector).await;
        for n in 0..times {
            if let Err(e) = button.click().await {
                // A click after the first may find the page already gone: that is the race
                // a double click makes, not a failure.
                assert!(n > 0, "cannot click the button {text:?}: {e}");
            }
        }
    }

    /// Marks the button `text` within `scope` with a data attribute: its selector.
    async fn mark_button(&self, scope: &str, text: &str) -> String {
        let buttons = format!("{scope} button, {scope} input[type=submit]");
        self.wait_for_text(&buttons, text).await;
        let marked: bool = self
            .call(
                "(selector, text) => { document.querySelectorAll('[data-test-click]')\
                 .forEach((e) => e.removeAttribute('data-test-click')); \
                 const b = Array.from(document.querySelectorAll(selector))\
                 .find((e) => (e.innerText || e.value || '').trim() === text); \
                 if (!b) return false; b.setAttribute('data-test-click', ''); return true; }",
                &[json!(buttons), json!(text)],
            )
            .await;
        assert!(
            marked,
            "no button {text:?} in {scope}\n{}",
            self.where_am_i().await
        );
        "[data-test-click]".to_owned()
    }

    async fn element(&self, selector: &str) -> chromiumoxide::Element {
        match self.page.find_element(selector).await {
            Ok(e) => e,
            Err(e) => panic!("no {selector}: {e}\n{}", self.where_am_i().await),
        }
    }

    /// Chooses `files` in the file input matching `selector`, as the file dialog would
    /// (the protocol's `DOM.setFileInputFiles`: a page's script cannot set a file input).
    pub async fn set_files(&self, selector: &str, files: &[&Path]) {
        self.wait_for(selector).await;
        let input = self.element(selector).await;
        let params = SetFileInputFilesParams::builder()
            .files(files.iter().map(|f| f.display().to_string()))
            .backend_node_id(input.backend_node_id)
            .build()
            .expect("file input parameters");
        if let Err(e) = self.page.execute(params).await {
            panic!(
                "cannot choose {files:?} in {selector}: {e}\n{}",
                self.where_am_i().await
            );
        }
    }

    /// The browser's back button.
    pub async fn back(&self) {
        let _: bool = self
            .call("() => { history.back(); return true; }", &[])
            .await;
    }

    /// Fetches `path` through the page, with its cookies (as a link or a download would).
    pub async fn download(&self, path: &str) -> Download {
        #[derive(serde::Deserialize)]
        struct Fetched {
            status: u16,
            content_type: Option<String>,
            url: String,
            base64: String,
        }
        let fetched: Fetched = self.call(FETCH_JS, &[json!(path)]).await;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(fetched.base64)
            .expect("the page's base64");
        Download {
            status: fetched.status,
            content_type: fetched.content_type,
            url: fetched.url,
            bytes,
        }
    }

    /// Where the page is and what it shows, for a failure's message.
    pub async fn where_am_i(&self) -> String {
        let url = self.page.url().await.ok().flatten().unwrap_or_default();
        let text = self
            .page
            .evaluate("document.body ? document.body.innerText : ''")
            .await
            .ok()
            .and_then(|r| r.into_value::<String>().ok())
            .unwrap_or_default();
        format!("at {url}, showing:\n{text}")
    }

    /// Another private window of the same browser on the same portal (someone else at
    /// another desk: its own cookies).
    pub async fn another_window(&self) -> Tab {
        self.chromium.window(&self.base).await
    }

    /// Closes the window (its private context, cookies and all).
    pub async fn close(mut self) {
        if let Some(context) = self.context.take() {
            self.chromium.dispose(context).await;
        }
    }
}
