//! One headless Chromium shared by the tests of this binary, and a private window (an
//! incognito browser context: its own cookies and storage) for each test.
//!
//! Chromium is `GUOKU_CHROMIUM` when set, else `chromium`, `chromium-browser` or
//! `google-chrome` on `PATH`. Without one a test says SKIPPED loudly and passes, except
//! under `CI=true`, where it fails (as the PostgreSQL tests do).
//!
//! The browser lives while some test holds it: the first test to ask launches it (with a
//! fresh temporary profile directory), the last one to let go drops it, which kills the
//! process (chromiumoxide sets `kill_on_drop`). Its DevTools connection is driven on a
//! thread of its own with its own runtime, because every `#[tokio::test]` has a runtime
//! that ends with the test, and the browser outlives any one test.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::browser::BrowserContextId;
use chromiumoxide::cdp::browser_protocol::network::SetUserAgentOverrideParams;
use chromiumoxide::cdp::browser_protocol::target::{
    CreateBrowserContextParams, CreateTargetParams,
};
use futures_util::StreamExt;

use super::tab::Tab;

/// The names Chromium goes by on `PATH`, in the order tried.
const NAMES: [&str; 3] = ["chromium", "chromium-browser", "google-chrome"];

/// The language the browser asks pages in (a user in China).
pub const ACCEPT_LANGUAGE: &str = "zh-CN,zh";

/// The Chromium to run: `GUOKU_CHROMIUM`, else the first of [`NAMES`] on `PATH`.
pub fn find() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("GUOKU_CHROMIUM").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(path));
    }
    let dirs = std::env::var_os("PATH")?;
    NAMES.iter().find_map(|name| {
        std::env::split_paths(&dirs)
            .map(|dir| dir.join(name))
            .find(|path| path.is_file())
    })
}

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A running Chromium (dropped: killed) and its profile directory (dropped after it).
pub struct Chromium {
    browser: Browser,
    _profile: tempfile::TempDir,
}

/// The browser the running tests share, while one holds it.
static SHARED: tokio::sync::Mutex<Weak<Chromium>> = tokio::sync::Mutex::const_new(Weak::new());

impl Chromium {
    /// The shared browser, launched if no test holds it now; `None` (said loudly) when
    /// there is no Chromium, which fails under `CI=true`.
    pub async fn shared(test: &str) -> Option<Arc<Chromium>> {
        let mut slot = SHARED.lock().await;
        if let Some(running) = slot.upgrade() {
            return Some(running);
        }
        let Some(executable) = find() else {
            assert!(
                !in_ci(),
                "CI=true but no Chromium: set GUOKU_CHROMIUM or install Debian's chromium \
                 (scripts/test.sh does)"
            );
            eprintln!(
                "\n*** SKIPPED: browser test {test}: no Chromium (set GUOKU_CHROMIUM, or put \
                 one of {NAMES:?} on PATH; scripts/test.sh installs Debian's chromium) ***\n"
            );
            return None;
        };
        let chromium = Arc::new(
            Chromium::launch(&executable)
                .await
                .unwrap_or_else(|e| panic!("cannot launch {}: {e}", executable.display())),
        );
        *slot = Arc::downgrade(&chromium);
        Some(chromium)
    }

    async fn launch(executable: &Path) -> Result<Chromium, String> {
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let config = BrowserConfig::builder()
            .chrome_executable(executable)
            .user_data_dir(profile.path())
            // The tests open only the portal they serve themselves. Chromium's sandbox
            // refuses to start as root and needs user namespaces, which containers and CI
            // machines often lack.
            .no_sandbox()
            .args([
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--no-first-run",
                "--lang=zh-CN",
            ])
            .launch_timeout(Duration::from_secs(60))
            .request_timeout(Duration::from_secs(30))
            .build()?;
        let (launched, answer) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("chromium-devtools".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = launched.send(Err(e.to_string()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    match Browser::launch(config).await {
                        Ok((browser, mut handler)) => {
                            if launched.send(Ok(browser)).is_err() {
                                return;
                            }
                            // Until the connection ends (the browser was dropped and killed).
                            while let Some(event) = handler.next().await {
                                if event.is_err() {
                                    break;
                                }
                            }
                        }
                        Err(e) => {
                            let _ = launched.send(Err(e.to_string()));
                        }
                    }
                });
            })
            .map_err(|e| e.to_string())?;
        let browser = answer
            .await
            .map_err(|_| "the DevTools thread ended".to_owned())??;
        Ok(Chromium {
            browser,
            _profile: profile,
        })
    }

    /// A new private window (its own cookies and storage) showing `about:blank`, whose
    /// relative paths resolve against `base` (`http://127.0.0.1:port`).
    pub async fn window(self: &Arc<Self>, base: &str) -> Tab {
        let context: BrowserContextId = self
            .browser
            .create_browser_context(CreateBrowserContextParams::default())
            .await
            .expect("a browser context");
        let params = CreateTargetParams::builder()
            .url("about:blank")
            .browser_context_id(context.clone())
            .build()
            .expect("target parameters");
        let page = self.browser.new_page(params).await.expect("a page");
        // Headless Chromium asks in English whatever `--lang` says: ask in Chinese, as the
        // portal's users do.
        let agent = self.browser.user_agent().await.expect("the user agent");
        let mut asking = SetUserAgentOverrideParams::new(agent);
        asking.accept_language = Some(ACCEPT_LANGUAGE.to_owned());
        page.set_user_agent(asking)
            .await
            .expect("the language asked for");
        Tab::new(self.clone(), context, page, base)
    }

    /// Closes a window's context (its pages with it).
    pub(super) async fn dispose(&self, context: BrowserContextId) {
        // Best effort: a test that ends anyway leaves nothing behind that matters.
        let _ = self.browser.dispose_browser_context(context).await;
    }
}
