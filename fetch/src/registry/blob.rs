//! A layer blob as a stream that asks the registry only when first read (so the bound on the
//! layers converted at once also bounds the downloads) and resumes a broken transfer with
//! `Range` from where it stopped.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

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
