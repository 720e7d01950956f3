//! A button that performs one operation through the API, honestly: it is
//! disabled with the reason when the operator lacks the scope, asks for
//! confirmation first when the operation is destructive, and reports what
//! the server answered. The page's live feed shows the effect.

use kernel::model::Scope;
use leptos::prelude::*;

use crate::components::session::use_session;

/// What happened to the last press. (Only the browser sends, so the server
/// build never reaches `Done` or `Failed`.)
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Idle,
    Confirming,
    Sending,
    Done(String),
    Failed(String),
}

/// `POST path` (no body) when pressed. With `confirm`, a first press asks
/// `confirm` and a second one acts.
#[component]
pub fn ActionButton(
    /// The button's text, e.g. "Cancel job".
    label: &'static str,
    /// The API path to POST to.
    #[prop(into)]
    path: String,
    /// The scope the operation needs.
    scope: Scope,
    /// The question asked before a destructive operation.
    #[prop(optional)]
    confirm: Option<&'static str>,
    /// What to say when it worked.
    done: &'static str,
) -> impl IntoView {
    let allowed = use_session().allows(scope);
    let outcome = RwSignal::new(Outcome::Idle);
    let path = StoredValue::new(path);
    let act = move || {
        outcome.set(Outcome::Sending);
        #[cfg(feature = "hydrate")]
        leptos::task::spawn_local(async move {
            let Some(path) = path.try_get_value() else {
                return;
            };
            // The live update the action causes may remove the button before
            // the answer arrives (a retried task is no longer failed): then
            // there is no one left to tell.
            match crate::components::session::send_json("POST", &path, None).await {
                Ok(_) => outcome.try_set(Outcome::Done(done.to_string())),
                Err(message) => outcome.try_set(Outcome::Failed(message)),
            };
        });
        #[cfg(not(feature = "hydrate"))]
        let _ = (path, done);
    };
    let press = move |_| match (confirm, outcome.get_untracked()) {
        (Some(_), Outcome::Confirming) | (None, _) => act(),
        (Some(_), _) => outcome.set(Outcome::Confirming),
    };
    let reason = allowed.clone().err();
    view! {
        <span class="action" data-action=label>
            <button
                type="button"
                disabled=move || allowed.is_err() || outcome.get() == Outcome::Sending
                title=reason.clone()
                on:click=press
            >
                {move || match outcome.get() {
                    Outcome::Confirming => format!("Confirm: {label}"),
                    Outcome::Sending => format!("{label}…"),
                    _ => label.to_string(),
                }}
            </button>
            {reason.map(|r| view! { <span class="disabled-reason">{r}</span> })}
            {move || match outcome.get() {
                Outcome::Confirming => view! {
                    <span class="confirm-question">
                        {confirm.unwrap_or_default()}
                        " "
                        <button type="button" class="link-button" on:click=move |_| outcome.set(Outcome::Idle)>
                            "Keep it"
                        </button>
                    </span>
                }
                .into_any(),
                Outcome::Done(text) => view! { <span class="toast" role="status">{text}</span> }.into_any(),
                Outcome::Failed(text) => view! { <span class="form-error" role="alert">{text}</span> }.into_any(),
                _ => ().into_any(),
            }}
        </span>
    }
}
