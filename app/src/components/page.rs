//! The frame of a page: document title, breadcrumbs, heading and summary.

use std::sync::{Arc, Mutex};

use leptos::prelude::*;
use leptos_meta::Title;

use crate::pages::{breadcrumbs, fill, PageSpec};

/// Sets the document title to `text` followed by the product name.
///
/// leptos_meta 0.8 writes `<title>` into the server HTML without escaping
/// it, and titles carry path parameters (a job id from the URL), so the
/// server render escapes here. In the browser leptos_meta assigns
/// `document.title`, which never parses HTML: the raw text is right there.
///
/// leptos_meta can read the title after the page that set it was disposed:
/// on the server it reads its stack of titles when it writes the head, and
/// in the browser while a navigation takes the page down. Reading a
/// disposed signal panics (an empty response on the server, seen in CI), so
/// the title is read while it can be and the last one read stands.
#[component]
pub fn DocumentTitle(#[prop(into)] text: Signal<String>) -> impl IntoView {
    let full = |text: String| {
        let full = format!("{text} · Switchyard");
        if cfg!(feature = "ssr") {
            escape_html(&full)
        } else {
            full
        }
    };
    let last = Arc::new(Mutex::new(full(text.get_untracked())));
    let render = move || {
        let mut last = last.lock().expect("title");
        if let Some(text) = text.try_get() {
            *last = full(text);
        }
        last.clone()
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

#[cfg(all(test, feature = "ssr"))]
mod tests {
    use leptos::prelude::*;
    use leptos_meta::ServerMetaContext;

    use super::DocumentTitle;

    /// The server writes the head after the page that set the title may
    /// have been disposed: its title is still the one written.
    #[tokio::test]
    async fn the_server_head_has_the_title_of_a_page_already_disposed() {
        let _ = any_spawner::Executor::init_tokio();
        let root = Owner::new();
        root.set();
        let (meta, output) = ServerMetaContext::new();
        provide_context(meta);
        leptos_meta::provide_meta_context();
        let page = root.child();
        page.with(|| {
            let title = Memo::new(|_| "Job <7>".to_string());
            let _view = view! { <DocumentTitle text=title/> };
        });
        drop(page);
        let html = "<html><head></head><body></body></html>".to_string();
        let head = output
            .inject_meta_context(futures::stream::iter([html]))
            .await;
        let html: Vec<String> = futures::StreamExt::collect(head).await;
        assert!(
            html.concat()
                .contains("<title>Job &lt;7&gt; · Switchyard</title>"),
            "{html:?}"
        );
    }
}
