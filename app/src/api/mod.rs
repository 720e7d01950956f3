//! Server functions of the console, by domain, and the view models they
//! return.
//!
//! Each function reads the kernel (provided as Leptos context by the server)
//! and returns what a page renders first; the page then patches that state
//! with live events (`components::live`). The `apply` methods that patch
//! live here beside the types, so the server render and the browser agree on
//! one model. Nothing here writes to the kernel.

pub mod access;
pub mod jobengine;
pub mod jobs;
pub mod ops;

#[cfg(feature = "ssr")]
use leptos::prelude::ServerFnError;

/// The kernel from the server's context.
#[cfg(feature = "ssr")]
pub(crate) fn kernel() -> Result<kernel::Kernel, ServerFnError> {
    leptos::prelude::use_context::<kernel::Kernel>()
        .ok_or_else(|| ServerFnError::new("the kernel is not available to this request"))
}

/// Who is asking, as the server's access middleware established it for
/// this request (SPEC §6). Every server function starts here.
#[cfg(feature = "ssr")]
pub(crate) fn principal() -> Result<kernel::model::Principal, ServerFnError> {
    leptos::prelude::use_context::<http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<kernel::model::Principal>().cloned())
        .ok_or_else(|| ServerFnError::new("unauthenticated: sign in first"))
}

/// The caller, if it holds `scope`; else an error naming the scope.
#[cfg(feature = "ssr")]
pub(crate) fn require(
    scope: kernel::model::Scope,
) -> Result<kernel::model::Principal, ServerFnError> {
    let p = principal()?;
    if p.has(scope) {
        Ok(p)
    } else {
        Err(ServerFnError::new(format!(
            "forbidden: {}",
            scope.needed_for()
        )))
    }
}

/// A kernel error as a server function error, without storage internals.
#[cfg(feature = "ssr")]
pub(crate) fn kernel_error(err: kernel::KernelError) -> ServerFnError {
    if err.is_internal() {
        leptos::logging::error!("kernel storage error: {err}");
        ServerFnError::new("the kernel could not read its database")
    } else {
        ServerFnError::new(err.to_string())
    }
}
