//! `/login`: sign in, then go back to the page that was asked for.
//!
//! The server sends a browser that is not signed in here with
//! `?next=<path and query>`; the browser keeps the URL's fragment across that
//! redirect, so after sign-in the page goes to `next` plus the fragment it
//! still holds: the operator lands exactly where they were going.

use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::components::page::DocumentTitle;
#[cfg(feature = "hydrate")]
use crate::components::session::safe_next;

#[component]
pub fn LoginPage() -> impl IntoView {
    let query = use_query_map();
    let (error, set_error) = signal(None::<String>);
    let (busy, set_busy) = signal(false);
    // Until the console has loaded, the form cannot be sent: the browser's
    // own submission would put the password in the address (a GET) or post
    // it to no handler. Effects run in the browser only, once hydrated.
    let (ready, set_ready) = signal(false);
    Effect::new(move |_| set_ready.set(true));
    let username = NodeRef::<leptos::html::Input>::new();
    let password = NodeRef::<leptos::html::Input>::new();
    let next = move || query.read().get("next");

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        {
            let user = username.get().map(|i| i.value()).unwrap_or_default();
            let pass = password.get().map(|i| i.value()).unwrap_or_default();
            let target = safe_next(next().as_deref());
            set_busy.set(true);
            set_error.set(None);
            leptos::task::spawn_local(async move {
                match sign_in(&user, &pass).await {
                    Ok(()) => {
                        let window = window();
                        let hash = window.location().hash().unwrap_or_default();
                        let _ = window.location().replace(&format!("{target}{hash}"));
                    }
                    Err(message) => {
                        set_error.set(Some(message));
                        set_busy.set(false);
                    }
                }
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (&username, &password, next, set_error, set_busy);
    };

    view! {
        <DocumentTitle text="Sign in"/>
        <section class="login-page">
            <h1>"Sign in to Switchyard"</h1>
            <p class="page-summary">
                {move || match next() {
                    Some(n) if n != "/ops" => format!("Sign in to continue to {n}."),
                    _ => "Sign in to the operator console.".to_string(),
                }}
            </p>
            <noscript>
                <p class="form-error">"Signing in needs JavaScript, which this browser has turned off."</p>
            </noscript>
            <form class="login-form" method="post" on:submit=submit>
                <label>
                    "Username"
                    <input node_ref=username name="username" autocomplete="username" required=true/>
                </label>
                <label>
                    "Password"
                    <input
                        node_ref=password
                        name="password"
                        type="password"
                        autocomplete="current-password"
                        required=true
                    />
                </label>
                <button type="submit" disabled=move || busy.get() || !ready.get()>
                    {move || if busy.get() { "Signing in…" } else { "Sign in" }}
                </button>
                <Show when=move || error.get().is_some()>
                    <p class="form-error" role="alert">{move || error.get().unwrap_or_default()}</p>
                </Show>
            </form>
        </section>
    }
}

/// `POST /api/v1/auth/login`; the server sets the session cookie.
#[cfg(feature = "hydrate")]
async fn sign_in(username: &str, password: &str) -> Result<(), String> {
    let body = serde_json::json!({ "username": username, "password": password });
    let response = gloo_net::http::Request::post("/api/v1/auth/login")
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .map_err(|e| e.to_string())?
        .send()
        .await
        .map_err(|e| format!("the server could not be reached: {e}"))?;
    if response.ok() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    Err(crate::components::session::api_error_message(&text)
        .unwrap_or_else(|| "signing in failed".to_string()))
}
