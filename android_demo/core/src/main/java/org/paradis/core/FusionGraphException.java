package org.paradis.core;

/** A fusion graph or bundle that a runtime must not run; the message names the file, the field and the value. */
public class FusionGraphException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    public FusionGraphException(String message) {
        super(message);
    }
}
