//! Crash points for the crash-consistency tests: with `IODRIFT_CRASH_AT=N` set, the process
//! kills itself with SIGKILL at the Nth point where it changes what it stores.
//!
//! The points are every step of a write: a local file complete under its temporary name and
//! then renamed into place, an object before and after its PUT, a create, a delete. Tests run a
//! command with N = 1, 2, ... until it completes, so every write of the command is covered.
//! Writes whose moment depends on the clock (the lease's renewals) run [`unnumbered`], so the
//! numbering is the same in every run. Unset (the default), a point costs one load.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The variable that names the point to die at (1 is the first).
pub const CRASH_AT: &str = "IODRIFT_CRASH_AT";

static TARGET: OnceLock<Option<usize>> = OnceLock::new();
static REACHED: AtomicUsize = AtomicUsize::new(0);

tokio::task_local! {
    static UNNUMBERED: ();
}

/// Runs `future` with its crash points left out of the numbering.
pub async fn unnumbered<F: std::future::Future>(future: F) -> F::Output {
    UNNUMBERED.scope((), future).await
}

/// Counts one point; kills the process when it is the one `IODRIFT_CRASH_AT` names.
pub fn point() {
    let target = *TARGET.get_or_init(|| {
        std::env::var(CRASH_AT)
            .ok()
            .and_then(|n| n.trim().parse::<usize>().ok())
    });
    let Some(target) = target else {
        return;
    };
    if UNNUMBERED.try_with(|_| ()).is_ok() {
        return;
    }
    if REACHED.fetch_add(1, Ordering::SeqCst) + 1 == target {
        kill_self();
    }
}

#[cfg(unix)]
fn kill_self() {
    // SAFETY: kill(2) on this process's own id with a valid signal number has no memory effects.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGKILL);
    }
    std::process::abort();
}

#[cfg(not(unix))]
fn kill_self() {
    std::process::abort();
}
