package org.paradis.core;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.regex.Pattern;
import org.json.JSONArray;
import org.json.JSONObject;

/**
 * Typed reads of Android's org.json with the checks of export/fusion_graph.schema.json: every failure is a
 * FusionGraphException "WHERE: field 'a.b[2].c' must be ..., received VALUE". Android's getters coerce
 * ("1.5" to 1, "3" to 3): these never do, as JSON Schema does not.
 */
final class JsonCheck {
    static final Pattern NAME = Pattern.compile("^[A-Za-z_][A-Za-z0-9_]*$");
    final String where;

    JsonCheck(String where) {
        this.where = where;
    }

    FusionGraphException fail(String field, String message) {
        return new FusionGraphException(where + ": field '" + field + "' " + message);
    }

    static String show(Object value) {
        if (value == null || value == JSONObject.NULL) {
            return "null";
        }
        if (value instanceof String) {
            return "'" + value + "'";
        }
        String s = value.toString();
        return s.length() > 120 ? s.substring(0, 117) + "..." : s;
    }

    private Object raw(JSONObject o, String key, String field) {
        if (!o.has(key)) {
            throw fail(field, "is missing (required by the fusion graph schema, version "
                    + FusionGraph.SCHEMA_VERSION + ")");
        }
        return o.opt(key);
    }

    /** Refuses keys the schema does not define (additionalProperties: false). */
    void only(JSONObject o, String field, String... allowed) {
        List<String> known = Arrays.asList(allowed);
        Iterator<String> keys = o.keys();
        while (keys.hasNext()) {
            String k = keys.next();
            if (!known.contains(k)) {
                throw fail(field.isEmpty() ? k : field + "." + k, "is not defined by the fusion graph schema "
                        + "(version " + FusionGraph.SCHEMA_VERSION + "; it allows " + known + ")");
            }
        }
    }

    JSONObject object(JSONObject o, String key, String field) {
        Object v = raw(o, key, field);
        if (!(v instanceof JSONObject)) {
            throw fail(field, "must be an object, received " + show(v));
        }
        return (JSONObject) v;
    }

    JSONObject object(Object v, String field) {
        if (!(v instanceof JSONObject)) {
            throw fail(field, "must be an object, received " + show(v));
        }
        return (JSONObject) v;
    }

    JSONArray array(JSONObject o, String key, String field, int minItems) {
        Object v = raw(o, key, field);
        if (!(v instanceof JSONArray)) {
            throw fail(field, "must be an array, received " + show(v));
        }
        JSONArray a = (JSONArray) v;
        if (a.length() < minItems) {
            throw fail(field, "must hold at least " + minItems + " item(s), received " + a.length());
        }
        return a;
    }

    String string(JSONObject o, String key, String field) {
        Object v = raw(o, key, field);
        if (!(v instanceof String)) {
            throw fail(field, "must be a string, received " + show(v));
        }
        return (String) v;
    }

    String string(Object v, String field) {
        if (!(v instanceof String)) {
            throw fail(field, "must be a string, received " + show(v));
        }
        return (String) v;
    }

    String matching(JSONObject o, String key, String field, Pattern pattern, String what) {
        String s = string(o, key, field);
        if (!pattern.matcher(s).matches()) {
            throw fail(field, "must be " + what + ", received " + show(s));
        }
        return s;
    }

    String name(Object v, String field) {
        String s = string(v, field);
        if (!NAME.matcher(s).matches()) {
            throw fail(field, "must be a name ([A-Za-z_][A-Za-z0-9_]*), received " + show(s));
        }
        return s;
    }

    List<String> names(JSONObject o, String key, String field, int minItems) {
        JSONArray a = array(o, key, field, minItems);
        List<String> out = new ArrayList<String>();
        for (int i = 0; i < a.length(); i++) {
            out.add(name(a.opt(i), field + "[" + i + "]"));
        }
        return out;
    }

    String oneOf(JSONObject o, String key, String field, String... values) {
        Object v = raw(o, key, field);
        for (String s : values) {
            if (s.equals(v)) {
                return s;
            }
        }
        throw fail(field, "must be one of " + Arrays.toString(values) + ", received " + show(v));
    }

    /** A JSON integer (1.0 counts, as in JSON Schema) in [min, max]. */
    long integer(Object v, String field, long min, long max) {
        long n;
        if (v instanceof Integer || v instanceof Long) {
            n = ((Number) v).longValue();
        } else if (v instanceof Double && ((Double) v) == Math.rint((Double) v) && Math.abs((Double) v) < 9e15) {
            n = ((Double) v).longValue();
        } else {
            throw fail(field, "must be an integer, received " + show(v));
        }
        if (n < min || n > max) {
            throw fail(field, "must be an integer in " + min + ".." + max + ", received " + n);
        }
        return n;
    }

    long integer(JSONObject o, String key, String field, long min, long max) {
        return integer(raw(o, key, field), field, min, max);
    }

    double number(JSONObject o, String key, String field) {
        Object v = raw(o, key, field);
        if (!(v instanceof Number) || Double.isNaN(((Number) v).doubleValue())
                || Double.isInfinite(((Number) v).doubleValue())) {
            throw fail(field, "must be a number, received " + show(v));
        }
        return ((Number) v).doubleValue();
    }

    int[] shape(JSONObject o, String key, String field) {
        JSONArray a = array(o, key, field, 1);
        int[] out = new int[a.length()];
        for (int i = 0; i < out.length; i++) {
            out[i] = (int) integer(a.opt(i), field + "[" + i + "]", 1, Integer.MAX_VALUE);
        }
        return out;
    }
}
