package org.paradis.app;

import android.content.Context;
import java.io.File;
import java.io.IOException;
import java.net.Inet4Address;
import java.net.InetAddress;
import java.net.NetworkInterface;
import java.net.SocketException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;
import org.paradis.core.Bundle;

/**
 * Where bundles live on the phone, and small facts the screens show. A bundle is a folder holding
 * {@code manifest.json} (several switches) or one {@code fusion_graph.json}, with its {@code .tflite} files:
 *
 * <ul>
 *   <li>{@code /sdcard/Android/data/org.paradis.app/files/bundles/NAME/}: app-specific external storage,
 *       where {@code adb push} writes without any permission (README.md);
 *   <li>{@code /data/data/org.paradis.app/files/bundles/NAME/}: internal storage ({@code adb shell run-as}).
 * </ul>
 */
final class Bundles {
    private Bundles() {
    }

    /** The folders searched, external (adb push) first; created if missing. */
    static List<File> roots(Context context) {
        List<File> out = new ArrayList<>();
        File external = context.getExternalFilesDir("bundles");
        if (external != null) {
            out.add(external);
        }
        out.add(new File(context.getFilesDir(), "bundles"));
        for (File f : out) {
            if (!f.isDirectory() && !f.mkdirs()) {
                // Shown as an empty list with the path in the hint: the user sees where to push.
                continue;
            }
        }
        return out;
    }

    /** Every bundle folder under the roots, by name. */
    static List<File> find(Context context) {
        List<File> out = new ArrayList<>();
        for (File root : roots(context)) {
            File[] children = root.listFiles();
            if (children == null) {
                continue;
            }
            for (File f : children) {
                if (new File(f, "manifest.json").isFile() || new File(f, "fusion_graph.json").isFile()) {
                    out.add(f);
                }
            }
        }
        Collections.sort(out, (a, b) -> a.getName().compareTo(b.getName()));
        return out;
    }

    /** How many devices the bundle's largest switch has (the roles a phone can take). */
    static int maxDevices(File bundle) throws IOException {
        int most = 1;
        for (Bundle.Entry e : Bundle.switches(bundle)) {
            most = Math.max(most, e.numDevices > 0 ? e.numDevices
                    : org.paradis.core.FusionGraph.read(e.graph, false).devices.size());
        }
        return most;
    }

    /** Class names from the bundle's optional {@code labels.txt} (one per line), or an empty list. */
    static List<String> labels(File bundle) {
        File f = new File(bundle, "labels.txt");
        if (!f.isFile()) {
            return Collections.emptyList();
        }
        try {
            List<String> out = new ArrayList<>();
            for (String line : Files.readAllLines(f.toPath(), StandardCharsets.UTF_8)) {
                if (!line.trim().isEmpty()) {
                    out.add(line.trim());
                }
            }
            return out;
        } catch (IOException e) {
            return Collections.emptyList();
        }
    }

    /** This phone's IPv4 addresses on its networks (what the other devices dial), e.g. "192.168.1.23". */
    static List<String> localAddresses() {
        List<String> out = new ArrayList<>();
        try {
            for (NetworkInterface nif : Collections.list(NetworkInterface.getNetworkInterfaces())) {
                if (!nif.isUp() || nif.isLoopback()) {
                    continue;
                }
                for (InetAddress a : Collections.list(nif.getInetAddresses())) {
                    if (a instanceof Inet4Address) {
                        out.add(a.getHostAddress());
                    }
                }
            }
        } catch (SocketException e) {
            // no interfaces readable: the screen says "unknown"
        }
        return out;
    }
}
