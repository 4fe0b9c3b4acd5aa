// Shared by the node-postgres scenario scripts: one JSON line per check on
// stdout, which the pytest side parses and asserts on.
'use strict'

function emit(check, value) {
  process.stdout.write(JSON.stringify({ check, value }) + '\n')
}

// An error as the checks compare it: its SQLSTATE and message, nothing else.
function failure(err) {
  return { code: err.code || null, message: String(err.message) }
}

// Runs each scenario in turn; one that throws is reported, not fatal, so a
// single failure does not hide the others.
async function runAll(scenarios, only) {
  for (const [name, scenario] of Object.entries(scenarios)) {
    if (only.length && !only.includes(name)) continue
    try {
      await scenario()
    } catch (err) {
      emit(name + ':crashed', failure(err))
    }
  }
}

module.exports = { emit, failure, runAll }
