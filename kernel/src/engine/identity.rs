//! Identity and access (SPEC §6): users and their Argon2id password hashes,
//! database-backed sessions, API tokens and node tokens, and the audit
//! records the server appends to the event log.
//!
//! Secrets (session cookies, bearer tokens) are 256 random bits; only their
//! SHA-256 is stored, so a copy of the database yields no credential. The
//! kernel decides who a secret belongs to and what it grants; the server
//! decides where secrets travel (cookies, headers) and how fast logins may
//! be tried.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use rand::RngCore;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::db::Backend;
use crate::error::{KernelError, Result};
use crate::model::{
    ApiToken, CreatedToken, Enrollment, NewNode, NewToken, Principal, PrincipalKind, Scope,
    TenantGrant, User, ALL_TENANTS,
};
use crate::sql::{args, Row};

use super::dag::check_identifier;
use super::{Kernel, NewEvent};

/// Shortest password accepted.
pub const MIN_PASSWORD_LEN: usize = 12;
/// A session is touched (its idle clock restarted) at most this often, so a
/// busy console does not write on every request; and at least four times
/// per idle limit, so a short limit does not end a busy session.
const TOUCH_EVERY_MS: i64 = 60_000;

/// How long sessions live.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    /// Ends a session this long after its last request.
    pub idle_ms: i64,
    /// Ends a session this long after sign-in, however busy.
    pub absolute_ms: i64,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            idle_ms: 30 * 60_000,
            absolute_ms: 12 * 60 * 60_000,
        }
    }
}

/// A live session, found by its cookie value.
#[derive(Debug, Clone)]
pub struct SessionView {
    pub session_id: i64,
    pub principal: Principal,
    pub csrf_token: String,
}

/// Who an attempt belongs to: the node holding it, the tenant of its job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptOwner {
    pub attempt_id: i64,
    pub node_id: Option<i64>,
    pub tenant: String,
}

/// One audited action (SPEC §6, issue #4): who did what to which target,
/// from where, with what outcome. Appended as an `audit.<action>` event.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    /// `jobs.cancel`, `auth.login`, … (becomes the event type `audit.<action>`).
    pub action: String,
    /// `user:alice`, `token:ci`, `anonymous`, …
    pub actor: String,
    /// What was acted on: a path or a name.
    pub target: String,
    /// The client address, as the server saw it.
    pub from: Option<String>,
    /// `ok`, `denied`, `failed`, … with the HTTP status when there is one.
    pub outcome: String,
    pub status: Option<u16>,
    /// The tenant the target belongs to, when known (else the record is
    /// visible to every-tenant callers only).
    pub tenant: Option<String>,
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::thread_rng().fill_bytes(&mut buf);
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn sha256_hex(secret: &str) -> String {
    Sha256::digest(secret.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A password for a generated account: 24 characters from an unambiguous
/// alphabet (about 137 bits).
pub fn generate_password() -> String {
    const ALPHABET: &[u8] = b"abcdefghjkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut rng = rand::thread_rng();
    (0..24)
        .map(|_| ALPHABET[(rng.next_u32() as usize) % ALPHABET.len()] as char)
        .collect()
}

async fn hash_password(password: String) -> Result<String> {
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::generate(&mut argon2::password_hash::rand_core::OsRng);
        Argon2::default()
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| KernelError::validation(format!("cannot hash the password: {e}")))
    })
    .await
    .map_err(|e| KernelError::validation(format!("password hashing stopped: {e}")))?
}

async fn verify_password(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || {
        PasswordHash::new(&hash)
            .map(|parsed| {
                Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok()
            })
            .unwrap_or(false)
    })
    .await
    .unwrap_or(false)
}

/// An Argon2id hash of nothing anyone knows: a login for an unknown user
/// verifies against it, so it takes as long as one for a known user.
const DECOY_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$c3dpdGNoeWFyZGRlY295$0Ls5Y0bPTfmWBFHm2z8yWDpS1E0d1f8GQYd3jgm8i5Q";

fn check_password(password: &str) -> Result<()> {
    if password.chars().count() < MIN_PASSWORD_LEN {
        return Err(KernelError::validation(format!(
            "the password must be at least {MIN_PASSWORD_LEN} characters"
        )));
    }
    Ok(())
}

/// A grant as it is stored: each scope and tenant once, in the order given.
/// `*` stands alone: next to named tenants a reader could not tell whether
/// every tenant or only those was meant.
fn check_grant(scopes: &[Scope], tenants: &[String]) -> Result<(Vec<Scope>, TenantGrant)> {
    if tenants.is_empty() {
        return Err(KernelError::validation(
            "grant at least one tenant (or \"*\" for every tenant)",
        ));
    }
    for t in tenants {
        if t != ALL_TENANTS {
            check_identifier("tenant", t)?;
        }
    }
    let tenants = once_each(tenants);
    if tenants.len() > 1 && tenants.iter().any(|t| t == ALL_TENANTS) {
        return Err(KernelError::Validation {
            message: format!(
                "grant either \"*\" (every tenant) or named tenants, not both: {}",
                tenants.join(",")
            ),
            details: Some(json!({ "field": "tenants", "value": tenants })),
        });
    }
    Ok((once_each(scopes), TenantGrant(tenants)))
}

/// `items` without repeats, in the order they first appear.
fn once_each<T: PartialEq + Clone>(items: &[T]) -> Vec<T> {
    let mut once = Vec::with_capacity(items.len());
    for item in items {
        if !once.contains(item) {
            once.push(item.clone());
        }
    }
    once
}

/// A token's name is shown in lists, logs and audit records, where a
/// control character (a newline, an escape sequence) could forge or hide a
/// line.
fn check_token_name(name: &str) -> Result<()> {
    super::dag::check_name("token name", name, 100)?;
    if name.chars().any(char::is_control) {
        return Err(KernelError::Validation {
            message: format!(
                "token name {name:?} must not contain control characters (newlines, tabs, escapes)"
            ),
            details: Some(json!({ "field": "token name", "value": name })),
        });
    }
    Ok(())
}

fn scopes_json(scopes: &[Scope]) -> String {
    serde_json::to_string(scopes).expect("scopes serialise")
}

fn parse_scopes(r: &Row) -> Result<Vec<Scope>> {
    Ok(serde_json::from_value(r.json("scopes")?).unwrap_or_default())
}

fn parse_tenants(r: &Row) -> Result<TenantGrant> {
    Ok(TenantGrant(
        serde_json::from_value(r.json("tenants")?).unwrap_or_default(),
    ))
}

fn user_from_row(r: &Row) -> Result<User> {
    Ok(User {
        id: r.i64("id")?,
        username: r.text("username")?,
        scopes: parse_scopes(r)?,
        tenants: parse_tenants(r)?,
        disabled: r.bool("disabled")?,
        created_at: r.i64("created_at")?,
    })
}

fn token_from_row(r: &Row) -> Result<ApiToken> {
    Ok(ApiToken {
        id: r.i64("id")?,
        name: r.text("name")?,
        kind: r.text("kind")?,
        prefix: r.text("prefix")?,
        scopes: parse_scopes(r)?,
        tenants: parse_tenants(r)?,
        node_id: r.opt_i64("node_id")?,
        created_by: r.text("created_by")?,
        created_at: r.i64("created_at")?,
        last_used_at: r.opt_i64("last_used_at")?,
        revoked_at: r.opt_i64("revoked_at")?,
    })
}

const USER_COLUMNS: &str = "id, username, scopes, tenants, disabled, created_at";
const TOKEN_COLUMNS: &str = "id, kind, name, prefix, scopes, tenants, node_id, created_by, \
                             created_at, last_used_at, revoked_at";

impl Kernel {
    // ---- users ----

    /// Creates a console user. The password is hashed with Argon2id.
    pub async fn create_user(
        &self,
        username: &str,
        password: &str,
        scopes: &[Scope],
        tenants: &[String],
    ) -> Result<User> {
        check_identifier("username", username)?;
        check_password(password)?;
        let (scopes, tenants) = check_grant(scopes, tenants)?;
        let hash = hash_password(password.to_string()).await?;
        let mut w = self.begin().await?;
        if self.backend() == Backend::Postgres {
            // Held to the commit: two creations of one name in different
            // cases would otherwise both find no user below. (SQLite has
            // one writer.)
            w.tx.execute(
                "SELECT pg_advisory_xact_lock(hashtext('switchyard.usernames'))",
                args![],
            )
            .await?;
        }
        // `admin` and `Admin` would be two accounts a reader takes for one.
        // Usernames are ASCII (`check_identifier`), so LOWER folds them alike
        // on both backends.
        let existing =
            w.tx.fetch_optional(
                "SELECT username FROM users WHERE LOWER(username) = LOWER($1)",
                args![username],
            )
            .await?;
        if let Some(row) = existing {
            let existing = row.text("username")?;
            return Err(KernelError::conflict(if existing == username {
                format!("a user named {username:?} already exists")
            } else {
                format!(
                    "a user named {existing:?} already exists (usernames must differ in more than letter case)"
                )
            }));
        }
        let now = w.now;
        let id = w
            .tx
            .fetch_one(
                "INSERT INTO users (username, password_hash, scopes, tenants, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
                args![
                    username,
                    hash,
                    scopes_json(&scopes),
                    serde_json::to_string(&tenants).expect("tenants"),
                    now
                ],
            )
            .await?
            .i64("id")?;
        self.finish(w).await?;
        self.get_user(id).await
    }

    pub async fn get_user(&self, id: i64) -> Result<User> {
        let row = self
            .db()
            .read_optional(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE id = $1"),
                args![id],
            )
            .await?
            .ok_or_else(|| KernelError::not_found("user", id))?;
        user_from_row(&row)
    }

    pub async fn find_user(&self, username: &str) -> Result<User> {
        // No user has a name that is not an identifier (see `verify_login`).
        if check_identifier("username", username).is_err() {
            return Err(KernelError::not_found("user", username));
        }
        let row = self
            .db()
            .read_optional(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE username = $1"),
                args![username],
            )
            .await?
            .ok_or_else(|| KernelError::not_found("user", username))?;
        user_from_row(&row)
    }

    pub async fn list_users(&self) -> Result<Vec<User>> {
        self.db()
            .read_all(
                &format!("SELECT {USER_COLUMNS} FROM users ORDER BY username"),
                args![],
            )
            .await?
            .iter()
            .map(user_from_row)
            .collect()
    }

    /// Replaces a user's password and ends every session they have.
    pub async fn set_password(&self, username: &str, password: &str) -> Result<User> {
        check_password(password)?;
        let user = self.find_user(username).await?;
        let hash = hash_password(password.to_string()).await?;
        let mut w = self.begin().await?;
        let now = w.now;
        w.tx.execute(
            "UPDATE users SET password_hash = $1, updated_at = $2 WHERE id = $3",
            args![hash, now, user.id],
        )
        .await?;
        w.tx.execute(
            "UPDATE sessions SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            args![now, user.id],
        )
        .await?;
        self.finish(w).await?;
        Ok(user)
    }

    /// Replaces a user's scopes and tenant grant (effective on their next
    /// request: sessions read the user's grants every time).
    pub async fn grant_user(
        &self,
        username: &str,
        scopes: &[Scope],
        tenants: &[String],
    ) -> Result<User> {
        let (scopes, tenants) = check_grant(scopes, tenants)?;
        let user = self.find_user(username).await?;
        let mut w = self.begin().await?;
        let now = w.now;
        w.tx.execute(
            "UPDATE users SET scopes = $1, tenants = $2, updated_at = $3 WHERE id = $4",
            args![
                scopes_json(&scopes),
                serde_json::to_string(&tenants).expect("tenants"),
                now,
                user.id
            ],
        )
        .await?;
        self.finish(w).await?;
        self.get_user(user.id).await
    }

    /// On an empty user table, creates `admin` with every scope and tenant.
    /// Returns the password when it was generated (to be shown once), and
    /// `None` when `password` was used or users already exist.
    pub async fn ensure_admin(&self, password: Option<&str>) -> Result<Option<String>> {
        let any = self
            .db()
            .read_optional("SELECT id FROM users LIMIT 1", args![])
            .await?;
        if any.is_some() {
            return Ok(None);
        }
        let (password, generated) = match password {
            Some(p) => (p.to_string(), false),
            None => (generate_password(), true),
        };
        match self
            .create_user(
                "admin",
                &password,
                &[Scope::Admin],
                &[ALL_TENANTS.to_string()],
            )
            .await
        {
            Ok(_) => Ok(generated.then_some(password)),
            // Another replica created it first.
            Err(KernelError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The user with these credentials, or `None` (unknown user, wrong
    /// password, disabled account: the caller cannot tell which).
    pub async fn verify_login(&self, username: &str, password: &str) -> Result<Option<User>> {
        // A username is an identifier (`create_user`); anything else, a NUL
        // that Postgres could not even compare among them, matches no user.
        let row = match check_identifier("username", username) {
            Ok(()) => {
                self.db()
                    .read_optional(
                        &format!(
                            "SELECT {USER_COLUMNS}, password_hash FROM users WHERE username = $1"
                        ),
                        args![username],
                    )
                    .await?
            }
            Err(_) => None,
        };
        let Some(row) = row else {
            verify_password(password.to_string(), DECOY_HASH.to_string()).await;
            return Ok(None);
        };
        let ok = verify_password(password.to_string(), row.text("password_hash")?).await;
        let user = user_from_row(&row)?;
        Ok((ok && !user.disabled).then_some(user))
    }

    // ---- sessions ----

    /// Starts a session for `user`: returns the cookie value (never stored)
    /// and the session's CSRF token.
    pub async fn create_session(
        &self,
        user: &User,
        client_addr: Option<&str>,
        policy: SessionPolicy,
    ) -> Result<(String, String)> {
        let secret = random_hex(32);
        let csrf = random_hex(32);
        let mut w = self.begin().await?;
        let now = w.now;
        w.tx.execute(
            "INSERT INTO sessions (secret_hash, user_id, csrf_token, client_addr, created_at, last_seen_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5, $5, $6)",
            args![
                sha256_hex(&secret),
                user.id,
                csrf.as_str(),
                client_addr,
                now,
                now + policy.absolute_ms
            ],
        )
        .await?;
        self.finish(w).await?;
        Ok((secret, csrf))
    }

    /// The live session behind a cookie value: `None` if unknown, revoked,
    /// past its absolute expiry, idle too long, or its user is disabled.
    pub async fn session(
        &self,
        secret: &str,
        policy: SessionPolicy,
    ) -> Result<Option<SessionView>> {
        self.session_seen(secret, policy, true).await
    }

    /// The session of `secret` if it is still valid, as [`Kernel::session`]
    /// answers, without counting as activity: what a long-lived answer (a
    /// live stream) checks while it lasts, which must not keep an
    /// unattended console signed in.
    pub async fn session_still_valid(
        &self,
        secret: &str,
        policy: SessionPolicy,
    ) -> Result<Option<SessionView>> {
        self.session_seen(secret, policy, false).await
    }

    async fn session_seen(
        &self,
        secret: &str,
        policy: SessionPolicy,
        touch: bool,
    ) -> Result<Option<SessionView>> {
        let now = self.now();
        let row = self
            .db()
            .read_optional(
                "SELECT s.id, s.csrf_token, s.last_seen_at, s.expires_at, s.revoked_at, \
                        u.id AS user_id, u.username, u.scopes, u.tenants, u.disabled \
                 FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.secret_hash = $1",
                args![sha256_hex(secret)],
            )
            .await?;
        let Some(r) = row else { return Ok(None) };
        let last_seen = r.i64("last_seen_at")?;
        if r.opt_i64("revoked_at")?.is_some()
            || now >= r.i64("expires_at")?
            || now - last_seen >= policy.idle_ms
            || r.bool("disabled")?
        {
            return Ok(None);
        }
        let session_id = r.i64("id")?;
        if touch && now - last_seen >= TOUCH_EVERY_MS.min(policy.idle_ms / 4) {
            let mut w = self.begin().await?;
            w.tx.execute(
                "UPDATE sessions SET last_seen_at = $1 WHERE id = $2",
                args![now, session_id],
            )
            .await?;
            self.finish(w).await?;
        }
        Ok(Some(SessionView {
            session_id,
            csrf_token: r.text("csrf_token")?,
            principal: Principal {
                kind: PrincipalKind::User,
                id: r.i64("user_id")?,
                name: r.text("username")?,
                scopes: parse_scopes(&r)?,
                tenants: parse_tenants(&r)?,
                node_id: None,
            },
        }))
    }

    /// Ends a session (logout).
    pub async fn revoke_session(&self, session_id: i64) -> Result<()> {
        let mut w = self.begin().await?;
        let now = w.now;
        w.tx.execute(
            "UPDATE sessions SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            args![now, session_id],
        )
        .await?;
        self.finish(w).await
    }

    // ---- tokens ----

    /// Creates an API token; its secret is in the answer and nowhere else.
    pub async fn create_token(&self, new: &NewToken, created_by: &str) -> Result<CreatedToken> {
        check_token_name(&new.name)?;
        if new.scopes.is_empty() {
            return Err(KernelError::validation("a token needs at least one scope"));
        }
        let (scopes, tenants) = check_grant(&new.scopes, &new.tenants)?;
        let mut w = self.begin().await?;
        let (id, secret) = insert_token(
            &mut w, "api", &new.name, &scopes, &tenants, None, created_by,
        )
        .await?;
        self.finish(w).await?;
        Ok(CreatedToken {
            token: self.get_token(id).await?,
            secret,
        })
    }

    pub async fn get_token(&self, id: i64) -> Result<ApiToken> {
        let row = self
            .db()
            .read_optional(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens WHERE id = $1"),
                args![id],
            )
            .await?
            .ok_or_else(|| KernelError::not_found("token", id))?;
        token_from_row(&row)
    }

    /// Every token, newest first (revoked ones too, marked).
    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        self.db()
            .read_all(
                &format!("SELECT {TOKEN_COLUMNS} FROM tokens ORDER BY id DESC"),
                args![],
            )
            .await?
            .iter()
            .map(token_from_row)
            .collect()
    }

    /// Revokes a token at once; revoking twice is a no-op.
    pub async fn revoke_token(&self, id: i64) -> Result<ApiToken> {
        let mut w = self.begin().await?;
        let now = w.now;
        let found =
            w.tx.fetch_optional("SELECT id FROM tokens WHERE id = $1", args![id])
                .await?;
        if found.is_none() {
            return Err(KernelError::not_found("token", id));
        }
        w.tx.execute(
            "UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL",
            args![now, id],
        )
        .await?;
        self.finish(w).await?;
        self.get_token(id).await
    }

    /// Who a bearer secret speaks for, or `None` (unknown or revoked).
    pub async fn token_principal(&self, secret: &str) -> Result<Option<Principal>> {
        let row = self
            .db()
            .read_optional(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM tokens WHERE secret_hash = $1 AND revoked_at IS NULL"
                ),
                args![sha256_hex(secret)],
            )
            .await?;
        let Some(r) = row else { return Ok(None) };
        let token = token_from_row(&r)?;
        let now = self.now();
        if token.last_used_at.is_none_or(|t| now - t >= TOUCH_EVERY_MS) {
            let mut w = self.begin().await?;
            w.tx.execute(
                "UPDATE tokens SET last_used_at = $1 WHERE id = $2",
                args![now, token.id],
            )
            .await?;
            self.finish(w).await?;
        }
        Ok(Some(Principal {
            kind: if token.kind == "node" {
                PrincipalKind::Node
            } else {
                PrincipalKind::Token
            },
            id: token.id,
            name: token.name,
            scopes: token.scopes,
            tenants: token.tenants,
            node_id: token.node_id,
        }))
    }

    /// Registers (or re-registers) a node and issues its node token. Earlier
    /// tokens of the same node are revoked: the newest enrollment wins.
    pub async fn enroll_node(&self, node: &NewNode, created_by: &str) -> Result<Enrollment> {
        let registered = self.register_node(node).await?;
        let mut w = self.begin().await?;
        let now = w.now;
        w.tx.execute(
            "UPDATE tokens SET revoked_at = $1 WHERE kind = 'node' AND node_id = $2 AND revoked_at IS NULL",
            args![now, registered.id],
        )
        .await?;
        let (_, secret) = insert_token(
            &mut w,
            "node",
            &registered.name,
            &[],
            &TenantGrant::all(),
            Some(registered.id),
            created_by,
        )
        .await?;
        self.finish(w).await?;
        Ok(Enrollment {
            node: registered,
            token: secret,
        })
    }

    /// Who holds each of these attempts and whose they are, so the server
    /// can refuse a node reporting on another node's lease and a reader
    /// looking into another tenant. Unknown ids are left out.
    pub async fn attempt_owners(&self, attempt_ids: &[i64]) -> Result<Vec<AttemptOwner>> {
        self.db()
            .read_all(
                "SELECT id, node_id, tenant FROM attempts WHERE id @in($1)",
                args![attempt_ids],
            )
            .await?
            .iter()
            .map(|r| {
                Ok(AttemptOwner {
                    attempt_id: r.i64("id")?,
                    node_id: r.opt_i64("node_id")?,
                    tenant: r.text("tenant")?,
                })
            })
            .collect()
    }

    /// Every tenant that has had a job, by name.
    pub async fn list_tenants(&self) -> Result<Vec<String>> {
        self.db()
            .read_all("SELECT name FROM tenants ORDER BY name", args![])
            .await?
            .iter()
            .map(|r| Ok(r.text("name")?))
            .collect()
    }

    // ---- audit ----

    /// Appends an `audit.<action>` event.
    pub async fn record_audit(&self, record: AuditRecord) -> Result<()> {
        let mut w = self.begin().await?;
        let data: Value = json!({
            "actor": record.actor,
            "action": record.action,
            "target": record.target,
            "from": record.from,
            "outcome": record.outcome,
            "status": record.status,
        });
        let mut event = NewEvent::new(
            w.now,
            format!("audit.{}", record.action),
            record.tenant.as_deref(),
        );
        event.data = data.to_string();
        w.events.push(event);
        self.finish(w).await
    }
}

async fn insert_token(
    w: &mut super::Work,
    kind: &str,
    name: &str,
    scopes: &[Scope],
    tenants: &TenantGrant,
    node_id: Option<i64>,
    created_by: &str,
) -> Result<(i64, String)> {
    let secret = format!("sy{}_{}", &kind[..1], random_hex(32));
    // `sya_1a2b3c4d`: enough to tell tokens apart in a list, useless alone.
    let prefix = secret[..12].to_string();
    let id = w
        .tx
        .fetch_one(
            "INSERT INTO tokens (kind, name, secret_hash, prefix, scopes, tenants, node_id, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            args![
                kind,
                name,
                sha256_hex(&secret),
                prefix,
                scopes_json(scopes),
                serde_json::to_string(tenants).expect("tenants"),
                node_id,
                created_by,
                w.now
            ],
        )
        .await?
        .i64("id")?;
    Ok((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_decoy_hash_parses() {
        assert!(PasswordHash::new(DECOY_HASH).is_ok());
    }

    #[test]
    fn generated_passwords_are_long_enough() {
        let p = generate_password();
        assert!(check_password(&p).is_ok());
        assert_ne!(p, generate_password());
    }
}
