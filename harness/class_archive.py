"""A class-data archive for the TaskManagers' JVMs (CDS: JDK 17's dynamic archive), kept outside the work tree.

A TaskManager restarted after a kill spends most of its start loading, verifying and linking the same classes
as every TaskManager before it (Flink's runtime, the RPC system, the S3 file system, the Kafka client), on two
cores shared with the rest of the stack.  The JVM can map those classes, already parsed and verified, from an
archive instead.  The first TaskManagers of a machine run with ``-XX:+RecordDynamicDumpInfo``; when their stack
goes down, ``jcmd <pid> VM.cds dynamic_dump`` writes the archive from the one that ran the job (so it holds the
job's start-up path, not only the TaskManager's).  Every later TaskManager maps it (``-XX:SharedArchiveFile``).

The archive is keyed by the JVM and by every jar of the class path (path, size, modification time): the JVM
refuses an archive whose class path changed, and a new key simply records again.  A JVM that cannot map an archive
(``-Xshare:auto``, the default) starts without it: the archive changes speed, never behaviour.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import subprocess
from collections.abc import Sequence
from pathlib import Path

log = logging.getLogger("cdc_chaos.class_archive")

#: the JVM options of a JVM that may record (every class it loaded can be dumped later by jcmd)
RECORD = "-XX:+RecordDynamicDumpInfo"
#: a Java agent (the TaskManagers' warm-up) is allowed in a JVM that dumps or maps an archive; both sides must agree
WITH_AGENT = ("-XX:+UnlockDiagnosticVMOptions", "-XX:+AllowArchivingWithJavaAgent")
#: where a JVM listens for jcmd (HotSpot's temporary directory on Linux, whatever java.io.tmpdir says)
ATTACH_DIR = Path("/tmp")
#: an archive below this size is not one (not even its header: a dump cut short)
MIN_BYTES = 4096


class ClassArchive:
    """The archive for JVMs started as ``argv`` (``java`` first): where it lives, the JVM options that record or
    use it, and the dump from a running recorder."""

    def __init__(self, argv: Sequence[str], root: Path) -> None:
        self.argv = list(argv)
        self.path = root / f"tm-{self.key()}.jsa"

    def _class_path(self) -> list[str]:
        for flag in ("-classpath", "-cp", "--class-path"):
            if flag in self.argv:
                return [p for p in self.argv[self.argv.index(flag) + 1].split(os.pathsep) if p]
        return []

    def _agent(self) -> bool:
        return any(a.startswith("-javaagent:") for a in self.argv)

    def key(self) -> str:
        """A digest of what the JVM checks an archive against: the JVM itself and each jar of the class path."""
        h = hashlib.sha256()
        java = Path(self.argv[0]).resolve()
        h.update(f"{java}\0{self._agent()}\0".encode())
        with contextlib.suppress(OSError):       # the JVM's own library (a JDK upgrade in place changes it)
            st = (java.parent.parent / "lib" / "server" / "libjvm.so").stat()
            h.update(f"{st.st_size}:{st.st_mtime_ns}\0".encode())
        for jar in self._class_path():
            try:
                st = Path(jar).stat()
                h.update(f"{jar}:{st.st_size}:{st.st_mtime_ns}\0".encode())
            except OSError:
                h.update(f"{jar}:missing\0".encode())
        return h.hexdigest()[:16]

    def exists(self) -> bool:
        try:
            return self.path.stat().st_size >= MIN_BYTES
        except OSError:
            return False

    def jvm_options(self) -> list[str]:
        """Map the archive when there is one, else record so that one can be dumped."""
        agent = list(WITH_AGENT) if self._agent() else []
        return [*agent, f"-XX:SharedArchiveFile={self.path}" if self.exists() else RECORD]

    def with_options(self, argv: Sequence[str] | None = None) -> list[str]:
        """``argv`` (by default the one the archive was made for: another JVM of the same class path, e.g. each
        TaskManager's) with :meth:`jvm_options` right after ``java``, as of now."""
        argv = list(argv if argv is not None else self.argv)
        return [argv[0], *self.jvm_options(), *argv[1:]]

    def _jcmd(self) -> str:
        """The jcmd of the JDK the JVMs run on (attaching needs the same version), else the one on PATH."""
        beside = Path(self.argv[0]).resolve().parent / "jcmd"
        return str(beside) if os.access(beside, os.X_OK) else "jcmd"

    def dump_from(self, pid: int, timeout_s: float = 90.0) -> bool:
        """Write the archive from the running JVM ``pid`` (started with :data:`RECORD`); atomic, so JVMs starting
        meanwhile, or another stack dumping at the same time, never map half an archive.  False (and a log line
        naming why) when it could not be written; the run goes on without it."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{pid}.tmp")
        try:
            res = subprocess.run([self._jcmd(), str(pid), "VM.cds", "dynamic_dump", str(tmp)], capture_output=True,
                                 text=True, timeout=timeout_s)
            if res.returncode != 0 or not tmp.exists() or tmp.stat().st_size < MIN_BYTES:
                log.warning("no class-data archive from pid %s (jcmd exit %s): %s", pid, res.returncode,
                            (res.stdout + res.stderr).strip()[-500:])
                return False
            tmp.chmod(0o444)
            os.replace(tmp, self.path)
            log.info("class-data archive %s written from pid %s (%.0f MB)", self.path, pid,
                     self.path.stat().st_size / 1e6)
            return True
        except (OSError, subprocess.TimeoutExpired) as exc:
            log.warning("no class-data archive from pid %s: %s", pid, exc)
            return False
        finally:
            tmp.unlink(missing_ok=True)
            # jcmd's attach made the JVM listen on /tmp/.java_pid<pid>, a socket a killed JVM leaves behind; the JVM
            # makes a new one if anything attaches again
            (ATTACH_DIR / f".java_pid{pid}").unlink(missing_ok=True)
