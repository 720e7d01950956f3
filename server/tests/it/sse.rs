//! The live streams (`/api/v1/events/stream`, `/api/v1/jobs/{id}/stream`)
//! over real sockets: order, exact resumption under load, heartbeats,
//! filters, shutdown, and — on Postgres — delivery across two server
//! instances sharing one database.
//!
//! Nothing here asserts a duration: time limits only stop a broken test from
//! hanging.

use std::collections::VecDeque;
use std::time::Duration;

use kernel::model::{Event, NewJob};
use kernel::{Kernel, KernelConfig};
use leptos::prelude::LeptosOptions;
use serde_json::{json, Value};
use server::api::stream::{LiveConfig, LiveStreams};
use server::{app, AppState};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Longest a test waits for anything before it fails as hung.
const PATIENCE: Duration = Duration::from_secs(30);

struct Server {
    base: String,
    /// An admin token of every tenant on this server's database.
    token: String,
    kernel: Kernel,
    shutdown: CancellationToken,
    served: JoinHandle<()>,
}

async fn serve(kernel: Kernel, config: LiveConfig) -> Server {
    let shutdown = CancellationToken::new();
    let mut state = AppState::new(
        LeptosOptions::builder().output_name("switchyard").build(),
        kernel.clone(),
        shutdown.clone(),
        Default::default(),
    );
    state.live = LiveStreams::new(config, shutdown.clone());
    let token = kernel
        .create_token(
            &kernel::model::NewToken {
                name: "sse-test".into(),
                scopes: vec![kernel::model::Scope::Admin],
                tenants: vec!["*".into()],
            },
            "test",
        )
        .await
        .unwrap()
        .secret;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    TOKENS.lock().unwrap().insert(base.clone(), token.clone());
    let signal = shutdown.clone();
    let served = tokio::spawn(async move {
        axum::serve(listener, app(state))
            .with_graceful_shutdown(signal.cancelled_owned())
            .await
            .unwrap();
    });
    Server {
        base,
        token,
        kernel,
        shutdown,
        served,
    }
}

async fn sqlite_server(dir: &tempfile::TempDir, config: LiveConfig) -> Server {
    let url = format!("sqlite:{}", dir.path().join("sse.db").display());
    let kernel = Kernel::open(&url, KernelConfig::default()).await.unwrap();
    serve(kernel, config).await
}

/// The admin token of each server by its base URL, for [`Sse::open`].
static TOKENS: std::sync::LazyLock<std::sync::Mutex<std::collections::HashMap<String, String>>> =
    std::sync::LazyLock::new(Default::default);

/// The token of the server `url` belongs to.
fn token_for(url: &str) -> String {
    TOKENS
        .lock()
        .unwrap()
        .iter()
        .find(|(base, _)| url.starts_with(&format!("{base}/")))
        .map(|(_, token)| token.clone())
        .expect("a server started by serve()")
}

/// One parsed SSE frame.
#[derive(Debug, Clone)]
struct Frame {
    id: Option<i64>,
    event: String,
    data: Value,
}

/// A minimal SSE reader over a streaming HTTP response.
struct Sse {
    response: reqwest::Response,
    buffer: String,
    frames: VecDeque<Frame>,
}

impl Sse {
    async fn open(url: &str, last_event_id: Option<i64>) -> Sse {
        let mut request = reqwest::Client::new().get(url).bearer_auth(token_for(url));
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        assert_eq!(
            response.headers()["content-type"],
            "text/event-stream",
            "{url}"
        );
        Sse {
            response,
            buffer: String::new(),
            frames: VecDeque::new(),
        }
    }

    /// The next frame, or `None` when the server ended the stream.
    async fn next(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = self.frames.pop_front() {
                return Some(frame);
            }
            let chunk = tokio::time::timeout(PATIENCE, self.response.chunk())
                .await
                .expect("the stream went silent")
                .unwrap()?;
            self.buffer.push_str(std::str::from_utf8(&chunk).unwrap());
            while let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut frame = Frame {
                    id: None,
                    event: "message".into(),
                    data: Value::Null,
                };
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id: ") {
                        frame.id = Some(v.parse().unwrap());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        frame.event = v.to_string();
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        frame.data = serde_json::from_str(v).unwrap();
                    }
                }
                self.frames.push_back(frame);
            }
        }
    }

    /// The next frame that carries a log event (skipping `connection.*`).
    async fn next_event(&mut self) -> Event {
        loop {
            let frame = self.next().await.expect("the stream ended early");
            if let Some(id) = frame.id {
                let event: Event = serde_json::from_value(frame.data).unwrap();
                assert_eq!(event.seq, id, "id: is the event's seq");
                assert_eq!(event.event_type, frame.event, "event: is its type");
                return event;
            }
            assert!(
                frame.event.starts_with("connection."),
                "a frame without id must be a connection frame: {frame:?}"
            );
        }
    }
}

async fn all_events(kernel: &Kernel) -> Vec<Event> {
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let page = kernel.events_after(after, 1_000).await.unwrap();
        if page.items.is_empty() {
            return out;
        }
        after = page.next_after;
        out.extend(page.items);
    }
}

fn job(name: &str) -> NewJob {
    NewJob::single(name, "noop", json!({}))
}

#[tokio::test]
async fn a_subscriber_receives_every_event_in_order_with_id_and_type() {
    let dir = tempfile::tempdir().unwrap();
    let server = sqlite_server(&dir, LiveConfig::default()).await;
    server.kernel.submit(job("before")).await.unwrap();

    let mut sse = Sse::open(
        &format!("{}/api/v1/events/stream?after=0", server.base),
        None,
    )
    .await;
    let connected = sse.next().await.unwrap();
    assert_eq!(connected.event, "connection.connected");
    assert_eq!(connected.data["after"], 0);

    for i in 0..20 {
        server.kernel.submit(job(&format!("j{i}"))).await.unwrap();
    }
    let log = all_events(&server.kernel).await;
    let mut received = Vec::new();
    while received.len() < log.len() {
        received.push(sse.next_event().await);
    }
    assert_eq!(received, log, "the log, in order, each event once");
}

/// A resume point below what retention deleted is told what it missed
/// (it once got the remaining events as if nothing were missing), and one
/// beyond the log starts at the head and says so (it once waited for good:
/// every new event had a lower seq). The events API says the same.
#[tokio::test]
async fn a_resume_point_retention_passed_or_beyond_the_log_is_said_so() {
    let dir = tempfile::tempdir().unwrap();
    let server = sqlite_server(&dir, LiveConfig::default()).await;
    for i in 0..5 {
        server.kernel.submit(job(&format!("old{i}"))).await.unwrap();
    }
    let old = all_events(&server.kernel).await;
    let deleted = old.last().unwrap().seq;
    server.kernel.submit(job("recent")).await.unwrap();
    // The first five events are eight days old, past the 7-day retention.
    let url = format!("sqlite:{}", dir.path().join("sse.db").display());
    {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&url).await.unwrap();
        sqlx::query("UPDATE events SET ts = ts - 8 * 86400000 WHERE seq <= ?")
            .bind(deleted)
            .execute(&mut c)
            .await
            .unwrap();
    }
    let report = server.kernel.apply_retention().await.unwrap();
    assert_eq!(report.events, old.len() as u64);

    let mut sse = Sse::open(&format!("{}/api/v1/events/stream", server.base), Some(1)).await;
    let connected = sse.next().await.unwrap();
    assert_eq!(connected.event, "connection.connected");
    assert_eq!(connected.data["deleted_through"], deleted, "{connected:?}");
    assert_eq!(sse.next_event().await.seq, deleted + 1, "then what is left");

    let head = all_events(&server.kernel).await.last().unwrap().seq;
    let mut sse = Sse::open(
        &format!("{}/api/v1/events/stream", server.base),
        Some(head + 100),
    )
    .await;
    let connected = sse.next().await.unwrap();
    assert_eq!(connected.data["reset"], true, "{connected:?}");
    assert_eq!(connected.data["after"], head);
    server.kernel.submit(job("next")).await.unwrap();
    assert!(sse.next_event().await.seq > head, "the stream goes on");

    let client = crate::common::client_with(&server.token);
    let page = crate::common::get(&client, format!("{}/api/v1/events?after=1", server.base)).await;
    assert_eq!(page["deleted_through"], deleted, "{page}");
    let beyond = client
        .get(format!(
            "{}/api/v1/events?after={}",
            server.base,
            head + 1_000
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(beyond.status(), 409);
}

/// Small enough that some reconnects replay from the log rather than from
/// the shared tail; heartbeats let the reader notice the producer is done.
fn resumption_config() -> LiveConfig {
    LiveConfig {
        tail_capacity: 64,
        page: 50,
        heartbeat_every: Duration::from_millis(100),
        ..LiveConfig::default()
    }
}

#[tokio::test]
async fn reconnecting_with_last_event_id_while_a_producer_writes_yields_the_log_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let server = sqlite_server(&dir, resumption_config()).await;
    exact_resumption(&server).await;
}

/// The same on Postgres, where seqs are increasing but not contiguous.
#[tokio::test]
async fn on_postgres_reconnecting_while_a_producer_writes_yields_the_log_exactly() {
    let Some(url) = postgres_url() else { return };
    let db = fresh_postgres_database(&url).await;
    let kernel = Kernel::open(&db, KernelConfig::default()).await.unwrap();
    let background = kernel.start_background();
    let server = serve(kernel, resumption_config()).await;
    exact_resumption(&server).await;
    server.shutdown.cancel();
    let _ = server.served.await;
    background.shutdown().await;
}

/// Disconnects at random points and reconnects with `Last-Event-ID` while a
/// producer writes; the union received must be the log, exactly.
async fn exact_resumption(server: &Server) {
    let producer = {
        let kernel = server.kernel.clone();
        tokio::spawn(async move {
            for i in 0..300 {
                kernel.submit(job(&format!("p{i}"))).await.unwrap();
                if i % 7 == 0 {
                    tokio::time::sleep(Duration::from_millis(3)).await;
                }
            }
        })
    };

    // A cheap pseudo-random sequence of disconnect points, different per run.
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };

    let url = format!("{}/api/v1/events/stream", server.base);
    let mut received: Vec<Event> = Vec::new();
    let mut last_id = 0;
    let mut connections = 0;
    while !producer.is_finished() || connections < 3 {
        connections += 1;
        let mut sse = Sse::open(&url, Some(last_id)).await;
        let connected = sse.next().await.unwrap();
        assert_eq!(connected.event, "connection.connected");
        assert_eq!(connected.data["after"], last_id);
        let mut wanted = 1 + random(80);
        while wanted > 0 {
            let frame = sse.next().await.unwrap();
            match frame.id {
                Some(_) => {
                    let event: Event = serde_json::from_value(frame.data).unwrap();
                    last_id = event.seq;
                    received.push(event);
                    wanted -= 1;
                }
                // On a heartbeat: once the producer is done and everything
                // is read, stop waiting for more.
                None => {
                    if producer.is_finished()
                        && last_id >= server.kernel.last_event_seq().await.unwrap()
                    {
                        break;
                    }
                }
            }
        }
        // Dropping the response closes the connection mid-stream.
        drop(sse);
    }
    producer.await.unwrap();

    let log = all_events(&server.kernel).await;
    let head = log.last().unwrap().seq;
    let mut sse = Sse::open(&url, Some(last_id)).await;
    while last_id < head {
        let event = sse.next_event().await;
        last_id = event.seq;
        received.push(event);
    }
    assert!(connections >= 3);
    assert_eq!(
        received.iter().map(|e| e.seq).collect::<Vec<_>>(),
        log.iter().map(|e| e.seq).collect::<Vec<_>>(),
        "no gap and no duplicate across {connections} connections"
    );
    assert_eq!(received, log);
}

#[tokio::test]
async fn heartbeats_arrive_on_an_idle_stream() {
    let dir = tempfile::tempdir().unwrap();
    let server = sqlite_server(
        &dir,
        LiveConfig {
            heartbeat_every: Duration::from_millis(50),
            ..LiveConfig::default()
        },
    )
    .await;
    let mut sse = Sse::open(&format!("{}/api/v1/events/stream", server.base), None).await;
    assert_eq!(sse.next().await.unwrap().event, "connection.connected");
    for _ in 0..3 {
        let frame = sse.next().await.unwrap();
        assert_eq!(frame.event, "connection.heartbeat");
        assert_eq!(frame.id, None, "heartbeats never move the resume point");
        assert!(frame.data["ts"].as_i64().unwrap() > 0);
    }
}

#[tokio::test]
async fn filters_filter_and_bad_requests_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = sqlite_server(
        &dir,
        LiveConfig {
            heartbeat_every: Duration::from_millis(50),
            ..LiveConfig::default()
        },
    )
    .await;
    let node = node(&server.kernel).await;
    let mut ids = Vec::new();
    for (i, tenant) in ["acme", "globex", "acme", "globex"].iter().enumerate() {
        let mut j = job(&format!("f{i}"));
        j.tenant = tenant.to_string();
        ids.push(server.kernel.submit(j).await.unwrap().job.id);
    }
    let log = all_events(&server.kernel).await;

    // Family and tenant together.
    let expected: Vec<&Event> = log
        .iter()
        .filter(|e| e.event_type.starts_with("job.") && e.tenant.as_deref() == Some("acme"))
        .collect();
    assert!(!expected.is_empty());
    assert!(expected.len() < log.len());
    let mut sse = Sse::open(
        &format!(
            "{}/api/v1/events/stream?after=0&family=job&tenant=acme",
            server.base
        ),
        None,
    )
    .await;
    for want in &expected {
        assert_eq!(&&sse.next_event().await, want);
    }

    // The job filter of the global stream and the per-job stream agree.
    let job_events: Vec<&Event> = log
        .iter()
        .filter(|e| e.subject.job_id == Some(ids[1]))
        .collect();
    assert!(!job_events.is_empty());
    for url in [
        format!(
            "{}/api/v1/events/stream?after=0&job={}",
            server.base, ids[1]
        ),
        format!("{}/api/v1/jobs/{}/stream?after=0", server.base, ids[1]),
    ] {
        let mut sse = Sse::open(&url, None).await;
        for want in &job_events {
            assert_eq!(&&sse.next_event().await, want, "{url}");
        }
        // What the job does next arrives on the same stream.
        let lease = server
            .kernel
            .claim(&kernel::model::ClaimRequest {
                node_id: node,
                kinds: vec!["noop".into()],
                max: 10,
                wait_ms: 0,
            })
            .await
            .unwrap();
        if let Some(l) = lease.iter().find(|l| l.job_id == ids[1]) {
            let next = sse.next_event().await;
            assert_eq!(next.subject.job_id, Some(ids[1]));
            assert!(next.seq > job_events.last().unwrap().seq, "{l:?}");
        }
    }

    // A run filter matches nothing today (no event carries a run yet): the
    // stream scans the whole log (its heartbeat says how far) and sends none.
    let last = all_events(&server.kernel).await.last().unwrap().seq;
    let mut sse = Sse::open(
        &format!("{}/api/v1/events/stream?after=0&run=run-1", server.base),
        None,
    )
    .await;
    loop {
        let frame = sse.next().await.unwrap();
        assert_eq!(frame.id, None, "no event matches run-1: {frame:?}");
        if frame.event == "connection.heartbeat" && frame.data["after"].as_i64() >= Some(last) {
            break;
        }
    }

    let client = reqwest::Client::new();
    let bad = client
        .get(format!("{}/api/v1/events/stream?family=jobz", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let body: Value = bad.json().await.unwrap();
    assert_eq!(body["code"], "invalid_query");
    // Audit events are in the log: their family can be asked for.
    let audit = client
        .get(format!("{}/api/v1/events/stream?family=audit", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(audit.status(), 200);
    drop(audit);
    let missing = client
        .get(format!("{}/api/v1/jobs/999999/stream", server.base))
        .bearer_auth(&server.token)
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let bad_id = client
        .get(format!("{}/api/v1/events/stream", server.base))
        .bearer_auth(&server.token)
        .header("Last-Event-ID", "not-a-number")
        .send()
        .await
        .unwrap();
    assert_eq!(bad_id.status(), 400);
}

async fn node(kernel: &Kernel) -> i64 {
    kernel
        .register_node(&kernel::model::NewNode {
            name: "sse-test".into(),
            kinds: vec!["noop".into()],
            capacity: 10,
            labels: Default::default(),
            file_scopes: vec![],
        })
        .await
        .unwrap()
        .id
}

/// A stream ends once its credential would refuse a new request: a revoked
/// token, a signed-out session, a changed grant. Others go on.
#[tokio::test]
async fn a_stream_ends_once_its_credential_would_be_refused() {
    use kernel::model::{NewToken, Scope};
    let dir = tempfile::tempdir().unwrap();
    let server = sqlite_server(
        &dir,
        LiveConfig {
            heartbeat_every: Duration::from_millis(100),
            ..LiveConfig::default()
        },
    )
    .await;
    let k = &server.kernel;
    let url = format!("{}/api/v1/events/stream", server.base);
    let reader = k
        .create_token(
            &NewToken {
                name: "reader".into(),
                scopes: vec![Scope::RunsRead],
                tenants: vec!["*".into()],
            },
            "test",
        )
        .await
        .unwrap();
    let password = "carol's long password";
    for name in ["carol", "dave"] {
        k.create_user(name, password, &[Scope::RunsRead], &["*".into()])
            .await
            .unwrap();
    }
    let client = reqwest::Client::new();
    let login = |name: &'static str| {
        let client = client.clone();
        let base = server.base.clone();
        async move {
            let r = client
                .post(format!("{base}/api/v1/auth/login"))
                .json(&json!({ "username": name, "password": password }))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
            let cookie = r.headers()["set-cookie"].to_str().unwrap();
            let cookie = cookie.split(';').next().unwrap().to_string();
            let csrf = r.json::<Value>().await.unwrap()["csrf_token"]
                .as_str()
                .unwrap()
                .to_string();
            (cookie, csrf)
        }
    };
    let (carol, carol_csrf) = login("carol").await;
    let (dave, _) = login("dave").await;
    let open = |request: reqwest::RequestBuilder| async move {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        Sse {
            response,
            buffer: String::new(),
            frames: VecDeque::new(),
        }
    };
    let mut by_token = open(client.get(&url).bearer_auth(&reader.secret)).await;
    let mut by_carol = open(client.get(&url).header("cookie", &carol)).await;
    let mut by_dave = open(client.get(&url).header("cookie", &dave)).await;
    let mut by_admin = Sse::open(&url, None).await;
    for s in [&mut by_token, &mut by_carol, &mut by_dave, &mut by_admin] {
        assert_eq!(s.next().await.unwrap().event, "connection.connected");
        assert_eq!(s.next().await.unwrap().event, "connection.heartbeat");
    }

    k.revoke_token(reader.token.id).await.unwrap();
    let r = client
        .post(format!("{}/api/v1/auth/logout", server.base))
        .header("cookie", &carol)
        .header("x-csrf-token", &carol_csrf)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    k.grant_user("dave", &[Scope::RunsRead], &["acme".into()])
        .await
        .unwrap();
    for (who, s) in [
        ("token", &mut by_token),
        ("carol", &mut by_carol),
        ("dave", &mut by_dave),
    ] {
        let ended = tokio::time::timeout(PATIENCE, async {
            while let Some(frame) = s.next().await {
                assert!(frame.event.starts_with("connection."), "{who}: {frame:?}");
            }
        });
        ended
            .await
            .unwrap_or_else(|_| panic!("{who}'s stream went on"));
    }
    // The admin's stream goes on (with the audit records of the above).
    let mut beats = 0;
    while beats < 3 {
        let frame = by_admin.next().await.expect("the admin's stream goes on");
        beats += usize::from(frame.event == "connection.heartbeat");
    }
}

#[tokio::test]
async fn graceful_shutdown_ends_open_streams() {
    let dir = tempfile::tempdir().unwrap();
    let server = sqlite_server(&dir, LiveConfig::default()).await;
    let mut a = Sse::open(&format!("{}/api/v1/events/stream", server.base), None).await;
    let mut b = Sse::open(
        &format!("{}/api/v1/events/stream?after=0", server.base),
        None,
    )
    .await;
    assert_eq!(a.next().await.unwrap().event, "connection.connected");
    assert_eq!(b.next().await.unwrap().event, "connection.connected");

    server.shutdown.cancel();
    assert!(a.next().await.is_none(), "stream a ended");
    assert!(b.next().await.is_none(), "stream b ended");
    tokio::time::timeout(PATIENCE, server.served)
        .await
        .expect("graceful shutdown finished")
        .unwrap();
}

/// Two server instances on one Postgres database: an event written through
/// one reaches a subscriber of the other.
#[tokio::test]
async fn on_postgres_an_event_written_through_one_instance_reaches_a_subscriber_of_another() {
    let Some(url) = postgres_url() else { return };
    let db = fresh_postgres_database(&url).await;
    let one = Kernel::open(&db, KernelConfig::default()).await.unwrap();
    let two = Kernel::open(&db, KernelConfig::default()).await.unwrap();
    let bg_one = one.start_background();
    let bg_two = two.start_background();
    let a = serve(one, LiveConfig::default()).await;
    let b = serve(two, LiveConfig::default()).await;

    let mut sse = Sse::open(&format!("{}/api/v1/events/stream", b.base), None).await;
    assert_eq!(sse.next().await.unwrap().event, "connection.connected");

    let response = reqwest::Client::new()
        .post(format!("{}/api/v1/jobs", a.base))
        .bearer_auth(&a.token)
        .json(&json!({ "name": "cross-replica", "tasks": [{ "key": "k", "kind": "noop" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let job_id = created["id"].as_i64().unwrap();

    let event = sse.next_event().await;
    assert_eq!(event.event_type, "job.submitted");
    assert_eq!(event.subject.job_id, Some(job_id));

    a.shutdown.cancel();
    b.shutdown.cancel();
    let _ = a.served.await;
    let _ = b.served.await;
    bg_one.shutdown().await;
    bg_two.shutdown().await;
}

/// The test server's URL, or `None` (with a note) when there is none;
/// with `SWITCHYARD_REQUIRE_POSTGRES=1` a missing server fails the test.
pub(crate) fn postgres_url() -> Option<String> {
    match std::env::var("SWITCHYARD_TEST_POSTGRES_URL") {
        Ok(url) => Some(url),
        Err(_) => {
            if std::env::var("SWITCHYARD_REQUIRE_POSTGRES").as_deref() == Ok("1") {
                panic!("SWITCHYARD_REQUIRE_POSTGRES=1 but SWITCHYARD_TEST_POSTGRES_URL is not set");
            }
            eprintln!("skipped: SWITCHYARD_TEST_POSTGRES_URL is not set (run under scripts/with-postgres.sh)");
            None
        }
    }
}

/// A new, empty database on the test server, so this test does not share
/// tables with others running at the same time.
pub(crate) async fn fresh_postgres_database(url: &str) -> String {
    use sqlx::Connection;
    let name = format!(
        "sse_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    conn.close().await.unwrap();
    match url.rfind('/') {
        Some(slash) if url[..slash].contains("://") && slash > url.find("://").unwrap() + 2 => {
            let rest = &url[slash + 1..];
            let query = rest.find('?').map(|q| &rest[q..]).unwrap_or("");
            format!("{}/{name}{query}", &url[..slash])
        }
        _ => format!("{}/{name}", url.trim_end_matches('/')),
    }
}
