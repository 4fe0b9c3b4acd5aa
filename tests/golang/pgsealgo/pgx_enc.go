package main

// Checks with pgx v4 through an encrypting pgseal (the tables of
// tests/encrypted/conftest.py). The test reads the raw columns afterwards.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgconn"
	"github.com/jackc/pgtype"
	"github.com/jackc/pgx/v4"
	"github.com/jackc/pgx/v4/pgxpool"
)

const typedColumns = "c_text, c_varchar, c_int, c_bigint, c_smallint, c_numeric, c_bool," +
	" c_date, c_ts, c_tstz, c_uuid, c_jsonb, c_bytea, c_armored"

const typedInsert = "INSERT INTO typed (business_id, " + typedColumns + ") VALUES ($1, $2, $3," +
	" $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id"

const typedSelect = "SELECT " + typedColumns + " FROM typed WHERE business_id = $1 AND id = $2"

// typedValues is one row for the typed table; every text carries prefix.
func typedValues(prefix string) []interface{} {
	return []interface{}{
		prefix + "-text ü", prefix + "-vc", int32(-2147483648), int64(9223372036854775807),
		int16(-32768), numeric("12345.678900"), true, time.Date(2024, 2, 29, 0, 0, 0, 0, time.UTC),
		time.Date(2023, 12, 31, 23, 59, 58, 123456000, time.UTC),
		time.Date(2021, 6, 1, 12, 30, 0, 654321000, time.FixedZone("x", 2*3600)),
		uuid("6f1d3b1c-2b9a-4f3e-9d7a-0a1b2c3d4e5f"),
		&pgtype.JSONB{Bytes: []byte(`{"secret": "` + prefix + `-json", "n": [1, 2]}`), Status: pgtype.Present},
		[]byte(prefix + "-bytes\x00\xff"), prefix + "-armour",
	}
}

// numeric and uuid are binary-encoded by pgx everywhere (the numeric as four
// base-10000 digits, the last one zero). A Go string would go as text in a
// Bind but as its raw bytes in a binary COPY, which Postgres rejects too.
func numeric(text string) *pgtype.Numeric {
	n := &pgtype.Numeric{}
	must("numeric", n.Set(text))
	return n
}

func uuid(text string) *pgtype.UUID {
	u := &pgtype.UUID{}
	must("uuid", u.Set(text))
	return u
}

type typedRow struct {
	text, varchar, armored pgtype.Text
	i4                     pgtype.Int4
	i8                     pgtype.Int8
	i2                     pgtype.Int2
	num                    pgtype.Numeric
	b                      pgtype.Bool
	date                   pgtype.Date
	ts                     pgtype.Timestamp
	tstz                   pgtype.Timestamptz
	uuid                   pgtype.UUID
	jsonb                  pgtype.JSONB
	bytea                  pgtype.Bytea
}

func (t *typedRow) targets() []interface{} {
	return []interface{}{&t.text, &t.varchar, &t.i4, &t.i8, &t.i2, &t.num, &t.b, &t.date,
		&t.ts, &t.tstz, &t.uuid, &t.jsonb, &t.bytea, &t.armored}
}

// show renders each value as Postgres' text form (nil for NULL), timestamptz in UTC.
func (t *typedRow) show() map[string]interface{} {
	out := map[string]interface{}{}
	text := func(name string, v pgtype.TextEncoder) {
		buf, err := v.EncodeText(nil, nil)
		must("encode "+name, err)
		if buf == nil {
			out[name] = nil
		} else {
			out[name] = string(buf)
		}
	}
	text("c_text", &t.text)
	text("c_varchar", &t.varchar)
	text("c_int", &t.i4)
	text("c_bigint", &t.i8)
	text("c_smallint", &t.i2)
	text("c_numeric", &t.num)
	text("c_bool", &t.b)
	text("c_date", &t.date)
	text("c_ts", &t.ts)
	text("c_uuid", &t.uuid)
	text("c_jsonb", &t.jsonb)
	text("c_bytea", &t.bytea)
	text("c_armored", &t.armored)
	if t.tstz.Status == pgtype.Present {
		out["c_tstz"] = t.tstz.Time.UTC().Format(time.RFC3339Nano)
	} else {
		out["c_tstz"] = nil
	}
	return out
}

func oids(sd *pgconn.StatementDescription) map[string]interface{} {
	var fields []uint32
	for _, f := range sd.Fields {
		fields = append(fields, f.DataTypeOID)
	}
	return map[string]interface{}{"params": sd.ParamOIDs, "fields": fields}
}

// pgxEncTyped: args are the tenant and a prefix for every plaintext.
func pgxEncTyped(r *reporter, dsn string, args []string) {
	tenant, err := strconv.Atoi(args[0])
	must("tenant", err)
	prefix := args[1]
	ctx, cancel := timeout()
	defer cancel()
	conn := pgxConnect(dsn, false)
	defer conn.Close(ctx)

	simple := pgxConnect(dsn, true)
	defer simple.Close(ctx)

	sd, err := conn.Prepare(ctx, "typed_insert", typedInsert)
	must("prepare insert", err)
	r.value("insert-oids", oids(sd))
	sd, err = conn.Prepare(ctx, "typed_select", typedSelect)
	must("prepare select", err)
	r.value("select-oids", oids(sd))

	var ids []int32
	// By the prepared name, then by pgx's own statement cache. In describe mode
	// pgx 4.15 sends a prepared statement's name as SQL text, so not by name there.
	byName := !strings.Contains(dsn, "statement_cache_mode=describe")
	for i := 0; i < 3; i++ {
		var id int32
		sql := "typed_insert"
		if i > 0 || !byName {
			sql = typedInsert
		}
		err = conn.QueryRow(ctx, sql, append([]interface{}{tenant}, typedValues(fmt.Sprintf("%s%d", prefix, i))...)...).Scan(&id)
		if err != nil {
			r.err(fmt.Sprintf("insert-%d", i), err)
			return
		}
		ids = append(ids, id)
	}
	nulls := make([]interface{}, 15)
	nulls[0] = tenant
	var nullID int32
	err = conn.QueryRow(ctx, typedInsert, nulls...).Scan(&nullID)
	r.result("insert-nulls", "ok", err)
	r.value("ids", ids)

	for i, id := range ids {
		var row typedRow
		sql := "typed_select"
		if !byName {
			sql = typedSelect
		}
		err = conn.QueryRow(ctx, sql, tenant, id).Scan(row.targets()...)
		r.result(fmt.Sprintf("read-%d", i), row.show(), err)
	}
	var row typedRow
	err = conn.QueryRow(ctx, typedSelect, tenant, nullID).Scan(row.targets()...)
	r.result("read-nulls", row.show(), err)

	// Binary COPY of every logical type (and a row of NULLs), sealed in the stream.
	copyRows := [][]interface{}{append([]interface{}{tenant}, typedValues(prefix+"c")...),
		append([]interface{}{tenant}, make([]interface{}, 14)...)}
	copied, err := conn.CopyFrom(ctx, pgx.Identifier{"typed"},
		strings.Split("business_id, "+typedColumns, ", "), pgx.CopyFromRows(copyRows))
	r.result("copy-from", copied, err)
	rows, err := conn.Query(ctx, "SELECT "+typedColumns+" FROM typed WHERE business_id = $1"+
		" AND id > $2 ORDER BY id", tenant, nullID)
	if err != nil {
		r.err("copy-read", err)
	} else {
		shown := []interface{}{}
		for rows.Next() {
			var row typedRow
			must("scan copied", rows.Scan(row.targets()...))
			shown = append(shown, row.show())
		}
		r.result("copy-read", shown, rows.Err())
	}
	// COPY TO of a protected table: opened in the stream or refused, never ciphertext.
	var out strings.Builder
	_, err = conn.PgConn().CopyTo(ctx, &out, "COPY (SELECT c_text, c_int FROM typed WHERE id = "+
		strconv.Itoa(int(ids[0]))+") TO STDOUT")
	r.result("copy-to", out.String(), err)

	// UPDATE ... RETURNING in binary.
	var text string
	var num pgtype.Numeric
	err = conn.QueryRow(ctx, "UPDATE typed SET c_text = $1, c_numeric = $2 WHERE business_id = $3"+
		" AND id = $4 RETURNING c_text, c_numeric", prefix+"-updated", 0.5, tenant, ids[1]).Scan(&text, &num)
	buf, _ := num.EncodeText(nil, nil)
	r.result("update-returning", text+"|"+string(buf), err)

	// Numeric specials in binary: NaN and ±Infinity (Postgres 14+), and a big scale.
	for _, v := range []string{"NaN", "Infinity", "-Infinity", "-0.000000000000000000001", "1" + strings.Repeat("0", 100)} {
		n := &pgtype.Numeric{}
		switch v {
		case "NaN":
			n = &pgtype.Numeric{NaN: true, Status: pgtype.Present}
		case "Infinity":
			n = &pgtype.Numeric{InfinityModifier: pgtype.Infinity, Status: pgtype.Present}
		case "-Infinity":
			n = &pgtype.Numeric{InfinityModifier: pgtype.NegativeInfinity, Status: pgtype.Present}
		default:
			must("numeric", n.Set(v))
		}
		var back pgtype.Numeric
		var id int32
		err = conn.QueryRow(ctx, "INSERT INTO typed (business_id, c_numeric) VALUES ($1, $2) RETURNING id",
			tenant, n).Scan(&id)
		if err == nil {
			err = conn.QueryRow(ctx, "SELECT c_numeric FROM typed WHERE business_id = $1 AND id = $2",
				tenant, id).Scan(&back)
		}
		buf, _ := back.EncodeText(nil, nil)
		var inText pgtype.Numeric // the simple protocol's text result
		if err == nil {
			err = simple.QueryRow(ctx, "SELECT c_numeric FROM typed WHERE business_id = $1 AND id = $2",
				tenant, id).Scan(&inText)
		}
		text, _ := inText.EncodeText(nil, nil)
		r.result("numeric-"+v, string(buf)+"|"+string(text), err)
	}

	// The simple protocol: parameters inlined as literals, results in text.
	var id int32
	err = simple.QueryRow(ctx, typedInsert, append([]interface{}{tenant}, typedValues(prefix+"s")...)...).Scan(&id)
	if err != nil {
		r.err("simple-insert", err)
		return
	}
	row = typedRow{}
	err = simple.QueryRow(ctx, typedSelect, tenant, id).Scan(row.targets()...)
	r.result("simple-read", row.show(), err)
	row = typedRow{}
	err = conn.QueryRow(ctx, typedSelect, tenant, id).Scan(row.targets()...)
	r.result("simple-written-binary-read", row.show(), err)
}

const customerInsert = "INSERT INTO customers (business_id, name, email, tax_id, phone, credit)" +
	" VALUES ($1, $2, $3, $4, $5, $6)"

func pgxEncCustomers(r *reporter, dsn string, args []string) {
	tenant, err := strconv.Atoi(args[0])
	must("tenant", err)
	prefix := args[1]
	ctx, cancel := timeout()
	defer cancel()
	conn := pgxConnect(dsn, false)
	defer conn.Close(ctx)
	// Refused by pgseal; the name marks it in the server's log, which it must never reach.
	refused := "SELECT phone FROM customers WHERE business_id = $1 AND name <> '" + prefix +
		"-refused' ORDER BY phone"

	for i := 0; i < 5; i++ {
		_, err = conn.Exec(ctx, customerInsert, tenant, fmt.Sprintf("%s-n%d", prefix, i),
			fmt.Sprintf("%s-%d@Example.org", prefix, i), fmt.Sprintf("%s-TAX-%d", prefix, i),
			fmt.Sprintf("%s-555-%d", prefix, i), fmt.Sprintf("%d.5", 10+i))
		if err != nil {
			r.err("insert", err)
			return
		}
	}
	names := func(check, sql string, args ...interface{}) {
		rows, err := conn.Query(ctx, sql, args...)
		if err != nil {
			r.err(check, err)
			return
		}
		got := []string{}
		for rows.Next() {
			var name, phone string
			must("scan", rows.Scan(&name, &phone))
			got = append(got, name+"|"+phone)
		}
		r.result(check, got, rows.Err())
	}
	names("search-email", "SELECT name, phone FROM customers WHERE business_id = $1 AND email = $2",
		tenant, fmt.Sprintf("  %s-3@EXAMPLE.org ", prefix)) // normalize: trim, casefold
	names("search-tax-id", "SELECT name, phone FROM customers WHERE business_id = $1 AND tax_id = $2",
		tenant, prefix+"-TAX-1")
	names("search-tax-id-case", "SELECT name, phone FROM customers WHERE business_id = $1 AND tax_id = $2",
		tenant, prefix+"-tax-1") // no casefold on tax_id
	names("search-email-any", "SELECT name, phone FROM customers WHERE business_id = $1"+
		" AND email = ANY($2) ORDER BY name", tenant,
		[]string{prefix + "-0@example.org", prefix + "-4@EXAMPLE.ORG", "nobody@example.org"})
	names("search-tax-id-any", "SELECT name, phone FROM customers WHERE business_id = $1"+
		" AND tax_id = ANY($2) ORDER BY name", tenant, []string{prefix + "-TAX-2", prefix + "-TAX-3"})
	// A notification arrives with a protected result (before its ReadyForQuery),
	// and a ParameterStatus (SET application_name) in the middle of a batch.
	sender := pgxConnect(dsn, false)
	defer sender.Close(ctx)
	_, err = conn.Exec(ctx, "LISTEN go_enc_chan")
	must("listen", err)
	_, err = sender.Exec(ctx, "NOTIFY go_enc_chan, 'enc-payload'")
	must("notify", err)
	time.Sleep(200 * time.Millisecond)
	names("search-with-notification", "SELECT name, phone FROM customers WHERE business_id = $1"+
		" AND email = $2", tenant, prefix+"-1@example.org")
	wait, stop := context.WithTimeout(ctx, 10*time.Second)
	n, err := conn.WaitForNotification(wait)
	stop()
	if err != nil {
		r.err("notification", err)
	} else {
		r.value("notification", n.Payload)
	}
	b := &pgx.Batch{}
	b.Queue("SELECT phone FROM customers WHERE business_id = $1 AND email = $2", tenant, prefix+"-0@example.org")
	b.Queue("SET application_name = 'go-enc'")
	b.Queue("SELECT phone FROM customers WHERE business_id = $1 AND tax_id = $2", tenant, prefix+"-TAX-4")
	br := conn.SendBatch(ctx, b)
	var first, last string
	err = br.QueryRow().Scan(&first)
	if err == nil {
		_, err = br.Exec()
	}
	if err == nil {
		err = br.QueryRow().Scan(&last)
	}
	if err == nil {
		err = br.Close()
	}
	r.result("batch-parameter-status", []string{first, conn.PgConn().ParameterStatus("application_name"), last}, err)

	var credit pgtype.Numeric
	err = conn.QueryRow(ctx, "SELECT credit FROM customers WHERE business_id = $1 AND email = $2",
		tenant, prefix+"-2@example.org").Scan(&credit)
	buf, _ := credit.EncodeText(nil, nil)
	r.result("credit", string(buf), err)

	// A batch of inserts with a refused statement in it: pgx describes every
	// statement before sending the batch, the refusal comes back then, and
	// nothing of the batch runs.
	b = &pgx.Batch{}
	for i := 0; i < 20; i++ {
		b.Queue(customerInsert, tenant, fmt.Sprintf("%s-b%d", prefix, i), fmt.Sprintf("%s-b%d@x", prefix, i),
			nil, fmt.Sprintf("%s-b-555-%d", prefix, i), nil)
		if i == 10 {
			b.Queue(refused, tenant)
		}
	}
	batchResults(r, conn.SendBatch(ctx, b), "batch-refused", 21)
	count := func(check, like string) {
		var n int64
		err := conn.QueryRow(ctx, "SELECT count(*) FROM customers WHERE business_id = $1 AND name LIKE $2",
			tenant, like).Scan(&n)
		r.result(check, n, err)
	}
	count("batch-refused-rows", prefix+"-b%")

	// The same inserts, all good: they run pipelined, every one sealed.
	b = &pgx.Batch{}
	for i := 0; i < 20; i++ {
		b.Queue(customerInsert, tenant, fmt.Sprintf("%s-b%d", prefix, i), fmt.Sprintf("%s-b%d@x", prefix, i),
			nil, fmt.Sprintf("%s-b-555-%d", prefix, i), nil)
	}
	b.Queue("SELECT name, phone FROM customers WHERE business_id = $1 AND email = $2", tenant, prefix+"-b7@X")
	br = conn.SendBatch(ctx, b)
	for i := 0; i < 20; i++ {
		if _, err := br.Exec(); err != nil {
			r.err("batch-ok-insert", err)
			break
		}
	}
	var name, phone string
	err = br.QueryRow().Scan(&name, &phone)
	r.result("batch-ok-search", name+"|"+phone, err)
	r.result("batch-ok-close", "ok", br.Close())
	count("batch-ok-rows", prefix+"-b%")

	// An error at execution in the middle (a duplicate name): Postgres skips to
	// the Sync and the implicit transaction rolls back, the inserts before it too.
	b = &pgx.Batch{}
	for i, n := range []string{"-d0", "-d1", "-b3", "-d2"} {
		b.Queue(customerInsert, tenant, prefix+n, fmt.Sprintf("%s-d%d@x", prefix, i), nil, prefix+"-d-555", nil)
	}
	batchResults(r, conn.SendBatch(ctx, b), "batch-duplicate", 4)
	count("batch-duplicate-rows", prefix+"-d%")

	// With the simple protocol the batch is one Query of many statements.
	simple := pgxConnect(dsn, true)
	defer simple.Close(ctx)
	b = &pgx.Batch{}
	b.Queue(customerInsert, tenant, prefix+"-s0", prefix+"-s0@x", nil, prefix+"-s-555-0", nil)
	b.Queue(refused, tenant)
	b.Queue(customerInsert, tenant, prefix+"-s1", prefix+"-s1@x", nil, prefix+"-s-555-1", nil)
	batchResults(r, simple.SendBatch(ctx, b), "simple-batch-refused", 3)
	count("simple-batch-refused-rows", prefix+"-s%")
	b = &pgx.Batch{}
	b.Queue(customerInsert, tenant, prefix+"-s2", prefix+"-s2@x", nil, prefix+"-s-555-2", nil)
	b.Queue(customerInsert, tenant, prefix+"-s3", prefix+"-s3@x", nil, prefix+"-s-555-3", nil)
	batchResults(r, simple.SendBatch(ctx, b), "simple-batch-ok", 2)
	count("simple-batch-ok-rows", prefix+"-s%")

	// Binary COPY: pgx describes the columns (pgseal reports the logical types)
	// and sends binary rows that pgseal seals in the stream.
	var src [][]interface{}
	for i := 0; i < 300; i++ {
		var email interface{} = fmt.Sprintf("%s-c%d@Example.org", prefix, i)
		if i%10 == 0 {
			email = nil
		}
		src = append(src, []interface{}{tenant, fmt.Sprintf("%s-c%d", prefix, i), email,
			fmt.Sprintf("%s-CTAX-%d", prefix, i), fmt.Sprintf("%s-c-555-%d", prefix, i), float64(i) + 0.5})
	}
	copied, err := conn.CopyFrom(ctx, pgx.Identifier{"customers"},
		[]string{"business_id", "name", "email", "tax_id", "phone", "credit"}, pgx.CopyFromRows(src))
	r.result("copy-from", copied, err)
	names("copy-search-email", "SELECT name, phone FROM customers WHERE business_id = $1 AND email = $2",
		tenant, prefix+"-c17@example.ORG")
	names("copy-search-tax-id-any", "SELECT name, phone FROM customers WHERE business_id = $1"+
		" AND tax_id = ANY($2) ORDER BY name", tenant, []string{prefix + "-CTAX-20", prefix + "-CTAX-299"})
	var nullEmails int64
	err = conn.QueryRow(ctx, "SELECT count(*) FROM customers WHERE business_id = $1 AND email IS NULL"+
		" AND name LIKE $2", tenant, prefix+"-c%").Scan(&nullEmails)
	r.result("copy-null-emails", nullEmails, err)

	// Refused: ORDER BY a protected column; twice (pgx caches no failed statement).
	for i := 0; i < 2; i++ {
		_, err = conn.Exec(ctx, refused, tenant)
		r.err(fmt.Sprintf("refused-%d", i), err)
	}
	_, err = simple.Exec(ctx, refused, tenant)
	r.err("refused-simple", err)
	var one int
	err = conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	r.result("after-refused", one, err)
	err = simple.QueryRow(ctx, "SELECT 2").Scan(&one)
	r.result("after-refused-simple", one, err)
	// One statement name for a plain insert, then (after DEALLOCATE) a protected
	// one, then plain again: pgseal must follow what the name means now.
	if !strings.Contains(dsn, "statement_cache_mode=describe") { // see pgxEncTyped
		steps := []struct {
			sql  string
			args []interface{}
		}{
			{"INSERT INTO plain (id, v) VALUES ($1, $2)", []interface{}{tenant, prefix + "-plain-1"}},
			{customerInsert, []interface{}{tenant, prefix + "-reused", nil, nil, prefix + "-reused-555", nil}},
			{"INSERT INTO plain (id, v) VALUES ($1, $2)", []interface{}{tenant, prefix + "-plain-2"}},
		}
		for i, step := range steps {
			_, err = conn.Prepare(ctx, "reused", step.sql)
			if err == nil {
				_, err = conn.Exec(ctx, "reused", step.args...)
			}
			if err == nil {
				err = conn.Deallocate(ctx, "reused")
			}
			r.result(fmt.Sprintf("reused-name-%d", i), "ok", err)
		}
	}
	var total int64
	err = conn.QueryRow(ctx, "SELECT count(*) FROM customers WHERE business_id = $1", tenant).Scan(&total)
	r.result("total-rows", total, err)
}

// pgxEncPool: goroutines on a pgxpool writing and searching protected columns
// for two tenants at once (args: the first tenant, a prefix).
func pgxEncPool(r *reporter, dsn string, args []string) {
	tenant, err := strconv.Atoi(args[0])
	must("tenant", err)
	prefix := args[1]
	ctx, cancel := timeout()
	defer cancel()
	pool, err := pgxpool.Connect(ctx, dsn+poolSuffix(dsn, 4))
	must("pool", err)
	defer pool.Close()
	var wg sync.WaitGroup
	errs := make([]string, 8)
	found := make([]int, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			t := tenant + g%2
			for i := 0; i < 25; i++ {
				name := fmt.Sprintf("%s-g%d-%d", prefix, g, i)
				_, err := pool.Exec(ctx, customerInsert, t, name, name+"@Example.org",
					fmt.Sprintf("%s-TAX-%d-%d", prefix, g, i), name+"-555", nil)
				if err != nil {
					errs[g] = err.Error()
					return
				}
				var phone string
				err = pool.QueryRow(ctx, "SELECT phone FROM customers WHERE business_id = $1 AND email = $2",
					t, strings.ToUpper(name)+"@EXAMPLE.ORG").Scan(&phone)
				if err != nil {
					errs[g] = err.Error()
					return
				}
				if phone == name+"-555" {
					found[g]++
				}
			}
		}(g)
	}
	wg.Wait()
	r.value("pool-errors", strings.Join(errs, ""))
	r.value("pool-found", found)
	// = ANY over both tenants' emails finds only the row of the tenant asked for.
	var n int64
	err = pool.QueryRow(ctx, "SELECT count(*) FROM customers WHERE business_id = $1 AND email = ANY($2)",
		tenant, []string{prefix + "-g0-3@example.org", prefix + "-g1-3@example.org"}).Scan(&n)
	r.result("pool-tenant-search", n, err)
}

// pgxEncEdges: COPY without the tenant column, COPY TO in binary and a
// multi-statement simple Query mixing protected and plain results.
func pgxEncEdges(r *reporter, dsn string, args []string) {
	tenant, err := strconv.Atoi(args[0])
	must("tenant", err)
	prefix := args[1]
	ctx, cancel := timeout()
	defer cancel()
	conn := pgxConnect(dsn, false)
	defer conn.Close(ctx)
	for i := 0; i < 3; i++ {
		_, err = conn.Exec(ctx, customerInsert, tenant, fmt.Sprintf("%s-e%d", prefix, i),
			fmt.Sprintf("%s-e%d@x", prefix, i), nil, fmt.Sprintf("%s-e-555-%d", prefix, i), nil)
		must("insert", err)
	}
	copied, err := conn.CopyFrom(ctx, pgx.Identifier{"customers"}, []string{"name", "phone"},
		pgx.CopyFromRows([][]interface{}{{prefix + "-notenant", prefix + "-notenant-555"}}))
	r.result("copy-without-tenant", copied, err)
	var one int
	err = conn.QueryRow(ctx, "SELECT 1").Scan(&one)
	r.result("after-copy-without-tenant", one, err)

	var out strings.Builder
	tag, err := conn.PgConn().CopyTo(ctx, &out, "COPY (SELECT name, phone FROM customers"+
		" WHERE business_id = "+strconv.Itoa(tenant)+") TO STDOUT (FORMAT binary)")
	if err != nil {
		r.err("copy-to-binary", err)
	} else {
		seen := 0
		for i := 0; i < 3; i++ {
			if strings.Contains(out.String(), fmt.Sprintf("%s-e-555-%d", prefix, i)) {
				seen++
			}
		}
		r.value("copy-to-binary", map[string]interface{}{"tag": tag.String(), "phones": seen})
	}

	results, err := conn.PgConn().Exec(ctx, "SELECT phone FROM customers WHERE business_id = "+
		strconv.Itoa(tenant)+" AND email = '"+prefix+"-e2@X'; SELECT 41 + 1; SELECT name, phone"+
		" FROM customers WHERE business_id = "+strconv.Itoa(tenant)+" AND name = '"+prefix+"-e0'").ReadAll()
	if err != nil {
		r.err("multi-statement", err)
	} else {
		var got [][]string
		for _, res := range results {
			for _, row := range res.Rows {
				var fields []string
				for _, f := range row {
					fields = append(fields, string(f))
				}
				got = append(got, fields)
			}
		}
		r.value("multi-statement", got)
	}
}

func pgxEncrypted(r *reporter, dsn string, args []string) {
	switch args[0] {
	case "edges":
		pgxEncEdges(r, dsn, args[1:])
	case "pool":
		pgxEncPool(r, dsn, args[1:])
	case "typed":
		pgxEncTyped(r, dsn, args[1:])
	case "customers":
		pgxEncCustomers(r, dsn, args[1:])
	default:
		fatal("pgx-enc", fmt.Errorf("unknown part %q", args[0]))
	}
}
