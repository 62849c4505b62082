//! Running downloads side by side without spawning them all at once.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// One unit of work for `join_bounded`.
pub type Job<'a, T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send + 'a>>;

/// Runs `jobs`, at most `limit` at a time, until all are done; their results in order.
pub async fn join_bounded<T, E>(jobs: Vec<Job<'_, T, E>>, limit: usize) -> Vec<Result<T, E>> {
    run(jobs, limit, false).await.into_iter().map(|r| r.expect("every job ran")).collect()
}

/// Runs `jobs`, at most `limit` at a time; the first error drops the others, started or not.
pub async fn try_join_bounded<T, E>(jobs: Vec<Job<'_, T, E>>, limit: usize) -> Result<Vec<T>, E> {
    let mut out = Vec::new();
    for result in run(jobs, limit, true).await {
        match result {
            Some(Ok(value)) => out.push(value),
            Some(Err(e)) => return Err(e),
            None => {}
        }
    }
    Ok(out)
}

async fn run<T, E>(jobs: Vec<Job<'_, T, E>>, limit: usize, stop_on_error: bool) -> Vec<Option<Result<T, E>>> {
    let mut results: Vec<Option<Result<T, E>>> = jobs.iter().map(|_| None).collect();
    let mut waiting: Vec<(usize, Job<'_, T, E>)> = jobs.into_iter().enumerate().rev().collect();
    let mut running: Vec<(usize, Job<'_, T, E>)> = Vec::new();
    std::future::poll_fn(|cx| loop {
        while running.len() < limit.max(1) {
            match waiting.pop() {
                Some(job) => running.push(job),
                None => break,
            }
        }
        if running.is_empty() {
            return Poll::Ready(());
        }
        let mut progressed = false;
        let mut i = 0;
        while i < running.len() {
            match running[i].1.as_mut().poll(cx) {
                Poll::Ready(result) => {
                    let (index, _) = running.swap_remove(i);
                    let failed = result.is_err();
                    results[index] = Some(result);
                    if failed && stop_on_error {
                        waiting.clear();
                        running.clear();
                        return Poll::Ready(());
                    }
                    progressed = true;
                }
                Poll::Pending => i += 1,
            }
        }
        if !progressed {
            return Poll::Pending;
        }
    })
    .await;
    results
}

/// A spawned task that is cancelled when whoever waits for it gives up (another layer failed,
/// say): no orphan keeps downloading.
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Large transfers (image bodies, layer blobs) at once to one host.
pub const PER_HOST: usize = 4;

/// The download slots of each host, shared by every fetch of one command. Signatures and
/// discovery documents are small and take no slot: a signed image's import waits for its
/// signature, and that wait must never be behind the slots of other images.
#[derive(Clone, Default)]
pub struct HostSlots(Arc<Mutex<HashMap<String, Arc<Semaphore>>>>);

impl std::fmt::Debug for HostSlots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HostSlots")
    }
}

impl HostSlots {
    /// Waits for a free slot for `host` (`host[:port]`); the slot is free again when the
    /// permit is dropped.
    pub async fn acquire(&self, host: &str) -> OwnedSemaphorePermit {
        let semaphore = self
            .0
            .lock()
            .expect("not poisoned")
            .entry(host.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(PER_HOST)))
            .clone();
        semaphore.acquire_owned().await.expect("the semaphore is never closed")
    }
}

/// A body that gives its host slot back as soon as it ends or fails, not when its reader is
/// dropped (which may be much later, after a signature check).
pub struct Slotted<R> {
    inner: R,
    slot: Option<OwnedSemaphorePermit>,
}

impl<R> Slotted<R> {
    pub fn new(inner: R, slot: OwnedSemaphorePermit) -> Self {
        Slotted { inner, slot: Some(slot) }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Slotted<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut self.inner).poll_read(cx, buf));
        if result.is_err() || buf.filled().len() == before {
            self.slot = None;
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn bounded_in_order_and_fail_fast() {
        let active = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let jobs: Vec<Job<'_, usize, String>> = (0..6usize)
            .map(|i| {
                let (active, most) = (active.clone(), most.clone());
                Box::pin(async move {
                    let now = active.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                    most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                    tokio::time::sleep(std::time::Duration::from_millis(10 * (6 - i) as u64)).await;
                    active.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
                    Ok(i)
                }) as Job<'_, usize, String>
            })
            .collect();
        let results: Vec<usize> = join_bounded(jobs, 2).await.into_iter().map(Result::unwrap).collect();
        assert_eq!(results, vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 2);
        let jobs: Vec<Job<'_, usize, String>> =
            vec![Box::pin(async { Err("first".to_string()) }), Box::pin(async { panic!("never started") })];
        assert_eq!(try_join_bounded(jobs, 1).await, Err("first".to_string()));
    }
}
