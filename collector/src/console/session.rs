//! Who is looking. A console request carries the same credentials as the API's HTTP side —
//! an `Authorization: Bearer` header, or the TLS client certificate a browser presents —
//! or, since a browser cannot add a header to a link it follows, the token in a cookie the
//! login form sets (HttpOnly, SameSite=Strict, Secure behind TLS). Every request is checked
//! again by [`Auth`], so a token removed from the token file stops working at once.

use axum::{
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};

use crate::{
    auth::{Auth, Caller, Credentials, Denied, Role},
    listener::Peer,
};

/// The cookie holding a viewer's token.
pub const COOKIE: &str = "nodemedic_token";
/// How long the browser keeps it.
const COOKIE_MAX_AGE_SECONDS: u32 = 12 * 3600;

/// The `Authorization` value a request presents: its header, else its cookie's token.
pub fn authorization(headers: &HeaderMap) -> Option<String> {
    if let Some(h) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        return Some(h.to_owned());
    }
    cookie(headers, COOKIE).map(|token| format!("Bearer {token}"))
}

/// The value of cookie `name` in a request's `Cookie` headers.
fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Checks a request for the role `need`.
pub fn authorize(
    auth: &Auth,
    call: &'static str,
    need: Role,
    headers: &HeaderMap,
    peer: &Peer,
) -> Result<Caller, Denied> {
    let authorization = authorization(headers);
    auth.authorize(
        call,
        need,
        Credentials {
            authorization: authorization.as_deref(),
            peer: Some(peer),
        },
    )
}

/// A token fit for a cookie: what [`crate::auth::new_token`] makes (hex digits), or at
/// least nothing that would end or split the cookie.
pub fn cookie_safe(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 512
        && token
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b';' | b',' | b'"' | b'\\'))
}

/// The `Set-Cookie` value that keeps `token` (or, with `None`, forgets it).
pub fn set_cookie(token: Option<&str>, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    let value = match token {
        Some(t) => format!(
            "{COOKIE}={t}; Path=/; HttpOnly; SameSite=Strict; Max-Age={COOKIE_MAX_AGE_SECONDS}{secure}"
        ),
        None => format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0{secure}"),
    };
    HeaderValue::from_str(&value).expect("a cookie-safe token makes a valid header")
}

/// Where to go after logging in: a console path only (never another site).
pub fn next_path(next: &str) -> &str {
    let console = next.starts_with("/console") && !next.starts_with("//") && !next.contains('\\');
    if console { next } else { "/console/" }
}

/// The status of a refusal.
pub fn status(denied: &Denied) -> axum::http::StatusCode {
    use axum::http::StatusCode;
    match denied {
        Denied::Unauthenticated(_) => StatusCode::UNAUTHORIZED,
        Denied::Forbidden { .. } => StatusCode::FORBIDDEN,
        Denied::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
    }
}

/// A refusal as plain text (for live regions and the event stream, which a browser does
/// not show as a page).
pub fn refused_text(denied: &Denied) -> Response {
    (status(denied), format!("{denied}\n")).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_header_wins_over_the_cookie_and_the_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        assert_eq!(authorization(&h), None);
        h.append(
            header::COOKIE,
            "theme=dark; nodemedic_token=abc123".parse().unwrap(),
        );
        assert_eq!(authorization(&h).as_deref(), Some("Bearer abc123"));
        h.insert(header::AUTHORIZATION, "Bearer fromheader".parse().unwrap());
        assert_eq!(authorization(&h).as_deref(), Some("Bearer fromheader"));
        let mut empty = HeaderMap::new();
        empty.append(header::COOKIE, "nodemedic_token=".parse().unwrap());
        assert_eq!(authorization(&empty), None);
    }

    #[test]
    fn only_console_paths_are_followed_after_login_and_odd_tokens_are_refused() {
        assert_eq!(next_path("/console/nodes/a"), "/console/nodes/a");
        for bad in [
            "https://evil.example/",
            "//evil.example/console",
            "/api/v1/bundle",
            "/console\\..\\x",
        ] {
            assert_eq!(next_path(bad), "/console/", "{bad}");
        }
        assert!(cookie_safe("0123abcd"));
        for bad in ["", "a;b", "a b", "a\nb", "a,b"] {
            assert!(!cookie_safe(bad), "{bad:?}");
        }
        let c = set_cookie(Some("abc"), true);
        let c = c.to_str().unwrap();
        assert!(
            c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.ends_with("Secure"),
            "{c}"
        );
        assert!(
            set_cookie(None, false)
                .to_str()
                .unwrap()
                .contains("Max-Age=0")
        );
    }
}
