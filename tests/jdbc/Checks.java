import java.sql.BatchUpdateException;
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Properties;

/**
 * The JSON-lines output the pytest side parses: one object per check, with
 * "check" naming it. A scenario that throws unexpectedly prints one object with
 * "error" instead, so a failure names the scenario and the driver's message.
 * No JSON library ships with the JDK; the values used here are strings,
 * numbers, booleans, null and lists of those, which this writes by hand.
 */
final class Checks {
    private Checks() {}

    interface Scenario {
        void run() throws Exception;
    }

    /** One check being filled in; {@link #emit} prints it. */
    static final class Check {
        private final Map<String, Object> fields = new LinkedHashMap<>();

        Check(String name) {
            fields.put("check", name);
        }

        Check put(String key, Object value) {
            fields.put(key, value);
            return this;
        }

        /** SQLState, class and message of an expected failure. */
        Check error(String key, SQLException e) {
            Map<String, Object> error = new LinkedHashMap<>();
            error.put("sqlstate", e.getSQLState());
            error.put("class", e.getClass().getSimpleName());
            error.put("message", e.getMessage());
            if (e instanceof BatchUpdateException) {
                List<Object> counts = new ArrayList<>();
                for (long count : ((BatchUpdateException) e).getLargeUpdateCounts()) {
                    counts.add(count);
                }
                error.put("update_counts", counts);
                SQLException next = e.getNextException();
                error.put("next_sqlstate", next == null ? null : next.getSQLState());
            }
            fields.put(key, error);
            return this;
        }

        void emit() {
            System.out.println(json(fields));
            System.out.flush();
        }
    }

    static Check check(String name) {
        return new Check(name);
    }

    /** Runs ``scenario``; an exception it lets out becomes an "error" line for ``name``. */
    static void run(String name, Scenario scenario) {
        try {
            scenario.run();
        } catch (Throwable e) {
            Check failed = check(name).put("error", e.toString());
            if (e instanceof SQLException) {
                failed.put("sqlstate", ((SQLException) e).getSQLState());
            }
            failed.emit();
        }
    }

    static Connection connect(String url, String... options) throws SQLException {
        Properties props = new Properties();
        for (int i = 0; i + 1 < options.length; i += 2) {
            props.setProperty(options[i], options[i + 1]);
        }
        return DriverManager.getConnection(url, props);
    }

    static String json(Object value) {
        StringBuilder out = new StringBuilder();
        write(out, value);
        return out.toString();
    }

    private static void write(StringBuilder out, Object value) {
        if (value == null) {
            out.append("null");
        } else if (value instanceof Boolean || value instanceof Integer || value instanceof Long) {
            out.append(value);
        } else if (value instanceof Map) {
            out.append('{');
            boolean first = true;
            for (Map.Entry<?, ?> entry : ((Map<?, ?>) value).entrySet()) {
                if (!first) {
                    out.append(',');
                }
                first = false;
                write(out, String.valueOf(entry.getKey()));
                out.append(':');
                write(out, entry.getValue());
            }
            out.append('}');
        } else if (value instanceof List) {
            out.append('[');
            boolean first = true;
            for (Object item : (List<?>) value) {
                if (!first) {
                    out.append(',');
                }
                first = false;
                write(out, item);
            }
            out.append(']');
        } else if (value instanceof int[]) {
            List<Object> items = new ArrayList<>();
            for (int item : (int[]) value) {
                items.add(item);
            }
            write(out, items);
        } else {
            String text = value.toString();
            out.append('"');
            for (int i = 0; i < text.length(); i++) {
                char c = text.charAt(i);
                if (c == '"' || c == '\\') {
                    out.append('\\').append(c);
                } else if (c < 0x20) {
                    out.append(String.format("\\u%04x", (int) c));
                } else {
                    out.append(c);
                }
            }
            out.append('"');
        }
    }
}
