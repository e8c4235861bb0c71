//! The files a sandbox leaves in its directory: sandbox.json (what was started) and
//! kohaproxy.toml (a ready proxy config).
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cluster::ClusterKind;
use crate::error::{Result, SandboxError};
use crate::server::ServerInfo;

/// File name of the state file in the sandbox directory.
pub(crate) const STATE_FILE: &str = "sandbox.json";
/// File name of the proxy config in the sandbox directory.
pub(crate) const CONFIG_FILE: &str = "kohaproxy.toml";

/// sandbox.json.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct SandboxState {
    pub kind: ClusterKind,
    pub dir: PathBuf,
    pub proxy_port: u16,
    pub buffer_pool_mb: u32,
    pub servers: Vec<ServerRecord>,
}

/// One server in sandbox.json: its identity plus the pid of the last start.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct ServerRecord {
    #[serde(flatten)]
    pub info: ServerInfo,
    pub pid: Option<u32>,
}

impl SandboxState {
    /// Reads DIR/sandbox.json.
    pub fn load(dir: &Path) -> Result<SandboxState> {
        let path = dir.join(STATE_FILE);
        let text = fs::read_to_string(&path).map_err(|e| SandboxError::State {
            path: path.clone(),
            reason: format!("cannot read it ({e}); is this a sandbox directory?"),
        })?;
        serde_json::from_str(&text).map_err(|e| SandboxError::State {
            path,
            reason: e.to_string(),
        })
    }

    /// Writes DIR/sandbox.json atomically (temporary file, then rename).
    pub fn save(&self) -> Result<()> {
        let path = self.dir.join(STATE_FILE);
        let text = serde_json::to_string_pretty(self).map_err(|e| SandboxError::State {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        write_atomically(&path, text.as_bytes())
    }
}

/// Writes DIR/kohaproxy.toml for this cluster.
pub(crate) fn write_proxy_config(
    dir: &Path,
    kind: ClusterKind,
    proxy_port: u16,
    servers: &[ServerInfo],
) -> Result<PathBuf> {
    let path = dir.join(CONFIG_FILE);
    write_atomically(
        &path,
        proxy_config(dir, kind, proxy_port, servers).as_bytes(),
    )?;
    Ok(path)
}

/// The proxy config text: exactly the format the sandbox documents.
pub(crate) fn proxy_config(
    dir: &Path,
    kind: ClusterKind,
    proxy_port: u16,
    servers: &[ServerInfo],
) -> String {
    let mut t = String::new();
    t.push_str("[proxy]\n");
    t.push_str(&format!("listen = \"127.0.0.1:{proxy_port}\"\n"));
    t.push_str("[admin]\n");
    t.push_str(&format!(
        "socket = {}\n",
        toml_string(&dir.join("admin.sock").to_string_lossy())
    ));
    for (name, password) in [("koha", "koha"), ("root", "")] {
        t.push_str("[[users]]\n");
        t.push_str(&format!("name = \"{name}\"\n"));
        t.push_str(&format!("password = \"{password}\"\n"));
    }
    t.push_str("[monitor]\n");
    t.push_str("user = \"kohaproxy_monitor\"\n");
    t.push_str("password = \"monitor\"\n");
    t.push_str("interval_ms = 500\n");
    t.push_str("replication_user = \"repl\"\n");
    t.push_str("replication_password = \"repl\"\n");
    t.push_str("[cluster]\n");
    t.push_str(&format!("kind = \"{}\"\n", kind.as_str()));
    for s in servers {
        t.push_str("[[servers]]\n");
        t.push_str(&format!("name = {}\n", toml_string(&s.name)));
        t.push_str(&format!("address = \"{}\"\n", s.address()));
    }
    t.push_str("[backup]\n");
    t.push_str(&format!(
        "dir = {}\n",
        toml_string(&dir.join("backups").to_string_lossy())
    ));
    // Off so that no test meets a scheduled backup; `BACKUP NOW` takes one.
    t.push_str("schedule = \"off\"\n");
    t
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp-{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    fs::write(&tmp, bytes)
        .map_err(|e| SandboxError::io(format!("cannot write {}", tmp.display()), e))?;
    fs::rename(&tmp, path).map_err(|e| {
        SandboxError::io(
            format!("cannot rename {} to {}", tmp.display(), path.display()),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Role;

    #[test]
    fn config_format() {
        let dir = Path::new("/tmp/sb \"1\"");
        let servers = [ServerInfo {
            name: "db1".into(),
            port: 40001,
            server_id: 1,
            dir: dir.join("db1"),
            datadir: dir.join("db1/data"),
            role: Role::Master,
            galera: None,
        }];
        let text = proxy_config(dir, ClusterKind::Replication, 6033, &servers);
        let expected = "[proxy]\nlisten = \"127.0.0.1:6033\"\n[admin]\n\
            socket = \"/tmp/sb \\\"1\\\"/admin.sock\"\n\
            [[users]]\nname = \"koha\"\npassword = \"koha\"\n\
            [[users]]\nname = \"root\"\npassword = \"\"\n\
            [monitor]\nuser = \"kohaproxy_monitor\"\npassword = \"monitor\"\ninterval_ms = 500\n\
            replication_user = \"repl\"\nreplication_password = \"repl\"\n\
            [cluster]\nkind = \"replication\"\n\
            [[servers]]\nname = \"db1\"\naddress = \"127.0.0.1:40001\"\n\
            [backup]\ndir = \"/tmp/sb \\\"1\\\"/backups\"\nschedule = \"off\"\n";
        assert_eq!(text, expected);
    }

    #[test]
    fn galera_config_and_state() {
        let dir = Path::new("/tmp/sb");
        let servers: Vec<ServerInfo> = (1..=3u16)
            .map(|n| ServerInfo {
                name: format!("db{n}"),
                port: 40000 + n,
                server_id: u32::from(n),
                dir: dir.join(format!("db{n}")),
                datadir: dir.join(format!("db{n}/data")),
                role: Role::Node,
                galera: Some(crate::server::GaleraPorts {
                    gcomm: 41000 + n,
                    ist: 42000 + n,
                    sst: 43000 + n,
                }),
            })
            .collect();
        let text = proxy_config(dir, ClusterKind::Galera, 6033, &servers);
        assert!(text.contains("[cluster]\nkind = \"galera\"\n"));
        assert!(text.contains("[[servers]]\nname = \"db3\"\naddress = \"127.0.0.1:40003\"\n"));
        assert!(text.contains("[monitor]\nuser = \"kohaproxy_monitor\"\n"));

        let state = SandboxState {
            kind: ClusterKind::Galera,
            dir: dir.to_path_buf(),
            proxy_port: 6033,
            buffer_pool_mb: 64,
            servers: servers
                .iter()
                .map(|info| ServerRecord {
                    info: info.clone(),
                    pid: Some(7),
                })
                .collect(),
        };
        let json = serde_json::to_string(&state).unwrap();
        assert!(json.contains("\"kind\":\"galera\""));
        assert!(json.contains("\"role\":\"node\""));
        assert!(json.contains("\"galera\":{\"gcomm\":41001,\"ist\":42001,\"sst\":43001}"));
        let back: SandboxState = serde_json::from_str(&json).unwrap();
        assert_eq!(back.servers[2].info, servers[2]);

        // A replication server's record has no "galera" key, and old files load.
        let old = "{\"kind\":\"replication\",\"dir\":\"/tmp/sb\",\"proxy_port\":1,\
            \"buffer_pool_mb\":64,\"servers\":[{\"name\":\"db1\",\"port\":2,\
            \"server_id\":1,\"dir\":\"/tmp/sb/db1\",\"datadir\":\"/tmp/sb/db1/data\",\
            \"role\":\"master\",\"pid\":null}]}";
        let back: SandboxState = serde_json::from_str(old).unwrap();
        assert_eq!(back.servers[0].info.galera, None);
        assert!(!serde_json::to_string(&back).unwrap().contains("galera"));
    }
}
