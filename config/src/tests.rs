//! Unit tests: the design sketch, defaults, and one test per refusal, each checking that the
//! message names the file and the key.

use crate::*;
use std::path::Path;

const PATH: &str = "/etc/kohaproxy.toml";

/// The "Config sketch" from design.md.
const SKETCH: &str = r#"[proxy]
listen = "127.0.0.1:6033"
[admin]
socket = "/run/kohaproxy/admin.sock"
[[users]]
name = "koha"
password_hash = "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"
[monitor]
user = "kohaproxy_monitor"
password = "..."
interval_ms = 500
failover = "auto"          # or "manual"
[cluster]
kind = "replication"       # or "galera"
[[servers]]
name = "db1"
address = "10.0.0.11:3306"
[[servers]]
name = "db2"
address = "10.0.0.12:3306"
[routing]
read_write_split = true
max_replication_lag_s = 5
[backup]
dir = "/var/backups/kohaproxy"
schedule = "daily 02:30"
keep = 7
"#;

/// The smallest accepted file.
const MINIMAL: &str = r#"[proxy]
listen = "127.0.0.1:6033"
[[users]]
name = "koha"
password = "koha"
[monitor]
user = "mon"
[[servers]]
name = "db1"
address = "db1.example.org:3306"
"#;

fn parse(text: &str) -> Result<Config, ConfigError> {
    Config::parse(text, Path::new(PATH))
}

/// Parses `text`, expecting a refusal whose message contains the file and every `needle`.
fn refused(text: &str, needles: &[&str]) -> String {
    let msg = match parse(text) {
        Ok(c) => panic!("accepted, expected an error containing {needles:?}: {c:?}"),
        Err(e) => e.to_string(),
    };
    assert!(msg.starts_with(&format!("{PATH}: ")), "no file in {msg:?}");
    for n in needles {
        assert!(msg.contains(n), "{n:?} not in {msg:?}");
    }
    msg
}

/// MINIMAL with `from` replaced by `to` (which must occur).
fn edit(from: &str, to: &str) -> String {
    assert!(MINIMAL.contains(from), "{from:?} not in MINIMAL");
    MINIMAL.replacen(from, to, 1)
}

#[test]
fn design_sketch_parses() {
    let c = parse(SKETCH).unwrap();
    assert_eq!(c.path, Path::new(PATH));
    assert_eq!(c.proxy.listen, "127.0.0.1:6033".parse().unwrap());
    assert_eq!(
        c.admin.socket.as_deref(),
        Some(Path::new("/run/kohaproxy/admin.sock"))
    );
    assert_eq!(c.admin.listen, None);
    assert_eq!(c.users.len(), 1);
    assert_eq!(
        c.user("koha").unwrap().password,
        PasswordHash::from_plain("password")
    );
    assert!(c.user("nobody").is_none());
    assert_eq!(c.monitor.user, "kohaproxy_monitor");
    assert_eq!(c.monitor.password, "...");
    assert_eq!(c.monitor.interval, Duration::from_millis(500));
    assert_eq!(c.monitor.failover, FailoverMode::Auto);
    assert_eq!(c.cluster.kind, ClusterKind::Replication);
    let names: Vec<_> = c.servers.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["db1", "db2"]);
    assert_eq!(c.server("db2").unwrap().address, "10.0.0.12:3306");
    assert!(c.server("db3").is_none());
    assert!(c.routing.read_write_split);
    assert_eq!(c.routing.max_replication_lag, Duration::from_secs(5));
    assert_eq!(
        c.backup.dir.as_deref(),
        Some(Path::new("/var/backups/kohaproxy"))
    );
    assert_eq!(c.backup.schedule.to_string(), "daily 02:30");
    assert_eq!(c.backup.keep, 7);
}

#[test]
fn defaults() {
    let c = parse(MINIMAL).unwrap();
    assert_eq!(c.monitor.durability, crate::Durability::Replicated);
    assert_eq!(c.proxy.max_connections, 10_000);
    assert_eq!(c.proxy.handshake_timeout, Duration::from_secs(10));
    assert_eq!(c.proxy.connect_timeout, Duration::from_secs(5));
    assert_eq!(c.proxy.max_allowed_packet, 1 << 30);
    assert_eq!(c.proxy.idle_timeout, Some(Duration::from_secs(28_800)));
    assert_eq!(c.admin.socket, None);
    assert_eq!(c.admin.listen, None);
    assert_eq!(c.admin.password, None);
    assert_eq!(c.monitor.password, "");
    assert_eq!(c.monitor.interval, Duration::from_millis(500));
    assert_eq!(c.monitor.timeout, Duration::from_millis(1000));
    assert_eq!(c.monitor.fail_count, 3);
    assert_eq!(c.monitor.failover, FailoverMode::Auto);
    assert_eq!(c.cluster.kind, ClusterKind::Replication);
    assert!(!c.servers[0].no_promote);
    assert_eq!(c.servers[0].priority, 0);
    assert_eq!(c.servers[0].address, "db1.example.org:3306");
    assert!(c.routing.read_write_split);
    assert_eq!(c.routing.max_replication_lag, Duration::from_secs(5));
    assert_eq!(c.routing.causal_reads, CausalReads::Global);
    assert_eq!(c.routing.causal_wait, Duration::from_millis(100));
    assert_eq!(c.backup.dir, None);
    assert_eq!(c.backup.schedule.to_string(), "daily 02:30");
    assert_eq!(c.backup.keep, 7);
    assert_eq!(c.backup.priority, BackupPriority::Idle);
}

#[test]
fn every_causal_mode_parses() {
    for (word, mode) in [
        ("global", CausalReads::Global),
        ("local", CausalReads::Local),
        ("session", CausalReads::Session),
        ("off", CausalReads::Off),
    ] {
        let c = parse(&format!(
            "{MINIMAL}\n[routing]\ncausal_reads = \"{word}\"\n"
        ))
        .unwrap();
        assert_eq!(c.routing.causal_reads, mode, "{word}");
    }
}

#[test]
fn every_key_set() {
    let text = r#"[proxy]
listen = "[::1]:6033"
max_connections = 50
handshake_timeout_ms = 2000
connect_timeout_ms = 300
max_allowed_packet = "64M"
idle_timeout_s = 0
[admin]
listen = "127.0.0.1:6034"
password = "adm"
[[users]]
name = "koha"
password = ""
[[users]]
name = "opac"
password_hash = "*f819e4cc1c4ef29a32aa248c45161e1b8817023d"
[[users]]
name = "none"
password_hash = ""
[monitor]
user = "mon"
timeout_ms = 250
fail_count = 1
failover = "manual"
durability = "available"
[cluster]
kind = "galera"
failback = true
max_recv_queue = 4
[[servers]]
name = "db1"
address = "[fd00::1]:3306"
no_promote = true
priority = -2
"#;
    let c = parse(text).unwrap();
    assert_eq!(c.proxy.listen, "[::1]:6033".parse().unwrap());
    assert_eq!(c.proxy.max_connections, 50);
    assert_eq!(c.monitor.durability, crate::Durability::Available);
    assert_eq!(c.proxy.handshake_timeout, Duration::from_millis(2000));
    assert_eq!(c.proxy.connect_timeout, Duration::from_millis(300));
    assert_eq!(c.proxy.max_allowed_packet, 64 << 20);
    assert_eq!(c.proxy.idle_timeout, None);
    assert_eq!(c.admin.listen, Some("127.0.0.1:6034".parse().unwrap()));
    assert_eq!(c.admin.password.as_deref(), Some("adm"));
    assert_eq!(c.user("koha").unwrap().password, PasswordHash::Empty);
    assert_eq!(
        c.user("opac").unwrap().password,
        PasswordHash::from_plain("koha")
    );
    assert_eq!(c.user("none").unwrap().password, PasswordHash::Empty);
    assert_eq!(c.monitor.timeout, Duration::from_millis(250));
    assert_eq!(c.monitor.fail_count, 1);
    assert_eq!(c.monitor.failover, FailoverMode::Manual);
    assert_eq!(c.cluster.kind, ClusterKind::Galera);
    assert!(c.cluster.failback);
    assert!(!c.cluster.donor_serves_reads);
    assert_eq!(c.cluster.max_recv_queue, 4);
    assert!(c.servers[0].no_promote);
    assert_eq!(c.servers[0].priority, -2);
}

#[test]
fn password_hashes() {
    let koha = PasswordHash::from_plain("koha");
    let expected = PasswordHash::parse_hex("*F819E4CC1C4EF29A32AA248C45161E1B8817023D");
    assert_eq!(Ok(koha.clone()), expected);
    let password = PasswordHash::parse_hex("*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19");
    assert_eq!(Ok(PasswordHash::from_plain("password")), password);
    assert_eq!(PasswordHash::from_plain(""), PasswordHash::Empty);
    assert_eq!(PasswordHash::parse_hex(""), Ok(PasswordHash::Empty));
    let bad = [
        "2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19",
        "*2470C0",
        "*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E1Z",
    ];
    for b in bad {
        let err = PasswordHash::parse_hex(b).unwrap_err();
        assert!(!err.contains("2470C0"), "value leaked in {err:?}");
    }
    assert_eq!(format!("{koha:?}"), "PasswordHash::DoubleSha1(..)");
}

#[test]
fn max_allowed_packet_forms() {
    for (text, bytes) in [
        ("1024", 1024),
        ("\"512K\"", 512 << 10),
        ("\"1G\"", 1 << 30),
        ("\"16mib\"", 16 << 20),
    ] {
        let c = parse(&edit(
            "[[users]]",
            &format!("max_allowed_packet = {text}\n[[users]]"),
        ))
        .unwrap();
        assert_eq!(c.proxy.max_allowed_packet, bytes, "{text}");
    }
    for text in [
        "1023",
        "\"2G\"",
        "-5",
        "\"64X\"",
        "\"M\"",
        "\"99999999999999999999G\"",
    ] {
        refused(
            &edit(
                "[[users]]",
                &format!("max_allowed_packet = {text}\n[[users]]"),
            ),
            &["proxy.max_allowed_packet"],
        );
    }
}

#[test]
fn bad_server_address() {
    let text = format!("{MINIMAL}[[servers]]\nname = \"db2\"\naddress = \"db2\"\n");
    let msg = refused(
        &text,
        &[r#"servers[1].address: "db2" is not host:port (missing port)"#],
    );
    assert!(msg.contains("line 13, column 11: servers[1]"), "{msg}");
    for addr in [
        "db2:0",
        "db2:65536",
        "db2:x",
        ":3306",
        "fd00::1:3306",
        "[fd00::1]3306",
    ] {
        let text = format!("{MINIMAL}[[servers]]\nname = \"db2\"\naddress = \"{addr}\"\n");
        refused(&text, &["servers[1].address", "is not host:port"]);
    }
}

#[test]
fn password_and_hash_both_set() {
    let text = edit(
        "password = \"koha\"",
        "password = \"secret1\"\npassword_hash = \"*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19\"",
    );
    let msg = refused(
        &text,
        &["users[0]: set either password or password_hash, not both"],
    );
    assert!(!msg.contains("secret1") && !msg.contains("2470C0"), "{msg}");
    refused(
        &edit("password = \"koha\"\n", ""),
        &["users[0]: set either password or password_hash"],
    );
}

#[test]
fn bad_password_hash() {
    let text = edit(
        "password = \"koha\"",
        "password_hash = \"*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E\"",
    );
    let msg = refused(
        &text,
        &["users[0].password_hash", "40 hex digits", "line 5"],
    );
    assert!(!msg.contains("2470C0"), "{msg}");
}

#[test]
fn unknown_key() {
    let msg = refused(&edit("listen", "listn"), &["line 2, column 1: unknown key `listn` in [proxy], expected one of listen, max_connections"]);
    assert!(!msg.contains('\n'), "{msg}");
    refused(
        &format!("{MINIMAL}[proxi]\n"),
        &["line 11", "unknown section [proxi]"],
    );
    refused(
        &format!("{MINIMAL}weight = 3\n"),
        &["unknown key `weight` in [[servers]] entry servers[0]"],
    );
}

#[test]
fn wrong_types_name_the_key() {
    let text = edit("[[users]]", "max_connections = \"many\"\n[[users]]");
    refused(
        &text,
        &["line 3, column 19: proxy.max_connections: invalid type"],
    );
    refused(
        &edit("address = \"db1.example.org:3306\"", "address = 3306"),
        &["servers[0].address"],
    );
    refused(
        &edit("user = \"mon\"", "user = \"mon\"\nfailover = \"sometimes\""),
        &["monitor.failover", "unknown variant"],
    );
    refused(
        &edit("user = \"mon\"", "user = \"mon\"\ndurability = \"maybe\""),
        &["monitor.durability", "unknown variant", "replicated"],
    );
    refused(
        &format!("{MINIMAL}\n[routing]\ncausal_reads = \"always\"\n"),
        &["routing.causal_reads", "unknown variant", "global"],
    );
    let msg = refused(
        &edit("password = \"koha\"", "password = 1234567"),
        &["users[0].password: invalid type, expected a string"],
    );
    assert!(!msg.contains("1234567"), "{msg}");
    refused("[proxy\n", &["line 1"]);
    let dup = edit(
        "listen = \"127.0.0.1:6033\"",
        "listen = \"127.0.0.1:6033\"\nlisten = \"127.0.0.1:6034\"",
    );
    refused(&dup, &["line 3, column 1: proxy.listen: duplicate key"]);
    refused(
        &edit("user = \"mon\"", "user = \"mon\"\nfail_count = -1"),
        &["monitor.fail_count: invalid value: integer `-1`, expected a non-negative integer"],
    );
}

#[test]
fn duplicates() {
    let text = format!("{MINIMAL}[[servers]]\nname = \"db1\"\naddress = \"10.0.0.2:3306\"\n");
    refused(
        &text,
        &["servers[1].name: duplicate server name \"db1\" (also servers[0])"],
    );
    let text =
        format!("{MINIMAL}[[servers]]\nname = \"db2\"\naddress = \"DB1.example.org:3306\"\n");
    refused(&text, &["servers[1].address: duplicate address"]);
    let text = format!("{MINIMAL}[[users]]\nname = \"koha\"\npassword = \"x\"\n");
    refused(&text, &["users[1].name: duplicate user \"koha\""]);
}

#[test]
fn empty_names() {
    refused(
        &edit("name = \"koha\"", "name = \"\""),
        &["users[0].name: must not be empty"],
    );
    refused(
        &edit("name = \"db1\"", "name = \" \""),
        &["servers[0].name: must not be empty"],
    );
    refused(
        &edit("name = \"db1\"\n", ""),
        &["servers[0].name: is required but missing"],
    );
    refused(
        &edit("user = \"mon\"", "user = \"\""),
        &["monitor.user: must not be empty"],
    );
}

#[test]
fn monitor_ranges() {
    let with = |kv: &str| edit("user = \"mon\"", &format!("user = \"mon\"\n{kv}"));
    refused(
        &with("interval_ms = 0"),
        &["monitor.interval_ms: 0 is out of range", "line 8"],
    );
    refused(
        &with("timeout_ms = 0"),
        &["monitor.timeout_ms: 0 is out of range"],
    );
    refused(
        &with("fail_count = 0"),
        &["monitor.fail_count: 0 is out of range"],
    );
    refused(
        &with("interval_ms = -1"),
        &["monitor.interval_ms: invalid value"],
    );
}

#[test]
fn other_ranges() {
    refused(
        &format!("{MINIMAL}[backup]\nkeep = 0\n"),
        &["backup.keep: 0 is out of range"],
    );
    let text = edit("[[users]]", "max_connections = 0\n[[users]]");
    refused(&text, &["proxy.max_connections: 0 is out of range"]);
    refused(
        &format!("{MINIMAL}[backup]\ndir = \"\"\n"),
        &["backup.dir: must not be empty"],
    );
    refused(
        &format!("{MINIMAL}[backup]\nschedule = \"daily 25:00\"\n"),
        &["backup.schedule: \"daily 25:00\": expected \"off\""],
    );
    refused(
        &format!("{MINIMAL}[backup]\ncompression_level = 22\n"),
        &["backup.compression_level: 22 is out of range"],
    );
    refused(
        &format!("{MINIMAL}[backup]\nparallel = 0\n"),
        &["backup.parallel: 0 is out of range"],
    );
    refused(
        &format!("{MINIMAL}[backup]\npriority = \"lowest\"\n"),
        &["backup.priority", "unknown variant", "idle"],
    );
}

#[test]
fn backup_keys() {
    let text = format!(
        "{MINIMAL}[backup]\ndir = \"/b\"\nschedule = \"weekly sun 03:15\"\nkeep = 3\nkeep_days = 30\n\
         parallel = 4\ncompression_level = 1\npriority = \"low\"\nallow_master = true\nuser = \"dumper\"\n\
         password = \"pw\"\nmariadb_dump = \"/opt/bin/mariadb-dump\"\n"
    );
    let c = Config::parse(&text, Path::new("t.toml")).unwrap();
    let b = &c.backup;
    assert_eq!(b.schedule.to_string(), "weekly sun 03:15");
    assert_eq!((b.keep, b.keep_days, b.parallel), (3, Some(30), 4));
    assert_eq!((b.compression_level, b.allow_master), (1, true));
    assert_eq!(b.rebuild_diverged_after, None);
    let on = format!("{MINIMAL}[backup]\nrebuild_diverged_after_s = 90\n");
    let c = Config::parse(&on, Path::new("t.toml")).unwrap();
    assert_eq!(
        c.backup.rebuild_diverged_after,
        Some(Duration::from_secs(90))
    );
    assert_eq!(b.priority, BackupPriority::Low);
    assert_eq!((b.user.as_str(), b.password.as_str()), ("dumper", "pw"));
    assert_eq!(b.mariadb_dump, Path::new("/opt/bin/mariadb-dump"));
    assert_eq!(b.mariadb, Path::new("mariadb"));
    assert!(!format!("{b:?}").contains("pw"));
}

#[test]
fn missing_sections() {
    let no_proxy = MINIMAL.replacen("[proxy]\nlisten = \"127.0.0.1:6033\"\n", "", 1);
    refused(&no_proxy, &["proxy: missing required section [proxy]"]);
    refused(
        &edit("listen = \"127.0.0.1:6033\"\n", ""),
        &["proxy.listen: is required but missing"],
    );
    refused(
        &edit("[monitor]\nuser = \"mon\"\n", ""),
        &["monitor: missing required section [monitor]"],
    );
    let no_users = edit("[[users]]\nname = \"koha\"\npassword = \"koha\"\n", "");
    refused(
        &no_users,
        &["users: at least one [[users]] entry is required"],
    );
    let no_servers = edit(
        "[[servers]]\nname = \"db1\"\naddress = \"db1.example.org:3306\"\n",
        "",
    );
    refused(
        &no_servers,
        &["servers: at least one [[servers]] entry is required"],
    );
}

#[test]
fn listen_addresses() {
    refused(
        &edit("127.0.0.1:6033", "localhost:6033"),
        &["proxy.listen: \"localhost:6033\" is not an IP address and port"],
    );
    let text = format!("{MINIMAL}[admin]\nlisten = \"127.0.0.1:6034\"\n");
    refused(
        &text,
        &["admin.password: is required when admin.listen is set"],
    );
    let text = format!("{MINIMAL}[admin]\nlisten = \"127.0.0.1:6034\"\npassword = \"\"\n");
    refused(&text, &["admin.password: must not be empty"]);
}

#[test]
fn secrets_stay_out_of_debug() {
    let text = format!(
        "{}[admin]\nlisten = \"127.0.0.1:6034\"\npassword = \"adminsecret\"\n",
        SKETCH.replace("[admin]\nsocket = \"/run/kohaproxy/admin.sock\"\n", "")
    );
    let c = parse(&text.replace("password = \"...\"", "password = \"monsecret\"")).unwrap();
    let debug = format!("{c:?}");
    for secret in ["adminsecret", "monsecret", "2470C0", "2470c0"] {
        assert!(!debug.contains(secret), "{secret} in {debug}");
    }
}

#[test]
fn load_reads_and_names_missing_file() {
    let dir = std::env::temp_dir().join(format!("kohaproxy-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("kohaproxy.toml");
    std::fs::write(&file, SKETCH).unwrap();
    let c = Config::load(&file).unwrap();
    assert_eq!(c.path, file);
    std::fs::remove_file(&file).unwrap();
    let msg = Config::load(&file).unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!("{}: cannot read", file.display())),
        "{msg}"
    );
    let _ = std::fs::remove_dir(&dir);
}

#[test]
fn messages_are_one_line() {
    for t in [
        edit("listen", "listn"),
        format!("{MINIMAL}[proxi]\n"),
        format!("{MINIMAL}weight = 3\n"),
        edit("[[users]]", "max_connections = \"many\"\n[[users]]"),
        edit("user = \"mon\"", "user = \"mon\"\nfailover = \"sometimes\""),
        edit("password = \"koha\"", "password = 1234567"),
        "[proxy\n".to_owned(),
        "[proxy]\nlisten = \"x\"\nlisten = \"y\"\n".to_owned(),
        edit("password = \"koha\"\n", ""),
        edit("[[users]]", "max_allowed_packet = \"64X\"\n[[users]]"),
        edit("[[users]]", "max_allowed_packet = 5.5\n[[users]]"),
        edit("user = \"mon\"", "user = \"mon\"\ninterval_ms = -1"),
        edit("listen = \"127.0.0.1:6033\"\n", ""),
        format!("{MINIMAL}[admin]\nlisten = \"127.0.0.1:6034\"\n"),
        "users = [{name=\"a\", password=5}]".to_owned(),
    ] {
        let msg = parse(&t).unwrap_err().to_string();
        assert!(
            msg.starts_with(PATH) && msg.contains("line ") && !msg.contains('\n'),
            "{msg}"
        );
    }
}

#[test]
fn mangled_input_never_panics() {
    for (i, _) in SKETCH.char_indices() {
        for insert in ["é", "=", "[", "\"", "\n", "ü=1\n"] {
            let mut text = SKETCH.to_owned();
            text.insert_str(i, insert);
            let _ = parse(&text);
        }
        let _ = parse(&SKETCH[..i]);
    }
}
