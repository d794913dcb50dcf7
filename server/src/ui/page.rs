//! The frame every page shares (head, navigation, sign-out), the error
//! page, and small formatting helpers. Pages are `maud` templates, which
//! escape every value they interpolate: text from a step (a log line, a
//! metric's name) can never become markup.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use maud::{DOCTYPE, Markup, PreEscaped, html};

use crate::problem::Problem;

/// Where the stylesheet and script are served; the version makes a
/// browser fetch them again after an upgrade.
const ASSET_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A page's frame: its title and, for a signed-in viewer, the navigation.
pub struct Page<'a> {
    title: &'a str,
    nav: Option<Nav<'a>>,
}

struct Nav<'a> {
    tenant: &'a str,
    csrf: &'a str,
    current: &'a str,
}

impl<'a> Page<'a> {
    /// A page without navigation (sign-in, errors before signing in).
    pub fn bare(title: &'a str) -> Self {
        Page { title, nav: None }
    }

    /// A page of `tenant`'s, with `current` (`runs`, `pipelines`, …)
    /// marked in the navigation.
    pub fn new(title: &'a str, viewer: &'a super::Viewer, current: &'a str) -> Self {
        Page { title, nav: Some(Nav { tenant: &viewer.caller.tenant, csrf: &viewer.csrf, current }) }
    }

    /// The whole document around `body`.
    pub fn render(&self, body: Markup) -> Html<String> {
        let link = |href: &str, name: &str, label: &str, current: &str| {
            html! { a href=(href) aria-current=[(name == current).then_some("page")] { (label) } }
        };
        let document = html! {
            (DOCTYPE)
            html lang="en" {
                head {
                    meta charset="utf-8";
                    meta name="viewport" content="width=device-width, initial-scale=1";
                    title { (self.title) " · weir" }
                    link rel="icon" href="data:,";
                    link rel="stylesheet" href={ "/assets/ui.css?v=" (ASSET_VERSION) };
                    script src={ "/assets/ui.js?v=" (ASSET_VERSION) } defer {}
                }
                body {
                    header.top {
                        a.brand href="/" { "weir" }
                        @if let Some(nav) = &self.nav {
                            nav aria-label="Main" {
                                (link("/", "runs", "Runs", nav.current))
                                (link("/pipelines", "pipelines", "Pipelines", nav.current))
                                (link("/metrics", "metrics", "Metrics", nav.current))
                                (link("/compare", "compare", "Compare", nav.current))
                                (link("/lineage", "lineage", "Lineage", nav.current))
                            }
                            form.signout method="post" action="/logout" {
                                span.tenant { "tenant " strong { (nav.tenant) } }
                                input type="hidden" name="csrf" value=(nav.csrf);
                                button type="submit" { "Sign out" }
                            }
                        }
                    }
                    main id="main" { (body) }
                }
            }
        };
        Html(document.into_string())
    }
}

/// A problem as a page: its status, title and detail.
pub fn error_page(problem: Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = html! {
        h1 { (problem.status) " " (problem.title) }
        p.error role="alert" { (problem.detail) }
        p { a href="/" { "Back to the runs" } }
    };
    let mut response = (status, Page::bare(&problem.title).render(body)).into_response();
    if let Some(seconds) = problem.retry_after {
        response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

/// A page handler's result: a page, or a problem shown as one.
pub type PageResult = Result<Response, UiError>;

/// A problem met while making a page.
pub struct UiError(pub Problem);

impl From<Problem> for UiError {
    fn from(problem: Problem) -> Self {
        UiError(problem)
    }
}

impl From<crate::ServerError> for UiError {
    fn from(err: crate::ServerError) -> Self {
        UiError(Problem::from(err))
    }
}

impl From<weir::Error> for UiError {
    fn from(err: weir::Error) -> Self {
        UiError(Problem::from(err))
    }
}

impl IntoResponse for UiError {
    fn into_response(self) -> Response {
        error_page(self.0)
    }
}

/// A status as a badge: the word itself, coloured by a class of its name.
pub fn status_badge(status: &str) -> Markup {
    html! { span class={ "badge s-" (status) } { (status) } }
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS` UTC.
pub fn time(seconds: f64) -> String {
    chrono::DateTime::from_timestamp_millis((seconds * 1000.0) as i64)
        .map_or_else(|| "?".to_owned(), |time| time.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// A duration in milliseconds, in the unit that reads best.
pub fn duration(millis: f64) -> String {
    if millis < 1000.0 {
        format!("{millis:.0} ms")
    } else if millis < 60_000.0 {
        format!("{:.1} s", millis / 1000.0)
    } else {
        let seconds = (millis / 1000.0).round() as u64;
        format!("{}m {:02}s", seconds / 60, seconds % 60)
    }
}

/// A digest shortened for a table (the full one is the link's target and title).
pub fn short_digest(digest: &str) -> String {
    digest.chars().take(19).collect()
}

/// SVG made by [`crate::render`], whose every text is escaped there.
pub fn svg(markup: String) -> PreEscaped<String> {
    PreEscaped(markup)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_their_unit() {
        assert_eq!(duration(12.4), "12 ms");
        assert_eq!(duration(1500.0), "1.5 s");
        assert_eq!(duration(125_000.0), "2m 05s");
    }

    #[test]
    fn page_text_is_escaped() {
        let page = Page::bare("<script>").render(html! { p { ("<script>alert(1)</script>") } }).0;
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    }
}
