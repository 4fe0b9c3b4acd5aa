package main

// Checks with lib/pq through an encrypting pgseal: parameters in text (bytea
// as \x hex), unnamed statements described before each Bind, results in text.

import (
	"database/sql"
	"fmt"
	"strconv"

	"github.com/lib/pq"
)

// pqEncrypted: args are the tenant and a prefix for every plaintext.
func pqEncrypted(r *reporter, dsn string, args []string) {
	tenant, err := strconv.Atoi(args[0])
	must("tenant", err)
	prefix := args[1]
	ctx, cancel := timeout()
	defer cancel()
	db := pqOpen(dsn)
	defer db.Close()

	values := func(p string) []interface{} {
		return []interface{}{tenant, p + "-text ü", p + "-vc", -2147483648, int64(9223372036854775807),
			-32768, "12345.678900", true, "2024-02-29", "2023-12-31 23:59:58.123456",
			"2021-06-01 12:30:00.654321+02", "6f1d3b1c-2b9a-4f3e-9d7a-0a1b2c3d4e5f",
			`{"secret": "` + p + `-json", "n": [1, 2]}`, []byte(p + "-bytes\x00\xff"), p + "-armour"}
	}
	var ids []int64
	for i := 0; i < 2; i++ { // unnamed statements, then a prepared (named) one
		var id int64
		if i == 0 {
			err = db.QueryRowContext(ctx, typedInsert, values(fmt.Sprintf("%s%d", prefix, i))...).Scan(&id)
		} else {
			stmt, perr := db.PrepareContext(ctx, typedInsert)
			must("prepare", perr)
			err = stmt.QueryRowContext(ctx, values(fmt.Sprintf("%s%d", prefix, i))...).Scan(&id)
			must("close", stmt.Close())
		}
		if err != nil {
			r.err(fmt.Sprintf("insert-%d", i), err)
			return
		}
		ids = append(ids, id)
	}
	nulls := make([]interface{}, 15)
	nulls[0] = tenant
	var nullID int64
	err = db.QueryRowContext(ctx, typedInsert, nulls...).Scan(&nullID)
	r.result("insert-nulls", "ok", err)
	for i, id := range append(ids, nullID) {
		cols := make([]sql.NullString, 14)
		targets := make([]interface{}, 14)
		for j := range cols {
			targets[j] = &cols[j]
		}
		err = db.QueryRowContext(ctx, typedSelect, tenant, id).Scan(targets...)
		shown := map[string]interface{}{}
		for j, name := range []string{"c_text", "c_varchar", "c_int", "c_bigint", "c_smallint",
			"c_numeric", "c_bool", "c_date", "c_ts", "c_tstz", "c_uuid", "c_jsonb", "c_bytea", "c_armored"} {
			if cols[j].Valid && name == "c_bytea" {
				shown[name] = fmt.Sprintf("%x", cols[j].String)
			} else if cols[j].Valid {
				shown[name] = cols[j].String
			} else {
				shown[name] = nil
			}
		}
		r.result(fmt.Sprintf("read-%d", i), shown, err)
	}

	for i := 0; i < 4; i++ {
		_, err = db.ExecContext(ctx, customerInsert, tenant, fmt.Sprintf("%s-n%d", prefix, i),
			fmt.Sprintf("%s-%d@Example.org", prefix, i), fmt.Sprintf("%s-TAX-%d", prefix, i),
			fmt.Sprintf("%s-555-%d", prefix, i), fmt.Sprintf("%d.5", 10+i))
		if err != nil {
			r.err("customer-insert", err)
			return
		}
	}
	names := func(check, query string, args ...interface{}) {
		rows, err := db.QueryContext(ctx, query, args...)
		if err != nil {
			r.err(check, err)
			return
		}
		defer rows.Close()
		got := []string{}
		for rows.Next() {
			var name, phone string
			must("scan", rows.Scan(&name, &phone))
			got = append(got, name+"|"+phone)
		}
		r.result(check, got, rows.Err())
	}
	names("search-email", "SELECT name, phone FROM customers WHERE business_id = $1 AND email = $2",
		tenant, prefix+"-2@EXAMPLE.ORG")
	names("search-email-any", "SELECT name, phone FROM customers WHERE business_id = $1"+
		" AND email = ANY($2) ORDER BY name", tenant, pq.Array([]string{prefix + "-1@example.org", prefix + "-3@example.org"}))
	names("search-tax-id-in", "SELECT name, phone FROM customers WHERE business_id = $1"+
		" AND tax_id IN ($2, $3) ORDER BY name", tenant, prefix+"-TAX-0", prefix+"-TAX-3")
	var credit string
	err = db.QueryRowContext(ctx, "SELECT credit FROM customers WHERE business_id = $1 AND tax_id = $2",
		tenant, prefix+"-TAX-1").Scan(&credit)
	r.result("credit", credit, err)

	// pq.CopyIn: COPY FROM STDIN in text, sealed in the stream.
	tx, err := db.BeginTx(ctx, nil)
	must("begin", err)
	stmt, err := tx.PrepareContext(ctx, pq.CopyIn("customers", "business_id", "name", "email", "phone"))
	must("copy in", err)
	for i := 0; i < 200; i++ {
		_, err = stmt.ExecContext(ctx, tenant, fmt.Sprintf("%s-c%d", prefix, i),
			fmt.Sprintf("%s-c%d@Example.org", prefix, i), fmt.Sprintf("%s-c-555\t%d", prefix, i))
		must("copy row", err)
	}
	_, err = stmt.ExecContext(ctx)
	r.result("copy-in", "ok", err)
	must("close copy", stmt.Close())
	r.result("copy-commit", "ok", tx.Commit())
	names("copy-search", "SELECT name, phone FROM customers WHERE business_id = $1 AND email = $2",
		tenant, prefix+"-c123@example.org")

	// A value that is no numeric in the middle of a COPY: refused as Postgres
	// would (22P02), the COPY aborted, nothing of it stored.
	tx, err = db.BeginTx(ctx, nil)
	must("begin bad copy", err)
	stmt, err = tx.PrepareContext(ctx, pq.CopyIn("customers", "business_id", "name", "phone", "credit"))
	must("copy in bad", err)
	for i, credit := range []string{"1.5", "2.5", "not-a-number", "4.5"} {
		_, err = stmt.ExecContext(ctx, tenant, fmt.Sprintf("%s-bad%d", prefix, i), prefix+"-bad-555", credit)
		if err != nil {
			break
		}
	}
	if err == nil {
		_, err = stmt.ExecContext(ctx)
	}
	r.err("copy-bad-value", err)
	stmt.Close()
	r.result("copy-bad-rollback", "ok", tx.Rollback())

	_, err = db.ExecContext(ctx, "SELECT phone FROM customers WHERE business_id = $1"+
		" AND name <> '"+prefix+"-refused' ORDER BY phone", tenant)
	r.err("refused", err)
	var n int
	err = db.QueryRowContext(ctx, "SELECT count(*) FROM customers WHERE business_id = $1", tenant).Scan(&n)
	r.result("after-refused", n, err)
}
