//! LOAD DATA LOCAL INFILE through the proxy: the client's file travels through it intact
//! (10,000 rows with escapes, NULLs, utf8mb4 and lines far above 64 KiB), and a client-side
//! failure (missing file, local infile disabled) leaves the session usable, as directly.

mod common;

use std::fmt::Write as _;
use std::time::Instant;

use common::{ok, Env};

const DB: &str = "koha_load_test";
const ROWS: usize = 10_000;

/// The table both loads go into (one table per route).
fn create_table(name: &str) -> String {
    format!(
        "CREATE TABLE {DB}.{name} (
           id INT PRIMARY KEY,
           name VARCHAR(200),
           note MEDIUMTEXT,
           amount DECIMAL(12,2),
           seen DATETIME NULL,
           code CHAR(3)
         ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci"
    )
}

/// A tab-separated file in LOAD DATA's default format: `\N` is NULL, backslash escapes
/// (`\t`, `\n`, `\\`, `\0`, `\Z`, and a backslash before a real tab or newline), utf8mb4
/// text, and a few lines far longer than 64 KiB.
fn generate() -> Vec<u8> {
    let mut f = String::new();
    for i in 1..=ROWS {
        let name = match i % 7 {
            0 => "\\N".to_string(),
            1 => format!("Bibliothèque 📚 図書館 {i}"),
            2 => format!("tab\\there {i}"),
            3 => format!("back\\\\slash {i}"),
            4 => format!("real\\\ttab and e\u{301} {i}"),
            5 => format!("quote ' \" ` {i}"),
            _ => format!("plain {i}"),
        };
        let note = match i {
            _ if i % 2500 == 17 => "long ".repeat(20_000 + i) + "📚",
            _ if i % 11 == 0 => "\\N".to_string(),
            _ if i % 5 == 0 => format!("line one\\nline two\\r\\nnul\\0 ctrl-z\\Z {i}"),
            _ if i % 13 == 0 => format!("escaped real newline\\\nsecond line {i}"),
            _ if i % 3 == 0 => String::new(),
            _ => format!("note {}", "שלום ".repeat(i % 17)),
        };
        let amount = if i % 9 == 0 {
            "\\N".to_string()
        } else {
            format!("{}.{:02}", i * 3, i % 100)
        };
        let seen = if i % 4 == 0 {
            "\\N".to_string()
        } else {
            format!(
                "2024-{:02}-{:02} {:02}:{:02}:{:02}",
                i % 12 + 1,
                i % 28 + 1,
                i % 24,
                i % 60,
                (i * 7) % 60
            )
        };
        let code = ["abc", "x", "\\N", "é"][i % 4];
        writeln!(f, "{i}\t{name}\t{note}\t{amount}\t{seen}\t{code}").unwrap();
    }
    f.into_bytes()
}

/// Replaces the client's timings, "(0.003 sec)", which differ from run to run.
fn strip_timings(out: &[u8]) -> String {
    let text = String::from_utf8_lossy(out);
    let mut res = String::with_capacity(text.len());
    let mut rest: &str = &text;
    while let Some(at) = rest.find(" sec)") {
        let head = &rest[..at];
        let open = head.rfind('(').unwrap_or(at);
        let inner = &head[(open + 1).min(head.len())..];
        if open < at && !inner.is_empty() && inner.chars().all(|c| c.is_ascii_digit() || c == '.') {
            res.push_str(&head[..open]);
            res.push_str("(T sec)");
        } else {
            res.push_str(head);
            res.push_str(" sec)");
        }
        rest = &rest[at + " sec)".len()..];
    }
    res.push_str(rest);
    res
}

fn tail(env: &Env) -> String {
    let log = env.proxy_log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

#[test]
fn load_data_local_infile_matches_direct() {
    let started = Instant::now();
    let env = Env::start(0);
    env.sb()
        .sql(
            "db1",
            &format!(
                "CREATE DATABASE {DB} CHARACTER SET utf8mb4; {}; {}",
                create_table("t_proxy"),
                create_table("t_direct")
            ),
        )
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rows.tsv");
    let data = generate();
    assert!(data.len() > 1024 * 1024, "file of {} bytes", data.len());
    std::fs::write(&file, &data).unwrap();

    let load = |port: u16, table: &str| {
        let script = format!(
            "LOAD DATA LOCAL INFILE '{}' INTO TABLE {table} CHARACTER SET utf8mb4;\n\
             SHOW WARNINGS;\nSELECT COUNT(*) FROM {table};\n",
            file.display()
        );
        let out = Env::mariadb(
            port,
            &[
                "--local-infile=1",
                "--default-character-set=utf8mb4",
                "-vvv",
                "--table",
                DB,
            ],
            script.as_bytes(),
        );
        let stdout = ok(out, &format!("LOAD DATA LOCAL on port {port}"));
        strip_timings(&stdout).replace(table, "T")
    };
    let p = load(env.proxy_port(), "t_proxy");
    let d = load(env.master_port(), "t_direct");
    assert_eq!(
        p,
        d,
        "mariadb output through the proxy vs direct\n{}",
        tail(&env)
    );
    assert!(
        p.contains(&format!(
            "Records: {ROWS}  Deleted: 0  Skipped: 0  Warnings: 0"
        )),
        "{p}"
    );

    // Same rows: server checksums, and a full ordered dump of each table.
    let sums = env
        .sb()
        .sql(
            "db1",
            &format!("CHECKSUM TABLE {DB}.t_proxy, {DB}.t_direct"),
        )
        .unwrap();
    let sums: Vec<&str> = sums.lines().filter_map(|l| l.split('\t').nth(1)).collect();
    assert_eq!(sums.len(), 2, "checksums: {sums:?}");
    assert_eq!(sums[0], sums[1], "CHECKSUM TABLE t_proxy, t_direct");
    let dump = |table: &str| {
        ok(
            Env::mariadb(
                env.master_port(),
                &["--default-character-set=utf8mb4", "-B", DB],
                format!("SELECT * FROM {table} ORDER BY id").as_bytes(),
            ),
            "select",
        )
    };
    let (dp, dd) = (dump("t_proxy"), dump("t_direct"));
    assert!(dp == dd, "the tables differ");
    // And the data is what the file says, spot-checked.
    let check = env
        .sb()
        .sql(
            "db1",
            &format!(
                "SELECT COUNT(*), SUM(name IS NULL), SUM(note IS NULL), SUM(amount IS NULL), \
                 SUM(seen IS NULL), SUM(code IS NULL), MAX(LENGTH(note)), \
                 SUM(name LIKE 'tab\\there%'), SUM(note LIKE '%\\nsecond line%'), \
                 (SELECT HEX(name) FROM {DB}.t_proxy WHERE id = 1), \
                 (SELECT HEX(note) FROM {DB}.t_proxy WHERE id = 5) \
                 FROM {DB}.t_proxy"
            ),
        )
        .unwrap();
    let fields: Vec<&str> = check.trim_end().split('\t').collect();
    assert_eq!(fields[0], ROWS.to_string(), "{check}");
    assert_eq!(fields[1], (ROWS / 7).to_string(), "NULL names: {check}");
    assert_eq!(fields[3], (ROWS / 9).to_string(), "NULL amounts: {check}");
    assert_eq!(fields[4], (ROWS / 4).to_string(), "NULL dates: {check}");
    assert!(
        fields[6].parse::<usize>().unwrap() > 100_000,
        "a long line: {check}"
    );
    let tabs = (1..=ROWS).filter(|i| i % 7 == 2).count();
    assert_eq!(fields[7], tabs.to_string(), "escaped tabs: {check}");
    assert_eq!(
        fields[9],
        hex::encode_upper("Bibliothèque 📚 図書館 1"),
        "{check}"
    );
    let note5 = "line one\nline two\r\nnul\0 ctrl-z\x1a 5";
    assert_eq!(fields[10], hex::encode_upper(note5), "{check}");

    // A missing file: the client reports its own error, sends the server an empty file,
    // and the same session goes on (@marker survives: no reconnect).
    let missing = |port: u16| {
        let script = format!(
            "SET @marker = 'same session';\n\
             LOAD DATA LOCAL INFILE '{}/missing.tsv' INTO TABLE t_proxy;\n\
             SELECT @marker, COUNT(*) FROM t_proxy;\n",
            dir.path().display()
        );
        Env::mariadb(
            port,
            &["--local-infile=1", "--force", "-vvv", "--table", DB],
            script.as_bytes(),
        )
    };
    let (p, d) = (missing(env.proxy_port()), missing(env.master_port()));
    assert_eq!(p.status.code(), d.status.code());
    let (ps, ds) = (strip_timings(&p.stdout), strip_timings(&d.stdout));
    assert_eq!(ps, ds, "missing file: stdout\n{}", tail(&env));
    assert_eq!(
        String::from_utf8_lossy(&p.stderr),
        String::from_utf8_lossy(&d.stderr),
        "missing file: stderr"
    );
    let err = String::from_utf8_lossy(&p.stderr);
    assert!(err.contains("missing.tsv"), "client error: {err}");
    assert!(
        ps.lines().any(|l| l.split_whitespace().collect::<Vec<_>>()
            == ["|", "same", "session", "|", &ROWS.to_string(), "|"]),
        "the session did not go on:\n{ps}"
    );

    // Local infile disabled in the client: the server refuses, the session goes on.
    let refused = |port: u16| {
        let script = format!(
            "LOAD DATA LOCAL INFILE '{}' INTO TABLE t_proxy;\nSELECT 'still here';\n",
            file.display()
        );
        Env::mariadb(
            port,
            &["--local-infile=0", "--force", DB],
            script.as_bytes(),
        )
    };
    let (p, d) = (refused(env.proxy_port()), refused(env.master_port()));
    assert_eq!(p.status.code(), d.status.code());
    assert_eq!(p.stdout, d.stdout, "local infile disabled: stdout");
    assert_eq!(p.stderr, d.stderr, "local infile disabled: stderr");
    assert!(String::from_utf8_lossy(&p.stdout).contains("still here"));
    assert!(String::from_utf8_lossy(&p.stderr).contains("ERROR 4166"));

    let n = env
        .sb()
        .sql("db1", &format!("SELECT COUNT(*) FROM {DB}.t_proxy"))
        .unwrap();
    assert_eq!(n.trim(), ROWS.to_string(), "rows after the failed loads");
    eprintln!("load data: {:?}", started.elapsed());
}
