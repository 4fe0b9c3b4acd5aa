//! pgsealrs runs Rust's tokio-postgres against one DSN and prints one JSON line
//! per check: {"check": name, "value": ...} or {"check": name, "error": {"code":
//! SQLSTATE or "rust", "message": ...}}. The pytest side (tests/rust,
//! tests/encrypted/test_rust.py) decides what is right; this program only
//! reports what the driver saw.
//!
//! Usage: pgsealrs SCENARIO DSN [ARG...]

mod encrypted;
mod numeric;
mod passthrough;

use serde_json::{json, Value};
use tokio_postgres::{Client, Error, NoTls};

/// Prints the checks, one JSON line each.
pub struct Reporter;

impl Reporter {
    pub fn value(&self, check: &str, value: impl Into<Value>) {
        println!("{}", json!({"check": check, "value": value.into()}));
    }

    pub fn error(&self, check: &str, err: &Error) {
        let info = match err.as_db_error() {
            Some(db) => json!({"code": db.code().code(), "message": db.message()}),
            None => json!({"code": "rust", "message": err.to_string()}),
        };
        println!("{}", json!({"check": check, "error": info}));
    }

    /// Reports the error if there is one, else the value.
    pub fn result<T: Into<Value>>(&self, check: &str, result: Result<T, Error>) {
        match result {
            Ok(value) => self.value(check, value),
            Err(err) => self.error(check, &err),
        }
    }
}

/// A client whose connection runs on its own task until the client is dropped.
pub async fn connect(dsn: &str) -> Client {
    let (client, connection) = match tokio_postgres::connect(dsn, NoTls).await {
        Ok(pair) => pair,
        Err(err) => fatal("connect", &err),
    };
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            eprintln!("pgsealrs: connection: {err}");
        }
    });
    client
}

pub fn fatal(what: &str, err: &dyn std::fmt::Display) -> ! {
    eprintln!("pgsealrs: {what}: {err}");
    std::process::exit(2);
}

/// Bytes as lowercase hex, the way the pytest side compares bytea.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: pgsealrs SCENARIO DSN [ARG...]");
        std::process::exit(2);
    }
    let r = Reporter;
    let (dsn, rest) = (&args[2], &args[3..]);
    match args[1].as_str() {
        "pass" => passthrough::run(&r, dsn).await,
        "enc-typed" => encrypted::typed(&r, dsn, rest).await,
        "enc-customers" => encrypted::customers(&r, dsn, rest).await,
        other => fatal("scenario", &format!("unknown scenario {other:?}")),
    }
    r.value("done", true);
}
