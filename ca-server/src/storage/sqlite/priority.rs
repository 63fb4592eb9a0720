//! The SQLite driver threads at real-time priority while the server runs.
//!
//! sqlx runs each SQLite connection on a thread of its own, and every read batch and group
//! commit is a hand-off to one of them. Under load the two async workers keep both cores busy,
//! so a driver thread woken with a result waits for a core: `ca-bench enroll` measured ~230 µs
//! on the run queue per wake-up of the writer and the readers (2026-12-08), and while the
//! requests of a batch wait for it the workers run out of work and the machine idles (~90 µs
//! per certificate, against ~20 for stateless cfssl in the same run). At `SCHED_FIFO` priority 1
//! a woken driver thread takes a core at once: the run-queue wait goes to ~1 µs and the idle
//! time halves (see README "Performance").
//!
//! sqlx spawns the driver threads itself. A thread created on Linux inherits the scheduling
//! policy of the thread that creates it, so the connections are opened on a short-lived thread
//! that has raised itself first. The driver threads block on their channels and on I/O between
//! statements, so they hold a core only while SQLite works; the kernel still keeps 5 % of every
//! second for normal threads (`sched_rt_runtime_us`). A process without the right
//! (`CAP_SYS_NICE`, or `LimitRTPRIO=1` under systemd) opens the same connections at normal
//! priority and says so once.

use std::future::Future;

use thread_priority::{
    RealtimeThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
    set_thread_priority_and_policy, thread_native_id,
};

use crate::storage::StoreError;

/// How the SQLite driver threads are scheduled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DriverPriority {
    /// The kernel's normal policy, like every other thread (commands, tests, tools).
    #[default]
    Normal,
    /// `SCHED_FIFO` priority 1 where the process may raise it; normal otherwise.
    Realtime,
}

/// Runs `open` (which connects, and so spawns the driver threads) on a thread of its own that
/// first asks for `SCHED_FIFO` priority 1, when `priority` is [`DriverPriority::Realtime`].
/// Tasks `open` spawns run on the current runtime as usual.
pub(super) async fn open_with_priority<T, F>(
    priority: DriverPriority,
    open: F,
) -> Result<T, StoreError>
where
    F: Future<Output = Result<T, StoreError>> + Send + 'static,
    T: Send + 'static,
{
    if priority == DriverPriority::Normal {
        return open.await;
    }
    let runtime = tokio::runtime::Handle::current();
    let (done, opened) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sqlite-open".to_owned())
        .spawn(move || {
            let raised = raise_current_thread();
            let _ = done.send((runtime.block_on(open), raised));
        })
        .map_err(|error| StoreError::Unavailable(sqlx::Error::Io(error)))?;
    let (opened, raised) = opened.await.map_err(|_| StoreError::WriterStopped)?;
    // A store that did not open reports its own error; there are no threads to speak of.
    let opened = opened?;
    match raised {
        Ok(()) => tracing::info!("SQLite driver threads run at real-time priority (SCHED_FIFO 1)"),
        Err(error) => tracing::warn!(
            %error,
            "SQLite driver threads run at normal priority: grant CAP_SYS_NICE or LimitRTPRIO=1 \
             for the throughput README \"Performance\" shows"
        ),
    }
    Ok(opened)
}

/// Asks for `SCHED_FIFO` at its lowest priority for the calling thread.
fn raise_current_thread() -> Result<(), thread_priority::Error> {
    set_thread_priority_and_policy(
        thread_native_id(),
        ThreadPriority::Min,
        ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::Fifo),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The scheduling policy of thread `tid` of this process (field 41 of its `stat`).
    fn policy_of(tid: &str) -> u32 {
        let stat = std::fs::read_to_string(format!("/proc/self/task/{tid}/stat")).unwrap();
        let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .collect();
        fields[38].parse().unwrap()
    }

    /// Policies of this process's threads whose name starts with `prefix`.
    fn policies(prefix: &str) -> Vec<u32> {
        std::fs::read_dir("/proc/self/task")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|entry| {
                std::fs::read_to_string(entry.path().join("comm"))
                    .is_ok_and(|name| name.starts_with(prefix))
            })
            .map(|entry| policy_of(entry.file_name().to_str().unwrap()))
            .collect()
    }

    /// A thread spawned by a thread that raised itself is `SCHED_FIFO` (1) too: what the
    /// driver threads rely on. Where the process may not raise its priority (not root, no
    /// CAP_SYS_NICE), the open still succeeds at normal priority (0).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn threads_spawned_while_opening_inherit_the_priority() {
        let spawned = open_with_priority(DriverPriority::Realtime, async {
            let child = std::thread::Builder::new()
                .name("prio-probe".into())
                .spawn(std::thread::park)
                .unwrap();
            Ok::<_, StoreError>(child)
        })
        .await
        .unwrap();
        let seen = policies("prio-probe");
        spawned.thread().unpark();
        assert_eq!(seen.len(), 1);
        let may_raise = std::thread::spawn(raise_current_thread)
            .join()
            .unwrap()
            .is_ok();
        if std::env::var("CI").as_deref() == Ok("true") {
            assert!(may_raise, "CI runs as root: SCHED_FIFO must be granted");
        }
        assert_eq!(seen[0], if may_raise { 1 } else { 0 });
    }

    /// A store opened for `serve` has its writer, checkpointer and every reader at
    /// `SCHED_FIFO`, and works.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_realtime_store_raises_every_driver_thread() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("ca.db").display());
        let store =
            crate::storage::SqliteStore::connect_with_priority(&url, DriverPriority::Realtime)
                .await
                .unwrap();
        assert!(
            store
                .registered_serials_in(&["SN-1".to_owned()])
                .await
                .unwrap()
                .is_empty()
        );
        let may_raise = std::thread::spawn(raise_current_thread)
            .join()
            .unwrap()
            .is_ok();
        if !may_raise {
            eprintln!("skipped the policy check: this process may not use SCHED_FIFO");
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "CI runs as root"
            );
            return;
        }
        let fifo = |prefix| policies(prefix).iter().filter(|&&p| p == 1).count();
        assert_eq!(fifo("sqlite-writer"), 1);
        assert_eq!(fifo("sqlite-checkpt"), 1);
        assert_eq!(fifo("sqlite-reader"), READERS_OPENED);
    }

    /// The pool's size, every connection opened up front.
    const READERS_OPENED: usize = super::super::READERS as usize;

    /// Normal priority opens in place and leaves the policy alone.
    #[tokio::test]
    async fn normal_priority_opens_in_place() {
        let name = open_with_priority(DriverPriority::Normal, async {
            Ok::<_, StoreError>(std::thread::current().name().map(str::to_owned))
        })
        .await
        .unwrap();
        assert_ne!(name.as_deref(), Some("sqlite-open"));
    }
}
