//! Signing in to the web UI: a token typed once at `/login` becomes a
//! session cookie (HttpOnly, SameSite=Strict) naming a session kept in
//! memory. Every request re-checks the session's token, so revoking it
//! signs its sessions out at once. Each session has a CSRF secret that
//! every state-changing form and request must carry, and such a request
//! coming from another origin is refused outright.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header, request::Parts};
use axum::response::{IntoResponse, Redirect, Response};
use dashmap::DashMap;
use maud::html;
use serde::Deserialize;

use super::page::{Page, error_page};
use crate::auth::Caller;
use crate::problem::Problem;
use crate::state::AppState;

/// The cookie that names a session.
const COOKIE: &str = "weir_session";
/// How long a session lasts after signing in.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept; past it the oldest go first.
const MAX_SESSIONS: usize = 10_000;

/// The signed-in sessions, by id.
#[derive(Default)]
pub struct Sessions {
    sessions: DashMap<String, Session>,
}

struct Session {
    token: String,
    csrf: String,
    expires: Instant,
}

impl Sessions {
    /// Starts a session for `token` (already checked); returns its id.
    fn open(&self, token: &str) -> String {
        let now = Instant::now();
        self.sessions.retain(|_, session| session.expires > now);
        if self.sessions.len() >= MAX_SESSIONS {
            let oldest = self.sessions.iter().min_by_key(|session| session.expires).map(|s| s.key().clone());
            if let Some(oldest) = oldest {
                self.sessions.remove(&oldest);
            }
        }
        let id = random_hex();
        let session = Session { token: token.to_owned(), csrf: random_hex(), expires: now + LIFETIME };
        self.sessions.insert(id.clone(), session);
        id
    }

    /// The token and CSRF secret of live session `id`.
    fn find(&self, id: &str) -> Option<(String, String)> {
        let session = self.sessions.get(id)?;
        (session.expires > Instant::now()).then(|| (session.token.clone(), session.csrf.clone()))
    }

    fn close(&self, id: &str) {
        self.sessions.remove(id);
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// A signed-in person: the token's caller and the session's CSRF secret.
/// A request without a live session is sent to `/login` (303), and comes
/// back to where it was going once signed in.
pub struct Viewer {
    /// Who the session's token acts for.
    pub caller: Caller,
    /// The secret that state-changing requests of this session carry.
    pub csrf: String,
    session: String,
}

impl Viewer {
    /// Refuses a state-changing request whose CSRF secret (form field
    /// `csrf`, or header `X-CSRF-Token`) is not this session's.
    pub fn check_csrf(&self, given: Option<&str>) -> Result<(), Problem> {
        match given {
            Some(given) if constant_time_eq(given.as_bytes(), self.csrf.as_bytes()) => Ok(()),
            _ => Err(Problem::new(
                StatusCode::FORBIDDEN,
                "the form is stale or was not sent by this site: reload the page and try again",
            )),
        }
    }

    /// The CSRF secret of a request's `X-CSRF-Token` header, checked.
    pub fn check_csrf_header(&self, headers: &HeaderMap) -> Result<(), Problem> {
        self.check_csrf(headers.get("x-csrf-token").and_then(|value| value.to_str().ok()))
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

impl FromRequestParts<Arc<AppState>> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Arc<AppState>) -> Result<Viewer, Response> {
        let to_login = || {
            let next = parts.uri.path_and_query().map_or("/", |path| path.as_str());
            let target = format!("/login?next={}", url_encode(next));
            Redirect::to(&target).into_response()
        };
        let Some(session) = session_cookie(&parts.headers) else { return Err(to_login()) };
        let Some((token, csrf)) = state.ui_sessions.find(session) else { return Err(to_login()) };
        let caller = match state.tokens.authenticate(&token) {
            Ok(Some(caller)) => caller,
            Ok(None) => {
                state.ui_sessions.close(session);
                return Err(to_login());
            }
            Err(err) => return Err(error_page(Problem::from(err))),
        };
        state.limiter.admit(&caller.token).map_err(error_page)?;
        Ok(Viewer { caller, csrf, session: session.to_owned() })
    }
}

/// Percent-encodes `text` as one path segment or query value (a `/` too:
/// a sub-pipeline's step `prep/split` is one segment).
pub fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// Where to go after signing in: a path of this site, never another site
/// (`//host`, `/\host` and absolute URLs are refused for `/`).
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next) if next.starts_with('/') && !next.starts_with("//") && !next.starts_with("/\\") => next,
        _ => "/",
    }
}

/// `/login`'s query.
#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
}

/// The sign-in form.
pub async fn login_form(axum::extract::Query(query): axum::extract::Query<LoginQuery>) -> Response {
    login_page(StatusCode::OK, safe_next(query.next.as_deref()), None)
}

fn login_page(status: StatusCode, next: &str, error: Option<&str>) -> Response {
    let body = html! {
        h1 { "Sign in to weir" }
        form.login method="post" action="/login" {
            @if let Some(error) = error { p.error role="alert" { (error) } }
            label for="token" { "Token" }
            input #token type="password" name="token" autocomplete="current-password" required autofocus;
            input type="hidden" name="next" value=(next);
            button type="submit" { "Sign in" }
            p.hint { "A token from " code { "weir token create --tenant NAME" } "." }
        }
    };
    (status, Page::bare("Sign in").render(body)).into_response()
}

/// The sign-in form's fields.
#[derive(Deserialize)]
pub struct LoginForm {
    token: String,
    next: Option<String>,
}

/// Checks the token and starts a session.
pub async fn login(State(state): State<Arc<AppState>>, axum::Form(form): axum::Form<LoginForm>) -> Response {
    let next = safe_next(form.next.as_deref()).to_owned();
    let token = form.token.trim();
    match state.tokens.authenticate(token) {
        Ok(Some(caller)) => {
            if let Err(problem) = state.limiter.admit(&caller.token) {
                return error_page(problem);
            }
            let session = state.ui_sessions.open(token);
            let cookie =
                format!("{COOKIE}={session}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}", LIFETIME.as_secs());
            let mut response = Redirect::to(&next).into_response();
            response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("ASCII"));
            response
        }
        Ok(None) => login_page(StatusCode::UNAUTHORIZED, &next, Some("That token is unknown or revoked.")),
        Err(err) => error_page(Problem::from(err)),
    }
}

/// The sign-out form's fields.
#[derive(Deserialize)]
pub struct CsrfForm {
    /// The session's CSRF secret.
    pub csrf: Option<String>,
}

/// Ends the session and clears its cookie.
pub async fn logout(
    viewer: Viewer,
    State(state): State<Arc<AppState>>,
    axum::Form(form): axum::Form<CsrfForm>,
) -> Response {
    if let Err(problem) = viewer.check_csrf(form.csrf.as_deref()) {
        return error_page(problem);
    }
    state.ui_sessions.close(&viewer.session);
    let mut response = Redirect::to("/login").into_response();
    let cookie = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    response.headers_mut().insert(header::SET_COOKIE, HeaderValue::from_str(&cookie).expect("ASCII"));
    response
}

/// Refuses a state-changing request sent from another origin (its
/// `Origin` or, lacking one, `Referer` names another host): the browser's
/// own word, on top of the CSRF secret and the SameSite cookie.
pub fn same_origin(method: &Method, headers: &HeaderMap, path: &str) -> Result<(), Problem> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    let host = headers.get(header::HOST).and_then(|value| value.to_str().ok());
    let source =
        headers.get(header::ORIGIN).or_else(|| headers.get(header::REFERER)).and_then(|value| value.to_str().ok());
    let Some(source) = source else { return Ok(()) };
    let source_host = source.split_once("://").map(|(_, rest)| rest.split('/').next().unwrap_or(""));
    match (source_host, host) {
        (Some(source), Some(host)) if source == host => Ok(()),
        _ => Err(Problem::new(
            StatusCode::FORBIDDEN,
            format!("{} {} came from another site ({source}) and was refused", method, path),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_paths_of_this_site_are_followed_after_signing_in() {
        assert_eq!(safe_next(Some("/runs/x?y=1")), "/runs/x?y=1");
        for outside in ["//evil.example/", "https://evil.example/", "/\\evil.example", "runs"] {
            assert_eq!(safe_next(Some(outside)), "/", "{outside}");
        }
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn a_session_is_found_until_it_is_closed() {
        let sessions = Sessions::default();
        let id = sessions.open("weir_a_b");
        let (token, csrf) = sessions.find(&id).unwrap();
        assert_eq!(token, "weir_a_b");
        assert_eq!(csrf.len(), 64);
        assert!(sessions.find("other").is_none());
        sessions.close(&id);
        assert!(sessions.find(&id).is_none());
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, HeaderValue::from_static("a=1; weir_session=abc; b=2"));
        assert_eq!(session_cookie(&headers), Some("abc"));
    }

    #[test]
    fn a_post_from_another_origin_is_refused() {
        let uri = "/runs/x/cancel";
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8640"));
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8640"));
        assert!(same_origin(&Method::POST, &headers, uri).is_ok());
        headers.insert(header::ORIGIN, HeaderValue::from_static("http://evil.example"));
        assert_eq!(same_origin(&Method::POST, &headers, uri).unwrap_err().status, 403);
        assert!(same_origin(&Method::GET, &headers, uri).is_ok());
    }
}
