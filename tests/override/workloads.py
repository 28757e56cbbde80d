"""Real-program workloads for libarena-malloc, shared by the test
(tests/override/real_programs.py) and the bench (bench/programs/run.py).

Each workload runs one installed program under a given LD_PRELOAD (or
none) and returns a Result: the output that must not depend on the
allocator, the exit status, the wall time, and, when asked to probe, the
peak RSS (VmHWM) and the RSS after the workload's free phase (VmRSS), in
KiB, read from /proc/<pid>/status.

  python3  CPython with PYTHONMALLOC=malloc on py_objects.py: a few hundred
           thousand small dicts and lists built and dropped, a checksum.
           The test does 3 rounds of 200,000; the bench one round of
           600,000 ("python3") and 3 rounds of 300,000 ("python3-rounds",
           bench only: memory given back after a round is faulted in again
           by the next).
  sqlite3  the sqlite3 shell on generated SQL: a table of a few hundred
           thousand rows inserted one statement at a time, two indexes,
           group-by queries, updates and deletes; then DROP TABLE, VACUUM.
  redis    redis-server on 127.0.0.1 (a free port) driven by
           redis-benchmark (SET, GET, LPUSH, LPOP), then a fixed command
           script through redis-cli whose replies are the output; then
           FLUSHALL and `redis-cli shutdown nosave`.
Only the Python standard library is used.
"""
import os
import re
import resource
import select
import shutil
import socket
import subprocess
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


class WorkloadError(Exception):
    """The program failed: exit status, missing output, errors."""


class Result:
    def __init__(self, output, wall, cpu, peak_kib=None, final_kib=None, log=""):
        self.output = output          # must be identical across allocators
        self.wall = wall              # seconds
        self.cpu = cpu                # user + system seconds of the program
        self.peak_kib = peak_kib      # VmHWM at the end
        self.final_kib = final_kib    # VmRSS after the free phase
        self.log = log                # everything else (not compared)


def base_env(preload):
    if preload and not os.path.isabs(preload):
        preload = os.path.abspath(preload)    # the programs run in other directories
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    for k in [k for k in env if k.startswith("ARENA_")]:
        del env[k]
    env["LC_ALL"] = "C"
    if preload:
        env["LD_PRELOAD"] = preload
    return env


def check_preload(text, name):
    """ld.so only warns when LD_PRELOAD names a library it cannot load."""
    if "cannot be preloaded" in text:
        raise WorkloadError("%s: LD_PRELOAD failed:\n%s" % (name, text))


def status_kib(text):
    """VmHWM and VmRSS (KiB) from /proc/<pid>/status text."""
    hwm = re.search(r"VmHWM:\s*(\d+)", text)
    rss = re.search(r"VmRSS:\s*(\d+)", text)
    return (int(hwm.group(1)) if hwm else None, int(rss.group(1)) if rss else None)


def children_cpu():
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def process_cpu(pid):
    """User + system seconds of a running process, from /proc/<pid>/stat."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def read_status(pid):
    with open("/proc/%d/status" % pid) as f:
        return f.read()


def find_python():
    """The distribution's python3 if there is one (a real binary, not a
    version-manager shim), else the first python3 on PATH."""
    for p in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(p, os.X_OK):
            return p
    return shutil.which("python3")


# ---- python3 -----------------------------------------------------------


class Python:
    name = "python3"
    needs_shim = False            # glibc malloc is what python3 uses anyway

    def __init__(self, scale="test"):
        self.rows, self.rounds = (200000, 3) if scale == "test" else (600000, 1)

    def missing(self):
        return [] if find_python() else ["python3"]

    def run(self, preload, workdir, probe=False):
        env = base_env(preload)
        env["PYTHONMALLOC"] = "malloc"
        env["PYTHONHASHSEED"] = "0"
        cmd = [find_python(), os.path.join(HERE, "py_objects.py"), str(self.rows),
               str(self.rounds)]
        if probe:
            cmd.append("--probe")
        c0, t0 = children_cpu(), time.monotonic()
        p = subprocess.run(cmd, env=env, cwd=workdir, capture_output=True, text=True)
        wall, cpu = time.monotonic() - t0, children_cpu() - c0
        check_preload(p.stderr, "python3")
        if p.returncode != 0:
            raise WorkloadError("python3 exited with status %d:\n%s" % (p.returncode, p.stderr))
        peak, final = status_kib(p.stderr) if probe else (None, None)
        return Result(p.stdout, wall, cpu, peak, final, p.stderr)


class PythonRounds(Python):
    name = "python3-rounds"

    def __init__(self, scale="bench"):
        super().__init__(scale)
        self.rows, self.rounds = 300000, 3


# ---- sqlite3 -----------------------------------------------------------


def sqlite_script(rows, probe):
    out = ["PRAGMA cache_size=-65536;",
           "CREATE TABLE t(id INTEGER PRIMARY KEY, grp INTEGER, name TEXT, val REAL, note TEXT);",
           "BEGIN;"]
    for i in range(1, rows + 1):
        out.append("INSERT INTO t VALUES(%d,%d,'name-%d',%d.25,'%s');"
                   % (i, i % 97, i, i % 1000, "n%d" % (i % 13) * (1 + i % 9)))
    out += [
        "COMMIT;",
        "CREATE INDEX t_grp ON t(grp);",
        "CREATE INDEX t_name ON t(name);",
        "SELECT grp, count(*), sum(val), max(length(note)) FROM t GROUP BY grp ORDER BY grp;",
        "SELECT substr(name, 1, 7) AS k, count(*), min(id), max(id) FROM t GROUP BY k ORDER BY k;",
        "SELECT count(*) FROM t WHERE name LIKE 'name-12%';",
        "UPDATE t SET note = upper(note) || grp WHERE id % 3 = 0;",
        "SELECT grp % 10, count(DISTINCT note), group_concat(DISTINCT length(note)) "
        "FROM t GROUP BY 1 ORDER BY 1;",
        "DELETE FROM t WHERE id % 2 = 0;",
        "SELECT count(*), sum(id), total(val) FROM t;",
        "SELECT n, count(*) FROM (SELECT note AS n FROM t WHERE grp < 5) GROUP BY n "
        "ORDER BY count(*) DESC, n LIMIT 20;",
        "DROP TABLE t;",
        "VACUUM;",
        "PRAGMA shrink_memory;",
    ]
    if probe:
        # The shell's child reads its parent's (sqlite3's) status.
        # (sqlite3 passes the words on unquoted: keep them shell-safe.)
        out.append(".system grep -e VmHWM -e VmRSS /proc/$PPID/status")
    return "\n".join(out) + "\n"


class Sqlite:
    name = "sqlite3"
    needs_shim = False

    def __init__(self, scale="test"):
        self.rows = 200000 if scale == "test" else 300000
        self.scripts = {}

    def missing(self):
        return [] if shutil.which("sqlite3") else ["sqlite3"]

    def run(self, preload, workdir, probe=False):
        if probe not in self.scripts:
            self.scripts[probe] = sqlite_script(self.rows, probe)
        env = base_env(preload)
        c0, t0 = children_cpu(), time.monotonic()
        p = subprocess.run(["sqlite3", ":memory:"], input=self.scripts[probe], env=env,
                           cwd=workdir, capture_output=True, text=True)
        wall, cpu = time.monotonic() - t0, children_cpu() - c0
        check_preload(p.stderr, "sqlite3")
        if p.returncode != 0 or p.stderr.strip():
            raise WorkloadError("sqlite3 exited with status %d:\n%s" % (p.returncode, p.stderr))
        out = p.stdout
        peak = final = None
        if probe:
            peak, final = status_kib(out)
            out = "".join(l for l in out.splitlines(True) if not l.startswith("Vm"))
        return Result(out, wall, cpu, peak, final)


# ---- redis -------------------------------------------------------------


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def redis_commands():
    """A fixed command script; its replies are the compared output."""
    c = ["FLUSHALL"]
    for i in range(3000):
        c.append("RPUSH list:%d item-%d" % (i % 40, i))
        c.append("HSET hash:%d field-%d %d" % (i % 50, i, i * i))
        c.append("SET str:%d %s" % (i, "v" * (1 + i % 200)))
        c.append("ZADD zset %d member-%d" % (i % 97, i))
        c.append("INCRBY counter %d" % i)
        c.append("SADD set:%d %d" % (i % 20, i))
        if i % 7 == 0:
            c.append("APPEND str:%d -appended" % (i // 2))
        if i % 11 == 0:
            c.append("LPOP list:%d" % (i % 40))
    c += ["DBSIZE", "GET counter", "ZCARD zset", "ZRANGE zset 0 30 WITHSCORES",
          "ZRANGEBYSCORE zset 90 96 LIMIT 0 10"]
    for k in range(0, 40, 3):
        c += ["LLEN list:%d" % k, "LRANGE list:%d 0 -1" % k]
    for k in range(0, 50, 7):
        c += ["HLEN hash:%d" % k, "HGET hash:%d field-%d" % (k, k + 50)]
    for k in range(0, 3000, 97):
        c += ["STRLEN str:%d" % k, "GET str:%d" % k]
    for k in range(20):
        c.append("SCARD set:%d" % k)
    c += ["DEL zset counter", "DBSIZE", "FLUSHALL", "DBSIZE"]
    return "\n".join(c) + "\n"


class Redis:
    name = "redis"
    needs_shim = True             # Debian's redis-server is linked with jemalloc

    def __init__(self, scale="test"):
        if scale == "test":
            self.requests, self.keyspace, self.datasize = 20000, 100000, 3
        else:
            self.requests, self.keyspace, self.datasize = 200000, 1000000, 100

    def missing(self):
        return [p for p in ("redis-server", "redis-benchmark", "redis-cli") if not shutil.which(p)]

    def start(self, env, workdir):
        """Start redis-server on a free port; returns (process, port, log lines)."""
        for attempt in range(3):
            port = free_port()
            proc = subprocess.Popen(
                ["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                 "--save", "", "--appendonly", "no", "--dir", workdir,
                 "--daemonize", "no", "--logfile", "", "--loglevel", "notice"],
                env=env, cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                bufsize=0)            # unbuffered: select() sees every line
            log = []
            ready = False
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                r, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
                if not r:
                    break
                line = proc.stdout.readline()
                if not line:
                    break                       # the server exited
                log.append(line.decode(errors="replace"))
                if b"Ready to accept connections" in line:
                    ready = True
                    break
            check_preload("".join(log), "redis-server")
            if ready:
                return proc, port, log
            proc.kill()
            proc.wait()
            if not any("Address already in use" in l for l in log):
                raise WorkloadError("redis-server did not start (attempt %d):\n%s"
                                    % (attempt + 1, "".join(log)))
        raise WorkloadError("redis-server found no free port")

    def run(self, preload, workdir, probe=False):
        env = base_env(preload)
        proc, port, log = self.start(env, workdir)
        drain = threading.Thread(target=lambda: log.extend(
            l.decode(errors="replace") for l in proc.stdout), daemon=True)
        drain.start()
        cli = ["redis-cli", "-h", "127.0.0.1", "-p", str(port)]
        clean_env = base_env(None)     # the clients run with the usual malloc
        try:
            t0 = time.monotonic()
            bench = subprocess.run(
                ["redis-benchmark", "-h", "127.0.0.1", "-p", str(port),
                 "-n", str(self.requests), "-r", str(self.keyspace), "-d", str(self.datasize),
                 "-q", "-t", "set,get,lpush,lpop"],
                env=clean_env, capture_output=True, text=True, timeout=600)
            wall = time.monotonic() - t0
            text = bench.stdout.replace("\r", "\n")
            if bench.returncode != 0 or re.search(r"error", text + bench.stderr, re.I):
                raise WorkloadError("redis-benchmark failed (status %d):\n%s%s"
                                    % (bench.returncode, text, bench.stderr))
            for t in ("SET", "GET", "LPUSH", "LPOP"):
                if not re.search(r"^%s: [0-9.]+ requests per second" % t, text, re.M):
                    raise WorkloadError("redis-benchmark: no result for %s:\n%s" % (t, text))
            script = subprocess.run(cli, input=redis_commands(), env=clean_env,
                                    capture_output=True, text=True, timeout=300)
            if script.returncode != 0:
                raise WorkloadError("redis-cli script failed (status %d):\n%s"
                                    % (script.returncode, script.stderr))
            peak = final = None
            if probe:
                # The free phase: FLUSHALL (in the script) dropped every key.
                peak, final = status_kib(read_status(proc.pid))
            cpu = process_cpu(proc.pid)
            down = subprocess.run(cli + ["shutdown", "nosave"], env=clean_env,
                                  capture_output=True, text=True, timeout=60)
            status = proc.wait(timeout=60)
            drain.join(timeout=10)
            if status != 0:
                raise WorkloadError("redis-server exited with status %d:\n%s"
                                    % (status, "".join(log)))
            if down.returncode != 0:
                raise WorkloadError("redis-cli shutdown nosave: status %d: %s"
                                    % (down.returncode, down.stdout + down.stderr))
            if not any("bye bye" in l for l in log):
                raise WorkloadError("redis-server did not shut down cleanly:\n%s" % "".join(log))
            return Result(script.stdout, wall, cpu, peak, final, text + "".join(log))
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


WORKLOADS = {"python3": Python, "python3-rounds": PythonRounds, "sqlite3": Sqlite,
             "redis": Redis}
