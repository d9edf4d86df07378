package org.paradis.core;

import java.io.File;
import java.io.IOException;
import java.nio.file.Files;
import org.json.JSONException;
import org.json.JSONObject;

/** The repository's shared test vectors and paths (tests run from the repository root, or -Dparadis.repo). */
final class Vectors {
    private Vectors() {
    }

    static File repo() {
        File root = new File(System.getProperty("paradis.repo", ".")).getAbsoluteFile();
        if (!new File(root, "export/FRAME_FORMAT.md").isFile()) {
            throw new IllegalStateException("run the tests from the repository root or pass -Dparadis.repo=DIR; "
                    + root + " has no export/FRAME_FORMAT.md");
        }
        return root;
    }

    static JSONObject frames() throws IOException, JSONException {
        byte[] raw = Files.readAllBytes(new File(repo(), "export/vectors/frames.json").toPath());
        return new JSONObject(new String(raw, "UTF-8"));
    }
}
