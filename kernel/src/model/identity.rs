//! Identity and access on the wire (SPEC §6): scopes, who is calling, users,
//! API tokens and node tokens.
//!
//! A caller is a [`Principal`]: a signed-in user, an API token, a worker
//! node, or the server itself (the embedded worker pool). What it may do is
//! its scopes; what it may see is its tenant grant.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::UnknownName;

named_enum!(
    /// What a caller may do (SPEC §6). `admin` implies every other scope;
    /// `runs.manage` implies `runs.read`.
    Scope {
        /// Read jobs, tasks, attempts, logs, dead-letter, fleet and events.
        RunsRead => "runs.read",
        /// Cancel, retry, replay, resolve, pause, drain, set quotas, submit.
        RunsManage => "runs.manage",
        /// Exports and evidence.
        DownloadsRead => "downloads.read",
        ApprovalsDecide => "approvals.decide",
        /// Users, tokens, and every tenant-wide operation.
        Admin => "admin",
    }
);

impl Scope {
    /// What an operator reads next to a disabled control.
    pub fn needed_for(self) -> String {
        format!("requires the {} scope", self.as_str())
    }
}

named_enum!(
    /// How a caller proved who it is.
    PrincipalKind {
        /// A console session (cookie plus CSRF token).
        User => "user",
        /// A bearer API token.
        Token => "token",
        /// A worker node's token, issued at enrollment.
        Node => "node",
        /// The server itself: its embedded worker pool.
        Internal => "internal",
    }
);

/// The tenant that grants every tenant.
pub const ALL_TENANTS: &str = "*";

/// Which tenants a caller may see: every one (`["*"]`) or a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(transparent)]
pub struct TenantGrant(pub Vec<String>);

impl TenantGrant {
    pub fn all() -> TenantGrant {
        TenantGrant(vec![ALL_TENANTS.to_string()])
    }

    pub fn only(tenants: impl IntoIterator<Item = impl Into<String>>) -> TenantGrant {
        TenantGrant(tenants.into_iter().map(Into::into).collect())
    }

    pub fn is_all(&self) -> bool {
        self.0.iter().any(|t| t == ALL_TENANTS)
    }

    pub fn allows(&self, tenant: &str) -> bool {
        self.is_all() || self.0.iter().any(|t| t == tenant)
    }

    /// `None` for every tenant, else the granted list: what a list query
    /// filters by.
    pub fn restriction(&self) -> Option<Vec<String>> {
        (!self.is_all()).then(|| self.0.clone())
    }
}

impl fmt::Display for TenantGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            f.write_str("all tenants")
        } else {
            f.write_str(&self.0.join(", "))
        }
    }
}

/// Who is calling, as the server established it for one request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Principal {
    pub kind: PrincipalKind,
    /// The user's, token's or node's id (0 for the server itself).
    pub id: i64,
    /// Username, token name or node name.
    pub name: String,
    pub scopes: Vec<Scope>,
    pub tenants: TenantGrant,
    /// For a node token: the node it speaks for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<i64>,
}

/// Whether an event type is of the audit trail (`audit.*`).
pub fn is_audit_event(event_type: &str) -> bool {
    event_type.starts_with("audit.")
}

impl Principal {
    /// Whether the caller holds `scope` (directly or through `admin`, and
    /// `runs.read` through `runs.manage`).
    pub fn has(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| {
            *s == scope
                || *s == Scope::Admin
                || (scope == Scope::RunsRead && *s == Scope::RunsManage)
        })
    }

    pub fn sees_tenant(&self, tenant: &str) -> bool {
        self.tenants.allows(tenant)
    }

    /// Whether it may manage users, tokens and node enrollment: `admin`
    /// over every tenant. Every token, user and node is a grant of
    /// tenants, so an admin of some tenants could otherwise issue itself
    /// a grant of all of them.
    pub fn manages_identity(&self) -> bool {
        self.has(Scope::Admin) && self.tenants.is_all()
    }

    /// Whether an event of `event_type` and `tenant` is visible: events of
    /// granted tenants; events of no tenant (nodes, queues, audit) only with
    /// every tenant; and the audit trail (`audit.*`: who did what, from
    /// where) only with `downloads.read`, as its export (SPEC §6: evidence).
    pub fn sees_event(&self, event_type: &str, tenant: Option<&str>) -> bool {
        (self.sees_audit() || !is_audit_event(event_type))
            && match tenant {
                Some(t) => self.sees_tenant(t),
                None => self.tenants.is_all(),
            }
    }

    /// Whether it may read the audit trail.
    pub fn sees_audit(&self) -> bool {
        self.has(Scope::DownloadsRead)
    }

    /// A short description for audit records and logs, e.g. `user:alice`.
    pub fn actor(&self) -> String {
        format!("{}:{}", self.kind, self.name)
    }
}

/// The tenant selector of the console: the tenants the operator may pick
/// from, and the ones picked (empty: every granted tenant).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TenantSelection {
    pub available: Vec<String>,
    pub selected: Vec<String>,
}

/// A console user, as listed (never with the password hash).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct User {
    pub id: i64,
    pub username: String,
    pub scopes: Vec<Scope>,
    pub tenants: TenantGrant,
    pub disabled: bool,
    pub created_at: i64,
}

/// An API or node token, as listed: its secret is shown once, at creation,
/// and only its first characters (`prefix`) afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    /// `api` or `node`.
    pub kind: String,
    pub prefix: String,
    pub scopes: Vec<Scope>,
    pub tenants: TenantGrant,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<i64>,
    /// Who created it (`user:admin`, `cli`, `enrollment`).
    pub created_by: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
}

/// `POST /api/v1/auth/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    pub name: String,
    pub scopes: Vec<Scope>,
    /// Tenants granted; `["*"]` for all.
    pub tenants: Vec<String>,
}

/// A token just created: `secret` is the bearer value, shown this once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedToken {
    pub token: ApiToken,
    pub secret: String,
}

/// `POST /api/v1/auth/login`.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for LoginRequest {
    // Never print a password, not even in a debug log.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LoginRequest")
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// The answer to a login: the CSRF token to send as `X-CSRF-Token` on every
/// state-changing request of this session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LoginResponse {
    pub csrf_token: String,
    pub principal: Principal,
}

/// `POST /api/v1/nodes/register` with the enrollment secret: the node and
/// its token (shown this once).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Enrollment {
    pub node: super::Node,
    pub token: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_implies_every_scope_and_manage_implies_read() {
        let p = |scopes: Vec<Scope>| Principal {
            kind: PrincipalKind::Token,
            id: 1,
            name: "t".into(),
            scopes,
            tenants: TenantGrant::only(["a"]),
            node_id: None,
        };
        assert!(Scope::ALL.iter().all(|s| p(vec![Scope::Admin]).has(*s)));
        assert!(p(vec![Scope::RunsManage]).has(Scope::RunsRead));
        assert!(!p(vec![Scope::RunsRead]).has(Scope::RunsManage));
        assert!(p(vec![]).sees_tenant("a") && !p(vec![]).sees_tenant("b"));
        assert_eq!("runs.read".parse::<Scope>().unwrap(), Scope::RunsRead);
        // The JSON spelling is the contract's (SPEC §6), dots included.
        assert_eq!(
            serde_json::to_string(&Scope::RunsManage).unwrap(),
            "\"runs.manage\""
        );
        assert_eq!(
            serde_json::from_str::<Scope>("\"approvals.decide\"").unwrap(),
            Scope::ApprovalsDecide
        );
    }
}
