//! `switchyard worker` (its `run`, as the command calls it) against a real
//! server on a socket, reached through a proxy this test can cut: leases
//! shorter than the default heartbeat, a server out of reach while a task
//! ends, and a node registered again under the worker's name.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kernel::model::{NewJob, NewNode, NewTask};
use kernel::{Kernel, KernelConfig};
use leptos::prelude::LeptosOptions;
use serde_json::{json, Value};
use server::config::WorkerArgs;
use server::worker::HttpLeaseSource;
use server::{app, AppState};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

const SECRET: &str = "worker-test-secret";
/// Leases of 3 s: the worker's old fixed renewal every 10 s lost them.
const LEASE_MS: i64 = 3_000;

/// A TCP proxy in front of the server. `cut` drops every connection and
/// refuses new ones (as a server restart does); `restore` lets them in.
struct Proxy {
    addr: std::net::SocketAddr,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    async fn start(upstream: std::net::SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(AtomicBool::new(true));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (o, l) = (open.clone(), links.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else {
                    return;
                };
                if !o.load(Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                l.lock().unwrap().push(tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                }));
            }
        });
        Proxy { addr, open, links }
    }

    fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        for link in self.links.lock().unwrap().drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

struct Harness {
    kernel: Kernel,
    proxy: Proxy,
    _dir: tempfile::TempDir,
}

async fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite:{}", dir.path().join("worker.db").display());
    let config = KernelConfig {
        lease_ms: LEASE_MS,
        ..KernelConfig::default()
    };
    let kernel = Kernel::open(&url, config).await.unwrap();
    let router = app(AppState::new(
        LeptosOptions::builder().output_name("switchyard").build(),
        kernel.clone(),
        Default::default(),
        server::auth::AuthSettings {
            enrollment_secret: Some(SECRET.into()),
            ..Default::default()
        },
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    // Lapsed leases are swept as in a real server.
    std::mem::forget(kernel.start_background());
    let proxy = Proxy::start(upstream).await;
    Harness {
        kernel,
        proxy,
        _dir: dir,
    }
}

impl Harness {
    /// A worker that runs until `stop` is sent (or dropped).
    fn start_worker(&self, name: &str) -> (JoinHandle<Result<(), String>>, oneshot::Sender<()>) {
        let args = WorkerArgs {
            server: format!("http://{}", self.proxy.addr),
            name: Some(name.to_string()),
            slots: 2,
            kinds: vec![],
            enrollment_secret: SECRET.to_string(),
            labels: vec![],
            shutdown_grace_s: 1,
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let run = server::worker::run(args, async {
            let _ = stopped.await;
        });
        (tokio::spawn(run), stop)
    }

    async fn submit(&self, name: &str, kind: &str, payload: Value) -> i64 {
        let job = NewJob {
            tasks: vec![NewTask::new("only", kind, payload)],
            ..NewJob::single(name, kind, json!({}))
        };
        self.kernel.submit(job).await.unwrap().job.id
    }

    /// Waits (up to 60 s) until `check` holds for the job's detail.
    async fn wait_for(&self, job: i64, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let detail = serde_json::to_value(self.kernel.get_job(job).await.unwrap()).unwrap();
            if check(&detail) {
                return detail;
            }
            assert!(Instant::now() < deadline, "{what}: {detail:#}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn attempts(detail: &Value) -> Vec<String> {
    detail["tasks"][0]["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["state"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_worker_keeps_short_leases_and_its_reports_outlast_an_outage() {
    let h = harness().await;
    let (worker, stop) = h.start_worker("steady");

    // A task of more than two leases runs once, on one attempt.
    let job = h.submit("long", "sleep", json!({ "ms": 7_000 })).await;
    let detail = h
        .wait_for(job, "the long task ends", |d| {
            d["state"] != "running" && d["state"] != "queued"
        })
        .await;
    assert_eq!(detail["state"], "succeeded", "{detail:#}");
    assert_eq!(attempts(&detail), ["succeeded"]);

    // The server is out of reach when a task ends: its completion is sent
    // again once it is back, within the lease (renewed meanwhile), and the
    // command does not run a second time.
    let dir = tempfile::tempdir().unwrap();
    let runs = dir.path().join("runs");
    let script = format!("echo run >> '{}'; sleep 1", runs.display());
    let job = h
        .submit(
            "outage",
            "exec",
            json!({ "cmd": "sh", "args": ["-c", script] }),
        )
        .await;
    h.wait_for(job, "the exec task starts", |d| {
        d["tasks"][0]["state"] == "leased"
    })
    .await;
    h.proxy.cut();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    h.proxy.restore();
    let detail = h
        .wait_for(job, "the exec task ends", |d| {
            d["state"] != "running" && d["state"] != "queued"
        })
        .await;
    assert_eq!(detail["state"], "succeeded", "{detail:#}");
    assert_eq!(attempts(&detail), ["succeeded"]);
    // Past the lease's end: had the attempt been dropped and expired, the
    // task would have run again by now.
    tokio::time::sleep(Duration::from_millis(LEASE_MS as u64 + 1_500)).await;
    let ran = std::fs::read_to_string(&runs).unwrap();
    assert_eq!(ran.lines().count(), 1, "the command ran {ran:?}");
    assert!(!worker.is_finished());

    // Stopped, the worker signs its node off: offline at once, not a
    // minute later when the sweep misses its heartbeats.
    let nodes = h.kernel.list_nodes().await.unwrap();
    let node = nodes.iter().find(|n| n.name == "steady").unwrap();
    assert_eq!(node.status, kernel::model::NodeStatus::Online);
    stop.send(()).unwrap();
    worker.await.unwrap().expect("a clean stop");
    let node = h.kernel.get_node(node.id).await.unwrap();
    assert_eq!(node.status, kernel::model::NodeStatus::Offline);
    assert!(h
        .kernel
        .events_after(0, 1_000)
        .await
        .unwrap()
        .items
        .iter()
        .any(|e| e.event_type == "node.offline" && e.data["reason"] == "signed off"));
}

/// Another worker registering under this worker's name revokes its token:
/// it stops its tasks and exits with an error that says why, instead of
/// running them on with leases it can no longer renew (beside their
/// second run) and retrying forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_worker_whose_name_is_taken_stops_and_says_why() {
    let h = harness().await;
    let (worker, _stop) = h.start_worker("twin");
    let job = h.submit("long", "sleep", json!({ "ms": 60_000 })).await;
    h.wait_for(job, "the task starts", |d| {
        d["tasks"][0]["state"] == "leased"
    })
    .await;
    let other = HttpLeaseSource::new(&format!("http://{}", h.proxy.addr));
    other
        .enroll(
            &NewNode {
                name: "twin".into(),
                kinds: vec!["sleep".into()],
                capacity: 1,
                labels: Default::default(),
                file_scopes: vec![],
            },
            SECRET,
        )
        .await
        .unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), worker)
        .await
        .expect("the worker stops")
        .unwrap();
    let message = ended.expect_err("it stops with an error");
    assert!(message.contains("twin"), "{message}");
    assert!(message.contains("no longer accepts"), "{message}");
}
