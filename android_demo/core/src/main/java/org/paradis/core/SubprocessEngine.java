package org.paradis.core;

import java.io.DataInputStream;
import java.io.EOFException;
import java.io.File;
import java.io.IOException;
import java.io.OutputStream;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/**
 * An {@link Engine} that runs the real stages of a device file in a helper process (desktop only: LiteRT for
 * Java cannot be obtained on the machines this core is tested on). The helper, e.g.
 * {@code android_demo/core/tools/litert_engine.py}, gets the device file as its last argument and speaks the
 * length-prefixed protocol that file documents; its stderr goes to this process's stderr.
 */
public final class SubprocessEngine implements Engine {
    private final Process process;
    private final OutputStream toHelper;
    private final DataInputStream fromHelper;
    private final List<String> signatures;
    private final String what;

    /** Starts {@code command} + the device file and reads the signature keys it announces. */
    public SubprocessEngine(List<String> command, File deviceFile) throws IOException {
        List<String> argv = new ArrayList<String>(command);
        argv.add(deviceFile.getPath());
        this.what = "engine helper " + argv;
        process = new ProcessBuilder(argv).redirectError(ProcessBuilder.Redirect.INHERIT).start();
        toHelper = process.getOutputStream();
        fromHelper = new DataInputStream(process.getInputStream());
        List<String> keys = new ArrayList<String>();
        try {
            int n = u32();
            for (int i = 0; i < n; i++) {
                keys.add(name());
            }
        } catch (IOException e) {
            close();
            throw new IOException(what + " did not start (" + Connection.why(e) + "); its messages are above.", e);
        }
        signatures = keys;
    }

    /** A factory running {@code command} for each program's device file; checks every stage's signature. */
    public static Engine.Factory factory(final List<String> command) {
        return new Engine.Factory() {
            @Override
            public Engine open(DeviceProgram program) throws Exception {
                SubprocessEngine e = new SubprocessEngine(command, program.deviceFile);
                for (int i = 0; i < program.stages.size(); i++) {
                    String s = program.stages.get(i).signature;
                    if (!e.signatures.contains(s)) {
                        e.close();
                        throw new FusionGraphException(program.graph.where + ": field 'devices[" + program.device
                                + "].stages[" + i + "].signature': " + program.deviceFile.getName()
                                + " has no signature '" + s + "' (it has " + e.signatures + ").");
                    }
                }
                return e;
            }
        };
    }

    public List<String> signatures() {
        return new ArrayList<String>(signatures);
    }

    private int u32() throws IOException {
        byte[] b = new byte[4];
        fromHelper.readFully(b);
        return ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).getInt();
    }

    private String name() throws IOException {
        int n = u32();
        if (n < 0 || n > 1 << 20) {
            throw new IOException(what + " sent a name of " + n + " bytes: the protocol is out of step");
        }
        byte[] b = new byte[n];
        fromHelper.readFully(b);
        return new String(b, Frames.UTF_8);
    }

    private static byte[] lenName(String s) {
        byte[] raw = s.getBytes(Frames.UTF_8);
        ByteBuffer b = ByteBuffer.allocate(4 + raw.length).order(ByteOrder.LITTLE_ENDIAN);
        b.putInt(raw.length).put(raw);
        return b.array();
    }

    @Override
    public synchronized void runSignature(String signatureKey, Map<String, ByteBuffer> inputs,
            Map<String, ByteBuffer> outputs) throws IOException {
        try {
            toHelper.write(lenName(signatureKey));
            toHelper.write(ByteBuffer.allocate(4).order(ByteOrder.LITTLE_ENDIAN).putInt(inputs.size()).array());
            for (Map.Entry<String, ByteBuffer> e : inputs.entrySet()) {
                ByteBuffer v = e.getValue().duplicate();
                v.clear();
                byte[] data = new byte[v.remaining()];
                v.get(data);
                toHelper.write(lenName(e.getKey()));
                toHelper.write(ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN).putLong(data.length).array());
                toHelper.write(data);
            }
            toHelper.flush();
            int status = fromHelper.read();
            if (status < 0) {
                throw new EOFException("the helper exited");
            }
            if (status != 0) {
                throw new IOException(signatureKey + ": " + name());
            }
            int n = u32();
            Map<String, byte[]> got = new HashMap<String, byte[]>();
            for (int i = 0; i < n; i++) {
                String name = name();
                byte[] len = new byte[8];
                fromHelper.readFully(len);
                long size = ByteBuffer.wrap(len).order(ByteOrder.LITTLE_ENDIAN).getLong();
                if (size < 0 || size > Integer.MAX_VALUE) {
                    throw new IOException(what + " sent an output of " + size + " bytes");
                }
                byte[] data = new byte[(int) size];
                fromHelper.readFully(data);
                got.put(name, data);
            }
            for (Map.Entry<String, ByteBuffer> e : outputs.entrySet()) {
                byte[] data = got.get(e.getKey());
                if (data == null || data.length != e.getValue().capacity()) {
                    throw new IOException(signatureKey + ": output '" + e.getKey() + "' is "
                            + (data == null ? "missing (the signature returned " + got.keySet() + ")"
                            : data.length + " bytes, the graph says " + e.getValue().capacity()));
                }
                e.getValue().put(data);
            }
        } catch (EOFException e) {
            throw new IOException(what + " exited in the middle of a call; its messages are above.", e);
        }
    }

    @Override
    public void close() {
        try {
            toHelper.close();
        } catch (IOException e) {
            // the helper is gone already
        }
        try {
            if (!process.waitFor(2, TimeUnit.SECONDS)) {
                process.destroy();
            }
        } catch (InterruptedException e) {
            process.destroy();
            Thread.currentThread().interrupt();
        }
    }
}
