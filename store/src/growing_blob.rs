//! A blob read while it is still being written: the render of a converted layer follows its
//! import instead of waiting for it to end, so that the last layers of an image are rendered
//! almost as soon as they are imported.

use std::fs::File;
use std::future::Future;
use std::io;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::Notify;

const WRITING: u8 = 0;
const COMPLETE: u8 = 1;
const ABANDONED: u8 = 2;

/// What the writer shares with its follower: how far the file is written, and whether it is done.
#[derive(Default)]
pub(crate) struct Progress {
    written: AtomicU64,
    state: AtomicU8,
    changed: Notify,
}

impl Progress {
    pub(crate) fn wrote(&self, total: u64) {
        self.written.store(total, Ordering::Release);
        // One follower: a permit kept for it when it is not waiting yet, so no wake-up is lost.
        self.changed.notify_one();
    }

    #[cfg(test)]
    pub(crate) fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Ends the writing, once: a later call changes nothing.
    fn end(&self, state: u8) {
        if self.state.compare_exchange(WRITING, state, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.changed.notify_one();
        }
    }

    pub(crate) fn complete(&self) {
        self.end(COMPLETE);
    }
}

/// Held by the writer: dropped before the blob was complete, it tells the follower so.
pub(crate) struct ProgressGuard(pub Arc<Progress>);

impl Drop for ProgressGuard {
    fn drop(&mut self) {
        self.0.end(ABANDONED);
    }
}

/// Reads a blob as its writer writes it, with reads of its own offset (the writer's file
/// position is not touched). It ends when the writer has finished, and fails if the writer gave
/// up: then what was read must not be used.
pub struct GrowingBlob {
    file: File,
    offset: u64,
    progress: Arc<Progress>,
    waiting: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
}

impl GrowingBlob {
    pub(crate) fn new(file: File, progress: Arc<Progress>) -> Self {
        GrowingBlob { file, offset: 0, progress, waiting: None }
    }

    /// A handle that makes this reader fail, as if the writer had given up: for a reader that
    /// must stop waiting because its own work is cancelled.
    pub fn stopper(&self) -> BlobStopper {
        BlobStopper(self.progress.clone())
    }
}

/// Makes a `GrowingBlob` fail from its next read on, unless it was complete already.
pub struct BlobStopper(Arc<Progress>);

impl BlobStopper {
    pub fn stop(&self) {
        self.0.end(ABANDONED);
    }
}

impl AsyncRead for GrowingBlob {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        loop {
            // The state first: once complete, everything is written.
            let state = self.progress.state.load(Ordering::Acquire);
            let written = self.progress.written.load(Ordering::Acquire);
            if state == ABANDONED {
                return Poll::Ready(Err(io::Error::other("the layer's import failed")));
            }
            if self.offset < written {
                let want = ((written - self.offset) as usize).min(buf.remaining());
                let n = self.file.read_at(buf.initialize_unfilled_to(want), self.offset)?;
                if n == 0 {
                    return Poll::Ready(Err(io::Error::other("the layer's blob is shorter than written")));
                }
                buf.advance(n);
                self.offset += n as u64;
                return Poll::Ready(Ok(()));
            }
            if state == COMPLETE {
                return Poll::Ready(Ok(()));
            }
            let progress = self.progress.clone();
            let waiting =
                self.waiting.get_or_insert_with(|| Box::pin(async move { progress.changed.notified().await }));
            match waiting.as_mut().poll(cx) {
                Poll::Ready(()) => self.waiting = None,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}
