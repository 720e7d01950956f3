//! Identity in the kernel (SPEC §6), on SQLite and on Postgres: the first
//! admin, password checks, session expiry and revocation, tokens, node
//! enrollment and audit records.

mod common;

use common::Env;
use kernel::model::*;
use kernel::{AuditRecord, SessionPolicy};

conformance!(
    the_first_admin_is_created_once,
    logins_check_the_password_and_the_account,
    sessions_expire_when_idle_or_old_and_can_be_revoked,
    tokens_are_shown_once_and_revocable,
    enrollment_issues_a_node_token_and_revokes_the_previous_one,
    audit_records_are_events,
    names_with_control_characters_are_refused,
    grants_keep_each_scope_and_tenant_once_and_every_tenant_alone,
    usernames_differ_in_more_than_letter_case,
);

const POLICY: SessionPolicy = SessionPolicy {
    idle_ms: 60_000 * 30,
    absolute_ms: 60_000 * 60 * 12,
};

async fn the_first_admin_is_created_once(env: Env) {
    let k = &env.kernel;
    let generated = k.ensure_admin(None).await.unwrap();
    let password = generated.expect("an empty database gets a generated password");
    assert!(password.len() >= kernel::MIN_PASSWORD_LEN);
    let admin = k.find_user("admin").await.unwrap();
    assert_eq!(admin.scopes, vec![Scope::Admin]);
    assert!(admin.tenants.is_all());
    // Not again, and not with another password.
    assert_eq!(
        k.ensure_admin(Some("another-password-1")).await.unwrap(),
        None
    );
    assert!(k.verify_login("admin", &password).await.unwrap().is_some());
    assert!(k
        .verify_login("admin", "another-password-1")
        .await
        .unwrap()
        .is_none());
}

async fn logins_check_the_password_and_the_account(env: Env) {
    let k = &env.kernel;
    let short = k
        .create_user("alice", "short", &[Scope::RunsRead], &["acme".into()])
        .await
        .unwrap_err();
    assert_eq!(short.code(), "validation_failed");
    assert!(k.find_user("alice").await.is_err(), "nothing was written");
    k.create_user(
        "alice",
        "correct horse battery",
        &[Scope::RunsRead],
        &["acme".into()],
    )
    .await
    .unwrap();
    let dup = k
        .create_user(
            "alice",
            "correct horse battery",
            &[Scope::RunsRead],
            &["acme".into()],
        )
        .await
        .unwrap_err();
    assert_eq!(dup.code(), "conflict");
    assert!(k
        .verify_login("alice", "wrong horse battery")
        .await
        .unwrap()
        .is_none());
    assert!(k
        .verify_login("nobody", "correct horse battery")
        .await
        .unwrap()
        .is_none());
    // A name no user can have is no user, not a database error.
    assert!(k
        .verify_login("ali\0ce", "correct horse battery")
        .await
        .unwrap()
        .is_none());
    assert_eq!(
        k.set_password("ali\0ce", "a brand new password")
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    let user = k
        .verify_login("alice", "correct horse battery")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(user.tenants, TenantGrant::only(["acme"]));

    k.set_password("alice", "a brand new password")
        .await
        .unwrap();
    assert!(k
        .verify_login("alice", "correct horse battery")
        .await
        .unwrap()
        .is_none());
    assert!(k
        .verify_login("alice", "a brand new password")
        .await
        .unwrap()
        .is_some());

    let granted = k
        .grant_user(
            "alice",
            &[Scope::RunsManage],
            &["acme".into(), "beta".into()],
        )
        .await
        .unwrap();
    assert_eq!(granted.scopes, vec![Scope::RunsManage]);
    assert!(granted.tenants.allows("beta") && !granted.tenants.allows("gamma"));
}

async fn sessions_expire_when_idle_or_old_and_can_be_revoked(env: Env) {
    let k = &env.kernel;
    let user = k
        .create_user(
            "bob",
            "bob's long password",
            &[Scope::RunsRead],
            &["*".into()],
        )
        .await
        .unwrap();
    let (secret, csrf) = k
        .create_session(&user, Some("10.0.0.9"), POLICY)
        .await
        .unwrap();
    let view = k
        .session(&secret, POLICY)
        .await
        .unwrap()
        .expect("a fresh session");
    assert_eq!(view.csrf_token, csrf);
    assert_eq!(view.principal.name, "bob");
    assert_eq!(view.principal.kind, PrincipalKind::User);
    assert!(k.session("not-a-session", POLICY).await.unwrap().is_none());

    // Kept alive by use (a request every 20 minutes) for 11 h 40 min, but
    // not past the 12-hour absolute limit.
    let step = 20 * 60_000;
    for _ in 0..35 {
        env.clock.advance(step);
        assert!(k.session(&secret, POLICY).await.unwrap().is_some());
    }
    env.clock.advance(step);
    assert!(k.session(&secret, POLICY).await.unwrap().is_none());

    // Idle too long.
    let (idle, _) = k.create_session(&user, None, POLICY).await.unwrap();
    env.clock.advance(POLICY.idle_ms + 1);
    assert!(k.session(&idle, POLICY).await.unwrap().is_none());

    // A short idle limit (a minute) keeps a session used every 20 s alive.
    let short = SessionPolicy {
        idle_ms: 60_000,
        ..POLICY
    };
    let (busy, _) = k.create_session(&user, None, short).await.unwrap();
    for step in 0..9 {
        env.clock.advance(20_000);
        assert!(
            k.session(&busy, short).await.unwrap().is_some(),
            "step {step}"
        );
    }
    // Checking it without using it (a live stream's check) is no use: it
    // idles out as if it had not been checked.
    let (watched, _) = k.create_session(&user, None, short).await.unwrap();
    env.clock.advance(40_000);
    assert!(k
        .session_still_valid(&watched, short)
        .await
        .unwrap()
        .is_some());
    env.clock.advance(20_001);
    assert!(k
        .session_still_valid(&watched, short)
        .await
        .unwrap()
        .is_none());
    assert!(k.session(&watched, short).await.unwrap().is_none());

    // Revoked.
    let (gone, _) = k.create_session(&user, None, POLICY).await.unwrap();
    let view = k.session(&gone, POLICY).await.unwrap().unwrap();
    k.revoke_session(view.session_id).await.unwrap();
    assert!(k.session(&gone, POLICY).await.unwrap().is_none());

    // A password change ends every session.
    let (before, _) = k.create_session(&user, None, POLICY).await.unwrap();
    k.set_password("bob", "bob's newer password").await.unwrap();
    assert!(k.session(&before, POLICY).await.unwrap().is_none());

    // Retention deletes the sessions that ended: the expired first one and
    // the five the password change revoked (the idle ones among them). A
    // live session stays until its absolute expiry.
    let (live, _) = k.create_session(&user, None, POLICY).await.unwrap();
    assert_eq!(k.apply_retention().await.unwrap().sessions, 6);
    assert!(k.session(&live, POLICY).await.unwrap().is_some());
    env.clock.advance(POLICY.absolute_ms + 1);
    assert_eq!(k.apply_retention().await.unwrap().sessions, 1);
    assert_eq!(k.apply_retention().await.unwrap().sessions, 0);
}

async fn tokens_are_shown_once_and_revocable(env: Env) {
    let k = &env.kernel;
    let bad = k
        .create_token(
            &NewToken {
                name: "ci".into(),
                scopes: vec![],
                tenants: vec!["acme".into()],
            },
            "test",
        )
        .await
        .unwrap_err();
    assert_eq!(bad.code(), "validation_failed");
    let created = k
        .create_token(
            &NewToken {
                name: "ci".into(),
                scopes: vec![Scope::RunsRead],
                tenants: vec!["acme".into()],
            },
            "test",
        )
        .await
        .unwrap();
    assert!(created.secret.starts_with(&created.token.prefix));
    let listed = k.list_tokens().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(!serde_json::to_string(&listed)
        .unwrap()
        .contains(&created.secret));

    let p = k.token_principal(&created.secret).await.unwrap().unwrap();
    assert_eq!(p.kind, PrincipalKind::Token);
    assert!(p.has(Scope::RunsRead) && !p.has(Scope::RunsManage));
    assert!(p.sees_tenant("acme") && !p.sees_tenant("beta"));
    assert!(k.token_principal("sya_0000").await.unwrap().is_none());

    let revoked = k.revoke_token(created.token.id).await.unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(k.token_principal(&created.secret).await.unwrap().is_none());
    assert_eq!(
        k.revoke_token(999_999).await.unwrap_err().code(),
        "not_found"
    );
}

async fn enrollment_issues_a_node_token_and_revokes_the_previous_one(env: Env) {
    let k = &env.kernel;
    let node = NewNode {
        name: "worker-1".into(),
        kinds: vec!["noop".into()],
        capacity: 2,
        labels: Default::default(),
        file_scopes: vec![],
    };
    let first = k.enroll_node(&node, "enrollment").await.unwrap();
    let p = k.token_principal(&first.token).await.unwrap().unwrap();
    assert_eq!(p.kind, PrincipalKind::Node);
    assert_eq!(p.node_id, Some(first.node.id));

    let second = k.enroll_node(&node, "enrollment").await.unwrap();
    assert_eq!(second.node.id, first.node.id, "re-enrolling keeps the node");
    assert!(k.token_principal(&first.token).await.unwrap().is_none());
    assert!(k.token_principal(&second.token).await.unwrap().is_some());

    // Whose attempts are whose.
    k.submit(NewJob::single("owned", "noop", serde_json::json!({})))
        .await
        .unwrap();
    let leases = env.claim(second.node.id, 1).await;
    let owners = k
        .attempt_owners(&[leases[0].attempt_id, 424_242])
        .await
        .unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].node_id, Some(second.node.id));
    assert_eq!(owners[0].tenant, "default");
}

async fn audit_records_are_events(env: Env) {
    let k = &env.kernel;
    k.record_audit(AuditRecord {
        action: "jobs.cancel".into(),
        actor: "user:alice".into(),
        target: "/api/v1/jobs/7/cancel".into(),
        from: Some("10.0.0.1".into()),
        outcome: "denied".into(),
        status: Some(403),
        tenant: None,
    })
    .await
    .unwrap();
    let events = env.all_events().await;
    let audit = events
        .iter()
        .find(|e| e.event_type == "audit.jobs.cancel")
        .expect("the audit event");
    assert_eq!(audit.data["actor"], "user:alice");
    assert_eq!(audit.data["outcome"], "denied");
    assert_eq!(audit.data["from"], "10.0.0.1");
    assert_eq!(audit.tenant, None);
}

/// A name is shown in lists, logs and audit records: a newline or an escape
/// in it could forge or hide a line there. Refused before anything is
/// written, from the command line and the API alike (both come here).
async fn names_with_control_characters_are_refused(env: Env) {
    let k = &env.kernel;
    for name in ["ci\ndeploy", "ci\u{1b}[2Jdeploy", "tab\there", "del\u{7f}"] {
        let err = k
            .create_token(
                &NewToken {
                    name: name.into(),
                    scopes: vec![Scope::RunsRead],
                    tenants: vec!["acme".into()],
                },
                "test",
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), "validation_failed", "{name:?}");
        assert!(err.to_string().contains("control characters"), "{err}");
        let err = k
            .create_user(
                name,
                "correct horse battery",
                &[Scope::RunsRead],
                &["acme".into()],
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), "validation_failed", "{name:?}");
    }
    assert!(k.list_tokens().await.unwrap().is_empty());
    assert!(k.list_users().await.unwrap().is_empty());
    // Other characters a person types stay allowed.
    k.create_token(
        &NewToken {
            name: "CI – déploiement (nuit)".into(),
            scopes: vec![Scope::RunsRead],
            tenants: vec!["acme".into()],
        },
        "test",
    )
    .await
    .unwrap();
}

/// `--scope runs.read,runs.read --tenant acme,acme` is stored once each;
/// `*` next to named tenants is ambiguous (every tenant, or those?) and
/// refused, for users and tokens alike, with nothing written.
async fn grants_keep_each_scope_and_tenant_once_and_every_tenant_alone(env: Env) {
    let k = &env.kernel;
    let ambiguous = ["*".to_string(), "acme".to_string()];
    let err = k
        .create_user(
            "carol",
            "carol's long password",
            &[Scope::RunsRead],
            &ambiguous,
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "validation_failed");
    assert!(err.to_string().contains("not both"), "{err}");
    assert!(k.find_user("carol").await.is_err(), "nothing was written");
    let err = k
        .create_token(
            &NewToken {
                name: "ci".into(),
                scopes: vec![Scope::RunsRead],
                tenants: vec!["acme".into(), "*".into()],
            },
            "test",
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "validation_failed");
    assert!(k.list_tokens().await.unwrap().is_empty());

    let carol = k
        .create_user(
            "carol",
            "carol's long password",
            &[Scope::RunsRead, Scope::RunsManage, Scope::RunsRead],
            &["acme".into(), "beta".into(), "acme".into()],
        )
        .await
        .unwrap();
    assert_eq!(carol.scopes, vec![Scope::RunsRead, Scope::RunsManage]);
    assert_eq!(carol.tenants, TenantGrant::only(["acme", "beta"]));
    let err = k
        .grant_user("carol", &[Scope::Admin], &ambiguous)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "validation_failed");
    assert_eq!(k.find_user("carol").await.unwrap(), carol, "unchanged");
    let regranted = k
        .grant_user(
            "carol",
            &[Scope::Admin, Scope::Admin],
            &["*".into(), "*".into()],
        )
        .await
        .unwrap();
    assert_eq!(regranted.scopes, vec![Scope::Admin]);
    assert_eq!(regranted.tenants, TenantGrant::all());

    let token = k
        .create_token(
            &NewToken {
                name: "ci".into(),
                scopes: vec![Scope::RunsRead, Scope::RunsRead],
                tenants: vec!["acme".into(), "acme".into()],
            },
            "test",
        )
        .await
        .unwrap()
        .token;
    assert_eq!(token.scopes, vec![Scope::RunsRead]);
    assert_eq!(token.tenants, TenantGrant::only(["acme"]));
}

/// `admin` and `Admin` would be two accounts a reader takes for one.
async fn usernames_differ_in_more_than_letter_case(env: Env) {
    let k = &env.kernel;
    k.ensure_admin(Some("the admin's password")).await.unwrap();
    for name in ["Admin", "ADMIN", "aDmIn"] {
        let err = k
            .create_user(
                name,
                "correct horse battery",
                &[Scope::Admin],
                &["*".into()],
            )
            .await
            .unwrap_err();
        assert_eq!(err.code(), "conflict", "{name}");
        assert!(err.to_string().contains("\"admin\""), "{err}");
    }
    assert_eq!(
        k.list_users().await.unwrap().len(),
        1,
        "nothing was written"
    );
    // Names that differ in more than case stay distinct users.
    k.create_user(
        "admin2",
        "correct horse battery",
        &[Scope::RunsRead],
        &["*".into()],
    )
    .await
    .unwrap();
}
