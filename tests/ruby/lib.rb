# Shared by the Ruby scenarios: one JSON line per check on stdout, and a runner
# that reports a scenario which raised as "<name>:crashed" and goes on.
require "json"

$stdout.sync = true

def emit(name, value)
  puts JSON.generate({ "check" => name, "value" => value })
end

# The SQLSTATE and message of a PG::Error (or an ActiveRecord error caused by one).
def failure
  yield
  nil
rescue PG::Error => e
  { "sqlstate" => e.result&.error_field(PG::PG_DIAG_SQLSTATE), "message" => e.message }
end

def run_scenarios(scenarios, only)
  names = only == "all" ? scenarios.keys : only.split(",")
  names.each do |name|
    scenarios.fetch(name).call
  rescue StandardError, ScriptError => e
    emit("#{name}:crashed", "#{e.class}: #{e.message} at #{e.backtrace&.first(3)&.join(' < ')}")
  end
  emit("done", true)
end
