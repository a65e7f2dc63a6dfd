import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from imagerec.training import distribute
from imagerec.errors import UserError

WORKER = Path(__file__).with_name("multiworker_worker.py")


def test_default_and_auto_strategies_on_a_cpu_machine_use_one_device(monkeypatch):
    monkeypatch.delenv("TF_CONFIG", raising=False)
    for name in ("default", "auto"):
        strategy = distribute.make_strategy(name)
        assert strategy.num_replicas_in_sync == 1 and distribute.is_chief(strategy)


@pytest.mark.parametrize("tf_config, match", [
    (None, "TF_CONFIG"),
    ("not json", "TF_CONFIG must be JSON"),
    ('{"cluster": {"worker": []}, "task": {"type": "worker", "index": 0}}', "TF_CONFIG must be JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}, "task": {"type": "ps", "index": 0}}', "TF_CONFIG must be JSON"),
])
def test_multiworker_needs_a_valid_tf_config(monkeypatch, tf_config, match):
    if tf_config is None:
        monkeypatch.delenv("TF_CONFIG", raising=False)
    else:
        monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(UserError, match=match):
        distribute.make_strategy("multiworker")


def test_unknown_strategy_is_a_user_error():
    with pytest.raises(UserError, match="unknown strategy 'turbo'"):
        distribute.make_strategy("turbo")


def test_global_batch_must_split_evenly_over_replicas():
    class ThreeReplicas:
        num_replicas_in_sync = 3

    assert distribute.per_replica_batch(ThreeReplicas(), 96) == 32
    with pytest.raises(UserError, match="multiple of the 3 replicas"):
        distribute.per_replica_batch(ThreeReplicas(), 64)


def _free_ports(count: int) -> list:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def test_two_local_workers_train_to_identical_weights_and_only_the_chief_writes(image_folder, tmp_path):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    outs = [tmp_path / f"out{index}" for index in range(2)]
    workers = []
    try:
        for index in range(2):
            env = {**os.environ, "CUDA_VISIBLE_DEVICES": "",
                   "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})}
            workers.append(subprocess.Popen([sys.executable, str(WORKER), str(image_folder), str(outs[index])],
                                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        results = [worker.communicate(timeout=300) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    for worker, (stdout, stderr) in zip(workers, results):
        assert worker.returncode == 0, stderr[-3000:]
    reports = [re.search(r"replicas=(\d+) chief=(\w+) weights=(\w+)", stdout) for stdout, _ in results]
    assert all(reports), [stdout for stdout, _ in results]
    assert [report.group(1) for report in reports] == ["2", "2"]
    assert [report.group(2) for report in reports] == ["True", "False"]
    assert reports[0].group(3) == reports[1].group(3)  # the same weights on both workers
    assert (outs[0] / "model.keras").is_file() and (outs[0] / "metrics.json").is_file()
    assert not outs[1].exists()  # the non-chief wrote nothing where it was pointed
    history = json.loads((outs[0] / "history.json").read_text())
    assert [record["epoch"] for record in history["epochs"]] == [1, 2]
