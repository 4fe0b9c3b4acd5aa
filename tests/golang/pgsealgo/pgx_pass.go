package main

// Pass-through checks with pgx v4: every value printed is deterministic, so the
// test compares a run through pgseal with a run straight against Postgres.

import (
	"bytes"
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgtype"
	"github.com/jackc/pgx/v4"
	"github.com/jackc/pgx/v4/pgxpool"
)

func pgxConnect(dsn string, simple bool) *pgx.Conn {
	cfg, err := pgx.ParseConfig(dsn)
	must("parse config", err)
	cfg.PreferSimpleProtocol = simple
	ctx, cancel := timeout()
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	must("connect", err)
	return conn
}

// typeArgs is one value of every type the checks use, NULL last. Not the
// smallest int2/int8: pgx's simple-protocol sanitizer writes -32768::int2,
// which Postgres reads as -(32768::int2), out of range.
var typeArgs = []interface{}{
	int16(-32767), int32(2147483647), int64(-9223372036854775807), "12345.678900",
	true, "héllo, wörld", []byte{0, 1, 2, 254, 255},
	time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
	time.Date(2023, 12, 31, 23, 59, 58, 123456000, time.UTC),
	time.Date(2021, 6, 1, 12, 30, 0, 654321000, time.FixedZone("x", 2*3600)),
	"6f1d3b1c-2b9a-4f3e-9d7a-0a1b2c3d4e5f",
	&pgtype.JSONB{Bytes: []byte(`{"k": [1, "two", null], "ü": true}`), Status: pgtype.Present},
	[]int32{1, -2, 3}, []string{"a", "b c", "", "d\"e"}, nil,
}

const typesSelect = "SELECT $1::int2, $2::int4, $3::int8, $4::numeric, $5::bool, $6::text," +
	" $7::bytea, $8::date, $9::timestamp, $10::timestamptz, $11::uuid, $12::jsonb," +
	" $13::int4[], $14::text[], $15::text"

type typeRow struct {
	i2    int16
	i4    int32
	i8    int64
	num   pgtype.Numeric
	b     bool
	text  string
	bytes []byte
	date  time.Time
	ts    time.Time
	tstz  time.Time
	uuid  pgtype.UUID
	jsonb map[string]interface{}
	ints  []int32
	texts []string
	null  *string
}

func (t *typeRow) targets() []interface{} {
	return []interface{}{&t.i2, &t.i4, &t.i8, &t.num, &t.b, &t.text, &t.bytes, &t.date,
		&t.ts, &t.tstz, &t.uuid, &t.jsonb, &t.ints, &t.texts, &t.null}
}

// show renders a row the same way whatever format it travelled in.
func (t *typeRow) show() map[string]interface{} {
	num, _ := t.num.EncodeText(nil, nil)
	uuid, _ := t.uuid.EncodeText(nil, nil)
	return map[string]interface{}{
		"int2": t.i2, "int4": t.i4, "int8": fmt.Sprint(t.i8), "numeric": string(num),
		"bool": t.b, "text": t.text, "bytea": fmt.Sprintf("%x", t.bytes),
		"date": t.date.Format("2006-01-02"), "timestamp": t.ts.Format(time.RFC3339Nano),
		"timestamptz": t.tstz.UTC().Format(time.RFC3339Nano), "uuid": string(uuid),
		"jsonb": t.jsonb, "int4[]": t.ints, "text[]": t.texts, "null": t.null == nil,
	}
}

func pgxTypes(r *reporter, conn *pgx.Conn, prefix string) {
	ctx, cancel := timeout()
	defer cancel()
	var row typeRow
	err := conn.QueryRow(ctx, typesSelect, typeArgs...).Scan(row.targets()...)
	r.result(prefix+"select", row.show(), err)

	_, err = conn.Exec(ctx, "DROP TABLE IF EXISTS go_types")
	must("drop", err)
	_, err = conn.Exec(ctx, "CREATE TABLE go_types (id int, i2 int2, i4 int4, i8 int8,"+
		" num numeric, b bool, t text, by bytea, d date, ts timestamp, tstz timestamptz,"+
		" u uuid, j jsonb, ia int4[], ta text[], n text)")
	must("create", err)
	insert := "INSERT INTO go_types VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11," +
		" $12, $13, $14, $15, $16)"
	for id := 1; id <= 3; id++ { // the 2nd and 3rd reuse pgx's cached statement
		_, err = conn.Exec(ctx, insert, append([]interface{}{id}, typeArgs...)...)
		r.result(fmt.Sprintf("%sinsert-%d", prefix, id), "ok", err)
	}
	rows, err := conn.Query(ctx, "SELECT i2, i4, i8, num, b, t, by, d, ts, tstz, u, j, ia,"+
		" ta, n FROM go_types WHERE id >= $1 ORDER BY id", 2)
	must("query", err)
	var shown []interface{}
	for rows.Next() {
		var t typeRow
		must("scan", rows.Scan(t.targets()...))
		shown = append(shown, t.show())
	}
	r.result(prefix+"table", shown, rows.Err())
	_, err = conn.Exec(ctx, "DROP TABLE go_types")
	must("drop", err)
}

func pgxStatementCache(r *reporter, conn *pgx.Conn) {
	ctx, cancel := timeout()
	defer cancel()
	total := int64(0)
	for i := int64(0); i < 200; i++ {
		var got int64
		must("cached query", conn.QueryRow(ctx, "SELECT $1::int8 * 2", i).Scan(&got))
		total += got
	}
	r.value("statement-cache-sum", total)
}

// batchResults reads one result per queued statement, then closes the batch.
func batchResults(r *reporter, br pgx.BatchResults, check string, n int) {
	for i := 0; i < n; i++ {
		tag, err := br.Exec()
		if err != nil {
			r.err(fmt.Sprintf("%s-%d", check, i), err)
		} else {
			r.value(fmt.Sprintf("%s-%d", check, i), tag.String())
		}
	}
	r.result(check+"-close", "ok", br.Close())
}

func pgxBatch(r *reporter, conn *pgx.Conn, prefix string) {
	ctx, cancel := timeout()
	defer cancel()
	_, err := conn.Exec(ctx, "DROP TABLE IF EXISTS go_batch; CREATE TABLE go_batch (id int, v text)")
	must("create batch table", err)

	b := &pgx.Batch{}
	for i := 0; i < 50; i++ {
		b.Queue("INSERT INTO go_batch VALUES ($1, $2)", i, fmt.Sprintf("v%d", i))
	}
	b.Queue("SELECT count(*) FROM go_batch")
	b.Queue("UPDATE go_batch SET v = $1 WHERE id < $2", "upd", 10)
	batchResults(r, conn.SendBatch(ctx, b), prefix+"batch-ok", 52)

	// An error at execution in the middle: Postgres skips to the Sync and rolls
	// back the implicit transaction, the inserts before it included.
	b = &pgx.Batch{}
	b.Queue("INSERT INTO go_batch VALUES ($1, $2)", 100, "before")
	b.Queue("SELECT 1 / $1::int", 0)
	b.Queue("INSERT INTO go_batch VALUES ($1, $2)", 101, "after")
	b.Queue("SELECT count(*) FROM go_batch")
	batchResults(r, conn.SendBatch(ctx, b), prefix+"batch-error", 4)

	var count int64
	var updated int64
	err = conn.QueryRow(ctx, "SELECT count(*), count(*) FILTER (WHERE v = 'upd') FROM go_batch").
		Scan(&count, &updated)
	r.result(prefix+"batch-rows", []int64{count, updated}, err)

	// A batch whose text does not parse fails before anything runs.
	b = &pgx.Batch{}
	b.Queue("INSERT INTO go_batch VALUES ($1, $2)", 200, "x")
	b.Queue("SELEC broken")
	batchResults(r, conn.SendBatch(ctx, b), prefix+"batch-syntax", 2)
	err = conn.QueryRow(ctx, "SELECT count(*) FROM go_batch").Scan(&count)
	r.result(prefix+"batch-rows-after-syntax", count, err)
}

func pgxCopy(r *reporter, conn *pgx.Conn) {
	ctx, cancel := timeout()
	defer cancel()
	_, err := conn.Exec(ctx, "DROP TABLE IF EXISTS go_copy;"+
		" CREATE TABLE go_copy (id int, name text, data bytea, at timestamptz, n numeric, tags text[])")
	must("create copy table", err)
	var src [][]interface{}
	for i := 0; i < 2000; i++ {
		var name interface{} = fmt.Sprintf("name\t%d\n\\", i)
		if i%7 == 0 {
			name = nil
		}
		src = append(src, []interface{}{i, name, []byte{byte(i), byte(i >> 8)},
			time.Date(2020, 1, 1, 0, 0, i, 0, time.UTC), float64(i) + 0.25, // pgx 4.15 sends "0.25" short
			[]string{"t", fmt.Sprint(i)}})
	}
	copied, err := conn.CopyFrom(ctx, pgx.Identifier{"go_copy"},
		[]string{"id", "name", "data", "at", "n", "tags"}, pgx.CopyFromRows(src))
	r.result("copy-from-rows", copied, err)

	var sum int64
	var nulls int64
	err = conn.QueryRow(ctx, "SELECT sum(id), count(*) FILTER (WHERE name IS NULL) FROM go_copy").
		Scan(&sum, &nulls)
	r.result("copy-from-check", []int64{sum, nulls}, err)

	var out bytes.Buffer
	tag, err := conn.PgConn().CopyTo(ctx, &out,
		"COPY (SELECT * FROM go_copy WHERE id < 3 ORDER BY id) TO STDOUT")
	if err != nil {
		r.err("copy-to", err)
	} else {
		r.value("copy-to", map[string]interface{}{"tag": tag.String(), "text": out.String()})
	}
	out.Reset()
	tag, err = conn.PgConn().CopyTo(ctx, &out, "COPY go_copy TO STDOUT (FORMAT binary)")
	if err != nil {
		r.err("copy-to-binary", err)
	} else {
		r.value("copy-to-binary", map[string]interface{}{"tag": tag.String(), "bytes": out.Len()})
	}
	// COPY FROM STDIN in text through pgconn, with an error row: 22P02, the connection lives.
	_, err = conn.PgConn().CopyFrom(ctx, strings.NewReader("9000\tok\n9001\tok\nbad\tx\n"),
		"COPY go_copy (id, name) FROM STDIN")
	r.result("copy-from-bad-row", "ok", err)
	err = conn.QueryRow(ctx, "SELECT count(*) FROM go_copy").Scan(&sum)
	r.result("copy-after-bad-row", sum, err)
}

// waitGone reports whether no backend runs a query containing mark after a few seconds.
func waitGone(ctx context.Context, watcher *pgx.Conn, mark string) bool {
	for i := 0; i < 100; i++ {
		var n int64
		err := watcher.QueryRow(ctx, "SELECT count(*) FROM pg_stat_activity WHERE state = 'active'"+
			" AND query LIKE '%' || $1 || '%' AND pid <> pg_backend_pid()", mark).Scan(&n)
		must("pg_stat_activity", err)
		if n == 0 {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return false
}

func pgxCancel(r *reporter, dsn string) {
	bg, cancel := timeout()
	defer cancel()
	watcher := pgxConnect(dsn, false)
	defer watcher.Close(bg)

	// A context timeout: pgx gives up on the connection and sends a CancelRequest.
	conn := pgxConnect(dsn, false)
	short, stop := context.WithTimeout(bg, 300*time.Millisecond)
	started := time.Now()
	_, err := conn.Exec(short, "SELECT pg_sleep(30) -- go-ctx-timeout")
	stop()
	r.err("timeout-error", err)
	r.value("timeout-fast", time.Since(started) < 10*time.Second)
	r.value("timeout-conn-closed", conn.IsClosed())
	r.value("timeout-backend-cancelled", waitGone(bg, watcher, "go-ctx-"+"timeout"))

	// An explicit CancelRequest while a query runs: 57014 and the connection lives on.
	conn = pgxConnect(dsn, false)
	defer conn.Close(bg)
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(bg, "SELECT pg_sleep(30) -- go-explicit-cancel")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond)
	must("cancel request", conn.PgConn().CancelRequest(bg))
	select {
	case err = <-done:
		r.err("cancel-error", err)
	case <-time.After(20 * time.Second):
		r.value("cancel-error", "not cancelled")
	}
	var one int
	r.result("cancel-then-query", one, conn.QueryRow(bg, "SELECT 1").Scan(&one))
	r.value("cancel-then-value", one)

	// A pool: the timed-out connection is dropped, the next query gets a good one.
	pool, err := pgxpool.Connect(bg, dsn+poolSuffix(dsn, 2))
	must("pool", err)
	defer pool.Close()
	short, stop = context.WithTimeout(bg, 300*time.Millisecond)
	_, err = pool.Exec(short, "SELECT pg_sleep(30) -- go-pool-timeout")
	stop()
	r.err("pool-timeout-error", err)
	r.value("pool-timeout-backend-cancelled", waitGone(bg, watcher, "go-pool-"+"timeout"))
	for i := 0; i < 4; i++ {
		err = pool.QueryRow(bg, "SELECT $1::int + 1", i).Scan(&one)
		r.result(fmt.Sprintf("pool-after-timeout-%d", i), one, err)
	}
}

func poolSuffix(dsn string, conns int) string {
	sep := "?"
	if strings.Contains(dsn, "?") {
		sep = "&"
	}
	return fmt.Sprintf("%spool_max_conns=%d", sep, conns)
}

func pgxTransactions(r *reporter, conn *pgx.Conn) {
	ctx, cancel := timeout()
	defer cancel()
	_, err := conn.Exec(ctx, "DROP TABLE IF EXISTS go_tx; CREATE TABLE go_tx (id int)")
	must("create tx table", err)
	tx, err := conn.Begin(ctx)
	must("begin", err)
	_, err = tx.Exec(ctx, "INSERT INTO go_tx VALUES ($1)", 1)
	must("insert 1", err)
	sp, err := tx.Begin(ctx) // a savepoint
	must("savepoint", err)
	_, err = sp.Exec(ctx, "INSERT INTO go_tx VALUES ($1)", 2)
	must("insert 2", err)
	_, err = sp.Exec(ctx, "SELECT 1 / $1::int", 0)
	r.err("tx-error-in-savepoint", err)
	_, err = tx.Exec(ctx, "INSERT INTO go_tx VALUES ($1)", 99)
	r.err("tx-aborted-until-rollback", err)
	r.result("tx-rollback-savepoint", "ok", sp.Rollback(ctx))
	_, err = tx.Exec(ctx, "INSERT INTO go_tx VALUES ($1)", 3)
	r.result("tx-after-savepoint", "ok", err)
	r.result("tx-commit", "ok", tx.Commit(ctx))

	tx, err = conn.Begin(ctx)
	must("begin 2", err)
	_, err = tx.Exec(ctx, "INSERT INTO go_tx VALUES ($1)", 4)
	must("insert 4", err)
	r.result("tx-rollback", "ok", tx.Rollback(ctx))

	err = conn.BeginFunc(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "INSERT INTO go_tx VALUES ($1)", 5)
		return err
	})
	r.result("tx-begin-func", "ok", err)
	var ids []int32
	err = conn.QueryRow(ctx, "SELECT array_agg(id ORDER BY id) FROM go_tx").Scan(&ids)
	r.result("tx-ids", ids, err)
	r.value("tx-status-idle", string(conn.PgConn().TxStatus()))
}

func pgxNotify(r *reporter, dsn string) {
	ctx, cancel := timeout()
	defer cancel()
	listener := pgxConnect(dsn, false)
	defer listener.Close(ctx)
	sender := pgxConnect(dsn, false)
	defer sender.Close(ctx)
	var senderPID uint32
	must("backend pid", sender.QueryRow(ctx, "SELECT pg_backend_pid()").Scan(&senderPID))
	_, err := listener.Exec(ctx, "LISTEN go_chan")
	must("listen", err)
	_, err = sender.Exec(ctx, "SELECT pg_notify($1, $2)", "go_chan", "payload-1")
	must("pg_notify", err)
	_, err = sender.Exec(ctx, "NOTIFY go_chan, 'payload-2'")
	must("notify", err)
	var got []string
	for i := 0; i < 2; i++ {
		wait, stop := context.WithTimeout(ctx, 10*time.Second)
		n, err := listener.WaitForNotification(wait)
		stop()
		if err != nil {
			r.err(fmt.Sprintf("notification-%d", i), err)
			return
		}
		got = append(got, n.Channel+":"+n.Payload)
		r.value(fmt.Sprintf("notification-%d-from-sender", i), n.PID == senderPID)
	}
	// pgseal hands out a BackendKeyData of its own, so only a direct connection
	// reports the backend's pid there.
	r.value("backend-key-pid-is-backend-pid", sender.PgConn().PID() == senderPID)
	r.value("notifications", got)
	// A notification sent while the listener runs a query arrives with its result.
	_, err = sender.Exec(ctx, "NOTIFY go_chan, 'payload-3'")
	must("notify 3", err)
	time.Sleep(200 * time.Millisecond)
	_, err = listener.Exec(ctx, "SELECT 1")
	must("select", err)
	wait, stop := context.WithTimeout(ctx, 10*time.Second)
	defer stop()
	n, err := listener.WaitForNotification(wait)
	if err != nil {
		r.err("notification-buffered", err)
	} else {
		r.value("notification-buffered", n.Payload)
	}
}

func pgxPool(r *reporter, dsn string) {
	ctx, cancel := timeout()
	defer cancel()
	pool, err := pgxpool.Connect(ctx, dsn+poolSuffix(dsn, 4))
	must("pool", err)
	defer pool.Close()
	_, err = pool.Exec(ctx, "DROP TABLE IF EXISTS go_pool; CREATE TABLE go_pool (g int, i int)")
	must("create pool table", err)
	var wg sync.WaitGroup
	sums := make([]int64, 8)
	errs := make([]string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 100; i++ {
				var v int64
				if err := pool.QueryRow(ctx, "SELECT $1::int8 * $2::int8", g, i).Scan(&v); err != nil {
					errs[g] = err.Error()
					return
				}
				sums[g] += v
				if i%10 == 0 {
					err := pool.BeginFunc(ctx, func(tx pgx.Tx) error {
						_, err := tx.Exec(ctx, "INSERT INTO go_pool VALUES ($1, $2)", g, i)
						return err
					})
					if err != nil {
						errs[g] = err.Error()
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	sort.Strings(errs)
	r.value("pool-errors", strings.Join(errs, ""))
	r.value("pool-sums", sums)
	var rows int64
	err = pool.QueryRow(ctx, "SELECT count(*) FROM go_pool").Scan(&rows)
	r.result("pool-rows", rows, err)
	r.value("pool-max-conns", pool.Stat().MaxConns())
}

func pgxPassthrough(r *reporter, dsn string, _ []string) {
	ctx, cancel := timeout()
	defer cancel()
	conn := pgxConnect(dsn, false)
	defer conn.Close(ctx)
	pgxTypes(r, conn, "extended-")
	pgxStatementCache(r, conn)
	pgxBatch(r, conn, "extended-")
	pgxCopy(r, conn)
	pgxTransactions(r, conn)

	simple := pgxConnect(dsn, true)
	defer simple.Close(ctx)
	pgxTypes(r, simple, "simple-")
	pgxBatch(r, simple, "simple-")

	pgxNotify(r, dsn)
	pgxPool(r, dsn)
	pgxCancel(r, dsn)
}
