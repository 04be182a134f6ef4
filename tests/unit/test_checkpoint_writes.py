"""How a checkpoint's messages become writes: across partitions, bounded by `max_write_mb`."""

from __future__ import annotations

from types import SimpleNamespace

from quixstreams.sinks import SinkBatch

from tidegate.config import PipelineConfig

from tidegate.pipeline import CheckpointBatch, GovernedSink


def batches(sizes: dict[int, list[int]]) -> list[SinkBatch]:
    """One SinkBatch per partition; each message's value is `size` bytes naming its place."""
    out = []
    offset = 0
    for partition, values in sizes.items():
        b = SinkBatch(topic="raw", partition=partition)
        for i, size in enumerate(values):
            b.append(value=f"{partition}.{i}".encode().ljust(size, b" "), key=None, timestamp=0, headers=None, offset=offset)
            offset += 1
        out.append(b)
    return out


def names(write: CheckpointBatch) -> list[str]:
    return [item.value.decode().strip() for item in write]


def test_one_write_spans_every_partition_when_it_fits() -> None:
    [write] = CheckpointBatch.split(batches({0: [10, 10], 1: [10], 3: [10]}), max_bytes=1_000)
    assert names(write) == ["0.0", "0.1", "1.0", "3.0"]
    assert write.partition == "raw[0],raw[1],raw[3]" and write.size == 4


def test_writes_are_cut_at_max_bytes_in_partition_order() -> None:
    writes = CheckpointBatch.split(batches({0: [40, 40, 40], 1: [40, 40]}), max_bytes=100)
    assert [names(w) for w in writes] == [["0.0", "0.1"], ["0.2", "1.0"], ["1.1"]]
    assert [w.partition for w in writes] == ["raw[0]", "raw[0],raw[1]", "raw[1]"]


def test_a_message_bigger_than_the_bound_is_a_write_of_its_own() -> None:
    writes = CheckpointBatch.split(batches({0: [10, 500, 10]}), max_bytes=100)
    assert [names(w) for w in writes] == [["0.0"], ["0.1"], ["0.2"]]


def test_nothing_gathered_means_no_write() -> None:
    assert CheckpointBatch.split([], max_bytes=100) == []


def test_flush_hands_the_checkpoints_writes_to_write_at_once_and_drops_the_batches() -> None:
    sink = GovernedSink.__new__(GovernedSink)  # only flush's own parts: the batches and the bound
    sink.cfg = SimpleNamespace(pipeline=PipelineConfig(max_write_mb=0.00002))  # 20.97 bytes
    sink._batches = {}
    seen: list[list[list[str]]] = []
    sink.write = lambda writes: seen.append([names(w) for w in writes])  # type: ignore[method-assign]
    for b in batches({0: [10, 10], 2: [10]}):
        for item in b:
            sink.add(item.value, item.key, item.timestamp, item.headers, "raw", b.partition, item.offset)
    sink.flush()
    assert seen == [[["0.0", "0.1"], ["2.0"]]]  # one call per checkpoint: config reloads apply between checkpoints
    assert sink._batches == {}


def test_the_bound_counts_the_message_not_the_admission_tuple() -> None:
    """After the admission step a value is (message, duplicate flags, lateness)."""
    b = SinkBatch(topic="raw", partition=0)
    for i in range(3):
        b.append(value=(b"x" * 60, b"", b""), key=None, timestamp=0, headers=None, offset=i)
    assert [w.size for w in CheckpointBatch.split([b], max_bytes=100)] == [1, 1, 1]
