// pgsealgo runs Go's PostgreSQL drivers (jackc/pgx v4 and lib/pq) against one
// DSN and prints one JSON line per check: {"check": name, "value": ...} or
// {"check": name, "error": {"code": SQLSTATE, "message": ...}}. The pytest side
// (tests/golang, tests/encrypted/test_golang.py) decides what is right; this
// program only reports what the driver saw.
//
// Usage: pgsealgo SCENARIO DSN [ARG...]
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgconn"
	"github.com/lib/pq"
)

type reporter struct {
	out *json.Encoder
}

type errorInfo struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func (r *reporter) value(check string, v interface{}) {
	if err := r.out.Encode(map[string]interface{}{"check": check, "value": v}); err != nil {
		fatal("encode", err)
	}
}

// result reports err if there is one, else v.
func (r *reporter) result(check string, v interface{}, err error) {
	if err != nil {
		r.err(check, err)
		return
	}
	r.value(check, v)
}

func (r *reporter) err(check string, err error) {
	info := describeError(err)
	if e := r.out.Encode(map[string]interface{}{"check": check, "error": info}); e != nil {
		fatal("encode", e)
	}
}

// describeError gives the SQLSTATE of a server error, "context" for a
// cancelled or expired context and "go" for any other driver error.
func describeError(err error) errorInfo {
	var pgErr *pgconn.PgError
	var pqErr *pq.Error
	switch {
	case errors.As(err, &pgErr):
		return errorInfo{pgErr.Code, pgErr.Message}
	case errors.As(err, &pqErr):
		return errorInfo{string(pqErr.Code), pqErr.Message}
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return errorInfo{"context", err.Error()}
	default:
		return errorInfo{"go", err.Error()}
	}
}

func fatal(what string, err error) {
	fmt.Fprintf(os.Stderr, "pgsealgo: %s: %v\n", what, err)
	os.Exit(2)
}

func must(what string, err error) {
	if err != nil {
		fatal(what, err)
	}
}

func timeout() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 60*time.Second)
}

var scenarios = map[string]func(r *reporter, dsn string, args []string){
	"pgx-pass": pgxPassthrough,
	"pq-pass":  pqPassthrough,
	"pgx-enc":  pgxEncrypted,
	"pq-enc":   pqEncrypted,
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: pgsealgo SCENARIO DSN [ARG...]")
		os.Exit(2)
	}
	run, ok := scenarios[os.Args[1]]
	if !ok {
		fatal("scenario", fmt.Errorf("unknown scenario %q", os.Args[1]))
	}
	r := &reporter{json.NewEncoder(os.Stdout)}
	run(r, os.Args[2], os.Args[3:])
	r.value("done", true)
}
