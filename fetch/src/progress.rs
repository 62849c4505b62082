//! Download progress, reported through a callback: the library never draws, the CLI does.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// What a transfer does with the bytes it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// Bytes from the network.
    Download,
    /// A compressed archive decompressed before it is read (counted decompressed).
    Decompress,
    /// A layer read from a local archive or layout into the store.
    Import,
}

/// Told of each transfer as it begins.
pub trait Progress: Send + Sync {
    /// A transfer of `what` begins; `total` is its size when known.
    fn begin(&self, activity: Activity, what: &str, total: Option<u64>) -> Box<dyn Transfer>;
}

/// One download under way; dropped when it ends, whichever way.
pub trait Transfer: Send + Sync {
    fn advance(&self, bytes: u64);
    /// The download completed (it is dropped either way).
    fn complete(&self) {}
}

/// A shared progress sink, or none (`--quiet`, or a library user who does not care).
#[derive(Clone, Default)]
pub struct ProgressHandle(Option<Arc<dyn Progress>>);

impl std::fmt::Debug for ProgressHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "ProgressHandle(on)" } else { "ProgressHandle(off)" })
    }
}

impl ProgressHandle {
    pub fn new(sink: Arc<dyn Progress>) -> Self {
        ProgressHandle(Some(sink))
    }

    /// `reader` with its bytes counted toward a transfer named `what`, which begins when the
    /// reader is first read: a stream that is never read (a layer already stored) shows nothing.
    pub fn track<R: AsyncRead + Send + Unpin + 'static>(
        &self,
        what: &str,
        total: Option<u64>,
        reader: R,
    ) -> Counted<R> {
        self.track_as(Activity::Download, what, total, reader)
    }

    /// As `track`, for a transfer that is not a download.
    pub fn track_as<R: AsyncRead + Send + Unpin>(
        &self,
        activity: Activity,
        what: &str,
        total: Option<u64>,
        reader: R,
    ) -> Counted<R> {
        let transfer = match &self.0 {
            Some(sink) => TransferState::Waiting(sink.clone(), activity, what.to_string()),
            None => TransferState::Off,
        };
        Counted { inner: reader, transfer, total, seen: 0 }
    }
}

enum TransferState {
    Off,
    Waiting(Arc<dyn Progress>, Activity, String),
    Running(Box<dyn Transfer>),
}

/// A reader that reports what passes through it; it counts the transfer complete at the end
/// of its stream when the size matches what was announced (or none was).
pub struct Counted<R> {
    inner: R,
    transfer: TransferState,
    total: Option<u64>,
    seen: u64,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        if let TransferState::Waiting(sink, activity, what) = &this.transfer {
            this.transfer = TransferState::Running(sink.begin(*activity, what, this.total));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        let n = (buf.filled().len() - before) as u64;
        this.seen += n;
        if let TransferState::Running(transfer) = &this.transfer {
            if n > 0 {
                transfer.advance(n);
            } else if this.total.is_none_or(|t| t == this.seen) {
                transfer.complete();
            }
        }
        Poll::Ready(Ok(()))
    }
}
