// node-postgres logging in through pgseal: each case of the JSON in argv[2]
// ({name, port, user, password, tls, channelBinding}) connects once and reports
// which user and upstream TLS it got, or the error. NODE_CA names the CA file.
'use strict'

const fs = require('node:fs')
const pg = require('pg')
const { emit, failure, runAll } = require('./lib')

const cases = JSON.parse(process.argv[2])
const ca = fs.readFileSync(process.env.NODE_CA)

const scenarios = {}
for (const c of cases) {
  scenarios[c.name] = async () => {
    const client = new pg.Client({
      host: '127.0.0.1',
      port: c.port,
      user: c.user,
      password: c.password,
      database: 'postgres',
      ssl: c.tls ? { ca, servername: 'localhost' } : false,
      enableChannelBinding: c.channelBinding,
    })
    try {
      await client.connect()
    } catch (err) {
      emit(c.name, failure(err))
      return
    }
    try {
      const r = await client.query(
        'SELECT current_user AS user, s.ssl AS upstream_tls, $1::int + 1 AS answer FROM pg_stat_ssl s WHERE s.pid = pg_backend_pid()',
        [41]
      )
      emit(c.name, r.rows[0])
    } finally {
      await client.end()
    }
  }
}

runAll(scenarios, []).then(() => emit('done', true))
