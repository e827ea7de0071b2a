/* The timing harness, key generator and row printer shared by the C floor
 * (Tools/bench-floor/floor.c) and the LMDB and SQLite peers (Tools/peers/).
 *
 * Every program that includes it times its rows the way slotstore-bench times
 * SlotStore's (Tools/slotstore-bench/Harness.swift): grow a batch until it
 * takes an eighth of the target, size it to the target, run one untimed
 * warm-up batch, then time REPS batches. Same calibration, same statistics,
 * so a ratio between the two compares the work, not the harnesses.
 *
 * Output, one line per row on stdout (parsed by slotstore-bench --floor and
 * by Tools/peers/run):   op<TAB>medium<TAB>median ns/op<TAB>min<TAB>max
 * Anything else goes to stderr.
 *
 * Settings come from the environment so that slotstore-bench can pass its own:
 *   REPS       timed repetitions per row            (default 7)
 *   TARGET_MS  length of one repetition, in ms      (default 30)
 */
#ifndef SLOTSTORE_BENCH_HARNESS_H
#define SLOTSTORE_BENCH_HARNESS_H

#define _GNU_SOURCE
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Keys are 32 bytes everywhere: SlotStore's benchmark map has string[32] keys. */
enum { BENCH_KEY_BYTES = 32 };

/* Benchmarked results are added here so the compiler can't drop the work. */
static volatile uint64_t bench_sink;

static void bench_fail(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    fputs("bench: ", stderr);
    vfprintf(stderr, format, arguments);
    fputc('\n', stderr);
    va_end(arguments);
    exit(1);
}

/* A failed call, with errno's text: the bench has nothing sensible to carry on with. */
__attribute__((unused)) static void bench_fail_errno(const char *what) { bench_fail("%s: %s", what, strerror(errno)); }

static inline uint64_t bench_now(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
}

static long bench_env(const char *name, long fallback) {
    const char *text = getenv(name);
    if (text == NULL || *text == 0) return fallback;
    char *end;
    long value = strtol(text, &end, 10);
    if (*end != 0 || value <= 0) bench_fail("%s=%s: expected a positive whole number", name, text);
    return value;
}

static int bench_repetitions(void) { return (int)bench_env("REPS", 7); }
static uint64_t bench_target_ns(void) { return (uint64_t)bench_env("TARGET_MS", 30) * 1000000u; }

/* ---- keys: the same bytes and order as Tools/slotstore-bench/MapBenchmarks.swift ---- */

static inline uint64_t bench_splitmix64(uint64_t x) {
    x += 0x9E3779B97F4A7C15u;
    x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9u;
    x = (x ^ (x >> 27)) * 0x94D049BB133111EBu;
    return x ^ (x >> 31);
}

/* Key i: "key-" then 28 decimal digits of splitmix64(i), zero-padded. splitmix64
 * is a bijection, so distinct i give distinct keys. */
static void bench_key(uint64_t index, char out[BENCH_KEY_BYTES]) {
    memcpy(out, "key-", 4);
    uint64_t value = bench_splitmix64(index);
    for (int position = BENCH_KEY_BYTES - 1; position >= 4; position--) {
        out[position] = (char)('0' + value % 10);
        value /= 10;
    }
}

/* The keys 0..<count in a seeded Fisher-Yates order, packed 32 bytes apart.
 * Walking the array in order reads key bytes sequentially (cheap, prefetched)
 * while the store sees random keys: the cost measured is the store's. Seed 1
 * is the insertion order, seed 2 the lookup order, as in slotstore-bench. */
static char *bench_shuffled_keys(uint64_t count, uint64_t seed) {
    uint32_t *order = malloc(count * sizeof *order);
    char *keys = malloc(count * BENCH_KEY_BYTES);
    if (order == NULL || keys == NULL) bench_fail("out of memory for %llu keys", (unsigned long long)count);
    for (uint64_t i = 0; i < count; i++) order[i] = (uint32_t)i;
    uint64_t state = seed;
    for (uint64_t i = count - 1; i > 0; i--) {
        state = bench_splitmix64(state);
        uint64_t other = state % (i + 1);
        uint32_t swap = order[i];
        order[i] = order[other];
        order[other] = swap;
    }
    for (uint64_t i = 0; i < count; i++) bench_key(order[i], keys + i * BENCH_KEY_BYTES);
    free(order);
    return keys;
}

/* A cursor that walks a key array round and round. */
typedef struct {
    const char *keys;
    uint64_t count;
    uint64_t next;
} bench_keys;

static inline const char *bench_next_key(bench_keys *cursor) {
    const char *key = cursor->keys + cursor->next * BENCH_KEY_BYTES;
    if (++cursor->next == cursor->count) cursor->next = 0;
    return key;
}

/* ---- rows ---- */

static int bench_compare_doubles(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Prints one row from its per-repetition ns/op samples. */
static void bench_print_row(const char *op, const char *medium, double *samples, int count) {
    qsort(samples, (size_t)count, sizeof *samples, bench_compare_doubles);
    double median = count % 2 ? samples[count / 2] : (samples[count / 2 - 1] + samples[count / 2]) / 2;
    printf("%s\t%s\t%.2f\t%.2f\t%.2f\n", op, medium, median, samples[0], samples[count - 1]);
    fflush(stdout);
}

/* Runs `count` operations and returns the nanoseconds that count: most bodies
 * time the whole batch (bench_measure does), a few only part of each operation. */
typedef uint64_t (*bench_timed_body)(void *context, uint64_t count);
typedef void (*bench_body)(void *context, uint64_t count);

/* Calibrates, warms up and times `body` as slotstore-bench's Bench.measure does. */
static void bench_measure_timed(const char *op, const char *medium, bench_timed_body body, void *context) {
    uint64_t target = bench_target_ns();
    uint64_t count = 1, elapsed;
    for (;;) {
        elapsed = body(context, count);
        if (elapsed >= target / 8) break;
        count *= elapsed < target / 64 ? 8 : 2;
    }
    double per_op = (double)elapsed / (double)count;
    if (per_op < 0.05) per_op = 0.05;
    count = (uint64_t)((double)target / per_op);
    if (count == 0) count = 1;
    body(context, count); /* warm-up */
    int repetitions = bench_repetitions();
    double samples[repetitions];
    for (int r = 0; r < repetitions; r++) samples[r] = (double)body(context, count) / (double)count;
    bench_print_row(op, medium, samples, repetitions);
}

/* bench_measure's adapter: the body is timed as a whole. */
typedef struct {
    bench_body body;
    void *context;
} bench_whole;

static uint64_t bench_time_whole(void *context, uint64_t count) {
    bench_whole *whole = context;
    uint64_t start = bench_now();
    whole->body(whole->context, count);
    return bench_now() - start;
}

static void bench_measure(const char *op, const char *medium, bench_body body, void *context) {
    bench_whole whole = {body, context};
    bench_measure_timed(op, medium, bench_time_whole, &whole);
}

#endif
