# ActiveRecord 6.1 (postgresql adapter, the pg gem) through pgseal on the tables
# of tests/encrypted/conftest.py: customers, invoices and typed, whose protected
# columns are bytea in the catalog. AR reads column types from the catalog, so
# each model declares the logical type of its protected columns (`attribute`);
# AR never migrates or alters anything here.
#
# Connection from PGHOST/PGPORT/PGUSER/PGDATABASE. The session tenant is given
# as an app serving one business would: AR_TENANT_VIA=variables (AR runs
# `SET SESSION pgseal.tenant TO '61'` on connect) or options (the startup
# option `-c pgseal.tenant=61`). AR_PREPARED=false quotes values into the SQL.
# RUBY_TAG makes this run's values unique.
# Usage: ruby activerecord.rb all|SCENARIO[,SCENARIO...]
require "active_record"
require "bigdecimal"
require_relative "lib"

TENANT = Integer(ENV.fetch("AR_TENANT"))
TAG = ENV.fetch("RUBY_TAG")

config = {
  adapter: "postgresql",
  host: ENV.fetch("PGHOST"),
  port: Integer(ENV.fetch("PGPORT")),
  database: ENV.fetch("PGDATABASE"),
  username: ENV.fetch("PGUSER"),
  prepared_statements: ENV.fetch("AR_PREPARED") == "true",
  pool: 3,
}
case ENV.fetch("AR_TENANT_VIA")
when "variables" then config[:variables] = { "pgseal.tenant" => TENANT.to_s }
when "options" then config[:options] = "-c pgseal.tenant=#{TENANT}"
end
ActiveRecord::Base.establish_connection(config)
ActiveRecord::Base.default_timezone = :utc
ActiveRecord::Base.logger = nil

class Customer < ActiveRecord::Base
  self.table_name = "customers"
  # Written by pgseal alone; AR never reads or sets them.
  self.ignored_columns = %w[email_bidx tax_id_bidx]
  attribute :email, :string
  attribute :tax_id, :string
  attribute :phone, :string
  attribute :credit, :decimal
  has_many :invoices, dependent: :destroy
end

class Invoice < ActiveRecord::Base
  self.table_name = "invoices"
  attribute :notes, :string
  belongs_to :customer
end

# The same table without the declarations: AR takes every protected column for
# bytea and sends its values in binary.
class UndeclaredCustomer < ActiveRecord::Base
  self.table_name = "customers"
end

class UniqueEmailCustomer < Customer
  # SELECT 1 AS one FROM "customers" WHERE "customers"."email" = $1 AND "customers"."business_id" = $2 LIMIT $3
  validates :email, uniqueness: { scope: :business_id }
end

class Typed < ActiveRecord::Base
  self.table_name = "typed"
  attribute :c_text, :string
  attribute :c_varchar, :string
  attribute :c_int, :integer
  attribute :c_bigint, :integer, limit: 8
  attribute :c_smallint, :integer, limit: 2
  attribute :c_numeric, :decimal
  attribute :c_bool, :boolean
  attribute :c_date, :date
  attribute :c_ts, :datetime
  attribute :c_tstz, :datetime
  attribute :c_uuid, :uuid
  attribute :c_jsonb, :jsonb
  attribute :c_bytea, :binary
  attribute :c_armored, :string
end

# A value as AR hands it to the app: its class and a JSON-able rendering.
def view(value)
  shown = case value
          when BigDecimal then value.to_s("F")
          when Time then value.utc.strftime("%F %T.%6N %Z")
          when Date then value.to_s
          when String then value.encoding == Encoding::BINARY ? value.unpack1("H*") : value
          else value
          end
  [value.class.name, shown]
end

def refusal
  yield
  nil
rescue ActiveRecord::StatementInvalid => e
  { "class" => e.class.name, "cause" => e.cause.class.name,
    "sqlstate" => e.cause.result&.error_field(PG::PG_DIAG_SQLSTATE), "message" => e.message }
end

def ann_attributes
  { business_id: TENANT, name: "ar-ann-#{TAG}", email: "  Ann.AR-#{TAG}@Example.COM ",
    tax_id: "ARTAX-#{TAG}-1", phone: "555-AR-#{TAG}", credit: BigDecimal("1234.5600") }
end

SCENARIOS = {
  "catalog" => lambda do
    conn = ActiveRecord::Base.connection
    emit("catalog:tables", %w[customers invoices typed].map { |t| conn.table_exists?(t) })
    emit("catalog:primary_key", [Customer.primary_key, Invoice.primary_key, Typed.primary_key])
    emit("catalog:columns", Customer.columns.map { |c| [c.name, c.sql_type] })
    emit("catalog:indexes", conn.indexes("customers").map { |i| [i.columns, i.unique] })
    emit("catalog:attribute_types", %w[email credit].map { |a| Customer.type_for_attribute(a).type })
    emit("catalog:tenant", conn.select_value("SELECT current_setting('pgseal.tenant', true)"))
  end,

  "crud" => lambda do
    ann = Customer.create!(ann_attributes)
    ann.invoices.create!(business_id: TENANT, total: BigDecimal("10.5"), notes: "ar note a #{TAG}")
    ann.invoices.create!(business_id: TENANT, total: 2, notes: "ar note b #{TAG}")
    found = Customer.find(ann.id)
    emit("crud:find", %w[name email tax_id phone credit].map { |a| view(found[a]) })
    by_email = Customer.find_by(email: " ann.ar-#{TAG}@example.com")
    emit("crud:find_by_email", by_email&.id == ann.id)
    emit("crud:find_by_none", Customer.find_by(email: "nobody-#{TAG}@example.com"))
    emit("crud:where_in", Customer.where(tax_id: ["ARTAX-#{TAG}-1", "ARTAX-#{TAG}-none"]).pluck(:name))
    Customer.create!(business_id: TENANT, name: "ar-ann2-#{TAG}", tax_id: "ARTAX-#{TAG}-2")
    emit("crud:where_not", Customer.where(business_id: TENANT).where.not(tax_id: "ARTAX-#{TAG}-1").pluck(:name))
    emit("crud:nil", Customer.where(id: ann.id, phone: nil).exists?)
    loaded = Customer.includes(:invoices).where(id: ann.id).to_a
    emit("crud:includes", loaded.map { |c| [c.phone, c.invoices.sort_by(&:id).map { |i| [i.notes, view(i.total)] }] })
    emit("crud:belongs_to", Invoice.where(customer_id: ann.id).order(:id).map { |i| i.customer.email })
    emit("crud:joins", Customer.joins(:invoices).where(business_id: TENANT, invoices: { total: 2 }).pluck(:phone, "invoices.notes"))
    emit("crud:count", [Customer.where(business_id: TENANT).count(:phone), ann.invoices.count])
  end,

  "update" => lambda do
    bob = Customer.create!(business_id: TENANT, name: "ar-bob-#{TAG}", phone: "555-ARB-OLD-#{TAG}")
    # UPDATE "customers" SET "phone" = $1 WHERE "customers"."id" = $2: the session's tenant.
    bob.update!(phone: "555-ARB-NEW-#{TAG}", email: "Bob-#{TAG}@ar", credit: BigDecimal("-0.5"))
    emit("update:reload", %w[phone email credit].map { |a| view(bob.reload[a]) })
    emit("update:find_by", Customer.find_by(email: "bob-#{TAG}@AR")&.id == bob.id)
    changed = Customer.where(id: bob.id).update_all(tax_id: "ARTAX-#{TAG}-bob")
    emit("update:update_all", [changed, Customer.where(tax_id: "ARTAX-#{TAG}-bob").pluck(:id) == [bob.id]])
    emit("update:id", bob.id)
  end,

  "bulk" => lambda do
    rows = 3.times.map do |i|
      { business_id: TENANT, name: "ar-bulk-#{TAG}-#{i}", email: "bulk#{i}-#{TAG}@ar",
        phone: "555-ARK-#{TAG}-#{i}", credit: BigDecimal(i) }
    end
    inserted = Customer.insert_all(rows, returning: %w[id phone])
    emit("bulk:insert_all", inserted.rows.map { |_, phone| phone })
    emit("bulk:find", Customer.find_by(email: "bulk1-#{TAG}@ar")&.phone)
    upserted = Customer.upsert_all(
      [{ business_id: TENANT, name: "ar-bulk-#{TAG}-1", email: "bulk1-#{TAG}@ar", phone: "555-ARK-#{TAG}-up", credit: 7 },
       { business_id: TENANT, name: "ar-bulk-#{TAG}-9", email: "bulk9-#{TAG}@ar", phone: "555-ARK-#{TAG}-9", credit: 9 }],
      unique_by: %i[business_id name], returning: %w[name phone]
    )
    emit("bulk:upsert_all", upserted.rows.sort)
    emit("bulk:after", Customer.where(business_id: TENANT).where("name LIKE ?", "ar-bulk-#{TAG}-%")
                               .order(:name).pluck(:name, :phone, :credit).map { |n, p, c| [n, p, c.to_s("F")] })
    # By primary key (AR's default): ON CONFLICT ("id") DO UPDATE SET "business_id" =
    # excluded."business_id", ... — a row of another business is left alone.
    mine = Customer.find_by!(name: "ar-bulk-#{TAG}-0")
    other = Customer.create!(business_id: TENANT + 1, name: "ar-bulk-other-#{TAG}")
    by_id = Customer.upsert_all(
      [{ id: mine.id, business_id: TENANT, name: mine.name, phone: "555-ARK-#{TAG}-byid" },
       { id: other.id, business_id: TENANT, name: "ar-bulk-stolen-#{TAG}", phone: "555-ARK-#{TAG}-stolen" }],
      returning: %w[id phone]
    )
    emit("bulk:upsert_by_id", [by_id.rows == [[mine.id, "555-ARK-#{TAG}-byid"]], mine.reload.phone])
    emit("bulk:other", [other.id, Customer.where(id: other.id).pluck(:business_id, :name, :phone)])
  end,

  "typed" => lambda do
    row = Typed.create!(
      business_id: TENANT, c_text: "ar text ✓ it's #{TAG}", c_varchar: "ar-vc", c_int: -42,
      c_bigint: 9_007_199_254_740_993, c_smallint: 7, c_numeric: BigDecimal("12345.678900"),
      c_bool: true, c_date: Date.new(2024, 2, 29), c_ts: Time.utc(2024, 2, 29, 12, 34, 56, 789_000),
      c_tstz: Time.utc(1999, 12, 31, 23, 59, 59, 1000), c_uuid: "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
      c_jsonb: { "ar" => ["x", 1], "nested" => { "ü" => nil } }, c_bytea: "\x00\x01\xfe\xff\\".b,
      c_armored: "ar armour #{TAG}"
    )
    again = Typed.find(row.id)
    emit("typed:values", Typed.attribute_names.grep(/\Ac_/).to_h { |a| [a, view(again[a])] })
    empty = Typed.create!(business_id: TENANT)
    emit("typed:nulls", Typed.find(empty.id).attributes.slice(*Typed.attribute_names.grep(/\Ac_/)).values.uniq)
    emit("typed:ids", [row.id, empty.id])
  end,

  "transaction" => lambda do
    name = "ar-tx-#{TAG}"
    error = begin
      Customer.transaction do
        Customer.create!(business_id: TENANT, name: name, phone: "555-ARTX-#{TAG}")
        Customer.create!(business_id: TENANT, name: name, phone: "555-ARTX2-#{TAG}")
      end
    rescue ActiveRecord::RecordNotUnique => e
      e.cause.result.error_field(PG::PG_DIAG_SQLSTATE)
    end
    emit("transaction:error", error)
    emit("transaction:kept", Customer.where(name: name).count)
    Customer.transaction do
      Customer.create!(business_id: TENANT, name: name, phone: "555-ARTX3-#{TAG}")
      raise ActiveRecord::Rollback
    end
    emit("transaction:rolled_back", Customer.where(name: name).count)
    Customer.transaction do
      Customer.create!(business_id: TENANT, name: name, phone: "555-ARTX4-#{TAG}")
      begin
        Customer.transaction(requires_new: true) do # a SAVEPOINT
          Customer.where(name: name).update_all(phone: "555-ARTX5-#{TAG}")
          raise ActiveRecord::Rollback
        end
      end
    end
    emit("transaction:savepoint", Customer.where(name: name).pluck(:phone))
  end,

  "refused" => lambda do
    Customer.create!(business_id: TENANT, name: "ar-ref-#{TAG}", phone: "555-ARR-#{TAG}")
    emit("refused:order", refusal { Customer.where(name: "ar-ref-#{TAG}").order(:phone).to_a })
    emit("refused:like", refusal { Customer.where("phone LIKE ?", "555-%").to_a })
    emit("refused:after", Customer.where(name: "ar-ref-#{TAG}").pluck(:phone))
    # A refusal is an error like any other: the transaction is aborted (25P02
    # for what follows) and AR rolls it back, with the update before it.
    inside = []
    begin
      Customer.transaction do
        Customer.where(name: "ar-ref-#{TAG}").update_all(phone: "555-ARR2-#{TAG}")
        inside << refusal { Customer.order(:phone).first }&.fetch("sqlstate")
        Customer.where(name: "ar-ref-#{TAG}").pluck(:phone)
      end
    rescue ActiveRecord::StatementInvalid => e
      inside << e.cause.result&.error_field(PG::PG_DIAG_SQLSTATE)
    end
    inside << Customer.where(name: "ar-ref-#{TAG}").pluck(:phone)
    emit("refused:in_transaction", inside)
    threads = 3.times.map do |i|
      Thread.new do
        ActiveRecord::Base.connection_pool.with_connection do
          [refusal { Customer.where("email ILIKE ?", "%#{i}").load }&.fetch("sqlstate"),
           Customer.where(name: "ar-ref-#{TAG}").pluck(:phone)]
        end
      end
    end
    emit("refused:pool", threads.map(&:value))
  end,

  "destroy" => lambda do
    carl = Customer.create!(business_id: TENANT, name: "ar-carl-#{TAG}", email: "carl-#{TAG}@ar", phone: "555-ARC-#{TAG}")
    carl.invoices.create!(business_id: TENANT, total: 1, notes: "ar carl note #{TAG}")
    carl.destroy! # the invoices first (dependent: :destroy), then DELETE ... WHERE id = $1
    emit("destroy:gone", [Customer.exists?(carl.id), Invoice.where(customer_id: carl.id).count])
    dave = Customer.create!(business_id: TENANT, name: "ar-dave-#{TAG}", email: "dave-#{TAG}@ar")
    emit("destroy:by_email", Customer.where(email: "DAVE-#{TAG}@ar").delete_all)
    emit("destroy:dave_gone", Customer.exists?(dave.id))
  end,

  "everyday" => lambda do
    ann = Customer.create!(ann_attributes)
    ann.invoices.create!(business_id: TENANT, total: 3, notes: "ar everyday #{TAG}")
    email = "carol-#{TAG}@ar"
    carol = Customer.find_or_create_by!(business_id: TENANT, email: email) { |c| c.name = "ar-carol-#{TAG}" }
    again = Customer.find_or_create_by!(business_id: TENANT, email: " CAROL-#{TAG}@AR")
    # INSERT in a SAVEPOINT, 23505, ROLLBACK TO SAVEPOINT, then the SELECT.
    found = Customer.create_or_find_by!(business_id: TENANT, name: "ar-carol-#{TAG}")
    emit("everyday:find_or_create", [again.id == carol.id, found.id == carol.id, found.email])
    emit("everyday:unique_email", UniqueEmailCustomer.new(business_id: TENANT, name: "x-#{TAG}", email: email.upcase).valid?)
    emit("everyday:eager_load", Customer.eager_load(:invoices).where(id: ann.id).map { |c| [c.email, c.invoices.map(&:notes)] })
    emit("everyday:with_lock", ann.with_lock { ann.phone }) # SELECT ... FOR UPDATE, then reload
    emit("everyday:or", Customer.where(email: email).or(Customer.where(tax_id: ann.tax_id)).order(:id).pluck(:name))
    mine = Customer.where(business_id: TENANT) # ORDER BY "customers"."id" LIMIT 1
    emit("everyday:first_last", [mine.first.id == ann.id, mine.last.id == carol.id])
    local = Customer.transaction do
      Customer.connection.execute("SET LOCAL pgseal.tenant = '#{TENANT + 100}'")
      Customer.create!(name: "ar-local-#{TAG}", phone: "555-ARL-#{TAG}").id
    end
    emit("everyday:set_local", Customer.where(id: local).pluck(:business_id))
    # reset!: DISCARD ALL, then AR configures the session again (variables) or
    # Postgres restores the startup option's tenant.
    Customer.connection.reset!
    emit("everyday:reset", Customer.create!(name: "ar-reset-#{TAG}", phone: "555-ARS-#{TAG}").reload.business_id)
  end,

  "undeclared" => lambda do
    emit("undeclared:types", %w[phone credit].map { |a| UndeclaredCustomer.type_for_attribute(a).type })
    # A numeric's text sent as binary bytea: not a binary numeric, so refused.
    emit("undeclared:credit", refusal do
      UndeclaredCustomer.create!(business_id: TENANT, name: "ar-undeclared-#{TAG}", credit: "12.5")
    end)
    emit("undeclared:after", UndeclaredCustomer.where(name: "ar-undeclared-#{TAG}").count)
  end,
}.freeze

run_scenarios(SCENARIOS, ARGV.fetch(0, "all"))
