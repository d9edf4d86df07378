package org.paradis.core;

import java.nio.ByteBuffer;
import java.util.Map;

/**
 * Runs one stage of one device file: a signature of its {@code .tflite}, by key.
 *
 * <p>On Android this is LiteRT's {@code Interpreter.runSignature(inputs, outputs, signatureKey)}; a test plugs
 * in something else. The scheduler calls one stage at a time (never concurrently on one engine).
 *
 * <p>Buffers hold the exact bytes of the tensors, as on the wire: row-major, little-endian (the byte order of
 * every Android ABI), float32 or int8 as the graph's {@code tensors[name].dtype} says.
 * {@code inputs} maps each of the stage's input names to a read-only buffer positioned at 0; {@code outputs}
 * maps each output name to a buffer of exactly the graph's size, positioned at 0, which the engine fills (a
 * relative put of the whole tensor, as LiteRT does, or absolute puts: the scheduler reads from index 0).
 */
public interface Engine {
    void runSignature(String signatureKey, Map<String, ByteBuffer> inputs, Map<String, ByteBuffer> outputs)
            throws Exception;

    /** Frees the interpreter (or helper process). */
    void close();

    /** Opens the engine of one device file (called once per switch served). */
    interface Factory {
        Engine open(DeviceProgram program) throws Exception;
    }
}
