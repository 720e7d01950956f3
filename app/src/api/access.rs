//! The access page (`/ops/access`): users and tokens, for admins.

use kernel::model::{ApiToken, User};
use leptos::prelude::*;
use leptos::server_fn::codec::GetUrl;
use serde::{Deserialize, Serialize};

/// What the access page shows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AccessView {
    pub users: Vec<User>,
    pub tokens: Vec<ApiToken>,
}

/// Users and tokens; only an admin of every tenant may read them.
#[server(input = GetUrl)]
pub async fn get_access_view() -> Result<AccessView, ServerFnError> {
    use super::{kernel, kernel_error, require};

    let caller = require(kernel::model::Scope::Admin)?;
    if !caller.manages_identity() {
        return Err(ServerFnError::new(
            "forbidden: users and tokens are managed by an admin of every tenant, with every tenant picked",
        ));
    }
    let kernel = kernel()?;
    Ok(AccessView {
        users: kernel.list_users().await.map_err(kernel_error)?,
        tokens: kernel.list_tokens().await.map_err(kernel_error)?,
    })
}
