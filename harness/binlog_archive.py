"""A raw copy of the database's binlog, kept from the stack's start, so ground truth survives a purge.

The server's own tool streams it as a replication client (``mariadb-binlog --read-from-remote-server --raw
--stop-never``): every binlog file is written under the archive directory byte for byte, with the server's
positions, as the server writes it.  When the tool's connection ends (the database restarted, a network
blip) a watchdog starts it again from the last archived file, which the tool fetches anew from its start.

Truth reads a file from the server while the server still lists it and from the archive once it has been
purged (:func:`harness.truth.stream_binlog`).  A file purged before the archive had all of it is read as far
as the archive has it; truth's facts name every file read from the archive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.process import ManagedProcess
from harness.truth import binlog_files, file_number


class BinlogArchive:
    def __init__(self, directory: Path, endpoints: dict[str, Any], tool: str, server_id: int, log_file: Path,
                 on_spawn: Callable[[int], None] | None = None) -> None:
        self.dir = directory
        self.endpoints = endpoints
        self.tool = tool
        self.server_id = server_id     # the replication client id: distinct from the server's and Debezium's
        self._proc = ManagedProcess("database/binlog-archive", [tool], log_file, cwd=directory, on_spawn=on_spawn)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True, name="binlog-archive")
        self.restarts = 0

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def files(self) -> list[str]:
        """Archived binlog files, oldest first."""
        return sorted((p.name for p in self.dir.iterdir() if p.is_file() and p.name.rsplit(".", 1)[-1].isdigit()),
                      key=file_number)

    def _first_file(self) -> str:
        archived = self.files()
        if archived:
            return archived[-1]   # fetched anew from its start: the copy may have stopped mid-file
        e = self.endpoints
        return binlog_files(e["host"], int(e["port"]), e["root_user"], e["root_password"])[0]

    def _argv(self, first: str) -> list[str]:
        e = self.endpoints
        return [self.tool, "--read-from-remote-server", f"--host={e['host']}", f"--port={e['port']}",
                f"--user={e['root_user']}", f"--password={e['root_password']}", "--raw", "--stop-never",
                f"--stop-never-slave-server-id={self.server_id}", f"--result-file={self.dir}/", first]

    def _watch(self) -> None:
        while not self._stop.is_set():
            try:
                self._proc.argv = self._argv(self._first_file())
                self._proc.start()
            except Exception:  # noqa: BLE001 - the database may be down (a fault); try again shortly
                self._stop.wait(1.0)
                continue
            while self._proc.running() and not self._stop.wait(0.5):
                pass
            if not self._stop.is_set():
                self.restarts += 1
                self._stop.wait(1.0)

    def stop(self) -> None:
        self._stop.set()
        self._proc.kill()
        if self._thread.ident is not None:
            self._thread.join(timeout=10)
