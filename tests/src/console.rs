//! `ConsoleClient`: the operator console over real HTTPS as a browser without script would use
//! it (no redirects followed, the console's two cookies kept by hand), for the tests that check
//! headers, cookies, CSRF and roles exactly.

use std::sync::Arc;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};

use crate::TestApp;

/// One answer of the console.
#[derive(Debug)]
pub struct Page {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Page {
    /// Where a redirect points.
    pub fn location(&self) -> Option<String> {
        self.headers
            .get(LOCATION)
            .map(|v| v.to_str().expect("ascii").to_owned())
    }

    /// Every `Set-Cookie` header.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().expect("ascii").to_owned())
            .collect()
    }

    /// The value of the first hidden `csrf` field.
    pub fn csrf(&self) -> Option<String> {
        let at = self.body.find("name=\"csrf\" value=\"")? + "name=\"csrf\" value=\"".len();
        let rest = &self.body[at..];
        Some(rest[..rest.find('"')?].to_owned())
    }
}

/// A console user agent.
pub struct ConsoleClient {
    base: String,
    client: reqwest::Client,
    /// `(name, value)` of the cookies the console set.
    pub cookies: Vec<(String, String)>,
}

impl ConsoleClient {
    /// A client trusting `app`'s root, following no redirects.
    pub fn new(app: &TestApp) -> ConsoleClient {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(app.root_der()).expect("root");
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
        ConsoleClient {
            base: app.server_url(),
            client: reqwest::Client::builder()
                .tls_backend_preconfigured(tls)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("client"),
            cookies: Vec::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep(&mut self, page: &Page) {
        for cookie in page.set_cookies() {
            let pair = cookie.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            self.cookies.retain(|(k, _)| k != name);
            if !value.is_empty() {
                self.cookies.push((name.to_owned(), value.to_owned()));
            }
        }
    }

    async fn answer(&mut self, request: reqwest::RequestBuilder) -> Page {
        let response = request
            .header("cookie", self.cookie_header())
            .send()
            .await
            .expect("console request");
        let page = Page {
            status: response.status(),
            headers: response.headers().clone(),
            body: response.text().await.expect("body"),
        };
        self.keep(&page);
        page
    }

    /// `GET path`.
    pub async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(format!("{}{path}", self.base));
        self.answer(request).await
    }

    /// `POST path` with a form.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let body = serde_urlencoded::to_string(fields).expect("form");
        let request = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body);
        self.answer(request).await
    }

    /// Signs in with an API key through the sign-in form; returns the answer to the POST.
    pub async fn sign_in(&mut self, key: &str) -> Page {
        let form = self.get("/console/signin").await;
        let csrf = form.csrf().expect("sign-in token");
        self.post("/console/signin", &[("csrf", &csrf), ("api_key", key)])
            .await
    }

    /// The session's CSRF token, read from the overview page.
    pub async fn csrf(&mut self) -> String {
        self.get("/console/devices")
            .await
            .csrf()
            .expect("csrf field")
    }

    /// The session cookie's value.
    pub fn session(&self) -> Option<String> {
        self.cookies
            .iter()
            .find(|(k, _)| k == "__Host-iomt-console")
            .map(|(_, v)| v.clone())
    }
}
