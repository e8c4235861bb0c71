//! The non-root rule: the user Galera nodes run as, and the directories it must reach.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};

use super::GALERA_USER;
use crate::error::{Result, SandboxError};

/// The user the Galera nodes run as (when this process is root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
}

/// The user to run the Galera nodes as: `mysql` when this process is root, else None
/// (they run as the current user).
pub(crate) fn run_as() -> Result<Option<RunAs>> {
    if !rustix::process::geteuid().is_root() {
        return Ok(None);
    }
    lookup_user(GALERA_USER).map(Some)
}

/// Looks a user up in /etc/passwd, then through `getent passwd`.
fn lookup_user(name: &str) -> Result<RunAs> {
    let from_file = fs::read_to_string("/etc/passwd")
        .ok()
        .and_then(|text| parse_passwd(&text, name));
    let found = from_file.or_else(|| {
        Command::new("getent")
            .args(["passwd", name])
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| parse_passwd(&String::from_utf8_lossy(&o.stdout), name))
    });
    found.ok_or_else(|| SandboxError::NoSuchUser {
        user: name.to_string(),
    })
}

/// The user's entry in passwd(5) text.
pub(crate) fn parse_passwd(text: &str, name: &str) -> Option<RunAs> {
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        if f.next()? != name {
            return None;
        }
        let _password = f.next()?;
        let uid = f.next()?.parse().ok()?;
        let gid = f.next()?.parse().ok()?;
        Some(RunAs {
            name: name.to_string(),
            uid,
            gid,
        })
    })
}

/// Whether a user (uid, gid; supplementary groups ignored) may search a directory with
/// this owner, group and mode.
pub(crate) fn can_search(owner: u32, group: u32, mode: u32, uid: u32, gid: u32) -> bool {
    if uid == 0 {
        return true;
    }
    if owner == uid {
        mode & 0o100 != 0
    } else if group == gid {
        mode & 0o010 != 0
    } else {
        mode & 0o001 != 0
    }
}

/// Makes `dir` searchable by everyone (o+x) and checks that `user` can reach it.
pub(super) fn open_path_for(dir: &Path, user: &RunAs) -> Result<()> {
    let meta = fs::metadata(dir)
        .map_err(|e| SandboxError::io(format!("cannot stat {}", dir.display()), e))?;
    let mode = meta.permissions().mode();
    if mode & 0o001 == 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode((mode | 0o001) & 0o7777))
            .map_err(|e| SandboxError::io(format!("cannot chmod o+x {}", dir.display()), e))?;
    }
    for ancestor in dir.ancestors().skip(1) {
        let meta = fs::metadata(ancestor)
            .map_err(|e| SandboxError::io(format!("cannot stat {}", ancestor.display()), e))?;
        let mode = meta.permissions().mode();
        if !can_search(meta.uid(), meta.gid(), mode, user.uid, user.gid) {
            return Err(SandboxError::NotTraversable {
                path: ancestor.to_path_buf(),
                user: user.name.clone(),
            });
        }
    }
    Ok(())
}

/// chown -R (symlinks themselves, not their targets).
pub(super) fn chown_tree(path: &Path, user: &RunAs) -> Result<()> {
    std::os::unix::fs::lchown(path, Some(user.uid), Some(user.gid)).map_err(|e| {
        SandboxError::io(
            format!("cannot chown {} to {}", path.display(), user.name),
            e,
        )
    })?;
    let meta = fs::symlink_metadata(path)
        .map_err(|e| SandboxError::io(format!("cannot stat {}", path.display()), e))?;
    if meta.is_dir() {
        let entries = fs::read_dir(path)
            .map_err(|e| SandboxError::io(format!("cannot list {}", path.display()), e))?;
        for entry in entries {
            let entry = entry
                .map_err(|e| SandboxError::io(format!("cannot list {}", path.display()), e))?;
            chown_tree(&entry.path(), user)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn passwd_and_search_permission() {
        let text =
            "root:x:0:0:root:/root:/bin/bash\nmysql:x:102:105:MariaDB:/nonexistent:/bin/false\n";
        assert_eq!(
            parse_passwd(text, "mysql"),
            Some(RunAs {
                name: "mysql".into(),
                uid: 102,
                gid: 105
            })
        );
        assert_eq!(parse_passwd(text, "mysq"), None);
        // /root (root:root 0700) is closed to mysql; /tmp (1777) is open.
        assert!(!can_search(0, 0, 0o40700, 102, 105));
        assert!(can_search(0, 0, 0o41777, 102, 105));
        assert!(can_search(102, 0, 0o40700, 102, 105));
        assert!(can_search(0, 105, 0o40750, 102, 105));
        assert!(!can_search(0, 105, 0o40701, 102, 105));
    }
}
