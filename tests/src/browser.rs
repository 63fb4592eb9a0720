//! `Browser`: Debian's headless Chromium driven over W3C WebDriver (a chromedriver of the test's
//! own on a loopback port, fantoccini as the client) for the console's browser suite. Pages are
//! used the way an operator uses them: links followed, fields typed into, buttons clicked.
//! [`Browser::screenshot`] writes `docs/console/<name>.png`, the pictures the README links.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use tokio::process::{Child, Command};

use crate::{TestApp, require_tool};

/// How long a page may take to show an element before the test fails.
const PATIENCE: Duration = Duration::from_secs(15);

/// One headless Chromium session on one test server's console.
pub struct Browser {
    client: Client,
    base: String,
    _driver: Child,
}

/// Where screenshots go: `docs/console/` in the repository.
pub fn screenshot_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/console")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

impl Browser {
    /// Starts chromedriver and a headless Chromium for `app` at a laptop-sized window. `None`,
    /// with the reason printed, when Chromium or chromedriver is missing (a failure under
    /// CI=true).
    pub async fn start(app: &TestApp) -> Option<Browser> {
        if !require_tool("chromium", &["--version"])
            || !require_tool("chromedriver", &["--version"])
        {
            return None;
        }
        let port = free_port();
        let driver = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .expect("chromedriver starts");
        // The test server's certificate chains to the test's own root, which Chromium does not
        // know: accept it for this session only (the TLS itself is real).
        let capabilities = json!({
            "acceptInsecureCerts": true,
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless=new",
                    // Chromium's sandbox needs user namespaces, which CI containers running
                    // as root do not grant.
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--hide-scrollbars",
                    "--force-device-scale-factor=1",
                    "--window-size=1280,900",
                ],
            },
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!("a JSON object literal")
        };
        let url = format!("http://127.0.0.1:{port}");
        let started = Instant::now();
        let client = loop {
            match ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities.clone())
                .connect(&url)
                .await
            {
                Ok(client) => break client,
                // chromedriver takes a moment to listen.
                Err(error) if started.elapsed() < PATIENCE => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(error) => panic!("no WebDriver session at {url}: {error}"),
            }
        };
        Some(Browser {
            client,
            base: app.server_url(),
            _driver: driver,
        })
    }

    /// Resizes the window (e.g. to a tablet's 820×1180 before a screenshot).
    pub async fn resize(&self, width: u32, height: u32) {
        self.client
            .set_window_size(width, height)
            .await
            .expect("resize");
    }

    /// Opens a console path (`/console/...`).
    pub async fn open(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
    }

    /// The current path with its query (`/console/devices/X`).
    pub async fn path(&self) -> String {
        let url = self.client.current_url().await.expect("url");
        match url.query() {
            Some(query) => format!("{}?{query}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// The HTTP status of the page on display (Navigation Timing's `responseStatus`).
    pub async fn status(&self) -> u16 {
        let status = self
            .client
            .execute(
                "return performance.getEntriesByType('navigation')[0].responseStatus;",
                vec![],
            )
            .await
            .expect("navigation timing");
        u16::try_from(status.as_u64().expect("a status number")).expect("a status")
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.client
            .find(Locator::Css("body"))
            .await
            .expect("body")
            .text()
            .await
            .expect("text")
    }

    /// The visible text of the first element matching `css` (waiting for it to appear).
    pub async fn text_of(&self, css: &str) -> String {
        self.wait_for(css).await.text().await.expect("text")
    }

    /// The attribute `name` of the first element matching `css` (waiting for it to appear).
    pub async fn attr_of(&self, css: &str, name: &str) -> String {
        self.wait_for(css)
            .await
            .attr(name)
            .await
            .expect("attribute")
            .unwrap_or_else(|| panic!("`{css}` has no {name}"))
    }

    /// Whether any element matches `css` now.
    pub async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("find")
            .is_empty()
    }

    async fn wait_for(&self, css: &str) -> fantoccini::elements::Element {
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no `{css}` on {}: {e}", self.base))
    }

    /// Types `value` into the field matching `css` (after clearing it).
    pub async fn fill(&self, css: &str, value: &str) {
        let field = self.wait_for(css).await;
        field.clear().await.expect("clear");
        field.send_keys(value).await.expect("type");
    }

    /// Chooses the option with `value` in the `<select>` matching `css`.
    pub async fn choose(&self, css: &str, value: &str) {
        self.wait_for(css)
            .await
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("option {value} of {css}: {e}"));
    }

    /// Clicks the element matching `css` and waits for the page it leads to.
    pub async fn click(&self, css: &str) {
        let target = self.wait_for(css).await;
        self.mark().await;
        target.click().await.expect("click");
        self.settle().await;
    }

    /// Follows the link whose text is exactly `text`.
    pub async fn click_link(&self, text: &str) {
        self.mark().await;
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::LinkText(text))
            .await
            .unwrap_or_else(|e| panic!("no link `{text}`: {e}"))
            .click()
            .await
            .expect("click");
        self.settle().await;
    }

    /// Clicks the submit button whose text contains `label`.
    pub async fn press(&self, label: &str) {
        let xpath = format!("//button[contains(normalize-space(.), '{label}')]");
        self.mark().await;
        self.client
            .wait()
            .at_most(PATIENCE)
            .for_element(Locator::XPath(&xpath))
            .await
            .unwrap_or_else(|e| panic!("no button `{label}`: {e}"))
            .click()
            .await
            .expect("click");
        self.settle().await;
    }

    /// Marks the current document, so that [`Browser::settle`] can tell when it was replaced.
    async fn mark(&self) {
        self.client
            .execute("window.__left_behind = true;", vec![])
            .await
            .expect("mark the page");
    }

    /// Waits until the marked document has been replaced by a fully loaded one.
    async fn settle(&self) {
        let started = Instant::now();
        while started.elapsed() < PATIENCE {
            let state = self
                .client
                .execute(
                    "return window.__left_behind === true ? 'old' : document.readyState;",
                    vec![],
                )
                .await;
            if matches!(state, Ok(Value::String(s)) if s == "complete") {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the next page did not load");
    }

    /// Posts a form the page never offered, as a forger would: `fields` as hidden inputs,
    /// submitted to `action` from the current page (so the session cookie goes along).
    pub async fn post_forged(&self, action: &str, fields: &[(&str, &str)]) {
        let fields: Vec<Value> = fields.iter().map(|(k, v)| json!([k, v])).collect();
        self.mark().await;
        self.client
            .execute(
                "const [action, fields] = arguments;
                 const form = document.createElement('form');
                 form.method = 'post';
                 form.action = action;
                 for (const [name, value] of fields) {
                     const input = document.createElement('input');
                     input.type = 'hidden';
                     input.name = name;
                     input.value = value;
                     form.appendChild(input);
                 }
                 document.body.appendChild(form);
                 form.submit();",
                vec![json!(action), Value::Array(fields)],
            )
            .await
            .expect("forged form submitted");
        self.settle().await;
    }

    /// Signs in with an admin API key through the sign-in form.
    pub async fn sign_in(&self, key: &str) {
        self.open("/console/signin").await;
        self.fill("#api_key", key).await;
        self.press("Sign in").await;
        assert_eq!(
            self.path().await,
            "/console/",
            "signed in: {}",
            self.text().await
        );
    }

    /// Writes a PNG of the window to `docs/console/<name>.png`.
    pub async fn screenshot(&self, name: &str) {
        let png = self.client.screenshot().await.expect("screenshot");
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).expect("docs/console");
        std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
    }

    /// Ends the WebDriver session (chromedriver stops when the `Browser` is dropped).
    pub async fn close(self) {
        self.client.close().await.expect("close session");
    }
}
