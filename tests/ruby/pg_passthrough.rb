# The pg gem (libpq underneath) through a pass-through pgseal, or straight to
# Postgres for the comparison. Connection from PGHOST/PGPORT/PGUSER/PGDATABASE;
# RUBY_PREFIX prefixes the tables this run makes.
# Usage: ruby pg_passthrough.rb all|SCENARIO[,SCENARIO...]
require "pg"
require_relative "lib"

PREFIX = ENV.fetch("RUBY_PREFIX")
$notices = []

def t(name) = "#{PREFIX}_#{name}"

def with_conn
  conn = PG.connect
  conn.set_notice_receiver { |r| $notices << r.error_field(PG::PG_DIAG_MESSAGE_PRIMARY) }
  yield conn
ensure
  conn&.close
end

SCENARIOS = {
  "exec_params" => lambda do
    with_conn do |c|
      sql = "SELECT $1::int + 1 AS n, $2::text AS t, $3::bytea AS b, $4::int AS z, $5::numeric AS d"
      params = [41, "it's \\ ✓", { value: "\x00\x01\xff".b, format: 1 }, nil, "-12.50"]
      text = c.exec_params(sql, params)
      emit("exec_params:text", text.values.first.map { |v| v&.dup&.force_encoding("UTF-8") })
      emit("exec_params:types", text.fields.each_index.map { |i| text.ftype(i) })
      binary = c.exec_params(sql, params, 1)
      emit("exec_params:binary_formats", binary.fields.each_index.map { |i| binary.fformat(i) })
      emit("exec_params:binary", binary.values.first.map { |v| v&.unpack1("H*") })
      bad = failure { c.exec_params("SELECT $1::int", ["nope"]) }
      emit("exec_params:bad", bad["sqlstate"])
      emit("exec_params:after", c.exec_params("SELECT $1::int * 2 AS v", [21]).getvalue(0, 0))
    end
  end,

  "prepared" => lambda do
    with_conn do |c|
      $notices.clear
      c.exec("DROP TABLE IF EXISTS #{t('p')}; CREATE TABLE #{t('p')} (id serial PRIMARY KEY, v text)")
      emit("prepared:notices", $notices.map { |n| n.sub(PREFIX, "PREFIX") })
      c.prepare("ins", "INSERT INTO #{t('p')} (v) VALUES ($1) RETURNING id")
      ids = 60.times.map { |i| c.exec_prepared("ins", ["v#{i}"]).getvalue(0, 0).to_i }
      emit("prepared:ids", ids.uniq.size)
      c.prepare("sel", "SELECT v, id FROM #{t('p')} WHERE id = $1")
      described = c.describe_prepared("sel")
      emit("prepared:describe", [described.nparams, described.paramtype(0), described.fields])
      emit("prepared:row", c.exec_prepared("sel", [ids[7]]).values)
      emit("prepared:binary", c.exec_prepared("sel", [ids[7]], 1).values.first.map { |v| v.unpack1("H*") })
      dup = failure { c.prepare("ins", "SELECT 1") }
      emit("prepared:duplicate", dup["sqlstate"])
      c.exec("DEALLOCATE ins")
      emit("prepared:statements", c.exec("SELECT name FROM pg_prepared_statements ORDER BY name").column_values(0))
    end
  end,

  "async" => lambda do
    with_conn do |c|
      c.send_query("SELECT 1 AS a; SELECT 'two' AS b; SELECT * FROM #{t('missing')}; SELECT 4")
      results = []
      while (r = c.get_result)
        results << (r.result_status == PG::PGRES_TUPLES_OK ? r.values : r.error_field(PG::PG_DIAG_SQLSTATE))
      end
      emit("async:results", results)
      c.send_query_params("SELECT $1::int + 1", [1])
      c.block
      emit("async:params", c.get_last_result.getvalue(0, 0))
      emit("async:after", c.exec("SELECT 'ok'").getvalue(0, 0))
    end
  end,

  "pipeline" => lambda do
    with_conn do |c|
      c.enter_pipeline_mode
      c.send_query_params("SELECT $1::int AS a", [1])
      c.send_query_params("SELECT * FROM #{t('missing')}", [])
      c.send_query_params("SELECT $1::text AS b", ["skipped"])
      c.pipeline_sync
      c.send_query_params("SELECT $1::int * 3 AS c", [7])
      c.pipeline_sync
      seen = []
      until seen.count("sync") == 2
        r = c.get_result or next # nil ends each query's results
        seen << case r.result_status
                when PG::PGRES_TUPLES_OK then r.values
                when PG::PGRES_PIPELINE_SYNC then "sync"
                when PG::PGRES_PIPELINE_ABORTED then "aborted"
                else r.error_field(PG::PG_DIAG_SQLSTATE)
                end
      end
      c.exit_pipeline_mode
      emit("pipeline:results", seen)
      c.send_query("SELECT generate_series(1, 3) AS n")
      c.set_single_row_mode
      rows = []
      while (r = c.get_result)
        rows << [r.result_status == PG::PGRES_SINGLE_TUPLE, r.values]
      end
      emit("pipeline:single_row", rows)
      c.reset # a new connection (startup again) on the same object
      emit("pipeline:reset", c.exec("SELECT 5").getvalue(0, 0))
      emit("pipeline:status", %w[server_encoding client_encoding integer_datetimes].map { |p| c.parameter_status(p) })
    end
  end,

  "copy" => lambda do
    with_conn do |c|
      c.exec("DROP TABLE IF EXISTS #{t('c')}; CREATE TABLE #{t('c')} (id int, v text, b bytea)")
      c.copy_data("COPY #{t('c')} FROM STDIN") do
        500.times { |i| c.put_copy_data("#{i}\trow #{i} \\\\ ✓\t\\\\x00ff\n") }
      end
      emit("copy:in", c.exec("SELECT count(*), sum(id) FROM #{t('c')}").values)
      lines = []
      c.copy_data("COPY (SELECT * FROM #{t('c')} WHERE id < 3 ORDER BY id) TO STDOUT (FORMAT csv)") do
        while (line = c.get_copy_data)
          lines << line.force_encoding("UTF-8")
        end
      end
      emit("copy:out", lines)
      coder = PG::TextEncoder::CopyRow.new
      c.copy_data("COPY #{t('c')} (id, v) FROM STDIN", coder) do
        c.put_copy_data([1000, "coded\ttab"])
      end
      emit("copy:coded", c.exec("SELECT v FROM #{t('c')} WHERE id = 1000").getvalue(0, 0))
      bad = failure do
        c.copy_data("COPY #{t('c')} (id) FROM STDIN") { c.put_copy_data("not a number\n") }
      end
      emit("copy:bad", bad["sqlstate"])
      emit("copy:after", c.exec("SELECT count(*) FROM #{t('c')}").getvalue(0, 0))
    end
  end,

  "type_map" => lambda do
    with_conn do |c|
      c.type_map_for_results = PG::BasicTypeMapForResults.new(c)
      c.type_map_for_queries = PG::BasicTypeMapForQueries.new(c)
      row = c.exec(
        "SELECT 42 AS i, 1.5::float8 AS f, true AS t, '2024-02-29'::date AS d, " \
        "'2024-02-29 12:34:56.5+00'::timestamptz AS ts, 12.50::numeric AS n, " \
        "ARRAY[1, 2, 3] AS a, '{\"k\": [1]}'::jsonb AS j, NULL::int AS z"
      ).tuple(0)
      emit("type_map:classes", row.to_h.transform_values { |v| v.class.name })
      emit("type_map:values", row.to_h.transform_values { |v| v.is_a?(Time) ? v.utc.strftime("%FT%T.%L%z") : v.to_s })
      typed = c.exec_params("SELECT $1 + 1 AS i, $2 AS b, $3 AS a", [41, false, [1, 2]]).tuple(0)
      emit("type_map:params", typed.to_h.transform_values(&:inspect))
    end
  end,

  "transaction" => lambda do
    with_conn do |c|
      c.exec("DROP TABLE IF EXISTS #{t('tx')}; CREATE TABLE #{t('tx')} (id int)")
      states = []
      begin
        c.transaction do
          c.exec("INSERT INTO #{t('tx')} VALUES (1)")
          states << failure { c.exec("SELECT * FROM #{t('missing')}") }["sqlstate"]
          states << failure { c.exec("SELECT 1") }["sqlstate"]
          states << c.transaction_status
          raise PG::Error, "roll back"
        end
      rescue PG::Error
        states << c.transaction_status
      end
      states << c.exec("SELECT count(*) FROM #{t('tx')}").getvalue(0, 0)
      emit("transaction:states", states)
      c.transaction do
        c.exec("INSERT INTO #{t('tx')} VALUES (2)")
        c.exec("SAVEPOINT s")
        failure { c.exec("SELECT 1/0") }
        c.exec("ROLLBACK TO SAVEPOINT s")
        c.exec("INSERT INTO #{t('tx')} VALUES (3)")
      end
      emit("transaction:savepoint", c.exec("SELECT array_agg(id ORDER BY id)::text FROM #{t('tx')}").getvalue(0, 0))
    end
  end,

  "cancel" => lambda do
    with_conn do |c|
      started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
      c.send_query("SELECT pg_sleep(30)")
      sleep 0.3
      emit("cancel:sent", c.cancel)
      result = c.get_result
      emit("cancel:sqlstate", result.error_field(PG::PG_DIAG_SQLSTATE))
      nil while c.get_result
      emit("cancel:fast", Process.clock_gettime(Process::CLOCK_MONOTONIC) - started < 10)
      emit("cancel:after", c.exec("SELECT 'usable'").getvalue(0, 0))
      blocking = failure { c.exec("SET statement_timeout = 200; SELECT pg_sleep(5)") }
      emit("cancel:timeout", blocking["sqlstate"])
    end
  end,

  "notify" => lambda do
    with_conn do |listener|
      with_conn do |notifier|
        listener.exec("LISTEN #{t('chan')}")
        notifier.exec("NOTIFY #{t('chan')}, 'hello ✓'")
        got = nil
        listener.wait_for_notify(5) do |channel, pid, payload|
          got = [channel == t("chan"), pid == notifier.backend_pid, payload.force_encoding("UTF-8")]
        end
        emit("notify:received", got)
        notifier.exec_params("SELECT pg_notify($1, $2)", [t("chan"), "second"])
        second = nil
        listener.wait_for_notify(5) { |_, _, payload| second = payload }
        emit("notify:second", second)
        emit("notify:none", listener.wait_for_notify(0.2))
        listener.exec("UNLISTEN *")
        notifier.exec("NOTIFY #{t('chan')}, 'unheard'")
        emit("notify:unlistened", listener.wait_for_notify(0.3))
      end
    end
  end,
}.freeze

run_scenarios(SCENARIOS, ARGV.fetch(0, "all"))
