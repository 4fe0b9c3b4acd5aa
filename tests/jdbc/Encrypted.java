import java.io.StringReader;
import java.io.StringWriter;
import java.math.BigDecimal;
import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.ParameterMetaData;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.ResultSetMetaData;
import java.sql.SQLException;
import java.sql.Statement;
import java.sql.Timestamp;
import java.time.OffsetDateTime;
import java.util.ArrayList;
import java.util.List;
import java.util.UUID;
import org.postgresql.PGConnection;
import org.postgresql.PGResultSetMetaData;
import org.postgresql.copy.CopyManager;
import org.postgresql.util.PGobject;

/**
 * pgjdbc scenarios on the protected tables of tests/encrypted/conftest.py,
 * through pgseal. Usage: Encrypted JDBC_URL BUSINESS TAG: every row written
 * has business_id BUSINESS + n and values containing TAG, so the pytest side
 * (tests/encrypted/test_jdbc.py) can find them in the raw tables and check
 * that each holds an envelope, never the plaintext.
 */
public final class Encrypted {
    private static final String TYPED_COLUMNS = "business_id, c_text, c_varchar, c_int, c_bigint,"
            + " c_smallint, c_numeric, c_bool, c_date, c_ts, c_tstz, c_uuid, c_jsonb, c_bytea, c_armored";
    private static final String TYPED_INSERT = "INSERT INTO typed (" + TYPED_COLUMNS
            + ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
    private static final String TYPED_SELECT = "SELECT " + TYPED_COLUMNS.replace("business_id, ", "")
            + " FROM typed WHERE business_id = ?";

    private final String url;
    private final int business;
    private final String tag;

    private Encrypted(String url, int business, String tag) {
        this.url = url;
        this.business = business;
        this.tag = tag;
    }

    public static void main(String[] args) {
        Encrypted e = new Encrypted(args[0], Integer.parseInt(args[1]), args[2]);
        Checks.run("typed_setters", e::typedSetters);
        Checks.run("typed_unspecified", e::typedUnspecified);
        Checks.run("typed_described", e::typedDescribed);
        Checks.run("customers_batch", e::customersBatch);
        Checks.run("search", e::search);
        Checks.run("refused", e::refused);
        Checks.run("batch_errors", e::batchErrors);
        Checks.run("copy", e::copy);
        Checks.run("fetch_size", e::fetchSize);
        Checks.run("statement_and_returning", e::statementAndReturning);
        Checks.run("refused_in_transaction", e::refusedInTransaction);
        Checks.run("binary_parameters", e::binaryParameters);
        Checks.run("arrays_updates_options", e::arraysUpdatesOptions);
        Checks.run("updatable_result_set", e::updatableResultSet);
        Checks.check("done").emit();
    }

    private Connection connect(String... options) throws SQLException {
        return Checks.connect(url, options);
    }

    private static String hex(byte[] value) {
        if (value == null) {
            return null;
        }
        StringBuilder out = new StringBuilder();
        for (byte b : value) {
            out.append(String.format("%02x", b));
        }
        return out.toString();
    }

    /** A typed row read with the getter that matches each column's logical type. */
    private static List<Object> typedRow(ResultSet rs) throws SQLException {
        List<Object> row = new ArrayList<>();
        row.add(rs.getString(1));
        row.add(rs.getString(2));
        row.add(rs.getInt(3));
        row.add(rs.getLong(4));
        row.add((int) rs.getShort(5));
        row.add(rs.getBigDecimal(6).toPlainString());
        row.add(rs.getBoolean(7));
        row.add(rs.getDate(8).toString());
        row.add(rs.getTimestamp(9).toString());
        row.add(rs.getObject(10, OffsetDateTime.class).toInstant().toString());
        row.add(rs.getObject(11, UUID.class).toString());
        row.add(rs.getString(12));
        row.add(hex(rs.getBytes(13)));
        row.add(rs.getString(14));
        List<String> objects = new ArrayList<>();
        for (int i = 1; i <= 14; i++) {
            Object value = rs.getObject(i);
            objects.add(value instanceof byte[] ? hex((byte[]) value) : value.getClass().getSimpleName());
        }
        row.add(objects);
        return row;
    }

    /** The row of ``business`` read back once as text and, on a prepareThreshold=1 connection, as binary. */
    private void readTyped(Checks.Check check, int id) throws SQLException {
        try (Connection c = connect(); PreparedStatement ps = c.prepareStatement(TYPED_SELECT)) {
            ps.setInt(1, id);
            try (ResultSet rs = ps.executeQuery()) {
                check.put("text_rows", rs.next() ? typedRow(rs) : null).put("text_more", rs.next());
                PGResultSetMetaData md = rs.getMetaData().unwrap(PGResultSetMetaData.class);
                List<Integer> formats = new ArrayList<>();
                for (int column = 1; column <= 14; column++) {
                    formats.add(md.getFormat(column));
                }
                check.put("text_formats", formats);
            }
        }
        try (Connection c = connect("prepareThreshold", "1", "binaryTransfer", "true");
                PreparedStatement ps = c.prepareStatement(TYPED_SELECT)) {
            List<Object> rows = new ArrayList<>();
            List<Integer> formats = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                ps.setInt(1, id);
                try (ResultSet rs = ps.executeQuery()) {
                    rows.add(rs.next() ? typedRow(rs) : null);
                    formats.clear();
                    PGResultSetMetaData md = rs.getMetaData().unwrap(PGResultSetMetaData.class);
                    for (int column = 1; column <= 14; column++) {
                        formats.add(md.getFormat(column));
                    }
                }
            }
            check.put("binary_rows", rows).put("binary_formats", formats);
        }
    }

    private void typedSetters() throws SQLException {
        int id = business;
        Checks.Check check = Checks.check("typed_setters");
        try (Connection c = connect(); PreparedStatement ps = c.prepareStatement(TYPED_INSERT)) {
            ps.setInt(1, id);
            ps.setString(2, "jdbc-text-" + tag);
            ps.setString(3, "jv-" + tag);
            ps.setInt(4, -2147483648);
            ps.setLong(5, 9007199254740993L);
            ps.setShort(6, (short) -32768);
            ps.setBigDecimal(7, new BigDecimal("-12345678901234567890.000100"));
            ps.setBoolean(8, true);
            ps.setDate(9, java.sql.Date.valueOf("2024-02-29"));
            ps.setTimestamp(10, Timestamp.valueOf("2001-02-03 04:05:06.789"));
            ps.setObject(11, OffsetDateTime.parse("2001-02-03T04:05:06.5+02:00"));
            ps.setObject(12, UUID.fromString("0e7b2a56-8d1c-4a4f-9a35-1d6a4f1b2c3d"));
            PGobject json = new PGobject();
            json.setType("jsonb");
            json.setValue("{\"jdbc\": \"" + tag + "\", \"n\": [1, 2]}");
            ps.setObject(13, json);
            ps.setBytes(14, new byte[] {0, 1, (byte) 0xfe, (byte) 0xff});
            ps.setString(15, "armour-" + tag);
            check.put("inserted", ps.executeUpdate());
        }
        readTyped(check, id);
        check.emit();
    }

    /** stringtype=unspecified: every parameter a string of type 0, Postgres (here pgseal) decides. */
    private void typedUnspecified() throws SQLException {
        int id = business + 1;
        Checks.Check check = Checks.check("typed_unspecified");
        String[] values = {
            "jdbc-unspec-" + tag, "ju-" + tag, "42", "-9007199254740993", "7", "0.5", "false",
            "1999-12-31", "2038-01-19 03:14:07", "2038-01-19 03:14:07+00",
            "11111111-2222-3333-4444-555555555555", "[\"" + tag + "\"]", "\\x00ff", "armour-u-" + tag,
        };
        try (Connection c = connect("stringtype", "unspecified");
                PreparedStatement ps = c.prepareStatement(TYPED_INSERT)) {
            ps.setInt(1, id);
            for (int i = 0; i < values.length; i++) {
                ps.setString(i + 2, values[i]);
            }
            check.put("inserted", ps.executeUpdate());
            // A second statement shape: setObject with a String on every column.
            ps.setInt(1, business + 20);
            for (int i = 0; i < values.length; i++) {
                ps.setObject(i + 2, values[i]);
            }
            check.put("inserted_again", ps.executeUpdate());
        }
        readTyped(check, id);
        check.emit();
    }

    /** Describe flows: ParameterDescription and RowDescription show the logical types. */
    private void typedDescribed() throws SQLException {
        Checks.Check check = Checks.check("typed_described");
        try (Connection c = connect()) {
            try (PreparedStatement ps = c.prepareStatement(TYPED_INSERT)) {
                ParameterMetaData pm = ps.getParameterMetaData();
                List<String> types = new ArrayList<>();
                for (int i = 1; i <= pm.getParameterCount(); i++) {
                    types.add(pm.getParameterTypeName(i));
                }
                check.put("insert_params", types);
            }
            try (PreparedStatement ps = c.prepareStatement(TYPED_SELECT)) {
                ResultSetMetaData md = ps.getMetaData();
                List<String> types = new ArrayList<>();
                for (int i = 1; i <= md.getColumnCount(); i++) {
                    types.add(md.getColumnTypeName(i));
                }
                check.put("select_columns", types);
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT name FROM customers WHERE business_id = ? AND email = ? AND tax_id = ?")) {
                ParameterMetaData pm = ps.getParameterMetaData();
                List<String> types = new ArrayList<>();
                for (int i = 1; i <= pm.getParameterCount(); i++) {
                    types.add(pm.getParameterTypeName(i));
                }
                check.put("search_params", types);
            }
        }
        check.emit();
    }

    private void customersBatch() throws SQLException {
        for (String rewrite : new String[] {"false", "true"}) {
            int id = business + ("true".equals(rewrite) ? 3 : 2);
            Checks.Check check = Checks.check("customers_batch_" + rewrite).put("business", id);
            try (Connection c = connect("reWriteBatchedInserts", rewrite);
                    PreparedStatement ps = c.prepareStatement("INSERT INTO customers"
                            + " (business_id, name, email, tax_id, phone, credit) VALUES (?, ?, ?, ?, ?, ?)")) {
                for (int i = 0; i < 500; i++) {
                    ps.setInt(1, id);
                    ps.setString(2, "jb-" + rewrite + "-" + i);
                    ps.setString(3, "JB-" + tag + "-" + i + "@Example.com");
                    ps.setString(4, "JTAX-" + tag + "-" + i);
                    ps.setString(5, "jph-" + tag + "-" + i);
                    if (i % 10 == 0) {
                        ps.setNull(6, java.sql.Types.NUMERIC);
                    } else {
                        ps.setBigDecimal(6, BigDecimal.valueOf(i, 2));
                    }
                    ps.addBatch();
                }
                long total = 0;
                long[] counts = ps.executeLargeBatch();
                for (long count : counts) {
                    total += count;
                }
                check.put("counts", counts.length).put("counts_sum", total);
                // sum() is refused on an encrypted column: add the decrypted values up here.
                try (PreparedStatement read = c.prepareStatement(
                        "SELECT credit, count(credit) OVER (), count(*) OVER () FROM customers WHERE business_id = ?")) {
                    read.setInt(1, id);
                    BigDecimal sum = BigDecimal.ZERO;
                    long rows = 0;
                    long credits = 0;
                    try (ResultSet rs = read.executeQuery()) {
                        while (rs.next()) {
                            BigDecimal credit = rs.getBigDecimal(1);
                            sum = credit == null ? sum : sum.add(credit);
                            credits = rs.getLong(2);
                            rows = rs.getLong(3);
                        }
                    }
                    check.put("count", rows).put("count_credit", credits).put("sum_credit", sum.toPlainString());
                }
            }
            check.emit();
        }
    }

    private List<List<String>> lookups(Connection c, String sql, int id, String... keys) throws SQLException {
        List<List<String>> found = new ArrayList<>();
        try (PreparedStatement ps = c.prepareStatement(sql)) {
            for (String key : keys) {
                if (sql.contains("business_id = ?")) {
                    ps.setInt(1, id);
                    ps.setString(2, key);
                } else {
                    ps.setString(1, key);
                }
                List<String> row = new ArrayList<>();
                try (ResultSet rs = ps.executeQuery()) {
                    while (rs.next()) {
                        row.add(rs.getString(1) + "|" + rs.getString(2) + "|" + rs.getBigDecimal(3));
                    }
                }
                found.add(row);
            }
        }
        return found;
    }

    private void search() throws SQLException {
        int id = business + 2;
        Checks.Check check = Checks.check("search");
        String byEmail = "SELECT name, phone, credit FROM customers WHERE business_id = ? AND email = ?";
        String byTax = "SELECT name, phone, credit FROM customers WHERE business_id = ? AND tax_id = ?";
        String[] emails = {"jb-" + tag + "-7@example.com", " JB-" + tag + "-499@EXAMPLE.COM ", "nobody@x"};
        String[] taxes = {"JTAX-" + tag + "-13", "jtax-" + tag + "-13", "JTAX-" + tag + "-0"};
        try (Connection c = connect()) {
            check.put("email_text", lookups(c, byEmail, id, emails));
            check.put("tax_text", lookups(c, byTax, id, taxes));
        }
        try (Connection c = connect("prepareThreshold", "1")) {
            List<List<String>> repeated = new ArrayList<>();
            for (int i = 0; i < 3; i++) {
                repeated.addAll(lookups(c, byEmail, id, emails));
            }
            check.put("email_binary", repeated);
            try (Statement s = c.createStatement()) {
                s.execute("SET pgseal.tenant = '" + (business + 3) + "'");
            }
            check.put("tax_session_tenant", lookups(c,
                    "SELECT name, phone, credit FROM customers WHERE tax_id = ?", 0, "JTAX-" + tag + "-21"));
        }
        check.emit();
    }

    private void refused() throws SQLException {
        Checks.Check check = Checks.check("refused");
        try (Connection c = connect()) {
            try (Statement s = c.createStatement()) {
                s.executeQuery("SELECT phone FROM customers ORDER BY phone");
                check.put("statement_raised", false);
            } catch (SQLException e) {
                check.error("statement", e);
            }
            check.put("usable_after_statement", Checks.json(one(c, "SELECT 1")));
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT name FROM customers WHERE business_id = ? ORDER BY tax_id")) {
                for (int i = 0; i < 6; i++) {  // past prepareThreshold: the refusal every time
                    ps.setInt(1, business + 2);
                    try {
                        ps.executeQuery();
                        check.put("prepared_raised_" + i, false);
                    } catch (SQLException e) {
                        if (i == 0 || i == 5) {
                            check.error("prepared_" + i, e);
                        }
                    }
                }
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT name FROM customers WHERE business_id = ? AND email LIKE ?")) {
                ps.getParameterMetaData();
                check.put("describe_raised", false);
            } catch (SQLException e) {
                check.error("describe", e);
            }
            check.put("usable", Checks.json(one(c, "SELECT name FROM customers WHERE business_id = "
                    + (business + 2) + " AND tax_id = 'JTAX-" + tag + "-5'")));
        }
        check.emit();
    }

    private static String one(Connection c, String sql) throws SQLException {
        try (Statement s = c.createStatement(); ResultSet rs = s.executeQuery(sql)) {
            return rs.next() ? rs.getString(1) : null;
        }
    }

    private static List<String> names(Connection c, int id) throws SQLException {
        List<String> names = new ArrayList<>();
        try (PreparedStatement ps = c.prepareStatement(
                "SELECT name, phone FROM customers WHERE business_id = ? ORDER BY name")) {
            ps.setInt(1, id);
            try (ResultSet rs = ps.executeQuery()) {
                while (rs.next()) {
                    names.add(rs.getString(1) + "|" + rs.getString(2));
                }
            }
        }
        return names;
    }

    /** Errors in the middle of pipelined batches: Postgres's own and pgseal's refusals. */
    private void batchErrors() throws SQLException {
        int id = business + 5;
        String insert = "INSERT INTO customers (business_id, name, phone) VALUES (?, ?, ?)";
        for (String rewrite : new String[] {"false", "true"}) {
            Checks.Check check = Checks.check("batch_errors_" + rewrite);
            int dup = id + ("true".equals(rewrite) ? 1 : 0);
            try (Connection c = connect("reWriteBatchedInserts", rewrite)) {
                // A duplicate (business_id, name) in the middle: Postgres's error.
                try (PreparedStatement ps = c.prepareStatement(insert)) {
                    for (String name : new String[] {"a", "b", "a", "c"}) {
                        ps.setInt(1, dup);
                        ps.setString(2, name);
                        ps.setString(3, "bp-" + tag + "-" + name);
                        ps.addBatch();
                    }
                    ps.executeBatch();
                    check.put("duplicate_raised", false);
                } catch (BatchUpdateException e) {
                    check.error("duplicate", e);
                }
                check.put("rows_after_duplicate", names(c, dup));
                // In a transaction: rows before the error are rolled back with it.
                c.setAutoCommit(false);
                try (PreparedStatement ps = c.prepareStatement(insert)) {
                    for (String name : new String[] {"t1", "t2", "t1"}) {
                        ps.setInt(1, dup);
                        ps.setString(2, name);
                        ps.setString(3, "bt-" + tag + "-" + name);
                        ps.addBatch();
                    }
                    ps.executeBatch();
                    check.put("tx_raised", false);
                } catch (BatchUpdateException e) {
                    check.error("tx", e);
                }
                c.rollback();
                try (PreparedStatement ps = c.prepareStatement(insert)) {
                    ps.setInt(1, dup);
                    ps.setString(2, "after");
                    ps.setString(3, "ba-" + tag);
                    ps.executeUpdate();
                }
                c.commit();
                c.setAutoCommit(true);
                check.put("rows_after_tx", names(c, dup));
            }
            check.emit();
        }
        // A statement batch whose middle statement pgseal refuses.
        Checks.Check check = Checks.check("batch_refused");
        try (Connection c = connect(); Statement s = c.createStatement()) {
            s.addBatch("INSERT INTO customers (business_id, name, phone) VALUES (" + (id + 2) + ", 'r1', 'br-" + tag + "')");
            s.addBatch("UPDATE customers SET phone = 'never-" + tag + "' WHERE business_id = " + (id + 2)
                    + " AND phone LIKE 'br%'");
            s.addBatch("INSERT INTO customers (business_id, name, phone) VALUES (" + (id + 2) + ", 'r2', 'br2-" + tag + "')");
            try {
                s.executeBatch();
                check.put("raised", false);
            } catch (BatchUpdateException e) {
                check.error("refusal", e);
            }
            check.put("rows_after", names(c, id + 2));
        }
        // A prepared batch with a row whose tenant is NULL: no tenant, pgseal refuses that Bind.
        try (Connection c = connect(); PreparedStatement ps = c.prepareStatement(insert)) {
            for (int i = 0; i < 4; i++) {
                if (i == 2) {
                    ps.setNull(1, java.sql.Types.INTEGER);
                } else {
                    ps.setInt(1, id + 3);
                }
                ps.setString(2, "nt" + i);
                ps.setString(3, "bn-" + tag + "-" + i);
                ps.addBatch();
            }
            try {
                ps.executeBatch();
                check.put("no_tenant_raised", false);
            } catch (BatchUpdateException e) {
                check.error("no_tenant", e);
            }
            check.put("rows_after_no_tenant", names(c, id + 3));
        }
        check.emit();
    }

    private void copy() throws Exception {
        int id = business + 10;
        Checks.Check check = Checks.check("copy");
        try (Connection c = connect()) {
            CopyManager copy = c.unwrap(PGConnection.class).getCopyAPI();
            StringBuilder data = new StringBuilder();
            for (int i = 0; i < 300; i++) {
                data.append(id).append('\t').append("cp-").append(i).append('\t').append("cpe-").append(tag)
                        .append('-').append(i).append("@x\t").append("CTAX-").append(tag).append('-').append(i)
                        .append('\t').append(i % 5 == 0 ? "\\N" : "cph-" + tag + "-" + i).append('\n');
            }
            check.put("copied_in", copy.copyIn(
                    "COPY customers (business_id, name, email, tax_id, phone) FROM STDIN",
                    new StringReader(data.toString())));
            StringWriter out = new StringWriter();
            check.put("copied_out", copy.copyOut("COPY (SELECT name, phone, tax_id FROM customers"
                    + " WHERE business_id = " + id + " AND name IN ('cp-1', 'cp-5')) TO STDOUT", out));
            List<String> lines = new ArrayList<>(List.of(out.toString().split("\n")));
            java.util.Collections.sort(lines);
            check.put("out", lines);
            check.put("search", lookups(c,
                    "SELECT name, phone, credit FROM customers WHERE business_id = ? AND tax_id = ?",
                    id, "CTAX-" + tag + "-250", "CTAX-" + tag + "-251"));
        }
        check.emit();
    }

    /** A protected result fetched 37 rows at a time (Execute with a row limit, PortalSuspended). */
    private void fetchSize() throws SQLException {
        int id = business + 2;
        Checks.Check check = Checks.check("fetch_size");
        for (String threshold : new String[] {"5", "1"}) {
            try (Connection c = connect("prepareThreshold", threshold)) {
                c.setAutoCommit(false);
                try (PreparedStatement ps = c.prepareStatement(
                        "SELECT name, phone, email, credit FROM customers WHERE business_id = ?")) {
                    ps.setFetchSize(37);
                    int rows = 0;
                    int right = 0;
                    for (int round = 0; round < 2; round++) {
                        ps.setInt(1, id);
                        try (ResultSet rs = ps.executeQuery()) {
                            while (rs.next()) {
                                rows++;
                                String i = rs.getString(1).substring("jb-false-".length());
                                if (rs.getString(2).equals("jph-" + tag + "-" + i)
                                        && rs.getString(3).equals("JB-" + tag + "-" + i + "@Example.com")) {
                                    right++;
                                }
                            }
                        }
                    }
                    check.put("rows_" + threshold, rows).put("right_" + threshold, right);
                }
                c.commit();
            }
        }
        check.emit();
    }

    /** Literals in a simple Query, an UPDATE of a protected column, RETURNING (getGeneratedKeys). */
    private void statementAndReturning() throws SQLException {
        int id = business + 11;
        Checks.Check check = Checks.check("statement_and_returning");
        try (Connection c = connect()) {
            try (Statement s = c.createStatement()) {
                check.put("inserted", s.executeUpdate("INSERT INTO customers (business_id, name, phone, email)"
                        + " VALUES (" + id + ", 'lit', 'lit-phone-" + tag + "', 'Lit-" + tag + "@X')"));
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "UPDATE customers SET phone = ?, tax_id = ? WHERE business_id = ? AND email = ?")) {
                ps.setString(1, "upd-phone-" + tag);
                ps.setString(2, "UTAX-" + tag);
                ps.setInt(3, id);
                ps.setString(4, "lit-" + tag + "@x");
                check.put("updated", ps.executeUpdate());
            }
            try (PreparedStatement ps = c.prepareStatement("INSERT INTO customers (business_id, name, phone, credit)"
                    + " VALUES (?, ?, ?, ?)", Statement.RETURN_GENERATED_KEYS)) {
                ps.setInt(1, id);
                ps.setString(2, "gen");
                ps.setString(3, "gen-phone-" + tag);
                ps.setBigDecimal(4, new BigDecimal("9.99"));
                ps.executeUpdate();
                try (ResultSet keys = ps.getGeneratedKeys()) {
                    keys.next();
                    check.put("generated", List.of(keys.getString("name"), keys.getString("phone"),
                            keys.getBigDecimal("credit").toPlainString(), String.valueOf(keys.getObject("email"))));
                }
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "UPDATE customers SET phone = ? WHERE business_id = ? AND name = ? RETURNING phone, tax_id")) {
                ps.setString(1, "ret-phone-" + tag);
                ps.setInt(2, id);
                ps.setString(3, "lit");
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    check.put("returning", List.of(rs.getString(1), rs.getString(2)));
                }
            }
            check.put("rows", names(c, id));
        }
        check.emit();
    }

    /**
     * A refusal inside a transaction block acts as a Postgres error would: the
     * block is aborted (25P02) until ROLLBACK. With autosave=always the driver
     * rolls back to its own savepoint instead and the transaction goes on.
     */
    private void refusedInTransaction() throws SQLException {
        int id = business + 12;
        Checks.Check check = Checks.check("refused_in_transaction");
        String insert = "INSERT INTO customers (business_id, name, phone) VALUES (?, ?, ?)";
        for (String autosave : new String[] {"never", "always"}) {
            try (Connection c = connect("autosave", autosave)) {
                c.setAutoCommit(false);
                try (PreparedStatement ps = c.prepareStatement(insert)) {
                    ps.setInt(1, id);
                    ps.setString(2, autosave + "-before");
                    ps.setString(3, "tx-" + tag);
                    ps.executeUpdate();
                }
                try (PreparedStatement ps = c.prepareStatement(
                        "SELECT name FROM customers WHERE business_id = ? AND phone > ?")) {
                    ps.setInt(1, id);
                    ps.setString(2, "tx-" + tag);
                    ps.executeQuery();
                    check.put(autosave + "_raised", false);
                } catch (SQLException e) {
                    check.error(autosave + "_refusal", e);
                }
                try (PreparedStatement ps = c.prepareStatement(insert)) {
                    ps.setInt(1, id);
                    ps.setString(2, autosave + "-after");
                    ps.setString(3, "tx-" + tag);
                    ps.executeUpdate();
                    check.put(autosave + "_after", "inserted");
                } catch (SQLException e) {
                    check.error(autosave + "_after", e);
                    c.rollback();
                }
                c.commit();
                c.setAutoCommit(true);
            }
        }
        try (Connection c = connect()) {
            check.put("rows", names(c, id));
        }
        check.emit();
    }

    /**
     * prepareThreshold=-1: named from the first execution, Describe before Bind,
     * binary parameters (java.time objects, int8, int2, numeric, bytea, uuid) and
     * results. setDouble sends a binary float8: stored as Postgres's assignment cast
     * makes it (15 digits for numeric, round half to even for bigint).
     */
    private void binaryParameters() throws SQLException {
        Checks.Check check = Checks.check("binary_parameters");
        String insert = "INSERT INTO typed (business_id, c_text, c_bigint, c_smallint, c_numeric, c_date,"
                + " c_ts, c_tstz, c_uuid, c_bytea) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)";
        List<String> read = new ArrayList<>();
        try (Connection c = connect("prepareThreshold", "-1")) {
            try (PreparedStatement ps = c.prepareStatement(insert)) {
                for (int i = 0; i < 3; i++) {
                    ps.setInt(1, business + 30 + i);
                    ps.setString(2, "bin-" + tag + "-" + i);
                    ps.setLong(3, Long.MIN_VALUE + i);
                    ps.setShort(4, (short) (100 + i));
                    ps.setBigDecimal(5, new BigDecimal("1e-20").add(BigDecimal.valueOf(i)));
                    ps.setObject(6, java.time.LocalDate.of(1, 1, 1 + i));
                    ps.setObject(7, java.time.LocalDateTime.of(2020, 2, 29, 23, 59, 59, 999_999_000));
                    ps.setObject(8, java.time.OffsetDateTime.parse("2020-01-02T03:04:05-07:30"));
                    ps.setObject(9, new UUID(i, -i));
                    ps.setBytes(10, new byte[] {(byte) i, 0, (byte) 0x80});
                    ps.executeUpdate();
                }
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT c_text, c_bigint, c_smallint, c_numeric,"
                    + " c_date, c_ts, c_tstz, c_uuid, c_bytea FROM typed WHERE business_id = ?")) {
                for (int i = 0; i < 3; i++) {
                    ps.setInt(1, business + 30 + i);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        read.add(rs.getString(1) + "|" + rs.getLong(2) + "|" + rs.getShort(3) + "|"
                                + rs.getBigDecimal(4).toPlainString() + "|" + rs.getObject(5, java.time.LocalDate.class)
                                + "|" + rs.getObject(6, java.time.LocalDateTime.class) + "|"
                                + rs.getObject(7, OffsetDateTime.class).toInstant() + "|"
                                + rs.getObject(8, UUID.class) + "|" + hex(rs.getBytes(9)) + "|"
                                + rs.getMetaData().unwrap(PGResultSetMetaData.class).getFormat(2));
                    }
                }
            }
            check.put("read", read);
            try (PreparedStatement ps = c.prepareStatement(
                    "INSERT INTO typed (business_id, c_numeric, c_bigint, c_text) VALUES (?, ?, ?, ?)")) {
                ps.setInt(1, business + 33);
                ps.setDouble(2, 1.2345678901234567);
                ps.setDouble(3, 2.5);
                ps.setString(4, "dbl-" + tag);
                ps.executeUpdate();
                check.put("double_raised", false);
            } catch (SQLException e) {
                check.error("double", e);
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT c_numeric, c_bigint FROM typed WHERE business_id = ?")) {
                ps.setInt(1, business + 33);
                try (ResultSet rs = ps.executeQuery()) {
                    if (rs.next()) {
                        check.put("double_value", rs.getBigDecimal(1).toPlainString() + "|" + rs.getLong(2));
                    }
                }
            }
            try (PreparedStatement ps = c.prepareStatement("SELECT count(*) FROM typed WHERE business_id = ?")) {
                ps.setInt(1, business + 33);
                try (ResultSet rs = ps.executeQuery()) {
                    rs.next();
                    check.put("double_rows", rs.getLong(1));
                }
            }
        }
        check.emit();
    }

    /** = ANY(array) and IN on a searchable column, a batch of UPDATEs, the tenant as a startup option. */
    private void arraysUpdatesOptions() throws SQLException {
        int id = business + 40;
        Checks.Check check = Checks.check("arrays_updates_options");
        try (Connection c = connect()) {
            try (PreparedStatement ps = c.prepareStatement(
                    "INSERT INTO customers (business_id, name, email, tax_id) VALUES (?, ?, ?, ?)")) {
                for (int i = 0; i < 5; i++) {
                    ps.setInt(1, id);
                    ps.setString(2, "ar" + i);
                    ps.setString(3, "ar" + i + "-" + tag + "@x");
                    ps.setString(4, "ARTAX-" + tag + "-" + i);
                    ps.addBatch();
                }
                ps.executeBatch();
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT name FROM customers WHERE business_id = ? AND email = ANY(?) ORDER BY name")) {
                ps.setInt(1, id);
                ps.setArray(2, c.createArrayOf("text", new String[] {
                    "AR1-" + tag + "@X", " ar3-" + tag + "@x", "nobody@x"}));
                check.put("any", names(ps));
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "SELECT name FROM customers WHERE business_id = ? AND tax_id IN (?, ?) ORDER BY name")) {
                ps.setInt(1, id);
                ps.setString(2, "ARTAX-" + tag + "-2");
                ps.setString(3, "ARTAX-" + tag + "-4");
                check.put("in", names(ps));
            }
            try (PreparedStatement ps = c.prepareStatement(
                    "UPDATE customers SET phone = ? WHERE business_id = ? AND email = ?")) {
                for (int i = 0; i < 5; i += 2) {
                    ps.setString(1, "arph-" + tag + "-" + i);
                    ps.setInt(2, id);
                    ps.setString(3, "ar" + i + "-" + tag + "@x");
                    ps.addBatch();
                }
                long total = 0;
                for (int count : ps.executeBatch()) {
                    total += count;
                }
                check.put("updated", total);
            }
            check.put("rows", names(c, id));
        }
        try (Connection c = connect("options", "-c pgseal.tenant=" + id)) {
            try (PreparedStatement ps = c.prepareStatement("SELECT name FROM customers WHERE email = ?")) {
                ps.setString(1, "ar2-" + tag + "@x");
                check.put("option_tenant", names(ps));
            }
        }
        check.emit();
    }

    private static List<String> names(PreparedStatement ps) throws SQLException {
        List<String> names = new ArrayList<>();
        try (ResultSet rs = ps.executeQuery()) {
            while (rs.next()) {
                names.add(rs.getString(1));
            }
        }
        return names;
    }

    /**
     * An updatable ResultSet: the driver reads the primary key from the catalog and
     * writes ``UPDATE customers SET "phone" = $1 WHERE "id" = $2`` itself. That names
     * no business, so it is refused until the session has a tenant.
     */
    private void updatableResultSet() throws SQLException {
        int id = business + 50;
        Checks.Check check = Checks.check("updatable_result_set");
        String select = "SELECT id, business_id, name, phone FROM customers WHERE business_id = " + id;
        try (Connection c = connect()) {
            try (Statement s = c.createStatement()) {
                s.execute("INSERT INTO customers (business_id, name, phone) VALUES (" + id + ", 'up', 'up-" + tag + "')");
            }
            try (Statement s = c.createStatement(ResultSet.TYPE_SCROLL_INSENSITIVE, ResultSet.CONCUR_UPDATABLE);
                    ResultSet rs = s.executeQuery(select)) {
                rs.next();
                rs.updateString("phone", "up-refused-" + tag);
                rs.updateRow();
                check.put("no_tenant_raised", false);
            } catch (SQLException e) {
                check.error("no_tenant", e);
            }
            try (Statement s = c.createStatement()) {
                s.execute("SET pgseal.tenant = '" + id + "'");
            }
            try (Statement s = c.createStatement(ResultSet.TYPE_SCROLL_INSENSITIVE, ResultSet.CONCUR_UPDATABLE);
                    ResultSet rs = s.executeQuery(select)) {
                rs.next();
                check.put("read", rs.getString("phone"));
                rs.updateString("phone", "up-new-" + tag);
                rs.updateRow();
                check.put("after_update_row", rs.getString("phone"));
                rs.moveToInsertRow();
                rs.updateInt("business_id", id);
                rs.updateString("name", "up-ins");
                rs.updateString("phone", "up-ins-" + tag);
                rs.insertRow();
            }
            check.put("rows", names(c, id));
        }
        check.emit();
    }
}
