//! The frame of a page: document title, breadcrumbs, heading and summary.

use leptos::prelude::*;
use leptos_meta::Title;

use crate::pages::{breadcrumbs, fill, PageSpec};

/// Sets the document title to `text` followed by the product name.
///
/// leptos_meta 0.8 writes `<title>` into the server HTML without escaping
/// it, and titles carry path parameters (a job id from the URL), so the
/// server render escapes here. In the browser leptos_meta assigns
/// `document.title`, which never parses HTML: the raw text is right there.
#[component]
pub fn DocumentTitle(#[prop(into)] text: Signal<String>) -> impl IntoView {
    let render = move || {
        let full = format!("{} · Switchyard", text.get());
        if cfg!(feature = "ssr") {
            escape_html(&full)
        } else {
            full
        }
    };
    view! { <Title text=render/> }
}

/// `text` with the characters that are markup in HTML text replaced by
/// their entities.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// Path parameters any page may carry, in the order they are shown.
pub const PARAM_NAMES: [&str; 3] = ["jobId", "runId", "entryId"];

/// Title, breadcrumbs, heading and summary of `spec`, followed by the body.
#[component]
pub fn PageFrame(
    spec: &'static PageSpec,
    /// The path parameters of the current route, by name.
    params: Signal<Vec<(&'static str, String)>>,
    children: Children,
) -> impl IntoView {
    let title = Memo::new(move |_| fill(spec.title, &params.read()));
    let trail = move || {
        let crumbs = breadcrumbs(spec.id, &params.read());
        let last = crumbs.len().saturating_sub(1);
        crumbs
            .into_iter()
            .enumerate()
            .map(|(i, crumb)| {
                if i == last {
                    view! { <li aria-current="page">{crumb.title}</li> }.into_any()
                } else {
                    view! { <li><a href=crumb.href>{crumb.title}</a></li> }.into_any()
                }
            })
            .collect_view()
    };

    view! {
        <DocumentTitle text=title/>
        <article class="page" data-page=spec.id>
            <nav class="breadcrumbs" aria-label="Breadcrumbs">
                <ol>{trail}</ol>
            </nav>
            <h1>{move || title.get()}</h1>
            <p class="page-summary">{spec.summary}</p>
            {children()}
        </article>
    }
}
