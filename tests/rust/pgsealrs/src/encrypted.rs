//! tokio-postgres through pgseal on protected columns. tokio-postgres encodes
//! each binary parameter by the type pgseal's ParameterDescription reports (and
//! checks the Rust type against it), decodes binary results by the types of the
//! RowDescription pgseal rewrites, prepares every statement by name and
//! pipelines concurrent queries on one connection.
//!
//! Arguments: TENANT PREFIX; every value written starts with PREFIX, so the
//! pytest side can look for it in the raw tables and the logs.

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use futures_util::future::{join, join_all};
use futures_util::{pin_mut, SinkExt, TryStreamExt};
use serde_json::{json, Map, Value};
use tokio_postgres::binary_copy::BinaryCopyInWriter;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, Error, Row, SimpleQueryMessage, Statement};
use uuid::Uuid;

use crate::numeric::Numeric;
use crate::{connect, fatal, hex, Reporter};

const TYPED_COLUMNS: [&str; 14] = [
    "c_text",
    "c_varchar",
    "c_int",
    "c_bigint",
    "c_smallint",
    "c_numeric",
    "c_bool",
    "c_date",
    "c_ts",
    "c_tstz",
    "c_uuid",
    "c_jsonb",
    "c_bytea",
    "c_armored",
];

/// The logical types of TYPED_COLUMNS, as a binary COPY must send them.
const TYPED_TYPES: [Type; 14] = [
    Type::TEXT,
    Type::VARCHAR,
    Type::INT4,
    Type::INT8,
    Type::INT2,
    Type::NUMERIC,
    Type::BOOL,
    Type::DATE,
    Type::TIMESTAMP,
    Type::TIMESTAMPTZ,
    Type::UUID,
    Type::JSONB,
    Type::BYTEA,
    Type::TEXT,
];

fn tenant_and_prefix(args: &[String]) -> (i32, &str) {
    match args {
        [tenant, prefix] => match tenant.parse() {
            Ok(tenant) => (tenant, prefix),
            Err(err) => fatal("tenant", &err),
        },
        _ => fatal("arguments", &"expected TENANT PREFIX"),
    }
}

fn oids(types: &[Type]) -> Vec<u32> {
    types.iter().map(|t| t.oid()).collect()
}

fn statement_oids(statement: &Statement) -> Value {
    let fields: Vec<Type> = statement
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    json!({"params": oids(statement.params()), "fields": oids(&fields)})
}

/// A row of `typed`, NULL where None.
#[derive(Default)]
struct Typed {
    text: Option<String>,
    varchar: Option<String>,
    int: Option<i32>,
    bigint: Option<i64>,
    smallint: Option<i16>,
    numeric: Option<Numeric>,
    boolean: Option<bool>,
    date: Option<NaiveDate>,
    ts: Option<NaiveDateTime>,
    tstz: Option<DateTime<Utc>>,
    uuid: Option<Uuid>,
    jsonb: Option<Value>,
    bytea: Option<Vec<u8>>,
    armored: Option<String>,
}

impl Typed {
    fn sample(p: &str) -> Typed {
        let date = NaiveDate::from_ymd_opt(2024, 2, 29).expect("a date");
        let ts = NaiveDate::from_ymd_opt(2023, 12, 31)
            .and_then(|d| d.and_hms_micro_opt(23, 59, 58, 123456))
            .expect("a timestamp");
        let tstz = NaiveDate::from_ymd_opt(2021, 6, 1)
            .and_then(|d| d.and_hms_micro_opt(10, 30, 0, 654321))
            .expect("a timestamp");
        let mut bytea = format!("{p}-bytes").into_bytes();
        bytea.extend([0, 0xff]);
        Typed {
            text: Some(format!("{p}-text ü")),
            varchar: Some(format!("{p}-vc")),
            int: Some(i32::MIN),
            bigint: Some(i64::MAX),
            smallint: Some(i16::MIN),
            numeric: Some(Numeric("12345.678900".into())),
            boolean: Some(true),
            date: Some(date),
            ts: Some(ts),
            tstz: Some(Utc.from_utc_datetime(&tstz)),
            uuid: Some(Uuid::parse_str("6f1d3b1c-2b9a-4f3e-9d7a-0a1b2c3d4e5f").expect("a uuid")),
            jsonb: Some(json!({"n": [1, 2], "secret": format!("{p}-json")})),
            bytea: Some(bytea),
            armored: Some(format!("{p}-armour")),
        }
    }

    fn params(&self) -> [&(dyn ToSql + Sync); 14] {
        [
            &self.text,
            &self.varchar,
            &self.int,
            &self.bigint,
            &self.smallint,
            &self.numeric,
            &self.boolean,
            &self.date,
            &self.ts,
            &self.tstz,
            &self.uuid,
            &self.jsonb,
            &self.bytea,
            &self.armored,
        ]
    }

    fn read(row: &Row) -> Typed {
        Typed {
            text: row.get(0),
            varchar: row.get(1),
            int: row.get(2),
            bigint: row.get(3),
            smallint: row.get(4),
            numeric: row.get(5),
            boolean: row.get(6),
            date: row.get(7),
            ts: row.get(8),
            tstz: row.get(9),
            uuid: row.get(10),
            jsonb: row.get(11),
            bytea: row.get(12),
            armored: row.get(13),
        }
    }

    /// Column name to value: text for scalars, JSON for jsonb, hex for bytea.
    fn show(&self) -> Value {
        fn text<T: ToString>(value: &Option<T>) -> Value {
            value.as_ref().map(|v| v.to_string()).into()
        }
        let values = [
            text(&self.text),
            text(&self.varchar),
            text(&self.int),
            text(&self.bigint),
            text(&self.smallint),
            self.numeric.as_ref().map(|n| n.0.clone()).into(),
            text(&self.boolean),
            text(&self.date),
            self.ts
                .map(|t| t.format("%Y-%m-%d %H:%M:%S%.6f").to_string())
                .into(),
            self.tstz
                .map(|t| t.to_rfc3339_opts(SecondsFormat::Micros, true))
                .into(),
            text(&self.uuid),
            self.jsonb.clone().unwrap_or(Value::Null),
            self.bytea.as_deref().map(hex).into(),
            text(&self.armored),
        ];
        let shown: Map<String, Value> = TYPED_COLUMNS
            .iter()
            .map(|c| c.to_string())
            .zip(values)
            .collect();
        shown.into()
    }
}

fn with_tenant<'a>(tenant: &'a i32, row: &'a Typed) -> Vec<&'a (dyn ToSql + Sync)> {
    let mut params: Vec<&(dyn ToSql + Sync)> = vec![tenant];
    params.extend(row.params());
    params
}

/// The text of each row of a simple query's result.
fn simple_rows(messages: &[SimpleQueryMessage]) -> Vec<Vec<Option<String>>> {
    messages
        .iter()
        .filter_map(|message| match message {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

pub async fn typed(r: &Reporter, dsn: &str, args: &[String]) {
    let (tenant, p) = tenant_and_prefix(args);
    let client = connect(dsn).await;
    let columns = TYPED_COLUMNS.join(", ");
    let placeholders: Vec<String> = (1..=15).map(|i| format!("${i}")).collect();
    let insert_sql = format!(
        "INSERT INTO typed (business_id, {columns}) VALUES ({}) RETURNING id",
        placeholders.join(", ")
    );
    let insert = match client.prepare(&insert_sql).await {
        Ok(statement) => statement,
        Err(err) => return r.error("insert-oids", &err),
    };
    r.value("insert-oids", statement_oids(&insert));
    let select_sql = format!("SELECT {columns} FROM typed WHERE business_id = $1 AND id = $2");
    let select = match client.prepare(&select_sql).await {
        Ok(statement) => statement,
        Err(err) => return r.error("select-oids", &err),
    };
    r.value("select-oids", statement_oids(&select));

    let mut ids = Vec::new();
    for i in 0..3 {
        let row = Typed::sample(&format!("{p}{i}"));
        match client.query_one(&insert, &with_tenant(&tenant, &row)).await {
            Ok(inserted) => ids.push(inserted.get::<_, i32>(0)),
            Err(err) => return r.error("ids", &err),
        }
    }
    r.value("ids", ids.clone());
    for (i, id) in ids.iter().enumerate() {
        let row = client.query_one(&select, &[&tenant, id]).await;
        r.result(
            &format!("read-{i}"),
            row.map(|row| Typed::read(&row).show()),
        );
    }
    // The same reads pipelined on the one connection.
    let reads = join_all(
        ids.iter()
            .map(|id| async { client.query_one(&select, &[&tenant, id]).await }),
    )
    .await;
    let reads: Result<Vec<Value>, Error> = reads
        .into_iter()
        .map(|row| row.map(|row| Typed::read(&row).show()))
        .collect();
    r.result("pipelined-reads", reads);

    let nulls = Typed::default();
    let null_id = match client
        .query_one(&insert, &with_tenant(&tenant, &nulls))
        .await
    {
        Ok(row) => row.get::<_, i32>(0),
        Err(err) => return r.error("insert-nulls", &err),
    };
    r.value("insert-nulls", "ok");
    let row = client.query_one(&select, &[&tenant, &null_id]).await;
    r.result("read-nulls", row.map(|row| Typed::read(&row).show()));

    // Binary COPY of every logical type and a row of NULLs, sealed in the stream.
    let copied = async {
        let sink = client
            .copy_in(&format!(
                "COPY typed (business_id, {columns}) FROM STDIN BINARY"
            ))
            .await?;
        let types: Vec<Type> = [Type::INT4].into_iter().chain(TYPED_TYPES).collect();
        let writer = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(writer);
        let sample = Typed::sample(&format!("{p}c"));
        writer
            .as_mut()
            .write(&with_tenant(&tenant, &sample))
            .await?;
        writer.as_mut().write(&with_tenant(&tenant, &nulls)).await?;
        writer.finish().await
    };
    r.result("copy-in", copied.await);
    let rows = client
        .query(
            &format!("SELECT {columns} FROM typed WHERE business_id = $1 AND id > $2 ORDER BY id"),
            &[&tenant, &null_id],
        )
        .await;
    r.result(
        "copy-read",
        rows.map(|rows| {
            rows.iter()
                .map(|row| Typed::read(row).show())
                .collect::<Vec<_>>()
        }),
    );
    let copied_out = async {
        let sql = format!(
            "COPY (SELECT c_text, c_int FROM typed WHERE id = {}) TO STDOUT",
            ids[0]
        );
        let chunks: Vec<Bytes> = client.copy_out(&sql).await?.try_collect().await?;
        Ok::<_, Error>(String::from_utf8_lossy(&chunks.concat()).into_owned())
    };
    r.result("copy-out", copied_out.await);

    let updated = client
        .query_one(
            "UPDATE typed SET c_text = $1, c_numeric = $2 WHERE business_id = $3 AND id = $4
             RETURNING c_text, c_numeric",
            &[
                &format!("{p}-updated"),
                &Numeric("0.50".into()),
                &tenant,
                &ids[2],
            ],
        )
        .await;
    r.result(
        "update-returning",
        updated.map(|row| format!("{}|{}", row.get::<_, &str>(0), row.get::<_, Numeric>(1).0)),
    );

    // Numeric specials and extremes written in binary, read in binary and in text.
    let big = format!("1{}", "0".repeat(100));
    for value in [
        "NaN",
        "Infinity",
        "-Infinity",
        "-0.000000000000000000001",
        &big,
        "0",
        "-12.50",
    ] {
        let round_trip = async {
            let id: i32 = client
                .query_one(
                    "INSERT INTO typed (business_id, c_numeric) VALUES ($1, $2) RETURNING id",
                    &[&tenant, &Numeric(value.into())],
                )
                .await?
                .get(0);
            let sql = "SELECT c_numeric FROM typed WHERE business_id = $1 AND id = $2";
            let binary: Numeric = client.query_one(sql, &[&tenant, &id]).await?.get(0);
            let text = client
                .simple_query(&format!(
                    "SELECT c_numeric FROM typed WHERE business_id = {tenant} AND id = {id}"
                ))
                .await?;
            let text = simple_rows(&text)[0][0].clone().unwrap_or_default();
            Ok::<_, Error>(format!("{}|{text}", binary.0))
        };
        r.result(&format!("numeric-{value}"), round_trip.await);
    }

    let text = client
        .simple_query(&format!(
            "SELECT {columns} FROM typed WHERE business_id = {tenant} AND id = {}",
            ids[0]
        ))
        .await;
    r.result("simple-read", text.map(|m| json!(simple_rows(&m))));
}

const CUSTOMER_INSERT: &str = "INSERT INTO customers (business_id, name, email, tax_id, phone, \
                               credit) VALUES ($1, $2, $3, $4, $5, $6)";

async fn names(client: &Client, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Value, Error> {
    let rows = client.query(sql, params).await?;
    let shown: Vec<String> = rows
        .iter()
        .map(|row| format!("{}|{}", row.get::<_, &str>(0), row.get::<_, &str>(1)))
        .collect();
    Ok(shown.into())
}

async fn count(client: &Client, tenant: i32, pattern: &str) -> Result<i64, Error> {
    let sql = "SELECT count(*) FROM customers WHERE business_id = $1 AND name LIKE $2";
    Ok(client.query_one(sql, &[&tenant, &pattern]).await?.get(0))
}

pub async fn customers(r: &Reporter, dsn: &str, args: &[String]) {
    let (tenant, p) = tenant_and_prefix(args);
    let mut client = connect(dsn).await;
    // Refused by pgseal; the name marks it in the server's log, which it must never reach.
    let refused = format!(
        "SELECT phone FROM customers WHERE business_id = $1 AND name <> '{p}-refused' ORDER BY phone"
    );

    let insert = match client.prepare(CUSTOMER_INSERT).await {
        Ok(statement) => statement,
        Err(err) => return r.error("insert-oids", &err),
    };
    r.value("insert-oids", statement_oids(&insert));
    for i in 0..5 {
        let inserted = client
            .execute(
                &insert,
                &[
                    &tenant,
                    &format!("{p}-n{i}"),
                    &format!("{p}-{i}@Example.org"),
                    &format!("{p}-TAX-{i}"),
                    &format!("{p}-555-{i}"),
                    &Numeric(format!("{}.5", 10 + i)),
                ],
            )
            .await;
        if let Err(err) = inserted {
            return r.error("insert", &err);
        }
    }
    let by_email = "SELECT name, phone FROM customers WHERE business_id = $1 AND email = $2";
    let by_tax_id = "SELECT name, phone FROM customers WHERE business_id = $1 AND tax_id = $2";
    let spaced = format!("  {p}-3@EXAMPLE.org ");
    r.result(
        "search-email",
        names(&client, by_email, &[&tenant, &spaced]).await,
    );
    let tax_id = format!("{p}-TAX-1");
    r.result(
        "search-tax-id",
        names(&client, by_tax_id, &[&tenant, &tax_id]).await,
    );
    let lower = format!("{p}-tax-1");
    r.result(
        "search-tax-id-case",
        names(&client, by_tax_id, &[&tenant, &lower]).await,
    );
    let emails = vec![
        format!("{p}-0@example.org"),
        format!("{p}-4@EXAMPLE.ORG"),
        "nobody@example.org".to_owned(),
    ];
    let sql = "SELECT name, phone FROM customers WHERE business_id = $1 AND email = ANY($2) \
               ORDER BY name";
    r.result(
        "search-email-any",
        names(&client, sql, &[&tenant, &emails]).await,
    );
    let tax_ids = vec![format!("{p}-TAX-2"), format!("{p}-TAX-3")];
    let sql = "SELECT name, phone FROM customers WHERE business_id = $1 AND tax_id = ANY($2) \
               ORDER BY name";
    r.result(
        "search-tax-id-any",
        names(&client, sql, &[&tenant, &tax_ids]).await,
    );
    let credit = client
        .query_one(
            "SELECT credit FROM customers WHERE business_id = $1 AND email = $2",
            &[&tenant, &format!("{p}-2@example.org")],
        )
        .await;
    r.result("credit", credit.map(|row| row.get::<_, Numeric>(0).0));

    pipelined(r, &client, tenant, p, &refused, &insert).await;
    copy(r, &client, tenant, p).await;

    // Refused twice (a fresh statement each time), then the connection is usable.
    for check in ["refused", "refused-again"] {
        let rows = client.query(refused.as_str(), &[&tenant]).await;
        r.result(check, rows.map(|rows| rows.len()));
    }
    let after = client.query("SELECT $1::int4", &[&1i32]).await;
    r.result("after-refused", after.map(|rows| rows[0].get::<_, i32>(0)));
    let simple = refused.replace("$1", &tenant.to_string());
    r.result(
        "refused-simple",
        client.simple_query(&simple).await.map(|_| "ran"),
    );
    let after = client.simple_query("SELECT 2").await;
    r.result(
        "after-refused-simple",
        after.map(|m| json!(simple_rows(&m))),
    );

    // A portal read in chunks: Execute with a row limit, PortalSuspended, Execute again.
    let chunks = async {
        let tx = client.transaction().await?;
        let sql = "SELECT name, phone FROM customers WHERE business_id = $1 AND name LIKE $2 \
                   ORDER BY name";
        let portal = tx.bind(sql, &[&tenant, &format!("{p}-b1%")]).await?;
        let mut chunks = Vec::new();
        loop {
            let rows = tx.query_portal(&portal, 4).await?;
            if rows.is_empty() {
                break;
            }
            let names: Vec<String> = rows
                .iter()
                .map(|row| format!("{}|{}", row.get::<_, &str>(0), row.get::<_, &str>(1)))
                .collect();
            chunks.push(names);
        }
        drop(portal);
        tx.commit().await?;
        Ok::<_, Error>(json!(chunks))
    };
    r.result("portal-chunks", chunks.await);

    // A CancelRequest through pgseal, and the connection afterwards.
    let token = client.cancel_token();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let sleep = client
        .query(
            "SELECT phone, pg_sleep(30)::text FROM customers WHERE business_id = $1 AND tax_id = $2",
            &[&tenant, &format!("{p}-TAX-0")],
        )
        .await;
    r.result("cancel-error", sleep.map(|rows| rows.len()));
    let sent = canceller.await.expect("the cancel task");
    r.result("cancel-request", sent.map(|()| "ok"));
    let phone = client
        .query_one(
            "SELECT phone FROM customers WHERE business_id = $1 AND tax_id = $2",
            &[&tenant, &format!("{p}-TAX-0")],
        )
        .await;
    r.result(
        "cancel-then-query",
        phone.map(|row| row.get::<_, String>(0)),
    );

    // Protected writes in a transaction, one of them undone by a savepoint.
    let tx = async {
        let mut tx = client.transaction().await?;
        let row = |name: &str| {
            (
                format!("{p}-{name}"),
                format!("{p}-{name}@x"),
                format!("{p}-555-{name}"),
            )
        };
        let (name, email, phone) = row("t1");
        let none: Option<&str> = None;
        let no_credit: Option<Numeric> = None;
        tx.execute(
            CUSTOMER_INSERT,
            &[&tenant, &name, &email, &none, &phone, &no_credit],
        )
        .await?;
        let savepoint = tx.savepoint("rs_sp").await?;
        let (name, email, phone) = row("t2");
        savepoint
            .execute(
                CUSTOMER_INSERT,
                &[&tenant, &name, &email, &none, &phone, &no_credit],
            )
            .await?;
        savepoint.rollback().await?;
        tx.commit().await?;
        count(&client, tenant, &format!("{p}-t%")).await
    };
    r.result("tx-rows", tx.await);

    let total = client
        .query_one(
            "SELECT count(*) FROM customers WHERE business_id = $1",
            &[&tenant],
        )
        .await;
    r.result("total-rows", total.map(|row| row.get::<_, i64>(0)));
}

/// 22 statements in flight on one connection, each with its own Sync: a
/// refused SELECT, an insert naming no tenant and a duplicate among inserts.
async fn pipelined(
    r: &Reporter,
    client: &Client,
    tenant: i32,
    p: &str,
    refused: &str,
    insert: &Statement,
) {
    let no_tenant = format!("INSERT INTO customers (name, phone) VALUES ('{p}-bnotenant', $1)");
    let none: Option<String> = None;
    let statements = (0..22).map(|i| {
        let (none, no_tenant) = (&none, &no_tenant);
        async move {
            match i {
                5 => client.execute(refused, &[&tenant]).await,
                15 => {
                    client
                        .execute(no_tenant.as_str(), &[&format!("{p}-b-555-x")])
                        .await
                }
                _ => {
                    // Statement 12 writes the name of statement 3 again: UNIQUE (business_id, name).
                    let n = if i == 12 { 3 } else { i };
                    let params: [&(dyn ToSql + Sync); 6] = [
                        &tenant,
                        &format!("{p}-b{n}"),
                        &format!("{p}-b{n}@Example.org"),
                        none,
                        &format!("{p}-b-555-{n}"),
                        &Option::<Numeric>::None,
                    ];
                    client.execute(insert, &params).await
                }
            }
        }
    });
    for (i, result) in join_all(statements).await.into_iter().enumerate() {
        r.result(&format!("pipeline-{i}"), result);
    }
    r.result(
        "pipeline-rows",
        count(client, tenant, &format!("{p}-b%")).await,
    );
    let sql = "SELECT name, phone FROM customers WHERE business_id = $1 AND email = $2";
    let email = format!("{p}-B7@example.org");
    r.result(
        "pipeline-search",
        names(client, sql, &[&tenant, &email]).await,
    );
}

/// A COPY TO's text.
async fn copy_text(client: &Client, sql: &str) -> Result<String, Error> {
    let chunks: Vec<Bytes> = client.copy_out(sql).await?.try_collect().await?;
    Ok(String::from_utf8_lossy(&chunks.concat()).into_owned())
}

/// COPY into customers, text and binary, sealed in the stream; COPY TO opened.
async fn copy(r: &Reporter, client: &Client, tenant: i32, p: &str) {
    let text_in = async {
        let sink = client
            .copy_in("COPY customers (business_id, name, email, tax_id, phone, credit) FROM STDIN")
            .await?;
        pin_mut!(sink);
        let mut data = String::new();
        for i in 0..100 {
            let email = if i % 10 == 0 {
                "\\N".to_owned()
            } else {
                format!("{p}-c{i}@Example.org")
            };
            data.push_str(&format!(
                "{tenant}\t{p}-c{i}\t{email}\t{p}-CTAX-{i}\t{p}-c-555-{i}\t{i}.25\n"
            ));
        }
        sink.send(Bytes::from(data)).await?;
        sink.finish().await
    };
    r.result("copy-in-text", text_in.await);

    let binary_in = async {
        let sink = client
            .copy_in("COPY customers (business_id, name, email, tax_id, phone, credit) FROM STDIN BINARY")
            .await?;
        let types = [
            Type::INT4,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::TEXT,
            Type::NUMERIC,
        ];
        let writer = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(writer);
        for i in 0..100 {
            let email = (i % 10 != 0).then(|| format!("{p}-d{i}@Example.org"));
            let credit = Numeric(format!("{i}.75"));
            writer
                .as_mut()
                .write(&[
                    &tenant,
                    &format!("{p}-d{i}"),
                    &email,
                    &format!("{p}-DTAX-{i}"),
                    &format!("{p}-d-555-{i}"),
                    &credit,
                ])
                .await?;
        }
        writer.finish().await
    };
    r.result("copy-in-binary", binary_in.await);

    // A table without protected columns: COPY through the extended protocol
    // passes, in a session that encrypts.
    let plain = async {
        let sink = client.copy_in("COPY plain (id, v) FROM STDIN").await?;
        pin_mut!(sink);
        let data = format!("{tenant}\t{p}-plain-1\n{tenant}\t{p}-plain\\t2\n");
        sink.send(Bytes::from(data)).await?;
        let copied = sink.finish().await?;
        let types = [Type::INT4, Type::TEXT];
        let sink = client
            .copy_in("COPY plain (id, v) FROM STDIN BINARY")
            .await?;
        let writer = BinaryCopyInWriter::new(sink, &types);
        pin_mut!(writer);
        writer
            .as_mut()
            .write(&[&tenant, &format!("{p}-plain-3")])
            .await?;
        let binary = writer.finish().await?;
        let sql = format!(
            "COPY (SELECT v FROM plain WHERE id = {tenant} ORDER BY v COLLATE \"C\") TO STDOUT"
        );
        let chunks: Vec<Bytes> = client.copy_out(&sql).await?.try_collect().await?;
        let out = String::from_utf8_lossy(&chunks.concat()).into_owned();
        Ok::<_, Error>(json!({"text": copied, "binary": binary, "out": out}))
    };
    r.result("copy-plain", plain.await);

    let by_email = "SELECT name, phone FROM customers WHERE business_id = $1 AND email = $2";
    for (check, email) in [("copy-search-text", "c17"), ("copy-search-binary", "d17")] {
        let email = format!("{p}-{email}@example.ORG");
        r.result(check, names(client, by_email, &[&tenant, &email]).await);
    }
    let tax_ids = vec![format!("{p}-CTAX-20"), format!("{p}-DTAX-99")];
    let sql = "SELECT name, phone FROM customers WHERE business_id = $1 AND tax_id = ANY($2) \
               ORDER BY name";
    r.result(
        "copy-search-tax-id-any",
        names(client, sql, &[&tenant, &tax_ids]).await,
    );
    let sql = "SELECT credit FROM customers WHERE business_id = $1 AND tax_id = $2";
    let credit = client.query(sql, &[&tenant, &format!("{p}-DTAX-3")]).await;
    let credit = credit.map(|rows| {
        rows.iter()
            .map(|row| row.get::<_, Numeric>(0).0)
            .collect::<Vec<_>>()
    });
    r.result("copy-credit", credit);
    let nulls = client
        .query_one(
            "SELECT count(*) FROM customers WHERE business_id = $1 AND email IS NULL",
            &[&tenant],
        )
        .await;
    r.result("copy-null-emails", nulls.map(|row| row.get::<_, i64>(0)));

    let sql = format!(
        "COPY (SELECT name, phone FROM customers WHERE business_id = {tenant} AND name = '{p}-c5') \
         TO STDOUT"
    );
    r.result("copy-out", copy_text(client, &sql).await);
    // Two COPY TOs in flight on the one connection: each opened by its own transform.
    let other = format!(
        "COPY (SELECT credit, email FROM customers WHERE business_id = {tenant} AND name = '{p}-d6') \
         TO STDOUT"
    );
    let (first, second) = join(copy_text(client, &sql), copy_text(client, &other)).await;
    r.result(
        "copy-out-pipelined",
        first.and_then(|a| second.map(|b| vec![a, b])),
    );

    // No tenant column and none for the session: refused, nothing written.
    let no_tenant = async {
        let sink = client
            .copy_in("COPY customers (name, phone) FROM STDIN")
            .await?;
        pin_mut!(sink);
        sink.send(Bytes::from(format!("{p}-notenant\t{p}-notenant-555\n")))
            .await?;
        sink.finish().await
    };
    r.result("copy-without-tenant", no_tenant.await);
    let unsupported = client
        .copy_in::<_, Bytes>("COPY customers (business_id, name, phone) FROM STDIN (DELIMITER ',')")
        .await;
    r.result("copy-unsupported-option", unsupported.map(|_| "started"));
    let after = client.query_one("SELECT 3::int4", &[]).await;
    r.result("after-copy-refusals", after.map(|row| row.get::<_, i32>(0)));
}
