//! The open-file limit. rkt raises its own soft limit to the hard one, as Go programs do since
//! Go 1.19: writing a rendered tree keeps a directory open for each level of the path being
//! written, and an image's paths may be 2,047 levels deep, past the usual soft limit of 1024.
//! The pod's init and apps, and `rkt enter`'s commands, get the limit rkt was started with.

use std::sync::OnceLock;

static STARTED_WITH: OnceLock<libc::rlimit> = OnceLock::new();

/// Raises the soft limit of open files to the hard limit, remembering the one rkt had.
pub fn raise_open_files() {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur >= limit.rlim_max {
        return;
    }
    if STARTED_WITH.set(limit).is_ok() {
        let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
        // SAFETY: a plain system call on a valid struct. Should it fail, rkt runs as started.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) };
    }
}

/// The limit rkt was started with, when `raise_open_files` changed it. Read it before a fork
/// or clone: the child may then only make system calls.
pub fn started_with() -> Option<libc::rlimit> {
    STARTED_WITH.get().copied()
}

/// Puts back the limit rkt was started with; async-signal-safe given `started_with`'s value.
pub fn restore_open_files(limit: Option<libc::rlimit>) {
    if let Some(limit) = limit {
        // SAFETY: a plain system call on a valid struct.
        unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) };
    }
}
