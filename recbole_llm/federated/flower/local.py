"""Run a Flower federation on 127.0.0.1: one SuperLink, N SuperNodes, ``flwr run``.

Used by ``fed_engine: flower`` and the CI test.  Every process is started in its
own session and its process group is killed on exit, whatever happens.  Offline
by construction: ``--disable-runtime-dependency-installation`` (no ``uv sync``),
telemetry and update checks off, ``FLWR_HOME`` in a private directory.
"""
import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

from recbole_llm.federated.flower import require_flwr

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# The Flower app is an entry point on top of the package (recbole_llm.apps.flower); the
# transport only hands its directory to `flwr run` and never imports it.
APP_PACKAGE = "recbole_llm.apps.flower"


def app_dir():
    """The directory that ``flwr run`` copies: ``app/`` of :data:`APP_PACKAGE`."""
    spec = importlib.util.find_spec(APP_PACKAGE)
    return os.path.join(list(spec.submodule_search_locations)[0], "app")


def _wait_port(port, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"SuperLink did not open 127.0.0.1:{port} in {timeout:.0f}s")


def _kill(proc):
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def run_status(env, bindir):
    """Status strings of the federation's runs (``flwr ls ci --format json``)."""
    out = subprocess.run([os.path.join(bindir, "flwr"), "ls", "ci", "--format", "json"], env=env,
                         capture_output=True, text=True, timeout=60)
    try:
        runs = json.loads(out.stdout).get("runs", [])
    except json.JSONDecodeError:
        return [out.stdout.strip()]
    return [r.get("status", "") for r in runs]


def run_local_federation(job, num_nodes=2, workdir=None, timeout=600, port=8000, node_port=9094):
    """Train ``job`` (see :mod:`recbole_llm.apps.flower.apps`) on a loopback federation; returns the saved result dict.

    The result holds ``params`` (the final global parameters) and ``rounds``.
    ``started`` in the returned dict lists the pids of every process started here.
    """
    require_flwr()
    import torch

    workdir = workdir or tempfile.mkdtemp(prefix="recbole_llm_flower_")
    home = os.path.join(workdir, "flwr_home")
    os.makedirs(home, exist_ok=True)
    with open(os.path.join(home, "config.toml"), "w") as f:
        f.write(f'[superlink]\ndefault="ci"\n[superlink.ci]\naddress="127.0.0.1:{port}"\ninsecure=true\n')
    bindir = os.path.dirname(sys.executable)
    env = dict(os.environ, FLWR_HOME=home, FLWR_TELEMETRY_ENABLED="0", FLWR_DISABLE_UPDATE_CHECK="1",
               PATH=bindir + os.pathsep + os.environ.get("PATH", ""),
               PYTHONPATH=REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    job = dict(job, num_nodes=num_nodes, output=os.path.join(workdir, "result.pt"))
    job_path = os.path.join(workdir, "job.json")
    with open(job_path, "w") as f:
        json.dump(job, f)
    procs = []

    def start(args, name):
        log = open(os.path.join(workdir, name + ".log"), "w")
        procs.append(subprocess.Popen([os.path.join(bindir, args[0])] + args[1:], env=env, cwd=workdir,
                                      stdout=log, stderr=subprocess.STDOUT, start_new_session=True))

    try:
        start(["flower-superlink", "--insecure", "--disable-runtime-dependency-installation",
               "--host", "127.0.0.1", "--port", str(port)], "superlink")
        _wait_port(port)
        for k in range(num_nodes):
            start(["flower-supernode", "--insecure", "--superlink", f"127.0.0.1:{port}",
                   "--port", str(node_port + k), "--node-config",
                   f"partition-id={k} num-partitions={num_nodes}"], f"supernode{k}")
        run = subprocess.run([os.path.join(bindir, "flwr"), "run", app_dir(), "ci", "--stream",
                              "--run-config", f'job="{job_path}"'], env=env, cwd=workdir,
                             capture_output=True, text=True, timeout=timeout)
        status = run_status(env, bindir)  # `flwr run --stream` exits 0 even when the run failed
        if not status or not all(s.startswith("finished:completed") for s in status) \
                or not os.path.isfile(job["output"]):
            raise RuntimeError(f"Flower run did not complete (status {status}); logs in {workdir}\n"
                               f"{run.stdout[-3000:]}\n{run.stderr[-2000:]}")
        result = torch.load(job["output"], weights_only=True)
    finally:
        for proc in reversed(procs):
            _kill(proc)
    result["started"] = [p.pid for p in procs]
    result["workdir"] = workdir
    return result
