package org.paradis.core;

import java.io.File;
import java.io.IOException;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.HashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import org.json.JSONArray;
import org.json.JSONObject;

/**
 * A deployment bundle (paradis_runtime/manifest.py): {@code manifest.json} naming several switches and the
 * order to fall back in, each a folder with its fusion graph and device files. A folder holding just a
 * {@code fusion_graph.json}, or the graph file itself, is a one-switch bundle.
 */
public final class Bundle {
    public static final int MANIFEST_VERSION = 1;

    private Bundle() {
    }

    /** One switch of a manifest. */
    public static final class Entry {
        public final String name;
        public final File graph;
        /** How many devices it needs (the manifest's num_devices; -1 when absent). */
        public final int numDevices;

        Entry(String name, File graph, int numDevices) {
            this.name = name;
            this.graph = graph;
            this.numDevices = numDevices;
        }
    }

    /** The switches of {@code bundle} in the manifest's fallback order (best first). */
    public static List<Entry> switches(File bundle) throws IOException {
        File manifest = new File(bundle, "manifest.json");
        if (bundle.isFile()) {
            return single(bundle);
        }
        if (!manifest.isFile()) {
            File graph = new File(bundle, "fusion_graph.json");
            if (graph.isFile()) {
                return single(graph);
            }
            throw new FusionGraphException(bundle + ": neither a fusion graph file nor a folder holding "
                    + "manifest.json (a bundle) or fusion_graph.json.");
        }
        Object doc;
        try {
            doc = new org.json.JSONTokener(new String(FusionGraph.readAll(manifest), Frames.UTF_8)).nextValue();
        } catch (org.json.JSONException e) {
            throw new FusionGraphException(manifest + ": not valid JSON (" + e.getMessage() + ").");
        }
        JsonCheck c = new JsonCheck(manifest.toString());
        JSONObject m = c.object(doc, "(root)");
        if (!"paradis-bundle".equals(m.opt("schema"))) {
            throw c.fail("schema", "must be 'paradis-bundle', received " + JsonCheck.show(m.opt("schema")));
        }
        Object version = m.opt("version");
        if (!(version instanceof Integer) || (Integer) version != MANIFEST_VERSION) {
            throw c.fail("version", "is " + JsonCheck.show(version) + "; this runtime reads version "
                    + MANIFEST_VERSION);
        }
        JSONArray entries = c.array(m, "switches", "switches", 1);
        Map<String, Entry> byName = new HashMap<String, Entry>();
        for (int i = 0; i < entries.length(); i++) {
            String f = "switches[" + i + "]";
            JSONObject e = c.object(entries.opt(i), f);
            if (!(e.opt("name") instanceof String) || !(e.opt("graph") instanceof String)) {
                throw c.fail(f, "needs a 'name' and a 'graph' path");
            }
            String graph = e.optString("graph");
            if (graph.startsWith("/") || ("/" + graph.replace('\\', '/') + "/").contains("/../")) {
                throw c.fail(f + ".graph", "must stay inside the bundle, received '" + graph + "'");
            }
            int n = e.has("num_devices") ? (int) c.integer(e, "num_devices", f + ".num_devices", 1, 65535) : -1;
            byName.put(e.optString("name"), new Entry(e.optString("name"), new File(bundle, graph), n));
        }
        JSONArray fallback = c.array(m, "fallback", "fallback", 0);
        List<Entry> out = new ArrayList<Entry>();
        Set<String> listed = new HashSet<String>();
        for (int i = 0; i < fallback.length(); i++) {
            Object name = fallback.opt(i);
            if (!byName.containsKey(name) || !listed.add((String) name)) {
                throw c.fail("fallback", "must list each switch once, received " + fallback + " for "
                        + byName.keySet());
            }
            out.add(byName.get(name));
        }
        if (out.size() != byName.size()) {
            throw c.fail("fallback", "must list each switch once, received " + fallback + " for " + byName.keySet());
        }
        return out;
    }

    /**
     * The export's discovery id (paradis_runtime/discovery.py {@code bundle_id}): the first 16 hex digits of
     * the sha256 over each switch's graph-file sha256 (switches sorted by name), so another export never
     * matches. Peers advertise it as the {@code bundle} TXT record of {@code _paradis._tcp}.
     */
    public static String id(File bundle) throws IOException {
        List<Entry> entries = new ArrayList<Entry>(switches(bundle));
        java.util.Collections.sort(entries, (a, b) -> String.valueOf(a.name).compareTo(String.valueOf(b.name)));
        java.security.MessageDigest md;
        try {
            md = java.security.MessageDigest.getInstance("SHA-256");
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException("SHA-256 is unavailable on this Java runtime: " + e, e);
        }
        for (Entry e : entries) {
            md.update(FusionGraph.sha256(e.graph));
        }
        return Frames.hex(md.digest()).substring(0, 16);
    }

    private static List<Entry> single(File graph) {
        List<Entry> out = new ArrayList<Entry>();
        out.add(new Entry(null, graph, -1));
        return out;
    }

    /**
     * Device {@code device}'s program of every switch of {@code bundle} that has it (or of those named), best
     * first. Loading checks each graph and the sha256 of every device file.
     */
    public static List<DeviceProgram> programsFor(File bundle, int device, List<String> only, long maxFrameBytes)
            throws IOException {
        List<Entry> entries = switches(bundle);
        if (only != null && !only.isEmpty()) {
            Set<String> names = new HashSet<String>();
            for (Entry e : entries) {
                names.add(e.name);
            }
            for (String s : only) {
                if (!names.contains(s)) {
                    throw new FusionGraphException(bundle + ": no switch '" + s + "' in the bundle; it holds "
                            + names + ".");
                }
            }
        }
        List<DeviceProgram> out = new ArrayList<DeviceProgram>();
        int most = 0;
        for (Entry e : entries) {
            if (only != null && !only.isEmpty() && !only.contains(e.name)) {
                continue;
            }
            most = Math.max(most, e.numDevices);
            if (e.numDevices >= 0 && e.numDevices <= device) {
                continue;
            }
            FusionGraph g = FusionGraph.read(e.graph, true);
            most = Math.max(most, g.devices.size());
            if (g.devices.size() > device) {
                out.add(new DeviceProgram(e.graph, g, device, maxFrameBytes));
            }
        }
        if (out.isEmpty()) {
            throw new FusionGraphException(bundle + ": no switch " + (only != null && !only.isEmpty() ? "among "
                    + only + " " : "") + "has a device " + device + "; the largest has " + most + ".");
        }
        return out;
    }
}
