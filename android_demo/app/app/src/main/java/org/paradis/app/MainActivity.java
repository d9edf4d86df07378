package org.paradis.app;

import android.Manifest;
import android.app.Activity;
import android.content.Intent;
import android.content.SharedPreferences;
import android.content.pm.PackageManager;
import android.graphics.Bitmap;
import android.net.Uri;
import android.os.Build;
import android.os.Bundle;
import android.os.Handler;
import android.os.Looper;
import android.provider.MediaStore;
import android.view.View;
import android.widget.AdapterView;
import android.widget.ArrayAdapter;
import android.widget.Button;
import android.widget.EditText;
import android.widget.Spinner;
import android.widget.TextView;
import java.io.ByteArrayOutputStream;
import java.io.File;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import org.paradis.core.Addresses;
import org.paradis.core.Coordinator;
import org.paradis.core.DeviceProgram;
import org.paradis.core.Frames;
import org.paradis.core.FusionGraph;
import org.paradis.core.InputTensor;
import org.paradis.core.Npy;
import org.paradis.core.Peer;
import org.paradis.core.PeerConfig;

/**
 * The main screen: pick a bundle, the session key, this phone's role and the peers' addresses (typed, or found
 * with NSD), then Start. Device 0 (the phone with the camera) connects a {@link Coordinator} here and runs
 * inferences on a picture from the gallery or camera (or a sample {@code .npy} pushed with the bundle); a
 * device >= 1 starts {@link PeerService} and shows {@link PeerStatusActivity}.
 */
public final class MainActivity extends Activity {
    private static final int PICK_IMAGE = 1;
    private static final int TAKE_PHOTO = 2;
    private static final int CAMERA_PERMISSION = 3;
    private static final int NOTIFICATION_PERMISSION = 4;
    private static final int LOG_LINES = 60;

    private final Handler main = new Handler(Looper.getMainLooper());
    /** Connecting, loading and inference run here, one at a time, never on the main thread. */
    private final ExecutorService worker = Executors.newSingleThreadExecutor();
    private final List<String> log = new ArrayList<>();
    private final TreeMap<Integer, String> discovered = new TreeMap<>();
    private SharedPreferences prefs;
    private Spinner bundleSpinner;
    private Spinner roleSpinner;
    private EditText keyEdit;
    private EditText peersEdit;
    private EditText portEdit;
    private EditText threadsEdit;
    private Button startButton;
    private View inputRow;
    private TextView bundleHint;
    private TextView statusText;
    private List<File> bundles = new ArrayList<>();
    private Nsd nsd;
    /** Device 0's live coordinator (touched on the worker thread only) and the bundle it runs. */
    private Coordinator coordinator;
    private File running;
    private int sample;

    @Override
    protected void onCreate(Bundle saved) {
        super.onCreate(saved);
        setContentView(R.layout.activity_main);
        prefs = getSharedPreferences("paradis", MODE_PRIVATE);
        bundleSpinner = findViewById(R.id.bundleSpinner);
        roleSpinner = findViewById(R.id.roleSpinner);
        keyEdit = findViewById(R.id.keyEdit);
        peersEdit = findViewById(R.id.peersEdit);
        portEdit = findViewById(R.id.portEdit);
        threadsEdit = findViewById(R.id.threadsEdit);
        startButton = findViewById(R.id.startButton);
        inputRow = findViewById(R.id.inputRow);
        bundleHint = findViewById(R.id.bundleHint);
        statusText = findViewById(R.id.statusText);
        keyEdit.setText(prefs.getString("key", ""));
        peersEdit.setText(prefs.getString("peers", ""));
        portEdit.setText(String.valueOf(prefs.getInt("port", 7001)));
        threadsEdit.setText(String.valueOf(prefs.getInt("threads", 2)));
        nsd = new Nsd(this);

        findViewById(R.id.rescanButton).setOnClickListener(v -> rescan());
        findViewById(R.id.discoverButton).setOnClickListener(v -> discover());
        startButton.setOnClickListener(v -> start());
        findViewById(R.id.galleryButton).setOnClickListener(v -> startActivityForResult(
                new Intent(Intent.ACTION_GET_CONTENT).setType("image/*").addCategory(Intent.CATEGORY_OPENABLE),
                PICK_IMAGE));
        findViewById(R.id.cameraButton).setOnClickListener(v -> camera());
        findViewById(R.id.sampleButton).setOnClickListener(v -> runSample());
        bundleSpinner.setOnItemSelectedListener(new AdapterView.OnItemSelectedListener() {
            @Override
            public void onItemSelected(AdapterView<?> parent, View view, int position, long id) {
                roles(bundles.get(position));
            }

            @Override
            public void onNothingSelected(AdapterView<?> parent) {
            }
        });
        rescan();
    }

    private void say(String line) {
        main.post(() -> {
            log.add(line);
            while (log.size() > LOG_LINES) {
                log.remove(0);
            }
            StringBuilder b = new StringBuilder();
            for (int i = log.size() - 1; i >= 0; i--) {
                b.append(log.get(i)).append('\n');
            }
            statusText.setText(b);
        });
    }

    // -- setup --------------------------------------------------------------------------------------------

    private void rescan() {
        bundles = Bundles.find(this);
        List<String> names = new ArrayList<>();
        for (File f : bundles) {
            names.add(f.getName());
        }
        bundleSpinner.setAdapter(new ArrayAdapter<>(this, android.R.layout.simple_spinner_dropdown_item, names));
        StringBuilder hint = new StringBuilder(bundles.isEmpty() ? "No bundle found. " : "");
        hint.append("Bundles are folders (manifest.json or fusion_graph.json, and the .tflite files) in:");
        for (File root : Bundles.roots(this)) {
            hint.append("\n  ").append(root.getAbsolutePath());
        }
        bundleHint.setText(hint);
        String last = prefs.getString("bundle", "");
        for (int i = 0; i < bundles.size(); i++) {
            if (bundles.get(i).getAbsolutePath().equals(last)) {
                bundleSpinner.setSelection(i);
            }
        }
        startButton.setEnabled(!bundles.isEmpty());
    }

    private void roles(File bundle) {
        worker.submit(() -> {
            int devices;
            try {
                devices = Bundles.maxDevices(bundle);
            } catch (Exception e) {
                say("bundle " + bundle.getName() + ": " + e.getMessage());
                return;
            }
            List<String> roles = new ArrayList<>();
            roles.add("device 0: input (camera), fuses the output");
            for (int d = 1; d < devices; d++) {
                roles.add("device " + d + ": peer");
            }
            main.post(() -> {
                roleSpinner.setAdapter(new ArrayAdapter<>(this, android.R.layout.simple_spinner_dropdown_item,
                        roles));
                roleSpinner.setSelection(Math.min(prefs.getInt("device", 0), roles.size() - 1));
            });
        });
    }

    private File selectedBundle() {
        int i = bundleSpinner.getSelectedItemPosition();
        return i >= 0 && i < bundles.size() ? bundles.get(i) : null;
    }

    private static int number(EditText field, int fallback) {
        try {
            return Integer.parseInt(field.getText().toString().trim());
        } catch (NumberFormatException e) {
            return fallback;
        }
    }

    /** Finds peers of the selected bundle with NSD for 10 s and fills the address list in device order. */
    private void discover() {
        File bundle = selectedBundle();
        if (bundle == null) {
            say("discover: pick a bundle first");
            return;
        }
        worker.submit(() -> {
            String id;
            try {
                id = org.paradis.core.Bundle.id(bundle);
            } catch (Exception e) {
                say("discover: " + e.getMessage());
                return;
            }
            say("discover: looking for bundle " + id + " on this network for 10 s");
            nsd.browse(id, new Nsd.Callback() {
                @Override
                public void onPeer(int device, String host, int port) {
                    main.post(() -> {
                        discovered.put(device, host + ":" + port);
                        StringBuilder b = new StringBuilder();
                        for (int d = 1; d <= discovered.lastKey(); d++) {
                            // A gap stays visible: the device is still missing.
                            b.append(d == 1 ? "" : ",").append(discovered.getOrDefault(d, "?:0"));
                        }
                        peersEdit.setText(b);
                    });
                    say("discover: device " + device + " at " + host + ":" + port);
                }

                @Override
                public void onLog(String line) {
                    say(line);
                }
            });
            main.postDelayed(nsd::stopBrowsing, 10_000);
        });
    }

    private void start() {
        File bundle = selectedBundle();
        if (bundle == null) {
            say("start: no bundle; push one (see the paths above) and Rescan");
            return;
        }
        String key = keyEdit.getText().toString().trim();
        int keyBytes = key.getBytes(StandardCharsets.UTF_8).length;
        if (keyBytes < Frames.MIN_KEY_BYTES) {
            say("start: the session key must be at least " + Frames.MIN_KEY_BYTES + " bytes, received " + keyBytes
                    + "; use the same text as the laptop's key file (32 random bytes as hex)");
            return;
        }
        int device = Math.max(0, roleSpinner.getSelectedItemPosition());
        String peers = peersEdit.getText().toString().trim();
        int port = number(portEdit, 7000 + device);
        int threads = Math.max(1, number(threadsEdit, 2));
        try {
            Addresses.parsePeers(peers);  // the message names the bad entry
        } catch (IllegalArgumentException e) {
            say("start: " + e.getMessage());
            return;
        }
        prefs.edit().putString("bundle", bundle.getAbsolutePath()).putString("key", key).putString("peers", peers)
                .putInt("device", device).putInt("port", port).putInt("threads", threads).apply();
        if (device == 0) {
            connect(bundle, key, peers, threads);
            return;
        }
        if (Build.VERSION.SDK_INT >= 33
                && checkSelfPermission(Manifest.permission.POST_NOTIFICATIONS) != PackageManager.PERMISSION_GRANTED) {
            // The service runs without it; the permission only makes its notification visible.
            requestPermissions(new String[] {Manifest.permission.POST_NOTIFICATIONS}, NOTIFICATION_PERMISSION);
        }
        Intent service = new Intent(this, PeerService.class)
                .putExtra(PeerService.EXTRA_BUNDLE, bundle.getAbsolutePath())
                .putExtra(PeerService.EXTRA_DEVICE, device)
                .putExtra(PeerService.EXTRA_KEY, key)
                .putExtra(PeerService.EXTRA_PEERS, peers)
                .putExtra(PeerService.EXTRA_PORT, port)
                .putExtra(PeerService.EXTRA_THREADS, threads);
        startForegroundService(service);
        startActivity(new Intent(this, PeerStatusActivity.class));
    }

    // -- device 0 -----------------------------------------------------------------------------------------

    private void connect(File bundle, String key, String peers, int threads) {
        startButton.setEnabled(false);
        inputRow.setVisibility(View.GONE);
        worker.submit(() -> {
            if (coordinator != null) {
                coordinator.close();
                coordinator = null;
            }
            try {
                Map<Integer, java.net.InetSocketAddress> addresses = Addresses.parsePeers(peers);
                say("connecting to " + addresses.size() + " peer(s) for " + bundle.getName() + " ...");
                coordinator = Coordinator.open(bundle, null, new PeerConfig(key.getBytes(StandardCharsets.UTF_8)),
                        addresses, LiteRtEngine.factory(threads), new Peer.Listener() {
                            @Override
                            public void onLog(String line) {
                                say(line);
                            }

                            @Override
                            public void onPeerLost(DeviceProgram program, int device, String reason, int code) {
                                say("lost device " + device + " (" + program.switchName + "): " + reason);
                            }
                        }).connect(10);
                running = bundle;
                say("connected: switch " + coordinator.currentSwitch() + "; pick a picture");
                main.post(() -> inputRow.setVisibility(View.VISIBLE));
            } catch (Exception e) {
                coordinator = null;
                say("connect failed: " + (e.getMessage() != null ? e.getMessage() : e.toString()));
            } finally {
                main.post(() -> startButton.setEnabled(true));
            }
        });
    }

    private void camera() {
        if (checkSelfPermission(Manifest.permission.CAMERA) != PackageManager.PERMISSION_GRANTED) {
            requestPermissions(new String[] {Manifest.permission.CAMERA}, CAMERA_PERMISSION);
            return;
        }
        Intent capture = new Intent(MediaStore.ACTION_IMAGE_CAPTURE);
        if (capture.resolveActivity(getPackageManager()) == null) {
            say("camera: no camera app on this phone; use Gallery");
            return;
        }
        // Without EXTRA_OUTPUT the camera app returns a thumbnail, already far larger than the model input.
        startActivityForResult(capture, TAKE_PHOTO);
    }

    @Override
    public void onRequestPermissionsResult(int request, String[] permissions, int[] results) {
        super.onRequestPermissionsResult(request, permissions, results);
        if (request == CAMERA_PERMISSION) {
            if (results.length > 0 && results[0] == PackageManager.PERMISSION_GRANTED) {
                camera();
            } else {
                say("camera: permission refused; use Gallery");
            }
        }
    }

    @Override
    protected void onActivityResult(int request, int result, Intent data) {
        super.onActivityResult(request, result, data);
        if (result != RESULT_OK || data == null) {
            return;
        }
        if (request == PICK_IMAGE && data.getData() != null) {
            Uri uri = data.getData();
            worker.submit(() -> {
                try {
                    fitAndInfer(Images.decode(getContentResolver(), uri));
                } catch (Exception e) {
                    say("gallery: " + e.getMessage());
                }
            });
        } else if (request == TAKE_PHOTO && data.getExtras() != null) {
            Object thumbnail = data.getExtras().get("data");
            if (thumbnail instanceof Bitmap) {
                worker.submit(() -> fitAndInfer((Bitmap) thumbnail));
            } else {
                say("camera: the camera app returned no picture");
            }
        }
    }

    /** A picture cropped and scaled to the model input, then inferred (worker thread). */
    private void fitAndInfer(Bitmap picture) {
        if (coordinator == null) {
            say("not connected: press Start as device 0 first");
            return;
        }
        infer(Images.fit(picture, coordinator.graph()), null);
    }

    /** The next input of the bundle's {@code samples.npy} (model inputs, batch first), cycling. */
    private void runSample() {
        worker.submit(() -> {
            if (coordinator == null) {
                say("not connected: press Start as device 0 first");
                return;
            }
            File f = new File(running, "samples.npy");
            try {
                if (!f.isFile()) {
                    say("sample: no " + f + "; push model inputs there (np.save(path, x.astype('float32')))");
                    return;
                }
                FusionGraph g = coordinator.graph();
                Npy all = Npy.read(f);
                int n = InputTensor.elements(g);
                int count = all.data.length / n;
                if (count == 0 || all.data.length % n != 0) {
                    say("sample: " + f.getName() + " holds " + all.data.length + " values, not a whole number of "
                            + "inputs of " + n);
                    return;
                }
                int i = sample++ % count;
                float[] x = java.util.Arrays.copyOfRange(all.data, i * n, (i + 1) * n);
                infer(Images.fromInput(x, g), x);
            } catch (Exception e) {
                say("sample: " + e.getMessage());
            }
        });
    }

    /** One inference (on the worker thread) of {@code picture}, or of {@code input} when given, then the result. */
    private void infer(Bitmap picture, float[] input) {
        if (coordinator == null) {
            say("not connected: press Start as device 0 first");
            return;
        }
        try {
            FusionGraph g = coordinator.graph();
            float[] x = input != null ? input : Images.toInput(picture, g);
            Coordinator.Result r = coordinator.run(x, 30);
            say(String.format(Locale.ROOT, "request %d (%s): class %d in %.1f ms", r.requestId, r.switchName,
                    r.argmax(), r.latencyS * 1e3));
            ByteArrayOutputStream png = new ByteArrayOutputStream();
            picture.compress(Bitmap.CompressFormat.PNG, 100, png);
            StringBuilder arrivals = new StringBuilder();
            for (Map.Entry<Integer, Double> e : r.arrivals.entrySet()) {
                arrivals.append(String.format(Locale.ROOT, "device %d: last frame at %.1f ms\n", e.getKey(),
                        e.getValue() * 1e3));
            }
            Intent show = new Intent(this, ResultActivity.class)
                    .putExtra(ResultActivity.EXTRA_OUTPUT, r.output)
                    .putExtra(ResultActivity.EXTRA_CLASS, r.argmax())
                    .putExtra(ResultActivity.EXTRA_LABELS, Bundles.labels(running).toArray(new String[0]))
                    .putExtra(ResultActivity.EXTRA_SWITCH, r.switchName)
                    .putExtra(ResultActivity.EXTRA_REQUEST, r.requestId)
                    .putExtra(ResultActivity.EXTRA_TIMES, new double[] {r.computeS, r.wireS, r.waitS, r.latencyS})
                    .putExtra(ResultActivity.EXTRA_BYTES, new long[] {r.bytesSent, r.bytesReceived})
                    .putExtra(ResultActivity.EXTRA_ATTEMPTS, r.attempts)
                    .putExtra(ResultActivity.EXTRA_ARRIVALS, arrivals.toString())
                    .putExtra(ResultActivity.EXTRA_IMAGE, png.toByteArray());
            main.post(() -> startActivity(show));
        } catch (Coordinator.RequestFailed e) {
            say("inference failed: " + e.getMessage());
        } catch (Exception e) {
            say("inference failed: " + (e.getMessage() != null ? e.getMessage() : e.toString()));
        }
    }

    @Override
    protected void onDestroy() {
        nsd.stopBrowsing();
        worker.submit(() -> {
            if (coordinator != null) {
                coordinator.close();  // SHUTTING_DOWN to every peer
                coordinator = null;
            }
        });
        worker.shutdown();
        super.onDestroy();
    }
}
