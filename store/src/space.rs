//! Room on the filesystem written to: the store's, or the directory an image is extracted or
//! rendered into. Writing a blob or a tree stops once the filesystem would keep less than a
//! reserve free (1% of it, at most 1 GiB): an image too large for the disk, or one that expands
//! without end (a decompression bomb), then fails on its own before the host's other programs
//! find the disk full. The failure is an ordinary write error: the import or render that meets
//! it takes back what it wrote.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd};

/// The reserve is 1% of the filesystem, up to this.
const MAX_RESERVE: u64 = 1 << 30;
/// How much is written between two looks at the room left, at most: a look is one syscall.
const MAX_BETWEEN_LOOKS: u64 = 8 << 20;

/// Writes for one writer (a blob, a tree), counting what it puts on the filesystem and looking
/// at the room left whenever what it may write without looking is spent.
#[derive(Default)]
pub struct SpaceGuard {
    since_look: u64,
    /// What may be written from the last look on: the room above the reserve then, up to a bound.
    allowance: u64,
}

impl SpaceGuard {
    /// Writes all of `bytes` to `file`, or fails, writing nothing, when they would leave the
    /// filesystem holding it with less than the reserve free.
    pub fn write_all(&mut self, file: &mut File, bytes: &[u8]) -> io::Result<()> {
        self.make_room(file.as_fd(), bytes.len() as u64)?;
        file.write_all(bytes)
    }

    fn make_room(&mut self, file: BorrowedFd<'_>, n: u64) -> io::Result<()> {
        if self.since_look + n <= self.allowance {
            self.since_look += n;
            return Ok(());
        }
        let room = Room::of(file)?;
        let above_reserve = room.free.saturating_sub(room.reserve);
        if above_reserve < n {
            return Err(room.full());
        }
        self.allowance = above_reserve.min(MAX_BETWEEN_LOOKS).max(n);
        self.since_look = n;
        Ok(())
    }
}

struct Room {
    /// What this process may still write.
    free: u64,
    reserve: u64,
}

impl Room {
    fn of(file: BorrowedFd<'_>) -> io::Result<Room> {
        let st = nix::sys::statvfs::fstatvfs(file)?;
        let unit = st.fragment_size() as u64;
        let total = st.blocks() as u64 * unit;
        if total == 0 {
            // A filesystem that gives no sizes (some FUSE ones): nothing to go by.
            return Ok(Room { free: u64::MAX, reserve: 0 });
        }
        // Root may write into the blocks a filesystem keeps for root; others may not.
        let blocks = if nix::unistd::geteuid().is_root() { st.blocks_free() } else { st.blocks_available() };
        Ok(Room { free: blocks as u64 * unit, reserve: (total / 100).min(MAX_RESERVE) })
    }

    fn full(&self) -> io::Error {
        io::Error::new(
            io::ErrorKind::StorageFull,
            format!(
                "the filesystem is nearly full: {} left, and rkt keeps {} free (1% of it, at most 1 GiB)",
                shown(self.free),
                shown(self.reserve)
            ),
        )
    }
}

fn shown(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b => format!("{:.1} KiB", b as f64 / 1024.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refusal_names_the_room_left_and_the_reserve() {
        let err = Room { free: 900 << 10, reserve: 1 << 20 }.full();
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert!(err.to_string().contains("nearly full: 900.0 KiB left, and rkt keeps 1.0 MiB free"), "{err}");
    }

    #[test]
    fn a_guard_looks_first_then_once_its_allowance_is_spent() {
        let mut file = tempfile::tempfile().unwrap();
        let mut guard = SpaceGuard::default();
        // Whatever the temp directory's filesystem, the first write looks.
        if guard.write_all(&mut file, b"x").is_err() {
            eprintln!("the temp directory's filesystem is full: nothing more to check");
            return;
        }
        assert!(guard.allowance >= 1 && guard.allowance <= MAX_BETWEEN_LOOKS);
        let allowance = guard.allowance;
        guard.write_all(&mut file, &vec![0; (allowance - 1) as usize]).unwrap();
        assert_eq!(guard.since_look, allowance, "no look within the allowance");
        guard.write_all(&mut file, b"x").unwrap();
        assert_eq!(guard.since_look, 1, "a look once it is spent");
    }
}
