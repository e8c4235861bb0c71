#!/usr/bin/perl
# Koha-shaped traffic on two DBI connections (DBD::mysql, as Koha::Database connects),
# checking after every step that the other connection already sees what was written:
# the web-session row written on one connection and read on the next request's, and a
# circulation checkout (transaction with savepoints: insert the issue, update the item)
# followed by reading the patron's checkouts elsewhere.
# usage: koha_causal.pl PORT ITERATIONS
# Dies (non-zero exit) at the first stale read, naming it.
use strict;
use warnings;
use DBI;

my ($port, $iterations) = @ARGV;
die "usage: $0 PORT ITERATIONS\n" unless $port && $iterations;

sub koha_dbh {
    my $dbh = DBI->connect("dbi:mysql:database=koha;host=127.0.0.1;port=$port",
        'koha', 'koha', { RaiseError => 1, PrintError => 0, mysql_enable_utf8 => 1 });
    $dbh->do(q{SET NAMES 'utf8mb4'});
    $dbh->do(q{SET sql_mode = 'IGNORE_SPACE,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'});
    return $dbh;
}

my $opac = koha_dbh();    # the request that logs in
my $intranet = koha_dbh(); # the next request, served by another worker

$opac->do('DROP TABLE IF EXISTS kp_sessions');
$opac->do('DROP TABLE IF EXISTS kp_issues');
$opac->do('DROP TABLE IF EXISTS kp_items');
$opac->do(q{CREATE TABLE kp_sessions (id varchar(32) NOT NULL PRIMARY KEY,
    a_session longblob NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4});
$opac->do(q{CREATE TABLE kp_items (itemnumber int NOT NULL PRIMARY KEY,
    onloan date DEFAULT NULL, issues smallint NOT NULL DEFAULT 0,
    datelastborrowed date DEFAULT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4});
$opac->do(q{CREATE TABLE kp_issues (issue_id int NOT NULL AUTO_INCREMENT PRIMARY KEY,
    borrowernumber int NOT NULL, itemnumber int NOT NULL, date_due datetime NOT NULL,
    issuedate datetime NOT NULL, KEY (borrowernumber)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4});
$opac->do('INSERT INTO kp_items (itemnumber) VALUES ' . join(',', map { "($_)" } 1 .. $iterations));

my $stale = 0;
sub expect {
    my ($what, $got, $want) = @_;
    $got = 'NULL' unless defined $got;
    die "STALE $what: got '$got', want '$want'\n" unless $got eq $want;
}

for my $i (1 .. $iterations) {
    # Login: CGI::Session writes the session row; the redirect reads it elsewhere.
    my $sid = sprintf('%032x', $i * 7919);
    my $data = "\$D = {'number' => $i,'ip' => '10.0.0.1','id' => '$sid'};;\$D";
    $opac->do('REPLACE INTO kp_sessions (id, a_session) VALUES (?, ?)', undef, $sid, $data);
    my ($seen) = $intranet->selectrow_array('SELECT a_session FROM kp_sessions WHERE id = ?', undef, $sid);
    expect("session row $i", $seen, $data);

    # Checkout: one transaction with a savepoint (DBIx::Class nests txn_do this way).
    my $borrower = 1 + $i % 5;
    $intranet->begin_work;
    $intranet->do('SAVEPOINT kp_checkout');
    $intranet->do(q{INSERT INTO kp_issues (borrowernumber, itemnumber, date_due, issuedate)
        VALUES (?, ?, NOW() + INTERVAL 14 DAY, NOW())}, undef, $borrower, $i);
    if ($i % 7 == 0) {
        # A renewal check that fails and is rolled back to the savepoint, then redone.
        $intranet->do('UPDATE kp_items SET issues = 999 WHERE itemnumber = ?', undef, $i);
        $intranet->do('ROLLBACK TO SAVEPOINT kp_checkout');
        $intranet->do(q{INSERT INTO kp_issues (borrowernumber, itemnumber, date_due, issuedate)
            VALUES (?, ?, NOW() + INTERVAL 14 DAY, NOW())}, undef, $borrower, $i);
    }
    $intranet->do(q{UPDATE kp_items SET onloan = CURDATE() + INTERVAL 14 DAY,
        issues = issues + 1, datelastborrowed = CURDATE() WHERE itemnumber = ?}, undef, $i);
    $intranet->do('RELEASE SAVEPOINT kp_checkout');
    $intranet->commit;

    # The patron's page, on the other connection: every checkout and the item's state.
    my $want = grep { 1 + $_ % 5 == $borrower } 1 .. $i;
    my ($count) = $opac->selectrow_array(
        'SELECT COUNT(*) FROM kp_issues WHERE borrowernumber = ?', undef, $borrower);
    expect("checkouts of borrower $borrower after checkout $i", $count, $want);
    my ($issues, $onloan) = $opac->selectrow_array(
        'SELECT issues, onloan IS NOT NULL FROM kp_items WHERE itemnumber = ?', undef, $i);
    expect("item $i issues", $issues, 1);
    expect("item $i on loan", $onloan, 1);
    # And on the connection that wrote it.
    my ($own) = $intranet->selectrow_array(
        'SELECT COUNT(*) FROM kp_issues WHERE itemnumber = ?', undef, $i);
    expect("own checkout $i", $own, 1);
}
print "ok $iterations iterations\n";
