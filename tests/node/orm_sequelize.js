// Sequelize 6 (on node-postgres) through pgseal on protected columns
// (tests/encrypted's stack). argv[2] is the business_id this run writes under,
// argv[3..] the scenarios. The models map the existing tables; nothing syncs.
// PGSEAL_ORM_SQL=1 prints every statement Sequelize sends on stderr.
'use strict'

const { Sequelize, DataTypes, Op } = require('sequelize')
const { emit, runAll } = require('./lib')

const tenant = Number(process.argv[2])
const only = process.argv.slice(3)

// An app serving one business: its tenant is a startup option of every
// connection, so the ORM's UPDATE/DELETE by primary key need not name it.
function connect({ sessionTenant = tenant } = {}) {
  const sequelize = new Sequelize(process.env.PGDATABASE, process.env.PGUSER, null, {
    dialect: 'postgres',
    host: process.env.PGHOST,
    port: Number(process.env.PGPORT),
    logging: process.env.PGSEAL_ORM_SQL ? (sql) => process.stderr.write(sql + '\n') : false,
    pool: { max: 2 },
    dialectOptions: sessionTenant === null ? {} : { options: `-c pgseal.tenant=${sessionTenant}` },
  })
  const Customer = sequelize.define('Customer', {
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    business_id: { type: DataTypes.INTEGER, allowNull: false },
    name: DataTypes.TEXT,
    email: DataTypes.TEXT,
    tax_id: DataTypes.TEXT,
    phone: DataTypes.TEXT,
    credit: DataTypes.DECIMAL,
  }, { tableName: 'customers', timestamps: false })
  const Invoice = sequelize.define('Invoice', {
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    business_id: { type: DataTypes.INTEGER, allowNull: false },
    customer_id: DataTypes.INTEGER,
    total: DataTypes.DECIMAL,
    notes: DataTypes.TEXT,
  }, { tableName: 'invoices', timestamps: false })
  const Typed = sequelize.define('Typed', {
    id: { type: DataTypes.INTEGER, primaryKey: true, autoIncrement: true },
    business_id: { type: DataTypes.INTEGER, allowNull: false },
    c_text: DataTypes.TEXT,
    c_varchar: DataTypes.STRING(20),
    c_int: DataTypes.INTEGER,
    c_bigint: DataTypes.BIGINT,
    c_smallint: DataTypes.SMALLINT,
    c_numeric: DataTypes.DECIMAL,
    c_bool: DataTypes.BOOLEAN,
    c_date: DataTypes.DATEONLY,
    c_ts: DataTypes.DATE,
    c_tstz: DataTypes.DATE,
    c_uuid: DataTypes.UUID,
    c_jsonb: DataTypes.JSONB,
    c_bytea: DataTypes.BLOB,
    c_armored: DataTypes.TEXT,
  }, { tableName: 'typed', timestamps: false })
  Customer.hasMany(Invoice, { foreignKey: 'customer_id', as: 'invoices' })
  Invoice.belongsTo(Customer, { foreignKey: 'customer_id', as: 'customer' })
  return { sequelize, Customer, Invoice, Typed }
}

async function withModels(options, body) {
  const models = connect(options)
  try {
    return await body(models)
  } finally {
    await models.sequelize.close()
  }
}

// What the ORM reports for a database error: the driver's SQLSTATE and message.
function ormFailure(err) {
  return { code: (err.parent && err.parent.code) || null, message: String(err.message) }
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
    await withModels({}, async ({ Customer }) => {
      const one = await Customer.create({
        business_id: tenant, name: 'sq-one', email: 'SQ.One@Seq.example', tax_id: 'SQTAX-1', phone: '555-SQ1', credit: '10.50',
      })
      emit('writes:create', { id_is_int: Number.isInteger(one.id), ...customerView(one) })
      const many = await Customer.bulkCreate([
        { business_id: tenant, name: 'sq-b0', email: 'sq.b0@seq.example', tax_id: 'SQTAX-B0', phone: '555-SQB0', credit: 0.25 },
        { business_id: tenant, name: 'sq-b1', email: 'sq.b1@seq.example', tax_id: 'SQTAX-B1', phone: '555-SQB1', credit: '1e3' },
        { business_id: tenant, name: 'sq-b2', email: null, tax_id: null, phone: "555-'SQB2'", credit: null },
      ], { returning: true })
      emit('writes:bulk', many.map((c) => ({ id_is_int: Number.isInteger(c.id), ...customerView(c) })))
      const reread = await Customer.findAll({ where: { business_id: tenant }, order: [['name', 'ASC']] })
      emit('writes:reread', reread.map(customerView))
      emit('writes:ids', reread.map((c) => c.id))
    })
  },

  // every logical type through the ORM's own type mapping
  async typed() {
    await withModels({}, async ({ Typed }) => {
      const made = await Typed.create({
        business_id: tenant, c_text: 'sq text ✓', c_varchar: 'sq-vc', c_int: -42, c_bigint: '9007199254740993',
        c_smallint: 7, c_numeric: '12345.678900', c_bool: true, c_date: '2024-02-29',
        c_ts: new Date(Date.UTC(2024, 1, 29, 12, 34, 56, 789)), c_tstz: new Date(Date.UTC(1999, 11, 31, 23, 59, 59, 1)),
        c_uuid: 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', c_jsonb: { sq: ['x', 1], nested: { 'ü': null } },
        c_bytea: Buffer.from([0, 1, 2, 0xfe, 0xff, 0x5c]), c_armored: 'sq armour',
      })
      await Typed.bulkCreate([{ business_id: tenant }, { business_id: tenant, c_int: 17, c_bool: false, c_jsonb: [1, 'two'] }])
      emit('typed:created', plainRow(made.get({ plain: true })))
      const rows = await Typed.findAll({ where: { business_id: tenant }, order: [['id', 'ASC']], raw: true })
      emit('typed:found', rows.map(plainRow))
    })
  },

  async search() {
    await withModels({}, async ({ Customer }) => {
      await Customer.bulkCreate([0, 1, 2, 3].map((i) => ({
        business_id: tenant, name: `sq-s${i}`, email: `SQ.S${i}@Seq.example`, tax_id: `SQTAX-S${i}`, phone: `555-SQS${i}`, credit: `${i}.5`,
      })))
      const byEmail = await Customer.findOne({ where: { email: '  sq.s2@SEQ.example ' } })
      emit('search:email', customerView(byEmail))
      const inEmail = await Customer.findAll({ where: { email: { [Op.in]: ['SQ.S0@seq.example', 'sq.s3@seq.EXAMPLE', 'nobody@seq.example'] } } })
      emit('search:email_in', names(inEmail))
      const inTax = await Customer.findAll({ where: { tax_id: { [Op.in]: ['SQTAX-S1', 'sqtax-s2'] }, business_id: tenant } })
      emit('search:tax_in', names(inTax))
      emit('search:count', await Customer.count({ where: { tax_id: 'SQTAX-S3' } }))
      const byPk = await Customer.findByPk(byEmail.id)
      emit('search:by_pk', customerView(byPk))
      const attrs = await Customer.findAll({ attributes: ['name', 'phone'], where: { email: 'sq.s1@seq.example' }, limit: 5 })
      emit('search:attributes', attrs.map((c) => c.toJSON()))
      const raw = await Customer.findAll({ where: { tax_id: 'SQTAX-S0' }, raw: true })
      emit('search:raw', raw.map(({ id, ...rest }) => rest))
    })
  },

  async update() {
    await withModels({}, async ({ Customer }) => {
      const c = await Customer.create({ business_id: tenant, name: 'sq-u', email: 'sq.u@seq.example', tax_id: 'SQTAX-U', phone: '555-SQU', credit: 1 })
      // instance save: UPDATE "customers" SET ... WHERE "id" = $n (tenant from the session)
      c.phone = '555-SQU-NEW'
      c.email = 'SQ.U.New@Seq.example'
      await c.save()
      await c.update({ credit: '99.99' })
      // static update, the tenant in the WHERE
      const [count] = await Customer.update({ tax_id: 'SQTAX-U2' }, { where: { id: c.id, business_id: tenant } })
      emit('update:count', count)
      const [, returned] = await Customer.update({ phone: '555-SQU-RET' }, { where: { id: c.id }, returning: true })
      emit('update:returning', returned.map(customerView))
      await c.reload()
      emit('update:reloaded', customerView(c))
      const found = await Customer.findOne({ where: { email: 'sq.u.new@seq.example' } })
      emit('update:found_by_new_email', found && found.id === c.id)
      emit('update:old_email_gone', await Customer.count({ where: { email: 'sq.u@seq.example' } }))
    })
    // no session tenant: the tenant must come from the statement
    await withModels({ sessionTenant: null }, async ({ Customer }) => {
      const [count] = await Customer.update({ phone: '555-SQU-WHERE' }, { where: { business_id: tenant, name: 'sq-u' } })
      emit('update:tenant_in_where', count)
      const refused = await Customer.update({ phone: '555-SQU-NOTENANT' }, { where: { name: 'sq-u' } }).catch(ormFailure)
      emit('update:no_tenant', refused)
      emit('update:after_where', (await Customer.findOne({ where: { business_id: tenant, name: 'sq-u' } })).phone)
    })
    // another business's session reads the row's plain columns, never its values
    await withModels({ sessionTenant: tenant + 1 }, async ({ Customer }) => {
      const other = await Customer.findOne({ where: { business_id: tenant, name: 'sq-u' } }).then(customerView, ormFailure)
      emit('update:other_tenant', other)
    })
  },

  async include() {
    await withModels({}, async ({ Customer, Invoice }) => {
      const c = await Customer.create({ business_id: tenant, name: 'sq-i', email: 'sq.i@seq.example', phone: '555-SQI' })
      await Invoice.bulkCreate([
        { business_id: tenant, customer_id: c.id, total: '12.34', notes: 'sq note one' },
        { business_id: tenant, customer_id: c.id, total: 100, notes: null },
      ])
      const third = await Invoice.create({ business_id: tenant, customer_id: c.id, total: '0.01', notes: 'sq note three' })
      const loaded = await Customer.findOne({
        where: { email: 'SQ.I@seq.example' },
        include: [{ model: Invoice, as: 'invoices' }],
        order: [[{ model: Invoice, as: 'invoices' }, 'id', 'ASC']],
      })
      emit('include:customer', { name: loaded.name, phone: loaded.phone })
      emit('include:invoices', loaded.invoices.map((i) => ({ total: i.total, notes: i.notes })))
      const back = await Invoice.findAll({
        where: { id: third.id },
        include: [{ model: Customer, as: 'customer', attributes: ['name', 'email'] }],
      })
      emit('include:belongs_to', back.map((i) => ({ notes: i.notes, customer: i.customer.toJSON() })))
      const lazy = await c.getInvoices({ order: [['id', 'ASC']] })
      emit('include:lazy', lazy.map((i) => i.notes))
      // a nested create: the customer, then its invoices
      const nested = await Customer.create({
        business_id: tenant, name: 'sq-i-nested', tax_id: 'SQTAX-NESTED',
        invoices: [{ business_id: tenant, total: '1.50', notes: 'sq note nested' }],
      }, { include: [{ model: Invoice, as: 'invoices' }] })
      const reloaded = await Customer.findOne({ where: { tax_id: 'SQTAX-NESTED' }, include: [{ model: Invoice, as: 'invoices' }] })
      emit('include:nested_create', { same: reloaded.id === nested.id, invoices: reloaded.invoices.map((i) => [i.total, i.notes]) })
    })
  },

  async transaction() {
    await withModels({}, async ({ sequelize, Customer }) => {
      const committed = await sequelize.transaction(async (t) => {
        const c = await Customer.create({ business_id: tenant, name: 'sq-t-ok', phone: '555-SQT-OK' }, { transaction: t })
        await c.update({ email: 'sq.t@seq.example' }, { transaction: t })
        return c.id
      })
      emit('transaction:committed', Number.isInteger(committed))
      const appError = await sequelize.transaction(async (t) => {
        await Customer.create({ business_id: tenant, name: 'sq-t-app', phone: '555-SQT-APP' }, { transaction: t })
        throw new Error('the app changed its mind')
      }).catch((e) => e.message)
      emit('transaction:app_error', appError)
      const refused = await sequelize.transaction(async (t) => {
        await Customer.create({ business_id: tenant, name: 'sq-t-refused', phone: '555-SQT-REF' }, { transaction: t })
        return Customer.findAll({ where: { business_id: tenant }, order: [['phone', 'ASC']], transaction: t })
      }).catch(ormFailure)
      emit('transaction:refused', refused)
      const left = await Customer.findAll({ where: { business_id: tenant }, attributes: ['name', 'phone', 'email'], order: [['name', 'ASC']] })
      emit('transaction:left', left.map((c) => c.toJSON()))
    })
  },

  async refused() {
    await withModels({}, async ({ Customer }) => {
      await Customer.create({ business_id: tenant, name: 'sq-r', email: 'sq.r@seq.example', phone: '555-SQR' })
      const outcomes = []
      outcomes.push(await Customer.findAll({ order: [['phone', 'DESC']] }).then(() => 'rows', ormFailure))
      outcomes.push(await Customer.findAll({ where: { email: { [Op.like]: '%seq%' } } }).then(() => 'rows', ormFailure))
      outcomes.push(await Customer.findAll({ where: { credit: { [Op.gt]: 1 } } }).then(() => 'rows', ormFailure))
      outcomes.push(await Customer.findAll({ where: { phone: '555-SQR' } }).then(() => 'rows', ormFailure))
      emit('refused:outcomes', outcomes)
      // both pooled connections still work
      const after = await Promise.all([0, 1, 2, 3].map(() => Customer.findOne({ where: { email: 'sq.r@seq.example' } })))
      emit('refused:after', after.map((c) => c.phone))
    })
  },

  // findOrCreate: a findOne, then (if none) an INSERT wrapped in a temporary
  // plpgsql function that catches unique_violation.
  async find_or_create() {
    await withModels({}, async ({ Customer }) => {
      await Customer.create({ business_id: tenant, name: 'sq-f', email: 'sq.f@seq.example', phone: '555-SQF' })
      const [found, foundCreated] = await Customer.findOrCreate({ where: { business_id: tenant, name: 'sq-f' } })
      emit('find_or_create:found', { created: foundCreated, phone: found.phone })
      const made = await Customer.findOrCreate({
        where: { business_id: tenant, name: 'sq-f-new' }, defaults: { phone: '555-SQF-NEW' },
      }).then(([c, created]) => ({ created, phone: c.phone }), ormFailure)
      emit('find_or_create:new', made)
      // the workaround: findCreateFind sends a plain INSERT
      const [other, otherCreated] = await Customer.findCreateFind({
        where: { business_id: tenant, name: 'sq-f-new' }, defaults: { phone: '555-SQF-NEW' },
      })
      emit('find_or_create:find_create_find', { created: otherCreated, phone: other.phone })
    })
  },

  // upsert: INSERT ... ON CONFLICT ("id") DO UPDATE SET every given column, the
  // tenant column too; pgseal guards it to rows of the same business.
  async upsert() {
    const id = await withModels({}, async ({ Customer }) => {
      const [inserted] = await Customer.upsert({ business_id: tenant, name: 'sq-up', phone: '555-SQUP-1' }, { returning: true })
      emit('upsert:insert', customerView(inserted))
      const [updated] = await Customer.upsert(
        { id: inserted.id, business_id: tenant, name: 'sq-up', email: 'SQ.Up@seq.example', phone: '555-SQUP-2' },
        { returning: true }
      )
      emit('upsert:update', { same_id: updated.id === inserted.id, ...customerView(updated) })
      emit('upsert:found', (await Customer.findOne({ where: { email: 'sq.up@seq.example' } })).phone)
      return inserted.id
    })
    // another business upserting onto this row's id changes nothing
    await withModels({ sessionTenant: tenant + 1 }, async ({ Customer }) => {
      // (Sequelize still hands back an instance built from the values it sent)
      await Customer.upsert({ id, business_id: tenant + 1, name: 'sq-up-other', phone: '555-SQUP-OTHER' }, { returning: true })
    })
    await withModels({}, async ({ Customer }) => {
      emit('upsert:after_other_tenant', customerView(await Customer.findByPk(id)))
      // bulkCreate's own ON CONFLICT forms, values inlined as literals
      await Customer.bulkCreate([
        { business_id: tenant, name: 'sq-up', tax_id: 'SQTAX-UP', phone: '555-SQUP-3' },
        { business_id: tenant, name: 'sq-up-b', tax_id: 'SQTAX-UPB', phone: '555-SQUP-B' },
      ], { updateOnDuplicate: ['tax_id', 'phone'], conflictAttributes: ['business_id', 'name'] })
      await Customer.bulkCreate([
        { business_id: tenant, name: 'sq-up-b', phone: '555-SQUP-IGNORED' },
        { business_id: tenant, name: 'sq-up-c', phone: '555-SQUP-C' },
      ], { ignoreDuplicates: true })
      const all = await Customer.findAll({ where: { business_id: tenant }, order: [['name', 'ASC']] })
      emit('upsert:bulk', all.map(customerView))
    })
  },

  // Less common shapes of everyday queries.
  async edges() {
    await withModels({}, async ({ sequelize, Customer, Invoice }) => {
      await Customer.bulkCreate([0, 1, 2].map((i) => ({
        business_id: tenant, name: `sq-e${i}`, email: `sq.e${i}@seq.example`, tax_id: i === 2 ? null : `SQTAX-E${i}`, phone: `555-SQE${i}`,
      })))
      const q = (where) => Customer.findAll({ where, order: [['name', 'ASC']] }).then((rows) => rows.map((r) => r.name), ormFailure)
      emit('edges:in_empty', await q({ email: { [Op.in]: [] } }))
      emit('edges:not_in', await q({ business_id: tenant, email: { [Op.notIn]: ['SQ.E0@seq.example'] } }))
      emit('edges:ne', await q({ business_id: tenant, tax_id: { [Op.ne]: 'SQTAX-E0' } }))
      emit('edges:or', await q({ [Op.or]: [{ email: 'sq.e0@SEQ.example' }, { tax_id: 'SQTAX-E1' }] }))
      emit('edges:is_null', await q({ business_id: tenant, tax_id: null }))
      emit('edges:not_null', await q({ business_id: tenant, tax_id: { [Op.not]: null } }))
      const [n] = await Customer.update({ phone: '555-SQE-BYMAIL' }, { where: { email: 'SQ.E1@seq.example' } })
      emit('edges:update_where_email', n)
      emit('edges:destroy_where_tax', await Customer.destroy({ where: { tax_id: 'SQTAX-E0' } }))
      const c = await Customer.findOne({ where: { business_id: tenant, name: 'sq-e1' } })
      await Invoice.bulkCreate([1, 2, 3].map((k) => ({ business_id: tenant, customer_id: c.id, total: k, notes: `sq note e${k}` })))
      const page = await Customer.findAndCountAll({
        where: { business_id: tenant }, include: [{ model: Invoice, as: 'invoices' }], order: [['name', 'ASC']], limit: 1, distinct: true,
      })
      emit('edges:find_and_count', { count: page.count, rows: page.rows.map((r) => [r.name, r.invoices.map((i) => i.notes).sort()]) })
      emit('edges:increment', await Customer.increment('credit', { by: 1, where: { id: c.id } }).then(() => 'ok', ormFailure))
      const bound = await sequelize.query('SELECT name, phone FROM customers WHERE email = $1', { bind: ['sq.e1@seq.example'], type: 'SELECT' })
      emit('edges:raw_query_bind', bound)
      const replaced = await sequelize.query('SELECT name FROM customers WHERE tax_id IN (:taxes)', { replacements: { taxes: ['SQTAX-E1', 'x'] }, type: 'SELECT' })
      emit('edges:raw_query_replacements', replaced)
    })
    // many businesses on one pool: the tenant set per transaction
    await withModels({ sessionTenant: null }, async ({ sequelize, Customer }) => {
      const phone = await sequelize.transaction(async (t) => {
        await sequelize.query(`SET LOCAL pgseal.tenant = '${tenant}'`, { transaction: t })
        const c = await Customer.findOne({ where: { business_id: tenant, name: 'sq-e2' }, transaction: t })
        await c.update({ phone: '555-SQE-LOCAL' }, { transaction: t })
        return (await Customer.findByPk(c.id, { transaction: t })).phone
      })
      emit('edges:set_local', phone)
      emit('edges:after_set_local', await Customer.update({ phone: '555-SQE-NOTENANT' }, { where: { name: 'sq-e2' } }).catch(ormFailure))
    })
    // a savepoint: the refusal aborts only the nested transaction
    await withModels({}, async ({ sequelize, Customer }) => {
      const outcome = await sequelize.transaction(async (t) => {
        await Customer.create({ business_id: tenant, name: 'sq-e-outer', phone: '555-SQE-OUTER' }, { transaction: t })
        const inner = await sequelize.transaction({ transaction: t }, async (t2) => {
          await Customer.create({ business_id: tenant, name: 'sq-e-inner', phone: '555-SQE-INNER' }, { transaction: t2 })
          return Customer.findAll({ order: [['phone', 'ASC']], transaction: t2 })
        }).catch(ormFailure)
        const after = await Customer.count({ where: { business_id: tenant }, transaction: t })
        return { inner, after }
      })
      emit('edges:savepoint', outcome)
      emit('edges:left', (await Customer.findAll({ where: { business_id: tenant }, order: [['name', 'ASC']] })).map((c) => [c.name, c.phone]))
    })
  },

  async destroy() {
    await withModels({}, async ({ Customer, Invoice }) => {
      const keep = await Customer.create({ business_id: tenant, name: 'sq-d-keep', phone: '555-SQD-KEEP' })
      const gone = await Customer.create({ business_id: tenant, name: 'sq-d-gone', phone: '555-SQD-GONE' })
      const inv = await Invoice.create({ business_id: tenant, customer_id: gone.id, total: 5, notes: 'sq d note' })
      await inv.destroy()
      await gone.destroy()
      emit('destroy:static', await Customer.destroy({ where: { id: keep.id + 1000 } }))
      emit('destroy:left', names(await Customer.findAll({ where: { business_id: tenant } })))
      emit('destroy:invoices_left', await Invoice.count({ where: { business_id: tenant } }))
    })
  },
}

runAll(scenarios, only).then(() => emit('done', true))
