//! TLS toward clients: with `proxy.tls_cert`/`tls_key` set, clients that ask for TLS get it
//! (the certificate verifies), Koha's DBD::mysql `mysql_ssl=1` works, and plain clients
//! still connect.

mod common;

use std::path::Path;
use std::process::Command;

use common::{ok, Env};

/// A self-signed certificate for 127.0.0.1 in `dir`: (cert, key).
fn make_cert(dir: &Path) -> (String, String) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let out = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .args([
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("run openssl");
    ok(out, "openssl req");
    (
        cert.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

#[test]
fn clients_asking_for_tls_get_it_and_plain_clients_still_work() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = make_cert(certs.path());
    let env = Env::start_with(0, |toml| {
        *toml = toml.replace(
            "[proxy]\n",
            &format!("[proxy]\ntls_cert = \"{cert}\"\ntls_key = \"{key}\"\n"),
        );
    });
    let port = env.proxy_port();

    // The mariadb CLI verifying the proxy's certificate.
    let ca = format!("--ssl-ca={cert}");
    let tls = ok(
        Env::mariadb(
            port,
            &[
                "--ssl",
                &ca,
                "--ssl-verify-server-cert",
                "koha",
                "-e",
                "status",
            ],
            b"",
        ),
        "mariadb --ssl",
    );
    let tls = String::from_utf8_lossy(&tls);
    assert!(tls.contains("Cipher in use is"), "no TLS in: {tls}");

    // Results through TLS are the same as in plain text.
    let sql = "SELECT REPEAT('kohaproxy', 100000) AS r, 1.5 AS d, NULL AS n";
    let via_tls = ok(
        Env::mariadb(port, &["--ssl", &ca, "-e", sql], b""),
        "tls query",
    );
    let plain = ok(
        Env::mariadb(port, &["--skip-ssl", "-e", sql], b""),
        "plain query",
    );
    assert!(via_tls == plain, "TLS and plain results differ");
    let status = ok(
        Env::mariadb(port, &["--skip-ssl", "-e", "status"], b""),
        "plain status",
    );
    assert!(String::from_utf8_lossy(&status).contains("SSL:\t\t\tNot in use"));

    // Koha's way: DBD::mysql with mysql_ssl=1 and the CA file. Debian's DBD::mysql (built
    // on libmariadb) refuses mysql_ssl=1 alone ("Enforcing SSL encryption is not
    // supported", whatever the server), so mysql_ssl_optional=1 is added; that TLS is
    // really used is shown by verification: the right CA connects, a wrong one is refused.
    let other = tempfile::tempdir().unwrap();
    let (wrong_ca, _) = make_cert(other.path());
    let perl = |ca: &str| {
        let script = format!(
            r#"use strict; use DBI;
my $dbh = DBI->connect("dbi:mysql:database=koha;host=127.0.0.1;port={port};mysql_ssl=1;mysql_ssl_optional=1;mysql_ssl_ca_file={ca};mysql_ssl_verify_server_cert=1",
  "koha", "koha", {{ RaiseError => 1, PrintError => 0, mysql_enable_utf8 => 1 }});
$dbh->do("SET NAMES 'utf8mb4'");
my ($v) = $dbh->selectrow_array("SELECT CONCAT('ok ', 40 + 2)");
print "$v\n";"#
        );
        Command::new("perl").arg("-e").arg(script).output().unwrap()
    };
    let out = ok(perl(&cert), "perl DBI over TLS");
    assert_eq!(String::from_utf8_lossy(&out), "ok 42\n");
    let refused = perl(&wrong_ca);
    assert!(
        !refused.status.success(),
        "a wrong CA was accepted: no TLS?"
    );
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("TLS/SSL error"), "{err}");
}

#[test]
fn tls_settings_that_cannot_work_are_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("k.toml");
    let write = |extra: &str| {
        std::fs::write(
            &config,
            format!(
                "[proxy]\nlisten = \"127.0.0.1:0\"\n{extra}\n[[users]]\nname = \"koha\"\npassword = \"koha\"\n\
                 [monitor]\nuser = \"m\"\n[[servers]]\nname = \"db1\"\naddress = \"127.0.0.1:1\"\n"
            ),
        )
        .unwrap();
    };
    let run = || {
        Command::new(env!("CARGO_BIN_EXE_kohaproxy"))
            .args(["check-config"])
            .arg(&config)
            .output()
            .unwrap()
    };
    write("tls_cert = \"/nonexistent/cert.pem\"\ntls_key = \"/nonexistent/key.pem\"");
    let out = run();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("proxy.tls_cert"));
    write("tls_cert = \"/etc/hostname\"");
    let out = run();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("proxy.tls_key"));
}
