//! A tree's directories looked at by several threads at once, their results taken in the
//! depth-first order of a sequential walk: the walk's cost is one syscall after another for
//! each entry, which one core cannot hide, while its result must not depend on the timing.

use std::collections::HashMap;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

/// What `look` made of one directory: its result and its subdirectories, in the order they are
/// to be visited.
pub(crate) type Looked<T, E> = Result<(T, Vec<Vec<u8>>), E>;

struct State<T, E> {
    /// Directories not yet looked at, the one the walk wants soonest on top.
    todo: Vec<(u64, Vec<u8>)>,
    /// Directories looked at and not yet taken, by the number given when they were found.
    looked: HashMap<u64, std::thread::Result<Looked<T, E>>>,
    stop: bool,
}

struct Shared<T, E> {
    state: Mutex<State<T, E>>,
    work: Condvar,
    result: Condvar,
}

impl<T, E> Shared<T, E> {
    fn lock(&self) -> MutexGuard<'_, State<T, E>> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Stops the workers however the walk ends, so that the scope that joins them can end.
struct StopOnDrop<'a, T, E>(&'a Shared<T, E>);

impl<T, E> Drop for StopOnDrop<'_, T, E> {
    fn drop(&mut self) {
        self.0.lock().stop = true;
        self.0.work.notify_all();
    }
}

/// Walks the tree below the directory named by the empty path: `look` (run on `workers`
/// threads, each with a `S` of its own, and on the calling thread with `caller` while the
/// result it waits for is not there yet) turns a directory's path into a result and its
/// subdirectories' paths; `take` gets the results in depth-first order, each directory before
/// its subdirectories, siblings in the order `look` gave them. The first error in that order
/// ends the walk, as a sequential walk would; a panic in `look` is raised again here.
pub(crate) fn walk<S: Default, T: Send, E: Send>(
    workers: usize,
    mut caller: S,
    look: impl Fn(&mut S, &[u8]) -> Looked<T, E> + Sync,
    mut take: impl FnMut(T) -> Result<(), E>,
) -> Result<(), E> {
    let shared = Shared {
        state: Mutex::new(State { todo: vec![(0, Vec::new())], looked: HashMap::new(), stop: false }),
        work: Condvar::new(),
        result: Condvar::new(),
    };
    std::thread::scope(|scope| {
        for _ in 0..workers.max(1) {
            scope.spawn(|| work(&shared, &look));
        }
        let _stop = StopOnDrop(&shared);
        let mut order: Vec<u64> = vec![0];
        let mut next = 1u64;
        while let Some(id) = order.pop() {
            let looked = {
                let mut state = shared.lock();
                loop {
                    if let Some(looked) = state.looked.remove(&id) {
                        break looked;
                    }
                    // Rather than sleep until a worker is done with it, this thread looks at
                    // the directory wanted soonest itself: a wait and a wake-up per directory
                    // cost as much as looking at one.
                    match state.todo.pop() {
                        Some((job, dir)) => {
                            drop(state);
                            let looked = catch_unwind(AssertUnwindSafe(|| look(&mut caller, &dir)));
                            state = shared.lock();
                            state.looked.insert(job, looked);
                        }
                        None => state = shared.result.wait(state).unwrap_or_else(PoisonError::into_inner),
                    }
                }
            };
            let (result, subdirs) = looked.unwrap_or_else(|panic| resume_unwind(panic))?;
            let ids: Vec<u64> = (next..next + subdirs.len() as u64).collect();
            next += subdirs.len() as u64;
            shared.lock().todo.extend(ids.iter().copied().zip(subdirs).rev());
            shared.work.notify_all();
            order.extend(ids.into_iter().rev());
            take(result)?;
        }
        Ok(())
    })
}

fn work<S: Default, T, E>(shared: &Shared<T, E>, look: &(impl Fn(&mut S, &[u8]) -> Looked<T, E> + Sync)) {
    let mut scratch = S::default();
    loop {
        let (id, dir) = {
            let mut state = shared.lock();
            loop {
                if state.stop {
                    return;
                }
                if let Some(job) = state.todo.pop() {
                    break job;
                }
                state = shared.work.wait(state).unwrap_or_else(PoisonError::into_inner);
            }
        };
        let looked = catch_unwind(AssertUnwindSafe(|| look(&mut scratch, &dir)));
        shared.lock().looked.insert(id, looked);
        shared.result.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tree given by a function: the directory `p` has `children(p)` subdirectories.
    fn names(dir: &[u8], count: usize) -> Vec<Vec<u8>> {
        (0..count).map(|i| [dir, b"/", format!("{i}").as_bytes()].concat()).collect()
    }

    fn children(dir: &[u8]) -> usize {
        let depth = dir.iter().filter(|b| **b == b'/').count();
        if depth >= 5 {
            0
        } else {
            (dir.iter().map(|b| *b as usize).sum::<usize>() + depth) % 3 + 2
        }
    }

    fn sequential(dir: &[u8], out: &mut Vec<Vec<u8>>) {
        out.push(dir.to_vec());
        for child in names(dir, children(dir)) {
            sequential(&child, out);
        }
    }

    #[test]
    fn results_come_in_the_order_of_a_sequential_walk_whatever_the_workers() {
        let mut expected = Vec::new();
        sequential(b"", &mut expected);
        assert!(expected.len() > 100, "{}", expected.len());
        for workers in [1, 2, 3, 8] {
            let mut seen = Vec::new();
            let looked = walk::<(), _, ()>(
                workers,
                (),
                |_, dir| {
                    // Uneven work, so that later directories often finish first.
                    if dir.len() % 3 == 0 {
                        std::thread::sleep(std::time::Duration::from_micros(200));
                    }
                    Ok((dir.to_vec(), names(dir, children(dir))))
                },
                |dir| {
                    seen.push(dir);
                    Ok(())
                },
            );
            assert_eq!(looked, Ok(()));
            assert_eq!(seen, expected, "{workers} workers");
        }
    }

    #[test]
    fn the_first_error_in_walk_order_ends_it() {
        let mut seen = Vec::new();
        let looked = walk::<(), _, String>(
            2,
            (),
            |_, dir| match dir {
                b"/1" | b"/2/0" => Err(String::from_utf8_lossy(dir).into_owned()),
                _ => Ok((dir.to_vec(), if dir.len() < 3 { names(dir, 3) } else { Vec::new() })),
            },
            |dir| {
                seen.push(dir);
                Ok(())
            },
        );
        assert_eq!(looked, Err("/1".to_string()));
        assert_eq!(seen, vec![b"".to_vec(), b"/0".to_vec(), b"/0/0".to_vec(), b"/0/1".to_vec(), b"/0/2".to_vec()]);
    }

    #[test]
    fn an_error_of_the_taker_ends_it_and_a_panic_comes_back() {
        let looked = walk::<(), _, &str>(
            2,
            (),
            |_, dir| Ok((dir.len(), names(dir, 2))),
            |len| match len {
                4 => Err("deep enough"),
                _ => Ok(()),
            },
        );
        assert_eq!(looked, Err("deep enough"));
        let panicked = catch_unwind(|| {
            walk::<(), (), ()>(
                2,
                (),
                |_, dir| if dir.is_empty() { Ok(((), names(dir, 2))) } else { panic!("boom") },
                |_| Ok(()),
            )
        });
        assert!(panicked.is_err());
    }
}
