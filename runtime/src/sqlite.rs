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
