"""DNS-SD discovery (zeroconf) on loopback: a peer is found by the export it
holds, never another export's."""

import json

import pytest

pytest.importorskip("zeroconf")

from paradis_runtime.discovery import Advertiser, bundle_id, discover  # noqa: E402

LOOPBACK = ["127.0.0.1"]


def _bundle(folder, text):
    (folder / "s").mkdir(parents=True)
    (folder / "s" / "fusion_graph.json").write_text(text)
    (folder / "manifest.json").write_text(json.dumps({
        "schema": "paradis-bundle", "version": 1, "switches": [{"name": "s", "graph": "s/fusion_graph.json"}],
        "fallback": ["s"]}))
    return folder


def test_bundle_id_follows_the_graph_bytes(tmp_path):
    a, b = _bundle(tmp_path / "a", "{}"), _bundle(tmp_path / "b", "{ }")
    assert len(bundle_id(a)) == 16 and bundle_id(a) != bundle_id(b)
    assert bundle_id(a) == bundle_id(_bundle(tmp_path / "c", "{}"))


def test_a_peer_is_found_by_its_export_only(tmp_path):
    ours, other = _bundle(tmp_path / "ours", "{}"), _bundle(tmp_path / "other", "{ }")
    ads = [Advertiser(ours, 1, "127.0.0.1", 7101, LOOPBACK), Advertiser(ours, 2, "127.0.0.1", 7102, LOOPBACK),
           Advertiser(other, 3, "127.0.0.1", 7103, LOOPBACK)]
    try:
        assert discover(ours, [1, 2], timeout=10, interfaces=LOOPBACK) == {1: ("127.0.0.1", 7101),
                                                                         2: ("127.0.0.1", 7102)}
        assert discover(ours, [3], timeout=1.5, interfaces=LOOPBACK) == {}  # device 3 holds another export
    finally:
        for a in ads:
            a.close()


def test_advertising_a_wildcard_address_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"received host '0.0.0.0'"):
        Advertiser(_bundle(tmp_path / "a", "{}"), 1, "0.0.0.0", 7001, LOOPBACK)
