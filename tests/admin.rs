//! The admin console end to end: the real binary in front of a sandbox cluster, spoken to
//! with the real `mariadb` CLI on the Unix socket (`mariadb -S DIR/admin.sock`) and with
//! mysql_async, on the socket and on the password-protected TCP port.

mod common;

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, ok, Env};
use mysql_async::prelude::Queryable;
use mysql_async::{OptsBuilder, Row};

const KNOWN: &str = "unknown admin command; known: SHOW SERVERS, SHOW SESSIONS, SHOW STATS, \
     SHOW TOPOLOGY, SWITCHOVER [TO <name>], FAILOVER, SET SERVER <name> MAINTENANCE|ONLINE, \
     BACKUP NOW [FROM <name>], SHOW BACKUPS, REBUILD <name>";

/// The sandbox config's `[admin] socket`.
fn socket(env: &Env) -> PathBuf {
    env.sb().dir().join("admin.sock")
}

/// `mariadb --batch` on the admin socket with `args`.
fn cli(sock: &Path, args: &[&str]) -> Output {
    cli_input(sock, args, b"")
}

/// `mariadb --batch` on the admin socket with `args`, statements read from `input`.
fn cli_input(sock: &Path, args: &[&str], input: &[u8]) -> Output {
    use std::io::Write;
    let mut child = Command::new("mariadb")
        .arg("--no-defaults")
        .arg("-S")
        .arg(sock)
        .arg("--batch")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run mariadb");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).expect("write to mariadb");
    drop(stdin);
    child.wait_with_output().expect("wait for mariadb")
}

/// Parses `--batch` output (a header line, then tab-separated rows) into maps.
fn rows(stdout: &[u8]) -> Vec<HashMap<String, String>> {
    let text = String::from_utf8_lossy(stdout);
    let mut lines = text.lines();
    let Some(header) = lines.next() else {
        return Vec::new();
    };
    let names: Vec<&str> = header.split('\t').collect();
    lines
        .map(|l| {
            names
                .iter()
                .zip(l.split('\t'))
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// `SHOW SERVERS` through the CLI, polled until `cond` holds (the monitor's first rounds
/// may still be deciding roles).
fn servers_until(
    sock: &Path,
    cond: impl Fn(&[HashMap<String, String>]) -> bool,
) -> Vec<HashMap<String, String>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = rows(&ok(cli(sock, &["-e", "SHOW SERVERS"]), "SHOW SERVERS"));
        if cond(&r) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "SHOW SERVERS never matched: {r:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn socket_opts(sock: &Path) -> mysql_async::Opts {
    OptsBuilder::default()
        .socket(Some(sock.to_string_lossy()))
        .user(Some("anyone"))
        .pass(Some("anything"))
        .into()
}

fn server_error(e: mysql_async::Error) -> (u16, String) {
    match e {
        mysql_async::Error::Server(s) => (s.code, s.message),
        other => panic!("expected a server error, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_on_the_socket() {
    let env = Env::start(2);
    let sock = socket(&env);

    let mode = std::fs::metadata(&sock)
        .expect("admin socket")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "socket mode {mode:o}");

    // A client session through the proxy, open while the console is asked.
    let mut client = mysql_async::Conn::new(env.proxy_opts()).await.unwrap();
    client.query_drop("DO 1").await.unwrap();

    let servers = servers_until(&sock, |r| {
        r.len() == 3
            && r[0]["role"] == "master"
            && r[1]["role"] == "replica"
            && r[2]["role"] == "replica"
    });
    let names: Vec<&str> = servers.iter().map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["db1", "db2", "db3"], "config order");
    let master = &servers[0];
    assert_eq!(master["state"], "up");
    assert_eq!(master["read_only"], "OFF");
    assert_eq!(master["last_error"], "NULL");
    assert_ne!(master["gtid"], "NULL");
    let conns: u64 = master["connections"].parse().unwrap();
    assert!(
        conns >= 1,
        "master connections while a session is open: {master:?}"
    );
    let stmts: u64 = master["statements"].parse().unwrap();
    assert!(stmts >= 1, "{master:?}");
    for r in &servers[1..] {
        assert_eq!(r["read_only"], "ON", "{r:?}");
        assert_ne!(r["behind_trx"], "NULL", "{r:?}");
    }

    let sessions = rows(&ok(cli(&sock, &["-e", "SHOW SESSIONS;"]), "SHOW SESSIONS"));
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert_eq!(sessions[0]["user"], "koha");
    assert!(
        sessions[0]["client"].starts_with("127.0.0.1:"),
        "{sessions:?}"
    );
    assert!(sessions[0]["backends"].contains("db1"), "{sessions:?}");
    assert_eq!(sessions[0]["in_transaction"], "no");
    assert_eq!(sessions[0]["state"], "idle");
    let id: u64 = sessions[0]["id"].parse().unwrap();
    assert!(id >= 1 << 30, "proxy session ids: {id}");

    // While a statement runs, the session shows where.
    let sleeping = tokio::spawn(async move {
        client.query_drop("DO SLEEP(2)").await.unwrap();
        client
    });
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let s = rows(&ok(cli(&sock, &["-e", "SHOW SESSIONS"]), "SHOW SESSIONS"));
        if s.first()
            .is_some_and(|r| r["state"].starts_with("running on db"))
        {
            break;
        }
        assert!(Instant::now() < deadline, "never shown running: {s:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let client = sleeping.await.unwrap();

    let stats = rows(&ok(cli(&sock, &["-e", "show stats"]), "SHOW STATS"));
    let stat = |name: &str| -> u64 {
        let row = stats
            .iter()
            .find(|r| r["name"] == name)
            .unwrap_or_else(|| panic!("no {name} in {stats:?}"));
        row["value"].parse().unwrap()
    };
    assert!(stat("routed_master") >= 1);
    assert_eq!(stat("sessions"), 1);
    assert!(stat("server.db1.connections") >= 1);
    for name in ["db1", "db2", "db3"] {
        for what in ["statements", "connections", "outstanding", "failures"] {
            stat(&format!("server.{name}.{what}"));
        }
    }

    let topo = rows(&ok(cli(&sock, &["-e", "SHOW TOPOLOGY"]), "SHOW TOPOLOGY"));
    assert_eq!(topo.len(), 1);
    assert_eq!(topo[0]["master"], "db1");
    assert_eq!(topo[0]["problem"], "NULL");

    // An unknown command: the error lists the commands; --force goes on with the next
    // line on the same connection, which still works.
    let out = cli_input(&sock, &["--force"], b"SHOW TABLES;\nSHOW TOPOLOGY;\n");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("ERROR 1064 (42000) at line 1: {KNOWN}")),
        "{stderr}"
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("db1"),
        "{out:?}"
    );

    // -D, USE and the connect-time probes of the CLI.
    let out = ok(
        cli(
            &sock,
            &[
                "-D",
                "koha",
                "-e",
                "SELECT DATABASE(), USER(); select @@version_comment limit 1",
            ],
        ),
        "-D koha",
    );
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("koha") && text.contains("kohaproxy admin console"),
        "{text}"
    );

    // mysql_async on the socket: an error, then the same connection still answers.
    let mut admin = mysql_async::Conn::new(socket_opts(&sock)).await.unwrap();
    let (code, msg) = server_error(admin.query_drop("FAILOVER NOW PLEASE").await.unwrap_err());
    assert_eq!((code, msg.as_str()), (1064, KNOWN));
    let (code, _) = server_error(admin.exec_drop("SHOW SERVERS", ()).await.unwrap_err());
    assert_eq!(code, 1295, "prepared statements are refused");
    let listed: Vec<Row> = admin.query("SHOW SERVERS").await.unwrap();
    assert_eq!(listed.len(), 3);
    assert_eq!(
        listed[0].get::<String, _>("role").as_deref(),
        Some("master")
    );
    assert!(listed[0].get::<u64, _>("connections").unwrap() >= 1);
    let sessions: Vec<Row> = admin.query("SHOW SESSIONS").await.unwrap();
    assert_eq!(sessions.len(), 1);
    assert_eq!(
        sessions[0].get::<String, _>("user").as_deref(),
        Some("koha")
    );
    admin.disconnect().await.unwrap();

    // The session ends: the console sees it go.
    client.disconnect().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let s = ok(cli(&sock, &["-e", "SHOW SESSIONS"]), "SHOW SESSIONS");
        if rows(&s).is_empty() {
            break;
        }
        assert!(Instant::now() < deadline, "session still listed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_port_needs_the_password() {
    let port = free_port();
    let env = Env::start_with(0, |toml| {
        assert!(toml.contains("[admin]\n"), "{toml}");
        *toml = toml.replacen(
            "[admin]\n",
            &format!("[admin]\nlisten = \"127.0.0.1:{port}\"\npassword = \"adm1n\"\n"),
            1,
        );
    });
    let opts = |pass: &str| -> mysql_async::Opts {
        OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(port)
            .prefer_socket(false)
            .user(Some("admin"))
            .pass(Some(pass))
            .into()
    };
    let (code, msg) = server_error(mysql_async::Conn::new(opts("wrong")).await.unwrap_err());
    assert_eq!(code, 1045, "{msg}");
    assert!(msg.starts_with("Access denied for user 'admin'"), "{msg}");

    let cli_tcp = |pass: &str| {
        Command::new("mariadb")
            .args([
                "--no-defaults",
                "-h127.0.0.1",
                "--protocol=TCP",
                "-uadmin",
                "--batch",
            ])
            .arg(format!("-P{port}"))
            .arg(format!("-p{pass}"))
            .args(["-e", "SHOW SERVERS"])
            .stdin(Stdio::null())
            .output()
            .expect("run mariadb")
    };
    let out = cli_tcp("nope");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("ERROR 1045 (28000)"), "{stderr}");

    let out = ok(cli_tcp("adm1n"), "mariadb on the TCP admin port");
    assert_eq!(rows(&out).len(), 1);
    let mut admin = mysql_async::Conn::new(opts("adm1n")).await.unwrap();
    let stats: Vec<(String, u64)> = admin.query("SHOW STATS").await.unwrap();
    assert!(stats.iter().any(|(n, _)| n == "routed_master"), "{stats:?}");
    admin.disconnect().await.unwrap();

    // The socket is served too, without a password.
    ok(
        cli(&socket(&env), &["-e", "SHOW TOPOLOGY"]),
        "socket beside TCP",
    );
    assert!(
        env.proxy_log().contains("admin login refused"),
        "{}",
        env.proxy_log()
    );
}
