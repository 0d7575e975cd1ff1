"""A local Elasticsearch node on 127.0.0.1 for development, tests and the demo.

Only the standard library is used, so `deploy/es-local` works before any
virtualenv exists. The node is Elasticsearch's integration-test distribution,
fetched from Maven Central with Maven and cached in Maven's local repository.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

# Standard library only, besides the error tree: deploy/es-local runs before any virtualenv.
from nis2triage.errors import Nis2TriageError

# The one place the version is pinned. Maven Central served no 9.x build of
# the integration-test zip on 2026-12-04 (newest: 8.19.21), so 8.19 it is.
DEFAULT_VERSION = "8.19.21"
GROUP = "org.elasticsearch.distribution.integ-test-zip"
ARTIFACT = "elasticsearch"
SERVICE_USER = "nis2es"
DEFAULT_HEAP = "2g"
START_TIMEOUT_S = 180.0


# Nodes started by this process, kept so that stop() can reap them (and so Python does
# not warn about a child still running when the Popen object is collected).
_children: dict[int, subprocess.Popen[bytes]] = {}


class LocalNodeError(Nis2TriageError):
    """The local node could not be fetched, started or reached."""


class PortTaken(LocalNodeError):
    """Another process bound the HTTP port between our choosing it and the node binding it."""


@dataclass(frozen=True)
class NodeInfo:
    url: str
    user: str
    password: str
    pid: int


def repo_root() -> Path:
    return Path(__file__).resolve().parents[2]


def home() -> Path:
    """Where the node's files live: `NIS2TRIAGE_ES_HOME` or `.es/` in the checkout."""
    configured = os.environ.get("NIS2TRIAGE_ES_HOME")
    return Path(configured) if configured else repo_root() / ".es"


def version() -> str:
    return os.environ.get("NIS2TRIAGE_ES_VERSION", DEFAULT_VERSION)


def password_file() -> Path:
    return home() / "elastic-password"


def state_file() -> Path:
    return home() / "node.json"


def last_port() -> int | None:
    try:
        return int((home() / "last-port").read_text())
    except (OSError, ValueError):
        return None


# --- fetching -------------------------------------------------------------


def maven_zip(ver: str) -> Path:
    m2 = Path(os.environ.get("MAVEN_REPO", Path.home() / ".m2" / "repository"))
    return m2.joinpath(*GROUP.split("."), ARTIFACT, ver, f"{ARTIFACT}-{ver}.zip")


def fetch(ver: str) -> Path:
    """Download the distribution with Maven unless it is already cached."""
    cached = maven_zip(ver)
    if cached.is_file():
        return cached
    if shutil.which("mvn") is None:
        raise LocalNodeError(
            "Maven (mvn) is needed to fetch Elasticsearch; install it (apt-get install maven)"
        )
    print(f"fetching Elasticsearch {ver} from Maven Central (about 100 MB, once)...", flush=True)
    started = time.monotonic()
    artifact = f"{GROUP}:{ARTIFACT}:{ver}:zip"
    result = subprocess.run(
        ["mvn", "-q", "-B", "dependency:get", f"-Dartifact={artifact}", "-Dtransitive=false"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0 or not cached.is_file():
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
        raise LocalNodeError(f"Maven could not fetch {artifact}:\n{tail}")
    print(
        f"fetched {cached.stat().st_size / 1e6:.0f} MB in {time.monotonic() - started:.1f} s",
        flush=True,
    )
    return cached


def install_dir(ver: str) -> Path:
    return home() / f"elasticsearch-{ver}"


def unpack(ver: str) -> Path:
    target = install_dir(ver)
    if (target / "bin" / "elasticsearch").is_file():
        return target
    archive = fetch(ver)
    home().mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(home())
    # zipfile drops the executable bits that the archive records.
    for script in (target / "bin").iterdir():
        script.chmod(0o755)
    return target


# --- the security index's analysis components --------------------------------

# The integration-test build lacks the analysis-common module, whose tokenizer and filters the
# security index's "email" analyzer names; without them the node cannot store native roles,
# users or API keys. deploy/es-analysis holds a small plugin of our own that provides them
# from Lucene's classes; it is compiled here against the node's own jars.
ANALYSIS_PLUGIN = "nis2triage-security-analysis"


def analysis_sources() -> Path:
    return repo_root() / "deploy" / "es-analysis"


def analysis_digest(ver: str) -> str:
    """What the built plugin depends on: its sources and the Elasticsearch version."""
    digest = hashlib.sha256(ver.encode())
    for path in sorted(analysis_sources().rglob("*")):
        if path.is_file():
            digest.update(path.relative_to(analysis_sources()).as_posix().encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def install_analysis_plugin(es_dir: Path, java_home: Path, ver: str) -> None:
    """Build the plugin into the node's plugins folder unless the same build is there."""
    target = es_dir / "plugins" / ANALYSIS_PLUGIN
    stamp = target / ".nis2triage-digest"
    wanted = analysis_digest(ver)
    if stamp.is_file() and stamp.read_text() == wanted:
        return
    javac = java_home / "bin" / "javac"
    if not javac.is_file():
        raise LocalNodeError(
            f"{java_home} has no javac: the local node needs a JDK, not only a JRE, to build "
            "its analysis plugin (apt-get install openjdk-17-jdk-headless, or set ES_JAVA_HOME)"
        )
    shutil.rmtree(target, ignore_errors=True)
    classes = target / "classes"
    classes.mkdir(parents=True)
    compile_plugin(javac, es_dir, classes)
    pack_jar(classes, target / f"{ANALYSIS_PLUGIN}.jar")
    shutil.rmtree(classes)
    descriptor = (analysis_sources() / "plugin-descriptor.properties").read_text()
    (target / "plugin-descriptor.properties").write_text(descriptor.replace("@ES_VERSION@", ver))
    stamp.write_text(wanted)


def compile_plugin(javac: Path, es_dir: Path, classes: Path) -> None:
    sources = [str(p) for p in sorted((analysis_sources() / "src").rglob("*.java"))]
    classpath = str(es_dir / "lib" / "*")
    result = subprocess.run(
        [str(javac), "--release", "17", "-d", str(classes), "-cp", classpath, *sources],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        raise LocalNodeError(f"the analysis plugin did not compile:\n{result.stderr[-3000:]}")


def pack_jar(classes: Path, jar: Path) -> None:
    with zipfile.ZipFile(jar, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
        for path in sorted(classes.rglob("*.class")):
            zf.write(path, path.relative_to(classes).as_posix())


# --- Java -----------------------------------------------------------------


def java_range(ver: str) -> tuple[int, int]:
    """Java majors the Elasticsearch major supports (its support matrix)."""
    major = int(ver.split(".")[0])
    return (21, 25) if major >= 9 else (17, 24)


def java_major(java_home: Path) -> int | None:
    java = java_home / "bin" / "java"
    if not java.is_file():
        return None
    out = subprocess.run([str(java), "-version"], capture_output=True, text=True).stderr
    found = re.search(r'version "(\d+)(?:\.(\d+))?', out)
    if not found:
        return None
    first = int(found.group(1))
    return int(found.group(2) or 0) if first == 1 else first


def java_candidates() -> list[Path]:
    named = [os.environ.get(v) for v in ("ES_JAVA_HOME", "JAVA_HOME")]
    found = [Path(p) for p in named if p]
    for root in ("/usr/lib/jvm", "/usr/java", "/opt/java", "/Library/Java/JavaVirtualMachines"):
        base = Path(root)
        if base.is_dir():
            found.extend(sorted(p for p in base.iterdir() if not p.is_symlink()))
    on_path = shutil.which("java")
    if on_path:
        found.append(Path(on_path).resolve().parents[1])
    return found


def pick_java(ver: str) -> Path:
    low, high = java_range(ver)
    seen = []
    for candidate in java_candidates():
        major = java_major(candidate)
        seen.append(f"{candidate} (Java {major})")
        if major is not None and low <= major <= high:
            return candidate
    raise LocalNodeError(
        f"Elasticsearch {ver} needs Java {low} to {high}; none found among: "
        f"{', '.join(seen) or 'nothing'}. Install one (apt-get install openjdk-17-jdk-headless) "
        "or set ES_JAVA_HOME."
    )


# --- the unprivileged user --------------------------------------------------


def service_user() -> pwd.struct_passwd | None:
    """None when not root; otherwise the system user the node runs as (created once)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(SERVICE_USER)
    except KeyError:
        subprocess.run(
            [
                "useradd",
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                SERVICE_USER,
            ],
            check=True,
        )
        return pwd.getpwnam(SERVICE_USER)


def open_path_for(user: pwd.struct_passwd, path: Path) -> None:
    """Let the service user traverse every parent of `path` (o+x), nothing more."""
    for parent in reversed(path.resolve().parents):
        mode = parent.stat().st_mode
        if not mode & 0o001:
            parent.chmod(mode | 0o001)


def chown_tree(path: Path, user: pwd.struct_passwd) -> None:
    """Hand the node's files to the service user; the password file stays the caller's."""
    keep = password_file().resolve()
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            entry = os.path.join(root, name)
            if Path(entry).resolve() != keep:
                os.lchown(entry, user.pw_uid, user.pw_gid)
    os.chown(path, user.pw_uid, user.pw_gid)


# --- configuration ----------------------------------------------------------


def free_port(preferred: int) -> int:
    for port in [preferred, 0]:
        with socket.socket() as s:
            # As Elasticsearch itself binds: connections of a stopped node that linger in
            # TIME_WAIT must not make its own port look taken.
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise LocalNodeError("no free TCP port on 127.0.0.1")


def write_config(es_dir: Path, http_port: int) -> None:
    data, logs = home() / "data", home() / "logs"
    data.mkdir(parents=True, exist_ok=True)
    logs.mkdir(parents=True, exist_ok=True)
    settings = {
        "cluster.name": "nis2triage-dev",
        "node.name": "nis2triage-local",
        "network.host": "127.0.0.1",
        "http.port": http_port,
        # A range: the node binds the first free port itself, so no other process can
        # take a port between our choosing it and the node binding it.
        "transport.port": "9300-9499",
        "discovery.type": "single-node",
        "path.data": str(data),
        "path.logs": str(logs),
        "xpack.security.enabled": True,
        # Plain HTTP on loopback unless TLS files are given: this node is for development
        # and tests only.
        "xpack.security.http.ssl.enabled": False,
        "xpack.security.transport.ssl.enabled": False,
        "action.destructive_requires_name": False,
    }
    settings.update(tls_settings(es_dir))
    lines = [f"{k}: {json.dumps(v)}" for k, v in settings.items()]
    (es_dir / "config" / "elasticsearch.yml").write_text("\n".join(lines) + "\n")
    heap = os.environ.get("NIS2TRIAGE_ES_HEAP", DEFAULT_HEAP)
    (es_dir / "config" / "jvm.options.d").mkdir(exist_ok=True)
    (es_dir / "config" / "jvm.options.d" / "heap.options").write_text(f"-Xms{heap}\n-Xmx{heap}\n")


def tls_files() -> tuple[Path, Path, Path] | None:
    """Certificate, key and CA (PEM) from NIS2TRIAGE_ES_TLS_{CERT,KEY,CA}, or None for HTTP."""
    names = ("NIS2TRIAGE_ES_TLS_CERT", "NIS2TRIAGE_ES_TLS_KEY", "NIS2TRIAGE_ES_TLS_CA")
    values = [os.environ.get(n) for n in names]
    if not any(values):
        return None
    if not all(values):
        raise LocalNodeError(f"TLS needs all of {', '.join(names)}")
    cert, key, ca = (Path(v) for v in values if v)
    return cert, key, ca


def tls_settings(es_dir: Path) -> dict[str, object]:
    files = tls_files()
    if files is None:
        return {}
    # Elasticsearch reads key material only from inside its config folder.
    certs = es_dir / "config" / "certs"
    certs.mkdir(exist_ok=True)
    for source, name in zip(files, ("node.crt", "node.key", "ca.crt"), strict=True):
        shutil.copyfile(source, certs / name)
    return {
        "xpack.security.http.ssl.enabled": True,
        "xpack.security.http.ssl.certificate": "certs/node.crt",
        "xpack.security.http.ssl.key": "certs/node.key",
        "xpack.security.http.ssl.certificate_authorities": ["certs/ca.crt"],
    }


def ssl_context() -> ssl.SSLContext | None:
    files = tls_files()
    return ssl.create_default_context(cafile=str(files[2])) if files else None


# --- the running node -------------------------------------------------------


def read_state() -> dict[str, object] | None:
    try:
        return dict(json.loads(state_file().read_text()))
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def request(url: str, password: str, path: str, timeout: float = 5.0) -> dict[str, object]:
    token = base64.b64encode(f"elastic:{password}".encode()).decode()
    req = urllib.request.Request(url + path, headers={"Authorization": f"Basic {token}"})
    with urllib.request.urlopen(req, timeout=timeout, context=ssl_context()) as resp:
        return dict(json.loads(resp.read()))


# How long a healthy node is given to bring its security index up (see `security_ready`).
SECURITY_WAIT_S = 20.0


def security_ready(url: str, password: str) -> bool:
    """Whether the security index answers. A fresh node creates it just after it starts,
    and while its shard starts the elastic user cannot log in (401 from the very next
    request, `make demo`'s first run on a new checkout)."""
    return _yellow(url, password, "/_cluster/health/.security")


def healthy(url: str, password: str) -> bool:
    return _yellow(url, password, "/_cluster/health")


def _yellow(url: str, password: str, health: str) -> bool:
    """Whether the health API at `health` says yellow or green within a second."""
    try:
        said = request(url, password, f"{health}?wait_for_status=yellow&timeout=1s")
    except (urllib.error.URLError, OSError, ValueError):
        return False
    return said.get("status") in ("green", "yellow")


def running() -> NodeInfo | None:
    state = read_state()
    if not state or not password_file().is_file():
        return None
    pid, url = int(str(state["pid"])), str(state["url"])
    if not pid_alive(pid):
        return None
    return NodeInfo(url=url, user="elastic", password=password_file().read_text().strip(), pid=pid)


def bound_to(console: Path, offset: int, port: int) -> bool:
    """Whether the node launched when `console` held `offset` bytes says it serves HTTP on
    127.0.0.1:`port`."""
    try:
        with open(console, "rb") as log:
            log.seek(offset)
            said = log.read().decode(errors="replace")
    except OSError:
        return False
    return f"bound_addresses {{127.0.0.1:{port}}}" in said


def log_tail(lines: int = 40) -> str:
    """The node's last words, without Java stack frames, so the cause shows."""
    chunks = []
    for path in (home() / "logs" / "console.log", home() / "logs" / "nis2triage-dev.log"):
        if path.is_file():
            text = path.read_text(errors="replace").splitlines()
            said = [line for line in text if line and not line.startswith(("\t", " ", "at "))]
            chunks.append(f"--- {path}\n" + "\n".join(said[-lines:]))
    return "\n".join(chunks) or "(the node wrote no log)"


def start() -> NodeInfo:
    """Start the node, or return the one already running from this home."""
    current = running()
    if current and healthy(current.url, current.password):
        return current
    ver = version()
    es_dir = unpack(ver)
    java_home = pick_java(ver)
    install_analysis_plugin(es_dir, java_home, ver)
    user = service_user()
    # The port it had last time when free, so a restarted node keeps its address.
    port = free_port(last_port() or 9200)
    write_config(es_dir, port)

    env = dict(os.environ, ES_JAVA_HOME=str(java_home), ES_PATH_CONF=str(es_dir / "config"))
    env.pop("JAVA_HOME", None)
    if user is not None:
        # Elasticsearch refuses to run as root; everything under home() is handed to the
        # service user, then the password file is taken back for the caller alone.
        open_path_for(user, home())
        chown_tree(home(), user)
        env["HOME"] = "/tmp"
    password = ensure_password_as(es_dir, java_home, env, user)
    return launch_on_a_free_port(es_dir, env, user, password, port)


def launch_on_a_free_port(
    es_dir: Path, env: dict[str, str], user: pwd.struct_passwd | None, password: str, port: int
) -> NodeInfo:
    """`launch`, on another free port when another process takes `port` first (a second
    checkout's node, say): the transport port is a range for this reason, but the HTTP
    address must be known."""
    for _ in range(PORT_ATTEMPTS - 1):
        try:
            return launch(es_dir, env, user, password, port)
        except PortTaken:
            port = free_port(0)
            print(f"port taken by another process as the node started; trying {port}", flush=True)
            write_config(es_dir, port)
    return launch(es_dir, env, user, password, port)


# How many HTTP ports a start tries, each chosen free, before it gives up.
PORT_ATTEMPTS = 3


def ensure_password_as(
    es_dir: Path, java_home: Path, env: dict[str, str], user: pwd.struct_passwd | None
) -> str:
    pw_file = password_file()
    if pw_file.is_file():
        return pw_file.read_text().strip()
    password = secrets.token_urlsafe(18)
    keystore = str(es_dir / "bin" / "elasticsearch-keystore")
    uid, gid = (user.pw_uid, user.pw_gid) if user else (None, None)
    if not (es_dir / "config" / "elasticsearch.keystore").exists():
        subprocess.run(
            [keystore, "create"], env=env, check=True, capture_output=True, user=uid, group=gid
        )
    subprocess.run(
        [keystore, "add", "-x", "-f", "bootstrap.password"],
        input=password,
        text=True,
        env=env,
        check=True,
        capture_output=True,
        user=uid,
        group=gid,
    )
    fd = os.open(pw_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    return password


def launch(
    es_dir: Path, env: dict[str, str], user: pwd.struct_passwd | None, password: str, port: int
) -> NodeInfo:
    console = home() / "logs" / "console.log"
    uid, gid = (user.pw_uid, user.pw_gid) if user else (None, None)
    offset = console.stat().st_size if console.is_file() else 0
    with open(console, "ab") as out:
        proc = subprocess.Popen(
            [str(es_dir / "bin" / "elasticsearch")],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            user=uid,
            group=gid,
            extra_groups=[] if user else None,
        )
    _children[proc.pid] = proc
    (home() / "last-port").write_text(str(port))
    url = f"{'https' if tls_files() else 'http'}://127.0.0.1:{port}"
    state_file().write_text(json.dumps({"pid": proc.pid, "url": url, "version": version()}))
    started = time.monotonic()
    healthy_since: float | None = None
    while time.monotonic() - started < START_TIMEOUT_S:
        if proc.poll() is not None:
            said = log_tail()
            error = PortTaken if f"Failed to bind to 127.0.0.1:{port}" in said else LocalNodeError
            raise error(f"Elasticsearch exited with code {proc.returncode}\n{said}")
        # The password goes only to this node: until it says it holds the port, another
        # process (a second checkout's node) may answer there.
        if bound_to(console, offset, port) and healthy(url, password):
            healthy_since = healthy_since or time.monotonic()
            waited = time.monotonic() - healthy_since
            if security_ready(url, password) or waited > SECURITY_WAIT_S:
                return NodeInfo(url=url, user="elastic", password=password, pid=proc.pid)
        time.sleep(1)
    stop()
    raise LocalNodeError(
        f"Elasticsearch did not become healthy within {START_TIMEOUT_S:.0f} s\n{log_tail()}"
    )


def stop(timeout: float = 60.0) -> bool:
    """Stop the node started from this home; True when one was running."""
    state = read_state()
    if not state:
        return False
    pid = int(str(state["pid"]))
    if not pid_alive(pid):
        state_file().unlink(missing_ok=True)
        return False
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.5)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
    if pid_alive(pid):
        os.killpg(pid, signal.SIGKILL)
    child = _children.pop(pid, None)
    if child is not None:
        child.wait(timeout=10)
    state_file().unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="es-local", description=__doc__)
    parser.add_argument(
        "command", choices=["start", "stop", "status", "url", "password-file", "env"]
    )
    args = parser.parse_args(argv)
    try:
        return run_command(args.command)
    except LocalNodeError as exc:
        print(f"es-local: {exc}", file=sys.stderr)
        return 1


def run_command(command: str) -> int:
    if command == "start":
        t0 = time.monotonic()
        node = start()
        took = time.monotonic() - t0
        print(f"Elasticsearch {version()} ready at {node.url} (pid {node.pid}, {took:.1f} s)")
        return 0
    if command == "stop":
        print("stopped" if stop() else "no node was running")
        return 0
    current = running()
    if command == "status":
        print(f"running at {current.url} (pid {current.pid})" if current else "not running")
        return 0 if current else 3
    if current is None:
        print(
            "es-local: no node is running; start one with 'deploy/es-local start'", file=sys.stderr
        )
        return 3
    if command == "url":
        print(current.url)
    elif command == "password-file":
        print(password_file())
    else:
        print(
            f"NIS2TRIAGE_ES_URL={current.url}\nNIS2TRIAGE_ES_USER=elastic\n"
            f"NIS2TRIAGE_ES_PASSWORD_FILE={password_file()}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
