"""Issue 11, item 9: bad input by the thousand, the short run (the long one is ``meetvar bench fuzz``).

Every message parser, the chunk decoder, WHIP's SDP handling and the dashboard's OpenAPI get a few
hundred generated inputs each; every input must be accepted or rejected with the module's own clear
error (SchemaError, ChunkDecodeError, a 4xx with a message) — 0 crashes, 0 server errors."""

from __future__ import annotations

import pytest

from meetvar.benchmarks import fuzz

SHORT = 300


def _assert_clean(report: fuzz.FuzzReport, n: int) -> None:
    assert report.crashes == 0, report.examples
    assert report.inputs >= n * 0.9, f"only {report.inputs} inputs generated"
    assert report.rejected > 0  # the inputs really are bad ones, not only valid messages


@pytest.mark.parametrize("name", sorted(fuzz.parser_targets()))
def test_message_parsers_reject_bad_input_with_a_schema_error(name: str) -> None:
    strategy, feed = fuzz.parser_targets()[name]
    report = fuzz.run_target(name, strategy, feed, SHORT)
    _assert_clean(report, SHORT)
    if name != "schemas.unpack_chunk":
        assert report.accepted > 0  # valid messages are among the inputs, and still read


def test_the_chunk_decoder_rejects_random_and_corrupted_chunks_with_chunk_decode_error() -> None:
    from ingest.chunk_decoder import decode_chunk_yuv

    assert len(decode_chunk_yuv(fuzz.sample_chunk(), fuzz.SAMPLE_FRAMES)) == fuzz.SAMPLE_FRAMES
    strategy, feed = fuzz.chunk_decoder_target()
    report = fuzz.run_target("chunk_decoder", strategy, feed, SHORT)
    _assert_clean(report, SHORT)


def test_whip_answers_random_sdp_offers_with_a_clear_4xx_never_a_500() -> None:
    with fuzz.whip_client() as (client, token, path):
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/sdp"}
        # An offer aiortc used to take and then fail on after the 201: no DTLS fingerprint.
        bare = "\r\n".join(line for line in fuzz._valid_offer().split("\r\n") if "fingerprint" not in line)
        r = client.post(path, content=bare.encode(), headers=headers)
        assert r.status_code == 400 and "fingerprint" in r.json()["error"]
        r = client.post(path, content=fuzz._valid_offer().encode(), headers=headers)
        assert r.status_code == 201
        client.delete(r.headers["location"], headers=headers)
        strategy, feed = fuzz.whip_target(client, token, path)
        report = fuzz.run_target("whip_sdp", strategy, feed, SHORT)
    _assert_clean(report, SHORT)


@pytest.mark.integration
def test_schemathesis_against_the_dashboards_openapi_finds_no_server_error() -> None:
    with fuzz.dashboard_target() as (strategy, feed):
        report = fuzz.run_target("dashboard_openapi", strategy, feed, 200)
    _assert_clean(report, 200)
    assert report.accepted > 0  # signed in: real answers, not only 401s


def test_ids_beyond_64_bits_are_a_422_not_a_500() -> None:
    """Found by schemathesis: SQLite raised OverflowError (a 500) on ids past 2**63 - 1."""
    from fastapi.testclient import TestClient

    from dashboard.app import create_app
    from dashboard.auth import Auth
    from dashboard.state import DashboardState
    from dashboard.store import DashboardStore

    store = DashboardStore(":memory:")
    app = create_app(DashboardState(store, auth=Auth(store.engine, anonymous_viewer=True)))
    with TestClient(app) as client:
        for path in (f"/api/lifts/{2**70}", f"/api/lifts?attempt={2**64}"):
            r = client.get(path)
            assert r.status_code == 422 and "out of range" in r.json()["detail"]


def test_bench_fuzz_prints_counts_per_target_as_json_last(capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from meetvar.cli import main

    targets = "schemas.StateMsg,chunk_decoder"
    code = main(["bench", "fuzz", "--examples", "30", "--targets", targets, "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(result["targets"]) == {"schemas.StateMsg.parse", "chunk_decoder"}
    for counts in result["targets"].values():
        assert counts["crashes"] == 0
        assert counts["inputs"] == counts["accepted"] + counts["rejected_with_clear_error"] > 0
