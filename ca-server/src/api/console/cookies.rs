//! The console's cookies: the session id (`__Host-iomt-console`) and the sign-in form's
//! double-submit token (`__Host-iomt-signin`). Both are `Secure; HttpOnly; SameSite=Strict`
//! with `Path=/` and no `Domain` (what the `__Host-` prefix requires): never sent over plain
//! HTTP, never readable by script, never sent on a request another site starts.

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// The session cookie.
pub const SESSION: &str = "__Host-iomt-console";
/// The sign-in form's token cookie.
pub const SIGNIN: &str = "__Host-iomt-signin";
/// How long a sign-in form stays usable.
pub const SIGNIN_MAX_AGE_SECS: u64 = 600;

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn read(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, _)| *key == name)
        .map(|(_, value)| value.trim().to_owned())
        .filter(|value| !value.is_empty())
}

/// The session id the browser sent.
pub fn session_id(headers: &HeaderMap) -> Option<String> {
    read(headers, SESSION)
}

/// `Set-Cookie` for `name=value` with the console's attributes; `max_age` 0 deletes it.
pub fn set(name: &str, value: &str, max_age: Option<u64>) -> HeaderValue {
    let mut cookie = format!("{name}={value}; Path=/; Secure; HttpOnly; SameSite=Strict");
    if let Some(secs) = max_age {
        cookie.push_str(&format!("; Max-Age={secs}"));
    }
    // Values are base64url (random secrets) or empty: always a valid header value.
    HeaderValue::from_str(&cookie).unwrap_or_else(|_| HeaderValue::from_static(""))
}

/// A redirect to `location` that also deletes the session cookie (signed out or expired).
pub fn ended(location: &str) -> Response {
    let mut response = super::page::see_other(location);
    response
        .headers_mut()
        .append(header::SET_COOKIE, set(SESSION, "", Some(0)));
    response
}

/// A 303 to `location` that sets the session cookie.
pub fn started(location: &str, id: &str) -> Response {
    let mut response = (
        StatusCode::SEE_OTHER,
        [(header::LOCATION, location.to_owned())],
    )
        .into_response();
    let headers = response.headers_mut();
    headers.append(header::SET_COOKIE, set(SESSION, id, None));
    headers.append(header::SET_COOKIE, set(SIGNIN, "", Some(0)));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_found_among_others_and_empty_ones_ignored() {
        let mut headers = HeaderMap::new();
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("a=1; __Host-iomt-console=abc"),
        );
        headers.append(
            header::COOKIE,
            HeaderValue::from_static("__Host-iomt-signin="),
        );
        assert_eq!(session_id(&headers).as_deref(), Some("abc"));
        assert_eq!(read(&headers, SIGNIN), None);
        assert_eq!(read(&headers, "missing"), None);
    }

    #[test]
    fn set_cookie_has_every_protective_attribute() {
        let value = set(SESSION, "xyz", None);
        let text = value.to_str().unwrap();
        for attribute in ["Path=/", "Secure", "HttpOnly", "SameSite=Strict"] {
            assert!(text.contains(attribute), "{text}");
        }
        assert!(!text.contains("Domain"));
        assert!(
            set(SESSION, "", Some(0))
                .to_str()
                .unwrap()
                .ends_with("Max-Age=0")
        );
    }
}
