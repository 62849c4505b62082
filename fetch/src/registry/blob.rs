//! A layer blob as a stream that asks the registry only when first read (so the bound on the
//! layers converted at once also bounds the downloads) and resumes a broken transfer with
//! `Range` from where it stopped; and a copy of it kept for a conversion that reads it again.

use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use rkt_store::{ScratchFile, SpaceGuard};
use tokio::io::{AsyncRead, ReadBuf};

use super::client::RegistryClient;
use crate::oci::{OciError, Reader};
use crate::task::{HostSlots, Slotted};

/// Broken transfers resumed per blob before giving up.
const RESUMES: u32 = 3;

type Opening = Pin<Box<dyn Future<Output = Result<Slotted<Reader>, OciError>> + Send>>;

enum State {
    Idle,
    Opening(Opening),
    Reading(Slotted<Reader>),
}

pub struct BlobStream {
    client: Arc<RegistryClient>,
    digest: String,
    /// The size the manifest gives (0: unknown, so a short stream cannot be told from a whole one).
    size: u64,
    received: u64,
    resumes_left: u32,
    state: State,
    /// The registry's download slots and its name in them.
    slots: (HostSlots, String),
}

impl BlobStream {
    pub fn new(client: Arc<RegistryClient>, digest: &str, size: u64, slots: (HostSlots, String)) -> Self {
        BlobStream {
            client,
            digest: digest.to_string(),
            size,
            received: 0,
            resumes_left: RESUMES,
            state: State::Idle,
            slots,
        }
    }

    fn open(&self) -> Opening {
        let (client, digest, offset) = (self.client.clone(), self.digest.clone(), self.received);
        let (slots, host) = self.slots.clone();
        Box::pin(async move {
            let slot = slots.acquire(&host).await;
            Ok(Slotted::new(client.blob_from(&digest, offset).await?, slot))
        })
    }
}

impl AsyncRead for BlobStream {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        loop {
            match &mut self.state {
                State::Idle => self.state = State::Opening(self.open()),
                State::Opening(opening) => match ready!(opening.as_mut().poll(cx)) {
                    Ok(reader) => self.state = State::Reading(reader),
                    Err(e) => return Poll::Ready(Err(std::io::Error::other(e.to_string()))),
                },
                State::Reading(reader) => {
                    let before = buf.filled().len();
                    let result = ready!(Pin::new(reader).poll_read(cx, buf));
                    let n = (buf.filled().len() - before) as u64;
                    self.received += n;
                    if self.size > 0 && self.received > self.size {
                        // A descriptor's size is exact: a longer blob is refused as it arrives,
                        // not read on for as long as the registry sends.
                        return Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("blob {} is longer than the {} bytes its manifest gives", self.digest, self.size),
                        )));
                    }
                    let short = n == 0 && self.size > 0 && self.received < self.size;
                    let broken = result.is_err() || short;
                    if broken && self.resumes_left > 0 && n == 0 {
                        self.resumes_left -= 1;
                        self.state = State::Idle;
                        continue;
                    }
                    if short {
                        return Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("blob {} ended after {} of {} bytes", self.digest, self.received, self.size),
                        )));
                    }
                    return Poll::Ready(result);
                }
            }
        }
    }
}

/// A layer blob downloaded again to be read more than once (see `ReadAgain`), kept in a
/// scratch file of the store as it arrives; the reads after that one take the copy. A copy
/// whose download broke off is dropped, and the next read downloads anew.
#[derive(Clone, Default)]
pub struct KeptCopy(Arc<Mutex<Option<ScratchFile>>>);

impl KeptCopy {
    /// A path that opens the whole copy, when there is one.
    pub fn path(&self) -> Option<PathBuf> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).as_ref().map(ScratchFile::path)
    }

    /// `stream`, copied into `scratch` as it is read; the copy is kept once the stream ends.
    pub fn keep<R>(&self, stream: R, scratch: ScratchFile) -> Keeping<R> {
        Keeping { inner: stream, scratch: Some(scratch), space: SpaceGuard::default(), kept: self.clone() }
    }
}

pub struct Keeping<R> {
    inner: R,
    scratch: Option<ScratchFile>,
    space: SpaceGuard,
    kept: KeptCopy,
}

impl<R: AsyncRead + Unpin> AsyncRead for Keeping<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let asked = buf.remaining() > 0;
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut self.inner).poll_read(cx, buf));
        let this = &mut *self;
        let arrived = &buf.filled()[before..];
        let ended = result.is_ok() && arrived.is_empty() && asked;
        if result.is_err() {
            this.scratch = None;
        } else if ended {
            // Readers may ask again past the end: the copy, kept at the first end, stays.
            if let Some(whole) = this.scratch.take() {
                *this.kept.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(whole);
            }
        } else if let Some(scratch) = &mut this.scratch {
            // The copy only spares a download: without room for it, the next read downloads.
            if this.space.write_all(scratch.file(), arrived).is_err() {
                this.scratch = None;
            }
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    /// Gives `data`, then fails when `fail` (a broken download), else ends.
    struct Source {
        data: std::io::Cursor<Vec<u8>>,
        fail: bool,
    }

    impl AsyncRead for Source {
        fn poll_read(
            mut self: Pin<&mut Self>,
            cx: &mut Context<'_>,
            buf: &mut ReadBuf<'_>,
        ) -> Poll<std::io::Result<()>> {
            let before = buf.filled().len();
            ready!(Pin::new(&mut self.data).poll_read(cx, buf))?;
            if buf.filled().len() == before && self.fail {
                return Poll::Ready(Err(std::io::Error::other("connection reset")));
            }
            Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn a_whole_download_is_kept_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let store = rkt_store::Store::open(dir.path()).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let kept = KeptCopy::default();
        let source = Source { data: std::io::Cursor::new(data.clone()), fail: true };
        let mut keeping = kept.keep(source, store.scratch_file().unwrap());
        assert!(keeping.read_to_end(&mut Vec::new()).await.is_err());
        assert!(kept.path().is_none(), "a broken download is not kept");

        let source = Source { data: std::io::Cursor::new(data.clone()), fail: false };
        let mut keeping = kept.keep(source, store.scratch_file().unwrap());
        let mut read = Vec::new();
        keeping.read_to_end(&mut read).await.unwrap();
        // Asked again past its end, it keeps the copy.
        assert_eq!(keeping.read(&mut [0u8; 16]).await.unwrap(), 0);
        assert_eq!(read, data);
        assert_eq!(std::fs::read(kept.path().unwrap()).unwrap(), data);
    }
}
