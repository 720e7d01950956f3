//! Merging concurrent calls into one statement or transaction.
//!
//! Workers that claim one task at a time and report each completion alone
//! (24 such calls in flight is graphile-worker's unbatched shape; HTTP
//! workers look the same to the kernel) would cost a claim statement and a
//! completion transaction per task. A [`Batcher`] lets at most `limit` of
//! one kind of call run at once; the calls that arrive meanwhile queue, and
//! the next runner takes them all as one batch (River's completer does the
//! same for completions). Nothing waits on a timer: a lone call runs at
//! once, and batches form only while the database is busy.
//!
//! A runner is a spawned task, so a caller that goes away (an HTTP request
//! dropped mid-claim) cannot strand the calls merged with its own.

use std::collections::VecDeque;
use std::sync::Mutex;

use tokio::sync::oneshot;

use crate::db::Backend;

/// Runners of one kind of call at once: SQLite has one writer, so one;
/// Postgres overlaps a few transactions' round trips and commits.
pub(crate) fn runners(backend: Backend) -> usize {
    match backend {
        Backend::Sqlite => 1,
        Backend::Postgres => 2,
    }
}

/// Calls of one kind waiting to run, and how many runners are at work.
pub(crate) struct Batcher<Req, Res> {
    state: Mutex<State<Req, Res>>,
    limit: usize,
}

struct State<Req, Res> {
    running: usize,
    queue: VecDeque<(Req, oneshot::Sender<Res>)>,
}

/// One queued call: its request and where its answer goes.
pub(crate) type Call<Req, Res> = (Req, oneshot::Sender<Res>);

impl<Req, Res> Batcher<Req, Res> {
    /// At most `limit` runners at once (at least one).
    pub(crate) fn new(limit: usize) -> Self {
        Batcher {
            state: Mutex::new(State {
                running: 0,
                queue: VecDeque::new(),
            }),
            limit: limit.max(1),
        }
    }

    /// Queues a call. Returns its answer's receiver, and whether the caller
    /// must start a runner (one is needed and the limit allows it).
    pub(crate) fn push(&self, req: Req) -> (oneshot::Receiver<Res>, bool) {
        let (tx, rx) = oneshot::channel();
        let mut state = self.state.lock().expect("batcher");
        state.queue.push_back((req, tx));
        let start = state.running < self.limit;
        if start {
            state.running += 1;
        }
        (rx, start)
    }

    /// A runner's next batch: queued calls in arrival order whose `weight`s
    /// add up to at most `cap` (always at least one call). `None` when the
    /// queue is empty: the runner must stop, and no longer counts.
    pub(crate) fn next_batch(
        &self,
        cap: usize,
        weight: impl Fn(&Req) -> usize,
    ) -> Option<Vec<Call<Req, Res>>> {
        let mut state = self.state.lock().expect("batcher");
        if state.queue.is_empty() {
            state.running -= 1;
            return None;
        }
        let mut batch = Vec::new();
        let mut total = 0;
        while let Some((req, _)) = state.queue.front() {
            let w = weight(req);
            if !batch.is_empty() && total + w > cap {
                break;
            }
            total += w;
            batch.push(state.queue.pop_front().expect("front"));
        }
        Some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_queue_beyond_the_limit_and_leave_in_batches_within_the_cap() {
        let b: Batcher<usize, ()> = Batcher::new(1);
        let (_r1, start1) = b.push(3);
        let (_r2, start2) = b.push(2);
        let (_r3, start3) = b.push(4);
        assert!(start1, "the first call starts a runner");
        assert!(!start2 && !start3, "the limit is one runner");
        let next = |cap| -> Vec<usize> {
            let batch = b.next_batch(cap, |w| *w).unwrap();
            batch.into_iter().map(|(w, _)| w).collect()
        };
        assert_eq!(next(5), vec![3, 2]);
        // A call heavier than the cap still leaves, alone.
        assert_eq!(next(1), vec![4]);
        assert!(b.next_batch(5, |w| *w).is_none());
        // The runner stopped: the next call starts one again.
        assert!(b.push(1).1);
    }
}
