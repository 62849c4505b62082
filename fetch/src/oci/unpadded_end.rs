//! Layers whose tar stops right after its last entry's data, without the padding to a full
//! block or the end-of-archive marker. umoci before 0.4.8 wrote such layers with `umoci insert`
//! (Debian 12 ships 0.4.7; umoci#436), and Go's tar reader, so podman, containerd and umoci
//! itself, accepts them. The layer's diff ID vouches for the stream as it is, so the end is
//! made good here: only in the padding after an entry's data, never inside data or a header.

use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

const BLOCK: u64 = 512;

/// Sits between the layer's stream and the tar reader, which must read nothing else: its
/// count of bytes is the tar reader's position.
pub struct UnpaddedEnd<R> {
    inner: R,
    read: u64,
    /// Where the data of the entry the tar reader last gave out ends.
    data_end: Arc<AtomicU64>,
    zeros: u64,
    ended: bool,
}

impl<R> UnpaddedEnd<R> {
    pub fn new(inner: R) -> (Self, Arc<AtomicU64>) {
        let data_end = Arc::new(AtomicU64::new(0));
        (UnpaddedEnd { inner, read: 0, data_end: data_end.clone(), zeros: 0, ended: false }, data_end)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for UnpaddedEnd<R> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if !self.ended {
            let before = buf.filled().len();
            ready!(Pin::new(&mut self.inner).poll_read(cx, buf))?;
            let n = (buf.filled().len() - before) as u64;
            self.read += n;
            if n > 0 || buf.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            self.ended = true;
            let data_end = self.data_end.load(Ordering::Acquire);
            let padded = data_end.next_multiple_of(BLOCK);
            if (data_end..padded).contains(&self.read) {
                self.zeros = padded - self.read;
            }
        }
        let n = self.zeros.min(buf.remaining() as u64);
        buf.put_slice(&[0; BLOCK as usize][..n as usize]);
        self.zeros -= n;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_core::Stream;
    use std::future::poll_fn;

    fn entry(tar: &mut Vec<u8>, name: &str, data: &[u8]) -> usize {
        let mut h = tokio_tar::Header::new_gnu();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.extend_from_slice(h.as_bytes());
        tar.extend_from_slice(data);
        let end = tar.len();
        tar.resize(end.next_multiple_of(512), 0);
        end
    }

    /// The names and contents the tar reader finds in `bytes`, through an `UnpaddedEnd`.
    async fn read_all(bytes: Vec<u8>) -> Result<Vec<(String, Vec<u8>)>, String> {
        let (reader, data_end) = UnpaddedEnd::new(std::io::Cursor::new(bytes));
        let mut archive = tokio_tar::Archive::new(reader);
        let mut entries = archive.entries().unwrap();
        let mut out = Vec::new();
        while let Some(entry) = poll_fn(|cx| Pin::new(&mut entries).poll_next(cx)).await {
            let mut entry = entry.map_err(|e| e.to_string())?;
            data_end.store(entry.raw_file_position() + entry.effective_size(), Ordering::Release);
            let name = entry.path().unwrap().display().to_string();
            let mut data = Vec::new();
            tokio::io::AsyncReadExt::read_to_end(&mut entry, &mut data).await.map_err(|e| e.to_string())?;
            out.push((name, data));
        }
        Ok(out)
    }

    #[tokio::test]
    async fn a_tar_ending_in_its_last_padding_is_read_whole() {
        let mut tar = Vec::new();
        entry(&mut tar, "a", b"first");
        let end = entry(&mut tar, "b", b"second\n");
        let want = vec![("a".to_string(), b"first".to_vec()), ("b".to_string(), b"second\n".to_vec())];
        for cut in [end, end + 1, tar.len()] {
            assert_eq!(read_all(tar[..cut].to_vec()).await.unwrap(), want, "cut at {cut}");
        }
        let mut whole = tar.clone();
        whole.resize(tar.len() + 1024, 0);
        assert_eq!(read_all(whole).await.unwrap(), want);
    }

    #[tokio::test]
    async fn a_tar_cut_inside_data_or_a_header_is_still_refused() {
        let mut tar = Vec::new();
        entry(&mut tar, "a", b"first");
        let end = entry(&mut tar, "b", &[7; 700]);
        // Inside b's data (also at a block boundary) and inside b's header: none of these is
        // where the last entry's data ends.
        for cut in [end - 1, end - 700 - 100, end - 188] {
            assert!(read_all(tar[..cut].to_vec()).await.is_err(), "cut at {cut}");
        }
    }
}
