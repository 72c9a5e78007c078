"""Tiny faust worker used by tests/test_broker.py: reads ``in``, sends value*2 to ``out``.

Run as a subprocess: ``python tests/faust_double_app.py BOOTSTRAP DATADIR [APP_ID]``.
Values are ASCII integers (raw bytes) so the test can use plain aiokafka.
"""

from __future__ import annotations

import sys
from pathlib import Path

import faust

from stream_processors.faust_app import make_app, run_worker


def build(bootstrap: str, datadir: Path, app_id: str = "test-double") -> faust.App:
    app = make_app(app_id, bootstrap, datadir=datadir)
    source = app.topic("in", value_type=bytes, value_serializer="raw")
    sink = app.topic("out", value_type=bytes, value_serializer="raw")

    @app.agent(source)
    async def double(stream: faust.StreamT[bytes]) -> None:
        async for key, value in stream.items():
            await sink.send(key=key, value=str(int(value) * 2).encode())

    return app


if __name__ == "__main__":
    bootstrap, datadir = sys.argv[1], Path(sys.argv[2])
    app_id = sys.argv[3] if len(sys.argv) > 3 else "test-double"
    run_worker(build(bootstrap, datadir, app_id), loglevel="info")
