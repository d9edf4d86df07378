package org.paradis.core;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * The input device's side of a graph's {@code input}: pixels to the float32 model input its preprocessing
 * declares, the checks of paradis_runtime/_program.py {@code InputCheck}, and the wire bytes every device
 * receives ({@code quantize_input}: int8 graphs quantize once, on the input device). Arithmetic is float32 step
 * by step, as numpy does it on a float32 array with Python scalars, so the bytes equal Python's.
 */
public final class InputTensor {
    private InputTensor() {
    }

    /** Elements of the graph's input tensor (its shape has the batch axis, 1). */
    public static int elements(FusionGraph g) {
        return (int) g.tensors.get(g.inputTensor).spec().elements();
    }

    /** The graph's input shape, e.g. [1, 28, 28, 1]. */
    public static int[] shape(FusionGraph g) {
        return g.tensors.get(g.inputTensor).shape();
    }

    /**
     * int8 quantization of one value: {@code clip(round(x / scale) + zero_point, -128, 127)} with the division
     * in float32 ({@code x / (float) scale}, numpy's float32 array by a Python float) and round half to even.
     */
    public static byte quantize(float x, double scale, int zeroPoint) {
        float q = (float) Math.rint(x / (float) scale) + (float) zeroPoint;
        if (q < -128f) {
            return (byte) -128;
        }
        if (q > 127f) {
            return (byte) 127;
        }
        return (byte) q;
    }

    /**
     * Checks {@code image} (row-major, NHWC, the graph's input shape) as {@code InputCheck} does: the element
     * count, every value finite (int8 would quantize NaN to some byte and answer with finite logits). Returns a
     * warning when values fall far outside the range the declared preprocessing gives (pixels left in 0..255
     * for a model that takes pixel / 255), or null.
     */
    public static String check(FusionGraph g, float[] image) {
        int n = elements(g);
        if (image == null || image.length != n) {
            throw new IllegalArgumentException(g.where + ": field 'input.shape' is " + Arrays.toString(shape(g))
                    + " (" + n + " float32 values); received " + (image == null ? "null" : image.length + " values")
                    + ": preprocess the image to that shape first.");
        }
        float lo = Float.POSITIVE_INFINITY;
        float hi = Float.NEGATIVE_INFINITY;
        for (float v : image) {
            if (Float.isNaN(v) || Float.isInfinite(v)) {
                throw new IllegalArgumentException(g.where + ": the input holds NaN or infinite values (the first: "
                        + v + "); pass pixels preprocessed as input.preprocessing says.");
            }
            lo = Math.min(lo, v);
            hi = Math.max(hi, v);
        }
        double a = g.pixelOffset;
        double b = a + 255.0 * g.pixelScale;
        double low = Math.min(a, b);
        double high = Math.max(a, b);
        double margin = 0.5 * (high - low);  // fusion_graph.input_problem's margin
        if (lo < low - margin || hi > high + margin) {
            return g.where + ": the input ranges over [" + lo + ", " + hi + "], far outside [" + low + ", " + high
                    + "] that the declared preprocessing gives (pixel (0..255) * " + g.pixelScale + " + "
                    + g.pixelOffset + "): the output is likely wrong; preprocess the input as input.preprocessing "
                    + "says.";
        }
        return null;
    }

    /**
     * The input's wire payload: float32 little-endian bytes, or int8 quantized with the input tensor's
     * scale and zero point when the graph's input tensor is int8. {@code image} must have passed {@link #check}.
     */
    public static byte[] wireBytes(FusionGraph g, float[] image) {
        FusionGraph.Tensor t = g.tensors.get(g.inputTensor);
        if ("int8".equals(t.dtype)) {
            byte[] out = new byte[image.length];
            for (int i = 0; i < image.length; i++) {
                out[i] = quantize(image[i], t.quantization.scale, t.quantization.zeroPoint);
            }
            return out;
        }
        ByteBuffer b = ByteBuffer.allocate(4 * image.length).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : image) {
            b.putFloat(v);
        }
        return b.array();
    }

    /**
     * Pixels (ARGB ints as Android's {@code Bitmap.getPixels} gives them, row-major, already {@code width} x
     * {@code height} = the model's) to the float32 model input: {@code pixel * pixel_scale + pixel_offset} in
     * float32, per channel for rgb, or on Pillow's "L" luma (ITU-R 601-2 in 16-bit fixed point, what
     * {@code paradis run --image} applies) when the model takes one channel or the graph says grayscale.
     */
    public static float[] fromPixels(FusionGraph g, int[] argb, int width, int height) {
        int[] shape = shape(g);
        if (shape.length != 4) {
            throw new IllegalArgumentException(g.where + ": field 'input.shape' is " + Arrays.toString(shape)
                    + "; pixels map onto an NHWC image input of rank 4.");
        }
        int h = shape[1];
        int w = shape[2];
        int c = shape[3];
        if (width != w || height != h || argb.length != w * h) {
            throw new IllegalArgumentException(g.where + ": the model takes " + w + "x" + h + " pixels; received "
                    + width + "x" + height + " (" + argb.length + " pixels): scale and crop the picture first "
                    + "(centerCrop).");
        }
        boolean gray = c == 1 || "grayscale".equals(g.color);
        if (!gray && c != 3) {
            throw new IllegalArgumentException(g.where + ": field 'input.shape' has " + c + " channels; pixels "
                    + "give 1 (grayscale) or 3 (rgb).");
        }
        float scale = (float) g.pixelScale;
        float offset = (float) g.pixelOffset;
        float[] out = new float[h * w * c];
        for (int i = 0; i < h * w; i++) {
            int p = argb[i];
            int r = (p >> 16) & 0xFF;
            int gr = (p >> 8) & 0xFF;
            int b = p & 0xFF;
            if (gray) {
                float l = (float) luma(r, gr, b) * scale + offset;
                for (int k = 0; k < c; k++) {
                    out[i * c + k] = l;
                }
            } else {
                out[i * 3] = (float) r * scale + offset;
                out[i * 3 + 1] = (float) gr * scale + offset;
                out[i * 3 + 2] = (float) b * scale + offset;
            }
        }
        return out;
    }

    /** Pillow's RGB -> L: (R x 19595 + G x 38470 + B x 7471 + 0x8000) >> 16 (Convert.c, L24). */
    public static int luma(int r, int g, int b) {
        return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
    }
}
