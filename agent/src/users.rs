//! Resolving an exec's `user` ("name", "uid", "name:group", "uid:gid") against the box's own
//! /etc/passwd and /etc/group, as container runtimes do.

use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub gid: u32,
    pub home: String,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserError {
    #[error("no user {0:?} in the box's /etc/passwd")]
    UnknownUser(String),
    #[error("no group {0:?} in the box's /etc/group")]
    UnknownGroup(String),
}

/// (name, uid, gid, home) of each /etc/passwd line.
fn passwd_entries(passwd: &str) -> impl Iterator<Item = (&str, u32, u32, &str)> {
    passwd.lines().filter_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        if fields.len() < 6 {
            return None;
        }
        Some((
            fields[0],
            fields[2].parse().ok()?,
            fields[3].parse().ok()?,
            fields[5],
        ))
    })
}

fn group_gid(group: &str, spec: &str) -> Option<u32> {
    group.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 3 && fields[0] == spec)
            .then(|| fields[2].parse().ok())
            .flatten()
    })
}

/// Resolves `spec` with the given file contents. Empty means root.
pub fn resolve_with(spec: &str, passwd: &str, group: &str) -> Result<Identity, UserError> {
    let (user, group_spec) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let entry = match user.parse::<u32>() {
        Ok(uid) => passwd_entries(passwd)
            .find(|e| e.1 == uid)
            .map(|e| (uid, e.2, e.3.to_string()))
            .or(Some((uid, 0, "/".to_string()))),
        Err(_) => passwd_entries(passwd)
            .find(|e| e.0 == user)
            .map(|e| (e.1, e.2, e.3.to_string())),
    };
    let (uid, mut gid, home) = entry.ok_or_else(|| UserError::UnknownUser(user.to_string()))?;
    if let Some(g) = group_spec.filter(|g| !g.is_empty()) {
        gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => group_gid(group, g).ok_or_else(|| UserError::UnknownGroup(g.to_string()))?,
        };
    }
    let home = if home.is_empty() {
        "/".to_string()
    } else {
        home
    };
    Ok(Identity { uid, gid, home })
}

/// Resolves `spec` against `<root>/etc/passwd` and `<root>/etc/group` (missing files are empty).
pub fn resolve(root: &Path, spec: &str) -> Result<Identity, UserError> {
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap_or_default();
    let group = std::fs::read_to_string(root.join("etc/group")).unwrap_or_default();
    resolve_with(spec, &passwd, &group)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34:www:/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nstaff:x:50:\n";

    fn id(uid: u32, gid: u32, home: &str) -> Identity {
        Identity {
            uid,
            gid,
            home: home.into(),
        }
    }

    #[test]
    fn names_and_numbers_resolve_like_docker() {
        assert_eq!(resolve_with("", PASSWD, GROUP), Ok(id(0, 0, "/root")));
        assert_eq!(
            resolve_with("www", PASSWD, GROUP),
            Ok(id(33, 34, "/var/www"))
        );
        assert_eq!(
            resolve_with("33", PASSWD, GROUP),
            Ok(id(33, 34, "/var/www"))
        );
        assert_eq!(resolve_with("1000", PASSWD, GROUP), Ok(id(1000, 0, "/")));
        assert_eq!(
            resolve_with("www:staff", PASSWD, GROUP),
            Ok(id(33, 50, "/var/www"))
        );
        assert_eq!(resolve_with("1000:7", PASSWD, GROUP), Ok(id(1000, 7, "/")));
    }

    #[test]
    fn unknown_names_are_errors() {
        assert_eq!(
            resolve_with("nobody", PASSWD, GROUP),
            Err(UserError::UnknownUser("nobody".into()))
        );
        assert_eq!(
            resolve_with("www:wheel", PASSWD, GROUP),
            Err(UserError::UnknownGroup("wheel".into()))
        );
    }
}
