package org.paradis.app;

import android.app.Activity;
import android.content.ComponentName;
import android.content.Intent;
import android.content.ServiceConnection;
import android.os.Bundle;
import android.os.Handler;
import android.os.IBinder;
import android.os.Looper;
import android.widget.TextView;
import java.util.Map;
import java.util.TreeSet;

/**
 * A device >= 1 at work: what {@link PeerService} serves, where it listens (the address to give device 0),
 * which devices are connected on each switch, and its log. Stop leaves gracefully (SHUTTING_DOWN to every
 * connected device, so device 0 falls back at once).
 */
public final class PeerStatusActivity extends Activity {
    private static final long REFRESH_MS = 500;

    private final Handler main = new Handler(Looper.getMainLooper());
    private PeerService service;
    private boolean bound;
    private TextView summary;
    private TextView log;
    private final Runnable refresh = new Runnable() {
        @Override
        public void run() {
            show();
            main.postDelayed(this, REFRESH_MS);
        }
    };
    private final ServiceConnection connection = new ServiceConnection() {
        @Override
        public void onServiceConnected(ComponentName name, IBinder binder) {
            service = ((PeerService.Local) binder).service();
            show();
        }

        @Override
        public void onServiceDisconnected(ComponentName name) {
            service = null;
        }
    };

    @Override
    protected void onCreate(Bundle saved) {
        super.onCreate(saved);
        setContentView(R.layout.activity_peer_status);
        setTitle(R.string.status_title);
        summary = findViewById(R.id.peerSummary);
        log = findViewById(R.id.peerLog);
        findViewById(R.id.stopButton).setOnClickListener(v -> {
            stopService(new Intent(this, PeerService.class));
            finish();
        });
    }

    @Override
    protected void onStart() {
        super.onStart();
        // Flags 0: bind to the running service without creating one (only Start, with its settings, serves).
        bound = bindService(new Intent(this, PeerService.class), connection, 0);
        main.post(refresh);
    }

    @Override
    protected void onStop() {
        main.removeCallbacks(refresh);
        if (bound) {
            unbindService(connection);
            bound = false;
            service = null;
        }
        super.onStop();
    }

    private void show() {
        if (service == null) {
            summary.setText("not serving (press Start as a device >= 1)");
            return;
        }
        PeerService.Status s = service.snapshot();
        StringBuilder b = new StringBuilder();
        b.append("device ").append(s.device).append(": ").append(s.state).append('\n');
        b.append("listening on ").append(s.listen.isEmpty() ? "(starting)" : s.listen).append('\n');
        b.append("frame format ").append(PeerService.frameVersion()).append('\n');
        for (Map.Entry<String, TreeSet<Integer>> e : s.connected.entrySet()) {
            b.append("switch ").append(e.getKey()).append(": connected to devices ").append(e.getValue()).append('\n');
        }
        summary.setText(b);
        StringBuilder lines = new StringBuilder();
        for (int i = s.log.size() - 1; i >= 0; i--) {
            lines.append(s.log.get(i)).append('\n');
        }
        log.setText(lines);
    }
}
