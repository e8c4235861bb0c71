//! Koha's real schema and sample catalogue, loaded through the proxy with Koha's own
//! installer SQL, give the same database as loaded directly on the master.

mod common;

use std::process::Command;
use std::time::Instant;

use common::{ok, shared_dir, Env};

/// Runs shared/koha/load.sh into `db` on `port` with NOW() pinned.
fn load(port: u16, db: &str) -> std::process::Output {
    let script = shared_dir().join("koha/load.sh");
    Command::new("bash")
        .arg(&script)
        .args(["127.0.0.1", &port.to_string(), "koha", "koha", db])
        .env("KOHA_LOAD_TIMESTAMP", "1700000000")
        .output()
        .expect("cannot run bash")
}

#[test]
fn koha_schema_and_catalogue_load_identically_through_the_proxy() {
    let started = Instant::now();
    let loader = shared_dir().join("koha/load.sh");
    assert!(
        loader.is_file(),
        "{} is missing: this test needs the shared/ folder (Koha schema and sample \
         catalogue) beside the repository",
        loader.display()
    );
    let env = Env::start(0);

    // Both loads at once, each into its own database.
    let (via_proxy, direct) = std::thread::scope(|s| {
        let timed = |port: u16, db: &'static str| {
            move || {
                let t = Instant::now();
                let out = load(port, db);
                eprintln!("load.sh into {db}: {:?}", t.elapsed());
                out
            }
        };
        let p = s.spawn(timed(env.proxy_port(), "koha_via_proxy"));
        let d = s.spawn(timed(env.master_port(), "koha_direct"));
        (p.join().unwrap(), d.join().unwrap())
    });
    let tail = || {
        let log = env.proxy_log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    };
    assert!(
        via_proxy.status.success(),
        "load.sh through the proxy failed ({}):\n{}\n--- proxy log tail:\n{}",
        via_proxy.status,
        String::from_utf8_lossy(&via_proxy.stderr),
        tail()
    );
    assert!(
        direct.status.success(),
        "load.sh directly failed ({}):\n{}",
        direct.status,
        String::from_utf8_lossy(&direct.stderr)
    );
    eprintln!("loads done: {:?}", started.elapsed());

    // Both dumps taken directly on the master; only the database name may differ.
    let dump = |db: &str| {
        ok(
            Env::mariadb_dump(
                env.master_port(),
                &["--skip-dump-date", "--skip-comments", "--routines", db],
            ),
            &format!("dump of {db}"),
        )
    };
    let p = String::from_utf8(dump("koha_via_proxy")).expect("utf-8 dump");
    let d = String::from_utf8(dump("koha_direct")).expect("utf-8 dump");
    assert!(
        d.len() > 1_000_000,
        "a suspiciously small dump: {} bytes",
        d.len()
    );
    let p = p.replace("koha_via_proxy", "koha_direct");
    if p != d {
        let line = p
            .lines()
            .zip(d.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        let show = |s: &str| {
            s.lines()
                .nth(line)
                .unwrap_or("")
                .chars()
                .take(400)
                .collect::<String>()
        };
        panic!(
            "the databases differ at dump line {} ({} vs {} bytes):\nproxy:  {}\ndirect: {}",
            line + 1,
            p.len(),
            d.len(),
            show(&p),
            show(&d)
        );
    }

    // The counts the sample is known for, through the proxy and directly.
    let counts = |port: u16, db: &str| {
        let q = format!(
            "SELECT (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{db}'), \
             (SELECT COUNT(*) FROM {db}.biblio), (SELECT COUNT(*) FROM {db}.items), \
             (SELECT COUNT(*) FROM {db}.biblio_metadata), \
             (SELECT value FROM {db}.systempreferences WHERE variable = 'marcflavour')"
        );
        let out = ok(Env::mariadb(port, &["-N", "-B"], q.as_bytes()), "counts");
        String::from_utf8(out).unwrap().trim_end().to_string()
    };
    let a = counts(env.proxy_port(), "koha_via_proxy");
    let b = counts(env.master_port(), "koha_direct");
    assert_eq!(a, b, "counts through the proxy vs direct");
    let fields: Vec<&str> = a.split('\t').collect();
    let tables: usize = fields[0].parse().unwrap();
    assert!((190..=210).contains(&tables), "{tables} tables");
    assert_eq!(fields[1], "436", "biblio rows");
    assert_eq!(fields[2], "961", "items rows");
    assert_eq!(fields[3], "436", "biblio_metadata rows");
    assert_eq!(fields[4], "MARC21");

    // And a dump of the same database through the proxy is byte-identical to a direct one.
    let args = ["--skip-dump-date", "koha_via_proxy"];
    let p = ok(
        Env::mariadb_dump(env.proxy_port(), &args),
        "dump through the proxy",
    );
    let d = ok(Env::mariadb_dump(env.master_port(), &args), "dump direct");
    assert!(
        p == d,
        "mariadb-dump through the proxy differs ({} vs {} bytes)\n{}",
        p.len(),
        d.len(),
        tail()
    );
    eprintln!("koha schema: {:?}", started.elapsed());
}
