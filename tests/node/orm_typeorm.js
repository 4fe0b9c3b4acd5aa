// TypeORM 0.3 (on node-postgres) through pgseal on protected columns
// (tests/encrypted's stack), entities as EntitySchema in plain JavaScript.
// argv[2] is the business_id this run writes under, argv[3..] the scenarios.
// The entities map the existing tables: synchronize stays off.
// PGSEAL_ORM_SQL=1 prints every statement TypeORM sends on stderr.
'use strict'

require('reflect-metadata')
const { DataSource, EntitySchema, In, IsNull, Like, MoreThan, Not } = require('typeorm')
const { emit, runAll } = require('./lib')

const tenant = Number(process.argv[2])
const only = process.argv.slice(3)

const Customer = new EntitySchema({
  name: 'Customer',
  tableName: 'customers',
  columns: {
    id: { type: 'int', primary: true, generated: 'increment' },
    business_id: { type: 'int' },
    name: { type: 'text', nullable: true },
    email: { type: 'text', nullable: true },
    tax_id: { type: 'text', nullable: true },
    phone: { type: 'text', nullable: true },
    credit: { type: 'numeric', nullable: true },
  },
  relations: {
    invoices: { type: 'one-to-many', target: 'Invoice', inverseSide: 'customer', cascade: ['insert'] },
  },
})

const Invoice = new EntitySchema({
  name: 'Invoice',
  tableName: 'invoices',
  columns: {
    id: { type: 'int', primary: true, generated: 'increment' },
    business_id: { type: 'int' },
    customer_id: { type: 'int', nullable: true },
    total: { type: 'numeric', nullable: true },
    notes: { type: 'text', nullable: true },
  },
  relations: {
    customer: { type: 'many-to-one', target: 'Customer', joinColumn: { name: 'customer_id' }, inverseSide: 'invoices' },
  },
})

const Typed = new EntitySchema({
  name: 'Typed',
  tableName: 'typed',
  columns: {
    id: { type: 'int', primary: true, generated: 'increment' },
    business_id: { type: 'int' },
    c_text: { type: 'text', nullable: true },
    c_varchar: { type: 'varchar', length: 20, nullable: true },
    c_int: { type: 'int', nullable: true },
    c_bigint: { type: 'bigint', nullable: true },
    c_smallint: { type: 'smallint', nullable: true },
    c_numeric: { type: 'numeric', nullable: true },
    c_bool: { type: 'boolean', nullable: true },
    c_date: { type: 'date', nullable: true },
    c_ts: { type: 'timestamp', nullable: true },
    c_tstz: { type: 'timestamptz', nullable: true },
    c_uuid: { type: 'uuid', nullable: true },
    c_jsonb: { type: 'jsonb', nullable: true },
    c_bytea: { type: 'bytea', nullable: true },
    c_armored: { type: 'text', nullable: true },
  },
})

// An app serving one business: its tenant is a startup option of every
// pooled connection, so the ORM's UPDATE/DELETE by primary key need not name it.
async function withSource({ sessionTenant = tenant } = {}, body) {
  const source = new DataSource({
    type: 'postgres',
    host: process.env.PGHOST,
    port: Number(process.env.PGPORT),
    username: process.env.PGUSER,
    database: process.env.PGDATABASE,
    entities: [Customer, Invoice, Typed],
    synchronize: false,
    logging: process.env.PGSEAL_ORM_SQL ? 'all' : false,
    logger: 'simple-console',
    poolSize: 2,
    extra: sessionTenant === null ? {} : { options: `-c pgseal.tenant=${sessionTenant}` },
  })
  await source.initialize()
  try {
    return await body(source, source.getRepository(Customer), source.getRepository(Invoice))
  } finally {
    await source.destroy()
  }
}

// What the ORM reports for a database error: the driver's SQLSTATE and message.
function ormFailure(err) {
  return { code: err.code || (err.driverError && err.driverError.code) || null, message: String(err.message) }
}

function plain(value) {
  if (value instanceof Date) return value.toISOString()
  if (Buffer.isBuffer(value)) return 'hex:' + value.toString('hex')
  return value
}

const plainRow = (row) => Object.fromEntries(Object.entries(row).filter(([k]) => k.startsWith('c_')).map(([k, v]) => [k, plain(v)]))
const customerView = (c) => ({ name: c.name, email: c.email, tax_id: c.tax_id, phone: c.phone, credit: c.credit })
const names = (rows) => rows.map((r) => r.name).sort()

const scenarios = {
  async writes() {
    await withSource({}, async (source, customers) => {
      const one = await customers.save({
        business_id: tenant, name: 'to-one', email: 'TO.One@Tor.example', tax_id: 'TOTAX-1', phone: '555-TO1', credit: '10.50',
      })
      emit('writes:save', { id_is_int: Number.isInteger(one.id), ...customerView(one) })
      const many = await customers.save([
        { business_id: tenant, name: 'to-b0', email: 'to.b0@tor.example', tax_id: 'TOTAX-B0', phone: '555-TOB0', credit: '0.25' },
        { business_id: tenant, name: 'to-b1', email: 'to.b1@tor.example', tax_id: 'TOTAX-B1', phone: '555-TOB1', credit: '1e3' },
        { business_id: tenant, name: 'to-b2', email: null, tax_id: null, phone: "555-'TOB2'", credit: null },
      ])
      emit('writes:save_many', many.map((c) => Number.isInteger(c.id)))
      const inserted = await customers.insert([
        { business_id: tenant, name: 'to-i0', email: 'to.i0@tor.example', phone: '555-TOI0', credit: '7' },
        { business_id: tenant, name: 'to-i1', tax_id: 'TOTAX-I1', phone: '555-TOI1' },
      ])
      emit('writes:insert_ids', inserted.identifiers.map((i) => Number.isInteger(i.id)))
      const built = await source.createQueryBuilder().insert().into(Customer)
        .values({ business_id: tenant, name: 'to-qb', email: 'to.qb@tor.example', phone: '555-TOQB' })
        .returning(['id', 'email', 'phone']).execute()
      emit('writes:query_builder_returning', built.raw.map(({ id, ...rest }) => rest))
      const reread = await customers.find({ where: { business_id: tenant }, order: { name: 'ASC' } })
      emit('writes:reread', reread.map(customerView))
    })
  },

  // every logical type through the ORM's own type mapping
  async typed() {
    await withSource({}, async (source) => {
      const typed = source.getRepository(Typed)
      await typed.save({
        business_id: tenant, c_text: 'tor-text ✓', c_varchar: 'to-vc', c_int: -42, c_bigint: '9007199254740993',
        c_smallint: 7, c_numeric: '12345.678900', c_bool: true, c_date: '2024-02-29',
        c_ts: new Date(Date.UTC(2024, 1, 29, 12, 34, 56, 789)), c_tstz: new Date(Date.UTC(1999, 11, 31, 23, 59, 59, 1)),
        c_uuid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', c_jsonb: { to: ['x', 1], nested: { 'ü': null } },
        c_bytea: Buffer.from([0, 1, 2, 0xfe, 0xff, 0x5c]), c_armored: 'tor-armour',
      })
      await typed.insert([{ business_id: tenant }, { business_id: tenant, c_int: 17, c_bool: false, c_jsonb: [1, 'two'] }])
      const rows = await typed.find({ where: { business_id: tenant }, order: { id: 'ASC' } })
      emit('typed:found', rows.map(plainRow))
    })
  },

  async search() {
    await withSource({}, async (source, customers) => {
      await customers.insert([0, 1, 2, 3].map((i) => ({
        business_id: tenant, name: `to-s${i}`, email: `TO.S${i}@Tor.example`, tax_id: `TOTAX-S${i}`, phone: `555-TOS${i}`, credit: `${i}.5`,
      })).concat([{ business_id: tenant, name: 'to-s-none', phone: '555-TOS-NONE' }]))
      const byEmail = await customers.findOneBy({ email: '  to.s2@TOR.example ' })
      emit('search:email', customerView(byEmail))
      const inEmail = await customers.findBy({ email: In(['TO.S0@tor.example', 'to.s3@tor.EXAMPLE', 'nobody@tor.example']) })
      emit('search:email_in', names(inEmail))
      const inTax = await customers.find({ where: { tax_id: In(['TOTAX-S1', 'totax-s2']), business_id: tenant } })
      emit('search:tax_in', names(inTax))
      emit('search:count', await customers.countBy({ tax_id: 'TOTAX-S3' }))
      emit('search:exists', await customers.existsBy({ email: 'to.s1@tor.example' }))
      const byId = await customers.findOneBy({ id: byEmail.id })
      emit('search:by_id', customerView(byId))
      const selected = await customers.find({ select: { name: true, phone: true }, where: { email: 'to.s1@tor.example' }, take: 5 })
      emit('search:select', selected.map((c) => ({ ...c })))
      const nulls = await customers.findBy({ business_id: tenant, credit: IsNull() })
      emit('search:is_null', names(nulls))
      const qb = await customers.createQueryBuilder('c')
        .select(['c.name', 'c.tax_id']).where('c.email = :email', { email: 'TO.S0@tor.example' })
        .andWhere('c.business_id = :tenant', { tenant }).getMany()
      emit('search:query_builder', qb.map((c) => ({ ...c })))
    })
  },

  async update() {
    await withSource({}, async (source, customers) => {
      const c = await customers.save({ business_id: tenant, name: 'to-u', email: 'to.u@tor.example', tax_id: 'TOTAX-U', phone: '555-TOU', credit: '1' })
      // save() of a changed entity: SELECT by id, then UPDATE ... WHERE "id" IN ($n)
      c.phone = '555-TOU-NEW'
      c.email = 'TO.U.New@Tor.example'
      await customers.save(c)
      const byCriteria = await customers.update({ id: c.id }, { credit: '99.99' })
      emit('update:affected', byCriteria.affected)
      const withTenant = await customers.update({ id: c.id, business_id: tenant }, { tax_id: 'TOTAX-U2' })
      emit('update:tenant_in_where_affected', withTenant.affected)
      const reloaded = await customers.findOneBy({ id: c.id })
      emit('update:reloaded', customerView(reloaded))
      emit('update:found_by_new_email', (await customers.findOneBy({ email: 'to.u.new@tor.example' })).id === c.id)
      emit('update:old_email_gone', await customers.countBy({ email: 'to.u@tor.example' }))
    })
    await withSource({ sessionTenant: null }, async (source, customers) => {
      const inWhere = await customers.update({ business_id: tenant, name: 'to-u' }, { phone: '555-TOU-WHERE' })
      emit('update:no_session_tenant_in_where', inWhere.affected)
      emit('update:no_tenant', await customers.update({ name: 'to-u' }, { phone: '555-TOU-NOTENANT' }).catch(ormFailure))
      emit('update:after_where', (await customers.findOneBy({ business_id: tenant, name: 'to-u' })).phone)
    })
    await withSource({ sessionTenant: tenant + 1 }, async (source, customers) => {
      emit('update:other_tenant', await customers.findOneBy({ business_id: tenant, name: 'to-u' }).then(customerView, ormFailure))
    })
  },

  async relations() {
    await withSource({}, async (source, customers, invoices) => {
      const c = await customers.save({ business_id: tenant, name: 'to-r', email: 'to.r@tor.example', phone: '555-TOR' })
      await invoices.save([
        { business_id: tenant, customer: { id: c.id }, total: '12.34', notes: 'tor-note one' },
        { business_id: tenant, customer_id: c.id, total: '100', notes: null },
        { business_id: tenant, customer_id: c.id, total: '0.01', notes: 'tor-note three' },
      ])
      const loaded = await customers.findOne({
        where: { email: 'TO.R@tor.example' }, relations: { invoices: true }, order: { invoices: { id: 'ASC' } },
      })
      emit('relations:customer', { name: loaded.name, phone: loaded.phone })
      emit('relations:invoices', loaded.invoices.map((i) => ({ total: i.total, notes: i.notes })))
      const all = await customers.find({ where: { business_id: tenant }, relations: ['invoices'], order: { name: 'ASC' } })
      emit('relations:find', all.map((x) => [x.email, x.invoices.map((i) => i.notes).sort()]))
      const back = await invoices.find({ where: { notes: IsNull(), business_id: tenant }, relations: { customer: true } })
      emit('relations:many_to_one', back.map((i) => ({ total: i.total, customer: customerView(i.customer) })))
      const joined = await customers.createQueryBuilder('c').leftJoinAndSelect('c.invoices', 'i')
        .where('c.tax_id IS NULL').andWhere('c.business_id = :tenant', { tenant }).orderBy('i.id', 'ASC').getMany()
      emit('relations:query_builder', joined.map((x) => [x.phone, x.invoices.map((i) => i.notes)]))
      // a cascaded save: the customer, then its invoices, in one transaction
      const nested = await customers.save({
        business_id: tenant, name: 'to-r-nested', tax_id: 'TOTAX-NESTED',
        invoices: [{ business_id: tenant, total: '1.50', notes: 'tor-note nested' }],
      })
      const reloaded = await customers.findOne({ where: { tax_id: 'TOTAX-NESTED' }, relations: { invoices: true } })
      emit('relations:cascade', { same: reloaded.id === nested.id, invoices: reloaded.invoices.map((i) => [i.total, i.notes]) })
    })
  },

  async transaction() {
    await withSource({}, async (source, customers) => {
      const committed = await source.transaction(async (manager) => {
        const c = await manager.save(Customer, { business_id: tenant, name: 'to-t-ok', phone: '555-TOT-OK' })
        await manager.update(Customer, { id: c.id }, { email: 'to.t@tor.example' })
        return c.id
      })
      emit('transaction:committed', Number.isInteger(committed))
      emit('transaction:app_error', await source.transaction(async (manager) => {
        await manager.save(Customer, { business_id: tenant, name: 'to-t-app', phone: '555-TOT-APP' })
        throw new Error('the app changed its mind')
      }).catch((e) => e.message))
      emit('transaction:refused', await source.transaction(async (manager) => {
        await manager.insert(Customer, { business_id: tenant, name: 'to-t-refused', phone: '555-TOT-REF' })
        return manager.find(Customer, { where: { business_id: tenant }, order: { phone: 'ASC' } })
      }).catch(ormFailure))
      const left = await customers.find({ select: { name: true, phone: true, email: true }, where: { business_id: tenant }, order: { name: 'ASC' } })
      emit('transaction:left', left.map((c) => ({ ...c })))
    })
  },

  async refused() {
    await withSource({}, async (source, customers) => {
      await customers.insert({ business_id: tenant, name: 'to-x', email: 'to.x@tor.example', phone: '555-TOX' })
      const outcomes = []
      outcomes.push(await customers.find({ order: { phone: 'DESC' } }).then(() => 'rows', ormFailure))
      outcomes.push(await customers.findBy({ email: Like('%tor%') }).then(() => 'rows', ormFailure))
      outcomes.push(await customers.findBy({ credit: MoreThan('1') }).then(() => 'rows', ormFailure))
      outcomes.push(await customers.findBy({ phone: '555-TOX' }).then(() => 'rows', ormFailure))
      emit('refused:outcomes', outcomes)
      // every pooled connection still works
      const after = await Promise.all([0, 1, 2, 3].map(() => customers.findOneBy({ email: 'to.x@tor.example' })))
      emit('refused:after', after.map((c) => c.phone))
    })
  },

  // upsert on the natural key: INSERT ... ON CONFLICT ("business_id", "name") DO
  // UPDATE SET every given column, the tenant column too (TypeORM leaves a
  // generated id out of the INSERT, so it cannot be the conflict target).
  async upsert() {
    await withSource({}, async (source, customers) => {
      const { id } = await customers.save({ business_id: tenant, name: 'to-up', phone: '555-TOUP-1' })
      const result = await customers.upsert(
        { business_id: tenant, name: 'to-up', email: 'TO.Up@tor.example', phone: '555-TOUP-2' }, ['business_id', 'name']
      )
      emit('upsert:same_id', result.identifiers.map((i) => i.id === id))
      emit('upsert:found', customerView(await customers.findOneBy({ email: 'to.up@tor.example' })))
      const fresh = await customers.upsert([
        { business_id: tenant, name: 'to-up', tax_id: 'TOTAX-UP' },
        { business_id: tenant, name: 'to-up-new', tax_id: 'TOTAX-UP-NEW', phone: '555-TOUP-NEW' },
      ], { conflictPaths: ['business_id', 'name'] })
      emit('upsert:many', fresh.identifiers.map((i) => i.id === id))
      emit('upsert:by_tax', names(await customers.findBy({ tax_id: In(['TOTAX-UP', 'TOTAX-UP-NEW']) })))
      // a multi-row upsert sets DEFAULT for the columns a row left out
      emit('upsert:first_after_many', customerView(await customers.findOneBy({ id })))
    })
  },

  // Less common shapes of everyday queries.
  async edges() {
    await withSource({}, async (source, customers, invoices) => {
      await customers.insert([0, 1, 2].map((i) => ({
        business_id: tenant, name: `to-e${i}`, email: `to.e${i}@tor.example`, tax_id: i === 2 ? null : `TOTAX-E${i}`, phone: `555-TOE${i}`,
      })))
      const q = (where) => customers.find({ where, order: { name: 'ASC' } }).then((rows) => rows.map((r) => r.name), ormFailure)
      emit('edges:in_empty', await q({ email: In([]) }))
      emit('edges:not_in', await q({ business_id: tenant, email: Not(In(['TO.E0@tor.example'])) }))
      emit('edges:not', await q({ business_id: tenant, tax_id: Not('TOTAX-E0') }))
      emit('edges:or', await q([{ email: 'to.e0@TOR.example' }, { tax_id: 'TOTAX-E1' }]))
      emit('edges:not_null', await q({ business_id: tenant, tax_id: Not(IsNull()) }))
      emit('edges:update_where_email', (await customers.update({ email: 'TO.E1@tor.example' }, { phone: '555-TOE-BYMAIL' })).affected)
      emit('edges:delete_where_tax', (await customers.delete({ tax_id: 'TOTAX-E0' })).affected)
      const c = await customers.findOneBy({ business_id: tenant, name: 'to-e1' })
      await invoices.insert([1, 2, 3].map((k) => ({ business_id: tenant, customer_id: c.id, total: `${k}`, notes: `tor-note e${k}` })))
      const [rows, count] = await customers.findAndCount({
        where: { business_id: tenant }, relations: { invoices: true }, order: { name: 'ASC' }, take: 1, skip: 0,
      })
      emit('edges:find_and_count', { count, rows: rows.map((r) => [r.name, r.invoices.map((i) => i.notes).sort()]) })
      emit('edges:increment', await customers.increment({ id: c.id }, 'credit', 1).then(() => 'ok', ormFailure))
      emit('edges:raw_query', await source.query('SELECT name, phone FROM customers WHERE email = $1', ['to.e1@tor.example']))
    })
    // many businesses on one pool: the tenant set per transaction
    await withSource({ sessionTenant: null }, async (source, customers) => {
      const phone = await source.transaction(async (manager) => {
        await manager.query(`SET LOCAL pgseal.tenant = '${tenant}'`)
        const c = await manager.findOneBy(Customer, { business_id: tenant, name: 'to-e2' })
        c.phone = '555-TOE-LOCAL'
        await manager.save(Customer, c)
        return (await manager.findOneBy(Customer, { id: c.id })).phone
      })
      emit('edges:set_local', phone)
      emit('edges:after_set_local', await customers.update({ name: 'to-e2' }, { phone: '555-TOE-NOTENANT' }).catch(ormFailure))
    })
    // a savepoint: the refusal aborts only the nested transaction
    await withSource({}, async (source, customers) => {
      const outcome = await source.transaction(async (manager) => {
        await manager.insert(Customer, { business_id: tenant, name: 'to-e-outer', phone: '555-TOE-OUTER' })
        const inner = await manager.transaction(async (nested) => {
          await nested.insert(Customer, { business_id: tenant, name: 'to-e-inner', phone: '555-TOE-INNER' })
          return nested.find(Customer, { order: { phone: 'ASC' } })
        }).catch(ormFailure)
        return { inner, after: await manager.countBy(Customer, { business_id: tenant }) }
      })
      emit('edges:savepoint', outcome)
      emit('edges:left', (await customers.find({ where: { business_id: tenant }, order: { name: 'ASC' } })).map((c) => [c.name, c.phone]))
    })
  },

  async remove() {
    await withSource({}, async (source, customers, invoices) => {
      const keep = await customers.save({ business_id: tenant, name: 'to-d-keep', phone: '555-TOD-KEEP' })
      const gone = await customers.save({ business_id: tenant, name: 'to-d-gone', phone: '555-TOD-GONE' })
      const byDelete = await customers.save({ business_id: tenant, name: 'to-d-delete', phone: '555-TOD-DEL' })
      const inv = await invoices.save({ business_id: tenant, customer_id: gone.id, total: '5', notes: 'to d note' })
      await invoices.remove(inv)
      await customers.remove(gone)
      emit('remove:delete_affected', (await customers.delete({ id: byDelete.id })).affected)
      emit('remove:delete_missing', (await customers.delete(keep.id + 1000)).affected)
      emit('remove:left', names(await customers.findBy({ business_id: tenant })))
      emit('remove:invoices_left', await invoices.countBy({ business_id: tenant }))
    })
  },
}

runAll(scenarios, only).then(() => emit('done', true))
