// node-postgres through a pass-through pgseal (or straight to Postgres, for the
// comparison): every protocol path pg uses. Connection settings come from
// PGHOST/PGPORT/PGUSER/PGDATABASE; argv[2] prefixes the tables this run makes.
'use strict'

const pg = require('pg')
const Cursor = require('pg-cursor')
const { from: copyFrom, to: copyTo } = require('pg-copy-streams')
const { pipeline } = require('node:stream/promises')
const { Readable, Writable } = require('node:stream')
const { emit, failure, runAll } = require('./lib')

const prefix = process.argv[2]
const only = process.argv.slice(3)
const t = (name) => `${prefix}_${name}`

async function withClient(config, body) {
  const client = new pg.Client(config)
  await client.connect()
  try {
    return await body(client)
  } finally {
    await client.end()
  }
}

const scenarios = {
  async simple() {
    await withClient({}, async (c) => {
      const one = await c.query("SELECT 1 AS a, 'x'::text AS b, NULL::int AS n")
      emit('simple:rows', one.rows)
      emit('simple:fields', one.fields.map((f) => [f.name, f.dataTypeID]))
      const many = await c.query("SELECT 1 AS a; SELECT 'two' AS b; SELECT 3 AS c")
      emit('simple:multi', many.map((r) => r.rows))
      const ddl = await c.query(`DROP TABLE IF EXISTS ${t('s')}; CREATE TABLE ${t('s')} (id int)`)
      emit('simple:ddl', ddl.map((r) => r.command))
      const ins = await c.query(`INSERT INTO ${t('s')} SELECT generate_series(1, 7)`)
      emit('simple:insert', [ins.command, ins.rowCount])
      const empty = await c.query('')
      emit('simple:empty', empty.rows)
      const big = 'x'.repeat(2 * 1024 * 1024)
      const r = await c.query(`SELECT length('${big}') AS n`)
      emit('simple:large_text', r.rows[0].n)
    })
  },

  async extended() {
    await withClient({}, async (c) => {
      const r = await c.query(
        'SELECT $1::int + $2::int AS s, $3::text AS t, $4::int IS NULL AS n, $5::bytea AS b',
        [40, 2, 'hé ✓', null, Buffer.from([0, 1, 2, 255])]
      )
      emit('extended:row', { ...r.rows[0], b: r.rows[0].b.toString('hex') })
      const untyped = await c.query('SELECT $1 AS v', ['plain'])
      emit('extended:untyped', [untyped.rows[0].v, untyped.fields[0].dataTypeID])
      const big = 'y'.repeat(3 * 1024 * 1024)
      const rb = await c.query('SELECT length($1::text) AS n, md5($1) AS h', [big])
      emit('extended:large_param', rb.rows[0])
      const json = await c.query('SELECT $1::jsonb AS j', [{ a: [1, 2], b: 'c' }])
      emit('extended:jsonb', json.rows[0].j)
      const arr = await c.query('SELECT $1::int[] AS a, cardinality($1::int[]) AS n', [[3, 1, 2]])
      emit('extended:array', arr.rows[0])
      const err = await c.query('SELECT $1::int AS v', ['nope']).catch(failure)
      emit('extended:bad_param', err.code)
      const after = await c.query('SELECT $1::int AS v', [5])
      emit('extended:after_error', after.rows[0].v)
    })
  },

  async named() {
    await withClient({}, async (c) => {
      await c.query(`DROP TABLE IF EXISTS ${t('n')}`)
      await c.query(`CREATE TABLE ${t('n')} (id int PRIMARY KEY, v text)`)
      for (let i = 0; i < 300; i++) {
        await c.query({ name: 'ins', text: `INSERT INTO ${t('n')} VALUES ($1, $2)`, values: [i, `v${i}`] })
      }
      let hits = 0
      for (let i = 0; i < 300; i++) {
        const r = await c.query({ name: 'sel', text: `SELECT v FROM ${t('n')} WHERE id = $1`, values: [i] })
        if (r.rows.length === 1 && r.rows[0].v === `v${i}`) hits++
      }
      emit('named:reused', hits)
      const stmts = await c.query("SELECT name FROM pg_prepared_statements ORDER BY name")
      emit('named:server_statements', stmts.rows.map((r) => r.name))
      // the same name with another text is pg's own error, not the server's
      const clash = await c.query({ name: 'sel', text: 'SELECT 1', values: [] }).catch(failure)
      emit('named:clash_is_client_side', clash.code === null)
    })
  },

  async pool() {
    const pool = new pg.Pool({ max: 5 })
    try {
      const work = []
      for (let i = 0; i < 60; i++) {
        work.push(pool.query('SELECT $1::int AS i, pg_backend_pid() AS pid, pg_sleep(0.01)', [i]))
      }
      const done = await Promise.all(work)
      emit('pool:values', done.map((r) => r.rows[0].i))
      emit('pool:backends', new Set(done.map((r) => r.rows[0].pid)).size)
      const c = await pool.connect()
      try {
        await c.query('BEGIN')
        const inTx = await c.query("SELECT current_setting('transaction_isolation') AS i")
        await c.query('COMMIT')
        emit('pool:checked_out', inTx.rows[0].i)
      } finally {
        c.release()
      }
    } finally {
      await pool.end()
    }
  },

  async queued() {
    for (const mode of ['queued', 'pipeline']) {
      await withClient({ pipeline: mode === 'pipeline' }, async (c) => {
        const work = []
        for (let i = 0; i < 500; i++) work.push(c.query('SELECT $1::int * 2 AS v', [i]))
        const done = await Promise.all(work)
        emit(`${mode}:in_order`, done.every((r, i) => r.rows[0].v === 2 * i))
        await c.query(`DROP TABLE IF EXISTS ${t('q')}`)
        await c.query(`CREATE TABLE ${t('q')} (id int PRIMARY KEY)`)
        const mixed = [
          c.query(`INSERT INTO ${t('q')} VALUES ($1)`, [1]),
          c.query(`INSERT INTO ${t('q')} VALUES ($1)`, [1]),
          c.query('SELECT $1::text AS after_dup', ['a']),
          c.query(`SELECT * FROM ${t('missing')}`),
          c.query(`SELECT * FROM ${t('missing')} WHERE id = $1`, [1]),
          c.query('SELECT count(*)::int AS n FROM ' + t('q')),
          c.query(`INSERT INTO ${t('q')} VALUES (2), (2)`),
          c.query('SELECT 7 AS simple_after'),
        ]
        const settled = await Promise.allSettled(mixed)
        emit(
          `${mode}:mixed`,
          settled.map((s) => (s.status === 'fulfilled' ? s.value.rows : { code: s.reason.code }))
        )
      })
    }
  },

  async row_mode_and_types() {
    await withClient({}, async (c) => {
      const arr = await c.query({ text: "SELECT 1 AS a, 'b' AS a, $1::int AS c", values: [3], rowMode: 'array' })
      emit('rowmode:array', arr.rows)
      const simpleArr = await c.query({ text: 'SELECT 1, 2', rowMode: 'array' })
      emit('rowmode:simple', simpleArr.rows)
      const types = {
        getTypeParser: (oid, format) =>
          oid === 20 ? (v) => `big:${v}` : pg.types.getTypeParser(oid, format),
      }
      const custom = await c.query({ text: 'SELECT 9007199254740993::int8 AS v', types })
      emit('types:per_query', custom.rows[0].v)
      c.setTypeParser(1700, 'text', (v) => `num:${v}`)
      const num = await c.query('SELECT 1.50::numeric AS v')
      emit('types:client', num.rows[0].v)
      const bin = await c.query({
        text:
          "SELECT 42::int2 AS s, 7::int4 AS i, 9007199254740993::int8 AS b, true AS t," +
          " 'héllo'::text AS x, NULL::int AS n, $1::int AS p",
        values: [11],
        binary: true,
      })
      const row = bin.rows[0]
      emit('binary:fields', bin.fields.map((f) => f.format))
      emit('binary:row', { ...row, b: String(row.b) })
    })
  },

  async savepoints() {
    await withClient({}, async (c) => {
      await c.query(`DROP TABLE IF EXISTS ${t('tx')}`)
      await c.query(`CREATE TABLE ${t('tx')} (id int PRIMARY KEY)`)
      await c.query('BEGIN')
      await c.query(`INSERT INTO ${t('tx')} VALUES ($1)`, [1])
      await c.query('SAVEPOINT a')
      await c.query(`INSERT INTO ${t('tx')} VALUES ($1)`, [2])
      const dup = await c.query(`INSERT INTO ${t('tx')} VALUES ($1)`, [2]).catch(failure)
      const aborted = await c.query('SELECT 1').catch(failure)
      await c.query('ROLLBACK TO SAVEPOINT a')
      await c.query(`INSERT INTO ${t('tx')} VALUES ($1)`, [3])
      await c.query('RELEASE SAVEPOINT a')
      await c.query('COMMIT')
      const ids = await c.query(`SELECT id FROM ${t('tx')} ORDER BY id`)
      emit('tx:codes', [dup.code, aborted.code])
      emit('tx:ids', ids.rows.map((r) => r.id))
      await c.query('BEGIN')
      await c.query(`INSERT INTO ${t('tx')} VALUES (9)`)
      await c.query('ROLLBACK')
      const n = await c.query(`SELECT count(*)::int AS n FROM ${t('tx')}`)
      emit('tx:rolled_back', n.rows[0].n)
    })
  },

  async listen_notify() {
    const listener = new pg.Client()
    await listener.connect()
    try {
      const got = []
      const all = new Promise((resolve) => {
        listener.on('notification', (msg) => {
          got.push([msg.channel, msg.payload])
          if (got.length === 4) resolve()
        })
      })
      await listener.query(`LISTEN ${t('chan')}`)
      await listener.query(`LISTEN "${t('Other')}"`)
      await withClient({}, async (c) => {
        await c.query(`NOTIFY ${t('chan')}, 'one'`)
        await c.query('SELECT pg_notify($1, $2)', [t('chan'), 'two ✓'])
        await c.query('BEGIN')
        await c.query(`NOTIFY "${t('Other')}", 'in tx'`)
        await c.query('COMMIT')
      })
      await listener.query(`NOTIFY ${t('chan')}, 'self'`)
      let timer
      const timeout = new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error('no notification in 10 s')), 10000)
      })
      await Promise.race([all, timeout]).finally(() => clearTimeout(timer))
      emit('notify:received', got)
      const still = await listener.query('SELECT 1 AS v')
      emit('notify:usable', still.rows[0].v)
    } finally {
      await listener.end()
    }
  },

  async cancel() {
    await withClient({}, async (c) => {
      const query = new pg.Query('SELECT pg_sleep(30)')
      const pending = new Promise((resolve) => {
        query.on('error', (err) => resolve(failure(err)))
        query.on('end', () => resolve({ code: 'finished' }))
      })
      const started = Date.now()
      c.query(query)
      await new Promise((resolve) => setTimeout(resolve, 300))
      // a fresh Client sends the CancelRequest with c's BackendKeyData
      new pg.Client().cancel(c, query)
      const res = await pending
      emit('cancel:code', res.code)
      emit('cancel:fast', Date.now() - started < 10000)
      const after = await c.query('SELECT $1::int AS v', [1])
      emit('cancel:usable', after.rows[0].v)
    })
    await withClient({ statement_timeout: 200 }, async (c) => {
      const shown = await c.query('SHOW statement_timeout')
      emit('timeout:setting', shown.rows[0].statement_timeout)
      const err = await c.query('SELECT pg_sleep(5)').catch(failure)
      emit('timeout:code', err.code)
      const after = await c.query('SELECT 2 AS v')
      emit('timeout:usable', after.rows[0].v)
    })
  },

  async cursor() {
    await withClient({}, async (c) => {
      const cursor = c.query(new Cursor('SELECT g AS i, repeat($1, 20) AS pad FROM generate_series(1, $2::int) g', ['z', 25000]))
      let count = 0
      let sum = 0
      let chunks = 0
      for (;;) {
        const rows = await cursor.read(1000)
        if (rows.length === 0) break
        chunks++
        count += rows.length
        for (const r of rows) sum += r.i
      }
      await cursor.close()
      emit('cursor:read', { chunks, count, sum })
      const early = c.query(new Cursor('SELECT g FROM generate_series(1, 100000) g'))
      const first = await early.read(10)
      await early.close()
      emit('cursor:closed_early', first.map((r) => r.g))
      const after = await c.query('SELECT 3 AS v')
      emit('cursor:usable', after.rows[0].v)
    })
  },

  async copy() {
    await withClient({}, async (c) => {
      await c.query(`DROP TABLE IF EXISTS ${t('cp')}`)
      await c.query(`CREATE TABLE ${t('cp')} (id int, name text)`)
      const lines = []
      for (let i = 0; i < 20000; i++) lines.push(`${i}\tname ${i} ✓\n`)
      const ingest = c.query(copyFrom(`COPY ${t('cp')} (id, name) FROM STDIN`))
      await pipeline(Readable.from(lines.map((l) => Buffer.from(l))), ingest)
      emit('copy:from_rowcount', ingest.rowCount)
      const chunks = []
      const out = c.query(copyTo(`COPY (SELECT * FROM ${t('cp')} ORDER BY id) TO STDOUT`))
      await pipeline(out, new Writable({ write(chunk, _e, cb) { chunks.push(chunk); cb() } }))
      const text = Buffer.concat(chunks).toString()
      emit('copy:to_matches', text === lines.join(''))
      emit('copy:to_rowcount', out.rowCount)
      const bad = c.query(copyFrom(`COPY ${t('cp')} (id, name) FROM STDIN`))
      const badErr = await pipeline(Readable.from([Buffer.from('1\tok\nnot-an-int\tx\n')]), bad).catch(failure)
      emit('copy:bad_row', badErr.code)
      const n = await c.query(`SELECT count(*)::int AS n FROM ${t('cp')}`)
      emit('copy:after_bad', n.rows[0].n)
    })
  },
}

runAll(scenarios, only).then(() => emit('done', true))
