//! A request batcher: callers queue a request and wait; one task takes everything queued (up
//! to a bound), serves it with one call, and answers each caller. While one batch is in the
//! database the next fills up, so the number of round trips (and thread hand-offs to the
//! database driver) grows with the number of batches, not with the number of requests.

use std::future::Future;

use std::sync::Arc;

use tokio::sync::{Semaphore, mpsc, oneshot};

/// One queued request and where its answer goes.
type Pending<Req, Resp> = (Req, oneshot::Sender<Resp>);

/// Handle to a batching task; cheap to clone.
#[derive(Debug)]
pub(super) struct Batcher<Req, Resp> {
    queue: mpsc::Sender<Pending<Req, Resp>>,
}

impl<Req, Resp> Clone for Batcher<Req, Resp> {
    fn clone(&self) -> Self {
        Batcher {
            queue: self.queue.clone(),
        }
    }
}

impl<Req: Send + 'static, Resp: Send + 'static> Batcher<Req, Resp> {
    /// Starts the task on the current tokio runtime. `serve` answers a batch with one response
    /// per request, in order; at most `in_flight` batches are served at once (1 for writes,
    /// which SQLite serializes anyway; more for reads, which WAL lets run side by side).
    pub(super) fn start<F, Fut>(max_batch: usize, in_flight: usize, serve: F) -> Batcher<Req, Resp>
    where
        F: Fn(Vec<Req>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Vec<Resp>> + Send + 'static,
    {
        let (queue, mut pending) = mpsc::channel::<Pending<Req, Resp>>(4 * max_batch);
        let slots = Arc::new(Semaphore::new(in_flight.max(1)));
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(max_batch);
            // A slot first, then the batch: requests keep queuing while every slot is busy.
            while let Ok(slot) = slots.clone().acquire_owned().await
                && pending.recv_many(&mut batch, max_batch).await > 0
            {
                // Let the requests already running on this worker reach the queue too: one
                // yield costs less than the round trip a second, smaller batch would.
                tokio::task::yield_now().await;
                while batch.len() < max_batch
                    && let Ok(more) = pending.try_recv()
                {
                    batch.push(more);
                }
                let (requests, answers): (Vec<Req>, Vec<_>) = batch.drain(..).unzip();
                let served = serve(requests);
                tokio::spawn(async move {
                    let responses = served.await;
                    drop(slot);
                    for (answer, response) in answers.into_iter().zip(responses) {
                        // A caller that gave up (client gone) no longer listens.
                        let _ = answer.send(response);
                    }
                });
            }
        });
        Batcher { queue }
    }

    /// Queues a request and waits for its answer; `None` if the task has stopped.
    pub(super) async fn call(&self, request: Req) -> Option<Resp> {
        let (answer, response) = oneshot::channel();
        self.queue.send((request, answer)).await.ok()?;
        response.await.ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every caller of a batch gets its own answer, in the order of the batch.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_caller_gets_its_own_answer() {
        let batcher = Batcher::start(8, 1, |batch: Vec<u32>| async move {
            batch.into_iter().map(|n| n * 2).collect::<Vec<_>>()
        });
        let calls: Vec<_> = (0..100)
            .map(|n| {
                let batcher = batcher.clone();
                tokio::spawn(async move { (n, batcher.call(n).await) })
            })
            .collect();
        for call in calls {
            let (n, answer) = call.await.unwrap();
            assert_eq!(answer, Some(n * 2));
        }
    }

    /// A batch whose serving panics (a crashed database driver) answers its callers `None`,
    /// which the storage turns into `WriterStopped` and the API into a 503; the batcher goes
    /// on serving the next batch.
    #[tokio::test]
    async fn a_failed_batch_answers_none_and_the_next_one_is_served() {
        let batcher = Batcher::start(8, 1, |batch: Vec<u32>| async move {
            assert!(!batch.contains(&0), "the driver crashed");
            batch.into_iter().map(|n| n * 2).collect::<Vec<_>>()
        });
        assert_eq!(batcher.call(0).await, None);
        assert_eq!(batcher.call(21).await, Some(42));
    }
}
