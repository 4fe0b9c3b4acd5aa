// node-postgres through pgseal on protected columns (tests/encrypted's stack).
// argv[2] is the business_id this run writes under, argv[3..] the scenarios.
// Values are printed as JSON: Dates as ISO strings, Buffers as hex.
'use strict'

const pg = require('pg')
const Cursor = require('pg-cursor')
const { from: copyFrom, to: copyTo } = require('pg-copy-streams')
const { pipeline } = require('node:stream/promises')
const { Readable, Writable } = require('node:stream')
const { emit, failure, runAll } = require('./lib')

const tenant = Number(process.argv[2])
const only = process.argv.slice(3)

function plain(value) {
  if (value instanceof Date) return value.toISOString()
  if (Buffer.isBuffer(value)) return 'hex:' + value.toString('hex')
  return value
}

const plainRow = (row) => Object.fromEntries(Object.entries(row).map(([k, v]) => [k, plain(v)]))

async function withClient(config, body) {
  const client = new pg.Client(config)
  await client.connect()
  try {
    return await body(client)
  } finally {
    await client.end()
  }
}

const TYPED_COLUMNS = [
  'c_text', 'c_varchar', 'c_int', 'c_bigint', 'c_smallint', 'c_numeric', 'c_bool',
  'c_date', 'c_ts', 'c_tstz', 'c_uuid', 'c_jsonb', 'c_bytea', 'c_armored',
]

// The JS values an application would hand to pg for each logical type.
const TYPED_VALUES = [
  'node text ✓ \'quoted\'',
  'node-vc',
  -42,
  9007199254740993n,
  7,
  '12345.678900',
  true,
  new Date(Date.UTC(2024, 1, 29)),
  new Date(Date.UTC(2024, 1, 29, 12, 34, 56, 789)),
  new Date(Date.UTC(1999, 11, 31, 23, 59, 59, 1)),
  'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',
  { node: ['x', 1], nested: { 'ü': null } },
  Buffer.from([0, 1, 2, 0xfe, 0xff, 0x5c]),
  'node armour',
]

const SELECT_TYPED = `SELECT ${TYPED_COLUMNS.join(', ')} FROM typed WHERE business_id = $1 ORDER BY id`

const scenarios = {
  async typed() {
    await withClient({}, async (c) => {
      const placeholders = TYPED_COLUMNS.map((_, i) => `$${i + 2}`).join(', ')
      const insert = `INSERT INTO typed (business_id, ${TYPED_COLUMNS.join(', ')}) VALUES ($1, ${placeholders}) RETURNING ${TYPED_COLUMNS.join(', ')}`
      const returned = await c.query(insert, [tenant, ...TYPED_VALUES])
      emit('typed:returning', plainRow(returned.rows[0]))
      // every column NULL, and numbers given as JS numbers/strings in other shapes
      await c.query(`INSERT INTO typed (business_id, ${TYPED_COLUMNS.join(', ')}) VALUES ($1, ${placeholders})`, [
        tenant, ...TYPED_COLUMNS.map(() => null),
      ])
      await c.query('INSERT INTO typed (business_id, c_int, c_numeric, c_bool, c_bigint, c_jsonb) VALUES ($1, $2, $3, $4, $5, $6)', [
        tenant, '17', 0.25, false, -1, JSON.stringify([1, 'two']), // pg sends JS arrays as Postgres arrays
      ])
      const extended = await c.query(SELECT_TYPED, [tenant])
      emit('typed:extended', extended.rows.map(plainRow))
      emit('typed:oids', extended.fields.map((f) => [f.name, f.dataTypeID]))
      const simple = await c.query(`SELECT ${TYPED_COLUMNS.join(', ')} FROM typed WHERE business_id = ${tenant} ORDER BY id`)
      emit('typed:simple', simple.rows.map(plainRow))
      // pg decodes binary fields through a UTF-8 string (lossy above 0x7f), so
      // compare the bytes pgseal encodes with the ones Postgres itself sends for
      // the same values, both seen through the same hex parser.
      const hex = { getTypeParser: (oid, format) => format === 'binary' ? (v) => Buffer.from(v).toString('hex') : pg.types.getTypeParser(oid, format) }
      const binaryCols = 'c_text, c_int, c_bigint, c_smallint, c_bool, c_numeric, c_date, c_ts, c_tstz, c_uuid, c_bytea'
      const binary = await c.query({ text: `SELECT ${binaryCols} FROM typed WHERE business_id = $1 ORDER BY id`, values: [tenant], binary: true, types: hex })
      emit('typed:binary', binary.rows)
      emit('typed:binary_formats', binary.fields.map((f) => f.format))
      const reference = await c.query({
        text:
          "SELECT (-42)::int4 AS c_int, 9007199254740993::int8 AS c_bigint, $1::int2 AS c_smallint," +
          " true AS c_bool, 12345.678900::numeric AS c_numeric, '2024-02-29'::date AS c_date," +
          " '2024-02-29 12:34:56.789'::timestamp AS c_ts, '1999-12-31 23:59:59.001+00'::timestamptz AS c_tstz," +
          " 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::uuid AS c_uuid, '\\x000102feff5c'::bytea AS c_bytea",
        values: [7],
        binary: true,
        types: hex,
      })
      emit('typed:binary_reference', reference.rows[0])
      const arrays = await c.query({ text: `SELECT c_int, c_uuid FROM typed WHERE business_id = $1 ORDER BY id`, values: [tenant], rowMode: 'array' })
      emit('typed:row_mode_array', arrays.rows)
      const tooLong = await c.query('INSERT INTO typed (business_id, c_varchar) VALUES ($1, $2)', [tenant, 'x'.repeat(21)]).catch(failure)
      emit('typed:varchar_too_long', tooLong.code)
      const badInt = await c.query('INSERT INTO typed (business_id, c_int) VALUES ($1, $2)', [tenant, 'forty']).catch(failure)
      emit('typed:bad_int', badInt.code)
      const n = await c.query('SELECT count(*)::int AS n FROM typed WHERE business_id = $1', [tenant])
      emit('typed:count_after_errors', n.rows[0].n)
    })
  },

  // Run with a TZ other than UTC: pg sends Dates in local time with an offset
  // ("2024-02-29T05:30:00.000+05:30"), which pgseal must read as Postgres would.
  async dates() {
    const dates = [
      new Date(Date.UTC(2024, 1, 29)),
      new Date(Date.UTC(2024, 1, 29, 20, 0, 0, 5)),
      new Date(Date.UTC(1970, 0, 1)),
      new Date(Date.UTC(2038, 0, 19, 3, 14, 8)),
      new Date(Date.UTC(1, 0, 1, 12)),
    ]
    await withClient({}, async (c) => {
      for (const d of dates) {
        await c.query('INSERT INTO typed (business_id, c_date, c_ts, c_tstz) VALUES ($1, $2, $3, $4)', [tenant, d, d, d])
      }
      const sealed = await c.query('SELECT c_date, c_ts, c_tstz FROM typed WHERE business_id = $1 ORDER BY id', [tenant])
      emit('dates:sealed', sealed.rows.map(plainRow))
      const reference = []
      for (const d of dates) {
        const r = await c.query('SELECT $1::date AS c_date, $2::timestamp AS c_ts, $3::timestamptz AS c_tstz', [d, d, d])
        reference.push(plainRow(r.rows[0]))
      }
      emit('dates:postgres', reference)
      const found = await c.query('SELECT count(*)::int AS n FROM typed WHERE business_id = $1 AND c_tstz IS NOT NULL', [tenant])
      emit('dates:count', found.rows[0].n)
    })
  },

  // Differential: each value pg would send for a column goes into the protected
  // column through pgseal and into a plain column of the logical type (a temp
  // table, which Postgres itself parses); the outcomes must be the same.
  async versus_postgres() {
    const cases = {
      c_text: ['', ' padded ', 'tab\there', 'back\\slash', Buffer.from('binary ✓'), Buffer.from([0xff, 0xfe])],
      c_varchar: ['x'.repeat(20), 'y'.repeat(20) + '   ', '€'.repeat(20), 'z'.repeat(21), 'w'.repeat(19) + ' ✓'],
      c_int: [2147483647, -2147483648, 2147483648, ' 12 ', '+5', 1.5, '0x1F', '1_000', '', -0, 1e3, Buffer.from([0, 0, 0, 42]), Buffer.from([255, 255, 255, 214]), Buffer.from([0, 42])],
      c_smallint: [32767, -32768, 32768, '0o17', ' -3', Buffer.from([0x80, 0]), Buffer.from([1, 2, 3])],
      c_bigint: [9007199254740993n, -9223372036854775808n, 9223372036854775808n, 2 ** 53, '0b101', '-0', Buffer.from([0, 0, 0, 0, 0, 0, 1, 0])],
      c_numeric: [1e21, 1.5e-7, -0, NaN, Infinity, -Infinity, 0.1 + 0.2, '  12.50  ', '1e-3', '-.5', '+3', 'abc', '1_000.000_1', '0x10', '-0.000', Buffer.from([0, 1, 0, 0, 0, 0, 0, 2, 0, 42]), Buffer.from([0, 0, 0, 0, 0xc0, 0, 0, 0]), Buffer.from([0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10])],
      c_bool: [true, false, 't', 'yes', 'off', '1', ' true ', 'maybe', 'TRUE', 'of', Buffer.from([1]), Buffer.from([0]), Buffer.from([2])],
      c_date: [new Date(Date.UTC(2024, 1, 29)), 'infinity', '-infinity', 'epoch', '2024-02-30', '0044-03-15 BC', '2024-02-29 23:59:59.999999+14', Buffer.from([0, 0, 0x20, 0x77]), Buffer.from([0x7f, 0xff, 0xff, 0xff])],
      c_ts: [new Date(Date.UTC(2024, 1, 29, 1, 2, 3, 4)), 'infinity', '2024-02-29 12:00:00+05', '2024-02-29T12:00:00.1234567', 'epoch', '2024-02-29 24:00:00', '1999-01-08 04:05:06 BC', '2000-01-01 00:00:00.9999995', Buffer.from([0, 0, 0, 0, 0, 0, 0, 1]), Buffer.from([0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff])],
      c_tstz: [new Date(Date.UTC(2024, 1, 29, 1, 2, 3, 4)), '2024-02-29 12:00:00 America/New_York', '2024-02-29 12:00:00 EST', 'infinity', '2024-02-29 12:00:00', '2024-02-29 12:00:00+05:30:15', '2024-07-01 00:30 Europe/Amsterdam', '0001-01-01 00:00:00+00 BC', Buffer.from([0, 0, 0, 0, 0, 0, 0, 0])],
      c_uuid: ['A0EEBC99-9C0B-4EF8-BB6D-6BB9BD380A11', '{a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11}', 'a0eebc999c0b4ef8bb6d6bb9bd380a11', 'a0eebc99-9c0b4ef8-bb6d6bb9-bd380a11', 'xyz', Buffer.alloc(16, 0xab), Buffer.alloc(15)],
      c_jsonb: [{ b: 1, a: [true, null] }, '  {"b":1,"a":2}  ', '"str"', 'null', '{"a":1,"a":2}', '1e400', '"\\u0000"', '[1, 2', 12.5, '"\\ud83d\\ude00"', Buffer.from('\x01{"bin": [1]}'), Buffer.from('\x02{}')],
      c_bytea: [Buffer.from([1, 2, 255]), Buffer.alloc(0), '\\x4142', 'abc', '\\001\\\\', '\\x4', '\\xZZ'],
    }
    const types = {
      c_text: 'text', c_varchar: 'varchar(20)', c_int: 'integer', c_smallint: 'smallint', c_bigint: 'bigint',
      c_numeric: 'numeric', c_bool: 'boolean', c_date: 'date', c_ts: 'timestamp', c_tstz: 'timestamptz',
      c_uuid: 'uuid', c_jsonb: 'jsonb', c_bytea: 'bytea',
    }
    await withClient({}, async (c) => {
      const columns = Object.entries(types).map(([k, v]) => `${k} ${v}`).join(', ')
      await c.query(`CREATE TEMP TABLE node_reference (id serial, ${columns})`)
      const outcome = (promise) => promise.then((r) => ({ value: plain(Object.values(r.rows[0])[0]) }), (e) => ({ code: e.code }))
      // the text exactly as it came on the wire, not pg's reading of it
      const wire = { getTypeParser: () => (v) => v }
      const insert = (table, column, values) =>
        outcome(c.query({ text: `INSERT INTO ${table} (${column}) VALUES (${values.map((_, i) => `$${i + 1}`).join(', ')}) RETURNING ${column.split(', ').pop()}`, values, types: wire }))
      const results = []
      for (const [column, values] of Object.entries(cases)) {
        for (const [i, value] of values.entries()) {
          const sealed = await insert('typed', `business_id, ${column}`, [tenant, value])
          const postgres = await insert('node_reference', column, [value])
          results.push({ column, i, binary: Buffer.isBuffer(value), sealed, postgres })
        }
      }
      emit('versus:results', results)
      // pgseal reads only the ISO forms of date/time input (docs/ENCRYPTED_SQL.md)
      const isoOnly = []
      for (const [column, value] of [['c_date', '20240229'], ['c_date', 'Feb 29 2024'], ['c_date', 'J2451545'], ['c_ts', 'Feb 29 2024 12:00'], ['c_tstz', '12/31/1999 23:59 UTC']]) {
        const sealed = await outcome(c.query(`INSERT INTO typed (business_id, ${column}) VALUES ($1, $2) RETURNING ${column}`, [tenant, value]))
        const postgres = await outcome(c.query(`SELECT $1::${types[column]} AS v`, [value]))
        isoOnly.push({ column, value, sealed, postgres })
      }
      emit('versus:iso_only', isoOnly)
      // read back through a fresh SELECT too
      const reread = await c.query({ text: `SELECT ${Object.keys(types).join(', ')} FROM typed WHERE business_id = $1 ORDER BY id`, values: [tenant], types: wire })
      const reference = await c.query({ text: `SELECT ${Object.keys(types).join(', ')} FROM node_reference ORDER BY id`, types: wire })
      emit('versus:reread', reread.rows.map(plainRow))
      emit('versus:reread_postgres', reference.rows.map(plainRow))
    })
  },

  async search() {
    await withClient({}, async (c) => {
      for (let i = 0; i < 5; i++) {
        await c.query(
          'INSERT INTO customers (business_id, name, email, tax_id, phone, credit) VALUES ($1, $2, $3, $4, $5, $6)',
          [tenant, `node-s${i}`, `Node.S${i}@Example.com`, `NTAX-${i}`, `555-N${i}`, `${i}.5`]
        )
      }
      const eq = await c.query('SELECT name, phone, credit FROM customers WHERE business_id = $1 AND email = $2', [tenant, '  node.s3@EXAMPLE.com '])
      emit('search:email', eq.rows)
      const any = await c.query('SELECT name FROM customers WHERE business_id = $1 AND tax_id = ANY($2) ORDER BY name', [tenant, ['NTAX-1', 'NTAX-4', 'NTAX-none']])
      emit('search:tax_any', any.rows.map((r) => r.name))
      const anyEmail = await c.query('SELECT name FROM customers WHERE business_id = $1 AND email = ANY($2::text[]) ORDER BY name', [tenant, ['NODE.S0@example.com', 'node.s2@example.com']])
      emit('search:email_any', anyEmail.rows.map((r) => r.name))
      const anyEdge = []
      for (const values of [[], [null, 'NTAX-3'], ['NTAX-0', 'NTAX-0'], Array.from({ length: 500 }, (_, k) => `NTAX-${k}`)]) {
        const r = await c.query('SELECT name FROM customers WHERE business_id = $1 AND tax_id = ANY($2) ORDER BY name', [tenant, values])
        anyEdge.push(r.rows.map((row) => row.name))
      }
      emit('search:any_edges', anyEdge)
      const cancelled = new pg.Query('SELECT phone, pg_sleep(30) FROM customers WHERE business_id = $1 AND tax_id = $2', [tenant, 'NTAX-1'])
      const outcome = new Promise((resolve) => {
        cancelled.on('error', (err) => resolve(err.code))
        cancelled.on('end', () => resolve('finished'))
      })
      c.query(cancelled)
      await new Promise((resolve) => setTimeout(resolve, 300))
      new pg.Client().cancel(c, cancelled)
      emit('search:cancelled', await outcome)
      const literal = await c.query(`SELECT name FROM customers WHERE business_id = ${tenant} AND tax_id = 'NTAX-2'`)
      emit('search:literal', literal.rows.map((r) => r.name))
      const none = await c.query('SELECT name FROM customers WHERE business_id = $1 AND tax_id = $2', [tenant, 'ntax-2'])
      emit('search:case_sensitive_tax', none.rows)
      const upd = await c.query('UPDATE customers SET phone = $1 WHERE business_id = $2 AND email = $3 RETURNING name, phone', ['555-NEW', tenant, 'node.s1@example.com'])
      emit('search:update', upd.rows)
    })
  },

  async refused() {
    for (const mode of ['serial', 'pipeline']) {
      await withClient({ pipeline: mode === 'pipeline' }, async (c) => {
        await c.query('INSERT INTO customers (business_id, name, phone) VALUES ($1, $2, $3)', [tenant, `node-r-${mode}`, '555-R'])
        const work = [
          c.query('SELECT name FROM customers WHERE business_id = $1 ORDER BY phone', [tenant]),
          c.query('SELECT $1::int AS after', [1]),
          c.query('SELECT name FROM customers WHERE business_id = $1 AND email LIKE $2', [tenant, '%x%']),
          c.query(`SELECT phone FROM customers WHERE business_id = $1 AND name = $2`, [tenant, `node-r-${mode}`]),
          c.query('SELECT phone FROM customers ORDER BY phone'),
          c.query('SELECT 2 AS simple_after'),
        ]
        const settled = await Promise.allSettled(work)
        emit(
          `refused:${mode}`,
          settled.map((s) => (s.status === 'fulfilled' ? s.value.rows : failure(s.reason)))
        )
        // inside a transaction the refusal aborts it, as a server error would
        const tx = [
          c.query('BEGIN'),
          c.query('INSERT INTO customers (business_id, name, phone) VALUES ($1, $2, $3)', [tenant, `node-rtx-${mode}`, '555-R']),
          c.query('SELECT phone FROM customers WHERE business_id = $1 ORDER BY phone', [tenant]),
          c.query('SELECT 1 AS in_failed_tx'),
          c.query('ROLLBACK'),
          c.query('SELECT count(*)::int AS n FROM customers WHERE business_id = $1', [tenant]),
        ]
        const txSettled = await Promise.allSettled(tx)
        emit(
          `refused:${mode}:tx`,
          txSettled.map((s) => (s.status === 'fulfilled' ? s.value.rows : { code: s.reason.code }))
        )
      })
    }
  },

  async named() {
    await withClient({}, async (c) => {
      for (let i = 0; i < 200; i++) {
        await c.query({
          name: 'node_enc_ins',
          text: 'INSERT INTO customers (business_id, name, email, phone, credit) VALUES ($1, $2, $3, $4, $5)',
          values: [tenant, `node-p${i}`, `np${i}@x.example`, `555-P${i}`, i / 4],
        })
      }
      let hits = 0
      for (let i = 0; i < 200; i++) {
        const r = await c.query({
          name: 'node_enc_sel',
          text: 'SELECT name, phone, credit FROM customers WHERE business_id = $1 AND email = $2',
          values: [tenant, `NP${i}@X.EXAMPLE`],
        })
        const row = r.rows[0]
        if (r.rows.length === 1 && row.name === `node-p${i}` && row.phone === `555-P${i}` && Number(row.credit) === i / 4) hits++
      }
      emit('named:hits', hits)
      const sample = await c.query({ name: 'node_enc_sel', values: [tenant, 'np7@x.example'] })
      emit('named:sample', sample.rows)
      emit('named:fields', sample.fields.map((f) => [f.name, f.dataTypeID]))
    })
  },

  // Pipelined writes, a Pool reading concurrently, pg-cursor's portal read in
  // chunks (Execute with a row limit, Flush, no Sync until close), and a simple
  // Query holding several statements.
  async streams() {
    await withClient({ pipeline: true }, async (c) => {
      const writes = []
      for (let i = 0; i < 300; i++) {
        writes.push(c.query('INSERT INTO customers (business_id, name, email, phone) VALUES ($1, $2, $3, $4)', [tenant, `node-q${i}`, `nq${i}@x.example`, `555-Q${i}`]))
      }
      emit('streams:pipelined', (await Promise.allSettled(writes)).filter((r) => r.status === 'fulfilled').length)
    })
    const pool = new pg.Pool({ max: 4 })
    try {
      const reads = []
      for (let i = 0; i < 300; i += 3) {
        reads.push(pool.query('SELECT name, phone FROM customers WHERE business_id = $1 AND email = $2', [tenant, `NQ${i}@x.example`]))
      }
      const done = await Promise.all(reads)
      emit('streams:pool', done.every((r, k) => r.rows.length === 1 && r.rows[0].phone === `555-Q${3 * k}`))
    } finally {
      await pool.end()
    }
    await withClient({}, async (c) => {
      const cursor = c.query(new Cursor('SELECT name, email, phone FROM customers WHERE business_id = $1 ORDER BY id', [tenant]))
      const seen = []
      for (;;) {
        const rows = await cursor.read(37)
        if (rows.length === 0) break
        seen.push(rows.length)
        for (const r of rows) {
          const i = Number(r.name.slice('node-q'.length))
          if (r.email !== `nq${i}@x.example` || r.phone !== `555-Q${i}`) seen.push(`bad ${r.name}`)
        }
      }
      await cursor.close()
      emit('streams:cursor_chunks', seen)
      const refused = c.query(new Cursor('SELECT phone FROM customers WHERE business_id = $1 ORDER BY phone', [tenant]))
      emit('streams:cursor_refused', await refused.read(10).then(() => 'rows', (e) => e.code))
      const multi = await c.query(
        `INSERT INTO customers (business_id, name, phone) VALUES (${tenant}, 'node-m', '555-Q-multi'); SELECT phone FROM customers WHERE business_id = ${tenant} AND name = 'node-m'`
      )
      emit('streams:multi', multi.map((r) => [r.command, r.rows]))
      // extended protocol with no parameters: the literal is sealed by the rewrite
      const extended = await c.query({
        text: `SELECT name FROM customers WHERE business_id = ${tenant} AND email = 'NQ5@x.example'`,
        queryMode: 'extended',
      })
      emit('streams:extended_literal', extended.rows)
    })
  },

  async copy() {
    await withClient({}, async (c) => {
      const lines = []
      for (let i = 0; i < 500; i++) lines.push(`${tenant}\tnode-c${i}\tnc${i}@copy.example\t555-C${i}\t${i}.25\n`)
      const ingest = c.query(copyFrom('COPY customers (business_id, name, email, phone, credit) FROM STDIN'))
      // cut the stream where rows do not end
      const blob = Buffer.from(lines.join(''))
      const pieces = []
      for (let at = 0; at < blob.length; at += 777) pieces.push(blob.subarray(at, at + 777))
      await pipeline(Readable.from(pieces), ingest)
      emit('copy:rowcount', ingest.rowCount)
      const found = await c.query('SELECT name, phone, credit FROM customers WHERE business_id = $1 AND email = $2', [tenant, 'NC321@copy.example'])
      emit('copy:search', found.rows)
      const chunks = []
      const out = c.query(copyTo(`COPY (SELECT business_id, name, email, phone, credit FROM customers WHERE business_id = ${tenant} AND name LIKE 'node-c%' ORDER BY id) TO STDOUT`))
      const outcome = await pipeline(out, new Writable({ write(chunk, _e, cb) { chunks.push(chunk); cb() } }))
        .then(() => ({ matches: Buffer.concat(chunks).toString() === lines.join(''), rows: out.rowCount }))
        .catch(failure)
      emit('copy:out', outcome)
      // a bad value for a protected column mid-stream: the whole COPY fails
      const bad = c.query(copyFrom('COPY customers (business_id, name, phone, credit) FROM STDIN'))
      const badRows = `${tenant}\tnode-bad1\t555-CB1\t1\n${tenant}\tnode-bad2\t555-CB2\tnot-a-number\n${tenant}\tnode-bad3\t555-CB3\t3\n`
      emit('copy:bad_value', await pipeline(Readable.from([Buffer.from(badRows)]), bad).then(() => 'accepted', (e) => e.code))
      const csvChunks = []
      const csv = c.query(copyTo(`COPY (SELECT name, email, credit FROM customers WHERE business_id = ${tenant} AND name IN ('node-c0', 'node-c1') ORDER BY name) TO STDOUT WITH (FORMAT csv, HEADER)`))
      await pipeline(csv, new Writable({ write(chunk, _e, cb) { csvChunks.push(chunk); cb() } }))
      emit('copy:csv_out', Buffer.concat(csvChunks).toString())
      const after = await c.query('SELECT count(*)::int AS n FROM customers WHERE business_id = $1', [tenant])
      emit('copy:usable', after.rows[0].n)
    })
  },
}

runAll(scenarios, only).then(() => emit('done', true))
