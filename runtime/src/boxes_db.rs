//! `db/boxes.db`: every box of the home and its state. SQLite in WAL mode with a busy
//! timeout, shared by every process using the home; each state change is a compare-and-set
//! inside one `BEGIN IMMEDIATE` transaction, so two processes can never both move a box.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use boxlite_shim_api::process::ProcessId;
use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::options::BoxOptions;
use crate::sqlite::{ConnectionGuard, SharedConnection};
use crate::status::BoxStatus;

const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// A box's id: a ULID (26 characters, sortable by creation time).
pub type BoxID = String;

/// What `get_info` and `list_info` report about a box.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoxInfo {
    pub id: BoxID,
    pub name: Option<String>,
    pub status: BoxStatus,
    pub created_at: DateTime<Utc>,
    /// When the status last changed.
    pub last_updated: DateTime<Utc>,
    /// The shim's pid while the box runs (it hosts the VMM).
    pub pid: Option<u32>,
    /// The image reference, or the rootfs path.
    pub image: String,
    pub cpus: u8,
    pub memory_mib: u32,
    pub labels: HashMap<String, String>,
    /// The engine of the box's last start ("qemu", "krun"); `None` before the first.
    pub engine: Option<String>,
}

/// A box's row: its info, its options and the shim that runs it, if any.
#[derive(Debug, Clone)]
pub struct BoxRecord {
    pub info: BoxInfo,
    pub options: BoxOptions,
    pub shim: Option<ProcessId>,
    /// The host boot the shim was started in (`/proc/sys/kernel/random/boot_id`).
    pub shim_boot: Option<String>,
    /// What the box needs of its image (a `StoredImage` as JSON); `None` in rows written
    /// before it was recorded (their box directory has it in config.json).
    pub image_json: Option<String>,
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

/// A row's options. Rows written before `detach` and `auto_remove` existed keep what boxes
/// did then (they outlived their starter and stayed when stopped), not the new defaults.
fn stored_options(json: &str) -> Result<BoxOptions, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_str(json)?;
    if let Some(fields) = value.as_object_mut() {
        fields
            .entry("detach")
            .or_insert(serde_json::Value::Bool(true));
        fields
            .entry("auto_remove")
            .or_insert(serde_json::Value::Bool(false));
    }
    serde_json::from_value(value)
}

/// A timestamp in milliseconds since the Unix epoch, as rows store them.
pub fn from_ms(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub struct BoxesDb {
    path: PathBuf,
    boot_id: Option<String>,
    conn: SharedConnection,
}

/// Schema version in `PRAGMA user_version`: 1 added `shim_boot` and `engine`, 2 `image_json`.
const SCHEMA_VERSION: i64 = 2;
/// Columns added after the first schema, created by [`BoxesDb::migrate`] where missing.
const ADDED_COLUMNS: [&str; 3] = ["shim_boot", "engine", "image_json"];

impl BoxesDb {
    pub fn new(path: &Path) -> Self {
        Self {
            path: path.to_path_buf(),
            boot_id: boxlite_shim_api::process::boot_id(),
            conn: SharedConnection::default(),
        }
    }

    /// This host boot, recorded with every shim started in it.
    pub fn boot_id(&self) -> Option<&str> {
        self.boot_id.as_deref()
    }

    fn err(&self) -> impl FnOnce(rusqlite::Error) -> DbError + '_ {
        move |source| DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn connect(&self) -> Result<ConnectionGuard<'_>, DbError> {
        self.conn.get(|| self.open())
    }

    fn open(&self) -> Result<Connection, DbError> {
        if let Some(dir) = self.path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        crate::sqlite::open_shared(&self.path, BUSY_TIMEOUT, |conn| {
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
                     options TEXT NOT NULL,
                     shim_boot TEXT,
                     engine TEXT,
                     image_json TEXT
                 );",
            )?;
            let version: i64 = conn.query_row("PRAGMA user_version", [], |row| row.get(0))?;
            if version < SCHEMA_VERSION {
                Self::migrate(conn)?;
            }
            Ok(())
        })
        .map_err(self.err())
    }

    /// Brings a home made by an older boxlite up to date, once, whichever process comes first.
    fn migrate(conn: &mut Connection) -> rusqlite::Result<()> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        for column in ADDED_COLUMNS {
            let present: i64 = tx.query_row(
                "SELECT COUNT(*) FROM pragma_table_info('boxes') WHERE name = ?1",
                [column],
                |row| row.get(0),
            )?;
            if present == 0 {
                tx.execute(&format!("ALTER TABLE boxes ADD COLUMN {column} TEXT"), [])?;
            }
        }
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()
    }

    /// Records a new box. `image_json` is what the box needs of its image (the image's
    /// configuration), so that a box needs no file of its own until it first starts.
    pub fn insert(
        &self,
        info: &BoxInfo,
        options: &BoxOptions,
        image_json: &str,
    ) -> Result<(), DbError> {
        let conn = self.connect()?;
        let options_json = serde_json::to_string(options).expect("options serialize");
        let inserted = conn.execute(
            "INSERT INTO boxes (id, name, status, created_at, last_updated, image, options,
                                image_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                info.id,
                info.name,
                info.status.as_str(),
                info.created_at.timestamp_millis(),
                info.last_updated.timestamp_millis(),
                info.image,
                options_json,
                image_json
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

    /// One row as a record. A damaged row (a value of the wrong type, unparseable options or
    /// status) is not an error: it reads as an Unknown box, so that listing, removing and
    /// shutting down still work and `rm -f` can take it away.
    fn read_row(&self, row: &rusqlite::Row<'_>) -> Result<BoxRecord, DbError> {
        use rusqlite::types::ValueRef;
        let text = |i: usize| match row.get_ref(i) {
            Ok(ValueRef::Text(t)) => Some(String::from_utf8_lossy(t).into_owned()),
            Ok(ValueRef::Integer(n)) => Some(n.to_string()),
            _ => None,
        };
        let int = |i: usize| match row.get_ref(i) {
            Ok(ValueRef::Integer(n)) => Some(n),
            _ => None,
        };
        let mut damage = Vec::new();
        let id = text(0).unwrap_or_default();
        let options: BoxOptions = match stored_options(&text(8).unwrap_or_default()) {
            Ok(options) => options,
            Err(e) => {
                damage.push(format!("options ({e})"));
                BoxOptions::image("")
            }
        };
        let mut status = match text(2).map(|s| s.parse::<BoxStatus>()) {
            Some(Ok(status)) => status,
            _ => {
                damage.push("status".to_string());
                BoxStatus::Unknown
            }
        };
        if !damage.is_empty() {
            tracing::warn!(
                "box {id:?} in {}: unreadable {}; shown as unknown (`boxlite rm -f {id}` \
                 removes it)",
                self.path.display(),
                damage.join(", ")
            );
            status = BoxStatus::Unknown;
        }
        let shim = match (int(5), int(6)) {
            (Some(pid), Some(start)) => Some(ProcessId {
                pid: pid as u32,
                start_time: start as u64,
            }),
            _ => None,
        };
        Ok(BoxRecord {
            info: BoxInfo {
                id,
                name: text(1),
                status,
                created_at: from_ms(int(3).unwrap_or_default()),
                last_updated: from_ms(int(4).unwrap_or_default()),
                pid: shim.map(|s| s.pid),
                image: text(7).unwrap_or_default(),
                cpus: options.effective_cpus(),
                memory_mib: options.effective_memory_mib(),
                labels: options.labels.clone().into_iter().collect(),
                engine: text(10),
            },
            options,
            shim,
            shim_boot: text(9),
            image_json: text(11),
        })
    }

    const COLUMNS: &'static str =
        "id, name, status, created_at, last_updated, shim_pid, shim_start, image, options, shim_boot, engine, image_json";

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
            "UPDATE boxes SET status = ?2, last_updated = ?3, shim_pid = ?4, shim_start = ?5,
                 shim_boot = ?6 WHERE id = ?1",
            params![
                id,
                to.as_str(),
                now_ms() as i64,
                shim.map(|s| s.pid as i64),
                shim.map(|s| s.start_time as i64),
                shim.and(self.boot_id.as_deref())
            ],
        )
        .map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        Ok((Some(current), true))
    }

    /// Records which engine runs box `id` (shown by `boxlite inspect`).
    pub fn record_engine(&self, id: &str, engine: &str) -> Result<(), DbError> {
        self.connect()?
            .execute(
                "UPDATE boxes SET engine = ?2 WHERE id = ?1",
                params![id, engine],
            )
            .map_err(self.err())
            .map(drop)
    }

    /// Records an active box Stopped because its shim `shim` is gone, unless the row moved on
    /// meanwhile (stopped, restarted with another shim, removed). Returns whether it did.
    pub fn mark_stopped(&self, id: &str, shim: Option<ProcessId>) -> Result<bool, DbError> {
        let conn = self.connect()?;
        let changed = conn
            .execute(
                "UPDATE boxes SET status = ?2, last_updated = ?3, shim_pid = NULL,
                     shim_start = NULL, shim_boot = NULL
                 WHERE id = ?1 AND status IN (?4, ?5, ?8)
                     AND shim_pid IS ?6 AND shim_start IS ?7",
                params![
                    id,
                    BoxStatus::Stopped.as_str(),
                    now_ms() as i64,
                    BoxStatus::Running.as_str(),
                    BoxStatus::Stopping.as_str(),
                    shim.map(|s| s.pid as i64),
                    shim.map(|s| s.start_time as i64),
                    BoxStatus::Paused.as_str()
                ],
            )
            .map_err(self.err())?;
        Ok(changed == 1)
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
        // A status nobody can read is Unknown, as `read_row` shows it.
        let unreadable = if from.contains(&BoxStatus::Unknown) {
            " OR status IS NULL OR status NOT IN \
             ('unknown', 'configured', 'running', 'stopping', 'stopped')"
        } else {
            ""
        };
        let sql =
            format!("DELETE FROM boxes WHERE id = ?1 AND (status IN ({placeholders}){unreadable})");
        let mut values: Vec<&dyn rusqlite::ToSql> = vec![&id];
        values.extend(statuses.iter().map(|s| s as &dyn rusqlite::ToSql));
        let deleted = tx.execute(&sql, values.as_slice()).map_err(self.err())?;
        tx.commit().map_err(self.err())?;
        Ok(deleted == 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_from_before_detach_and_auto_remove_keep_what_boxes_did_then() {
        let mut old = serde_json::to_value(BoxOptions::image("busybox")).unwrap();
        let fields = old.as_object_mut().unwrap();
        fields.remove("detach");
        fields.remove("auto_remove");
        let options = stored_options(&old.to_string()).unwrap();
        assert!(options.detach && !options.auto_remove);
        let new = stored_options(&serde_json::to_string(&BoxOptions::image("x")).unwrap()).unwrap();
        assert!(!new.detach && new.auto_remove, "what a row says wins");
    }

    fn info(id: &str) -> BoxInfo {
        BoxInfo {
            id: id.to_string(),
            name: None,
            status: BoxStatus::Configured,
            created_at: from_ms(now_ms() as i64),
            last_updated: from_ms(now_ms() as i64),
            pid: None,
            image: "busybox".into(),
            cpus: 1,
            memory_mib: 128,
            labels: HashMap::new(),
            engine: None,
        }
    }

    #[test]
    fn a_home_from_before_boot_ids_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("boxes.db");
        let old = Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE boxes (id TEXT PRIMARY KEY, name TEXT UNIQUE, status TEXT NOT NULL,
                 created_at INTEGER NOT NULL, last_updated INTEGER NOT NULL, shim_pid INTEGER,
                 shim_start INTEGER, image TEXT NOT NULL, options TEXT NOT NULL);",
        )
        .unwrap();
        drop(old);
        let db = BoxesDb::new(&path);
        db.insert(&info("a"), &BoxOptions::image("busybox"), "{}")
            .unwrap();
        let me = ProcessId::current().unwrap();
        db.transition("a", &[BoxStatus::Configured], BoxStatus::Running, Some(me))
            .unwrap();
        let record = db.get("a").unwrap().unwrap();
        assert_eq!(record.shim, Some(me));
        assert_eq!(record.shim_boot.as_deref(), db.boot_id());
        assert!(db.boot_id().is_some());
        db.record_engine("a", "krun").unwrap();
        assert_eq!(
            db.get("a").unwrap().unwrap().info.engine.as_deref(),
            Some("krun")
        );
    }

    #[test]
    fn only_the_recorded_shim_marks_a_box_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let db = BoxesDb::new(&dir.path().join("boxes.db"));
        db.insert(&info("a"), &BoxOptions::image("busybox"), "{}")
            .unwrap();
        let me = ProcessId::current().unwrap();
        let other = ProcessId {
            start_time: me.start_time + 1,
            ..me
        };
        db.transition("a", &[BoxStatus::Configured], BoxStatus::Running, Some(me))
            .unwrap();
        // A process that saw an older shim of this box must not stop the new one.
        assert!(!db.mark_stopped("a", Some(other)).unwrap());
        assert_eq!(
            db.get("a").unwrap().unwrap().info.status,
            BoxStatus::Running
        );
        assert!(db.mark_stopped("a", Some(me)).unwrap());
        let record = db.get("a").unwrap().unwrap();
        assert_eq!(record.info.status, BoxStatus::Stopped);
        assert_eq!((record.shim, record.shim_boot), (None, None));
        assert!(!db.mark_stopped("a", Some(me)).unwrap());
    }
}
