//! How long the statement classifier takes per statement, for the shapes the proxy sees
//! most: `cargo bench -p kohaproxy-proxy --bench classify`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use kohaproxy_proxy::route::classify::{classify, Route};

/// A DBIx::Class point read of the session row, as Koha sends it on every page.
const POINT_SELECT: &str =
    "SELECT `a_session` FROM `sessions` WHERE `id` = 'a1b2c3d4e5f60718293a4b5c6d7e8f90'";

/// A ~200-byte DBIx::Class read (the logged-in patron).
const TYPICAL_SELECT: &str = "SELECT `me`.`borrowernumber`, `me`.`cardnumber`, `me`.`surname`, `me`.`firstname`, `me`.`branchcode`, `me`.`categorycode` FROM `borrowers` `me` WHERE ( `me`.`borrowernumber` = '42' )";

/// A ~300-byte hand-written join with comments (detail page: items and their checkouts).
const JOIN_WITH_COMMENTS: &str = "/* opac-detail */ SELECT biblio.biblionumber, biblio.title, items.itemnumber, items.barcode, issues.date_due -- due date\nFROM biblio JOIN items ON items.biblionumber = biblio.biblionumber LEFT JOIN issues ON issues.itemnumber = items.itemnumber /* current checkout */ WHERE biblio.biblionumber = 17";

/// An OPAC search-history insert.
const INSERT: &str = "INSERT INTO search_history (userid, sessionid, query_desc, query_cgi, type, total, time) VALUES (42, 'a1b2c3d4e5f6', 'kw,wrdl: koha', 'idx=kw&q=koha', 'biblio', 3, NOW())";

/// The first statement of every Koha connection.
const SET_NAMES: &str = "SET NAMES 'utf8mb4'";

/// A read carrying a routing hint.
const HINTED: &str = "/* kohaproxy:replica */ SELECT me.* FROM items me WHERE me.biblionumber = 17 ORDER BY me.itemnumber";

/// A 4 KiB read: items of many biblios, by number.
fn large_select() -> String {
    let mut sql = String::from(
        "SELECT me.itemnumber, me.biblionumber, me.barcode, me.holdingbranch FROM items me WHERE me.biblionumber IN (",
    );
    let mut number = 100_000;
    while sql.len() < 4096 - 40 {
        sql.push_str(&number.to_string());
        sql.push_str(", ");
        number += 1;
    }
    sql.push_str("0) ORDER BY me.itemnumber");
    sql
}

fn bench(c: &mut Criterion) {
    let large = large_select();
    let statements: [(&str, &str, Route); 7] = [
        ("point_select", POINT_SELECT, Route::Read),
        ("typical_select_200b", TYPICAL_SELECT, Route::Read),
        ("join_with_comments_300b", JOIN_WITH_COMMENTS, Route::Read),
        ("insert", INSERT, Route::Master),
        ("set_names", SET_NAMES, Route::Master),
        ("hinted_select", HINTED, Route::Read),
        ("select_4k", &large, Route::Read),
    ];
    let mut group = c.benchmark_group("classify");
    for (name, sql, route) in statements {
        assert_eq!(classify(sql.as_bytes()).route, route, "{name}");
        group.throughput(Throughput::Bytes(sql.len() as u64));
        group.bench_function(name, |b| b.iter(|| classify(black_box(sql.as_bytes()))));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
