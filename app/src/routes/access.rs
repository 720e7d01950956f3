//! `/ops/access`: console users and API tokens (SPEC §6).
//!
//! Admins list users and tokens, create a token (its secret is shown once,
//! here) and revoke one. Anyone else is told what this page needs instead
//! of being shown an empty table.

use kernel::model::{ApiToken, CreatedToken, Scope, User};
use leptos::prelude::*;

use crate::api::access::{get_access_view, AccessView};
use crate::components::action::ActionButton;
use crate::components::live::format_utc;
use crate::components::page::PageFrame;
use crate::components::session::use_session;
use crate::pages::page_by_id;
use crate::routes::ops::LoadError;

#[component]
pub fn AccessPage() -> impl IntoView {
    let spec = page_by_id("access");
    let params = Signal::derive(Vec::new);
    let allowed = use_session().allows_identity();
    view! {
        <PageFrame spec params>
            {match allowed {
                Ok(()) => view! { <AccessBody/> }.into_any(),
                Err(reason) => view! {
                    <section class="empty-state" aria-label="Not permitted">
                        <h2>"Users and tokens are managed by admins"</h2>
                        <p>{reason.clone()} " Ask an admin to create a token for you, or to grant you the scope."</p>
                        <button type="button" disabled=true title=reason.clone()>"Create token"</button>
                        <span class="disabled-reason">{reason.clone()}</span>
                    </section>
                }
                .into_any(),
            }}
        </PageFrame>
    }
}

#[component]
fn AccessBody() -> impl IntoView {
    let view = crate::api::once(get_access_view());
    view! {
        <Suspense fallback=|| view! { <p class="loading-state">"Reading users and tokens…"</p> }>
            {move || view.get().map(|result| match result {
                Ok(v) => view! { <AccessTables initial=v/> }.into_any(),
                Err(e) => view! { <LoadError what="users and tokens" error=e.to_string()/> }.into_any(),
            })}
        </Suspense>
    }
}

#[component]
fn AccessTables(initial: AccessView) -> impl IntoView {
    let tokens = RwSignal::new(initial.tokens);
    let users = initial.users;
    view! {
        <CreateToken tokens/>
        <section class="panel" aria-labelledby="tokens-heading">
            <h2 id="tokens-heading">"Tokens"</h2>
            <Show
                when=move || !tokens.read().is_empty()
                fallback=|| view! { <p class="empty-note">"No tokens yet. Node tokens appear when workers enroll."</p> }
            >
                <table class="data-table tokens">
                    <thead>
                        <tr>
                            <th scope="col">"Name"</th>
                            <th scope="col">"Kind"</th>
                            <th scope="col">"Prefix"</th>
                            <th scope="col">"Scopes"</th>
                            <th scope="col">"Tenants"</th>
                            <th scope="col">"Created"</th>
                            <th scope="col">"Last used"</th>
                            <th scope="col">"Status"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <For each=move || tokens.get() key=|t: &ApiToken| (t.id, t.revoked_at) let:t>
                            <TokenRow t/>
                        </For>
                    </tbody>
                </table>
            </Show>
        </section>
        <section class="panel" aria-labelledby="audit-heading">
            <h2 id="audit-heading">"Audit log"</h2>
            <p>
                "Every sign-in and every state-changing API call is recorded as an "
                <code>"audit.*"</code> " event (who, what, target, from where, outcome) and shown on the "
                <a href="/ops">"operator snapshot"</a> "'s timeline. Export: "
                <a href="/api/v1/audit?format=csv" download="switchyard-audit.csv" rel="external">"CSV"</a>
                " · "
                <a href="/api/v1/audit" rel="external">"JSON"</a>
                " (10,000 events per file; continue with " <code>"?after=next_after"</code> ")."
            </p>
        </section>
        <section class="panel" aria-labelledby="users-heading">
            <h2 id="users-heading">"Users"</h2>
            <p class="as-of">"Users are managed with " <code>"switchyard users add|passwd|grant"</code> "."</p>
            <table class="data-table users">
                <thead>
                    <tr>
                        <th scope="col">"Username"</th>
                        <th scope="col">"Scopes"</th>
                        <th scope="col">"Tenants"</th>
                        <th scope="col">"Status"</th>
                    </tr>
                </thead>
                <tbody>
                    {users.into_iter().map(|u: User| view! {
                        <tr data-user=u.username.clone()>
                            <td>{u.username.clone()}</td>
                            <td>{scope_list(&u.scopes)}</td>
                            <td>{u.tenants.to_string()}</td>
                            <td>{if u.disabled { "disabled" } else { "active" }}</td>
                        </tr>
                    }).collect_view()}
                </tbody>
            </table>
        </section>
    }
}

#[component]
fn TokenRow(t: ApiToken) -> impl IntoView {
    let when = |at: Option<i64>| at.map(format_utc).unwrap_or_else(|| "never".into());
    let revoked = t.revoked_at.is_some();
    view! {
        <tr data-token=t.name.clone()>
            <td>{t.name.clone()}</td>
            <td>{t.kind.clone()}</td>
            <td><code>{format!("{}…", t.prefix)}</code></td>
            <td>{scope_list(&t.scopes)}</td>
            <td>{t.tenants.to_string()}</td>
            <td>{format_utc(t.created_at)} " by " {t.created_by.clone()}</td>
            <td>{when(t.last_used_at)}</td>
            <td>
                {if revoked {
                    view! { <span class="state" data-state="revoked">"revoked"</span> }.into_any()
                } else {
                    view! {
                        <ActionButton
                            label="Revoke"
                            path=format!("/api/v1/auth/tokens/{}/revoke", t.id)
                            scope=Scope::Admin
                            confirm="Revoke this token? Its next request is refused."
                            type_to_confirm=t.name.clone()
                            done="Revoked."
                        />
                    }
                    .into_any()
                }}
            </td>
        </tr>
    }
}

fn scope_list(scopes: &[Scope]) -> String {
    if scopes.is_empty() {
        "—".into()
    } else {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// The form that creates an API token and shows its secret once.
#[component]
fn CreateToken(tokens: RwSignal<Vec<ApiToken>>) -> impl IntoView {
    let name = NodeRef::<leptos::html::Input>::new();
    let tenants = NodeRef::<leptos::html::Input>::new();
    let chosen = RwSignal::new(vec![Scope::RunsRead]);
    let created = RwSignal::new(None::<CreatedToken>);
    let error = RwSignal::new(None::<String>);
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        #[cfg(feature = "hydrate")]
        {
            let body = serde_json::json!({
                "name": name.get().map(|i| i.value()).unwrap_or_default(),
                "scopes": chosen.get_untracked(),
                "tenants": tenants
                    .get()
                    .map(|i| i.value())
                    .unwrap_or_default()
                    .split(',')
                    .map(str::trim)
                    .filter(|t| !t.is_empty())
                    .collect::<Vec<_>>(),
            });
            leptos::task::spawn_local(async move {
                match crate::components::session::send_json(
                    "POST",
                    "/api/v1/auth/tokens",
                    Some(body),
                )
                .await
                {
                    Ok(value) => match crate::api::from_json::<CreatedToken>(&value) {
                        Ok(c) => {
                            tokens.update(|list| list.insert(0, c.token.clone()));
                            created.set(Some(c));
                            error.set(None);
                        }
                        Err(e) => error.set(Some(format!("unexpected answer: {e}"))),
                    },
                    Err(message) => error.set(Some(message)),
                }
            });
        }
        #[cfg(not(feature = "hydrate"))]
        let _ = (name, tenants, tokens);
    };
    let toggle = move |scope: Scope| {
        chosen.update(|list| {
            if let Some(i) = list.iter().position(|s| *s == scope) {
                list.remove(i);
            } else {
                list.push(scope);
            }
        })
    };
    view! {
        <section class="panel" aria-labelledby="create-token-heading">
            <h2 id="create-token-heading">"Create an API token"</h2>
            <form class="token-form" on:submit=submit>
                <label>"Name" <input node_ref=name name="name" required=true placeholder="ci-deploy"/></label>
                <fieldset>
                    <legend>"Scopes"</legend>
                    {Scope::ALL.iter().copied().map(|scope| view! {
                        <label class="checkbox">
                            <input
                                type="checkbox"
                                name="scope"
                                value=scope.as_str()
                                prop:checked=move || chosen.read().contains(&scope)
                                on:change=move |_| toggle(scope)
                            />
                            {scope.as_str()}
                        </label>
                    }).collect_view()}
                </fieldset>
                <label>
                    "Tenants (comma-separated, * for every tenant)"
                    <input node_ref=tenants name="tenants" required=true placeholder="default"/>
                </label>
                <button type="submit">"Create token"</button>
            </form>
            <Show when=move || error.get().is_some()>
                <p class="form-error" role="alert">{move || error.get().unwrap_or_default()}</p>
            </Show>
            <Show when=move || created.get().is_some()>
                <div class="token-secret" role="status">
                    <p>"Token " <strong>{move || created.get().map(|c| c.token.name).unwrap_or_default()}</strong>
                       " created. Copy its secret now: it is not shown again."</p>
                    <code class="secret">{move || created.get().map(|c| c.secret).unwrap_or_default()}</code>
                </div>
            </Show>
        </section>
    }
}
