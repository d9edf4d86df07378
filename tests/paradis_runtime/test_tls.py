"""Optional TLS around the peer connections: parity through it, and a dialer
that does not trust the certificate (or speaks plain TCP) never gets in."""

import shutil
import subprocess

import numpy as np
import pytest

from paradis_export import ReferenceExecutor, export_bundle
from paradis_runtime import TLS, PeerConfig, connect, serve
from tests.paradis_export.helpers import real_images, resnet8

KEY = "tls-test-session-key-0123456789"
pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


def _certificate(folder, name):
    cert, key = folder / f"{name}.pem", folder / f"{name}.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj",
                    f"/CN={name}", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return str(cert), str(key)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tls")
    export_bundle(resnet8(switches="1x1.0,2x0.5"), "2x0.5", folder / "b", progress=None)
    return folder, _certificate(folder, "device1"), _certificate(folder, "stranger")


def test_parity_through_tls_and_untrusted_dialers_are_kept_out(setup):
    folder, (cert, key), (other_cert, _) = setup
    bundle = folder / "b"
    peer = serve(bundle, 1, PeerConfig(key=KEY, tls=TLS(cert=cert, key=key)), listen=("127.0.0.1", 0))
    try:
        x, _ = real_images(6)
        with connect(bundle, [peer.listen], config=PeerConfig(key=KEY, tls=TLS(ca=cert))) as session:
            assert np.array_equal(session.predict(x), ReferenceExecutor(bundle, "2x0.5").predict(x))
        with pytest.raises(ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            connect(bundle, [peer.listen], config=PeerConfig(key=KEY, tls=TLS(ca=other_cert)), timeout=2)
        with pytest.raises(ConnectionError, match="device 1 at 127.0.0.1"):
            connect(bundle, [peer.listen], key=KEY, timeout=2)  # plain TCP to a TLS listener
    finally:
        peer.stop()


def test_tls_arguments_are_checked(setup, tmp_path):
    folder, (cert, key), _ = setup
    with pytest.raises(ValueError, match="give cert and key together"):
        TLS(cert=cert)
    with pytest.raises(ValueError, match=r"ca must be a PEM file, received '/nope.pem'"):
        TLS(ca="/nope.pem")
    with pytest.raises(ValueError, match="this device listens, so it needs cert and key"):
        serve(folder / "b", 1, PeerConfig(key=KEY, tls=TLS(ca=cert)), listen=("127.0.0.1", 0))
