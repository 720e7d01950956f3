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

/// JSON as the browser reads it: every decode goes through
/// `serde_json::from_slice`, the reader server functions use for their
/// answers. A type decoded through two readers (`from_str`, `from_slice`,
/// `from_value`) is compiled into the wasm once per reader, so keeping to
/// one keeps the bundle small (SPEC §8).
pub fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, serde_json::Error> {
    serde_json::from_slice(text.as_bytes())
}

/// The codec of the console's resources: the JSON the server renders into
/// the page, decoded by [`from_json`] (not `from_str`, as Leptos' default
/// codec does) when the browser hydrates.
pub struct Json;

impl<T: serde::Serialize> leptos::server::codee::Encoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(val: &T) -> Result<String, serde_json::Error> {
        serde_json::to_string(val)
    }
}

impl<T: serde::de::DeserializeOwned> leptos::server::codee::Decoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(val: &str) -> Result<T, serde_json::Error> {
        from_json(val)
    }
}

/// A server function's answer read once per page (server-rendered, then
/// hydrated from the page), with the [`Json`] codec.
pub type Once<T> = leptos::prelude::OnceResource<T, Json>;

/// [`Once`] of a server function call.
#[track_caller]
pub fn once<T>(fut: impl std::future::Future<Output = T> + Send + 'static) -> Once<T>
where
    T: serde::Serialize + serde::de::DeserializeOwned + Send + Sync + 'static,
{
    Once::new_with_options(fut, false)
}
