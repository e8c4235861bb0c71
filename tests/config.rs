//! A wrong configuration is refused before anything starts, naming the file, the key and
//! what is wrong; `check-config` does the same without starting.

use std::process::Command;

fn kohaproxy(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kohaproxy"))
        .args(args)
        .output()
        .expect("run kohaproxy")
}

const VALID: &str = r#"
[proxy]
listen = "127.0.0.1:0"
[[users]]
name = "koha"
password_hash = "*F819E4CC1C4EF29A32AA248C45161E1B8817023D"
[monitor]
user = "kohaproxy_monitor"
password = "monitor"
[[servers]]
name = "db1"
address = "127.0.0.1:3306"
"#;

#[test]
fn check_config_accepts_a_valid_file_and_names_the_key_of_a_wrong_one() {
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, VALID).unwrap();
    let out = kohaproxy(&["check-config", good.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let cases = [
        (VALID.replace("127.0.0.1:3306", "db2"), "servers[0].address"),
        (VALID.replace("listen", "listn"), "listn"),
        (
            VALID.replace("*F819E4CC1C4EF29A32AA248C45161E1B8817023D", "*XYZ"),
            "users[0].password_hash",
        ),
        (
            VALID.replace("[monitor]\n", "[monitor]\ninterval_ms = 0\n"),
            "monitor.interval_ms",
        ),
        (
            format!("{VALID}\n[[servers]]\nname = \"db1\"\naddress = \"127.0.0.1:3307\"\n"),
            "servers[1].name",
        ),
        (VALID.replace("[[servers]]", "[[servers"), "line"),
    ];
    for (i, (text, key)) in cases.iter().enumerate() {
        let bad = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&bad, text).unwrap();
        for args in [
            vec!["check-config", bad.to_str().unwrap()],
            vec!["run", "--config", bad.to_str().unwrap()],
        ] {
            let out = kohaproxy(&args);
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} accepted a bad file {i}");
            assert!(
                err.contains(bad.to_str().unwrap()),
                "case {i}: no file name in {err}"
            );
            assert!(err.contains(key), "case {i}: {key} not named in {err}");
        }
    }
    let missing = kohaproxy(&["check-config", "/nonexistent/kohaproxy.toml"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/nonexistent/kohaproxy.toml"));
}
