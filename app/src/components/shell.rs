//! The Ops shell: the header, the side navigation and the page area.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::components::live::{start_clock, LiveBoard, LiveIndicator, SilenceBanner};
use crate::pages::{NavGroup, PAGES};

/// The frame around every page.
#[component]
pub fn Shell(children: Children) -> impl IntoView {
    let (nav_open, set_nav_open) = signal(true);
    // The page's live feed reports here; the header shows it.
    let board = LiveBoard::new();
    provide_context(board);
    start_clock(board);

    view! {
        <div class="shell" class:nav-collapsed=move || !nav_open.get()>
            <header class="topbar">
                <button
                    class="nav-toggle"
                    type="button"
                    aria-controls="ops-nav"
                    aria-expanded=move || nav_open.get().to_string()
                    aria-label=move || if nav_open.get() { "Hide navigation" } else { "Show navigation" }
                    on:click=move |_| set_nav_open.update(|open| *open = !*open)
                >
                    <span aria-hidden="true">"☰"</span>
                </button>
                <a class="brand" href="/ops">"Switchyard"</a>
                <span class="topbar-section">"Ops › Operations"</span>
                <LiveIndicator/>
            </header>
            <nav id="ops-nav" class="sidenav" aria-label="Ops navigation" hidden=move || !nav_open.get()>
                {NavGroup::ALL.map(|group| view! { <NavSection group/> })}
            </nav>
            <main class="content">
                <SilenceBanner/>
                {children()}
            </main>
        </div>
    }
}

#[component]
fn NavSection(group: NavGroup) -> impl IntoView {
    let links = PAGES
        .iter()
        .filter(|spec| spec.nav == Some(group))
        .map(|spec| {
            view! {
                <li>
                    <A href=spec.path exact=true>{spec.title}</A>
                </li>
            }
        })
        .collect_view();
    view! {
        <section class="nav-group">
            <h2>{group.label()}</h2>
            <ul>{links}</ul>
        </section>
    }
}
