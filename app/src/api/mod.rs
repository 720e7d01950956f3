//! Server functions of the console, by domain, and the view models they
//! return.
//!
//! Each function reads the kernel (provided as Leptos context by the server)
//! and returns what a page renders first; the page then patches that state
//! with live events (`components::live`). The `apply` methods that patch
//! live here beside the types, so the server render and the browser agree on
//! one model. Nothing here writes to the kernel.

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
