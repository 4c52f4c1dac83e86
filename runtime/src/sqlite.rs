//! One SQLite connection per database per runtime object, opened on first use and kept.
//! Opening one per call (and setting WAL, the busy timeout and the schema each time) was most
//! of what a `create` or `remove` cost. Processes still coordinate through SQLite's own
//! locking: every state change is its own `BEGIN IMMEDIATE` transaction.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Mutex, MutexGuard};

use rusqlite::Connection;

/// Opens (creating if need be) a database only its owner can read: the file is made 0600
/// before SQLite sees it, and SQLite gives its -wal and -shm files the database's mode.
pub fn open_private(path: &std::path::Path) -> rusqlite::Result<Connection> {
    use std::os::unix::fs::OpenOptionsExt;
    // An existing file keeps its contents and mode; a failure here is SQLite's to report.
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path);
    Connection::open(path)
}

/// Opens [`open_private`] `path` for many processes at once: `busy_timeout`, WAL (switched on
/// only when the database is not in WAL mode yet: the switch needs the database to itself,
/// and SQLite reports busy for it at once instead of waiting), `synchronous=NORMAL`, then
/// `setup` (schema, migrations). Busy errors on the way (other processes opening or setting
/// up the same new database) are retried until `busy_timeout` has passed. Without this, 8
/// processes opening a new home at once failed in 2 of 30 trials, and CI saw workers fail
/// every create with "database is locked" (the database had stayed in rollback mode).
pub fn open_shared(
    path: &std::path::Path,
    busy_timeout: std::time::Duration,
    setup: impl Fn(&mut Connection) -> rusqlite::Result<()>,
) -> rusqlite::Result<Connection> {
    let deadline = std::time::Instant::now() + busy_timeout;
    loop {
        let attempt = open_private(path).and_then(|mut conn| {
            conn.busy_timeout(busy_timeout)?;
            let mode: String = conn.query_row("PRAGMA journal_mode", [], |row| row.get(0))?;
            if !mode.eq_ignore_ascii_case("wal") {
                // The pragma answers with the mode in force: one that could not switch (other
                // connections had the file open) says so instead of failing, and a database
                // left in rollback mode would keep every later opener from switching it.
                let now: String =
                    conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
                if !now.eq_ignore_ascii_case("wal") {
                    return Err(rusqlite::Error::SqliteFailure(
                        rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_BUSY),
                        Some(format!("journal mode stayed {now}")),
                    ));
                }
            }
            // With WAL this cannot corrupt the database; a power cut may lose the last
            // changes, and after one every box is stopped anyway.
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            setup(&mut conn)?;
            Ok(conn)
        });
        match attempt {
            Err(e) if is_busy(&e) && std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            other => return other,
        }
    }
}

/// Whether `err` is SQLite saying another connection holds what was needed.
fn is_busy(err: &rusqlite::Error) -> bool {
    matches!(
        err.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// A connection shared by the clones of one runtime; calls take turns on it.
#[derive(Clone, Default)]
pub struct SharedConnection {
    conn: Arc<Mutex<Option<Connection>>>,
}

impl std::fmt::Debug for SharedConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SharedConnection")
    }
}

/// The connection, held for one call.
pub struct ConnectionGuard<'a>(MutexGuard<'a, Option<Connection>>);

impl SharedConnection {
    /// The connection, opened with `open` the first time (and again after a failed open).
    pub fn get<E>(
        &self,
        open: impl FnOnce() -> Result<Connection, E>,
    ) -> Result<ConnectionGuard<'_>, E> {
        // A panic while holding it leaves a connection as good as before.
        let mut guard = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        if guard.is_none() {
            *guard = Some(open()?);
        }
        Ok(ConnectionGuard(guard))
    }
}

impl Deref for ConnectionGuard<'_> {
    type Target = Connection;

    fn deref(&self) -> &Connection {
        self.0.as_ref().expect("opened in get")
    }
}

impl DerefMut for ConnectionGuard<'_> {
    fn deref_mut(&mut self) -> &mut Connection {
        self.0.as_mut().expect("opened in get")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_once_and_retries_after_a_failed_open() {
        let shared = SharedConnection::default();
        let failed: Result<ConnectionGuard<'_>, &str> = shared.get(|| Err("no"));
        assert!(failed.is_err());
        let mut opened = 0;
        for _ in 0..3 {
            let conn = shared
                .get(|| {
                    opened += 1;
                    Connection::open_in_memory().map_err(|_| "open")
                })
                .unwrap();
            conn.execute_batch("CREATE TABLE IF NOT EXISTS t (x)")
                .unwrap();
        }
        assert_eq!(opened, 1);
    }

    #[test]
    fn many_threads_open_one_new_database_at_once() {
        let dir = tempfile::tempdir().unwrap();
        for round in 0..20 {
            opens_at_once(&dir.path().join(format!("x{round}.db")));
        }
    }

    fn opens_at_once(path: &std::path::Path) {
        let path = path.to_path_buf();
        let opened: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    open_shared(&path, std::time::Duration::from_secs(10), |conn| {
                        conn.execute_batch("CREATE TABLE IF NOT EXISTS t (x)")
                    })
                    .map(drop)
                })
            })
            .collect();
        for thread in opened {
            thread.join().unwrap().unwrap();
        }
        let conn = open_private(&path).unwrap();
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |row| row.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[test]
    fn databases_are_private_to_their_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.db");
        let conn = open_private(&path).unwrap();
        conn.pragma_update(None, "journal_mode", "WAL").unwrap();
        conn.execute_batch("CREATE TABLE t (x)").unwrap();
        for file in ["x.db", "x.db-wal", "x.db-shm"] {
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }
}
