//! The classifier's cost per statement: it runs on every COM_QUERY while the split is on.
//! `cargo bench -p kohaproxy-proxy --bench classify`

use criterion::{black_box, criterion_group, criterion_main, Criterion};
use kohaproxy_proxy::route::classify::classify;

fn statements() -> Vec<(&'static str, String)> {
    let koha_join = "SELECT issues.*, items.barcode, items.itemcallnumber, biblio.title, \
        biblio.author /* circulation */ FROM issues LEFT JOIN items USING (itemnumber) \
        LEFT JOIN biblio ON biblio.biblionumber = items.biblionumber \
        WHERE issues.borrowernumber = 42 AND issues.date_due < DATE_ADD(NOW(), INTERVAL 3 DAY) \
        ORDER BY issues.date_due DESC"
        .to_string();
    let mut long = String::from("SELECT itemnumber, barcode FROM items WHERE itemnumber IN (");
    while long.len() < 4000 {
        long.push_str("123456, ");
    }
    long.push_str("0)");
    vec![
        (
            "point select",
            "SELECT c FROM sbtest1 WHERE id=4242".to_string(),
        ),
        ("koha join", koha_join),
        (
            "insert",
            "INSERT INTO action_logs (timestamp, user, module, action, object, info) \
             VALUES (NOW(), 5, 'CIRCULATION', 'ISSUE', 42, 'item 4711')"
                .to_string(),
        ),
        ("set names", "SET NAMES 'utf8mb4'".to_string()),
        (
            "hint",
            "SELECT /* kohaproxy:master */ a_session FROM sessions WHERE id = 'ab12'".to_string(),
        ),
        ("4 KiB select", long),
    ]
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("classify");
    for (name, sql) in statements() {
        group.bench_function(name, |b| b.iter(|| classify(black_box(sql.as_bytes()))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
