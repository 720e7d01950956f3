//! `switchyard worker`: a worker node that claims tasks from a server over
//! HTTP and runs them with the kernel's executors and worker pool.
//!
//! [`HttpLeaseSource`] is the worker protocol of SPEC §9 as the pool needs
//! it; it uses the batch heartbeat and complete endpoints so one round trip
//! carries many leases. It never touches a database.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use kernel::model::{
    ClaimRequest, Completion, ErrorBody, HeartbeatOutcome, Lease, LeaseProof, NewLogLine, NewNode,
    TaskFailure,
};
use kernel::worker::{
    BoxFuture, Exec, Executors, LeaseSource, Noop, PoolConfig, Shutdown, Sleep, SourceError,
    SourceResult, WorkerPool,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::fleet::{Registered, ENROLLMENT_HEADER};
use crate::api::leases::{
    Appended, BatchRequest, BatchResponse, ClaimResponse, Done, FailRequest, LeaseRef, LogRequest,
    MAX_WAIT_MS,
};
use crate::config::WorkerArgs;

/// The lease protocol spoken to a server over HTTP.
#[derive(Clone)]
pub struct HttpLeaseSource {
    client: reqwest::Client,
    base: String,
    /// The node token from enrollment, sent on every lease call.
    token: Arc<std::sync::RwLock<Option<String>>>,
}

/// Longest a call to the server may take: twice the longest a claim waits
/// for work. A call still unanswered then is on a connection taken for dead
/// (a server or a network gone without closing it); it fails, and the pool
/// retries on a fresh one instead of waiting forever.
pub const CALL_TIMEOUT: Duration = Duration::from_millis(2 * MAX_WAIT_MS as u64);

impl HttpLeaseSource {
    /// `server` is the server's base URL, e.g. `http://127.0.0.1:3000`.
    pub fn new(server: &str) -> HttpLeaseSource {
        HttpLeaseSource::with_timeout(server, CALL_TIMEOUT)
    }

    /// [`HttpLeaseSource::new`] with another limit on each call (and on
    /// connecting, at most 10 s).
    pub fn with_timeout(server: &str, timeout: Duration) -> HttpLeaseSource {
        HttpLeaseSource {
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(16)
                .tcp_nodelay(true)
                .connect_timeout(timeout.min(Duration::from_secs(10)))
                .timeout(timeout)
                .build()
                .expect("HTTP client"),
            base: format!("{}/api/v1", server.trim_end_matches('/')),
            token: Arc::default(),
        }
    }

    async fn post<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> SourceResult<R> {
        let mut request = self.client.post(format!("{}{path}", self.base)).json(body);
        let token = self.token.read().expect("token lock").clone();
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        self.send(request).await
    }

    async fn send<R: DeserializeOwned>(&self, request: reqwest::RequestBuilder) -> SourceResult<R> {
        let response = request.send().await.map_err(transport)?;
        if response.status().is_success() {
            let url = response.url().clone();
            let body = response.bytes().await.map_err(transport)?;
            // Answered, but not as the API answers (a proxy's page, the
            // console's login page after a redirect): asking again will
            // not help.
            serde_json::from_slice(&body).map_err(|e| SourceError {
                code: "protocol".to_string(),
                message: format!("{url} did not answer as Switchyard's API does: {e}"),
            })
        } else {
            let status = response.status();
            Err(match response.json::<ErrorBody>().await {
                Ok(body) => SourceError::from(body),
                Err(_) => SourceError {
                    code: "http".to_string(),
                    message: format!("the server answered {status}"),
                },
            })
        }
    }

    /// Enrolls (or re-enrolls) this node with the server's enrollment
    /// secret, keeps the node token it is given for every later call, and
    /// returns the node's id.
    pub async fn enroll(&self, node: &NewNode, enrollment_secret: &str) -> SourceResult<i64> {
        Ok(self.register(node, enrollment_secret).await?.node_id)
    }

    /// [`HttpLeaseSource::enroll`], answering the whole registration.
    pub async fn register(
        &self,
        node: &NewNode,
        enrollment_secret: &str,
    ) -> SourceResult<Registered> {
        let request = self
            .client
            .post(format!("{}/nodes/register", self.base))
            .header(ENROLLMENT_HEADER, enrollment_secret)
            .json(node);
        let registered: Registered = self.send(request).await?;
        *self.token.write().expect("token lock") = Some(registered.token.clone());
        Ok(registered)
    }
}

fn transport(err: reqwest::Error) -> SourceError {
    SourceError {
        code: "transport".to_string(),
        message: err.to_string(),
    }
}

fn per_item<T>(response: BatchResponse<T>) -> Vec<SourceResult<T>> {
    response
        .results
        .into_iter()
        .map(|item| match (item.ok, item.error) {
            (_, Some(error)) => Err(SourceError::from(error)),
            (Some(value), None) => Ok(value),
            (None, None) => Err(SourceError {
                code: "protocol".to_string(),
                message: format!("no result for attempt {}", item.attempt_id),
            }),
        })
        .collect()
}

impl LeaseSource for HttpLeaseSource {
    fn claim(&self, req: ClaimRequest) -> BoxFuture<'_, SourceResult<Vec<Lease>>> {
        Box::pin(async move {
            let response: ClaimResponse = self.post("/leases/claim", &req).await?;
            Ok(response.leases)
        })
    }

    fn heartbeat_many(
        &self,
        leases: Vec<(i64, LeaseProof)>,
    ) -> BoxFuture<'_, SourceResult<Vec<SourceResult<HeartbeatOutcome>>>> {
        Box::pin(async move {
            let items = leases
                .into_iter()
                .map(|(attempt_id, proof)| LeaseRef {
                    attempt_id,
                    lease_token: proof.lease_token,
                    epoch: proof.epoch,
                    output: None,
                })
                .collect();
            let response: BatchResponse<HeartbeatOutcome> = self
                .post("/leases/heartbeat", &BatchRequest { items })
                .await?;
            Ok(per_item(response))
        })
    }

    fn complete_many(
        &self,
        items: Vec<Completion>,
    ) -> BoxFuture<'_, SourceResult<Vec<SourceResult<()>>>> {
        Box::pin(async move {
            let items = items
                .into_iter()
                .map(|c| LeaseRef {
                    attempt_id: c.attempt_id,
                    lease_token: c.proof.lease_token,
                    epoch: c.proof.epoch,
                    output: c.output,
                })
                .collect();
            let response: BatchResponse<Done> = self
                .post("/leases/complete", &BatchRequest { items })
                .await?;
            Ok(per_item(response)
                .into_iter()
                .map(|item| item.map(|_| ()))
                .collect())
        })
    }

    fn fail(
        &self,
        attempt_id: i64,
        proof: LeaseProof,
        failure: TaskFailure,
    ) -> BoxFuture<'_, SourceResult<()>> {
        Box::pin(async move {
            let body = FailRequest {
                lease_token: proof.lease_token,
                epoch: proof.epoch,
                error: failure,
            };
            let _: serde_json::Value = self
                .post(&format!("/leases/{attempt_id}/fail"), &body)
                .await?;
            Ok(())
        })
    }

    fn release(&self, attempt_id: i64, proof: LeaseProof) -> BoxFuture<'_, SourceResult<()>> {
        Box::pin(async move {
            let _: serde_json::Value = self
                .post(&format!("/leases/{attempt_id}/release"), &proof)
                .await?;
            Ok(())
        })
    }

    fn append_log(
        &self,
        attempt_id: i64,
        proof: LeaseProof,
        lines: Vec<NewLogLine>,
    ) -> BoxFuture<'_, SourceResult<usize>> {
        Box::pin(async move {
            let body = LogRequest {
                lease_token: proof.lease_token,
                epoch: proof.epoch,
                lines,
            };
            let appended: Appended = self
                .post(&format!("/leases/{attempt_id}/log"), &body)
                .await?;
            Ok(appended.appended)
        })
    }

    fn sign_off(&self, node_id: i64) -> BoxFuture<'_, SourceResult<()>> {
        Box::pin(async move {
            let _: serde_json::Value = self
                .post(&format!("/nodes/{node_id}/offline"), &serde_json::json!({}))
                .await?;
            Ok(())
        })
    }
}

/// Runs a worker node until SIGINT/SIGTERM, then finishes running tasks
/// (up to the grace period) and releases what is left.
pub async fn run(
    args: WorkerArgs,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    args.check()?;
    let executors = executors_for(&args.kinds)?;
    let name = args.name.clone().unwrap_or_else(default_node_name);
    check_server_url(&args.server)?;
    let source = HttpLeaseSource::new(&args.server);
    let node = NewNode {
        name: name.clone(),
        kinds: executors.kinds(),
        capacity: args.slots as i64,
        labels: args.labels.iter().cloned().collect::<BTreeMap<_, _>>(),
        file_scopes: vec![],
    };
    let registered = enroll_with_retry(&source, &node, &args.enrollment_secret).await?;
    let node_id = registered.node_id;
    tracing::info!(node_id, %name, kinds = ?node.kinds, slots = args.slots, server = %args.server, lease_ms = registered.lease_ms, "worker registered");

    let pool = WorkerPool::start(
        Arc::new(source),
        executors,
        PoolConfig::new(node_id, args.slots).for_leases_of(registered.lease_ms),
    );
    let mut lost = pool.lost();
    let lost_why = tokio::select! {
        _ = shutdown => None,
        why = lost.wait_for(Option::is_some) => why.ok().and_then(|why| why.clone()),
    };
    if let Some(why) = lost_why {
        // Its tasks are stopped already; nothing it reports is accepted.
        pool.shutdown(Shutdown::Release).await;
        return Err(format!(
            "the server no longer accepts node {name:?} ({why}); was it registered again by \
             another worker of that name, or its token revoked? Stopped."
        ));
    }
    tracing::info!(
        running = pool.running(),
        "worker stopping: finishing running tasks"
    );
    let stats = pool
        .shutdown(Shutdown::Finish {
            timeout: Duration::from_secs(args.shutdown_grace_s),
        })
        .await;
    let [claimed, succeeded, failed, cancelled, released, refused] = stats.snapshot();
    tracing::info!(
        claimed,
        succeeded,
        failed,
        cancelled,
        released,
        refused,
        "worker stopped"
    );
    Ok(())
}

/// The built-in executors, restricted to `kinds` when any are named.
pub fn executors_for(kinds: &[String]) -> Result<Executors, String> {
    if kinds.is_empty() {
        return Ok(Executors::builtin());
    }
    kinds
        .iter()
        .try_fold(Executors::empty(), |executors, kind| {
            Ok(match kind.as_str() {
                "noop" => executors.with("noop", Noop),
                "sleep" => executors.with("sleep", Sleep),
                "exec" => executors.with("exec", Exec),
                other => {
                    return Err(format!(
                        "unknown task kind {other:?}: the built-in kinds are {}",
                        Executors::builtin().kinds().join(", ")
                    ))
                }
            })
        })
}

/// `--server` must be an `http://` or `https://` base URL: scheme, host and
/// port, nothing after (the API's paths are joined to it).
fn check_server_url(server: &str) -> Result<(), String> {
    match reqwest::Url::parse(server) {
        Ok(url)
            if matches!(url.scheme(), "http" | "https")
                && url.host().is_some()
                && matches!(url.path(), "" | "/")
                && url.query().is_none()
                && url.fragment().is_none() =>
        {
            Ok(())
        }
        _ => Err(format!(
            "--server {server:?} is not the server's base URL: http:// or https://, a host and \
             a port, nothing after (e.g. http://127.0.0.1:3000)"
        )),
    }
}

/// Enrolls, retrying while the server is unreachable (it may be starting).
async fn enroll_with_retry(
    source: &HttpLeaseSource,
    node: &NewNode,
    secret: &str,
) -> Result<Registered, String> {
    let mut delay = Duration::from_millis(200);
    let mut last = None;
    for _ in 0..20 {
        match source.register(node, secret).await {
            Ok(registered) => return Ok(registered),
            Err(err) if err.is_transient() => {
                tracing::warn!(error = %err, "server not reachable yet; retrying");
                last = Some(err);
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(err) => return Err(format!("enrolling node {:?}: {err}", node.name)),
        }
    }
    Err(format!(
        "the server did not answer; giving up (last: {})",
        last.map(|e| e.to_string()).unwrap_or_default()
    ))
}

fn default_node_name() -> String {
    node_name("worker", &std::process::id().to_string())
}

/// `{kind}-{host}-{suffix}`: unique per machine, as a node name must be
/// (an identifier of at most 64 characters; the host name is shortened to
/// fit and any other character becomes `-`).
pub fn node_name(kind: &str, suffix: &str) -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".to_string());
    node_name_on(&host, kind, suffix)
}

fn node_name_on(host: &str, kind: &str, suffix: &str) -> String {
    let host: String = host
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let room = 64usize.saturating_sub(kind.len() + suffix.len() + 2);
    let host: String = host.chars().take(room).collect();
    format!("{kind}-{host}-{suffix}")
}

#[cfg(test)]
mod tests {
    use super::{check_server_url, node_name, node_name_on};

    #[test]
    fn the_server_url_is_a_base_url() {
        for ok in [
            "http://127.0.0.1:3000",
            "https://sy.example.com/",
            "http://h:1",
        ] {
            assert!(check_server_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "127.0.0.1:3000",
            "ftp://h:1",
            "http://h:3000/api/v1",
            "http://h:3000/?x=1",
            "http://h:3000/#f",
        ] {
            assert!(check_server_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn node_names_are_identifiers_of_this_machine() {
        let name = node_name("embedded", "3000");
        assert!(
            name.starts_with("embedded-") && name.ends_with("-3000"),
            "{name}"
        );
        assert!(
            name.len() > "embedded--3000".len(),
            "the host is in it: {name}"
        );
        let odd = node_name_on(&format!("{}_x y", "h".repeat(80)), "worker", "4194304");
        assert!(odd.ends_with("-4194304"), "{odd}");
        for name in [name, odd] {
            assert!(name.len() <= 64, "{name}");
            assert!(
                name.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')),
                "{name}"
            );
        }
    }
}
