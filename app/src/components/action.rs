//! A button that performs one operation through the API, honestly: it is
//! disabled with the reason when the operator lacks the scope, asks for
//! confirmation first when the operation is destructive (and for the
//! target's name, typed, when it cannot be undone: SPEC §4), and reports
//! what the server answered. The page's live feed shows the effect.

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
/// `confirm` and a second one acts; with `type_to_confirm` as well, only
/// once that text (the target's name) has been typed.
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
    /// For an operation that cannot be undone: the target's name, which
    /// the operator types to confirm.
    #[prop(optional, into)]
    type_to_confirm: Option<String>,
    /// What to say when it worked.
    done: &'static str,
) -> impl IntoView {
    let allowed = use_session().allows(scope);
    let outcome = RwSignal::new(Outcome::Idle);
    let typed = RwSignal::new(String::new());
    let target = StoredValue::new(type_to_confirm);
    // Confirming an irreversible operation waits for its target's name.
    let unconfirmed = move || {
        outcome.get() == Outcome::Confirming
            && target.with_value(|t| t.as_ref().is_some_and(|t| typed.with(|s| s.trim() != t)))
    };
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
        (Some(_), Outcome::Confirming) if !unconfirmed() => act(),
        (Some(_), Outcome::Confirming) => {}
        (None, _) => act(),
        (Some(_), _) => {
            typed.set(String::new());
            outcome.set(Outcome::Confirming)
        }
    };
    let reason = allowed.clone().err();
    view! {
        <span class="action" data-action=label>
            <button
                type="button"
                disabled=move || allowed.is_err() || outcome.get() == Outcome::Sending || unconfirmed()
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
                        {target.get_value().map(|t| view! {
                            <label class="type-to-confirm">
                                "It cannot be undone: type " <code>{t.clone()}</code> " to confirm. "
                                <input
                                    type="text"
                                    autocomplete="off"
                                    aria-label=format!("Type {t} to confirm")
                                    prop:value=move || typed.get()
                                    on:input=move |ev| typed.set(event_target_value(&ev))
                                />
                            </label>
                        })}
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
