"""Every command the README shows runs as written, copy-pasted, on a fresh clone.

The commands are read from README.md itself (its code blocks, and the commands it
writes inline in backticks), so that a command added there is run here too. Each
runs in a copy of the repository (sharing the virtualenv) with a clean
environment: no SECRET_KEY, no DEBUG, no DATABASE_URL, so SQLite and kombu's
filesystem broker, exactly what someone who just cloned the project has.

`make run` runs for real: the web server must answer /healthz, and Ctrl-C (SIGINT
to its process group) must stop it and every process it started. `make test` is the
suite itself and cannot run inside it: CI's `.ci/run` runs it, and this test checks
that the Makefile passes ARGS through as the README says.
"""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"

# An inline span or a code-block line is a command when it starts like one, after
# any NAME=value assignments: `make ...`, `.venv/bin/...`, `./scripts/...`,
# `python ...`, `manage.py ...` (the last one does not run as written: the test
# then fails, as it should).
COMMAND = re.compile(
    r"^(?:[A-Z_][A-Z0-9_]*=\S*\s+)*(?:make|\.venv/bin/\S+|\./\S+|python3?|manage\.py|"
    r"bench/\S+|scripts/\S+)(?:\s|$)"
)
SHELL_BLOCKS = {"sh", "bash", "shell", "console"}

# Commands that cannot run inside the suite, and where they are covered instead.
COVERED_ELSEWHERE = {
    "make test": "the suite itself: .ci/run runs `make test` in CI (checked below)",
}


def readme_commands(text: str) -> list[str]:
    """The README's commands in the order they appear, each once."""
    commands = []
    fence = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
    for block in fence.finditer(text):
        language, body = block.group(1), block.group(2)
        for line in body.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if not line or line.startswith("#"):
                continue
            if language in SHELL_BLOCKS:
                assert COMMAND.match(line), (
                    f"README shell block line {line!r} does not look like a command this "
                    "test knows how to run: teach COMMAND about it")
                commands.append(line)
            elif COMMAND.match(line):
                commands.append(line)
    prose = fence.sub("", text)
    for span in re.findall(r"`([^`\n]+)`", prose):
        if COMMAND.match(span.strip()):
            commands.append(span.strip())
    return list(dict.fromkeys(commands))


def covered_elsewhere(command: str) -> str | None:
    for prefix, where in COVERED_ELSEWHERE.items():
        if command == prefix or command.startswith(prefix + " "):
            return where
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A copy of the working tree as a fresh clone has it, sharing the virtualenv
    (`make install` has made it: `make test` depends on it)."""
    installed = ROOT / ".venv" / "bin" / ".installed"
    if not installed.exists():
        pytest.fail("no .venv/bin/.installed: run the suite with `make test` (or `make install`)")
    copy = tmp_path_factory.mktemp("clone") / "privacy-portal"
    shutil.copytree(ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", ".venv", "var", "__pycache__", "*.egg-info", ".pytest_cache", "staticfiles",
        "test-artifacts", "build"))
    (copy / ".venv").symlink_to(ROOT / ".venv", target_is_directory=True)
    # Make must see the shared virtualenv as up to date, and never reinstall it from
    # the copy (that would point the editable install at a directory about to go).
    stamp = installed.stat().st_mtime - 1
    os.utime(copy / "pyproject.toml", (stamp, stamp))
    return copy


@pytest.fixture(scope="module")
def fresh_env(clone):
    env = {"PATH": os.environ["PATH"], "LANG": "C.UTF-8",
           # The README's defaults, on ports nobody else on this machine is using.
           "WEB_ADDRESS": f"127.0.0.1:{free_port()}", "DEMO_HTTP_PORT": str(free_port()),
           # The default (./var) of the copy, said explicitly so that no process can
           # fall back to the working tree's var/.
           "DATA_DIR": str(clone / "var")}
    if "HOME" in os.environ:
        env["HOME"] = os.environ["HOME"]
    return env


# --- processes ---------------------------------------------------------------------


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of a process, None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = raw[raw.rindex(")") + 2:].split()
    return int(fields[1]), fields[0], fields[19]


def descendants(pid: int) -> dict[int, str]:
    """Every live process below pid (whatever its process group), with its start
    time so that a reused pid is not mistaken for it."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))):
            children.setdefault(stat[0], []).append(int(entry.name))
    found, todo = {}, [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            stat = _stat(child)
            if stat and stat[1] != "Z":
                found[child] = stat[2]
                todo.append(child)
    return found


def still_running(processes: dict[int, str]) -> list[int]:
    return [pid for pid, started in processes.items()
            if (stat := _stat(pid)) and stat[1] != "Z" and stat[2] == started]


def run_make_run(clone, env) -> str:
    """`make run` as a terminal runs it: started, used, stopped with Ctrl-C."""
    log_path = clone / "make-run.log"
    url = f"http://{env['WEB_ADDRESS']}/healthz"
    with open(log_path, "w") as log:
        process = subprocess.Popen(["bash", "-c", "make run"], cwd=clone, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    started: dict[int, str] = {}
    try:
        deadline = time.monotonic() + 150
        healthy = None
        while time.monotonic() < deadline and process.poll() is None:
            started.update(descendants(process.pid))
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    healthy = (response.status, response.read().decode())
                    break
            except OSError:
                time.sleep(0.5)
        output = log_path.read_text()
        assert healthy, f"make run never answered {url}:\n{output[-3000:]}"
        assert healthy[0] == 200 and '"database": "ok"' in healthy[1], healthy
        # Every process is up once /healthz answers: web, a worker (and its pool)
        # for each queue (privacyportal/celery.py), beat and the demo source.
        time.sleep(2)
        started.update(descendants(process.pid))
        commands = [Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                    for pid in started if _stat(pid)]
        for program in ("runserver", "worker -Q steps", "worker -Q emails",
                        "worker -Q sources", "beat", "demo_http"):
            assert any(program in c for c in commands), (program, commands)

        os.killpg(process.pid, signal.SIGINT)  # Ctrl-C in the terminal
        process.wait(timeout=60)
        deadline = time.monotonic() + 30
        while still_running(started) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = still_running(started)
        assert not left, f"still running after Ctrl-C: {left}"
        return log_path.read_text()
    finally:
        for pid in still_running(started) + ([process.pid] if process.poll() is None else []):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=10)


def run(command, clone, env, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=timeout)


# --- what each command should do ---------------------------------------------------


def check_demo_staff_codes(result, clone):
    lines = result.stdout.strip().splitlines()
    users = [re.fullmatch(r"\s*(\w+)\s+code now: \d{6}", line) for line in lines]
    assert all(users) and {u.group(1) for u in users} == {
        "manager", "analyst", "auditor", "owner"}, result.stdout


def check_lifecycle_diagram(result, clone):
    assert (clone / "docs" / "lifecycle.md").read_text() == \
        (ROOT / "docs" / "lifecycle.md").read_text()


EXPECTED = {
    ".venv/bin/python manage.py demo_staff --codes": check_demo_staff_codes,
    "make lifecycle-diagram": check_lifecycle_diagram,
}


# --- the tests ---------------------------------------------------------------------


def test_the_readme_commands_are_all_found():
    commands = readme_commands(README.read_text())
    for command in ["make run", "make test", ".venv/bin/python manage.py demo_staff --codes",
                    "make lifecycle-diagram", 'make test ARGS="-k deadlines -x"']:
        assert command in commands, commands
    # The extraction is not fooled by the layout block or by names in backticks.
    assert not any(c.startswith(("privacyportal/", "DATABASE_URL")) for c in commands)


def test_a_command_that_does_not_run_as_written_is_caught(clone, fresh_env):
    """The bare form the README used to print, `manage.py demo_staff --codes`, is
    found as a command and fails when run as written."""
    (command,) = readme_commands("Codes: `manage.py demo_staff --codes` prints them.")
    assert run(command, clone, fresh_env, timeout=60).returncode != 0


def test_every_readme_command_runs_as_written_on_a_fresh_clone(clone, fresh_env):
    commands = readme_commands(README.read_text())
    # `make run` first, as on a fresh clone: the other commands use what it set up.
    commands.sort(key=lambda c: c != "make run")
    failures = []
    for command in commands:
        if command == "make run":
            output = run_make_run(clone, fresh_env)
            assert "Demo staff logins" in output and re.search(r"TOTP secret: [A-Z2-7]+", output)
            assert f"Privacy Portal: http://{fresh_env['WEB_ADDRESS']}/" in output
            continue
        if covered_elsewhere(command):
            # Make accepts it and runs what the README says (-n: print, do not run).
            result = run(f"make -n {command.removeprefix('make ')}", clone, fresh_env, 60)
            args = command.partition("ARGS=")[2].strip('"')
            if result.returncode != 0 or f"./scripts/test.sh {args}".strip() not in result.stdout:
                failures.append(f"{command}: make -n says {result.stdout}{result.stderr}")
            continue
        result = run(command, clone, fresh_env)
        if result.returncode != 0:
            failures.append(f"{command}: exit {result.returncode}\n{result.stdout[-1500:]}"
                            f"{result.stderr[-1500:]}")
            continue
        if command in EXPECTED:
            try:
                EXPECTED[command](result, clone)
            except AssertionError as exc:
                failures.append(f"{command}: unexpected output: {exc}\n{result.stdout[-1500:]}")
    assert not failures, "\n\n".join(failures)
    # Nothing ran with development secrets of its own: all shared the copy's var/.
    assert (clone / "var" / "dev-secret-key").exists()


def test_make_test_is_covered_by_ci():
    assert re.search(r"^test:", (ROOT / "Makefile").read_text(), re.M)
    assert re.search(r"^exec make test$", (ROOT / ".ci" / "run").read_text(), re.M)
    assert re.search(r"^run:", (ROOT / "Makefile").read_text(), re.M)
