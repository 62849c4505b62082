//! The SHA-512 of a blob taken on a thread of its own while the blob is written.
//!
//! A converted layer's writer also decompresses the layer, hashes it twice with SHA-256 and
//! parses its tar, all on one thread: for an image of one big layer (most base images) that
//! thread is the whole pull's critical path. SHA-512 was 40% of it, and writing the blob to the
//! page cache a tenth. `FedWriter` takes both: the writer hands it its filled buffers. The
//! read-back `BlobHasher`, for a writer that does not own its buffers, reads what was written
//! back from the page cache.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::{mpsc, Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use crate::growing_blob::Progress;
use crate::image_id::{ImageHasher, ImageId};
use crate::space::SpaceGuard;

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

/// A blob written and hashed (SHA-512) on a thread of its own, from the writer's buffers
/// themselves, handed over once filled: the writer (`AciBuilder`, on the thread that also
/// inflates, hashes and parses a layer) neither writes nor hashes. The thread tells a follower
/// how far the file is written (`Progress`), and keeps the first write error for the writer.
pub(crate) struct FedWriter {
    chunks: Option<mpsc::SyncSender<(Box<[u8]>, usize)>>,
    /// Buffers the thread has written and hashed, for the writer to fill again.
    spare: mpsc::Receiver<Box<[u8]>>,
    shared: Arc<Written>,
    thread: Option<JoinHandle<io::Result<(ImageId, u64)>>>,
}

/// What the writing thread tells the writer as it goes.
#[derive(Default)]
struct Written {
    state: Mutex<WrittenState>,
    changed: Condvar,
}

#[derive(Default)]
struct WrittenState {
    /// Bytes written to the file so far.
    bytes: u64,
    /// The writing stopped at an error: kept for the writer until it is told.
    stopped: bool,
    error: Option<io::Error>,
}

impl WrittenState {
    fn failure(&mut self) -> io::Result<()> {
        match self.stopped {
            true => {
                Err(self.error.take().unwrap_or_else(|| io::Error::other("the blob's writing stopped at an error")))
            }
            false => Ok(()),
        }
    }
}

/// Buffers handed over and not yet written: a writer this far ahead waits for the thread.
const FED_AHEAD: usize = 8;

impl FedWriter {
    /// Starts writing to `file` (a handle of its own on the blob, at its end), telling
    /// `progress` of each write.
    pub(crate) fn start(mut file: File, progress: Arc<Progress>) -> io::Result<Self> {
        let (chunks, fed) = mpsc::sync_channel::<(Box<[u8]>, usize)>(FED_AHEAD);
        let (done, spare) = mpsc::channel();
        let shared = Arc::new(Written::default());
        let told = shared.clone();
        let thread = std::thread::Builder::new().name("blob-sha512".into()).spawn(move || {
            let mut space = SpaceGuard::default();
            let mut hasher = ImageHasher::new();
            let mut total = 0u64;
            for (buffer, len) in fed {
                if let Err(e) = space.write_all(&mut file, &buffer[..len]) {
                    let mut state = told.state.lock().unwrap_or_else(|p| p.into_inner());
                    (state.stopped, state.error) = (true, Some(e));
                    told.changed.notify_all();
                    // The writer learns of it at its next buffer, or when it waits.
                    return Err(io::Error::other("the blob could not be written"));
                }
                hasher.update(&buffer[..len]);
                total += len as u64;
                progress.wrote(total);
                told.state.lock().unwrap_or_else(|p| p.into_inner()).bytes = total;
                told.changed.notify_all();
                // A writer that has finished no longer takes buffers back.
                let _ = done.send(buffer);
            }
            Ok((hasher.finish(), total))
        })?;
        Ok(FedWriter { chunks: Some(chunks), spare, shared, thread: Some(thread) })
    }

    /// Hands over `buffer`, whose first `len` bytes come next in the blob; returns a buffer of
    /// the same size to fill next, or the error that stopped the writing.
    pub(crate) fn feed(&mut self, buffer: Box<[u8]>, len: usize) -> io::Result<Box<[u8]>> {
        self.failed()?;
        let size = buffer.len();
        if let Some(chunks) = &self.chunks {
            // The thread ends early only on a write error, reported by the next call.
            let _ = chunks.send((buffer, len));
        }
        Ok(self.spare.try_recv().unwrap_or_else(|_| vec![0u8; size].into_boxed_slice()))
    }

    /// The write error that stopped the thread (itself the first time it is asked).
    fn failed(&self) -> io::Result<()> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner()).failure()
    }

    /// Waits until the file holds its first `total` bytes (all that was fed), for a reader.
    pub(crate) fn wait_written(&self, total: u64) -> io::Result<()> {
        let mut state = self.shared.state.lock().unwrap_or_else(|p| p.into_inner());
        while state.bytes < total {
            state.failure()?;
            state = self.shared.changed.wait(state).unwrap_or_else(|p| p.into_inner());
        }
        Ok(())
    }

    /// Waits for the last write and the hash of all that was fed, which must be `total` bytes.
    pub(crate) fn finish(mut self, total: u64) -> io::Result<ImageId> {
        self.chunks = None;
        let hashed = hash_of_all(self.thread.take().expect("finished once"), total);
        self.failed()?;
        hashed
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
    fn a_fed_writer_writes_and_hashes_what_it_is_fed_in_order() {
        let file = tempfile::tempfile().unwrap();
        let progress = Arc::new(Progress::default());
        let mut writer = FedWriter::start(file.try_clone().unwrap(), progress.clone()).unwrap();
        let mut expected = Vec::new();
        let mut buffer = vec![0u8; 4096].into_boxed_slice();
        // More buffers than are ever in flight, so that spare ones come back and are refilled.
        for i in 0..200usize {
            let len = (i * 37) % 4097;
            buffer[..len].fill(i as u8);
            expected.extend_from_slice(&buffer[..len]);
            buffer = writer.feed(buffer, len).unwrap();
            assert_eq!(buffer.len(), 4096);
        }
        let total = expected.len() as u64;
        writer.wait_written(total).unwrap();
        let mut on_disk = vec![0u8; expected.len()];
        file.read_exact_at(&mut on_disk, 0).unwrap();
        assert!(on_disk == expected, "the file holds what was fed, in order");
        assert_eq!(progress.written(), total);
        let mut hasher = ImageHasher::new();
        hasher.update(&expected);
        assert_eq!(writer.finish(total).unwrap(), hasher.finish());
        let file = tempfile::tempfile().unwrap();
        let short = FedWriter::start(file, Arc::new(Progress::default())).unwrap();
        assert!(short.finish(1).is_err(), "fed less than said");
    }

    #[test]
    fn a_write_error_reaches_the_writer() {
        // A handle that cannot write: every write fails.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("blob"), b"").unwrap();
        let read_only = File::open(dir.path().join("blob")).unwrap();
        let mut writer = FedWriter::start(read_only, Arc::new(Progress::default())).unwrap();
        let buffer = writer.feed(vec![1u8; 512].into_boxed_slice(), 512).unwrap();
        let error = writer.wait_written(512).unwrap_err();
        assert_eq!(error.raw_os_error(), Some(nix::libc::EBADF), "{error}");
        assert!(writer.feed(buffer, 512).is_err(), "nothing more is taken");
        assert!(writer.finish(1024).is_err());
    }

    #[test]
    fn a_blob_shorter_than_said_is_an_error() {
        let mut file = tempfile::tempfile().unwrap();
        file.write_all(b"short").unwrap();
        let hasher = BlobHasher::start(file.try_clone().unwrap()).unwrap();
        assert!(hasher.finish(10).is_err());
    }
}
