"""The source database: MariaDB from Debian (embedded default) or a real MySQL 8 ``mysqld``.

Each stack runs its own server with its own datadir, port, socket and ``server_id``; binlog in ROW
format with FULL row images, as Debezium requires.  A datadir template is initialised once per
machine and copied, which is several times faster than running ``mariadb-install-db`` per stack.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pymysql

from harness.components.base import Component
from harness.install import ensure_dir, run_step
from harness.process import ComponentError, ManagedProcess, port_open

if TYPE_CHECKING:
    from harness.binlog_archive import BinlogArchive

_BINARIES = {"mariadb": ("mariadbd", "mariadb-install-db"), "mysql": ("mysqld", "mysqld")}
_SBIN = ("/usr/sbin", "/usr/local/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/mysql/bin")


def find_binary(name: str) -> str:
    found = shutil.which(name) or next(
        (str(Path(d) / name) for d in _SBIN if (Path(d) / name).is_file()), None
    )
    if not found:
        fix = (
            "run `./run setup` (it installs mariadb-server from Debian)"
            if name.startswith("mariadb")
            else "install MySQL 8 (mysqld on PATH) or set [database] kind = \"mariadb\""
        )
        raise ComponentError(f"database binary {name!r} not found; {fix}")
    return found


def _as_root_flags() -> list[str]:
    # mariadbd refuses to run as root unless told to; when root, run as root rather than chown to mysql.
    return ["--user=root"] if os.geteuid() == 0 else []


def template_datadir(kind: str) -> Path:
    def build(tmp: Path) -> None:
        datadir = tmp / "data"
        if kind == "mariadb":
            run_step(
                [find_binary("mariadb-install-db"), "--no-defaults", f"--datadir={datadir}",
                 "--auth-root-authentication-method=normal", "--skip-test-db", *_as_root_flags()],
                "initialising a MariaDB datadir template", "Is mariadb-server installed (`./run setup`)?",
            )
        else:
            run_step(
                [find_binary("mysqld"), "--no-defaults", "--initialize-insecure", f"--datadir={datadir}",
                 *_as_root_flags()],
                "initialising a MySQL datadir template", "Is MySQL 8 installed?",
            )

    return ensure_dir(f"{kind}-datadir-template", build, f"{kind} datadir template") / "data"


class Database(Component):
    name = "database"
    archive: BinlogArchive | None = None   # started once healthy, stopped with the component
    health_description = "the server to accept a root login on its port"

    @property
    def kind(self) -> str:
        return self.config.database.kind

    @property
    def port(self) -> int:
        return self.ports["database"]

    @property
    def socket_path(self) -> Path:
        return self.dir / "mysqld.sock"

    @property
    def archive_dir(self) -> Path:
        return self.dir / "binlog-archive"

    @property
    def datadir(self) -> Path:
        return self.dir / "data"

    def prepare(self) -> None:
        binary = _BINARIES[self.kind][0]
        self._binary = find_binary(binary)
        if self.kind == "mysql":
            # Debian's MariaDB installs a `mysqld` symlink; the MySQL connector needs the real MySQL 8
            version = subprocess.run([self._binary, "--version"], capture_output=True, text=True).stdout
            if "mariadb" in version.lower():
                raise ComponentError(
                    f"[database] kind = \"mysql\" needs a real MySQL 8 mysqld, but {self._binary} is MariaDB "
                    f"({version.strip()}); install MySQL 8 or set [database] kind = \"mariadb\"")
        if not self.datadir.exists():
            shutil.copytree(template_datadir(self.kind), self.datadir, symlinks=True)
        self._initialised = (self.dir / ".schema-applied").exists()

    def build_processes(self) -> dict[str, ManagedProcess]:
        db = self.config.database
        argv = [
            self._binary, "--no-defaults", f"--datadir={self.datadir}", f"--port={self.port}",
            "--bind-address=127.0.0.1", f"--socket={self.socket_path}", f"--pid-file={self.dir / 'mysqld.pid'}",
            f"--server-id={db.server_id}", f"--log-bin={self.datadir / 'binlog'}", "--binlog-format=ROW",
            "--binlog-row-image=FULL", "--binlog-row-metadata=FULL", "--skip-name-resolve",
            "--event-scheduler=ON",   # the heartbeat tick in init.sql
            "--innodb-buffer-pool-size=64M",
            "--max-connections=200", f"--log-error={self.dir / 'error.log'}", *_as_root_flags(),
        ]
        if self.kind == "mysql":
            argv += ["--gtid-mode=ON", "--enforce-gtid-consistency=ON", "--mysqlx=OFF"]
        return {"server": self.new_process("server", argv)}

    def log_tails(self, lines: int = 30) -> str:
        from harness.process import tail

        return super().log_tails(lines) + f"\n--- tail of {self.dir / 'error.log'} ---\n" + tail(
            self.dir / "error.log", lines
        )

    def healthy(self) -> bool:
        if not port_open(self.port):
            return False
        with self.root_connection() as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
        return True

    def after_healthy(self) -> None:
        self._initialise()
        if self.archive is None:
            from harness.binlog_archive import BinlogArchive
            from harness.truth import binlog_tool

            self.archive = BinlogArchive(self.archive_dir, self.endpoints(),
                                         binlog_tool(self.kind == "mariadb"), self.config.database.server_id + 2,
                                         self.dir / "binlog-archive.log", on_spawn=self.run.record_pgid)
            self.archive.start()

    def kill(self, member: str | None = None) -> None:
        if member is None:
            self._stop_archive()
        super().kill(member)

    def stop(self, member: str | None = None) -> None:
        if member is None:
            self._stop_archive()
        super().stop(member)

    def _stop_archive(self) -> None:
        if self.archive is not None:
            self.archive.stop()
            self.archive = None

    def _initialise(self) -> None:
        if self._initialised:
            return
        sql = self.config.path(self.config.database.init_sql).read_text()
        with self.root_connection() as conn, conn.cursor() as cur:
            for statement in _split_sql(sql):
                cur.execute(statement)
            # TCP clients (workload, checker) log in as root with the configured password, like compose.
            pw = self.config.database.root_password
            cur.execute("SELECT host FROM mysql.user WHERE user = 'root' AND host NOT IN ('localhost', '%')")
            for (host,) in cur.fetchall():  # passwordless root@127.0.0.1 etc. would shadow root@'%'
                cur.execute("DROP USER %s@%s", ("root", host))
            cur.execute("CREATE USER IF NOT EXISTS 'root'@'%%' IDENTIFIED BY %s", (pw,))
            cur.execute("GRANT ALL PRIVILEGES ON *.* TO 'root'@'%' WITH GRANT OPTION")
        (self.dir / ".schema-applied").write_text("ok")
        self._initialised = True

    # --- clients ---------------------------------------------------------------------------------
    def root_connection(self, **kw: Any) -> pymysql.connections.Connection:
        """Root over the unix socket: works before and after any password is set."""
        return pymysql.connect(unix_socket=str(self.socket_path), user="root", password="",
                               connect_timeout=3, autocommit=True, **kw)

    def connect(self, database: str | None = None, **kw: Any) -> pymysql.connections.Connection:
        """A TCP client connection as root, the way the workload connects."""
        return pymysql.connect(host="127.0.0.1", port=self.port, user="root",
                               password=self.config.database.root_password,
                               database=database or self.config.database.database,
                               connect_timeout=5, **kw)

    def endpoints(self) -> dict[str, Any]:
        db = self.config.database
        return {
            "kind": self.kind, "host": "127.0.0.1", "port": self.port, "socket": str(self.socket_path),
            "database": db.database, "user": db.user, "password": db.password, "root_user": "root",
            "root_password": db.root_password,
            # truth reads a binlog file from here once the server has purged it (the archive may be kept by
            # another process of this stack: the `up` supervisor, when the CLI attaches)
            **({"binlog_archive": str(self.archive_dir)} if self.archive_dir.is_dir() else {}),
            # the server's own binlog files, on this machine: truth reads them with its compiled reader
            "binlog_dir": str(self.datadir),
        }

    def version(self) -> str:
        out = subprocess.run([self._binary, "--version"], capture_output=True, text=True, check=False)
        return out.stdout.strip()


def _split_sql(sql: str) -> list[str]:
    """Split an init script on ';' at line ends (the script has no procedures)."""
    lines = [ln for ln in sql.splitlines() if not ln.strip().startswith("--")]
    parts = (s.strip().rstrip(";").strip() for s in "\n".join(lines).split(";\n"))
    return [p for p in parts if p]
