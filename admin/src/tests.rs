//! The console over real sockets with a real client (mysql_async), against a fixed
//! topology and hand-made counters: no MariaDB server needed.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use kohaproxy_health::{Role, ServerState, ServerView, Topology, TopologyHandle};
use kohaproxy_proxy::stats::{Booking, SessionEntry};
use mysql_async::prelude::Queryable;
use mysql_async::{OptsBuilder, Row};

use super::*;

struct Console {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    port: u16,
    shared: Arc<Shared>,
    /// The one session's master connection, in the books.
    _booking: Booking,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}

/// Starts the console on a socket and a TCP port (password "s3cret") in this runtime.
fn console() -> Console {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let port = free_port();
    let text = format!(
        "[proxy]\nlisten = \"127.0.0.1:1\"\n[admin]\nsocket = \"{}\"\nlisten = \"127.0.0.1:{port}\"\n\
         password = \"s3cret\"\n[[users]]\nname = \"koha\"\npassword = \"koha\"\n[monitor]\n\
         user = \"mon\"\n[[servers]]\nname = \"db1\"\naddress = \"127.0.0.1:1\"\n\
         [[servers]]\nname = \"db2\"\naddress = \"127.0.0.1:2\"\n",
        socket.display()
    );
    let config = kohaproxy_config::Config::parse(&text, Path::new("/test.toml")).unwrap();
    let now = Instant::now();
    let mut db1 = ServerView::new("db1", "127.0.0.1:1", now);
    db1.state = ServerState::Up;
    db1.read_only = Some(false);
    let mut db2 = ServerView::new("db2", "127.0.0.1:2", now);
    db2.state = ServerState::Down;
    db2.last_error = Some("connection refused".into());
    let mut topo = Topology::build(vec![db1, db2]);
    topo.servers[0].role = Role::Master;
    topo.master = Some(0);
    let shared = Shared::new(config, TopologyHandle::fixed(topo), None);
    shared.stats.routed_master.store(4, Relaxed);
    let peer = "127.0.0.1:5555".parse().unwrap();
    let entry = Arc::new(SessionEntry::new(1 << 30, peer, "koha", 77));
    shared.sessions.insert(entry.clone());
    let booking = Booking::open(shared.stats.servers.first(), &entry, "db1");
    for s in start(shared.clone()).unwrap() {
        tokio::spawn(s);
    }
    Console {
        _dir: dir,
        socket,
        port,
        shared,
        _booking: booking,
    }
}

use std::path::Path;

impl Console {
    fn socket_opts(&self, user: &str, pass: &str) -> mysql_async::Opts {
        OptsBuilder::default()
            .socket(Some(self.socket.to_string_lossy()))
            .user(Some(user))
            .pass(Some(pass))
            .into()
    }

    fn tcp_opts(&self, pass: &str) -> mysql_async::Opts {
        OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .prefer_socket(false)
            .user(Some("admin"))
            .pass(Some(pass))
            .into()
    }
}

fn server_code(e: mysql_async::Error) -> (u16, String) {
    match e {
        mysql_async::Error::Server(s) => (s.code, s.message),
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test]
async fn commands_over_the_socket() {
    let c = console();
    let mut conn = mysql_async::Conn::new(c.socket_opts("whoever", "anything"))
        .await
        .unwrap();

    let rows: Vec<Row> = conn.query("show servers;").await.unwrap();
    assert_eq!(rows.len(), 2);
    let get = |r: &Row, col: &str| r.get::<Option<String>, _>(col).unwrap();
    assert_eq!(get(&rows[0], "name").as_deref(), Some("db1"));
    assert_eq!(get(&rows[0], "role").as_deref(), Some("master"));
    assert_eq!(get(&rows[0], "read_only").as_deref(), Some("OFF"));
    assert_eq!(rows[0].get::<Option<u64>, _>("connections"), Some(Some(1)));
    assert_eq!(get(&rows[1], "role").as_deref(), Some("down"));
    assert_eq!(
        get(&rows[1], "last_error").as_deref(),
        Some("connection refused")
    );
    assert_eq!(get(&rows[1], "gtid"), None);

    let rows: Vec<(u64, String, String)> = conn
        .query("SHOW SESSIONS")
        .await
        .map(|r: Vec<Row>| {
            r.into_iter()
                .map(|r| {
                    (
                        r.get("id").unwrap(),
                        r.get("user").unwrap(),
                        r.get("backends").unwrap(),
                    )
                })
                .collect()
        })
        .unwrap();
    assert_eq!(rows, vec![(1 << 30, "koha".into(), "db1".into())]);

    let stats: Vec<(String, u64)> = conn.query("SHOW STATS").await.unwrap();
    assert!(stats.contains(&("routed_master".into(), 4)));
    assert!(stats.contains(&("sessions".into(), 1)));
    assert!(stats.contains(&("server.db2.failures".into(), 0)));

    let topo: Vec<Row> = conn.query("SHOW TOPOLOGY").await.unwrap();
    assert_eq!(topo.len(), 1);
    assert_eq!(
        topo[0].get::<Option<String>, _>("master"),
        Some(Some("db1".into()))
    );
    assert_eq!(topo[0].get::<Option<String>, _>("problem"), Some(None));
    assert_eq!(topo[0].get::<u64, _>("term"), Some(0));

    let e = conn.query_drop("SHOW TABLES").await.unwrap_err();
    let (code, msg) = server_code(e);
    assert_eq!(code, 1064);
    assert_eq!(
        msg,
        format!(
            "unknown admin command; known: {}",
            crate::command::KNOWN_COMMANDS.join(", ")
        )
    );

    // Prepared statements are refused, and the connection goes on.
    let e = conn.exec_drop("SHOW SERVERS", ()).await.unwrap_err();
    assert_eq!(server_code(e).0, 1295);
    conn.query_drop("USE koha").await.unwrap();
    let db: Option<Option<String>> = conn.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(db, Some(Some("koha".into())));
    let user: Option<String> = conn.query_first("select user()").await.unwrap();
    assert_eq!(user.as_deref(), Some("whoever@localhost"));
    let comment: Option<String> = conn
        .query_first("select @@version_comment limit 1")
        .await
        .unwrap();
    assert_eq!(comment.as_deref(), Some("kohaproxy admin console"));
    conn.ping().await.unwrap();
    conn.disconnect().await.unwrap();
    assert_eq!(c.shared.sessions.len(), 1);
}

#[tokio::test]
async fn tcp_needs_the_password() {
    let c = console();
    let e = mysql_async::Conn::new(c.tcp_opts("wrong"))
        .await
        .unwrap_err();
    let (code, msg) = server_code(e);
    assert_eq!(code, 1045);
    assert_eq!(
        msg,
        "Access denied for user 'admin'@'127.0.0.1' (using password: YES)"
    );
    let e = mysql_async::Conn::new(c.tcp_opts("")).await.unwrap_err();
    assert_eq!(server_code(e).0, 1045);

    let mut conn = mysql_async::Conn::new(c.tcp_opts("s3cret")).await.unwrap();
    let rows: Vec<Row> = conn.query("SHOW SERVERS").await.unwrap();
    assert_eq!(rows.len(), 2);
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn garbage_and_silence_end_only_their_own_connection() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let c = console();
    // A client that sends garbage instead of a login.
    let mut bad = tokio::net::UnixStream::connect(&c.socket).await.unwrap();
    let mut greeting = [0u8; 256];
    let _ = bad.read(&mut greeting).await.unwrap();
    bad.write_all(&[3, 0, 0, 1, 0xde, 0xad, 0xbf])
        .await
        .unwrap();
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        bad.read_to_end(&mut rest),
    )
    .await
    .expect("the console closes a client that sent garbage");
    // A silent one stays connected meanwhile; the console still serves others.
    let _silent = tokio::net::UnixStream::connect(&c.socket).await.unwrap();
    let mut conn = mysql_async::Conn::new(c.socket_opts("x", ""))
        .await
        .unwrap();
    let rows: Vec<Row> = conn.query("SHOW STATS").await.unwrap();
    assert!(!rows.is_empty());
    conn.disconnect().await.unwrap();
}

#[tokio::test]
async fn no_admin_config_no_service() {
    let text = "[proxy]\nlisten = \"127.0.0.1:1\"\n[[users]]\nname = \"koha\"\npassword = \"koha\"\n\
                [monitor]\nuser = \"mon\"\n[[servers]]\nname = \"db1\"\naddress = \"127.0.0.1:1\"\n";
    let config = kohaproxy_config::Config::parse(text, Path::new("/t.toml")).unwrap();
    let shared = Shared::new(
        config,
        TopologyHandle::fixed(Topology::build(Vec::new())),
        None,
    );
    assert!(start(shared).unwrap().is_empty());
}

#[test]
fn outside_a_runtime_is_an_error_not_a_panic() {
    let text = "[proxy]\nlisten = \"127.0.0.1:1\"\n[admin]\nsocket = \"/nonexistent/a.sock\"\n\
                [[users]]\nname = \"koha\"\npassword = \"koha\"\n\
                [monitor]\nuser = \"mon\"\n[[servers]]\nname = \"db1\"\naddress = \"127.0.0.1:1\"\n";
    let config = kohaproxy_config::Config::parse(text, Path::new("/t.toml")).unwrap();
    let shared = Shared::new(
        config,
        TopologyHandle::fixed(Topology::build(Vec::new())),
        None,
    );
    assert!(matches!(start(shared.clone()), Err(AdminError::NoRuntime)));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let e = rt.block_on(async { services(shared).err().unwrap() });
    assert_eq!(
        e,
        "cannot create admin socket /nonexistent/a.sock: directory /nonexistent does not exist"
    );
}
