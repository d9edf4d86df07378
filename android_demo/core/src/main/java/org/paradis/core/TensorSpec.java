package org.paradis.core;

import java.util.Arrays;

/** What the graph says one tensor is on the wire: name, dtype ("float32" or "int8") and shape. */
public final class TensorSpec {
    public final String name;
    public final String dtype;
    private final int[] shape;

    public TensorSpec(String name, String dtype, int[] shape) {
        if (!"float32".equals(dtype) && !"int8".equals(dtype)) {
            throw new IllegalArgumentException("TensorSpec '" + name + "': dtype must be float32 or int8, received '"
                    + dtype + "'.");
        }
        this.name = name;
        this.dtype = dtype;
        this.shape = shape.clone();
    }

    public int[] shape() {
        return shape.clone();
    }

    public int rank() {
        return shape.length;
    }

    public int dim(int i) {
        return shape[i];
    }

    /** The wire dtype code of section 4: 1 = float32, 2 = int8. */
    public int dtypeCode() {
        return Frames.dtypeCode(dtype);
    }

    public int itemsize() {
        return "float32".equals(dtype) ? 4 : 1;
    }

    public long elements() {
        long n = 1;
        for (int d : shape) {
            n *= d;
        }
        return n;
    }

    /** product(shape) x itemsize: a TENSOR frame's payload_len. */
    public long payloadLen() {
        return elements() * itemsize();
    }

    @Override
    public String toString() {
        return name + " " + Arrays.toString(shape) + " " + dtype;
    }
}
