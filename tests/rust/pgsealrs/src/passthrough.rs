//! tokio-postgres through a pass-through pgseal: every statement prepared
//! (Parse + Describe, then a binary Bind), named statements reused and closed
//! on drop, queries pipelined on one connection, the simple protocol, binary
//! and text COPY both ways, a CancelRequest, transactions with savepoints.

use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use futures_util::future::join_all;
use futures_util::{pin_mut, SinkExt, TryStreamExt};
use serde_json::{json, Value};
use tokio_postgres::binary_copy::{BinaryCopyInWriter, BinaryCopyOutStream};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Error, IsolationLevel, NoTls, Row, SimpleQueryMessage};
use uuid::Uuid;

use crate::numeric::Numeric;
use crate::{connect, hex, Reporter};

pub async fn run(r: &Reporter, dsn: &str) {
    let mut client = connect(dsn).await;
    types(r, &client).await;
    prepared(r, &client).await;
    pipelined(r, &client).await;
    simple(r, &client).await;
    copy(r, &client).await;
    cancel(r, &client).await;
    transactions(r, &mut client).await;
}

/// One value of every type the packaged features can express.
struct Sample {
    int2: i16,
    int4: i32,
    int8: i64,
    boolean: bool,
    text: &'static str,
    bytea: Vec<u8>,
    date: NaiveDate,
    timestamp: NaiveDateTime,
    timestamptz: DateTime<Utc>,
    uuid: Uuid,
    jsonb: Value,
    int4s: Vec<i32>,
    texts: Vec<Option<&'static str>>,
    null: Option<&'static str>,
    numeric: Numeric,
}

impl Sample {
    fn new() -> Sample {
        let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).expect("a valid date");
        Sample {
            int2: -32768,
            int4: 2147483647,
            int8: -9223372036854775808,
            boolean: true,
            text: "héllo, wörld",
            bytea: vec![0, 1, 2, 0xfe, 0xff],
            date: date(2024, 2, 29),
            timestamp: date(2023, 12, 31)
                .and_hms_micro_opt(23, 59, 58, 123456)
                .expect("a time"),
            timestamptz: Utc.from_utc_datetime(
                &date(2021, 6, 1)
                    .and_hms_micro_opt(10, 30, 0, 654321)
                    .expect("a time"),
            ),
            uuid: Uuid::parse_str("6f1d3b1c-2b9a-4f3e-9d7a-0a1b2c3d4e5f").expect("a uuid"),
            jsonb: json!({"k": [1, "two", null], "ü": true}),
            int4s: vec![1, -2, 3],
            texts: vec![Some("a"), Some("b c"), Some(""), Some("d\"e"), None],
            null: None,
            numeric: Numeric("-12345.678900".into()),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 15] {
        [
            &self.int2,
            &self.int4,
            &self.int8,
            &self.boolean,
            &self.text,
            &self.bytea,
            &self.date,
            &self.timestamp,
            &self.timestamptz,
            &self.uuid,
            &self.jsonb,
            &self.int4s,
            &self.texts,
            &self.null,
            &self.numeric,
        ]
    }
}

const TYPE_NAMES: [&str; 15] = [
    "int2",
    "int4",
    "int8",
    "bool",
    "text",
    "bytea",
    "date",
    "timestamp",
    "timestamptz",
    "uuid",
    "jsonb",
    "int4[]",
    "text[]",
    "null",
    "numeric",
];

/// A row of the sample's types as JSON (int8 as a string, bytea as hex).
fn render(row: &Row) -> Value {
    let timestamp: NaiveDateTime = row.get(7);
    let timestamptz: DateTime<Utc> = row.get(8);
    json!({
        "int2": row.get::<_, i16>(0),
        "int4": row.get::<_, i32>(1),
        "int8": row.get::<_, i64>(2).to_string(),
        "bool": row.get::<_, bool>(3),
        "text": row.get::<_, &str>(4),
        "bytea": hex(row.get(5)),
        "date": row.get::<_, NaiveDate>(6).to_string(),
        "timestamp": timestamp.format("%Y-%m-%dT%H:%M:%S%.6f").to_string(),
        "timestamptz": timestamptz.to_rfc3339_opts(SecondsFormat::Micros, true),
        "uuid": row.get::<_, Uuid>(9).to_string(),
        "jsonb": row.get::<_, Value>(10),
        "int4[]": row.get::<_, Vec<i32>>(11),
        "text[]": row.get::<_, Vec<Option<&str>>>(12),
        "null": row.get::<_, Option<&str>>(13).is_none(),
        "numeric": row.get::<_, Numeric>(14).0,
    })
}

fn oids(types: &[Type]) -> Value {
    types.iter().map(|t| t.oid()).collect::<Vec<_>>().into()
}

async fn types(r: &Reporter, client: &Client) {
    let sample = Sample::new();
    let casts: Vec<String> = TYPE_NAMES
        .iter()
        .enumerate()
        .map(|(i, name)| match *name {
            "null" => format!("${}::text", i + 1),
            _ => format!("${}::{name}", i + 1),
        })
        .collect();
    let select = format!("SELECT {}", casts.join(", "));
    let got = client.query_one(select.as_str(), &sample.params()).await;
    r.result("select", got.map(|row| render(&row)));

    let table = async {
        client
            .batch_execute(
                "CREATE TEMP TABLE rs_types (a int2, b int4, c int8, d bool, e text, f bytea,
                 g date, h timestamp, i timestamptz, j uuid, k jsonb, l int4[], m text[],
                 n text, o numeric)",
            )
            .await?;
        let insert = client
            .prepare(
                "INSERT INTO rs_types VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12,
                 $13, $14, $15)",
            )
            .await?;
        let mut inserted = 0;
        for _ in 0..2 {
            inserted += client.execute(&insert, &sample.params()).await?;
        }
        let rows = client.query("SELECT * FROM rs_types", &[]).await?;
        let text = client
            .simple_query("SELECT * FROM rs_types LIMIT 1")
            .await?;
        Ok::<_, Error>(json!({
            "inserted": inserted,
            "insert-params": oids(insert.params()),
            "rows": rows.iter().map(render).collect::<Vec<_>>(),
            "text": simple_rows(&text),
        }))
    };
    r.result("table", table.await);
}

/// The rows of a simple query, each as its columns' text, and the command tags' counts.
fn simple_rows(messages: &[SimpleQueryMessage]) -> Value {
    messages
        .iter()
        .map(|message| match message {
            SimpleQueryMessage::Row(row) => (0..row.len())
                .map(|i| row.get(i))
                .collect::<Vec<_>>()
                .into(),
            SimpleQueryMessage::CommandComplete(n) => json!({"complete": n}),
            _ => json!("other"),
        })
        .collect::<Vec<_>>()
        .into()
}

async fn prepared(r: &Reporter, client: &Client) {
    let reused = async {
        let statement = client.prepare("SELECT $1::int4 * 2").await?;
        let mut sum = 0i64;
        for i in 0..200i32 {
            sum += i64::from(client.query_one(&statement, &[&i]).await?.get::<_, i32>(0));
        }
        Ok::<_, Error>(json!({"params": oids(statement.params()), "sum": sum}))
    };
    r.result("prepared-reused", reused.await);

    // A statement of its own per call, closed when dropped: 200 Parse/Close pairs.
    let one_shot = async {
        let mut sum = 0i64;
        for i in 0..200i64 {
            sum += client
                .query_one("SELECT $1::int8 + 1", &[&i])
                .await?
                .get::<_, i64>(0);
        }
        Ok::<_, Error>(sum)
    };
    r.result("one-shot-sum", one_shot.await);

    let typed = async {
        let statement = client
            .prepare_typed("SELECT $1 || '!'", &[Type::TEXT])
            .await?;
        let row = client.query_one(&statement, &[&"typed"]).await?;
        Ok::<_, Error>(row.get::<_, String>(0))
    };
    r.result("prepared-typed", typed.await);

    let bad = client.prepare("SELEC 1").await;
    r.result("prepare-syntax-error", bad.map(|_| "prepared"));
    let after = client.query_one("SELECT 7::int4", &[]).await;
    r.result("after-syntax-error", after.map(|row| row.get::<_, i32>(0)));
    let rows = client
        .query("SELECT g FROM generate_series(1, $1::int4) g", &[&5i32])
        .await;
    r.result(
        "query-rows",
        rows.map(|rows| {
            rows.iter()
                .map(|row| row.get::<_, i32>(0))
                .collect::<Vec<_>>()
        }),
    );
    let none = client.query_opt("SELECT 1 WHERE false", &[]).await;
    r.result("query-opt-none", none.map(|row| row.is_none()));
}

async fn pipelined(r: &Reporter, client: &Client) {
    // 20 queries in flight on one connection; the 11th fails at execution.
    let queries = (0..20i32).map(|i| async move {
        let sql = if i == 10 {
            "SELECT 1 / ($1::int4 - 10)"
        } else {
            "SELECT $1::int4 + 1"
        };
        client
            .query_one(sql, &[&i])
            .await
            .map(|row| row.get::<_, i32>(0))
    });
    for (i, result) in join_all(queries).await.into_iter().enumerate() {
        r.result(&format!("pipeline-{i}"), result);
    }

    let inserts = async {
        client
            .batch_execute("CREATE TEMP TABLE rs_pipe (id int PRIMARY KEY, v text)")
            .await?;
        let insert = client
            .prepare("INSERT INTO rs_pipe VALUES ($1, $2)")
            .await?;
        let insert = &insert;
        // Row 7 twice: one of the two fails (23505), every other insert commits.
        let ids: Vec<i32> = (0..30).chain([7]).collect();
        let results = join_all(
            ids.iter()
                .map(|id| async move { client.execute(insert, &[id, &format!("v{id}")]).await }),
        )
        .await;
        let failed: Vec<Value> = results
            .iter()
            .filter_map(|result| result.as_ref().err())
            .map(|err| err.code().map(|c| c.code()).unwrap_or("rust").into())
            .collect();
        let count: i64 = client
            .query_one("SELECT count(*) FROM rs_pipe", &[])
            .await?
            .get(0);
        Ok::<_, Error>(json!({"failed": failed, "rows": count}))
    };
    r.result("pipeline-inserts", inserts.await);
}

async fn simple(r: &Reporter, client: &Client) {
    let multi = client
        .simple_query(
            "CREATE TEMP TABLE rs_simple (id int, v text); INSERT INTO rs_simple VALUES (1, 'a'),
             (2, NULL); SELECT id, v FROM rs_simple ORDER BY id; SELECT 'x' AS y",
        )
        .await;
    r.result("simple-multi", multi.map(|m| simple_rows(&m)));
    let failing = client.simple_query("SELECT 1; SELECT 1/0; SELECT 3").await;
    r.result("simple-error", failing.map(|m| simple_rows(&m)));
    let after = client.simple_query("SELECT count(*) FROM rs_simple").await;
    r.result("simple-after-error", after.map(|m| simple_rows(&m)));
    let batch = client
        .batch_execute("INSERT INTO rs_simple VALUES (3, 'c'); UPDATE rs_simple SET v = 'u'")
        .await;
    r.result("batch-execute", batch.map(|()| "ok"));
}

async fn copy(r: &Reporter, client: &Client) {
    let at = Utc
        .with_ymd_and_hms(2020, 1, 1, 0, 0, 1)
        .single()
        .expect("a time");
    let binary_in = async {
        client
            .batch_execute(
                "CREATE TEMP TABLE rs_copy (id int4, name text, data bytea, at timestamptz)",
            )
            .await?;
        let sink = client
            .copy_in("COPY rs_copy (id, name, data, at) FROM STDIN BINARY")
            .await?;
        let writer = BinaryCopyInWriter::new(
            sink,
            &[Type::INT4, Type::TEXT, Type::BYTEA, Type::TIMESTAMPTZ],
        );
        pin_mut!(writer);
        for i in 0..2000i32 {
            let name = format!("name\t{i}\n\\");
            let data = vec![(i % 256) as u8, 0];
            writer.as_mut().write(&[&i, &name, &data, &at]).await?;
        }
        let copied = writer.finish().await?;
        let row = client
            .query_one(
                "SELECT sum(id)::int8, count(*) FILTER (WHERE id % 7 = 0) FROM rs_copy",
                &[],
            )
            .await?;
        Ok::<_, Error>(
            json!({"copied": copied, "sum": row.get::<_, i64>(0), "sevens": row.get::<_, i64>(1)}),
        )
    };
    r.result("copy-in-binary", binary_in.await);

    let text_in = async {
        let sink = client.copy_in("COPY rs_copy (id, name) FROM STDIN").await?;
        pin_mut!(sink);
        sink.send(Bytes::from_static(b"5000\tt\\t1\n5001\t\\N\n"))
            .await?;
        sink.finish().await
    };
    r.result("copy-in-text", text_in.await);

    let bad_row = async {
        let sink = client.copy_in("COPY rs_copy (id) FROM STDIN").await?;
        pin_mut!(sink);
        sink.send(Bytes::from_static(b"1\nnot-a-number\n")).await?;
        sink.finish().await
    };
    r.result("copy-in-bad-row", bad_row.await);
    let count = client.query_one("SELECT count(*) FROM rs_copy", &[]).await;
    r.result("copy-rows", count.map(|row| row.get::<_, i64>(0)));

    let text_out = async {
        let stream = client
            .copy_out(
                "COPY (SELECT id, name, data, at FROM rs_copy WHERE id < 3 ORDER BY id) TO STDOUT",
            )
            .await?;
        let chunks: Vec<Bytes> = stream.try_collect().await?;
        Ok::<_, Error>(String::from_utf8_lossy(&chunks.concat()).into_owned())
    };
    r.result("copy-out-text", text_out.await);

    let binary_out = async {
        let stream = client
            .copy_out("COPY (SELECT id, name FROM rs_copy ORDER BY id) TO STDOUT BINARY")
            .await?;
        let rows = BinaryCopyOutStream::new(stream, &[Type::INT4, Type::TEXT]);
        pin_mut!(rows);
        let (mut count, mut sum, mut last) = (0, 0i64, String::new());
        while let Some(row) = rows.try_next().await? {
            count += 1;
            sum += i64::from(row.get::<i32>(0));
            last = row.get::<Option<&str>>(1).unwrap_or("NULL").to_owned();
        }
        Ok::<_, Error>(json!({"rows": count, "sum": sum, "last": last}))
    };
    r.result("copy-out-binary", binary_out.await);
}

async fn cancel(r: &Reporter, client: &Client) {
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(NoTls).await
    });
    let started = Instant::now();
    let sleep = client.query_one("SELECT pg_sleep(30)::text", &[]).await;
    r.result("cancel-error", sleep.map(|_| "slept"));
    r.value("cancel-fast", started.elapsed() < Duration::from_secs(10));
    let sent = canceller.await.expect("the cancel task");
    r.result("cancel-request", sent.map(|()| "ok"));
    let then = client.query_one("SELECT 1::int4", &[]).await;
    r.result("cancel-then-query", then.map(|row| row.get::<_, i32>(0)));
}

async fn transactions(r: &Reporter, client: &mut Client) {
    let setup = client
        .batch_execute("CREATE TEMP TABLE rs_tx (id int PRIMARY KEY)")
        .await;
    r.result("tx-setup", setup.map(|()| "ok"));
    let insert = "INSERT INTO rs_tx VALUES ($1)";

    let outcome = async {
        let mut tx = client.transaction().await?;
        tx.execute(insert, &[&1i32]).await?;
        {
            let savepoint = tx.savepoint("rs_sp").await?;
            savepoint.execute(insert, &[&2i32]).await?;
            let failed = savepoint.execute("SELECT 1 / $1::int4", &[&0i32]).await;
            r.result("tx-error-in-savepoint", failed);
            let aborted = savepoint.execute(insert, &[&9i32]).await;
            r.result("tx-aborted-until-rollback", aborted);
            r.result(
                "tx-rollback-savepoint",
                savepoint.rollback().await.map(|()| "ok"),
            );
        }
        tx.execute(insert, &[&3i32]).await?;
        tx.commit().await
    };
    r.result("tx-commit", outcome.await.map(|()| "ok"));

    // Dropped without a commit: rolled back.
    let dropped = async {
        let tx = client.transaction().await?;
        tx.execute(insert, &[&4i32]).await
    };
    r.result("tx-dropped", dropped.await);

    let nested = async {
        let mut tx = client.transaction().await?;
        let inner = tx.transaction().await?;
        inner.execute(insert, &[&5i32]).await?;
        inner.commit().await?;
        tx.commit().await
    };
    r.result("tx-nested", nested.await.map(|()| "ok"));

    let ids = client.query("SELECT id FROM rs_tx ORDER BY id", &[]).await;
    r.result(
        "tx-ids",
        ids.map(|rows| {
            rows.iter()
                .map(|row| row.get::<_, i32>(0))
                .collect::<Vec<_>>()
        }),
    );

    let chunks = async {
        let tx = client.transaction().await?;
        let portal = tx
            .bind("SELECT g FROM generate_series(1, $1::int4) g", &[&10i32])
            .await?;
        let mut sizes = Vec::new();
        loop {
            let rows = tx.query_portal(&portal, 4).await?;
            if rows.is_empty() {
                break;
            }
            sizes.push(
                rows.iter()
                    .map(|row| row.get::<_, i32>(0))
                    .collect::<Vec<_>>(),
            );
        }
        drop(portal);
        tx.commit().await?;
        Ok::<_, Error>(json!(sizes))
    };
    r.result("portal-chunks", chunks.await);

    let serializable = async {
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::Serializable)
            .read_only(true)
            .start()
            .await?;
        let level: String = tx
            .query_one("SHOW transaction_isolation", &[])
            .await?
            .get(0);
        let read_only: String = tx
            .query_one("SHOW transaction_read_only", &[])
            .await?
            .get(0);
        tx.rollback().await?;
        Ok::<_, Error>(json!({"level": level, "read-only": read_only}))
    };
    r.result("tx-serializable-read-only", serializable.await);
}
