//! WAL checkpoints off the commit path. SQLite's automatic checkpoint runs inside the commit
//! that crosses the threshold, so every few dozen batches one batch (and everyone queued behind
//! it) waited several milliseconds while a thousand pages were copied and the database file
//! synced. The group-commit writer turns the automatic checkpoint off on its connection and
//! nudges this task after each commit instead. The task copies the WAL into the database on a
//! connection of its own while commits go on, then takes the writer's lock only to copy the few
//! frames committed meanwhile: with nothing left in the WAL, the writer's next transaction starts
//! it again from the beginning, so the file does not grow without bound.

use std::sync::Arc;
use std::time::Duration;

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{Connection, SqliteConnection};
use tokio::sync::{Mutex, mpsc};

use crate::storage::{StoreError, classify};

/// Commits gathered into one checkpoint: at most one checkpoint starts per pause.
const PAUSE: Duration = Duration::from_millis(50);

/// Handle the writer nudges after each commit; the task ends when every handle is dropped.
#[derive(Debug, Clone)]
pub(super) struct Checkpointer {
    nudge: mpsc::Sender<()>,
}

impl Checkpointer {
    /// Opens the checkpointer's connection and starts its task on the current tokio runtime.
    pub(super) async fn start(
        options: &SqliteConnectOptions,
        writer: Arc<Mutex<SqliteConnection>>,
    ) -> Result<Checkpointer, StoreError> {
        // A checkpoint reads frames from the WAL and writes pages; it needs no page cache.
        let mut conn = SqliteConnection::connect_with(
            &options
                .clone()
                .pragma("cache_size", "-64")
                .thread_name(|_| "sqlite-checkpt".to_owned()),
        )
        .await
        .map_err(classify)?;
        let (nudge, mut nudged) = mpsc::channel(1);
        tokio::spawn(async move {
            while nudged.recv().await.is_some() {
                tokio::time::sleep(PAUSE).await;
                if let Err(error) = checkpoint(&mut conn, &writer).await {
                    tracing::warn!(%error, "WAL checkpoint failed; it is tried again after the next commit");
                }
            }
            let _ = conn.close().await;
        });
        Ok(Checkpointer { nudge })
    }

    /// Asks for a checkpoint soon; a request already pending covers this one.
    pub(super) fn after_commit(&self) {
        let _ = self.nudge.try_send(());
    }
}

/// What `PRAGMA wal_checkpoint` reports: whether it was blocked, the WAL's frames and how many
/// of them are now in the database.
#[derive(Debug, sqlx::FromRow)]
struct Progress {
    busy: i64,
    log: i64,
    checkpointed: i64,
}

/// Copies the WAL while commits go on, then the rest with the writer held.
async fn checkpoint(
    conn: &mut SqliteConnection,
    writer: &Mutex<SqliteConnection>,
) -> Result<(), StoreError> {
    passive(conn).await?;
    let _writer = writer.lock().await;
    let progress = passive(conn).await?;
    if progress.busy != 0 || progress.checkpointed < progress.log {
        // A reader still uses older frames; the next round catches up.
        tracing::debug!(?progress, "WAL not fully checkpointed");
    }
    Ok(())
}

async fn passive(conn: &mut SqliteConnection) -> Result<Progress, StoreError> {
    sqlx::query_as::<_, Progress>("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(conn)
        .await
        .map_err(classify)
}
