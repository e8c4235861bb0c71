#!/usr/bin/perl
# One Koha-shaped DBI connection (DBD::mysql, no auto-reconnect, as Koha::Database
# connects) checking out items for SECONDS while the test kills the master. Each checkout
# is a transaction (begin_work, INSERT the issue, UPDATE the item, commit). A failed
# checkout is rolled back and retried with the next id, on the same $dbh: the connection
# must survive the failover. At the end, one line per acknowledged checkout id ("acked N"),
# then "errors N", "connection_id_changes N" and the session's sql_mode and character set
# (which must still be Koha's).
# usage: koha_failover.pl PORT SECONDS
use strict;
use warnings;
use DBI;
use Time::HiRes qw(time sleep);

my ($port, $seconds) = @ARGV;
die "usage: $0 PORT SECONDS\n" unless $port && $seconds;

my $dbh = DBI->connect("dbi:mysql:database=koha;host=127.0.0.1;port=$port",
    'koha', 'koha', { RaiseError => 1, PrintError => 0, mysql_enable_utf8 => 1,
        mysql_auto_reconnect => 0 });
$dbh->do(q{SET NAMES 'utf8mb4'});
$dbh->do(q{SET sql_mode = 'IGNORE_SPACE,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION'});
$dbh->do('CREATE TABLE IF NOT EXISTS kp_fo_issues (id INT PRIMARY KEY, itemnumber INT NOT NULL, issuedate DATETIME NOT NULL)');
$dbh->do('CREATE TABLE IF NOT EXISTS kp_fo_items (itemnumber INT PRIMARY KEY, onloan DATE NULL)');
$dbh->do('INSERT IGNORE INTO kp_fo_items (itemnumber) VALUES (1), (2), (3), (4), (5)');

my $thread = $dbh->{mysql_thread_id};
my ($id, $errors, $changes) = (0, 0, 0);
my @acked;
my $end = time + $seconds;
while (time < $end) {
    $id++;
    my $item = 1 + $id % 5;
    my $ok = eval {
        $dbh->begin_work;
        $dbh->do('INSERT INTO kp_fo_issues (id, itemnumber, issuedate) VALUES (?, ?, NOW())',
            undef, $id, $item);
        $dbh->do('UPDATE kp_fo_items SET onloan = CURDATE() WHERE itemnumber = ?', undef, $item);
        $dbh->commit;
        1;
    };
    if ($ok) {
        push @acked, $id;
    } else {
        $errors++;
        print STDERR "checkout $id: $@";
        eval { $dbh->rollback };
        $dbh->{AutoCommit} = 1 unless $dbh->{AutoCommit};
        sleep 0.05;
    }
    if ($dbh->{mysql_thread_id} != $thread) {
        $changes++;
        $thread = $dbh->{mysql_thread_id};
    }
    sleep 0.01;
}
print "acked $_\n" for @acked;
print "errors $errors\n";
print "connection_id_changes $changes\n";
my ($mode, $charset) = $dbh->selectrow_array(
    'SELECT @@sql_mode, @@character_set_client /* kohaproxy:master */');
print "sql_mode $mode\n";
print "charset $charset\n";
