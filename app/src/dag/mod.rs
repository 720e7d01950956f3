//! The task graph of a job as the console draws it.

pub mod layout;
