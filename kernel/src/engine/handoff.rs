//! New work handed straight to a claim that waits for it.
//!
//! A claim that finds nothing waits for a wake-up. Woken by a submit, it
//! would run its own transaction after the submit's: two writes one after
//! the other between enqueue and pickup. Instead, the submit's own writes
//! also lease the new work to the waiting claim's node, and the claim
//! receives its leases in-process. On Postgres that is the submit's one
//! statement; on SQLite, a check and an insert more in the submit's
//! transaction (kernel-bench's pickup p50 went from 1.41–1.66 ms to
//! 0.75–0.88 ms).
//!
//! The submit leases only what the claim itself would have leased: it
//! checks that the node is online, that no quota exists (quotas need the
//! claim's transaction), and that no ready work of the claim's kinds is
//! claimable already (the claim would take that first, by priority and
//! age); a batch with a job held back (a paused queue) or submitted before
//! (an idempotency key) hands nothing off. When a check fails, the submit
//! writes its jobs as usual and handing off pauses for a second; the claim
//! is then woken as before.
//!
//! A waiting claim is taken off the list by the submit that hands it work,
//! so two submits never hand work to one claim. A claim that goes away
//! after being taken drops its receiver; the submit then gives the leases
//! back at once (see [`Kernel::give_back`]).

use std::future::Future;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::model::Lease;

/// How long handing off pauses after a submit's checks said no.
const PAUSE: Duration = Duration::from_secs(1);

/// A claim waiting for work: whose, of which kinds, how many at most.
pub(super) struct Waiter {
    id: u64,
    pub node_id: i64,
    pub kinds: Vec<String>,
    pub max: i64,
    answer: oneshot::Sender<Vec<Lease>>,
}

impl Waiter {
    /// Hands the waiting claim its leases; gives them back when the claim
    /// went away.
    pub fn answer(self, leases: Vec<Lease>) -> std::result::Result<(), Vec<Lease>> {
        self.answer.send(leases)
    }
}

/// The claims of this kernel waiting for work.
#[derive(Default)]
pub(super) struct Waiters {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    next_id: u64,
    waiting: Vec<Waiter>,
    paused_until: Option<Instant>,
}

impl Waiters {
    /// Puts a claim of `node_id` for up to `max` tasks of `kinds` on the list.
    pub fn wait(&self, node_id: i64, kinds: &[String], max: i64) -> Waiting<'_> {
        let (answer, answered) = oneshot::channel();
        let mut state = self.state.lock().expect("waiters");
        state.next_id += 1;
        let id = state.next_id;
        state.waiting.push(Waiter {
            id,
            node_id,
            kinds: kinds.to_vec(),
            max,
            answer,
        });
        Waiting {
            waiters: self,
            id,
            answered,
        }
    }

    /// Takes the longest-waiting claim for any kind `wanted` accepts,
    /// unless handing off is paused.
    pub fn take(&self, wanted: impl Fn(&str) -> bool) -> Option<Waiter> {
        let mut state = self.state.lock().expect("waiters");
        if state.paused_until.is_some_and(|t| Instant::now() < t) {
            return None;
        }
        let at = state
            .waiting
            .iter()
            .position(|w| w.kinds.iter().any(|k| wanted(k)))?;
        Some(state.waiting.remove(at))
    }

    /// A submit's checks said no: hand nothing off for a while, so a
    /// kernel with quotas, say, does not write every submit twice.
    pub fn pause(&self) {
        self.state.lock().expect("waiters").paused_until = Some(Instant::now() + PAUSE);
    }

    /// Takes claim `id` off the list; false when a submit took it first.
    fn withdraw(&self, id: u64) -> bool {
        let mut state = self.state.lock().expect("waiters");
        match state.waiting.iter().position(|w| w.id == id) {
            Some(at) => {
                state.waiting.swap_remove(at);
                true
            }
            None => false,
        }
    }
}

/// A claim on the list; off it when dropped.
pub(super) struct Waiting<'a> {
    waiters: &'a Waiters,
    id: u64,
    answered: oneshot::Receiver<Vec<Lease>>,
}

impl Waiting<'_> {
    /// Waits for `woken`, or for a submit to hand this claim work: returns
    /// that work (none when woken). A claim a submit took as `woken` came
    /// waits for the submit's answer, which comes with its statement.
    pub async fn until(mut self, woken: impl Future<Output = ()>) -> Vec<Lease> {
        tokio::select! {
            leases = &mut self.answered => return leases.unwrap_or_default(),
            _ = woken => {}
        }
        if self.waiters.withdraw(self.id) {
            return Vec::new();
        }
        (&mut self.answered).await.unwrap_or_default()
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.waiters.withdraw(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(k: &[&str]) -> Vec<String> {
        k.iter().map(|s| s.to_string()).collect()
    }

    #[tokio::test]
    async fn a_waiting_claim_is_taken_once_and_gets_its_answer() {
        let waiters = Waiters::default();
        let waiting = waiters.wait(7, &kinds(&["a", "b"]), 3);
        assert!(waiters.take(|k| k == "c").is_none());
        let waiter = waiters.take(|k| k == "b").expect("the claim for b");
        assert_eq!((waiter.node_id, waiter.max), (7, 3));
        assert!(waiters.take(|k| k == "b").is_none(), "taken once");
        // Woken meanwhile, the claim still gets what the submit hands it.
        let lease = Lease {
            attempt_id: 1,
            task_id: 2,
            job_id: 3,
            kind: "b".into(),
            payload: serde_json::json!({}),
            lease_token: "t".into(),
            epoch: 1,
            lease_expires_at: 0,
            attempt_number: 1,
            max_attempts: 3,
            timeout_s: None,
            tenant: "default".into(),
            queue: "default".into(),
        };
        let (got, ()) = tokio::join!(waiting.until(async {}), async {
            tokio::task::yield_now().await;
            waiter.answer(vec![lease]).expect("the claim waits");
        });
        assert_eq!(got.len(), 1);
    }

    #[tokio::test]
    async fn a_claim_that_goes_away_leaves_the_list_and_refuses_its_answer() {
        let waiters = Waiters::default();
        drop(waiters.wait(1, &kinds(&["a"]), 1));
        assert!(waiters.take(|_| true).is_none(), "off the list");

        let waiting = waiters.wait(1, &kinds(&["a"]), 1);
        let waiter = waiters.take(|_| true).expect("on the list");
        drop(waiting);
        assert!(waiter.answer(Vec::new()).is_err(), "nobody to answer");
    }

    #[tokio::test]
    async fn a_pause_stops_handing_off() {
        let waiters = Waiters::default();
        let _waiting = waiters.wait(1, &kinds(&["a"]), 1);
        waiters.pause();
        assert!(waiters.take(|_| true).is_none());
    }
}
