//! The Ops shell: the header, the side navigation and the page area.

use leptos::prelude::*;
use leptos_router::components::A;

use crate::components::live::{start_clock, LiveBoard, LiveIndicator, SilenceBanner};
use crate::components::session::{use_session, SessionInfo};
use crate::pages::{NavGroup, PAGES};
use kernel::model::TenantSelection;

/// The frame around every page.
#[component]
pub fn Shell(children: Children) -> impl IntoView {
    // Not signed in (the login page): no navigation, no live feed.
    let session = use_session();
    let Some(info) = session.0 else {
        return view! { <main class="content signed-out">{children()}</main> }.into_any();
    };
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
                <SignedIn info/>
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
    .into_any()
}

/// Who is signed in, what they may see, and the way out.
#[component]
fn SignedIn(info: SessionInfo) -> impl IntoView {
    let p = info.principal;
    let grants = format!(
        "{} · {}",
        p.scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        p.tenants
    );
    let (error, set_error) = signal(None::<String>);
    let sign_out = move |_| {
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            match crate::components::session::send_json("POST", "/api/v1/auth/logout", None).await {
                Ok(_) => {
                    let _ = window()
                        .location()
                        .replace(crate::components::session::LOGIN_PATH);
                }
                Err(message) => set_error.set(Some(message)),
            }
        });
        #[cfg(not(feature = "hydrate"))]
        set_error.set(None);
    };
    let selection = info.tenants;
    view! {
        <TenantPicker selection/>
        <div class="signed-in">
            <span class="who" title=grants.clone() data-user=p.name.clone()>{p.name.clone()}</span>
            <span class="grants">{grants}</span>
            <button type="button" class="sign-out" on:click=sign_out>"Sign out"</button>
            <Show when=move || error.get().is_some()>
                <span class="form-error" role="alert">{move || error.get().unwrap_or_default()}</span>
            </Show>
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

/// Picks the tenants the console shows (SPEC §6: cross-tenant operators
/// may pick several). The server applies the pick to every request.
#[component]
fn TenantPicker(selection: TenantSelection) -> impl IntoView {
    let picked = RwSignal::new(selection.selected.clone());
    let label = if selection.selected.is_empty() {
        "All tenants".to_string()
    } else {
        selection.selected.join(", ")
    };
    let data_label = label.clone();
    let apply = move |_| {
        #[cfg(feature = "hydrate")]
        crate::components::session::choose_tenants(&picked.get_untracked());
    };
    let options = selection
        .available
        .into_iter()
        .map(|tenant| {
            let t = tenant.clone();
            let toggle = move |_| {
                picked.update(|list| {
                    if let Some(i) = list.iter().position(|x| *x == t) {
                        list.remove(i);
                    } else {
                        list.push(t.clone());
                    }
                })
            };
            let t2 = tenant.clone();
            view! {
                <label class="checkbox">
                    <input
                        type="checkbox"
                        value=tenant.clone()
                        prop:checked=move || picked.read().contains(&t2)
                        on:change=toggle
                    />
                    {tenant}
                </label>
            }
        })
        .collect_view();
    view! {
        <details class="tenant-picker">
            <summary data-tenants=data_label>"Tenants: " {label}</summary>
            <div class="tenant-options">
                {options}
                <p class="as-of">"None picked shows every tenant you are granted."</p>
                <button type="button" on:click=apply>"Apply"</button>
            </div>
        </details>
    }
}
