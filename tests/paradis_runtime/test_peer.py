"""Peers in real processes over loopback TCP: parity with the reference
executor, the handshake's refusals, garbage, and a peer that dies, stalls or
leaves in the middle of a stream."""

import signal
import socket
import time

import numpy as np
import pytest

from paradis_export import ReferenceExecutor
from paradis_runtime import PeerConfig, RequestFailed, connect
from paradis_runtime._program import DeviceProgram
from paradis_runtime.frames import (
    ErrorCode, FrameType, Header, Hello, auth_mac, decode_error, decode_header, decode_hello, encode_header,
    encode_hello, tensor_frame,
)
from tests.paradis_export.helpers import real_images, seeded_bundles
from tests.paradis_runtime.peers import KEY, PeerProcess, Relay, free_ports, key_file, peers, wait_for_line

SWITCHES = "1x1.0,2x0.5,4x0.25,0.5+0.3+0.2"


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    root = tmp_path_factory.mktemp("peer")
    # The model has every switch (1x1.0 is the teacher); only the split ones, which these tests run, are exported.
    return root, seeded_bundles(root, SWITCHES, export="2x0.5,4x0.25,0.5+0.3+0.2")


@pytest.mark.parametrize("precision", ["float32", "int8"])
@pytest.mark.parametrize("switch, processes", [("2x0.5", 2), ("4x0.25", 4), ("0.5+0.3+0.2", 3)])
def test_peer_processes_match_the_reference_executor_bit_for_bit(bundles, precision, switch, processes, tmp_path):
    root, model = bundles
    bundle = root / precision
    x, labels = real_images(100)
    with peers(bundle, processes - 1, tmp_path) as (addresses, _):
        with connect(bundle, addresses, key=KEY, switches=[switch], in_flight=4) as session:
            assert session.switch == switch
            out = session.predict(x)
    ref = ReferenceExecutor(bundle, switch=switch).predict(x)
    assert np.array_equal(out, ref)  # bit for bit: same files, same bytes on the wire, same fusion
    if precision == "float32":
        keras_out = np.asarray(model.switch_model(switch)(x))
        np.testing.assert_allclose(out, keras_out, atol=1e-4 * np.abs(keras_out).max())
        assert np.mean(out.argmax(1) == labels) == np.mean(keras_out.argmax(1) == labels)


@pytest.mark.parametrize("switch", ["2x0.5", "4x0.25"])
def test_a_device_frees_the_request_before_its_last_frames_leave(bundles, switch):
    # Those frames let the input device fuse and start request rid + in_flight
    # at once; at in_flight == max_inflight that request found this device's
    # table still full and evicted a live one (OVERLOADED: 4 of 3000 requests
    # failed at --in-flight 8 over four processes).
    from paradis_runtime.peer import Peer

    root, _ = bundles
    program = DeviceProgram(root / "float32" / switch / "fusion_graph.json", 1)
    peer = Peer([program], PeerConfig(key=KEY))
    live = peer._tables[program.sha256].live
    rid, sent = 7, []

    def send_to(prog, device, frame):
        sent.append(rid in live)
        return True

    peer.send_to = send_to
    produced = {t for stage in program.stages for t in stage.outputs}
    with peer._lock:
        st = peer._new_request(program, rid)
        for stage in program.stages:  # what other devices send, zeros of its spec
            for t in stage.inputs:
                if t not in produced:
                    st.tensors[t] = np.zeros(program.specs[t].shape, program.specs[t].dtype)
    peer._advance(program, rid)
    assert sent and sent[-1] is False, sent  # the last frame left with the slot already free
    assert rid not in live


def test_a_peer_that_serves_fewer_switches_is_named_as_such(bundles, tmp_path):
    # It holds the same export: "not a graph this peer loaded ... same export" sent the user looking for a wrong bundle.
    root, _ = bundles
    bundle = root / "float32"
    ports = free_ports(3)
    addresses = ",".join(f"127.0.0.1:{p}" for p in ports)
    key = key_file(tmp_path)
    procs = [PeerProcess(bundle, d, addresses, key, *(("--switch", "2x0.5") if d == 1 else ()),
                         log=tmp_path / f"peer{d}.log") for d in (1, 2, 3)]
    try:
        for p in procs:
            p.wait_ready()
        with pytest.raises(ConnectionError, match=r"device 1 at .*switch '4x0.25' is not served by this peer, which "
                                                  r"serves 2x0\.5.*paradis run --switch"):
            connect(bundle, addresses, key=KEY, switches=["4x0.25", "2x0.5"], timeout=10)
        with connect(bundle, addresses, key=KEY, switches=["2x0.5"]) as session:
            assert session.switch == "2x0.5"
    finally:
        for p in procs:
            p.stop()


def test_a_device_back_with_another_export_is_reported_once(bundles, tmp_path, caplog):
    # It stayed out of the run with nothing said on device 0 (its refusals
    # were only in that peer's own log).
    import logging

    root, _ = bundles
    ports = free_ports(3)
    addresses = ",".join(f"127.0.0.1:{p}" for p in ports)
    key = key_file(tmp_path)
    procs = {d: PeerProcess(root / "float32", d, addresses, key, log=tmp_path / f"peer{d}.log") for d in (1, 2, 3)}
    x, _ = real_images(4)

    def refusals():
        return [r.getMessage() for r in caplog.records if "refuses switch 4x0.25" in r.getMessage()]

    try:
        for p in procs.values():
            p.wait_ready()
        with caplog.at_level(logging.WARNING, logger="paradis.run"):
            with connect(root / "float32", addresses, key=KEY, switches=["4x0.25", "2x0.5"]) as session:
                assert session.switch == "4x0.25"
                procs[3].stop()
                procs[3] = PeerProcess(root / "int8", 3, addresses, key, log=tmp_path / "peer3_int8.log")
                procs[3].wait_ready()
                deadline = time.monotonic() + 20
                while not refusals() and time.monotonic() < deadline:
                    time.sleep(0.1)
                time.sleep(1.0)  # more redials, refused the same way: still one message
                assert session.predict(x).shape[0] == 4 and session.switch == "2x0.5"
    finally:
        for p in procs.values():
            p.stop()
    said = refusals()
    assert len(said) == 1, said
    assert said[0].startswith(f"device 3 at 127.0.0.1:{ports[2]} refuses switch 4x0.25") and "GRAPH_MISMATCH" in said[0]


def test_a_handshake_that_completes_while_leaving_reads_shutting_down(bundles):
    # stop() closes the listener first, but a handshake already under way can
    # still complete during the leave's linger: the other side must read
    # SHUTTING_DOWN (and fall back at once), not find this device back for a moment.
    from paradis_runtime.peer import Peer

    root, _ = bundles
    program = DeviceProgram(root / "float32" / "2x0.5" / "fusion_graph.json", 1, load=False)
    peer = Peer([program], PeerConfig(key=KEY))  # not running: as after stop()
    failed = []

    class Completed:  # what _connection_ready reads of a Connection whose handshake just completed
        dialed, peer, _counted = False, 0, False

        def fail(self, code, message):
            failed.append((code, message))

    Completed.program = program
    peer._connection_ready(Completed())
    assert failed == [(ErrorCode.SHUTTING_DOWN, "device 1 is leaving")]
    assert not peer.connected(program, 0)


# -- the handshake, from a hand-written client ---------------------------------------------------------

def _read_frame(sock):
    header = b""
    while len(header) < 64:
        chunk = sock.recv(64 - len(header))
        if not chunk:
            return None, None
        header += chunk
    h = decode_header(header)
    payload = b""
    while len(payload) < h.payload_len:
        payload += sock.recv(h.payload_len - len(payload))
    return h, payload


def _expect_error_then_close(sock, code, also=()):
    """The next frames are (handshake, heartbeats and ``also``, then) one
    ERROR with ``code``, then the end of the stream."""
    h, payload = _read_frame(sock)
    while h is not None and h.type in (FrameType.HELLO, FrameType.AUTH, FrameType.HEARTBEAT, *also):
        h, payload = _read_frame(sock)
    assert h is not None and h.type == FrameType.ERROR, h
    assert decode_error(payload)[0] == code, decode_error(payload)
    sock.settimeout(5)
    assert sock.recv(1) == b""  # closed: nothing after the error, no TENSOR was taken


@pytest.fixture(scope="module")
def one_peer(bundles, tmp_path_factory):
    """Device 1 of the float32 bundle, and device 0's program of 2x0.5 (no LiteRT)."""
    root, _ = bundles
    folder = tmp_path_factory.mktemp("one_peer")
    with peers(root / "float32", 1, folder) as (addresses, procs):
        program = DeviceProgram(root / "float32" / "2x0.5" / "fusion_graph.json", 0, load=False)
        host, port = addresses.split(":")
        yield (host, int(port)), program, addresses


def _tensor(program):
    name = program.input_name
    return tensor_frame(program.ids[name], 1, np.zeros(program.specs[name].shape, np.float32), "float32")


def _dial(address):
    sock = socket.create_connection(address, timeout=5)
    return sock


def test_wrong_graph_hash_is_refused_before_any_tensor(one_peer):
    address, program, _ = one_peer
    sock = _dial(address)
    sock.sendall(encode_hello(Hello(bytes(32), bytes(range(32)), 0, 1, program.switch)) + _tensor(program))
    _expect_error_then_close(sock, ErrorCode.GRAPH_MISMATCH)


def test_wrong_key_is_refused_before_any_tensor(one_peer):
    address, program, _ = one_peer
    sock = _dial(address)
    mine = bytes(range(32))
    sock.sendall(encode_hello(Hello(program.sha256, mine, 0, 1, program.switch)))
    h, payload = _read_frame(sock)
    assert h.type == FrameType.HELLO
    theirs = decode_hello(payload)
    assert (theirs.device, theirs.peer_device, theirs.graph_sha256) == (1, 0, program.sha256)
    bad = auth_mac(b"not-the-session-key-at-all", program.sha256, 0, 1, mine, theirs.nonce)
    sock.sendall(encode_header(Header(type=FrameType.AUTH, payload_len=32)) + bad + _tensor(program))
    _expect_error_then_close(sock, ErrorCode.AUTH_FAILED)


def test_right_key_gets_ready_and_a_tensor_is_taken(one_peer):
    # The positive control of the two refusals above: the same client with the key is served.
    address, program, _ = one_peer
    sock = _dial(address)
    mine = bytes(range(32))
    sock.sendall(encode_hello(Hello(program.sha256, mine, 0, 1, program.switch)))
    theirs = decode_hello(_read_frame(sock)[1])
    h, mac = _read_frame(sock)
    assert h.type == FrameType.AUTH and mac == auth_mac(KEY.encode(), program.sha256, 1, 0, theirs.nonce, mine)
    good = auth_mac(KEY.encode(), program.sha256, 0, 1, mine, theirs.nonce)
    sock.sendall(encode_header(Header(type=FrameType.AUTH, payload_len=32)) + good + _tensor(program))
    # Accepted: the same tensor again for the same live request is a duplicate (section 6, step 8).
    time.sleep(0.2)
    sock.sendall(_tensor(program))
    # Device 1 may answer the first with pieces of its own before the error.
    _expect_error_then_close(sock, ErrorCode.DUPLICATE_TENSOR, also=(FrameType.TENSOR,))


def _ready_as_device0(address, program, nonce):
    """A raw client that completes the handshake as device 0 (the peer counts it ready at the AUTH it sends)."""
    sock = _dial(address)
    sock.sendall(encode_hello(Hello(program.sha256, nonce, 0, 1, program.switch)))
    h, payload = _read_frame(sock)
    assert h is not None and h.type == FrameType.HELLO, (h, payload and decode_error(payload))
    theirs = decode_hello(payload)
    assert _read_frame(sock)[0].type == FrameType.AUTH
    sock.sendall(encode_header(Header(type=FrameType.AUTH, payload_len=32))
                 + auth_mac(KEY.encode(), program.sha256, 0, 1, nonce, theirs.nonce))
    return sock


def test_a_second_connection_of_a_live_device_is_refused_and_the_first_keeps_it(one_peer):
    address, program, _ = one_peer
    a_second_connection_of_a_live_device_is_refused(address, program)


def a_second_connection_of_a_live_device_is_refused(address, program):
    """Section 5 against the peer listening at ``address`` (device 1 of ``program``'s graph; the Java core's
    test runs it too): two processes claiming one device index used to take turns on the connection (each
    new one replaced the older); the second must hear DEVICE_IN_USE at its HELLO, the first be served on,
    and device 0 get in again once its connection closed."""
    first = _ready_as_device0(address, program, bytes(range(32)))
    time.sleep(0.3)  # the peer reads the AUTH and makes the connection ready
    second = _dial(address)
    second.sendall(encode_hello(Hello(program.sha256, bytes(range(1, 33)), 0, 1, program.switch)))
    _expect_error_then_close(second, ErrorCode.DEVICE_IN_USE)
    # The first is still ready: a tensor is taken, and the same one again is a duplicate.
    first.sendall(_tensor(program))
    time.sleep(0.2)
    first.sendall(_tensor(program))
    _expect_error_then_close(first, ErrorCode.DUPLICATE_TENSOR, also=(FrameType.TENSOR,))
    # Its connection closed, device 0 gets in again (a device back after a drop is not locked out).
    third = _ready_as_device0(address, program, bytes(range(2, 34)))
    third.sendall(b"GET " + bytes(60))  # end it from the peer's side before the next test dials
    _expect_error_then_close(third, ErrorCode.BAD_MAGIC)


def test_a_claimed_device_that_is_the_peer_itself_is_refused(one_peer):
    address, program, _ = one_peer
    sock = _dial(address)
    sock.sendall(encode_hello(Hello(program.sha256, bytes(range(32)), 1, 1, program.switch)) + _tensor(program))
    _expect_error_then_close(sock, ErrorCode.BAD_DEVICE)


def test_a_reflected_nonce_is_refused(bundles, tmp_path):
    # A fake device 2 echoes device 1's own HELLO nonce back: device 1 (which dials 2) must refuse.
    from paradis_runtime import Peer

    root, _ = bundles
    graph = root / "float32" / "0.5+0.3+0.2" / "fusion_graph.json"
    program = DeviceProgram(graph, 1, load=False)
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)
    peer = Peer([program], PeerConfig(key=KEY), {2: server.getsockname()}).start()
    try:
        sock, _ = server.accept()
        sock.settimeout(5)
        h, payload = _read_frame(sock)
        theirs = decode_hello(payload)
        assert (theirs.device, theirs.peer_device) == (1, 2)
        reflected = encode_hello(Hello(program.sha256, theirs.nonce, 2, 1, program.switch))
        mac = auth_mac(KEY.encode(), program.sha256, 2, 1, theirs.nonce, theirs.nonce)
        sock.sendall(reflected + encode_header(Header(type=FrameType.AUTH, payload_len=32)) + mac)
        _expect_error_then_close(sock, ErrorCode.AUTH_FAILED)
        assert not peer.connected(program, 2)
    finally:
        peer.stop()
        server.close()


def test_garbage_closes_that_connection_and_the_peer_keeps_serving(bundles, one_peer):
    root, _ = bundles
    address, program, addresses = one_peer
    x, _ = real_images(8)
    with connect(root / "float32", addresses, key=KEY, switches=["2x0.5"]) as session:
        first = session.predict(x[:4])
        rng = np.random.default_rng(0)
        for junk in (b"GET / HTTP/1.1\r\n\r\n" + bytes(64), rng.bytes(64), b"PRDS" + rng.bytes(60)):
            sock = _dial(address)
            sock.sendall(junk)
            h, payload = _read_frame(sock)
            assert h.type == FrameType.ERROR and decode_error(payload)[0] < 128
            sock.close()
        assert np.array_equal(session.predict(x[:4]), first)
        assert session.switch == "2x0.5"


# -- failures ------------------------------------------------------------------------------------------

def test_a_killed_peer_moves_the_stream_to_the_fallback_and_back(bundles, tmp_path):
    root, _ = bundles
    bundle = root / "float32"
    x, _ = real_images(200)
    with peers(bundle, 2, tmp_path) as (addresses, procs):
        with connect(bundle, addresses, key=KEY, in_flight=4) as session:
            assert session.switch == "0.5+0.3+0.2"
            futures = []
            for i in range(200):
                futures.append(session.submit(x[i : i + 1]))
                if i == 60:
                    procs[1].proc.kill()  # device 2 dies without a word
            answered, failed = {}, []
            for i, f in enumerate(futures):
                try:
                    answered[i] = f.result(timeout=30)  # never hangs
                except RequestFailed as e:
                    failed.append((i, str(e)))
            assert len(answered) + len(failed) == 200
            assert len({r.request_id for r in answered.values()}) == len(answered)  # each answered once
            used = {r.switch for r in answered.values()}
            assert used <= {"0.5+0.3+0.2", "2x0.5"} and "2x0.5" in used
            assert len(answered) >= 190, failed[:3]
            refs = {s: ReferenceExecutor(bundle, switch=s) for s in used}
            for i, r in answered.items():
                assert np.array_equal(r.output, refs[r.switch].run(x[i : i + 1])[0])
            assert session.switch == "2x0.5"
            assert any("device 2 lost" in why for _, _, _, why in session.switch_log)

            # Device 2 comes back: new requests return to the better switch.
            procs[1] = PeerProcess(bundle, 2, addresses, procs[0].log.parent / "session.key",
                                   log=tmp_path / "peer2b.log")
            procs[1].wait_ready()
            deadline = time.monotonic() + 15
            while session.switch != "0.5+0.3+0.2" and time.monotonic() < deadline:
                time.sleep(0.05)
            assert session.run(x[0], timeout=10).switch == "0.5+0.3+0.2"


def test_a_device_down_at_start_starts_on_the_fallback_and_moves_up_when_it_comes(bundles, tmp_path, caplog):
    # Devices 1 and 2 are listed, only device 1 runs: after the connect timeout the coordinator starts on
    # 2x0.5 (what is there) instead of failing, and moves to 0.5+0.3+0.2 once device 2 answers.
    root, _ = bundles
    bundle = root / "float32"
    x, _ = real_images(2)
    ports = free_ports(2)
    addresses = f"127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"
    key = key_file(tmp_path)
    procs = [PeerProcess(bundle, 1, addresses, key, log=tmp_path / "peer1.log")]
    try:
        procs[0].wait_ready()
        with connect(bundle, addresses, key=KEY, timeout=1) as session:
            assert session.switch == "2x0.5"
            assert (f"switch '0.5+0.3+0.2' not ready within 1 s (device 2 at 127.0.0.1:{ports[1]}: "
                    in caplog.text), caplog.text
            assert "starting on switch '2x0.5'" in caplog.text, caplog.text
            r = session.run(x[0], timeout=10)
            assert r.switch == "2x0.5"
            assert np.array_equal(r.output, ReferenceExecutor(bundle, switch="2x0.5").run(x[:1])[0])

            procs.append(PeerProcess(bundle, 2, addresses, key, log=tmp_path / "peer2.log"))
            procs[1].wait_ready()
            deadline = time.monotonic() + 15
            while session.switch != "0.5+0.3+0.2" and time.monotonic() < deadline:
                time.sleep(0.05)
            r = session.run(x[1], timeout=10)
            assert r.switch == "0.5+0.3+0.2"
            assert np.array_equal(r.output, ReferenceExecutor(bundle, switch="0.5+0.3+0.2").run(x[1:2])[0])
            assert [(a, b, why) for _, a, b, why in session.switch_log] == [
                ("2x0.5", "0.5+0.3+0.2", "a better switch is ready")], session.switch_log
    finally:
        for p in procs:
            p.stop()


def test_a_second_process_with_one_device_index_is_refused_and_device_0_is_told(bundles, tmp_path):
    root, _ = bundles
    one_device_index_twice(root / "float32", tmp_path)


def one_device_index_twice(bundle, folder, device1=PeerProcess):
    """A duplicate device 1 (another process, same --peers list) reaches device 2 first; the real device 1
    (``device1``: a PeerProcess class), which device 0 dials, is then refused by device 2 (DEVICE_IN_USE)
    instead of the two taking turns on that link. Device 0 cannot see the link 1-2, so device 1's
    DEADLINE_EXCEEDED must say why, and each side log the refusal once."""
    switch = "0.5+0.3+0.2"
    ports = free_ports(3)
    addresses = f"127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"
    key = key_file(folder)
    logs = {n: folder / f"{n}.log" for n in ("device2", "duplicate1", "device1")}
    # Device 1 gives up first (2 s, the default; devices 2 and 0 wait longer), so its report is the answer.
    patient = ("--switch", switch, "--request-deadline", "8")
    procs = [PeerProcess(bundle, 2, addresses, key, *patient, log=logs["device2"]),
             PeerProcess(bundle, 1, addresses, key, *patient, "--listen", f"127.0.0.1:{ports[2]}",
                         log=logs["duplicate1"])]
    try:
        for p in procs:
            p.wait_ready()
        wait_for_line(logs["device2"], "connected to device 1", timeout=30)
        procs.append(device1(bundle, 1, addresses, key, "--switch", switch, log=logs["device1"]))
        procs[-1].wait_ready()
        wait_for_line(logs["device1"], "DEVICE_IN_USE", timeout=30)
        config = PeerConfig(key=KEY, request_deadline=10.0)
        with connect(bundle, addresses, config=config, switches=[switch]) as session:
            x, _ = real_images(1)
            with pytest.raises(RequestFailed) as failed:
                session.run(x[0], timeout=20)
        assert "device 1 sent DEADLINE_EXCEEDED: device 1 abandoned the request after 2.0 s; no connection to " \
               "device 2 (the peer refused: DEVICE_IN_USE: device 1 is already connected" in str(failed.value), \
               failed.value
        # Device 1 redialed and was refused again and again (about once a second); each side said it once.
        said2 = [line for line in logs["device2"].read_text().splitlines() if "refused a connection" in line]
        said1 = [line for line in logs["device1"].read_text().splitlines() if "DEVICE_IN_USE" in line]
        assert len(said2) == 1 and "claiming device 1" in said2[0] and "DEVICE_IN_USE" in said2[0], said2
        assert len(said1) == 1, said1
    finally:
        for p in procs:
            p.stop()


def drop_the_link_between_devices_1_and_2(bundle, folder, device1=PeerProcess):
    """Devices 1 (``device1``: a PeerProcess class) and 2 of 0.5+0.3+0.2, device
    1 reaching device 2 through a Relay; the relay drops their link and stays
    dark 0.5 s once the stream runs, and every request must still be answered,
    bit for bit."""
    # The coordinator sees only its own links: after devices 1 and 2 lose
    # each other it still sends them requests, which must wait for the two
    # to redial rather than be lost (the frames are held, up to the peer
    # deadline, while the link is remade).
    switch = "0.5+0.3+0.2"
    programs = [DeviceProgram(bundle / switch / "fusion_graph.json", d, load=False) for d in (1, 2)]
    assert any(2 in to for to in programs[0].send_to.values())  # device 1 sends to device 2,
    assert any(1 in to for to in programs[1].send_to.values())  # and device 2 to device 1
    x, _ = real_images(4)
    ports = free_ports(2)
    addresses = f"127.0.0.1:{ports[0]},127.0.0.1:{ports[1]}"
    relay = Relay(("127.0.0.1", ports[1]))
    key = key_file(folder)
    logs = [folder / "peer1.log", folder / "peer2.log"]
    procs = [device1(bundle, 1, f"127.0.0.1:{ports[0]},127.0.0.1:{relay.port}", key, "--switch", switch,
                     log=logs[0]),  # device 1 reaches device 2 through the relay
             PeerProcess(bundle, 2, addresses, key, "--switch", switch, log=logs[1])]
    try:
        for p in procs:
            p.wait_ready()
        with connect(bundle, addresses, key=KEY, switches=[switch]) as session:
            ref = ReferenceExecutor(bundle, switch=switch).predict(x)
            assert np.array_equal(session.predict(x), ref)  # the link 1-2 is up
            relay.cut(dark=0.5)
            wait_for_line(logs[0], "lost device 2")
            wait_for_line(logs[1], "lost device 1")
            start = time.monotonic()
            assert np.array_equal(session.predict(x), ref)
            assert time.monotonic() - start < session.config.peer_deadline + 1.0
            assert session.switch_log == []  # the coordinator never saw a device go
    finally:
        relay.close()
        for p in procs:
            p.stop()


def test_a_link_between_two_peers_that_drops_and_returns_loses_no_request(bundles, tmp_path):
    root, _ = bundles
    drop_the_link_between_devices_1_and_2(root / "float32", tmp_path)


def test_graceful_leave_and_a_stalled_peer(bundles, tmp_path):
    root, _ = bundles
    bundle = root / "float32"
    x, _ = real_images(4)
    config = PeerConfig(key=KEY, peer_deadline=1.0, heartbeat_interval=0.25)
    with peers(bundle, 3, tmp_path) as (addresses, procs):
        with connect(bundle, addresses, config=config) as session:
            assert session.switch == "4x0.25"
            session.predict(x)
            # SIGSTOP: the process is alive but silent; lost within the peer deadline.
            procs[2].proc.send_signal(signal.SIGSTOP)
            start = time.monotonic()
            while session.switch == "4x0.25" and time.monotonic() - start < 5:
                time.sleep(0.01)
            stalled = time.monotonic() - start
            assert session.switch == "0.5+0.3+0.2" and stalled <= 1.0 + 0.5, stalled
            assert "unresponsive" in session.switch_log[-1][3]
            procs[2].proc.send_signal(signal.SIGCONT)
            session.predict(x)
            # Device 3 answers again: the coordinator redials it and returns to the better switch (waited
            # for, so the leave below starts from a known switch).
            start = time.monotonic()
            while session.switch != "4x0.25" and time.monotonic() - start < 15:
                time.sleep(0.01)
            assert session.switch == "4x0.25", session.switch_log
            assert session.switch_log[-1][3] == "a better switch is ready"
            # Ctrl-C on device 2: SHUTTING_DOWN makes the move immediate (well inside the deadline).
            # The peer drops the lost connection, then calls on_peer_lost; a hook that takes 0.3 s (six
            # ticks) holds open the window in which the tick already sees device 2 gone: the tick must
            # leave the move, and its reason, to the hook.
            lost = session.peer.on_peer_lost
            session.peer.on_peer_lost = lambda *args: (time.sleep(0.3), lost(*args))
            start = time.monotonic()
            assert procs[1].stop(signal.SIGINT) == 0
            while session.switch == "4x0.25" and time.monotonic() - start < 5:
                time.sleep(0.005)
            assert session.switch == "2x0.5", session.switch_log
            assert "SHUTTING_DOWN" in session.switch_log[-1][3]
            assert np.array_equal(session.predict(x), ReferenceExecutor(bundle, switch="2x0.5").predict(x))
