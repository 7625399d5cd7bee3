//! The deployment history and queue: SQLite in `state_dir/wharf.db`.
//!
//! The store is the source of truth for every deployment: the webhook writes
//! a deployment here (committed) before it answers 2xx, and workers claim the
//! next one from here, so a crash at any point loses nothing. WAL mode with
//! `synchronous = NORMAL` makes each commit durable against a crash of wharf
//! itself (the common case: `kill -9`, OOM, a panic); `[store] synchronous =
//! "full"` extends that to power loss at the price of an fsync per commit.
//!
//! Webhook inserts go through one writer thread that commits whatever
//! arrived meanwhile in one transaction (group commit): under load, sixteen
//! concurrent pushes cost one commit (one fsync with `full`) instead of
//! sixteen, and each caller still gets its answer only after the commit.
//!
//! Schema changes are numbered migrations applied in order at open time and
//! recorded in `PRAGMA user_version`.

use std::path::Path;
use std::sync::{mpsc, Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::Serialize;

pub use super::status::Status;

/// Each entry moves the schema one version up; never edit a released one.
const MIGRATIONS: &[&str] = &[
    // 1: deployments, their logs, and sender event ids already seen.
    "CREATE TABLE deployments (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,
        id          TEXT NOT NULL UNIQUE,
        project     TEXT NOT NULL,
        stage       TEXT NOT NULL,
        repository  TEXT NOT NULL,
        tag         TEXT NOT NULL,
        digest      TEXT,
        deployer    TEXT NOT NULL,
        status      TEXT NOT NULL,
        trigger     TEXT NOT NULL,
        reason      TEXT,
        created_ms  INTEGER NOT NULL,
        started_ms  INTEGER,
        finished_ms INTEGER
    );
    CREATE INDEX deployments_by_stage ON deployments (project, stage, status, seq);
    CREATE INDEX deployments_by_status ON deployments (status, seq);
    CREATE TABLE deployment_logs (
        deployment_seq INTEGER NOT NULL REFERENCES deployments (seq) ON DELETE CASCADE,
        line_no        INTEGER NOT NULL,
        at_ms          INTEGER NOT NULL,
        stream         TEXT NOT NULL,
        text           TEXT NOT NULL,
        PRIMARY KEY (deployment_seq, line_no)
    ) WITHOUT ROWID;
    CREATE TABLE seen_events (
        event_id TEXT PRIMARY KEY,
        seen_ms  INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 2: the (tag, digest) pairs polling found for a stage, each once.
    "CREATE TABLE polled_tags (
        project     TEXT NOT NULL,
        stage       TEXT NOT NULL,
        tag         TEXT NOT NULL,
        digest      TEXT NOT NULL,
        recorded_ms INTEGER NOT NULL,
        PRIMARY KEY (project, stage, tag, digest)
    ) WITHOUT ROWID;",
];

/// Lines kept per deployment; beyond this the log says it was cut.
pub const MAX_LOG_LINES: i64 = 5_000;

/// A deployment as stored.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    #[serde(skip)]
    pub seq: i64,
    pub id: String,
    pub project: String,
    pub stage: String,
    pub repository: String,
    pub tag: String,
    pub digest: Option<String>,
    pub deployer: String,
    pub status: Status,
    /// What created it: `webhook`, `poll`, `manual`, `rollback`. The column
    /// is in the first schema (every row has one), so no migration is needed.
    pub trigger: String,
    /// The outcome's summary or error; why it was superseded or interrupted.
    pub reason: Option<String>,
    pub created_ms: i64,
    pub started_ms: Option<i64>,
    pub finished_ms: Option<i64>,
}

/// A deployment to be recorded.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub project: String,
    pub stage: String,
    pub repository: String,
    pub tag: String,
    pub digest: Option<String>,
    pub deployer: String,
    pub status: Status,
    pub trigger: &'static str,
}

/// One stored log line.
#[derive(Debug, Clone, Serialize)]
pub struct LogEntry {
    pub at_ms: i64,
    pub stream: String,
    pub text: String,
}

/// Filters for listing deployments.
#[derive(Debug, Clone, Default)]
pub struct Query {
    pub project: Option<String>,
    pub stage: Option<String>,
    pub status: Option<Status>,
    /// Only deployments older than this sequence number (pagination).
    pub before_seq: Option<i64>,
    pub limit: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("deployment store: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("deployment store: {0}")]
    Io(#[from] std::io::Error),
    #[error(
        "deployment store was written by a newer wharf (schema {found}, this build knows {known})"
    )]
    TooNew { found: i64, known: i64 },
    #[error("cannot write the deployment store {path}: {reason}; wharf records every push there before answering, so it does not start without it (a read-only or immutable file, a read-only mount, or a full disk?)")]
    NotWritable { path: String, reason: String },
}

impl StoreError {
    /// The same error for another caller of a failed batch.
    fn copy(&self) -> StoreError {
        match self {
            StoreError::Sqlite(e) => StoreError::Io(std::io::Error::other(e.to_string())),
            StoreError::Io(e) => StoreError::Io(std::io::Error::new(e.kind(), e.to_string())),
            StoreError::TooNew { found, known } => StoreError::TooNew {
                found: *found,
                known: *known,
            },
            StoreError::NotWritable { path, reason } => StoreError::NotWritable {
                path: path.clone(),
                reason: reason.clone(),
            },
        }
    }
}

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The store. Cheap to clone. Calls are short and synchronous; async callers
/// run them on the blocking pool via [`Store::call`], except webhook inserts,
/// which [`Store::insert_batched`] hands to the writer thread.
#[derive(Clone)]
pub struct Store {
    connection: Arc<Mutex<Connection>>,
    writer: mpsc::Sender<InsertJob>,
}

/// What [`Store::insert`] returns: what it recorded, or `None` for a
/// redelivered event.
pub type Inserted = Result<Option<Recorded>, StoreError>;

/// The deployments one insert recorded, and the older ones it superseded
/// (pending approvals of the same stages), which still need their
/// "ended" notification.
#[derive(Debug)]
pub struct Recorded {
    pub deployments: Vec<Deployment>,
    pub superseded: Vec<Deployment>,
}

/// A claimed deployment, now `running`, and the older queued ones of its
/// stage that it superseded.
#[derive(Debug)]
pub struct Claimed {
    pub deployment: Deployment,
    pub superseded: Vec<Deployment>,
}

/// One caller's insert, waiting for the writer thread.
struct InsertJob {
    deployments: Vec<NewDeployment>,
    event_ids: Vec<String>,
    reply: tokio::sync::oneshot::Sender<Inserted>,
}

/// Most inserts committed together; more wait for the next commit.
const MAX_BATCH: usize = 128;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Open (creating) `state_dir/wharf.db` and migrate it.
    ///
    /// # Errors
    /// The file cannot be opened, is not a wharf store, or is from a newer wharf.
    pub fn open(state_dir: &Path, full_sync: bool) -> Result<Store, StoreError> {
        std::fs::create_dir_all(state_dir)?;
        let connection = Connection::open(state_dir.join("wharf.db"))?;
        connection.busy_timeout(std::time::Duration::from_secs(5))?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(
            None,
            "synchronous",
            if full_sync { "FULL" } else { "NORMAL" },
        )?;
        connection.pragma_update(None, "foreign_keys", "ON")?;
        let connection = Arc::new(Mutex::new(connection));
        let (writer, jobs) = mpsc::channel();
        let shared = connection.clone();
        // It ends when the last `Store` clone (and so the last sender) is gone.
        std::thread::Builder::new()
            .name("wharf-store-writer".into())
            .spawn(move || write_batches(&shared, &jobs))?;
        let store = Store { connection, writer };
        store.migrate()?;
        store.prove_writable(&state_dir.join("wharf.db"))?;
        Ok(store)
    }

    /// Write once at open: SQLite falls back to read-only on a file it may
    /// not write, and a store that only fails at the first push would let
    /// the daemon report ready and then answer 500 to every push.
    fn prove_writable(&self, path: &Path) -> Result<(), StoreError> {
        let not_writable = |reason: String| StoreError::NotWritable {
            path: path.display().to_string(),
            reason,
        };
        let connection = self.lock();
        if connection.is_readonly(rusqlite::DatabaseName::Main)? {
            return Err(not_writable("the file is read-only to wharf".into()));
        }
        // Rewriting the schema version is a real write of the file's header.
        let version: i64 = connection.pragma_query_value(None, "user_version", |r| r.get(0))?;
        connection
            .execute_batch(&format!(
                "BEGIN IMMEDIATE; PRAGMA user_version = {version}; COMMIT;"
            ))
            .map_err(|e| not_writable(e.to_string()))
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        lock(&self.connection)
    }

    fn migrate(&self) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let version: i64 = connection.pragma_query_value(None, "user_version", |r| r.get(0))?;
        let known = MIGRATIONS.len() as i64;
        if version > known {
            return Err(StoreError::TooNew {
                found: version,
                known,
            });
        }
        for (index, sql) in MIGRATIONS.iter().enumerate().skip(version as usize) {
            let transaction = connection.transaction()?;
            transaction.execute_batch(sql)?;
            transaction.pragma_update(None, "user_version", index as i64 + 1)?;
            transaction.commit()?;
        }
        Ok(())
    }

    /// Run `f` with this store on the blocking thread pool.
    ///
    /// # Errors
    /// Whatever `f` returns.
    pub async fn call<T, F>(&self, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Store) -> Result<T, StoreError> + Send + 'static,
    {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| StoreError::Io(std::io::Error::other(e.to_string())))?
    }

    /// [`Store::insert`] through the writer thread, which commits the inserts
    /// of concurrent callers together. Returns after the commit.
    ///
    /// # Errors
    /// The write failed: nothing was recorded.
    pub async fn insert_batched(
        &self,
        deployments: Vec<NewDeployment>,
        event_ids: Vec<String>,
    ) -> Inserted {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let gone = || StoreError::Io(std::io::Error::other("the store's writer thread stopped"));
        self.writer
            .send(InsertJob {
                deployments,
                event_ids,
                reply,
            })
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Record deployments in one transaction. An older `awaiting_approval`
    /// of a stage that gets a new deployment becomes `superseded`. Event ids
    /// already seen make the call return `None` (a sender's redelivery).
    ///
    /// # Errors
    /// The write failed: nothing was recorded.
    pub fn insert(
        &self,
        deployments: &[NewDeployment],
        event_ids: &[String],
    ) -> Result<Option<Recorded>, StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let recorded = insert_in(&transaction, deployments, event_ids)?;
        if recorded.is_some() {
            transaction.commit()?;
        }
        Ok(recorded)
    }

    /// Every (tag, digest) a stage has seen: deployed by any trigger (a
    /// webhook's digest may be absent) or recorded by polling. Polling
    /// compares a registry's tags against this, so neither a webhook's
    /// deployment nor its own is found again.
    ///
    /// # Errors
    /// The read failed.
    pub fn seen_tags(
        &self,
        project: &str,
        stage: &str,
    ) -> Result<Vec<(String, Option<String>)>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT tag, digest FROM deployments WHERE project = ?1 AND stage = ?2
             UNION
             SELECT tag, digest FROM polled_tags WHERE project = ?1 AND stage = ?2",
        )?;
        let rows = statement.query_map(params![project, stage], |row| {
            Ok((row.get(0)?, row.get(1)?))
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// Remember that polling found `tag` at `digest` for a stage; a second
    /// call for the same pair changes nothing.
    ///
    /// # Errors
    /// The write failed.
    pub fn record_polled(
        &self,
        project: &str,
        stage: &str,
        tag: &str,
        digest: &str,
    ) -> Result<(), StoreError> {
        self.lock().execute(
            "INSERT OR IGNORE INTO polled_tags (project, stage, tag, digest, recorded_ms)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![project, stage, tag, digest, now_ms()],
        )?;
        Ok(())
    }

    /// Forget sender event ids older than `age_ms`: senders redeliver within
    /// minutes or hours, and the table would otherwise grow forever.
    ///
    /// # Errors
    /// The write failed.
    pub fn prune_seen_events(&self, age_ms: i64) -> Result<usize, StoreError> {
        Ok(self.lock().execute(
            "DELETE FROM seen_events WHERE seen_ms < ?1",
            params![now_ms() - age_ms],
        )?)
    }

    /// Claim the next deployment of a stage: the newest `queued` one becomes
    /// `running`; older `queued` ones become `superseded` by it.
    ///
    /// # Errors
    /// The write failed: nothing changed.
    pub fn claim_next(&self, project: &str, stage: &str) -> Result<Option<Claimed>, StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let newest = transaction
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM deployments
                     WHERE project = ?1 AND stage = ?2 AND status = 'queued'
                     ORDER BY seq DESC LIMIT 1"
                ),
                params![project, stage],
                deployment_from_row,
            )
            .optional()?;
        let Some(mut deployment) = newest else {
            return Ok(None);
        };
        let now = now_ms();
        let superseded = {
            let mut statement = transaction.prepare(&format!(
                "UPDATE deployments SET status = 'superseded', finished_ms = ?4,
                        reason = 'superseded by ' || ?5 || ' (' || ?6 || ')'
                 WHERE project = ?1 AND stage = ?2 AND status = 'queued' AND seq < ?3
                 RETURNING {COLUMNS}"
            ))?;
            let rows = statement.query_map(
                params![
                    project,
                    stage,
                    deployment.seq,
                    now,
                    deployment.id,
                    deployment.tag
                ],
                deployment_from_row,
            )?;
            rows.collect::<Result<Vec<_>, _>>()?
        };
        transaction.execute(
            "UPDATE deployments SET status = 'running', started_ms = ?2 WHERE seq = ?1",
            params![deployment.seq, now],
        )?;
        transaction.commit()?;
        deployment.status = Status::Running;
        deployment.started_ms = Some(now);
        Ok(Some(Claimed {
            deployment,
            superseded,
        }))
    }

    /// Whether a stage has anything `queued`.
    ///
    /// # Errors
    /// The read failed.
    pub fn has_queued(&self, project: &str, stage: &str) -> Result<bool, StoreError> {
        Ok(self.lock().query_row(
            "SELECT EXISTS (SELECT 1 FROM deployments
                                WHERE project = ?1 AND stage = ?2 AND status = 'queued')",
            params![project, stage],
            |r| r.get(0),
        )?)
    }

    /// Stages with something `queued`, oldest first.
    ///
    /// # Errors
    /// The read failed.
    pub fn queued_stages(&self) -> Result<Vec<(String, String)>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare(
            "SELECT project, stage, MIN(seq) AS first FROM deployments
             WHERE status = 'queued' GROUP BY project, stage ORDER BY first",
        )?;
        let rows = statement.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Move a deployment from one status to another, only if it is still in
    /// `from` (so two admins approving at once cannot both win).
    ///
    /// # Errors
    /// The write failed.
    pub fn transition(
        &self,
        id: &str,
        from: Status,
        to: Status,
        reason: Option<&str>,
    ) -> Result<bool, StoreError> {
        let finished = to.is_final().then(now_ms);
        let changed = self.lock().execute(
            "UPDATE deployments SET status = ?3, reason = COALESCE(?4, reason),
                    finished_ms = COALESCE(?5, finished_ms)
             WHERE id = ?1 AND status = ?2",
            params![id, from.as_str(), to.as_str(), reason, finished],
        )?;
        Ok(changed == 1)
    }

    /// Record how a running deployment ended.
    ///
    /// # Errors
    /// The write failed.
    pub fn finish(&self, seq: i64, status: Status, reason: &str) -> Result<(), StoreError> {
        self.lock().execute(
            "UPDATE deployments SET status = ?2, reason = ?3, finished_ms = ?4 WHERE seq = ?1",
            params![seq, status.as_str(), reason, now_ms()],
        )?;
        Ok(())
    }

    /// The newest deployment of `deployment`'s stage that came after it and
    /// was started (not one still queued or awaiting approval, rejected or
    /// superseded): proof that the stage moved on past it.
    ///
    /// # Errors
    /// The read failed.
    pub fn newer_started_in_stage(
        &self,
        deployment: &Deployment,
    ) -> Result<Option<Deployment>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                &format!(
                    "SELECT {COLUMNS} FROM deployments
                     WHERE project = ?1 AND stage = ?2 AND seq > ?3
                       AND status IN ('running', 'succeeded', 'failed', 'interrupted')
                     ORDER BY seq DESC LIMIT 1"
                ),
                params![deployment.project, deployment.stage, deployment.seq],
                deployment_from_row,
            )
            .optional()?)
    }

    /// Every deployment that was `running` when wharf stopped.
    ///
    /// # Errors
    /// The read failed.
    pub fn running(&self) -> Result<Vec<Deployment>, StoreError> {
        self.list(&Query {
            status: Some(Status::Running),
            limit: u32::MAX,
            ..Query::default()
        })
    }

    /// Append log lines to a deployment, up to [`MAX_LOG_LINES`].
    ///
    /// # Errors
    /// The write failed.
    pub fn append_log(&self, seq: i64, lines: &[(i64, &str, &str)]) -> Result<(), StoreError> {
        let mut connection = self.lock();
        let transaction = connection.transaction()?;
        let mut next: i64 = transaction.query_row(
            "SELECT COALESCE(MAX(line_no), 0) FROM deployment_logs WHERE deployment_seq = ?1",
            params![seq],
            |r| r.get(0),
        )?;
        {
            let mut insert = transaction.prepare_cached(
                "INSERT INTO deployment_logs (deployment_seq, line_no, at_ms, stream, text)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?;
            for (at_ms, stream, text) in lines {
                if next >= MAX_LOG_LINES {
                    break;
                }
                next += 1;
                let text = if next == MAX_LOG_LINES {
                    "… log cut: more lines were written than wharf keeps"
                } else {
                    text
                };
                insert.execute(params![seq, next, at_ms, stream, text])?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    /// A deployment's log, in order.
    ///
    /// # Errors
    /// The read failed.
    pub fn log(&self, seq: i64) -> Result<Vec<LogEntry>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(
            "SELECT at_ms, stream, text FROM deployment_logs
             WHERE deployment_seq = ?1 ORDER BY line_no",
        )?;
        let rows = statement.query_map(params![seq], |r| {
            Ok(LogEntry {
                at_ms: r.get(0)?,
                stream: r.get(1)?,
                text: r.get(2)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// One deployment by id.
    ///
    /// # Errors
    /// The read failed.
    pub fn get(&self, id: &str) -> Result<Option<Deployment>, StoreError> {
        Ok(self
            .lock()
            .query_row(
                &format!("SELECT {COLUMNS} FROM deployments WHERE id = ?1"),
                params![id],
                deployment_from_row,
            )
            .optional()?)
    }

    /// Deployments matching `query`, newest first.
    ///
    /// # Errors
    /// The read failed.
    pub fn list(&self, query: &Query) -> Result<Vec<Deployment>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM deployments
             WHERE (?1 IS NULL OR project = ?1) AND (?2 IS NULL OR stage = ?2)
               AND (?3 IS NULL OR status = ?3) AND (?4 IS NULL OR seq < ?4)
             ORDER BY seq DESC LIMIT ?5"
        ))?;
        let rows = statement.query_map(
            params![
                query.project,
                query.stage,
                query.status.map(Status::as_str),
                query.before_seq,
                query.limit
            ],
            deployment_from_row,
        )?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The latest deployment of each (project, stage), and the latest that
    /// succeeded.
    ///
    /// # Errors
    /// The read failed.
    pub fn latest_per_stage(&self) -> Result<Vec<Deployment>, StoreError> {
        let connection = self.lock();
        let mut statement = connection.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM deployments WHERE seq IN
               (SELECT MAX(seq) FROM deployments GROUP BY project, stage)"
        ))?;
        let rows = statement.query_map([], deployment_from_row)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// The succeeded deployments of a stage, newest first.
    ///
    /// # Errors
    /// The read failed.
    pub fn succeeded(
        &self,
        project: &str,
        stage: &str,
        limit: u32,
    ) -> Result<Vec<Deployment>, StoreError> {
        self.list(&Query {
            project: Some(project.into()),
            stage: Some(stage.into()),
            status: Some(Status::Succeeded),
            before_seq: None,
            limit,
        })
    }

    /// How many deployments are in each status.
    ///
    /// # Errors
    /// The read failed.
    pub fn count_by_status(&self) -> Result<Vec<(Status, i64)>, StoreError> {
        let connection = self.lock();
        let mut statement = connection
            .prepare_cached("SELECT status, COUNT(*) FROM deployments GROUP BY status")?;
        let rows = statement.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
        let mut counts = Vec::new();
        for row in rows {
            let (status, count) = row?;
            if let Some(status) = Status::parse(&status) {
                counts.push((status, count));
            }
        }
        Ok(counts)
    }
}

const COLUMNS: &str = "seq, id, project, stage, repository, tag, digest, deployer, status, \
                       trigger, reason, created_ms, started_ms, finished_ms";

fn deployment_from_row(row: &Row<'_>) -> rusqlite::Result<Deployment> {
    let status: String = row.get(8)?;
    Ok(Deployment {
        seq: row.get(0)?,
        id: row.get(1)?,
        project: row.get(2)?,
        stage: row.get(3)?,
        repository: row.get(4)?,
        tag: row.get(5)?,
        digest: row.get(6)?,
        deployer: row.get(7)?,
        status: Status::parse(&status).unwrap_or(Status::Interrupted),
        trigger: row.get(9)?,
        reason: row.get(10)?,
        created_ms: row.get(11)?,
        started_ms: row.get(12)?,
        finished_ms: row.get(13)?,
    })
}

/// A panic while holding the lock cannot leave SQLite inconsistent (a
/// transaction not committed is rolled back), so poisoning is ignored.
fn lock(connection: &Mutex<Connection>) -> MutexGuard<'_, Connection> {
    connection
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The writer thread: take every insert that is waiting, commit them in one
/// transaction, then answer each caller.
fn write_batches(connection: &Mutex<Connection>, jobs: &mpsc::Receiver<InsertJob>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        batch.extend(jobs.try_iter().take(MAX_BATCH - 1));
        let results = insert_batch(&mut lock(connection), &batch);
        for (job, result) in batch.into_iter().zip(results) {
            // A caller that went away (client disconnected) still had its
            // deployment recorded, like any other committed push.
            let _ = job.reply.send(result);
        }
    }
}

/// One transaction for many callers' inserts; each caller gets its own
/// result, or the batch's error (nothing of the batch was committed).
fn insert_batch(connection: &mut Connection, batch: &[InsertJob]) -> Vec<Inserted> {
    match commit_batch(connection, batch) {
        Ok(results) => results.into_iter().map(Ok).collect(),
        Err(error) => {
            let mut results: Vec<Inserted> =
                batch.iter().skip(1).map(|_| Err(error.copy())).collect();
            results.insert(0, Err(error));
            results
        }
    }
}

/// The inserts run in arrival order, so each sees the ones before it (a
/// newer push supersedes an older pending approval, a repeated event id is a
/// redelivery). A redelivery is undone alone (savepoint); any error ends the
/// whole transaction.
fn commit_batch(
    connection: &mut Connection,
    batch: &[InsertJob],
) -> Result<Vec<Option<Recorded>>, StoreError> {
    let mut transaction = connection.transaction()?;
    let mut results = Vec::with_capacity(batch.len());
    for job in batch {
        let result = if job.event_ids.is_empty() {
            insert_in(&transaction, &job.deployments, &job.event_ids)?
        } else {
            let savepoint = transaction.savepoint()?;
            let result = insert_in(&savepoint, &job.deployments, &job.event_ids)?;
            if result.is_some() {
                savepoint.commit()?;
            } // else dropped, which rolls it back
            result
        };
        results.push(result);
    }
    transaction.commit()?;
    Ok(results)
}

/// The statements of [`Store::insert`], inside the caller's transaction.
/// `None` (with nothing left to commit) when an event id was seen before.
/// Statements are cached: a webhook runs the same three every time.
fn insert_in(
    connection: &Connection,
    deployments: &[NewDeployment],
    event_ids: &[String],
) -> Result<Option<Recorded>, StoreError> {
    let now = now_ms();
    for event_id in event_ids {
        let fresh = connection
            .prepare_cached(
                "INSERT OR IGNORE INTO seen_events (event_id, seen_ms) VALUES (?1, ?2)",
            )?
            .execute(params![event_id, now])?;
        if fresh == 0 {
            return Ok(None);
        }
    }
    let mut supersede = connection.prepare_cached(&format!(
        "UPDATE deployments SET status = 'superseded', finished_ms = ?3,
                reason = 'superseded by a newer push (' || ?4 || ') before approval'
         WHERE project = ?1 AND stage = ?2 AND status = 'awaiting_approval'
         RETURNING {COLUMNS}"
    ))?;
    let mut insert = connection.prepare_cached(
        "INSERT INTO deployments (id, project, stage, repository, tag, digest, deployer,
                                  status, trigger, created_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut recorded = Vec::with_capacity(deployments.len());
    let mut superseded = Vec::new();
    for new in deployments {
        let id = uuid::Uuid::new_v4().to_string();
        for row in supersede.query_map(
            params![new.project, new.stage, now, new.tag],
            deployment_from_row,
        )? {
            superseded.push(row?);
        }
        let seq = insert.insert(params![
            id,
            new.project,
            new.stage,
            new.repository,
            new.tag,
            new.digest,
            new.deployer,
            new.status.as_str(),
            new.trigger,
            now
        ])?;
        recorded.push(Deployment {
            seq,
            id,
            project: new.project.clone(),
            stage: new.stage.clone(),
            repository: new.repository.clone(),
            tag: new.tag.clone(),
            digest: new.digest.clone(),
            deployer: new.deployer.clone(),
            status: new.status,
            trigger: new.trigger.to_string(),
            reason: None,
            created_ms: now,
            started_ms: None,
            finished_ms: None,
        });
    }
    Ok(Some(Recorded {
        deployments: recorded,
        superseded,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(stage: &str, tag: &str, status: Status) -> NewDeployment {
        NewDeployment {
            project: "web".into(),
            stage: stage.into(),
            repository: "docker.io/acme/web".into(),
            tag: tag.into(),
            digest: None,
            deployer: "script".into(),
            status,
            trigger: "webhook",
        }
    }

    #[test]
    fn a_schema_1_store_gains_polled_tags_and_keeps_its_rows() {
        let dir = tempfile::tempdir().unwrap();
        {
            // A store as the previous release wrote it: schema 1 only.
            let connection = Connection::open(dir.path().join("wharf.db")).unwrap();
            connection.execute_batch(MIGRATIONS[0]).unwrap();
            connection
                .execute_batch(
                    "INSERT INTO deployments (id, project, stage, repository, tag, digest,
                        deployer, status, trigger, created_ms)
                     VALUES ('old', 'web', 'prod', 'docker.io/acme/web', 'v1.0.0',
                        'sha256:aa', 'script', 'succeeded', 'webhook', 1);
                     PRAGMA user_version = 1;",
                )
                .unwrap();
        }
        let store = Store::open(dir.path(), false).unwrap();
        assert_eq!(store.get("old").unwrap().unwrap().trigger, "webhook");
        store
            .record_polled("web", "prod", "main", "sha256:bb")
            .unwrap();
        store
            .record_polled("web", "prod", "main", "sha256:bb")
            .unwrap();
        store
            .record_polled("web", "edge", "main", "sha256:cc")
            .unwrap();
        let mut seen = store.seen_tags("web", "prod").unwrap();
        seen.sort();
        assert_eq!(
            seen,
            [
                ("main".to_string(), Some("sha256:bb".to_string())),
                ("v1.0.0".to_string(), Some("sha256:aa".to_string())),
            ],
            "the deployment and the polled pair, each once, of this stage only"
        );
    }

    #[test]
    fn newest_queued_runs_and_older_ones_are_superseded() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        for tag in ["a", "b", "c"] {
            store.insert(&[new("s", tag, Status::Queued)], &[]).unwrap();
        }
        store
            .insert(&[new("other", "x", Status::Queued)], &[])
            .unwrap();
        let claim = store.claim_next("web", "s").unwrap().unwrap();
        let claimed = claim.deployment;
        assert_eq!(claimed.tag, "c");
        let mut told: Vec<_> = claim.superseded.iter().map(|d| d.tag.as_str()).collect();
        told.sort();
        assert_eq!(
            told,
            ["a", "b"],
            "the superseded rows are returned for notifying"
        );
        assert!(claim
            .superseded
            .iter()
            .all(|d| d.status == Status::Superseded));
        assert!(!store.has_queued("web", "s").unwrap());
        assert!(store.has_queued("web", "other").unwrap());
        let superseded = store
            .list(&Query {
                status: Some(Status::Superseded),
                limit: 10,
                ..Query::default()
            })
            .unwrap();
        assert_eq!(superseded.len(), 2);
        assert!(superseded[0].reason.as_ref().unwrap().contains(&claimed.id));
    }

    #[test]
    fn a_new_push_supersedes_a_pending_approval_and_event_ids_dedupe() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let first = store
            .insert(
                &[new("prod", "v1", Status::AwaitingApproval)],
                &["e1".into()],
            )
            .unwrap()
            .unwrap();
        assert!(store
            .insert(
                &[new("prod", "v1", Status::AwaitingApproval)],
                &["e1".into()]
            )
            .unwrap()
            .is_none());
        let second = store
            .insert(
                &[new("prod", "v2", Status::AwaitingApproval)],
                &["e2".into()],
            )
            .unwrap()
            .unwrap();
        assert_eq!(second.superseded.len(), 1);
        assert_eq!(second.superseded[0].id, first.deployments[0].id);
        assert_eq!(second.superseded[0].status, Status::Superseded);
        let old = store.get(&first.deployments[0].id).unwrap().unwrap();
        assert_eq!(old.status, Status::Superseded);
        assert!(!store
            .transition(&old.id, Status::AwaitingApproval, Status::Queued, None)
            .unwrap());
        assert_eq!(store.prune_seen_events(60_000).unwrap(), 0);
        assert_eq!(store.prune_seen_events(-60_000).unwrap(), 2);
    }

    #[test]
    fn a_batch_commits_in_arrival_order_and_undoes_a_redelivery_alone() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let job = |tag: &str, event_ids: &[&str]| InsertJob {
            deployments: vec![new("prod", tag, Status::AwaitingApproval)],
            event_ids: event_ids.iter().map(|e| e.to_string()).collect(),
            reply: tokio::sync::oneshot::channel().0,
        };
        let batch = [
            job("v1", &["e1"]),
            job("v2", &["e1"]),       // redelivery of the first
            job("v3", &[]),           // supersedes v1
            job("v4", &["e3", "e1"]), // a redelivery too: e3 must not stick
        ];
        let results = insert_batch(&mut store.lock(), &batch);
        let recorded: Vec<_> = results.into_iter().map(Result::unwrap).collect();
        assert!(recorded[1].is_none() && recorded[3].is_none());
        let v1 = &recorded[0].as_ref().unwrap().deployments[0];
        let v3 = &recorded[2].as_ref().unwrap().deployments[0];
        assert_eq!(
            store.get(&v1.id).unwrap().unwrap().status,
            Status::Superseded
        );
        assert_eq!(
            store.get(&v3.id).unwrap().unwrap().status,
            Status::AwaitingApproval
        );
        assert!(store
            .insert(
                &[new("prod", "v5", Status::AwaitingApproval)],
                &["e3".into()]
            )
            .unwrap()
            .is_some());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_batched_inserts_are_all_committed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let tasks: Vec<_> = (0..64)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let deployment = new("prod", &format!("v{i}"), Status::AwaitingApproval);
                    store.insert_batched(vec![deployment], Vec::new()).await
                })
            })
            .collect();
        for task in tasks {
            assert!(task.await.unwrap().unwrap().is_some());
        }
        let all = store
            .list(&Query {
                limit: 100,
                ..Query::default()
            })
            .unwrap();
        assert_eq!(all.len(), 64);
        let pending = all.iter().filter(|d| d.status == Status::AwaitingApproval);
        assert_eq!(pending.count(), 1, "each push superseded the one before");
    }

    #[test]
    fn logs_are_kept_in_order_and_capped() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), false).unwrap();
        let d = store
            .insert(&[new("s", "a", Status::Queued)], &[])
            .unwrap()
            .unwrap();
        let many: Vec<String> = (0..MAX_LOG_LINES + 10).map(|i| i.to_string()).collect();
        let lines: Vec<_> = many.iter().map(|t| (1, "stdout", t.as_str())).collect();
        let d = &d.deployments;
        store.append_log(d[0].seq, &lines[..3]).unwrap();
        store.append_log(d[0].seq, &lines[3..]).unwrap();
        let log = store.log(d[0].seq).unwrap();
        assert_eq!(log.len() as i64, MAX_LOG_LINES);
        assert_eq!(log[0].text, "0");
        assert_eq!(log[3].text, "3");
        assert!(log.last().unwrap().text.contains("cut"));
    }

    #[test]
    fn reopening_keeps_everything() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let store = Store::open(dir.path(), true).unwrap();
            store
                .insert(&[new("s", "a", Status::Queued)], &[])
                .unwrap()
                .unwrap()
                .deployments[0]
                .id
                .clone()
        };
        let store = Store::open(dir.path(), false).unwrap();
        assert_eq!(store.get(&id).unwrap().unwrap().status, Status::Queued);
        assert_eq!(store.queued_stages().unwrap(), [("web".into(), "s".into())]);
    }
}
