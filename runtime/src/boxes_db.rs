//! `db/boxes.db`: every box of the home and its state. SQLite in WAL mode with a busy
//! timeout, shared by every process using the home; each state change is a compare-and-set
//! inside one `BEGIN IMMEDIATE` transaction, so two processes can never both move a box.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use boxlite_shim::process::ProcessId;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::options::BoxOptions;
use crate::status::BoxStatus;

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// What `get_info` and `list_info` report about a box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxInfo {
    /// A ULID.
    pub id: String,
    pub name: Option<String>,
    pub status: BoxStatus,
    /// Milliseconds since the Unix epoch.
    pub created_at: u64,
    pub last_updated: u64,
    /// The shim's pid while the box runs.
    pub pid: Option<u32>,
    pub image: String,
    pub cpus: u8,
    pub memory_mib: u32,
    pub labels: BTreeMap<String, String>,
}

/// A box's row: its info, its options and the shim that runs it, if any.
#[derive(Debug, Clone)]
pub struct BoxRecord {
    pub info: BoxInfo,
    pub options: BoxOptions,
    pub shim: Option<ProcessId>,
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("box database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("a box named {0:?} already exists; pick another name or remove it")]
    DuplicateName(String),
    #[error("box database {path} holds a row it cannot read: {reason}")]
    Corrupt { path: PathBuf, reason: String },
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub struct BoxesDb {
    path: PathBuf,
}

impl BoxesDb {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
        }
    }

    fn err(&self) -> impl FnOnce(rusqlite::Error) -> DbError + '_ {
        move |source| DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn connect(&self) -> Result<Connection, DbError> {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let conn = Connection::open(&self.path).map_err(self.err())?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(self.err())?;
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(self.err())?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS boxes (
                 id TEXT PRIMARY KEY,
                 name TEXT UNIQUE,
                 status TEXT NOT NULL,
                 created_at INTEGER NOT NULL,
                 last_updated INTEGER NOT NULL,
                 shim_pid INTEGER,
                 shim_start INTEGER,
                 image TEXT NOT NULL,
                 options TEXT NOT NULL
             );",
        )
        .map_err(self.err())?;
        Ok(conn)
    }

    pub fn insert(&self, info: &BoxInfo, options: &BoxOptions) -> Result<(), DbError> {
        let conn = self.connect()?;
        let options_json = serde_json::to_string(options).expect("options serialize");
        let inserted = conn.execute(
            "INSERT INTO boxes (id, name, status, created_at, last_updated, image, options)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            params![
                info.id,
                info.name,
                info.status.as_str(),
                info.created_at as i64,
                info.last_updated as i64,
                info.image,
                options_json
            ],
        );
        match inserted {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(DbError::DuplicateName(
                    info.name.clone().unwrap_or_default(),
                ))
            }
            other => other.map(|_| ()).map_err(self.err()),
        }
    }

    fn read_row(&self, row: &rusqlite::Row<'_>) -> Result<BoxRecord, DbError> {
        let get = |i: usize| -> Result<Option<String>, DbError> { row.get(i).map_err(self.err()) };
        let status: String = get(2)?.unwrap_or_default();
        let options_json: String = get(8)?.unwrap_or_default();
        let options: BoxOptions =
            serde_json::from_str(&options_json).map_err(|e| DbError::Corrupt {
                path: self.path.clone(),
                reason: e.to_string(),
            })?;
        let shim_pid: Option<i64> = row.get(5).map_err(self.err())?;
        let shim_start: Option<i64> = row.get(6).map_err(self.err())?;
        let shim = match (shim_pid, shim_start) {
            (Some(pid), Some(start)) => Some(ProcessId {
                pid: pid as u32,
                start_time: start as u64,
            }),
            _ => None,
        };
        Ok(BoxRecord {
            info: BoxInfo {
                id: get(0)?.unwrap_or_default(),
                name: get(1)?,
                status: status.parse().map_err(|reason| DbError::Corrupt {
                    path: self.path.clone(),
                    reason,
                })?,
                created_at: row.get::<_, i64>(3).map_err(self.err())? as u64,
                last_updated: row.get::<_, i64>(4).map_err(self.err())? as u64,
                pid: shim.map(|s| s.pid),
                image: get(7)?.unwrap_or_default(),
                cpus: options.cpus,
                memory_mib: options.memory_mib,
                labels: options.labels.clone(),
            },
            options,
            shim,
        })
    }

    const COLUMNS: &'static str =
        "id, name, status, created_at, last_updated, shim_pid, shim_start, image, options";

    /// The box whose id or name is `id_or_name`.
    pub fn get(&self, id_or_name: &str) -> Result<Option<BoxRecord>, DbError> {
        let conn = self.connect()?;
        let sql = format!(
            "SELECT {} FROM boxes WHERE id = ?1 OR name = ?1",
            Self::COLUMNS
        );
        let mut stmt = conn.prepare(&sql).map_err(self.err())?;
        let mut rows = stmt.query([id_or_name]).map_err(self.err())?;
        match rows.next().map_err(self.err())? {
            Some(row) => Ok(Some(self.read_row(row)?)),
            None => Ok(None),
        }
    }

    pub fn list(&self) -> Result<Vec<BoxRecord>, DbError> {
        let conn = self.connect()?;
        let sql = format!(
            "SELECT {} FROM boxes ORDER BY created_at, id",
            Self::COLUMNS
        );
        let mut stmt = conn.prepare(&sql).map_err(self.err())?;
        let mut rows = stmt.query([]).map_err(self.err())?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(self.err())? {
            out.push(self.read_row(row)?);
        }
        Ok(out)
    }

    /// Moves box `id` to `to` if its status is one of `from`; records `shim` (or clears it).
    /// Returns the status it found, and whether it moved.
    pub fn transition(
        &self,
        id: &str,
        from: &[BoxStatus],
        to: BoxStatus,
        shim: Option<ProcessId>,
    ) -> Result<(Option<BoxStatus>, bool), DbError> {
        let mut conn = self.connect()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err())?;
        let current: Option<String> = tx
            .query_row("SELECT status FROM boxes WHERE id = ?1", [id], |row| {
                row.get(0)
            })
            .optional()
            .map_err(self.err())?;
        let Some(current) = current else {
            return Ok((None, false));
        };
        let current: BoxStatus = current.parse().map_err(|reason| DbError::Corrupt {
            path: self.path.clone(),
            reason,
        })?;
        if !from.contains(&current) {
            return Ok((Some(current), false));
        }
        tx.execute(
            "UPDATE boxes SET status = ?2, last_updated = ?3, shim_pid = ?4, shim_start = ?5 WHERE id = ?1",
            params![id, to.as_str(), now_ms() as i64, shim.map(|s| s.pid as i64), shim.map(|s| s.start_time as i64)],
        )
        .map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        Ok((Some(current), true))
    }

    /// Deletes box `id` if its status is one of `from`; returns whether it did.
    pub fn delete(&self, id: &str, from: &[BoxStatus]) -> Result<bool, DbError> {
        let mut conn = self.connect()?;
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.err())?;
        let statuses: Vec<&str> = from.iter().map(|s| s.as_str()).collect();
        let placeholders = (0..statuses.len())
            .map(|i| format!("?{}", i + 2))
            .collect::<Vec<_>>()
            .join(", ");
        let sql = format!("DELETE FROM boxes WHERE id = ?1 AND status IN ({placeholders})");
        let mut values: Vec<&dyn rusqlite::ToSql> = vec![&id];
        values.extend(statuses.iter().map(|s| s as &dyn rusqlite::ToSql));
        let deleted = tx.execute(&sql, values.as_slice()).map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        Ok(deleted == 1)
    }
}
