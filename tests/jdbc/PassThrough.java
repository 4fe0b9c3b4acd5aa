import java.io.StringReader;
import java.io.StringWriter;
import java.math.BigDecimal;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DatabaseMetaData;
import java.sql.ParameterMetaData;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Savepoint;
import java.sql.Statement;
import java.sql.Timestamp;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import org.postgresql.PGConnection;
import org.postgresql.PGNotification;
import org.postgresql.copy.CopyManager;

/**
 * pgjdbc scenarios on plain tables, run once straight at Postgres and once
 * through a pass-through pgseal; tests/jdbc/test_jdbc_passthrough.py compares
 * the two outputs and asserts on each. Usage: PassThrough JDBC_URL PREFIX, where
 * PREFIX keeps the two runs' tables and channels apart in one database.
 */
public final class PassThrough {
    private final String url;
    private final String prefix;

    private PassThrough(String url, String prefix) {
        this.url = url;
        this.prefix = prefix;
    }

    public static void main(String[] args) {
        PassThrough p = new PassThrough(args[0], args[1]);
        Checks.run("statement", p::statement);
        Checks.run("prepared", p::prepared);
        Checks.run("binary", p::binary);
        Checks.run("batch", p::batch);
        Checks.run("batch_duplicate", p::batchDuplicate);
        Checks.run("fetch_size", p::fetchSize);
        Checks.run("savepoints", p::savepoints);
        Checks.run("query_timeout", p::queryTimeout);
        Checks.run("cancel", p::cancel);
        Checks.run("copy", p::copy);
        Checks.run("notify", p::notifyListen);
        Checks.run("more_results", p::moreResults);
        Checks.run("metadata", p::metadata);
        Checks.check("done").emit();
    }

    private String t(String name) {
        return prefix + "_" + name;
    }

    private Connection connect(String... options) throws SQLException {
        return Checks.connect(url, options);
    }

    private static List<String> row(ResultSet rs) throws SQLException {
        List<String> values = new ArrayList<>();
        for (int i = 1; i <= rs.getMetaData().getColumnCount(); i++) {
            Object value = rs.getObject(i);
            values.add(value == null ? null : value.toString());
        }
        return values;
    }

    private static List<List<String>> rows(ResultSet rs) throws SQLException {
        List<List<String>> all = new ArrayList<>();
        while (rs.next()) {
            all.add(row(rs));
        }
        return all;
    }

    private static List<List<String>> query(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            return rows(rs);
        }
    }

    private static long scalar(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            rs.next();
            return rs.getLong(1);
        }
    }

    private static List<String> serverStatements(Connection c) throws SQLException {
        List<String> names = new ArrayList<>();
        for (List<String> r : query(c, "SELECT name FROM pg_prepared_statements ORDER BY name")) {
            names.add(r.get(0));
        }
        return names;
    }

    private void statement() throws SQLException {
        try (Connection c = connect(); Statement s = c.createStatement()) {
            s.execute("DROP TABLE IF EXISTS " + t("plain"));
            int created = s.executeUpdate("CREATE TABLE " + t("plain") + " (id int PRIMARY KEY, v text)");
            int inserted = s.executeUpdate(
                    "INSERT INTO " + t("plain") + " VALUES (1, 'one'), (2, 'two'), (3, NULL)");
            List<List<String>> got = query(c, "SELECT 1, 'x'::text, 1.50::numeric, NULL::int, 'é€'::text");
            List<List<String>> table = query(c, "SELECT id, v FROM " + t("plain") + " ORDER BY id");
            Checks.check("statement").put("created", created).put("inserted", inserted)
                    .put("values", got).put("table", table).emit();
        }
    }

    private void prepared() throws SQLException {
        try (Connection c = connect()) {
            String sql = "SELECT ?::int + 1, ?::text, ?::numeric, ?::bytea, ?::timestamp, ?::uuid, ?::bool, ?::int";
            List<List<String>> results = new ArrayList<>();
            List<String> statementsSeen = new ArrayList<>();
            List<String> describedParams = new ArrayList<>();
            List<String> describedColumns = new ArrayList<>();
            try (PreparedStatement ps = c.prepareStatement(sql)) {
                ParameterMetaData pm = ps.getParameterMetaData();
                for (int i = 1; i <= pm.getParameterCount(); i++) {
                    describedParams.add(pm.getParameterTypeName(i));
                }
                ResultSetMetaData md = ps.getMetaData();
                for (int i = 1; i <= md.getColumnCount(); i++) {
                    describedColumns.add(md.getColumnTypeName(i));
                }
                for (int i = 0; i < 12; i++) {
                    ps.setInt(1, i);
                    ps.setString(2, "s" + i + "'\\\"é");
                    ps.setBigDecimal(3, new BigDecimal("12345678901234567890.5").add(BigDecimal.valueOf(i)));
                    ps.setBytes(4, new byte[] {0, (byte) i, (byte) 0xff});
                    ps.setTimestamp(5, Timestamp.valueOf("2024-02-29 12:34:56.789"));
                    ps.setObject(6, new UUID(i, 42));
                    ps.setBoolean(7, i % 2 == 0);
                    ps.setNull(8, java.sql.Types.INTEGER);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        List<String> r = row(rs);
                        r.set(3, bytes(rs.getBytes(4)));
                        results.add(r);
                    }
                }
                statementsSeen = serverStatements(c);
            }
            Checks.check("prepared").put("results", results).put("server_statements", statementsSeen)
                    .put("param_types", describedParams).put("column_types", describedColumns).emit();
        }
    }

    private static String bytes(byte[] value) {
        StringBuilder hex = new StringBuilder();
        for (byte b : value) {
            hex.append(String.format("%02x", b));
        }
        return hex.toString();
    }

    private void binary() throws SQLException {
        try (Connection c = connect("prepareThreshold", "1", "binaryTransfer", "true")) {
            List<List<String>> results = new ArrayList<>();
            String sql = "SELECT ?::int4, ?::int8, ?::float8, ?::numeric, ?::date, ?::timestamptz,"
                    + " ?::uuid, ?::bytea, ARRAY[?::int4, 2], ?::text, ?::int2";
            try (PreparedStatement ps = c.prepareStatement(sql)) {
                for (int i = 0; i < 5; i++) {
                    ps.setInt(1, -i);
                    ps.setLong(2, Long.MAX_VALUE - i);
                    ps.setDouble(3, 0.1 * i);
                    ps.setBigDecimal(4, new BigDecimal("-0.000" + i));
                    ps.setDate(5, java.sql.Date.valueOf("1999-12-3" + (i % 2)));
                    ps.setTimestamp(6, new Timestamp(1700000000000L + i));
                    ps.setObject(7, new UUID(-1, i));
                    ps.setBytes(8, new byte[] {(byte) i});
                    ps.setInt(9, i);
                    ps.setString(10, "b" + i);
                    ps.setShort(11, (short) i);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        List<String> r = row(rs);
                        r.set(7, bytes(rs.getBytes(8)));
                        r.set(5, String.valueOf(rs.getTimestamp(6).getTime()));
                        results.add(r);
                    }
                }
                Checks.check("binary").put("results", results)
                        .put("server_statements", serverStatements(c)).emit();
            }
        }
    }

    private void batch() throws SQLException {
        for (String rewrite : new String[] {"false", "true"}) {
            try (Connection c = connect("reWriteBatchedInserts", rewrite)) {
                String table = t("batch_" + rewrite);
                try (Statement s = c.createStatement()) {
                    s.execute("DROP TABLE IF EXISTS " + table);
                    s.execute("CREATE TABLE " + table + " (id int PRIMARY KEY, v text, n numeric)");
                }
                long[] counts;
                try (PreparedStatement ps = c.prepareStatement(
                        "INSERT INTO " + table + " (id, v, n) VALUES (?, ?, ?)")) {
                    for (int i = 0; i < 1000; i++) {
                        ps.setInt(1, i);
                        ps.setString(2, "row " + i + " " + "x".repeat(i % 50));
                        ps.setBigDecimal(3, BigDecimal.valueOf(i, 2));
                        ps.addBatch();
                    }
                    counts = ps.executeLargeBatch();
                }
                long total = 0;
                for (long count : counts) {
                    total += count;
                }
                Checks.check("batch_rewrite_" + rewrite).put("counts", counts.length)
                        .put("counts_sum", total)
                        .put("rows", query(c, "SELECT count(*), sum(id), sum(n), sum(length(v)) FROM " + table))
                        .emit();
            }
        }
    }

    private void batchDuplicate() throws SQLException {
        for (String rewrite : new String[] {"false", "true"}) {
            String table = t("dup_" + rewrite);
            try (Connection c = connect("reWriteBatchedInserts", rewrite)) {
                try (Statement s = c.createStatement()) {
                    s.execute("DROP TABLE IF EXISTS " + table);
                    s.execute("CREATE TABLE " + table + " (id int PRIMARY KEY)");
                }
                String insert = "INSERT INTO " + table + " (id) VALUES (?)";
                Checks.Check autocommit = Checks.check("batch_duplicate_autocommit_" + rewrite);
                try (PreparedStatement ps = c.prepareStatement(insert)) {
                    for (int id : new int[] {1, 2, 3, 4, 2, 6, 7}) {
                        ps.setInt(1, id);
                        ps.addBatch();
                    }
                    ps.executeBatch();
                    autocommit.put("raised", false);
                } catch (BatchUpdateException e) {
                    autocommit.put("raised", true).error("exception", e);
                }
                autocommit.put("rows_after", query(c, "SELECT id FROM " + table + " ORDER BY id"))
                        .put("usable", scalar(c, "SELECT 41 + 1")).emit();

                Checks.Check tx = Checks.check("batch_duplicate_transaction_" + rewrite);
                c.setAutoCommit(false);
                try (Statement s = c.createStatement()) {
                    s.execute("DELETE FROM " + table);
                    s.execute("INSERT INTO " + table + " VALUES (100)");
                }
                try (PreparedStatement ps = c.prepareStatement(insert)) {
                    for (int id : new int[] {10, 11, 100, 12}) {
                        ps.setInt(1, id);
                        ps.addBatch();
                    }
                    ps.executeBatch();
                    tx.put("raised", false);
                } catch (BatchUpdateException e) {
                    tx.put("raised", true).error("exception", e);
                }
                try {
                    scalar(c, "SELECT 1");
                    tx.put("aborted", false);
                } catch (SQLException e) {
                    tx.error("aborted", e);
                }
                c.rollback();
                tx.put("rows_after_rollback", query(c, "SELECT id FROM " + table + " ORDER BY id"));
                try (Statement s = c.createStatement()) {
                    s.execute("INSERT INTO " + table + " VALUES (200)");
                }
                c.commit();
                c.setAutoCommit(true);
                tx.put("rows_after_commit", query(c, "SELECT id FROM " + table + " ORDER BY id")).emit();
            }
        }
    }

    private void fetchSize() throws SQLException {
        try (Connection c = connect()) {
            c.setAutoCommit(false);
            long sumA = 0;
            long sumB = 0;
            int rowsA = 0;
            int rowsB = 0;
            try (PreparedStatement a = c.prepareStatement("SELECT generate_series(1, ?)");
                    Statement b = c.createStatement()) {
                a.setFetchSize(100);
                b.setFetchSize(7);
                a.setInt(1, 2500);
                // Two portals open at once, fetched in turns (Execute with a row limit).
                try (ResultSet ra = a.executeQuery();
                        ResultSet rb = b.executeQuery("SELECT x, repeat('y', x) FROM generate_series(1, 300) x")) {
                    boolean moreA = true;
                    boolean moreB = true;
                    while (moreA || moreB) {
                        if (moreA && (moreA = ra.next())) {
                            sumA += ra.getLong(1);
                            rowsA++;
                        }
                        if (moreB && (moreB = rb.next())) {
                            sumB += rb.getString(2).length();
                            rowsB++;
                        }
                    }
                }
            }
            c.commit();
            Checks.check("fetch_size").put("rows_a", rowsA).put("sum_a", sumA).put("rows_b", rowsB)
                    .put("sum_b", sumB).emit();
        }
    }

    private void savepoints() throws SQLException {
        String table = t("sp");
        try (Connection c = connect()) {
            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE IF EXISTS " + table);
                s.execute("CREATE TABLE " + table + " (id int PRIMARY KEY)");
            }
            c.setAutoCommit(false);
            Checks.Check check = Checks.check("savepoints");
            try (Statement s = c.createStatement()) {
                s.execute("INSERT INTO " + table + " VALUES (1)");
                Savepoint first = c.setSavepoint();
                s.execute("INSERT INTO " + table + " VALUES (2)");
                c.rollback(first);
                Savepoint named = c.setSavepoint("before_dup");
                s.execute("INSERT INTO " + table + " VALUES (3)");
                try {
                    s.execute("INSERT INTO " + table + " VALUES (1)");
                } catch (SQLException e) {
                    check.error("duplicate", e);
                }
                c.rollback(named);
                s.execute("INSERT INTO " + table + " VALUES (4)");
                Savepoint released = c.setSavepoint("released");
                s.execute("INSERT INTO " + table + " VALUES (5)");
                c.releaseSavepoint(released);
            }
            c.commit();
            check.put("rows", query(c, "SELECT id FROM " + table + " ORDER BY id")).emit();
            c.setAutoCommit(true);
        }
        // autosave=always: the driver wraps every statement in its own savepoint.
        try (Connection c = connect("autosave", "always")) {
            c.setAutoCommit(false);
            Checks.Check autosave = Checks.check("autosave");
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO " + table + " VALUES (?)")) {
                for (int id : new int[] {10, 1, 11}) {
                    ps.setInt(1, id);
                    try {
                        ps.executeUpdate();
                    } catch (SQLException e) {
                        autosave.error("duplicate", e);
                    }
                }
            }
            c.commit();
            autosave.put("rows", query(c, "SELECT id FROM " + table + " ORDER BY id")).emit();
        }
    }

    private void queryTimeout() throws SQLException {
        try (Connection c = connect(); Statement s = c.createStatement()) {
            s.setQueryTimeout(1);
            long started = System.nanoTime();
            Checks.Check check = Checks.check("query_timeout");
            try {
                s.execute("SELECT pg_sleep(20)");
                check.put("raised", false);
            } catch (SQLException e) {
                check.put("raised", true).error("exception", e);
            }
            check.put("elapsed_ms", (System.nanoTime() - started) / 1_000_000);
            s.setQueryTimeout(0);
            check.put("usable", scalar(c, "SELECT 7")).emit();
        }
    }

    private void cancel() throws Exception {
        try (Connection c = connect(); PreparedStatement s = c.prepareStatement("SELECT pg_sleep(?)")) {
            Thread canceller = new Thread(() -> {
                try {
                    Thread.sleep(500);
                    s.cancel();
                } catch (Exception e) {
                    Checks.check("cancel_thread").put("error", e.toString()).emit();
                }
            });
            long started = System.nanoTime();
            Checks.Check check = Checks.check("cancel");
            canceller.start();
            try {
                s.setInt(1, 20);
                s.executeQuery();
                check.put("raised", false);
            } catch (SQLException e) {
                check.put("raised", true).error("exception", e);
            }
            canceller.join();
            check.put("elapsed_ms", (System.nanoTime() - started) / 1_000_000);
            check.put("usable", scalar(c, "SELECT 8")).emit();
        }
    }

    private void copy() throws Exception {
        String table = t("copy");
        try (Connection c = connect()) {
            try (Statement s = c.createStatement()) {
                s.execute("DROP TABLE IF EXISTS " + table);
                s.execute("CREATE TABLE " + table + " (id int, t text, n numeric)");
            }
            CopyManager copy = c.unwrap(PGConnection.class).getCopyAPI();
            StringBuilder data = new StringBuilder();
            for (int i = 0; i < 5000; i++) {
                data.append(i).append('\t').append("tab\\there ").append(i).append('\t')
                        .append(i % 7 == 0 ? "\\N" : String.valueOf(i * 0.5)).append('\n');
            }
            long copiedIn = copy.copyIn("COPY " + table + " (id, t, n) FROM STDIN", new StringReader(data.toString()));
            long csvIn = copy.copyIn("COPY " + table + " FROM STDIN (FORMAT csv, HEADER true)",
                    new StringReader("id,t,n\n-1,\"quoted, comma\",\n-2,\"line\nbreak\",2.5\n"));
            StringWriter out = new StringWriter();
            long copiedOut = copy.copyOut("COPY (SELECT * FROM " + table + " ORDER BY id) TO STDOUT", out);
            Checks.Check check = Checks.check("copy").put("in", copiedIn).put("csv_in", csvIn)
                    .put("out", copiedOut).put("out_length", out.toString().length())
                    .put("out_head", out.toString().substring(0, 60));
            try {
                copy.copyIn("COPY " + table + " (id) FROM STDIN", new StringReader("1\nnot a number\n"));
            } catch (SQLException e) {
                check.error("bad_row", e);
            }
            check.put("usable", scalar(c, "SELECT count(*) FROM " + table)).emit();
        }
    }

    private void notifyListen() throws SQLException {
        String channel = t("chan");
        try (Connection listener = connect(); Connection sender = connect()) {
            try (Statement s = listener.createStatement()) {
                s.execute("LISTEN " + channel);
            }
            try (Statement s = sender.createStatement()) {
                s.execute("NOTIFY " + channel + ", 'hello'");
                s.execute("SELECT pg_notify('" + channel + "', repeat('p', 7000))");
            }
            try (PreparedStatement ps = sender.prepareStatement("SELECT pg_notify(?, ?)")) {
                ps.setString(1, channel);
                ps.setString(2, "from a prepared statement");
                ps.executeQuery().close();
            }
            List<String> payloads = new ArrayList<>();
            long deadline = System.currentTimeMillis() + 10_000;
            PGConnection pg = listener.unwrap(PGConnection.class);
            while (payloads.size() < 3 && System.currentTimeMillis() < deadline) {
                PGNotification[] got = pg.getNotifications(1000);
                if (got != null) {
                    for (PGNotification n : got) {
                        String payload = n.getParameter();
                        payloads.add(n.getName().equals(channel)
                                ? (payload.length() > 100 ? payload.length() + " chars" : payload)
                                : "wrong channel " + n.getName());
                    }
                }
            }
            Checks.check("notify").put("payloads", payloads).emit();
        }
    }

    private void moreResults() throws SQLException {
        String table = t("plain");
        try (Connection c = connect(); Statement s = c.createStatement()) {
            List<String> seen = new ArrayList<>();
            boolean isResult = s.execute("SELECT 1 AS a; UPDATE " + table + " SET v = v WHERE id < 3;"
                    + " SELECT 'b', 2; INSERT INTO " + table + " VALUES (99, 'n'); DELETE FROM " + table
                    + " WHERE id = 99");
            while (true) {
                if (isResult) {
                    try (ResultSet rs = s.getResultSet()) {
                        seen.add("rows " + rows(rs));
                    }
                } else {
                    int count = s.getUpdateCount();
                    if (count == -1) {
                        break;
                    }
                    seen.add("count " + count);
                }
                isResult = s.getMoreResults();
            }
            Checks.Check check = Checks.check("more_results").put("seen", seen);
            try {
                s.execute("SELECT 1; SELECT 1/0; SELECT 3");
            } catch (SQLException e) {
                check.error("error_in_middle", e);
            }
            check.put("usable", scalar(c, "SELECT 9")).emit();
        }
    }

    private void metadata() throws SQLException {
        try (Connection c = connect()) {
            DatabaseMetaData md = c.getMetaData();
            List<String> tables = new ArrayList<>();
            try (ResultSet rs = md.getTables(null, "public", prefix + "\\_%", new String[] {"TABLE"})) {
                while (rs.next()) {
                    tables.add(rs.getString("TABLE_NAME") + " "
                            + rs.getString("TABLE_TYPE"));
                }
            }
            List<String> columns = new ArrayList<>();
            try (ResultSet rs = md.getColumns(null, "public", t("batch_false"), "%")) {
                while (rs.next()) {
                    columns.add(rs.getString("COLUMN_NAME") + " " + rs.getString("TYPE_NAME") + " "
                            + rs.getInt("DATA_TYPE") + " " + rs.getString("IS_NULLABLE"));
                }
            }
            List<String> keys = new ArrayList<>();
            try (ResultSet rs = md.getPrimaryKeys(null, "public", t("batch_false"))) {
                while (rs.next()) {
                    keys.add(rs.getString("COLUMN_NAME") + " " + rs.getShort("KEY_SEQ"));
                }
            }
            int types = 0;
            try (ResultSet rs = md.getTypeInfo()) {
                while (rs.next()) {
                    types++;
                }
            }
            Checks.check("metadata").put("tables", tables).put("columns", columns).put("primary_keys", keys)
                    .put("type_info_rows", types > 0).put("product", md.getDatabaseProductName())
                    .put("catalog", c.getCatalog()).emit();
        }
    }
}
