//! Executing tasks: the executor trait with the built-in kinds, and a worker
//! pool that runs them under leases from any [`LeaseSource`].
//!
//! In-process use (what `switchyard serve` runs by default):
//!
//! ```no_run
//! # async fn demo(kernel: kernel::Kernel) -> kernel::Result<()> {
//! use std::sync::Arc;
//! use kernel::model::NewNode;
//! use kernel::worker::{Executors, PoolConfig, Shutdown, WorkerPool};
//!
//! let executors = Executors::builtin();
//! let node = kernel
//!     .register_node(&NewNode {
//!         name: "embedded".into(),
//!         kinds: executors.kinds(),
//!         capacity: 64,
//!         labels: Default::default(),
//!         file_scopes: vec![],
//!     })
//!     .await?;
//! let pool = WorkerPool::start(Arc::new(kernel.clone()), executors, PoolConfig::new(node.id, 64));
//! // …
//! pool.shutdown(Shutdown::Finish { timeout: std::time::Duration::from_secs(30) }).await;
//! # Ok(()) }
//! ```
//!
//! A remote worker implements [`LeaseSource`] over HTTP and starts the same
//! pool. Nothing in this module touches the database directly.

mod builtin;
mod executor;
mod pool;

pub use builtin::{hide_from_commands, Exec, Noop, Sleep};
pub use executor::{
    BoxFuture, CancelHandle, CancelReason, CancelSignal, Executor, Executors, LogSink, TaskOutcome,
    TaskRun,
};
pub use pool::{
    LeaseSource, PoolConfig, PoolStats, Shutdown, SourceError, SourceResult, WorkerPool,
};
