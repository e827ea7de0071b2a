#!/usr/bin/env python3
"""The counter and array workloads of `slotstore-bench`, done with Python's
multiprocessing.Value and multiprocessing.Array (standard library only).

usage: python3 Tools/python-compare.py [--quick]

Prints one line per operation, in the format of the C floor and of
slotstore-bench's rows:  op<TAB>medium<TAB>median ns/op<TAB>min<TAB>max
over 7 timed repetitions (5 with --quick) of about 30 ms (6 ms) each, after a
calibration and an untimed warm-up. Informational lines go to stderr.

Every operation takes the object's lock, as multiprocessing documents for a
read-modify-write (`+=` is not atomic) and as a consistent snapshot of an
Array needs: Python has no lock-free counterpart of SlotStore's atomic add or
seqlock read. The SlotStore rows to compare with are, in the same order:
int64 add, 2 processes: int64 add (aggregate), double add, array<double>[64]
snapshot read(into:) / snapshot(), array<double>[64] whole-array store.
"""

import multiprocessing as mp
import os
import statistics
import sys
import time

QUICK = "--quick" in sys.argv[1:]
REPS = 5 if QUICK else 7
TARGET_NS = (6 if QUICK else 30) * 1_000_000
CONTENTION_NS = (25 if QUICK else 120) * 1_000_000
MEDIUM = "shm"  # multiprocessing's shared-memory arenas live in /dev/shm on Linux


def info(message):
    print("# " + message, file=sys.stderr, flush=True)


def emit(op, samples):
    print(f"{op}\t{MEDIUM}\t{statistics.median(samples):.2f}\t{min(samples):.2f}\t{max(samples):.2f}", flush=True)


def measure(op, body):
    """body(n) performs n operations. Calibrate n to ~TARGET_NS, warm up, then time REPS batches."""
    n = 1
    while True:
        start = time.monotonic_ns()
        body(n)
        elapsed = time.monotonic_ns() - start
        if elapsed >= TARGET_NS // 8:
            break
        n *= 8 if elapsed < TARGET_NS // 64 else 2
    n = max(1, int(TARGET_NS / (elapsed / n)))
    body(n)
    samples = []
    for _ in range(REPS):
        start = time.monotonic_ns()
        body(n)
        samples.append((time.monotonic_ns() - start) / n)
    emit(op, samples)
    return statistics.median(samples)


# ---- single process -------------------------------------------------------

def counter_add(counter):
    def body(n):
        lock = counter.get_lock()
        for _ in range(n):
            with lock:
                counter.value += 1
    return body


def double_add(real):
    def body(n):
        lock = real.get_lock()
        for _ in range(n):
            with lock:
                real.value += 1.0
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


# ---- two processes ----------------------------------------------------------

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
    """This process and one child each do n locked increments; the row is the
    time from the start signal to the later end, over both processes' operations.
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
                raise SystemExit(f"python-compare: the contending process exited with {child.exitcode}")
            if repetition >= 0:
                samples.append((max(end, ends[0]) - start) / (2 * n))
    finally:
        if original is not None:
            os.sched_setaffinity(0, original)
    expected = 2 * n * (REPS + 1)
    if counter.value - before != expected:
        raise SystemExit(f"python-compare: lost increments: expected {expected}, found {counter.value - before}")
    emit("python 2 processes: Value('q') += 1 under its lock (aggregate)", samples)


def main():
    info(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {REPS} repetitions of ~{TARGET_NS // 1_000_000} ms"
         + (" (--quick)" if QUICK else ""))
    counter = mp.Value("q", 0)
    real = mp.Value("d", 0.0)
    array = mp.Array("d", 64)
    single = measure("python Value('q') += 1 under its lock", counter_add(counter))
    contended_add(counter, single)
    measure("python Value('d') += 1.0 under its lock", double_add(real))
    measure("python Array('d', 64) snapshot a[:] under its lock", array_snapshot(array))
    measure("python Array('d', 64) whole write a[:] = values under its lock", array_store(array))


if __name__ == "__main__":
    main()
