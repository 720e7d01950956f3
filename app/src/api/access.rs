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

/// Users and tokens; only an admin may read them.
#[server(input = GetUrl)]
pub async fn get_access_view() -> Result<AccessView, ServerFnError> {
    use super::{kernel, kernel_error, require};

    require(kernel::model::Scope::Admin)?;
    let kernel = kernel()?;
    Ok(AccessView {
        users: kernel.list_users().await.map_err(kernel_error)?,
        tokens: kernel.list_tokens().await.map_err(kernel_error)?,
    })
}
