//! A node's mariadbd command line: ports, provider, evs timeouts, bootstrap or join.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::GALERA_GTID_DOMAIN;
use crate::error::{Result, SandboxError};
use crate::server::{base_args, GaleraPorts, ServerInfo};

/// Where the Galera 4 provider may be, first match wins.
const PROVIDERS: [&str; 4] = [
    "/usr/lib/galera/libgalera_smm.so",
    "/usr/lib/libgalera_smm.so",
    "/usr/lib64/galera-4/libgalera_smm.so",
    "/usr/lib64/galera/libgalera_smm.so",
];

/// Group-communication settings for the sandbox only: a dead peer is suspected after 1 s
/// and dropped after 2 s (production defaults: 5 s and 15 s). The cluster commits nothing
/// between a node's death and its eviction, so this bounds how fast writes can move. The
/// keepalive must stay below a third of the suspect timeout or the provider refuses to
/// start.
const EVS_OPTIONS: &str = "evs.keepalive_period=PT0.3S;evs.suspect_timeout=PT1S;\
     evs.inactive_timeout=PT2S;evs.inactive_check_period=PT0.2S;evs.install_timeout=PT2S";

/// How one node is started.
#[derive(Clone, Debug)]
pub(crate) struct NodeStart<'a> {
    /// `wsrep_cluster_name`.
    pub cluster_name: &'a str,
    /// The gcomm addresses (`127.0.0.1:PORT`) of the other nodes.
    pub peers: Vec<String>,
    /// Start a new cluster from this node (`--wsrep-new-cluster`).
    pub bootstrap: bool,
    /// `--wsrep-start-position`, recovered after a crash.
    pub start_position: Option<String>,
    /// `--user=`, when running as root.
    pub user: Option<&'a str>,
    /// The Galera provider library.
    pub provider: &'a Path,
}

/// The mariadbd command line of a Galera node. Deterministic but for the bootstrap flag
/// and the start position.
pub(crate) fn galera_args(
    info: &ServerInfo,
    ports: &GaleraPorts,
    start: &NodeStart<'_>,
    buffer_pool_mb: u32,
) -> Vec<OsString> {
    let mut args = base_args(info, start.user, buffer_pool_mb);
    let provider_options = format!(
        "base_port={g};gmcast.listen_addr=tcp://127.0.0.1:{g};ist.recv_addr=127.0.0.1:{i};\
         gcache.size=32M;{EVS_OPTIONS}",
        g = ports.gcomm,
        i = ports.ist
    );
    let owned = [
        format!("--gtid-domain-id={}", info.server_id),
        "--innodb-autoinc-lock-mode=2".into(),
        "--default-storage-engine=InnoDB".into(),
        "--wsrep-on=ON".into(),
        format!("--wsrep-provider={}", start.provider.display()),
        format!("--wsrep-cluster-name={}", start.cluster_name),
        format!("--wsrep-cluster-address=gcomm://{}", start.peers.join(",")),
        format!("--wsrep-node-name={}", info.name),
        format!("--wsrep-node-address=127.0.0.1:{}", ports.gcomm),
        format!("--wsrep-node-incoming-address=127.0.0.1:{}", info.port),
        format!("--wsrep-provider-options={provider_options}"),
        "--wsrep-sst-method=rsync".into(),
        format!("--wsrep-sst-receive-address=127.0.0.1:{}", ports.sst),
        "--wsrep-gtid-mode=ON".into(),
        format!("--wsrep-gtid-domain-id={GALERA_GTID_DOMAIN}"),
    ];
    args.extend(owned.into_iter().map(OsString::from));
    if start.bootstrap {
        args.push("--wsrep-new-cluster".into());
    }
    if let Some(pos) = &start.start_position {
        args.push(format!("--wsrep-start-position={pos}").into());
    }
    args
}

/// `wsrep_cluster_name` of the sandbox in `dir`: unique per directory, so that a node
/// pointed at a stale port of another sandbox does not join it. At most 32 bytes: gcomm
/// rejects longer group names (a joiner then never reaches the primary view).
pub(crate) fn cluster_name(dir: &Path) -> String {
    // FNV-1a, 64 bits.
    let hash = dir
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
    format!("kohaproxy-{hash:016x}")
}

/// Finds the Galera provider library.
pub(crate) fn provider() -> Result<PathBuf> {
    PROVIDERS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            SandboxError::InvalidOptions(format!(
                "no Galera provider (looked for {}); install galera-4",
                PROVIDERS.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::Role;

    fn node(n: u16) -> ServerInfo {
        let dir = PathBuf::from(format!("/tmp/sb/db{n}"));
        ServerInfo {
            name: format!("db{n}"),
            port: 40000 + n,
            server_id: u32::from(n),
            datadir: dir.join("data"),
            dir,
            role: Role::Node,
            galera: Some(GaleraPorts {
                gcomm: 41000 + n,
                ist: 42000 + n,
                sst: 43000 + n,
            }),
        }
    }

    fn strings(args: &[OsString]) -> Vec<String> {
        args.iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn option_lines_of_a_joiner() {
        let info = node(2);
        let ports = info.galera.unwrap();
        let start = NodeStart {
            cluster_name: "kohaproxy-sandbox-x",
            peers: vec!["127.0.0.1:41001".into(), "127.0.0.1:41003".into()],
            bootstrap: false,
            start_position: None,
            user: Some("mysql"),
            provider: Path::new("/usr/lib/galera/libgalera_smm.so"),
        };
        let args = strings(&galera_args(&info, &ports, &start, 64));
        for want in [
            "--no-defaults",
            "--user=mysql",
            "--datadir=/tmp/sb/db2/data",
            "--port=40002",
            "--bind-address=127.0.0.1",
            "--server-id=2",
            "--gtid-domain-id=2",
            "--log-bin=mysql-bin",
            "--log-slave-updates=ON",
            "--binlog-format=ROW",
            "--innodb-autoinc-lock-mode=2",
            "--default-storage-engine=InnoDB",
            "--wsrep-on=ON",
            "--wsrep-provider=/usr/lib/galera/libgalera_smm.so",
            "--wsrep-cluster-name=kohaproxy-sandbox-x",
            "--wsrep-cluster-address=gcomm://127.0.0.1:41001,127.0.0.1:41003",
            "--wsrep-node-name=db2",
            "--wsrep-node-address=127.0.0.1:41002",
            "--wsrep-node-incoming-address=127.0.0.1:40002",
            "--wsrep-provider-options=base_port=41002;gmcast.listen_addr=tcp://127.0.0.1:41002;\
             ist.recv_addr=127.0.0.1:42002;gcache.size=32M;evs.keepalive_period=PT0.3S;\
             evs.suspect_timeout=PT1S;evs.inactive_timeout=PT2S;evs.inactive_check_period=PT0.2S;\
             evs.install_timeout=PT2S",
            "--wsrep-sst-method=rsync",
            "--wsrep-sst-receive-address=127.0.0.1:43002",
            "--wsrep-gtid-mode=ON",
            "--wsrep-gtid-domain-id=100",
        ] {
            assert!(args.iter().any(|a| a == want), "missing {want} in {args:?}");
        }
        assert!(!args.iter().any(|a| a == "--wsrep-new-cluster"));
        assert!(!args.iter().any(|a| a.starts_with("--wsrep-start-position")));
        assert_eq!(args[0], "--no-defaults");
    }

    #[test]
    fn option_lines_of_a_bootstrap_after_a_crash_without_root() {
        let info = node(1);
        let ports = info.galera.unwrap();
        let start = NodeStart {
            cluster_name: "c",
            peers: Vec::new(),
            bootstrap: true,
            start_position: Some("b6b94266-f0b3-11f1-8d90-dea170f96db2:9,100-1-4".into()),
            user: None,
            provider: Path::new("/p.so"),
        };
        let args = strings(&galera_args(&info, &ports, &start, 64));
        assert!(!args.iter().any(|a| a.starts_with("--user")));
        assert!(args.iter().any(|a| a == "--wsrep-cluster-address=gcomm://"));
        assert!(args.iter().any(|a| a == "--wsrep-new-cluster"));
        assert!(args
            .iter()
            .any(|a| a == "--wsrep-start-position=b6b94266-f0b3-11f1-8d90-dea170f96db2:9,100-1-4"));
    }

    #[test]
    fn evs_keepalive_below_a_third_of_suspect() {
        // The provider refuses keepalive >= suspect/3, and inactive must exceed suspect.
        let ms = |key: &str| -> f64 {
            let v = EVS_OPTIONS
                .split(';')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=PT")))
                .and_then(|v| v.strip_suffix('S'))
                .unwrap();
            v.parse::<f64>().unwrap() * 1000.0
        };
        assert!(ms("evs.keepalive_period") < ms("evs.suspect_timeout") / 3.0);
        assert!(ms("evs.inactive_timeout") > ms("evs.suspect_timeout"));
    }

    #[test]
    fn cluster_names_differ_per_directory() {
        let a = cluster_name(Path::new("/tmp/a"));
        assert_eq!(a, cluster_name(Path::new("/tmp/a")));
        assert_ne!(a, cluster_name(Path::new("/tmp/b")));
        assert!(a.starts_with("kohaproxy-"));
        assert!(a.len() <= 32, "{a} is too long for gcomm");
    }
}
