#!/usr/bin/env python3
"""SlotStore's peer workloads done with Python's multiprocessing (standard library only):
Value and Array for the counter and the fixed-size values, a Manager dict for the map.

usage: python3 Tools/peers/multiprocessing_peers.py [MEDIUM]      (Tools/peers/run runs it)
env: REPS (7), TARGET_MS (30), CONTENTION_MS (120), MAP_KEYS (1000000)

Prints one row per workload, as the C peers do:  workload<TAB>medium<TAB>median ns/op<TAB>min<TAB>max
Calibration as in slotstore-bench: grow a batch to an eighth of TARGET_MS, size it to
TARGET_MS, one untimed warm-up, then REPS timed batches. Informational lines go to stderr.

Every Value and Array operation takes the object's lock, as multiprocessing documents for a
read-modify-write (`+=` is not atomic) and as a consistent copy of an Array needs: Python has
no lock-free counterpart of SlotStore's atomic add or seqlock read. The shared map is a
Manager().dict(), multiprocessing's only dict that other processes see: every get and set is
a round trip to the manager's server process. There is no durable commit: multiprocessing
keeps nothing on disk.
"""

import multiprocessing as mp
import os
import statistics
import sys
import time

REPS = int(os.environ.get("REPS", "7"))
TARGET_NS = int(os.environ.get("TARGET_MS", "30")) * 1_000_000
CONTENTION_NS = int(os.environ.get("CONTENTION_MS", "120")) * 1_000_000
MAP_KEYS = int(os.environ.get("MAP_KEYS", "1000000"))
MEDIUM = sys.argv[1] if len(sys.argv) > 1 else "shm"  # multiprocessing's shared memory lives in /dev/shm on Linux


def info(message):
    print("multiprocessing: " + message, file=sys.stderr, flush=True)


def emit(workload, samples):
    print(f"{workload}\t{MEDIUM}\t{statistics.median(samples):.2f}\t{min(samples):.2f}\t{max(samples):.2f}", flush=True)


def measure(workload, body):
    """body(n) performs n operations."""
    n = 1
    while True:
        start = time.monotonic_ns()
        body(n)
        elapsed = time.monotonic_ns() - start
        if elapsed >= TARGET_NS // 8:
            break
        n *= 8 if elapsed < TARGET_NS // 64 else 2
    n = max(1, int(TARGET_NS / max(elapsed / n, 0.05)))
    body(n)
    samples = []
    for _ in range(REPS):
        start = time.monotonic_ns()
        body(n)
        samples.append((time.monotonic_ns() - start) / n)
    emit(workload, samples)
    return statistics.median(samples)


# ---- keys: the same bytes and orders as Tools/bench-floor/harness.h -------

MASK = (1 << 64) - 1


def splitmix64(x):
    x = (x + 0x9E3779B97F4A7C15) & MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK
    return x ^ (x >> 31)


def key(index):
    return b"key-" + str(splitmix64(index)).zfill(28).encode()


def shuffled_keys(count, seed):
    order = list(range(count))
    state = seed
    for i in range(count - 1, 0, -1):
        state = splitmix64(state)
        other = state % (i + 1)
        order[i], order[other] = order[other], order[i]
    return [key(i) for i in order]


# ---- counter and fixed-size values -----------------------------------------

def counter_add(counter):
    def body(n):
        lock = counter.get_lock()
        for _ in range(n):
            with lock:
                counter.value += 1
    return body


def read_bytes(array):
    """Copy the value out under the lock (Array('c').raw returns a new bytes object)."""
    def body(n):
        lock = array.get_lock()
        total = 0
        for _ in range(n):
            with lock:
                copy = array.raw
            total += copy[63]
        return total
    return body


def write_bytes(array):
    values = [bytes([65 + i]) * 64 for i in range(2)]

    def body(n):
        lock = array.get_lock()
        for i in range(n):
            with lock:
                array.raw = values[i & 1]
    return body


def array_snapshot(array):
    def body(n):
        lock = array.get_lock()
        total = 0.0
        for i in range(n):
            with lock:
                snapshot = array[:]
            total += snapshot[i & 63]
        return total
    return body


def array_store(array):
    def body(n):
        lock = array.get_lock()
        values = [1.0] * 64
        for i in range(n):
            values[0] = float(i)
            with lock:
                array[:] = values
    return body


# ---- two processes -----------------------------------------------------------

def pin(cpu):
    if hasattr(os, "sched_setaffinity") and (os.cpu_count() or 1) >= 2:
        try:
            os.sched_setaffinity(0, {cpu % os.cpu_count()})
        except OSError:
            pass


def contender(counter, ready, go, ends, n):
    pin(1)
    lock = counter.get_lock()
    ready.release()
    go.wait()
    for _ in range(n):
        with lock:
            counter.value += 1
    ends[0] = time.monotonic_ns()


def contended_add(counter, single_ns):
    """This process and one child each do n locked increments; the row is the time from
    the start signal to the later end, over both processes' operations (as slotstore-bench's).
    The processes meet through a semaphore and an event, never a sleep."""
    context = mp.get_context("fork")
    n = max(20_000, int(CONTENTION_NS / (8 * max(single_ns, 1))))
    original = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    pin(0)
    samples = []
    before = counter.value
    try:
        for repetition in range(-1, REPS):
            ready = context.Semaphore(0)
            go = context.Event()
            ends = context.Array("q", 1, lock=False)
            child = context.Process(target=contender, args=(counter, ready, go, ends, n))
            child.start()
            ready.acquire()
            lock = counter.get_lock()
            start = time.monotonic_ns()
            go.set()
            for _ in range(n):
                with lock:
                    counter.value += 1
            end = time.monotonic_ns()
            child.join()
            if child.exitcode != 0:
                raise SystemExit(f"multiprocessing peers: the contending process exited with {child.exitcode}")
            if repetition >= 0:
                samples.append((max(end, ends[0]) - start) / (2 * n))
    finally:
        if original is not None:
            os.sched_setaffinity(0, original)
    expected = 2 * n * (REPS + 1)
    if counter.value - before != expected:
        raise SystemExit(f"multiprocessing peers: lost increments: expected {expected}, found {counter.value - before}")
    emit("counter-add-2proc", samples)


# ---- the map -------------------------------------------------------------------

def map_get(shared, keys):
    cursor = [0]

    def body(n):
        total = 0
        i = cursor[0]
        for _ in range(n):
            total += shared[keys[i]]
            i += 1
            if i == len(keys):
                i = 0
        cursor[0] = i
        return total
    return body


def map_put(shared, keys):
    cursor = [0]

    def body(n):
        i = cursor[0]
        for value in range(n):
            shared[keys[i]] = value
            i += 1
            if i == len(keys):
                i = 0
        cursor[0] = i
    return body


def main():
    info(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {REPS} repetitions of ~{TARGET_NS // 1_000_000} ms")
    counter = mp.Value("q", 0)
    text = mp.Array("c", 64)
    array = mp.Array("d", 64)
    single = measure("counter-add", counter_add(counter))
    measure("read-64", read_bytes(text))
    measure("write-64", write_bytes(text))
    contended_add(counter, single)
    measure("array-512-read", array_snapshot(array))
    measure("array-512-write", array_store(array))

    started = time.monotonic()
    insert_order = shuffled_keys(MAP_KEYS, 1)
    lookup_order = shuffled_keys(MAP_KEYS, 2)
    with mp.Manager() as manager:
        shared = manager.dict()
        chunk = 10_000
        for first in range(0, MAP_KEYS, chunk):
            shared.update({k: first + j for j, k in enumerate(insert_order[first:first + chunk])})
        if len(shared) != MAP_KEYS:
            raise SystemExit(f"multiprocessing peers: the map holds {len(shared)} keys, not {MAP_KEYS}")
        info(f"made and filled a Manager dict of {MAP_KEYS} keys in {time.monotonic() - started:.1f} s")
        measure("map-get", map_get(shared, lookup_order))
        measure("map-put", map_put(shared, lookup_order))


if __name__ == "__main__":
    main()
