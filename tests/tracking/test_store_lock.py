"""Two processes creating the same new SQLite MLflow store at once: both succeed (the
tables are created under a file lock), and each can create its run."""

import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

CHILD = """
import sys, time
from pathlib import Path
from medmae.tracking.store import client_for, experiment_id
uri, go = sys.argv[1], Path(sys.argv[2])
print("ready", flush=True)
while not go.exists():
    time.sleep(0.01)
client = client_for(uri)
run = client.create_run(experiment_id(client, uri, "race-" + sys.argv[3]))
print("run", run.info.run_id, flush=True)
"""


def test_two_processes_create_one_new_store_at_once(tmp_path):
    from mlflow.tracking import MlflowClient

    uri, go = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}", tmp_path / "go"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen([sys.executable, "-c", CHILD, uri, str(go), str(i)], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    try:
        for p in procs:  # both have imported everything: they start creating the store together
            assert p.stdout.readline().strip() == "ready", p.communicate(timeout=60)[1][-3000:]
        go.touch()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0 and out.split()[-2] == "run", err[-3000:]
    client = MlflowClient(uri)
    for i in range(2):
        assert len(client.search_runs([client.get_experiment_by_name(f"race-{i}").experiment_id])) == 1
