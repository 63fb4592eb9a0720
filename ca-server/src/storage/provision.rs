//! The database side of `init`: check that the database is reachable and empty before anything
//! is written (creating a missing PostgreSQL database when the role may), write the schema and
//! the first audit events in one transaction, and undo what `init` created when it fails.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, PgConnection, SqliteConnection};

use super::{AuditEvent, StoreError, classify};

/// The maintenance database `CREATE DATABASE` and `DROP DATABASE` are sent to.
const MAINTENANCE_DATABASE: &str = "postgres";
/// SQLSTATE invalid_catalog_name: the database does not exist.
const UNDEFINED_DATABASE: &str = "3D000";
/// How long the checks wait for a lock before naming it.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the database cannot hold a new CA. Messages name the database without its password.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://USER@HOST/DATABASE")]
    Url(String),
    #[error(
        "database {database} already holds data (table `{table}`): `init` needs an empty \
         database; nothing was written"
    )]
    NotEmpty { database: String, table: String },
    #[error("database {database} is not usable: {source}; nothing was written")]
    Unreachable {
        database: String,
        #[source]
        source: StoreError,
    },
    #[error(
        "PostgreSQL database `{name}` does not exist and could not be created ({reason}); \
         create it (`createdb {name}`) or let the role create databases (CREATEDB); nothing \
         was written"
    )]
    CannotCreate { name: String, reason: String },
    #[error("database {database}: {source}")]
    Write {
        database: String,
        #[source]
        source: StoreError,
    },
}

/// A database checked by [`prepare`]: empty, and what `init` itself created so far.
#[derive(Debug)]
pub struct PreparedDatabase {
    database: String,
    created: Created,
}

/// What [`PreparedDatabase::discard`] removes.
#[derive(Debug)]
enum Created {
    /// Nothing: the database existed (empty) before `init`.
    Nothing,
    /// A SQLite file that did not exist before `init` (with its -wal, -shm, -journal).
    SqliteFile(PathBuf),
    /// A PostgreSQL database created by `init` through the maintenance database.
    PostgresDatabase {
        maintenance: Box<PgConnectOptions>,
        name: String,
    },
}

/// The database named by `url`, without user name or password (for messages).
pub fn describe(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => {
            let rest = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
            format!("{scheme}://{rest}")
        }
        None => url.to_owned(),
    }
}

/// Checks, before `init` writes anything, that the database at `url` is reachable and holds no
/// CA data. A PostgreSQL database that does not exist is created through the `postgres`
/// maintenance database when the role may; a SQLite file that does not exist is left for
/// [`write_initial`] to create.
pub async fn prepare(url: &str) -> Result<PreparedDatabase, ProvisionError> {
    let database = describe(url);
    let created = if url.starts_with("sqlite:") {
        prepare_sqlite(url, &database).await?
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        prepare_postgres(url, &database).await?
    } else {
        return Err(ProvisionError::Url(database));
    };
    Ok(PreparedDatabase { database, created })
}

async fn prepare_sqlite(url: &str, database: &str) -> Result<Created, ProvisionError> {
    let unreachable = |source| ProvisionError::Unreachable {
        database: database.to_owned(),
        source,
    };
    let options = SqliteConnectOptions::from_str(url)
        .map_err(|_| ProvisionError::Url(database.to_owned()))?
        .create_if_missing(false)
        .busy_timeout(CHECK_TIMEOUT);
    let path = options.get_filename().to_path_buf();
    if !path.exists() {
        return Ok(Created::SqliteFile(path));
    }
    let mut conn = options
        .connect()
        .await
        .map_err(|e| unreachable(classify(e)))?;
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' \
         ORDER BY name",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| unreachable(classify(e)))?;
    let events = audit_events_in(&mut conn, &tables).await;
    let _ = conn.close().await;
    check_empty(database, &tables, events.map_err(unreachable)?)?;
    Ok(Created::Nothing)
}

async fn audit_events_in(
    conn: &mut SqliteConnection,
    tables: &[String],
) -> Result<i64, StoreError> {
    if !tables.iter().any(|t| t == "audit_events") {
        return Ok(0);
    }
    sqlx::query_scalar("SELECT COUNT(*) FROM audit_events")
        .fetch_one(conn)
        .await
        .map_err(classify)
}

/// Empty: no tables, or only the schema an interrupted `init` left (no audit event yet).
fn check_empty(database: &str, tables: &[String], events: i64) -> Result<(), ProvisionError> {
    let schema_only = tables.iter().any(|t| t == "audit_events") && events == 0;
    match tables.first() {
        Some(table) if !schema_only => Err(ProvisionError::NotEmpty {
            database: database.to_owned(),
            table: table.clone(),
        }),
        _ => Ok(()),
    }
}

async fn prepare_postgres(url: &str, database: &str) -> Result<Created, ProvisionError> {
    let options =
        PgConnectOptions::from_str(url).map_err(|_| ProvisionError::Url(database.to_owned()))?;
    let unreachable = |source| ProvisionError::Unreachable {
        database: database.to_owned(),
        source,
    };
    let mut created = Created::Nothing;
    let mut conn = match PgConnection::connect_with(&options).await {
        Ok(conn) => conn,
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(UNDEFINED_DATABASE) => {
            let name = options.get_database().unwrap_or_default().to_owned();
            let maintenance = options.clone().database(MAINTENANCE_DATABASE);
            create_postgres_database(&maintenance, &name).await?;
            created = Created::PostgresDatabase {
                maintenance: Box::new(maintenance),
                name,
            };
            PgConnection::connect_with(&options)
                .await
                .map_err(|e| unreachable(classify(e)))?
        }
        Err(e) => return Err(unreachable(classify(e))),
    };
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT table_name::text FROM information_schema.tables \
         WHERE table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY table_name",
    )
    .fetch_all(&mut conn)
    .await
    .map_err(|e| unreachable(classify(e)))?;
    let events = if tables.iter().any(|t| t == "audit_events") {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM audit_events")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| unreachable(classify(e)))?
    } else {
        0
    };
    let _ = conn.close().await;
    check_empty(database, &tables, events)?;
    Ok(created)
}

async fn create_postgres_database(
    maintenance: &PgConnectOptions,
    name: &str,
) -> Result<(), ProvisionError> {
    let cannot = |reason: String| ProvisionError::CannotCreate {
        name: name.to_owned(),
        reason,
    };
    if name.is_empty() {
        return Err(cannot("the URL names no database".into()));
    }
    let mut conn = PgConnection::connect_with(maintenance).await.map_err(|e| {
        cannot(format!(
            "cannot reach the `{MAINTENANCE_DATABASE}` database: {e}"
        ))
    })?;
    let created = sqlx::query(AssertSqlSafe(format!(
        "CREATE DATABASE {}",
        quote_identifier(name)
    )))
    .execute(&mut conn)
    .await;
    let _ = conn.close().await;
    created.map(|_| ()).map_err(|e| cannot(e.to_string()))
}

/// A PostgreSQL identifier, double-quoted (embedded quotes doubled).
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

impl PreparedDatabase {
    /// The database, without credentials.
    pub fn name(&self) -> &str {
        &self.database
    }

    /// Undoes what `init` created: drops the PostgreSQL database it created, or removes the
    /// SQLite file it created. A database that existed before is left as it was found, apart
    /// from the schema (which a rerun accepts: it holds no event).
    pub async fn discard(self) {
        match self.created {
            Created::Nothing => {}
            Created::SqliteFile(path) => remove_sqlite_files(&path),
            Created::PostgresDatabase { maintenance, name } => {
                if let Ok(mut conn) = PgConnection::connect_with(&maintenance).await {
                    let dropped = sqlx::query(AssertSqlSafe(format!(
                        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                        quote_identifier(&name)
                    )))
                    .execute(&mut conn)
                    .await;
                    if let Err(error) = dropped {
                        tracing::warn!(%error, database = %name, "could not drop the database init created");
                    }
                    let _ = conn.close().await;
                }
            }
        }
    }
}

fn remove_sqlite_files(path: &Path) {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut name = path.as_os_str().to_owned();
        name.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(name));
    }
}

/// Creates the schema at `url` and appends `events` in one transaction; every connection is
/// closed on return (the SQLite files can then be moved with their directory).
pub async fn write_initial(url: &str, events: &[AuditEvent]) -> Result<(), ProvisionError> {
    let write = |source| ProvisionError::Write {
        database: describe(url),
        source,
    };
    if url.starts_with("sqlite:") {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(|_| ProvisionError::Url(describe(url)))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(CHECK_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| write(classify(e)))?;
        let result = async {
            sqlx::migrate!("migrations/sqlite").run(&pool).await?;
            let mut tx = pool.begin_with("BEGIN IMMEDIATE").await.map_err(classify)?;
            super::sqlite::append_events(&mut tx, events).await?;
            tx.commit().await.map_err(classify)
        }
        .await;
        pool.close().await;
        result.map_err(write)
    } else {
        let options =
            PgConnectOptions::from_str(url).map_err(|_| ProvisionError::Url(describe(url)))?;
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .map_err(|e| write(classify(e)))?;
        let result = async {
            sqlx::migrate!("migrations/postgres").run(&pool).await?;
            let mut tx = pool.begin().await.map_err(classify)?;
            super::postgres::append_events(&mut tx, events).await?;
            tx.commit().await.map_err(classify)
        }
        .await;
        pool.close().await;
        result.map_err(write)
    }
}

#[cfg(test)]
mod tests {
    use super::{check_empty, describe, quote_identifier};

    #[test]
    fn descriptions_never_show_credentials() {
        for (url, shown) in [
            (
                "postgres://ca:secret@db.example:5432/iomt",
                "postgres://db.example:5432/iomt",
            ),
            ("postgres://db/iomt", "postgres://db/iomt"),
            ("sqlite:///var/lib/ca/ca.db", "sqlite:///var/lib/ca/ca.db"),
        ] {
            assert_eq!(describe(url), shown);
        }
    }

    #[test]
    fn identifiers_are_quoted() {
        assert_eq!(quote_identifier("iomt"), "\"iomt\"");
        assert_eq!(quote_identifier("a\"b"), "\"a\"\"b\"");
    }

    #[test]
    fn only_a_schema_without_events_counts_as_empty() {
        let schema = vec!["_sqlx_migrations".to_owned(), "audit_events".to_owned()];
        assert!(check_empty("db", &[], 0).is_ok());
        assert!(check_empty("db", &schema, 0).is_ok());
        assert!(check_empty("db", &schema, 1).is_err());
        assert!(check_empty("db", &["patients".to_owned()], 0).is_err());
    }
}
