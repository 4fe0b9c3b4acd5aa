# The pg gem on the protected tables of tests/encrypted/conftest.py: binary
# results (pgseal encodes each opened value as Postgres would), binary and typed
# parameters, PG::BasicTypeMapForResults by the type OIDs pgseal rewrites, COPY
# in and out. Connection from PGHOST/PGPORT/PGUSER/PGDATABASE; the session's
# tenant is PG_TENANT (startup option); RUBY_TAG makes this run's values unique.
# Usage: ruby pg_encrypted.rb all|SCENARIO[,SCENARIO...]
require "pg"
require_relative "lib"

TENANT = Integer(ENV.fetch("PG_TENANT"))
TAG = ENV.fetch("RUBY_TAG")

# Each column with a value to write as text, and Postgres's type for it.
TYPED = [
  ["c_text", "pg text ✓ #{TAG}", "text"],
  ["c_int", "-42", "integer"],
  ["c_bigint", "9007199254740993", "bigint"],
  ["c_smallint", "7", "smallint"],
  ["c_numeric", "12345.678900", "numeric"],
  ["c_bool", "t", "boolean"],
  ["c_date", "2024-02-29", "date"],
  ["c_ts", "2024-02-29 12:34:56.789", "timestamp"],
  ["c_tstz", "1999-12-31 23:59:59.001+00", "timestamptz"],
  ["c_uuid", "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "uuid"],
  ["c_jsonb", '{"pg": [1, "x"]}', "jsonb"],
  ["c_bytea", "\\x0001feff", "bytea"],
].freeze

def connect
  PG.connect(options: "-c pgseal.tenant=#{TENANT}")
end

def insert_typed(conn)
  names = TYPED.map(&:first)
  marks = names.each_index.map { |i| "$#{i + 2}" }
  sql = "INSERT INTO typed (business_id, #{names.join(', ')}) VALUES ($1, #{marks.join(', ')}) RETURNING id"
  conn.exec_params(sql, [TENANT, *TYPED.map { |t| t[1] }]).getvalue(0, 0).to_i
end

SCENARIOS = {
  "binary" => lambda do
    c = connect
    id = insert_typed(c)
    names = TYPED.map(&:first).join(", ")
    opened = c.exec_params("SELECT #{names} FROM typed WHERE id = $1", [id], 1)
    # Postgres's own binary encoding of the same values (no protected table: passed through).
    casts = TYPED.each_with_index.map { |(_, _, type), i| "$#{i + 1}::#{type}" }.join(", ")
    expected = c.exec_params("SELECT #{casts}", TYPED.map { |t| t[1] }, 1)
    emit("binary:types", opened.fields.each_index.map { |i| opened.ftype(i) } ==
                         expected.fields.each_index.map { |i| expected.ftype(i) })
    emit("binary:values", TYPED.each_index.map do |i|
      [TYPED[i][0], opened.getvalue(0, i).unpack1("H*") == expected.getvalue(0, i).unpack1("H*")]
    end)
    emit("binary:id", id)
  ensure
    c&.close
  end,

  "binary_params" => lambda do
    c = connect
    params = [
      { value: [TENANT].pack("l>"), type: 23, format: 1 },
      { value: [-7].pack("l>"), type: 23, format: 1 },
      { value: "\x00\x01\xfe\xff#{TAG}".b, type: 17, format: 1 },
      { value: "pg binary text #{TAG}", type: 25, format: 1 },
    ]
    id = c.exec_params(
      "INSERT INTO typed (business_id, c_int, c_bytea, c_text) VALUES ($1, $2, $3, $4) RETURNING id", params
    ).getvalue(0, 0).to_i
    row = c.exec_params("SELECT c_int, c_bytea, c_text FROM typed WHERE id = $1", [id]).values.first
    emit("binary_params:row", row)
    emit("binary_params:id", id)
  ensure
    c&.close
  end,

  "type_map" => lambda do
    c = connect
    c.type_map_for_results = PG::BasicTypeMapForResults.new(c)
    id = insert_typed(c)
    row = c.exec_params("SELECT #{TYPED.map(&:first).join(', ')} FROM typed WHERE id = $1", [id]).tuple(0)
    emit("type_map:classes", row.to_h.transform_values { |v| v.class.name })
    emit("type_map:values", row.to_h.transform_values do |v|
      case v
      when Time then v.utc.strftime("%F %T.%L")
      when BigDecimal then v.to_s("F")
      when String then v.encoding == Encoding::BINARY ? v.unpack1("H*") : v
      else v
      end
    end)
  ensure
    c&.close
  end,

  "copy" => lambda do
    c = connect
    c.copy_data("COPY customers (business_id, name, phone, email) FROM STDIN") do
      20.times { |i| c.put_copy_data("#{TENANT}\tpg-copy-#{TAG}-#{i}\t555-PGC-#{TAG}-#{i}\tCopy#{i}-#{TAG}@PG \n") }
    end
    emit("copy:search", c.exec_params("SELECT name FROM customers WHERE email = $1", ["copy7-#{TAG}@pg"]).values)
    decoder = PG::TextDecoder::CopyRow.new
    rows = []
    c.copy_data("COPY (SELECT name, phone FROM customers WHERE business_id = #{TENANT} ORDER BY name) TO STDOUT",
                decoder) do
      while (row = c.get_copy_data)
        rows << row
      end
    end
    emit("copy:out", rows.select { |name, _| name.start_with?("pg-copy-#{TAG}-1") })
    emit("copy:count", rows.size)
  ensure
    c&.close
  end,
}.freeze

run_scenarios(SCENARIOS, ARGV.fetch(0, "all"))
