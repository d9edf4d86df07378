package org.paradis.app;

import android.content.ContentResolver;
import android.graphics.Bitmap;
import android.graphics.BitmapFactory;
import android.net.Uri;
import java.io.IOException;
import java.io.InputStream;
import org.paradis.core.FusionGraph;
import org.paradis.core.InputTensor;

/**
 * A picture (gallery or camera) to the model input the graph declares: the largest centred crop with the
 * model's aspect ratio, scaled to its width x height (bilinear), then {@link InputTensor#fromPixels} applies
 * {@code input.preprocessing} (pixel * pixel_scale + pixel_offset; Pillow's luma when the model takes one
 * channel), exactly as {@code paradis run --image} does on an image of the model's size.
 */
final class Images {
    /** Decoded pictures are subsampled to at most this many pixels a side before cropping (memory). */
    private static final int MAX_SIDE = 1024;

    private Images() {
    }

    /** The picture at {@code uri}, subsampled so that neither side exceeds about {@link #MAX_SIDE}. */
    static Bitmap decode(ContentResolver resolver, Uri uri) throws IOException {
        BitmapFactory.Options bounds = new BitmapFactory.Options();
        bounds.inJustDecodeBounds = true;
        try (InputStream in = resolver.openInputStream(uri)) {
            BitmapFactory.decodeStream(in, null, bounds);
        }
        if (bounds.outWidth <= 0 || bounds.outHeight <= 0) {
            throw new IOException(uri + " is not an image Android can decode (received " + bounds.outMimeType + ").");
        }
        BitmapFactory.Options options = new BitmapFactory.Options();
        options.inSampleSize = 1;
        while (Math.max(bounds.outWidth, bounds.outHeight) / (options.inSampleSize * 2) >= MAX_SIDE) {
            options.inSampleSize *= 2;
        }
        options.inPreferredConfig = Bitmap.Config.ARGB_8888;
        try (InputStream in = resolver.openInputStream(uri)) {
            Bitmap b = BitmapFactory.decodeStream(in, null, options);
            if (b == null) {
                throw new IOException(uri + ": the image could not be decoded.");
            }
            return b;
        }
    }

    /** The largest centred crop of {@code picture} with the model input's aspect, scaled to its size. */
    static Bitmap fit(Bitmap picture, FusionGraph graph) {
        int[] shape = InputTensor.shape(graph);  // [1, H, W, C]
        int h = shape[1];
        int w = shape[2];
        int pw = picture.getWidth();
        int ph = picture.getHeight();
        int cw = pw;
        int ch = (int) Math.round((double) pw * h / w);
        if (ch > ph) {
            ch = ph;
            cw = (int) Math.round((double) ph * w / h);
        }
        Bitmap crop = Bitmap.createBitmap(picture, (pw - cw) / 2, (ph - ch) / 2, Math.max(1, cw), Math.max(1, ch));
        Bitmap scaled = Bitmap.createScaledBitmap(crop, w, h, true);
        return scaled.getConfig() == Bitmap.Config.ARGB_8888 ? scaled : scaled.copy(Bitmap.Config.ARGB_8888, false);
    }

    /** The model input of a bitmap already of the model's size ({@link #fit}). */
    static float[] toInput(Bitmap fitted, FusionGraph graph) {
        int w = fitted.getWidth();
        int h = fitted.getHeight();
        int[] argb = new int[w * h];
        fitted.getPixels(argb, 0, w, 0, 0, w, h);
        return InputTensor.fromPixels(graph, argb, w, h);
    }

    /** A model input back to a picture (for a .npy sample): the inverse of the preprocessing, grey or RGB. */
    static Bitmap fromInput(float[] x, FusionGraph graph) {
        int[] shape = InputTensor.shape(graph);
        int h = shape[1];
        int w = shape[2];
        int c = shape[3];
        int[] argb = new int[w * h];
        for (int i = 0; i < w * h; i++) {
            int[] rgb = new int[3];
            for (int k = 0; k < 3; k++) {
                float v = x[i * c + Math.min(k, c - 1)];
                rgb[k] = Math.max(0, Math.min(255, Math.round((float) ((v - graph.pixelOffset) / graph.pixelScale))));
            }
            argb[i] = 0xFF000000 | (rgb[0] << 16) | (rgb[1] << 8) | rgb[2];
        }
        return Bitmap.createBitmap(argb, w, h, Bitmap.Config.ARGB_8888);
    }
}
