//! The operator snapshot (`/ops`): what it reads from the kernel, and how a
//! live event changes it.
//!
//! Every figure is read from the kernel or derived from what was read; the
//! view says which. Approvals and file-access requests do not exist in this
//! build, so the snapshot carries no figure for them at all (never a 0).

use std::collections::BTreeMap;

use kernel::model::{event_type, Event, Node, NodeStatus};
use leptos::prelude::*;
use leptos::server_fn::codec::GetUrl;
use serde::{Deserialize, Serialize};

/// Most events the timeline keeps.
pub const TIMELINE_LEN: usize = 30;
/// How many of the newest events the server looks through for the first
/// timeline.
pub const TIMELINE_SCAN: i64 = 1_000;
/// Running jobs whose attempts are checked for stale leases.
pub const STALE_SCAN_JOBS: i64 = 50;

/// One node of the inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRow {
    pub id: i64,
    pub name: String,
    pub status: NodeStatus,
    /// Last sign of life the kernel recorded (claim, lease heartbeat);
    /// advanced live by lease events of this node.
    pub last_heartbeat_at: i64,
    pub capacity: i64,
    /// `None` for a node that registered after the page was loaded: its
    /// registration event does not carry its scopes.
    pub file_scopes: Option<Vec<String>>,
}

impl From<Node> for NodeRow {
    fn from(n: Node) -> NodeRow {
        NodeRow {
            id: n.id,
            name: n.name,
            status: n.status,
            last_heartbeat_at: n.last_heartbeat_at,
            capacity: n.capacity,
            file_scopes: Some(n.file_scopes),
        }
    }
}

/// An active attempt whose lease expiry has passed (the sweep has not
/// recovered it yet).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StaleLease {
    pub attempt_id: i64,
    pub job_id: i64,
    pub task_key: String,
    pub node_id: Option<i64>,
    pub epoch: i64,
    pub lease_expires_at: i64,
}

/// What `/ops` renders first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpsSnapshot {
    /// Kernel clock when read (unix ms); ages are shown relative to it until
    /// the browser's clock takes over.
    pub read_at: i64,
    /// The last event seq reflected in this snapshot: the live stream
    /// resumes after it. Read before everything else, so the snapshot is at
    /// least this fresh.
    pub seq: i64,
    pub jobs_by_state: BTreeMap<String, i64>,
    pub nodes: Vec<NodeRow>,
    /// Stale leases among the attempts of up to [`STALE_SCAN_JOBS`] running
    /// jobs.
    pub stale_leases: Vec<StaleLease>,
    /// The kernel's own count of stale leases (all jobs).
    pub stale_leases_total: i64,
    /// Timeline events, newest first.
    pub timeline: Vec<Event>,
}

/// Whether the timeline shows this event: job started/succeeded/failed,
/// lease expired/fenced, node online/offline/draining, dead-letter added.
pub fn on_timeline(event: &Event) -> bool {
    match event.event_type.as_str() {
        event_type::JOB_STATE_CHANGED => matches!(
            event.data.get("to").and_then(|v| v.as_str()),
            Some("running" | "succeeded" | "failed")
        ),
        event_type::LEASE_EXPIRED
        | event_type::LEASE_FENCED
        | event_type::NODE_ONLINE
        | event_type::NODE_OFFLINE
        | event_type::NODE_DRAINING
        | event_type::DLQ_ADDED => true,
        // Who did what (SPEC §6): every audited action.
        t => t.starts_with("audit."),
    }
}

fn text<'a>(event: &'a Event, key: &str) -> Option<&'a str> {
    event.data.get(key).and_then(|v| v.as_str())
}

impl OpsSnapshot {
    /// Nodes whose status is `online` (derived from the inventory).
    pub fn healthy_nodes(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.status == NodeStatus::Online)
            .count()
    }

    pub fn jobs_in(&self, state: &str) -> i64 {
        self.jobs_by_state.get(state).copied().unwrap_or(0)
    }

    /// Patches the snapshot with one event of the log. Events at or before
    /// `seq` are already reflected and change nothing.
    pub fn apply(&mut self, event: &Event) {
        if event.seq <= self.seq {
            return;
        }
        self.seq = event.seq;
        match event.event_type.as_str() {
            event_type::JOB_SUBMITTED => {
                if let Some(state) = text(event, "state") {
                    *self.jobs_by_state.entry(state.to_string()).or_default() += 1;
                }
            }
            event_type::JOB_STATE_CHANGED => {
                if let (Some(from), Some(to)) = (text(event, "from"), text(event, "to")) {
                    if let Some(n) = self.jobs_by_state.get_mut(from) {
                        *n = (*n - 1).max(0);
                    }
                    *self.jobs_by_state.entry(to.to_string()).or_default() += 1;
                }
            }
            event_type::NODE_ONLINE | event_type::NODE_OFFLINE | event_type::NODE_DRAINING => {
                let status = match event.event_type.as_str() {
                    event_type::NODE_ONLINE => NodeStatus::Online,
                    event_type::NODE_OFFLINE => NodeStatus::Offline,
                    _ => NodeStatus::Draining,
                };
                if let Some(id) = event.subject.node_id {
                    match self.nodes.iter_mut().find(|n| n.id == id) {
                        Some(node) => {
                            node.status = status;
                            if status == NodeStatus::Online {
                                node.last_heartbeat_at = event.ts;
                            }
                        }
                        None => self.nodes.push(NodeRow {
                            id,
                            name: text(event, "name")
                                .map(str::to_string)
                                .unwrap_or_else(|| format!("node {id}")),
                            status,
                            last_heartbeat_at: event.ts,
                            capacity: event
                                .data
                                .get("capacity")
                                .and_then(|v| v.as_i64())
                                .unwrap_or(0),
                            file_scopes: None,
                        }),
                    }
                }
            }
            event_type::LEASE_GRANTED | event_type::LEASE_RENEWED => {
                // A claim or a lease heartbeat is the node's sign of life.
                if let Some(node) = event
                    .subject
                    .node_id
                    .and_then(|id| self.nodes.iter_mut().find(|n| n.id == id))
                {
                    node.last_heartbeat_at = node.last_heartbeat_at.max(event.ts);
                }
                if event.event_type == event_type::LEASE_RENEWED {
                    self.forget_stale(event);
                }
            }
            event_type::LEASE_EXPIRED | event_type::LEASE_RELEASED => self.forget_stale(event),
            event_type::TASK_STATE_CHANGED if text(event, "from") == Some("leased") => {
                self.forget_stale(event);
            }
            _ => {}
        }
        if on_timeline(event) {
            self.timeline.insert(0, event.clone());
            self.timeline.truncate(TIMELINE_LEN);
        }
    }

    /// The attempt of `event` no longer holds a stale lease.
    fn forget_stale(&mut self, event: &Event) {
        if let Some(attempt) = event.subject.attempt_id {
            let before = self.stale_leases.len();
            self.stale_leases.retain(|s| s.attempt_id != attempt);
            if self.stale_leases.len() < before {
                self.stale_leases_total = (self.stale_leases_total - 1).max(0);
            }
        }
    }
}

/// Reads the operator snapshot from the kernel.
#[server(input = GetUrl)]
pub async fn get_ops_snapshot() -> Result<OpsSnapshot, ServerFnError> {
    use kernel::model::{AttemptState, JobFilter, JobState};

    use super::{kernel, kernel_error, require};

    let caller = require(kernel::model::Scope::RunsRead)?;
    let tenants = caller.tenants.restriction();
    let kernel = kernel()?;
    let seq = kernel.last_event_seq().await.map_err(kernel_error)?;
    let read_at = now_ms();
    let overview = kernel
        .overview(tenants.as_deref())
        .await
        .map_err(kernel_error)?;
    let nodes = kernel.list_nodes().await.map_err(kernel_error)?;

    let running = kernel
        .list_jobs(
            &JobFilter {
                state: Some(JobState::Running),
                tenants: tenants.clone(),
                ..JobFilter::default()
            },
            STALE_SCAN_JOBS,
            None,
        )
        .await
        .map_err(kernel_error)?;
    let mut stale_leases = Vec::new();
    for job in &running.items {
        let detail = match kernel.get_job(job.id).await {
            Ok(detail) => detail,
            Err(e) if e.code() == "not_found" => continue,
            Err(e) => return Err(kernel_error(e)),
        };
        for task in &detail.tasks {
            for a in &task.attempts {
                if a.state == AttemptState::Active && a.lease_expires_at < read_at {
                    stale_leases.push(StaleLease {
                        attempt_id: a.id,
                        job_id: a.job_id,
                        task_key: task.key.clone(),
                        node_id: a.node_id,
                        epoch: a.epoch,
                        lease_expires_at: a.lease_expires_at,
                    });
                }
            }
        }
    }

    // The newest timeline events among the last `TIMELINE_SCAN` up to `seq`.
    let mut timeline: Vec<Event> = kernel
        .events_through(seq, TIMELINE_SCAN)
        .await
        .map_err(kernel_error)?
        .into_iter()
        .filter(|e| on_timeline(e) && caller.sees_event(&e.event_type, e.tenant.as_deref()))
        .collect();
    timeline.truncate(TIMELINE_LEN);

    Ok(OpsSnapshot {
        read_at,
        seq,
        jobs_by_state: overview.jobs_by_state,
        nodes: nodes.into_iter().map(NodeRow::from).collect(),
        stale_leases,
        stale_leases_total: overview.stale_leases,
        timeline,
    })
}

#[cfg(feature = "ssr")]
pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kernel::model::EventSubject;
    use serde_json::json;

    fn event(seq: i64, ty: &str, subject: EventSubject, data: serde_json::Value) -> Event {
        Event {
            seq,
            ts: 1_000 + seq,
            event_type: ty.into(),
            tenant: Some("default".into()),
            subject,
            data,
        }
    }

    fn empty(seq: i64) -> OpsSnapshot {
        OpsSnapshot {
            read_at: 0,
            seq,
            jobs_by_state: BTreeMap::new(),
            nodes: vec![],
            stale_leases: vec![],
            stale_leases_total: 0,
            timeline: vec![],
        }
    }

    #[test]
    fn job_events_move_counts_and_fill_the_timeline() {
        let mut s = empty(10);
        let job = EventSubject {
            job_id: Some(1),
            ..Default::default()
        };
        s.apply(&event(
            11,
            event_type::JOB_SUBMITTED,
            job.clone(),
            json!({"state": "queued"}),
        ));
        s.apply(&event(
            12,
            event_type::JOB_STATE_CHANGED,
            job.clone(),
            json!({"from": "queued", "to": "running"}),
        ));
        assert_eq!(s.jobs_in("queued"), 0);
        assert_eq!(s.jobs_in("running"), 1);
        s.apply(&event(
            13,
            event_type::JOB_STATE_CHANGED,
            job.clone(),
            json!({"from": "running", "to": "failed"}),
        ));
        assert_eq!(s.jobs_in("running"), 0);
        assert_eq!(s.jobs_in("failed"), 1);
        assert_eq!(
            s.timeline.iter().map(|e| e.seq).collect::<Vec<_>>(),
            vec![13, 12],
            "newest first; job.submitted is not on the timeline"
        );
        // Replayed events (at or before seq) change nothing.
        s.apply(&event(
            12,
            event_type::JOB_STATE_CHANGED,
            job,
            json!({"from": "queued", "to": "running"}),
        ));
        assert_eq!(s.jobs_in("running"), 0);
        assert_eq!(s.seq, 13);
    }

    #[test]
    fn node_events_update_the_inventory() {
        let mut s = empty(0);
        let node = EventSubject {
            node_id: Some(4),
            ..Default::default()
        };
        s.apply(&event(
            1,
            event_type::NODE_ONLINE,
            node.clone(),
            json!({"name": "w1", "capacity": 2}),
        ));
        assert_eq!(s.healthy_nodes(), 1);
        assert_eq!(s.nodes[0].file_scopes, None, "scopes are not invented");
        s.apply(&event(2, event_type::NODE_DRAINING, node, json!({})));
        assert_eq!(s.nodes[0].status, NodeStatus::Draining);
        assert_eq!(s.healthy_nodes(), 0);
    }
}
