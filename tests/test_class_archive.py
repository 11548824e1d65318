"""The TaskManagers' class-data archive (harness/class_archive.py) with real JVMs, without a stack: a JVM started
to record is dumped by ``jcmd`` while it runs, a JVM started with the archive maps its classes from it, and the
key follows the class path.  The stack's TaskManagers start with it: tests/test_flink_launch.py."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

from harness.class_archive import ATTACH_DIR, RECORD, WITH_AGENT, ClassArchive


def _java() -> str:
    java = shutil.which("java")
    assert java, "java not found: run ./run setup (openjdk-17-jdk-headless)"
    return java


def _idle_jar(tmp_path: Path) -> Path:
    """A jar whose main class loads some classes of the JDK, says so, and sleeps."""
    src = tmp_path / "src" / "Idle.java"
    src.parent.mkdir()
    src.write_text("public class Idle { public static void main(String[] a) throws Exception {"
                   " new java.util.concurrent.ConcurrentSkipListMap<String, String>().put(\"a\", \"b\");"
                   " System.out.println(\"ready\"); System.out.flush(); Thread.sleep(60000); } }\n")
    javac, jar = shutil.which("javac"), shutil.which("jar")
    assert javac and jar, "javac/jar not found: run ./run setup (openjdk-17-jdk-headless)"
    subprocess.run([javac, "-d", str(tmp_path / "classes"), str(src)], check=True)
    out = tmp_path / "idle.jar"
    subprocess.run([jar, "cf", str(out), "-C", str(tmp_path / "classes"), "."], check=True)
    return out


def test_a_recording_jvm_is_dumped_while_it_runs_and_the_next_maps_the_archive(tmp_path: Path) -> None:
    jar = _idle_jar(tmp_path)
    archive = ClassArchive([_java(), "-cp", str(jar), "Idle"], tmp_path / "archives")
    assert not archive.exists() and archive.jvm_options() == [RECORD]     # none yet: record
    recorder = subprocess.Popen(archive.with_options(), stdout=subprocess.PIPE, text=True)
    try:
        assert recorder.stdout is not None and recorder.stdout.readline().strip() == "ready"
        assert archive.dump_from(recorder.pid)
        assert recorder.poll() is None                  # the dump does not stop the JVM
        assert not (ATTACH_DIR / f".java_pid{recorder.pid}").exists()     # nothing left in /tmp when it dies
    finally:
        recorder.kill()
        recorder.wait()
    assert archive.exists() and not list(archive.path.parent.glob("*.tmp"))
    assert archive.jvm_options() == [f"-XX:SharedArchiveFile={archive.path}"]
    user = subprocess.Popen([*archive.with_options()[:-1], "-Xlog:class+load=info", "Idle"],
                            stdout=subprocess.PIPE, text=True)
    try:
        lines = []
        assert user.stdout is not None
        for line in user.stdout:
            lines.append(line)
            if line.strip() == "ready":
                break
        # the application's own class and the JDK classes it used come from the archive's top layer
        assert any(" Idle source: shared objects file (top)" in line for line in lines), lines[-5:]
    finally:
        user.kill()
        user.wait()


def test_a_jvm_that_cannot_be_dumped_leaves_no_archive(tmp_path: Path) -> None:
    jar = _idle_jar(tmp_path)
    archive = ClassArchive([_java(), "-cp", str(jar), "Idle"], tmp_path / "archives")
    plain = subprocess.Popen([_java(), "-cp", str(jar), "Idle"], stdout=subprocess.PIPE, text=True)  # no RECORD
    try:
        assert plain.stdout is not None and plain.stdout.readline().strip() == "ready"
        started = time.monotonic()
        assert archive.dump_from(plain.pid) is False
        assert not (ATTACH_DIR / f".java_pid{plain.pid}").exists()
        assert time.monotonic() - started < 30
    finally:
        plain.kill()
        plain.wait()
    assert not archive.exists() and not list(archive.path.parent.glob("*"))


def test_the_key_follows_the_jvm_and_every_jar_of_the_class_path(tmp_path: Path) -> None:
    a, b = tmp_path / "a.jar", tmp_path / "b.jar"
    a.write_bytes(b"a")
    b.write_bytes(b"b")
    argv = [_java(), "-cp", f"{a}:{b}", "Main"]
    key = ClassArchive(argv, tmp_path).key()
    assert ClassArchive(argv, tmp_path).key() == key
    assert ClassArchive([_java(), "-Xmx1g", "-cp", f"{a}:{b}", "Other"], tmp_path).key() == key  # options aside
    assert ClassArchive([_java(), "-cp", f"{a}", "Main"], tmp_path).key() != key
    b.write_bytes(b"bb")                                     # a rebuilt jar: the JVM would refuse the old archive
    assert ClassArchive(argv, tmp_path).key() != key
    with_agent = ClassArchive([_java(), "-javaagent:x.jar", "-cp", f"{a}:{b}", "Main"], tmp_path)
    assert with_agent.key() != ClassArchive(argv, tmp_path).key()
    assert with_agent.jvm_options() == [*WITH_AGENT, RECORD]
