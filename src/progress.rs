//! Download progress as the user sees it: a bar per download when stderr is a terminal, a line
//! as each download starts and ends otherwise, nothing at all with `--quiet`.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use rkt_fetch::progress::{Activity, Progress, ProgressHandle, Transfer};

use crate::output::human_bytes;

pub fn handle(quiet: bool) -> ProgressHandle {
    if quiet {
        ProgressHandle::default()
    } else if std::io::stderr().is_terminal() {
        ProgressHandle::new(Arc::new(Bars { multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()) }))
    } else {
        ProgressHandle::new(Arc::new(Lines))
    }
}

/// What the user is told is under way, and then done.
fn verbs(activity: Activity) -> (&'static str, &'static str) {
    match activity {
        Activity::Download => ("Downloading", "Downloaded"),
        Activity::Decompress => ("Decompressing", "Decompressed"),
        Activity::Import => ("Importing", "Imported"),
    }
}

/// What a download is called on screen: a layer digest is cut to what identifies it.
fn label(what: &str) -> String {
    match what.strip_prefix("sha256:") {
        Some(hex) => format!("layer sha256:{}", &hex[..hex.len().min(12)]),
        None => what.to_string(),
    }
}

struct Bars {
    multi: MultiProgress,
}

impl Progress for Bars {
    fn begin(&self, activity: Activity, what: &str, total: Option<u64>) -> Box<dyn Transfer> {
        let bar = match total {
            Some(total) => ProgressBar::new(total).with_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                    .expect("the template is valid")
                    .progress_chars("=> "),
            ),
            None => ProgressBar::no_length().with_style(
                ProgressStyle::with_template("{msg} {bytes} {bytes_per_sec}").expect("the template is valid"),
            ),
        };
        let bar = self.multi.add(bar);
        bar.set_message(format!("{} {}", verbs(activity).0, label(what)));
        Box::new(Bar(bar))
    }
}

struct Bar(ProgressBar);

impl Transfer for Bar {
    fn advance(&self, bytes: u64) {
        self.0.inc(bytes);
    }

    fn complete(&self) {
        if !self.0.is_finished() {
            self.0.finish();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        // A download that failed or was cancelled leaves its bar where it stopped.
        if !self.0.is_finished() {
            self.0.abandon();
        }
    }
}

/// For logs: one line when a download starts, one when it completes.
struct Lines;

impl Progress for Lines {
    fn begin(&self, activity: Activity, what: &str, total: Option<u64>) -> Box<dyn Transfer> {
        let size = total.map(|t| format!(" ({})", human_bytes(t))).unwrap_or_default();
        let (doing, done) = verbs(activity);
        eprintln!("{doing} {}{size}", label(what));
        Box::new(Line { done, what: label(what), bytes: AtomicU64::new(0), reported: AtomicBool::new(false) })
    }
}

struct Line {
    done: &'static str,
    what: String,
    bytes: AtomicU64,
    reported: AtomicBool,
}

impl Transfer for Line {
    fn advance(&self, bytes: u64) {
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn complete(&self) {
        if !self.reported.swap(true, Ordering::Relaxed) {
            eprintln!("{} {}: {}", self.done, self.what, human_bytes(self.bytes.load(Ordering::Relaxed)));
        }
    }
}
