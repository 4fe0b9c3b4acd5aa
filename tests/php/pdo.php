<?php
// PDO (pdo_pgsql) scenarios for tests/php: one JSON line per check on stdout.
// Usage: php pdo.php passthrough|encrypted HOST PORT DBNAME USER TAG
declare(strict_types=1);

[$script, $mode, $host, $port, $db, $user, $tag] = $argv;

function out(string $name, mixed $value): void {
    echo json_encode(['check' => $name, 'value' => $value]), "\n";
}

function connect(string $host, string $port, string $db, string $user, array $options = []): PDO {
    return new PDO("pgsql:host=$host;port=$port;dbname=$db", $user, null, $options + [
        PDO::ATTR_ERRMODE => PDO::ERRMODE_EXCEPTION,
        PDO::ATTR_STRINGIFY_FETCHES => true,
    ]);
}

function failure(callable $f): ?array {
    try {
        $f();
        return null;
    } catch (PDOException $e) {
        return ['sqlstate' => $e->errorInfo[0] ?? $e->getCode(), 'message' => $e->errorInfo[2] ?? ''];
    }
}

$modes = [
    'server' => [PDO::ATTR_EMULATE_PREPARES => false],
    'emulated' => [PDO::ATTR_EMULATE_PREPARES => true],
    'unnamed' => [PDO::ATTR_EMULATE_PREPARES => false, PDO::PGSQL_ATTR_DISABLE_PREPARES => true],
];

if ($mode === 'passthrough') {
    $table = "php_$tag";
    $pdo = connect($host, $port, $db, $user);
    $pdo->exec("CREATE TABLE $table (id serial PRIMARY KEY, name text, data bytea)");
    foreach ($modes as $how => $options) {
        $c = connect($host, $port, $db, $user, $options);
        $insert = $c->prepare("INSERT INTO $table (name) VALUES (?) RETURNING id");
        $ids = [];
        for ($i = 0; $i < 50; $i++) {
            $insert->execute(["$how-$i it's \\ ✓"]);
            $ids[] = (int) $insert->fetchColumn();
        }
        $insert = null;  // PDO deallocates its named statement here (SQL DEALLOCATE)
        $select = $c->prepare("SELECT name FROM $table WHERE id = ?");
        $select->execute([$ids[7]]);
        out("$how:reused", [count(array_unique($ids)), $select->fetchColumn()]);
        $blob = $c->prepare("INSERT INTO $table (name, data) VALUES (?, ?) RETURNING id");
        $bytes = "\x00\x01\xff$how";
        $blob->bindValue(1, "blob-$how");
        $blob->bindValue(2, $bytes, PDO::PARAM_LOB);
        $blob->execute();
        $id = (int) $blob->fetchColumn();
        $read = $c->query("SELECT data FROM $table WHERE id = $id")->fetchColumn();
        out("$how:bytea", bin2hex(is_resource($read) ? stream_get_contents($read) : (string) $read));
        $c->beginTransaction();
        $c->exec("INSERT INTO $table (name) VALUES ('rolled-$how')");
        $error = failure(fn () => $c->exec("SELECT * FROM php_missing_$tag"));
        $after = failure(fn () => $c->query("SELECT 1"));
        $c->rollBack();
        $count = $c->query("SELECT count(*) FROM $table WHERE name = 'rolled-$how'")->fetchColumn();
        out("$how:transaction", [$error['sqlstate'] ?? null, $after['sqlstate'] ?? null, (int) $count]);
    }
    $pdo->exec("DROP TABLE $table");
    exit(0);
}

// encrypted: tables customers and typed of tests/encrypted/conftest.py
$business = 9100;
foreach ($modes as $how => $options) {
    $business++;
    $c = connect($host, $port, $db, $user, $options);
    $insert = $c->prepare(
        "INSERT INTO customers (business_id, name, phone, email, tax_id) VALUES (?, ?, ?, ?, ?)"
    );
    for ($i = 0; $i < 20; $i++) {
        $insert->execute([$business, "php-$how-$i", "555-$tag-$i", "P$i.$tag@Example.COM ", "TX-$tag-$i"]);
    }
    $insert = null;
    $find = $c->prepare("SELECT name, phone FROM customers WHERE business_id = ? AND email = ?");
    $find->execute([$business, "p7.$tag@example.com"]);
    out("$how:search", $find->fetchAll(PDO::FETCH_NUM));
    $find = $c->prepare("SELECT name FROM customers WHERE business_id = ? AND tax_id IN (?, ?)");
    $find->execute([$business, "TX-$tag-3", "TX-$tag-4"]);
    $names = $find->fetchAll(PDO::FETCH_COLUMN);
    sort($names);
    out("$how:in", $names);
    $typed = $c->prepare(
        "INSERT INTO typed (business_id, c_text, c_numeric, c_bool, c_date, c_bytea, c_int)"
        . " VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id"
    );
    $typed->bindValue(1, $business, PDO::PARAM_INT);
    $typed->bindValue(2, "php text $tag it's");
    $typed->bindValue(3, "-12.50");
    $typed->bindValue(4, true, PDO::PARAM_BOOL);
    $typed->bindValue(5, "2024-02-29");
    $typed->bindValue(6, "\x00\x01\xff$tag", PDO::PARAM_LOB);
    $typed->bindValue(7, 42, PDO::PARAM_INT);
    $typed->execute();
    $id = (int) $typed->fetchColumn();
    $row = $c->query("SELECT c_text, c_numeric, c_bool, c_date, c_bytea, c_int FROM typed WHERE id = $id")
        ->fetch(PDO::FETCH_NUM);
    $row[4] = bin2hex(is_resource($row[4]) ? stream_get_contents($row[4]) : (string) $row[4]);
    out("$how:typed", $row);
    out("$how:refused", failure(fn () => $c->query(
        "SELECT name FROM customers WHERE business_id = $business ORDER BY phone"
    )));
    out("$how:after", (int) $c->query("SELECT count(*) FROM customers WHERE business_id = $business")
        ->fetchColumn());
}
