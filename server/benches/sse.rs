//! Fan-out of the live streams (SPEC §8: 1,000 subscribers at 1,000
//! events/s, delivery p99 ≤ 50 ms, ≤ 16 KiB per idle subscriber).
//!
//! `cargo bench -p server --bench sse` (figures printed, not asserted).
//!
//! The server (kernel on SQLite in a temp dir, the real router on a real
//! socket) runs in this process; the subscribers run in a child process (this
//! same binary, `SSE_BENCH_ROLE=subscribers`), so the server's resident
//! memory (VmRSS from /proc/self/status) measures the server alone:
//! 1. N subscribers connect to `/api/v1/events/stream` and idle: the RSS
//!    difference divided by N is the memory per idle subscriber.
//! 2. A producer submits one-task jobs at R/s for D seconds (one
//!    `job.submitted` event each, nothing claims them; four concurrent
//!    producers) and records when each commit returned. Every subscriber records when each event's frame
//!    arrived (a 1-in-10 sample of seqs per subscriber). Delivery latency =
//!    arrival − commit, both on the system clock of the same machine.
//!
//! Knobs (env): SSE_BENCH_SUBSCRIBERS (1000), SSE_BENCH_RATE (1000 events/s),
//! SSE_BENCH_SECONDS (10).

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kernel::model::NewJob;
use kernel::{Kernel, KernelConfig};
use leptos::prelude::LeptosOptions;
use server::{app, AppState};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn main() {
    if std::env::var("SSE_BENCH_ROLE").as_deref() == Ok("subscribers") {
        subscribers();
    } else {
        server();
    }
}

fn server() {
    let n = env("SSE_BENCH_SUBSCRIBERS", 1_000);
    let rate = env("SSE_BENCH_RATE", 1_000);
    let seconds = env("SSE_BENCH_SECONDS", 10);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("sse-bench.db").display());
        let kernel = Kernel::open(&url, KernelConfig::default()).await.unwrap();
        let state = AppState::new(
            LeptosOptions::builder().output_name("switchyard").build(),
            kernel.clone(),
            Default::default(),
            Default::default(),
        );
        let token = kernel
            .create_token(
                &kernel::model::NewToken {
                    name: "sse-bench".into(),
                    scopes: vec![kernel::model::Scope::RunsRead],
                    tenants: vec!["*".into()],
                },
                "bench",
            )
            .await
            .unwrap()
            .secret;
        let request = stream_request(&token);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app(state)).await });

        // Warm up: one stream starts the shared tail; one submit warms the
        // statements.
        kernel
            .submit(NewJob::single("warm-up", "bench-nobody-claims", serde_json::json!({})))
            .await
            .unwrap();
        {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(request.as_bytes()).await.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf).await.unwrap();
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let rss_before = rss_kib();

        let samples = dir.path().join("samples.txt");
        let mut child = Command::new(std::env::current_exe().unwrap())
            .env("SSE_BENCH_ROLE", "subscribers")
            .env("SSE_BENCH_ADDR", addr.to_string())
            .env("SSE_BENCH_TOKEN", &token)
            .env("SSE_BENCH_SUBSCRIBERS", n.to_string())
            .env("SSE_BENCH_SAMPLES", &samples)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut child_in = child.stdin.take().unwrap();
        let mut child_out = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        let ready = tokio::task::spawn_blocking(move || {
            child_out.read_line(&mut line).unwrap();
            (line, child_out)
        })
        .await
        .unwrap();
        assert_eq!(ready.0.trim(), "ready", "the subscribers process did not start");
        tokio::time::sleep(Duration::from_secs(1)).await;
        let rss_idle = rss_kib();
        let per_subscriber = (rss_idle.saturating_sub(rss_before)) as f64 * 1024.0 / n as f64;

        // Produce at `rate` events/s from a few concurrent producers (one
        // alone is bound by its own round trips on a loaded machine); each
        // looks up the seq of its job's event to pair it with its commit time.
        const PRODUCERS: u64 = 4;
        let total = rate * seconds;
        let started = std::time::Instant::now();
        let mut producers = Vec::new();
        for p in 0..PRODUCERS {
            let kernel = kernel.clone();
            producers.push(tokio::spawn(async move {
                let mut commits: Vec<(i64, u128)> = Vec::new();
                let mut tick =
                    tokio::time::interval(Duration::from_nanos(1_000_000_000 * PRODUCERS / rate));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                for i in 0..total / PRODUCERS {
                    tick.tick().await;
                    let job = kernel
                        .submit(NewJob::single(
                            format!("p{p}-e{i}"),
                            "bench-nobody-claims",
                            serde_json::json!({}),
                        ))
                        .await
                        .unwrap();
                    let at = now_ns();
                    let seq = kernel
                        .job_events_after(job.job.id, 0, 1)
                        .await
                        .unwrap()
                        .items[0]
                        .seq;
                    commits.push((seq, at));
                }
                commits
            }));
        }
        let mut commits: HashMap<i64, u128> = HashMap::with_capacity(total as usize);
        for p in producers {
            commits.extend(p.await.unwrap());
        }
        let produced_in = started.elapsed();
        let last = kernel.last_event_seq().await.unwrap();
        writeln!(child_in, "{last}").unwrap();
        let (_, mut child_out) = ready;
        let mut done = String::new();
        tokio::task::spawn_blocking(move || {
            child_out.read_line(&mut done).unwrap();
        })
        .await
        .unwrap();
        child.wait().unwrap();

        let mut latencies_us: Vec<f64> = std::fs::read_to_string(&samples)
            .unwrap()
            .lines()
            .filter_map(|l| {
                let (seq, at) = l.split_once(' ')?;
                let commit = commits.get(&seq.parse::<i64>().ok()?)?;
                let at: u128 = at.parse().ok()?;
                Some(at.saturating_sub(*commit) as f64 / 1_000.0)
            })
            .collect();
        latencies_us.sort_by(|a, b| a.partial_cmp(b).unwrap());
        let pct = |p: f64| {
            let i = ((latencies_us.len() as f64 * p).ceil() as usize).clamp(1, latencies_us.len());
            latencies_us[i - 1] / 1_000.0
        };
        println!("SSE fan-out: {n} subscribers, {total} events in {:.2} s ({:.0} events/s achieved)",
            produced_in.as_secs_f64(), total as f64 / produced_in.as_secs_f64());
        println!(
            "delivery latency (commit → frame read by subscriber), {} samples: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            latencies_us.len(),
            pct(0.50),
            pct(0.99),
            latencies_us.last().copied().unwrap_or(0.0) / 1_000.0
        );
        println!(
            "server RSS: {} KiB before, {} KiB with {n} idle subscribers → {:.1} KiB per idle subscriber",
            rss_before,
            rss_idle,
            per_subscriber / 1024.0
        );
    });
}

/// A raw HTTP/1.1 request for the global stream, with a bearer token.
fn stream_request(token: &str) -> String {
    format!(
        "GET /api/v1/events/stream HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\n\r\n"
    )
}

/// The child process: N raw HTTP/1.1 clients of the global stream.
fn subscribers() {
    let n = env("SSE_BENCH_SUBSCRIBERS", 1_000) as usize;
    let addr: std::net::SocketAddr = std::env::var("SSE_BENCH_ADDR").unwrap().parse().unwrap();
    let samples_path = std::env::var("SSE_BENCH_SAMPLES").unwrap();
    let request: &'static str = stream_request(&std::env::var("SSE_BENCH_TOKEN").unwrap()).leak();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        let (last_tx, last_rx) = tokio::sync::watch::channel(i64::MAX);
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(n);
        let mut clients = Vec::with_capacity(n);
        for c in 0..n {
            let ready = ready_tx.clone();
            let mut last = last_rx.clone();
            clients.push(tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
                s.write_all(request.as_bytes()).await.unwrap();
                let mut buf = vec![0u8; 16 * 1024];
                let mut carry: Vec<u8> = Vec::new();
                let mut seen: Vec<(i64, u128)> = Vec::new();
                let mut newest = 0i64;
                let mut connected = false;
                loop {
                    if newest >= *last.borrow() {
                        break;
                    }
                    let read = tokio::select! {
                        r = s.read(&mut buf) => r.unwrap(),
                        _ = last.changed() => continue,
                    };
                    assert!(read > 0, "the server closed a stream");
                    let at = now_ns();
                    carry.extend_from_slice(&buf[..read]);
                    let mut start = 0;
                    while let Some(nl) = carry[start..].iter().position(|b| *b == b'\n') {
                        let line = &carry[start..start + nl];
                        if let Some(id) = line.strip_prefix(b"id: ") {
                            let seq: i64 = std::str::from_utf8(id).unwrap().trim().parse().unwrap();
                            newest = seq;
                            if seq as usize % 10 == c % 10 {
                                seen.push((seq, at));
                            }
                        } else if !connected && line.starts_with(b"event: connection.connected") {
                            connected = true;
                            ready.send(()).await.unwrap();
                        }
                        start += nl + 1;
                    }
                    carry.drain(..start);
                }
                seen
            }));
        }
        drop(ready_tx);
        for _ in 0..n {
            ready_rx.recv().await.unwrap();
        }
        println!("ready");
        std::io::stdout().flush().unwrap();
        let last: i64 = tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line).unwrap();
            line.trim().parse().unwrap()
        })
        .await
        .unwrap();
        last_tx.send(last).unwrap();
        let mut out = String::new();
        for client in clients {
            for (seq, at) in client.await.unwrap() {
                out.push_str(&format!("{seq} {at}\n"));
            }
        }
        std::fs::write(&samples_path, out).unwrap();
        println!("done");
        std::io::stdout().flush().unwrap();
    });
}
