package org.paradis.app;

import android.app.Activity;
import android.content.Intent;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.graphics.drawable.BitmapDrawable;
import android.os.Bundle;
import android.widget.ImageView;
import android.widget.TextView;
import java.util.Locale;

/**
 * One inference, as the web page shows it: the prediction, the input as the model saw it (after the crop and
 * scale), and device 0's timing (its stages, writing frames, waiting for the peers), bytes sent and received,
 * when each peer's last frame arrived, and the fused output.
 */
public final class ResultActivity extends Activity {
    static final String EXTRA_OUTPUT = "output";
    static final String EXTRA_CLASS = "class";
    static final String EXTRA_LABELS = "labels";
    static final String EXTRA_SWITCH = "switch";
    static final String EXTRA_REQUEST = "request";
    /** compute, wire, wait, latency (seconds). */
    static final String EXTRA_TIMES = "times";
    /** sent, received (frame bytes). */
    static final String EXTRA_BYTES = "bytes";
    static final String EXTRA_ATTEMPTS = "attempts";
    static final String EXTRA_ARRIVALS = "arrivals";
    static final String EXTRA_IMAGE = "image";

    @Override
    protected void onCreate(Bundle saved) {
        super.onCreate(saved);
        setContentView(R.layout.activity_result);
        setTitle(R.string.result_title);
        Intent in = getIntent();
        float[] output = in.getFloatArrayExtra(EXTRA_OUTPUT);
        int k = in.getIntExtra(EXTRA_CLASS, 0);
        String[] labels = in.getStringArrayExtra(EXTRA_LABELS);
        double[] t = in.getDoubleArrayExtra(EXTRA_TIMES);
        long[] bytes = in.getLongArrayExtra(EXTRA_BYTES);
        String name = labels != null && k < labels.length ? labels[k] + " (class " + k + ")" : "class " + k;
        ((TextView) findViewById(R.id.predictionText)).setText(name);

        byte[] png = in.getByteArrayExtra(EXTRA_IMAGE);
        if (png != null) {
            Bitmap b = BitmapFactory.decodeByteArray(png, 0, png.length);
            // A 28x28 input shown large: nearest neighbour keeps its pixels visible instead of a blur.
            BitmapDrawable d = new BitmapDrawable(getResources(), b);
            d.setFilterBitmap(false);
            ((ImageView) findViewById(R.id.inputImage)).setImageDrawable(d);
        }

        ((TextView) findViewById(R.id.timingText)).setText(String.format(Locale.ROOT,
                "switch %s, request %d, attempt(s) %d%n"
                        + "device 0 compute  %8.2f ms%n"
                        + "device 0 wire     %8.2f ms%n"
                        + "device 0 wait     %8.2f ms%n"
                        + "total             %8.2f ms%n"
                        + "bytes sent        %8d%n"
                        + "bytes received    %8d%n%s",
                in.getStringExtra(EXTRA_SWITCH), in.getLongExtra(EXTRA_REQUEST, 0), in.getIntExtra(EXTRA_ATTEMPTS, 1),
                t[0] * 1e3, t[1] * 1e3, t[2] * 1e3, t[3] * 1e3, bytes[0], bytes[1],
                in.getStringExtra(EXTRA_ARRIVALS)));

        StringBuilder values = new StringBuilder("fused output:\n");
        for (int i = 0; i < output.length; i++) {
            String label = labels != null && i < labels.length ? " " + labels[i] : "";
            values.append(String.format(Locale.ROOT, "%3d %12.6f%s%s%n", i, output[i], label, i == k ? "  <" : ""));
        }
        ((TextView) findViewById(R.id.outputText)).setText(values);
    }
}
