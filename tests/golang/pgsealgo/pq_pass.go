package main

// Pass-through checks with lib/pq through database/sql (text format, unnamed
// statements unless prepared), deterministic like the pgx ones.

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/lib/pq"
)

func pqOpen(dsn string) *sql.DB {
	db, err := sql.Open("postgres", dsn)
	must("open", err)
	ctx, cancel := timeout()
	defer cancel()
	must("ping", db.PingContext(ctx))
	return db
}

func pqTypes(r *reporter, db *sql.DB) {
	ctx, cancel := timeout()
	defer cancel()
	var (
		i2, i4, i8    int64
		num, text     string
		b             bool
		by            []byte
		d, ts, tstz   time.Time
		uuid, jsonb   string
		ints          []int64
		texts         []string
		null, present sql.NullString
	)
	err := db.QueryRowContext(ctx, "SELECT $1::int2, $2::int4, $3::int8, $4::numeric, $5::bool,"+
		" $6::text, $7::bytea, $8::date, $9::timestamp, $10::timestamptz, $11::uuid,"+
		" $12::jsonb, $13::int8[], $14::text[], $15::text, $16::text",
		-32768, 2147483647, int64(-9223372036854775808), "12345.678900", true, "héllo, wörld",
		[]byte{0, 1, 2, 254, 255}, "2024-02-29", "2023-12-31 23:59:58.123456",
		"2021-06-01 12:30:00.654321+02", "6f1d3b1c-2b9a-4f3e-9d7a-0a1b2c3d4e5f",
		`{"k": [1, "two", null], "ü": true}`, pq.Array([]int64{1, -2, 3}),
		pq.Array([]string{"a", "b c", "", "d\"e", "NULL"}), nil, "x",
	).Scan(&i2, &i4, &i8, &num, &b, &text, &by, &d, &ts, &tstz, &uuid, &jsonb,
		pq.Array(&ints), pq.Array(&texts), &null, &present)
	r.result("types", map[string]interface{}{
		"int2": i2, "int4": i4, "int8": fmt.Sprint(i8), "numeric": num, "bool": b,
		"text": text, "bytea": fmt.Sprintf("%x", by), "date": d.Format("2006-01-02"),
		"timestamp": ts.Format(time.RFC3339Nano), "timestamptz": tstz.UTC().Format(time.RFC3339Nano),
		"uuid": uuid, "jsonb": jsonb, "int8[]": ints, "text[]": texts,
		"null": !null.Valid, "present": present.String,
	}, err)
}

func pqPrepared(r *reporter, db *sql.DB) {
	ctx, cancel := timeout()
	defer cancel()
	_, err := db.ExecContext(ctx, "DROP TABLE IF EXISTS go_pq; CREATE TABLE go_pq (id int, name text, tags text[])")
	must("create go_pq", err)
	stmt, err := db.PrepareContext(ctx, "INSERT INTO go_pq VALUES ($1, $2, $3)")
	must("prepare", err)
	for i := 0; i < 100; i++ {
		_, err = stmt.ExecContext(ctx, i, fmt.Sprintf("n%d", i), pq.Array([]string{"t", fmt.Sprint(i % 3)}))
		if err != nil {
			r.err("prepared-insert", err)
			return
		}
	}
	must("close stmt", stmt.Close())
	// Unnamed statements: Exec and Query with parameters.
	res, err := db.ExecContext(ctx, "UPDATE go_pq SET name = $1 WHERE id < $2", "upd", 10)
	if err == nil {
		n, _ := res.RowsAffected()
		r.value("exec-updated", n)
	} else {
		r.err("exec-updated", err)
	}
	rows, err := db.QueryContext(ctx, "SELECT id, name FROM go_pq WHERE id = ANY($1) ORDER BY id",
		pq.Array([]int64{3, 50, 99, 1000}))
	must("query any", err)
	var got []string
	for rows.Next() {
		var id int
		var name string
		must("scan", rows.Scan(&id, &name))
		got = append(got, fmt.Sprintf("%d:%s", id, name))
	}
	r.result("query-any", got, rows.Err())
	var count int
	err = db.QueryRowContext(ctx, "SELECT count(*) FROM go_pq WHERE $1 = ANY(tags)", "2").Scan(&count)
	r.result("query-array-column", count, err)
	_, err = db.ExecContext(ctx, "INSERT INTO go_pq VALUES ($1, $2)", "not a number", "x")
	r.err("bad-parameter", err)
	err = db.QueryRowContext(ctx, "SELECT count(*) FROM go_pq").Scan(&count)
	r.result("after-bad-parameter", count, err)
}

func pqTransactions(r *reporter, db *sql.DB) {
	ctx, cancel := timeout()
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	must("begin", err)
	_, err = tx.ExecContext(ctx, "INSERT INTO go_pq VALUES ($1, $2)", 500, "tx")
	must("tx insert", err)
	_, err = tx.ExecContext(ctx, "SAVEPOINT s1")
	must("savepoint", err)
	_, err = tx.ExecContext(ctx, "INSERT INTO go_pq VALUES ($1, $2)", "bad", "tx")
	r.err("tx-error", err)
	_, err = tx.ExecContext(ctx, "ROLLBACK TO SAVEPOINT s1")
	r.result("tx-rollback-to-savepoint", "ok", err)
	_, err = tx.ExecContext(ctx, "INSERT INTO go_pq VALUES ($1, $2)", 501, "tx")
	r.result("tx-after-savepoint", "ok", err)
	r.result("tx-commit", "ok", tx.Commit())

	tx, err = db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelSerializable})
	must("begin 2", err)
	_, err = tx.ExecContext(ctx, "INSERT INTO go_pq VALUES ($1, $2)", 502, "rolled back")
	must("tx insert 2", err)
	r.result("tx-rollback", "ok", tx.Rollback())
	var ids []int64
	err = db.QueryRowContext(ctx, "SELECT array_agg(id ORDER BY id) FROM go_pq WHERE id >= 500").
		Scan(pq.Array(&ids))
	r.result("tx-ids", ids, err)
}

func pqCopy(r *reporter, db *sql.DB) {
	ctx, cancel := timeout()
	defer cancel()
	tx, err := db.BeginTx(ctx, nil)
	must("begin copy", err)
	stmt, err := tx.PrepareContext(ctx, pq.CopyIn("go_pq", "id", "name", "tags"))
	must("copy in", err)
	for i := 1000; i < 1500; i++ {
		var name interface{} = fmt.Sprintf("c\t%d\\", i)
		if i%5 == 0 {
			name = nil
		}
		_, err = stmt.ExecContext(ctx, i, name, pq.Array([]string{"copy"}))
		must("copy row", err)
	}
	_, err = stmt.ExecContext(ctx)
	r.result("copy-in-flush", "ok", err)
	must("close copy", stmt.Close())
	r.result("copy-in-commit", "ok", tx.Commit())
	var n, nulls int
	var sample string
	err = db.QueryRowContext(ctx, "SELECT count(*), count(*) FILTER (WHERE name IS NULL),"+
		" max(name) FILTER (WHERE id = 1001) FROM go_pq WHERE 'copy' = ANY(tags)").Scan(&n, &nulls, &sample)
	r.result("copy-in-rows", []interface{}{n, nulls, sample}, err)
}

func pqCancel(r *reporter, db *sql.DB) {
	bg, cancel := timeout()
	defer cancel()
	db.SetMaxOpenConns(1) // the query after the cancel runs on the same connection
	short, stop := context.WithTimeout(bg, 300*time.Millisecond)
	started := time.Now()
	_, err := db.ExecContext(short, "SELECT pg_sleep(30) -- go-pq-cancel")
	stop()
	r.err("cancel-error", err)
	r.value("cancel-fast", time.Since(started) < 10*time.Second)
	var one int
	err = db.QueryRowContext(bg, "SELECT 1").Scan(&one)
	r.result("cancel-then-query", one, err)
	var active int
	err = db.QueryRowContext(bg, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"+
		" AND query LIKE '%go-pq-' || 'cancel%'").Scan(&active)
	r.result("cancel-backend-still-sleeping", active, err)
}

func pqPassthrough(r *reporter, dsn string, _ []string) {
	db := pqOpen(dsn)
	defer db.Close()
	pqTypes(r, db)
	pqPrepared(r, db)
	pqTransactions(r, db)
	pqCopy(r, db)
	pqCancel(r, db)
}
