"""``redis+cluster://``: the store on a real three-node Redis Cluster started for the module."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from typing import TYPE_CHECKING

import pytest
import redis
from conftest import RedisServer, free_port
from redis.cluster import ClusterNode, RedisCluster

from cascade.cli import main
from cascade.stores import RedisStore, store_from_url
from cascade.stores.counters import day_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from cascade.events import CallRecord

    MakeRecord = Callable[..., CallRecord]


def _node_port() -> int:
    """A free port whose cluster bus port (10,000 above it) is free and valid too."""
    while True:
        port = free_port()
        if port + 10_000 > 65_535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 10_000))
            except OSError:
                continue
        return port


class Cluster:
    """Three primaries, no replicas, each appending every write to its AOF (so that a node
    restarted keeps its data, as a production node does)."""

    def __init__(self, binary: str, root: Path) -> None:
        self.nodes = []
        for i in range(3):
            port = _node_port()
            directory = root / f"node{i}"
            directory.mkdir()
            args = (
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(directory / "nodes.conf"),
                "--cluster-node-timeout", "1000",
                "--appendonly", "yes",
                "--appendfsync", "always",
                "--logfile", str(directory / "redis.log"),
            )  # fmt: skip
            self.nodes.append(RedisServer(binary, port, directory, args=args))

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes[:2])

    def start(self) -> None:
        for n in self.nodes:
            n.start()
        subprocess.run(
            [
                "redis-cli", "--cluster", "create",
                *(f"127.0.0.1:{n.port}" for n in self.nodes),
                "--cluster-replicas", "0", "--cluster-yes",
            ],
            check=True,
            capture_output=True,
        )  # fmt: skip
        self.wait_ok()

    def wait_ok(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            states = []
            for n in self.nodes:
                c = redis.Redis(port=n.port)
                try:
                    states.append(c.cluster("info")["cluster_state"])
                except redis.RedisError:
                    states.append("down")
                finally:
                    c.close()
            if states == ["ok"] * 3:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(f"the cluster did not become ok: {states}")
            time.sleep(0.1)

    def client(self) -> RedisCluster:
        return RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", n.port) for n in self.nodes])

    def stop(self) -> None:
        for n in self.nodes:
            n.kill()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    binary = shutil.which("redis-server")
    if binary is None or shutil.which("redis-cli") is None:
        pytest.skip("redis-server and redis-cli are not installed")
    c = Cluster(binary, tmp_path_factory.mktemp("cluster"))
    c.start()
    yield c
    c.stop()


@pytest.fixture
def prefix(cluster: Cluster, request: pytest.FixtureRequest) -> str:
    return request.node.name.replace("[", "-").replace("]", "")


TASKS = [f"task{i}" for i in range(12)]


def test_records_spread_over_the_nodes_and_the_report_reads_them_all(
    cluster: Cluster,
    prefix: str,
    tmp_path: Path,
    make_record: MakeRecord,
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"{cluster.url}?prefix={prefix}&spool={tmp_path}"
    store = store_from_url(url)
    assert isinstance(store, RedisStore)
    records = [make_record(task=TASKS[i % len(TASKS)], sampled=i % 2 == 0) for i in range(240)]
    for r in records:
        store.add(r)
    store.flush()
    assert store.tasks() == sorted(TASKS)
    assert sorted(r.id for r in store.records()) == sorted(r.id for r in records if r.sampled)
    assert sum(d.calls for d in store.days()) == 240
    assert [d.calls for d in store.days(task="task3")] == [20]
    client = cluster.client()
    # Each task's keys share a slot (one script per record), and the tasks spread the nodes.
    slots = {client.keyslot(store.keys.records(t)) for t in TASKS}
    assert len(slots) == len(TASKS)
    for t in TASKS:
        day = store.keys.day(t, day_of(records[0].time))
        assert client.keyslot(day) == client.keyslot(store.keys.records(t))
    owners = {client.get_node_from_key(store.keys.records(t)).port for t in TASKS}
    assert len(owners) > 1
    client.close()
    store.close()

    assert main(["report", "--store", url, "--format", "json", "--since", "2d"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["overall"]["calls"] == 240


def test_a_node_restart_loses_nothing(
    cluster: Cluster, prefix: str, tmp_path: Path, make_record: MakeRecord
) -> None:
    url = f"{cluster.url}?prefix={prefix}&spool={tmp_path}"
    store = RedisStore(url, batch_size=20)
    records = [make_record(task=TASKS[i % len(TASKS)]) for i in range(300)]
    for r in records[:100]:
        store.add(r)
    store.flush()
    node = cluster.nodes[2]
    node.kill()  # its AOF has every write it acknowledged
    for r in records[100:200]:  # some of these belong to the node that is down
        store.add(r)
    store.flush(timeout=30)
    node.start()
    cluster.wait_ok()
    for r in records[200:]:
        store.add(r)
    store.flush(timeout=30)
    deadline = time.monotonic() + 30
    while sum(d.calls for d in store.days()) < 300 and time.monotonic() < deadline:
        time.sleep(0.2)
        store.flush(timeout=30)
    assert sum(d.calls for d in store.days()) == 300
    assert sorted(r.id for r in store.records()) == sorted(r.id for r in records)
    assert not list(tmp_path.rglob("*.jsonl"))
    store.close()


def test_cluster_urls_are_checked_before_any_connection(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invalid node 'nohost'"):
        RedisStore("redis+cluster://nohost", spool=tmp_path)
    with pytest.raises(ValueError, match="no databases"):
        RedisStore("redis+cluster://h:1/3", spool=tmp_path)
    with pytest.raises(ValueError, match=r"unknown parameters \['colour'\]"):
        RedisStore("redis+cluster://h:1?colour=red", spool=tmp_path)
    store = RedisStore(f"redis+cluster://:pw@127.0.0.1:{free_port()}", spool=tmp_path)
    assert store.url.startswith("redis+cluster://:***@")
    store.close()
