//! The SHA-512 of a blob taken on a thread of its own while the blob is written.
//!
//! A converted layer's writer also decompresses the layer, hashes it twice with SHA-256 and
//! parses its tar, all on one thread: for an image of one big layer (most base images) that
//! thread is the whole pull's critical path, and SHA-512 was 40% of it. The hashing thread
//! reads back what the writer has written, from the page cache, so that the writer's thread
//! neither hashes nor copies.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::mpsc;
use std::thread::JoinHandle;

use crate::image_id::{ImageHasher, ImageId};

const READ_BUFFER: usize = 256 * 1024;

pub(crate) struct BlobHasher {
    /// How many bytes of the file are written, as they grow.
    written: Option<mpsc::Sender<u64>>,
    thread: Option<JoinHandle<io::Result<(ImageId, u64)>>>,
}

impl BlobHasher {
    /// Starts hashing `file` (a handle of its own on the blob, read by offset) from its start.
    pub(crate) fn start(file: File) -> io::Result<Self> {
        let (written, grown) = mpsc::channel::<u64>();
        let thread =
            std::thread::Builder::new().name("blob-sha512".into()).spawn(move || hash_as_written(file, grown))?;
        Ok(BlobHasher { written: Some(written), thread: Some(thread) })
    }

    /// Tells the hasher that the file's first `total` bytes are written.
    pub(crate) fn wrote(&self, total: u64) {
        if let Some(written) = &self.written {
            // A hasher that has stopped reports why at `finish`.
            let _ = written.send(total);
        }
    }

    /// Waits for the hash of the file's first `total` bytes, all of them written.
    pub(crate) fn finish(mut self, total: u64) -> io::Result<ImageId> {
        self.wrote(total);
        self.written = None;
        hash_of_all(self.thread.take().expect("finished once"), total)
    }
}

/// The hash a hashing thread ends with, which must be of `total` bytes.
fn hash_of_all(thread: JoinHandle<io::Result<(ImageId, u64)>>, total: u64) -> io::Result<ImageId> {
    let (id, hashed) = thread.join().map_err(|_| io::Error::other("the blob's hashing thread panicked"))??;
    if hashed != total {
        return Err(io::Error::other(format!("hashed {hashed} bytes of a blob of {total}")));
    }
    Ok(id)
}

impl Drop for BlobHasher {
    fn drop(&mut self) {
        // An unfinished blob: the thread stops at its next message, and no one waits for it.
        self.written = None;
    }
}

fn hash_as_written(file: File, grown: mpsc::Receiver<u64>) -> io::Result<(ImageId, u64)> {
    let mut hasher = ImageHasher::new();
    let mut buffer = vec![0u8; READ_BUFFER];
    let mut hashed = 0u64;
    // Ends when the writer hangs up: after `finish`'s last total, or when it gives up.
    while let Ok(mut total) = grown.recv() {
        // Totals that came meanwhile are taken at once: one read loop to the newest.
        while let Ok(newer) = grown.try_recv() {
            total = newer;
        }
        while hashed < total {
            let want = ((total - hashed) as usize).min(READ_BUFFER);
            let n = file.read_at(&mut buffer[..want], hashed)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the blob is shorter than written"));
            }
            hasher.update(&buffer[..n]);
            hashed += n as u64;
        }
    }
    Ok((hasher.finish(), hashed))
}

/// A blob's SHA-512 taken on a thread of its own from the writer's buffers themselves, handed
/// over once written: no read back, for a writer that owns its buffers (`AciBuilder`).
pub(crate) struct FedHasher {
    chunks: Option<mpsc::SyncSender<(Box<[u8]>, usize)>>,
    /// Buffers the thread has hashed, for the writer to fill again.
    spare: mpsc::Receiver<Box<[u8]>>,
    thread: Option<JoinHandle<io::Result<(ImageId, u64)>>>,
}

/// Buffers handed over and not yet hashed: a writer this far ahead waits for the thread.
const FED_AHEAD: usize = 8;

impl FedHasher {
    pub(crate) fn start() -> io::Result<Self> {
        let (chunks, fed) = mpsc::sync_channel::<(Box<[u8]>, usize)>(FED_AHEAD);
        let (hashed, spare) = mpsc::channel();
        let thread = std::thread::Builder::new().name("blob-sha512".into()).spawn(move || {
            let mut hasher = ImageHasher::new();
            let mut total = 0u64;
            for (buffer, len) in fed {
                hasher.update(&buffer[..len]);
                total += len as u64;
                // A writer that has finished no longer takes buffers back.
                let _ = hashed.send(buffer);
            }
            Ok((hasher.finish(), total))
        })?;
        Ok(FedHasher { chunks: Some(chunks), spare, thread: Some(thread) })
    }

    /// Hands over `buffer`, whose first `len` bytes come next in the blob; returns a buffer of
    /// the same size to fill next.
    pub(crate) fn feed(&mut self, buffer: Box<[u8]>, len: usize) -> Box<[u8]> {
        let size = buffer.len();
        if let Some(chunks) = &self.chunks {
            // The thread only ends when the channel closes: a failed send cannot happen.
            let _ = chunks.send((buffer, len));
        }
        self.spare.try_recv().unwrap_or_else(|_| vec![0u8; size].into_boxed_slice())
    }

    /// Waits for the hash of all that was fed, which must be `total` bytes.
    pub(crate) fn finish(mut self, total: u64) -> io::Result<ImageId> {
        self.chunks = None;
        hash_of_all(self.thread.take().expect("finished once"), total)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn hashes_what_is_written_as_it_grows() {
        let mut file = tempfile::tempfile().unwrap();
        let hasher = BlobHasher::start(file.try_clone().unwrap()).unwrap();
        let mut expected = ImageHasher::new();
        let mut total = 0;
        for i in 0..40u32 {
            let chunk = vec![i as u8; 1000 + 37 * i as usize];
            file.write_all(&chunk).unwrap();
            expected.update(&chunk);
            total += chunk.len() as u64;
            hasher.wrote(total);
        }
        assert_eq!(hasher.finish(total).unwrap(), expected.finish());
    }

    #[test]
    fn a_fed_hasher_hashes_what_it_is_fed_in_order() {
        let mut hasher = FedHasher::start().unwrap();
        let mut expected = ImageHasher::new();
        let mut buffer = vec![0u8; 4096].into_boxed_slice();
        let mut total = 0;
        // More buffers than are ever in flight, so that spare ones come back and are refilled.
        for i in 0..200usize {
            let len = (i * 37) % 4097;
            buffer[..len].fill(i as u8);
            expected.update(&buffer[..len]);
            total += len as u64;
            buffer = hasher.feed(buffer, len);
            assert_eq!(buffer.len(), 4096);
        }
        assert_eq!(hasher.finish(total).unwrap(), expected.finish());
        assert!(FedHasher::start().unwrap().finish(1).is_err(), "fed less than said");
    }

    #[test]
    fn a_blob_shorter_than_said_is_an_error() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"short").unwrap();
        let hasher = BlobHasher::start(file.try_clone().unwrap()).unwrap();
        assert!(hasher.finish(10).is_err());
    }
}
