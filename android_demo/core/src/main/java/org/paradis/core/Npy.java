package org.paradis.core;

import java.io.File;
import java.io.FileOutputStream;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * Float32 arrays in NumPy's {@code .npy} format (version 1-3, little-endian {@code <f4}, C order): model inputs
 * a test or {@code adb push} hands to device 0, and fused outputs written back for a bit-exact comparison.
 */
public final class Npy {
    private static final byte[] MAGIC = {(byte) 0x93, 'N', 'U', 'M', 'P', 'Y'};
    private static final Pattern DESCR = Pattern.compile("'descr'\\s*:\\s*'([^']*)'");
    private static final Pattern FORTRAN = Pattern.compile("'fortran_order'\\s*:\\s*(True|False)");
    private static final Pattern SHAPE = Pattern.compile("'shape'\\s*:\\s*\\(([^)]*)\\)");

    public final float[] data;
    private final int[] shape;

    public Npy(float[] data, int[] shape) {
        long n = 1;
        for (int d : shape) {
            n *= d;
        }
        if (n != data.length) {
            throw new IllegalArgumentException("Npy: shape " + Arrays.toString(shape) + " holds " + n
                    + " values; received " + data.length + ".");
        }
        this.data = data;
        this.shape = shape.clone();
    }

    public int[] shape() {
        return shape.clone();
    }

    /** Reads a float32 {@code .npy} file; IOException naming the file and what is wrong. */
    public static Npy read(File file) throws IOException {
        byte[] raw = FusionGraph.readAll(file);
        if (raw.length < 10 || !Arrays.equals(Arrays.copyOf(raw, 6), MAGIC)) {
            throw new IOException(file + ": not a .npy file (no \\x93NUMPY magic); pass a .npy float32 array or raw "
                    + "float32 little-endian bytes (any other extension).");
        }
        int major = raw[6] & 0xFF;
        ByteBuffer b = ByteBuffer.wrap(raw).order(ByteOrder.LITTLE_ENDIAN);
        int start;
        long headerLen;
        if (major == 1) {
            headerLen = b.getShort(8) & 0xFFFF;
            start = 10;
        } else if (major == 2 || major == 3) {
            headerLen = b.getInt(8) & 0xFFFFFFFFL;
            start = 12;
        } else {
            throw new IOException(file + ": .npy format version " + major + "; this reader knows 1, 2 and 3.");
        }
        if (start + headerLen > raw.length) {
            throw new IOException(file + ": the .npy header claims " + headerLen + " bytes; the file is cut short.");
        }
        String header = new String(raw, start, (int) headerLen, major == 3 ? Frames.UTF_8 : Frames.ASCII);
        Matcher descr = DESCR.matcher(header);
        Matcher fortran = FORTRAN.matcher(header);
        Matcher shape = SHAPE.matcher(header);
        if (!descr.find() || !fortran.find() || !shape.find()) {
            throw new IOException(file + ": the .npy header is not a NumPy array header: " + header.trim());
        }
        if (!descr.group(1).equals("<f4")) {
            throw new IOException(file + ": dtype '" + descr.group(1) + "'; save the input as float32 "
                    + "(np.save(path, x.astype('float32'))).");
        }
        if (fortran.group(1).equals("True")) {
            throw new IOException(file + ": a Fortran-order array; save it in C order (np.ascontiguousarray).");
        }
        List<Integer> dims = new ArrayList<Integer>();
        long n = 1;
        for (String d : shape.group(1).split(",")) {
            if (!d.trim().isEmpty()) {
                int k = Integer.parseInt(d.trim());
                dims.add(k);
                n *= k;
            }
        }
        int dataStart = start + (int) headerLen;
        if ((long) raw.length - dataStart != 4 * n) {
            throw new IOException(file + ": shape " + dims + " needs " + 4 * n + " bytes of float32; the file holds "
                    + (raw.length - dataStart) + ".");
        }
        float[] data = new float[(int) n];
        ByteBuffer body = ByteBuffer.wrap(raw, dataStart, raw.length - dataStart).slice().order(ByteOrder.LITTLE_ENDIAN);
        body.asFloatBuffer().get(data);
        int[] s = new int[dims.size()];
        for (int i = 0; i < s.length; i++) {
            s[i] = dims.get(i);
        }
        return new Npy(data, s);
    }

    /** Writes {@code <f4} C-order, format 1.0, header padded to 64 bytes as NumPy writes it. */
    public void write(File file) throws IOException {
        StringBuilder dims = new StringBuilder();
        for (int d : shape) {
            dims.append(d).append(", ");
        }
        String s = shape.length == 1 ? dims.toString().trim() : dims.substring(0, Math.max(0, dims.length() - 2));
        StringBuilder header = new StringBuilder("{'descr': '<f4', 'fortran_order': False, 'shape': (" + s + "), }");
        while ((10 + header.length() + 1) % 64 != 0) {
            header.append(' ');
        }
        header.append('\n');
        byte[] h = header.toString().getBytes(Frames.ASCII);
        ByteBuffer out = ByteBuffer.allocate(10 + h.length + 4 * data.length).order(ByteOrder.LITTLE_ENDIAN);
        out.put(MAGIC).put((byte) 1).put((byte) 0).putShort((short) h.length).put(h);
        out.asFloatBuffer().put(data);
        OutputStream f = new FileOutputStream(file);
        try {
            f.write(out.array());
        } finally {
            f.close();
        }
    }
}
