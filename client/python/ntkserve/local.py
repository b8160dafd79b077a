"""A private ntk-server on a free loopback port, for notebooks and tests: no set-up needed."""
import atexit
import os
import re
import shutil
import subprocess
import tempfile
import threading


def find_server_binary():
    """NTK_SERVER_BINARY, then ntk-server on PATH, then build/bin/ntk-server of a source checkout."""
    explicit = os.environ.get("NTK_SERVER_BINARY")
    if explicit:
        return explicit
    on_path = shutil.which("ntk-server")
    if on_path:
        return on_path
    # A source checkout: the package's own tree (editable installs), then the working directory and its parents.
    starts = [os.path.dirname(os.path.abspath(__file__)), os.getcwd()]
    for start in starts:
        path = start
        for _ in range(6):
            candidate = os.path.join(path, "build", "bin", "ntk-server")
            if os.access(candidate, os.X_OK):
                return candidate
            path = os.path.dirname(path)
    raise FileNotFoundError("ntk-server not found: build it (scripts/setup.sh), put it on PATH or set NTK_SERVER_BINARY")


class LocalServer:
    """Starts `ntk-server --listen 127.0.0.1:0` with a temporary data directory; stops it on close()
    or at interpreter exit."""

    def __init__(self, binary=None, data_dir=None, args=(), log_level="warning"):
        self.binary = binary or find_server_binary()
        self._tmp = None if data_dir else tempfile.TemporaryDirectory(prefix="ntkserve-")
        self.data_dir = data_dir or self._tmp.name
        env = dict(os.environ)
        env.setdefault("NTK_LOG_LEVEL", log_level)
        self.process = subprocess.Popen(
            [self.binary, "--listen", "127.0.0.1:0", "--data-dir", self.data_dir, "--metrics", "off",
             "--log-level", log_level, *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        line = self.process.stdout.readline()
        match = re.search(r"listening on port (\d+)", line)
        if not match:
            err = self.process.stderr.read()
            self.process.wait()
            raise RuntimeError(f"ntk-server did not start: {err.strip()}")
        self.port = int(match.group(1))
        self.address = f"127.0.0.1:{self.port}"
        # Drain its output so that it never blocks on a full pipe.
        for stream in (self.process.stdout, self.process.stderr):
            threading.Thread(target=lambda s=stream: [None for _ in s], daemon=True).start()
        atexit.register(self.close)

    def close(self):
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
