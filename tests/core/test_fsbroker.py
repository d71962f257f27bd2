"""The embedded broker writes each message atomically: a polling worker never reads half
a message (kombu's own filesystem transport creates the file empty, then writes it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kombu import Connection

from csvault.core.fsbroker import Transport


def _connection(tmp_path: Path) -> Connection:
    folder = tmp_path / "queue"
    folder.mkdir()
    return Connection(
        "filesystem://",
        transport=Transport,
        transport_options={
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "store_processed": False,
        },
    )


def _channel(conn: Connection) -> Any:
    return conn.channel()  # a filesystem Channel (kombu types it as StdChannel)


def test_a_message_is_whole_as_soon_as_its_file_exists(tmp_path: Path) -> None:
    with _connection(tmp_path) as conn:
        channel = _channel(conn)
        channel._put("jobs", {"body": "x" * 100_000})
        files = list((tmp_path / "queue").iterdir())
        assert [f.suffix for f in files] == [".msg"]  # no .part left behind
        assert channel._get("jobs") == {"body": "x" * 100_000}


def test_a_message_still_being_written_is_not_taken(tmp_path: Path) -> None:
    with _connection(tmp_path) as conn:
        channel = _channel(conn)
        # What a writer leaves while it is still writing: the .part name.
        (tmp_path / "queue" / "1_abc.jobs.msg.part").write_bytes(b'{"bo')
        channel._put("jobs", {"n": 1})
        assert channel._get("jobs") == {"n": 1}
        assert [p.name for p in (tmp_path / "queue").iterdir()] == ["1_abc.jobs.msg.part"]


def test_while_a_message_is_written_no_reader_can_see_it(tmp_path: Path, monkeypatch) -> None:
    """The serialisation runs while the file is open: look at the queue then. kombu's
    own transport shows an empty ``.msg`` file at that moment (a reader takes it and
    loses the task); this one shows only the ``.part`` name, which readers skip."""
    import kombu.transport.filesystem as kombu_fs

    import csvault.core.fsbroker as ours

    seen: list[list[tuple[str, int]]] = []

    def spying(real):
        def dumps(payload):
            seen.append(sorted((p.name, p.stat().st_size) for p in queue.iterdir()))
            return real(payload)

        return dumps

    queue = tmp_path / "queue"
    with _connection(tmp_path) as conn:
        monkeypatch.setattr(ours, "dumps", spying(ours.dumps))
        _channel(conn)._put("jobs", {"n": 1})
        ((name, size),) = seen[0]  # one file: the temporary name, not yet a message
        assert name.endswith(".jobs.msg.part")
        assert size == 0

        seen.clear()
        monkeypatch.setattr(kombu_fs, "dumps", spying(getattr(kombu_fs, "dumps")))  # noqa: B009
        kombu_fs.Channel._put(_channel(conn), "jobs", {"n": 2})
        # The race: an empty file under a message's name, which a reader would take.
        assert any(n.endswith(".jobs.msg") and size == 0 for n, size in seen[0])
