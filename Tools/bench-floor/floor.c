/* The C floor: the cheapest hand-written C way to do each primitive that
 * SlotStore does, measured on this machine in the same invocation as
 * slotstore-bench's rows, so that "SlotStore / floor" says how much the
 * library adds on top of the hardware and the kernel.
 *
 * usage: floor DIR MEDIUM [SECTION...]
 *   DIR      folder for the files (/dev/shm, or a disk-backed folder for msync)
 *   MEDIUM   label printed in each row (slotstore-bench uses the folder's name)
 *   SECTION  atomic mutex write seqlock map contention open msync (default: all)
 * env: REPS, TARGET_MS (harness.h); MAP_KEYS (1000000) and MAP_BUCKETS
 *      (2097152, any count, as SlotStore's layout 2) size the map; CONTENTION_MS (120) is one two-process repetition.
 *
 * Everything lives in a file mapped MAP_SHARED, as SlotStore's fields do, and
 * each operation does what the matching SlotStore operation must do at the
 * least, with nothing SlotStore adds for its own bookkeeping (handles, lock
 * users, retirement checks, holder PIDs, journal checksums). What "the least"
 * means for each is written next to it. Keep the row names stable: they are
 * matched by Tools/slotstore-bench/Floor.swift.
 */
#include "harness.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

enum { PAGE = 4096, JOURNAL_BYTES = 2048 };

/* The store header. Hot words sit on cache lines of their own, as in a
 * SlotStore store created with cacheLineAligned (the benchmark's), so one
 * word's traffic never slows another's. The journal has its own page, so the
 * durable write flushes journal and data with separate msync calls, as a real
 * store must. */
typedef struct {
    _Alignas(64) pthread_mutex_t lock;
    _Alignas(64) int64_t counter;
    _Alignas(64) int64_t a;
    _Alignas(64) int64_t b;
    /* A 64-byte value and a 512-byte one, each behind a sequence word: odd
     * while a writer is inside, bumped by 2 per write (a seqlock). */
    _Alignas(64) struct { uint64_t sequence; uint64_t bytes[8]; } text;
    _Alignas(64) struct { uint64_t sequence; uint64_t bytes[64]; } wide;
    _Alignas(64) uint64_t map_count;
    /* The undo journal: `used` bytes of records, each an offset, a length and
     * the bytes that were there before. A store's recovery writes the images
     * back if `used` is not 0 (this program never crashes, so it has none, but
     * it pays for every write the journal needs). */
    _Alignas(PAGE) struct { uint64_t used; uint8_t records[JOURNAL_BYTES]; } journal;
} floor_store;

/* A map bucket: sequence word (0 = never used, odd = being written), key, value.
 * 48 bytes, so like SlotStore's 56-byte buckets some straddle two cache lines. */
typedef struct {
    uint64_t sequence;
    uint64_t key[BENCH_KEY_BYTES / 8];
    int64_t value;
} floor_bucket;

static floor_store *store;
static floor_bucket *buckets;
static uint64_t bucket_count;
static const char *medium;

/* A page shared with forked children, where the processes of the two-process rows meet. */
typedef struct {
    _Alignas(64) uint64_t ready;
    _Alignas(64) uint64_t go;
    _Alignas(64) uint64_t stop;
    _Alignas(64) uint64_t child_ops;
    uint64_t child_end;
} floor_control;
static floor_control *control;

#define LOAD(p, order) __atomic_load_n(p, __ATOMIC_##order)
#define STORE(p, v, order) __atomic_store_n(p, v, __ATOMIC_##order)

/* ---- files ---- */

static void *map_new_file(const char *path, size_t size, int *fd_out) {
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) bench_fail_errno(path);
    if (ftruncate(fd, (off_t)size) != 0) bench_fail_errno("ftruncate");
    void *address = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (address == MAP_FAILED) bench_fail_errno("mmap");
    if (fd_out) *fd_out = fd; else close(fd);
    return address;
}

/* msync wants page-aligned ranges: flush the pages that hold [address, address + length). */
static void flush(const void *address, size_t length) {
    uintptr_t start = (uintptr_t)address & ~(uintptr_t)(PAGE - 1);
    uintptr_t end = ((uintptr_t)address + length + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
    if (msync((void *)start, end - start, MS_SYNC) != 0) bench_fail_errno("msync");
}

/* ---- CPU pinning ---- */

/* The two-process rows pin each process to its own CPU: left to itself, the
 * scheduler may keep both on one CPU for a whole short repetition, and the
 * row would measure time-slicing instead of two cores fighting over a line. */
static void pin(int cpu) {
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    if (online < 2) return;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu % online, &set);
    sched_setaffinity(0, sizeof set, &set);
}

static void unpin(void) {
    cpu_set_t set;
    CPU_ZERO(&set);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    for (long cpu = 0; cpu < online && cpu < CPU_SETSIZE; cpu++) CPU_SET(cpu, &set);
    sched_setaffinity(0, sizeof set, &set);
}

/* ---- the lock ---- */

/* Process-shared and robust, as SlotStore's: a holder killed inside the lock
 * must not hang everyone else. Robustness costs a list update in the kernel's
 * robust-futex list on every lock and unlock, which is why it is the floor. */
static void init_lock(void) {
    pthread_mutexattr_t attributes;
    pthread_mutexattr_init(&attributes);
    pthread_mutexattr_setpshared(&attributes, PTHREAD_PROCESS_SHARED);
    pthread_mutexattr_setrobust(&attributes, PTHREAD_MUTEX_ROBUST);
    if ((errno = pthread_mutex_init(&store->lock, &attributes)) != 0) bench_fail_errno("pthread_mutex_init");
    pthread_mutexattr_destroy(&attributes);
}

static inline void lock(void) {
    int result = pthread_mutex_lock(&store->lock);
    if (__builtin_expect(result == 0, 1)) return;
    /* A previous holder died inside: a store would roll its journal back here. */
    if (result == EOWNERDEAD) { pthread_mutex_consistent(&store->lock); return; }
    errno = result;
    bench_fail_errno("pthread_mutex_lock");
}

static inline void unlock(void) { pthread_mutex_unlock(&store->lock); }

/* ---- the undo journal ---- */

/* Appends the current bytes at `target` to the journal and publishes the
 * record (release: a recovery that sees the new `used` sees the record) before
 * the caller overwrites them. Call with the lock held. */
static inline void journal_save(const void *target, uint64_t length) {
    uint64_t used = store->journal.used;
    uint8_t *record = store->journal.records + used;
    uint64_t head[2] = {(uint64_t)((const uint8_t *)target - (const uint8_t *)store), length};
    memcpy(record, head, sizeof head);
    memcpy(record + sizeof head, target, length);
    STORE(&store->journal.used, used + sizeof head + ((length + 7) & ~7u), RELEASE);
}

/* Commits: with no records left, a recovery has nothing to undo. */
static inline void journal_clear(void) { STORE(&store->journal.used, 0, RELEASE); }

/* ---- seqlocks ---- */

static inline void seqlock_begin(uint64_t *sequence) {
    STORE(sequence, LOAD(sequence, RELAXED) | 1, RELAXED);
    /* Readers that see the new bytes must see the odd sequence first. */
    __atomic_thread_fence(__ATOMIC_RELEASE);
}

static inline void seqlock_end(uint64_t *sequence) {
    STORE(sequence, LOAD(sequence, RELAXED) + 1, RELEASE);
}

/* The bytes inside a seqlock are copied with memcpy, which the compiler turns
 * into vector moves: the cheapest copy there is, and what SlotStore does.
 * Readers may race with it and see torn bytes, which is what the sequence
 * check is for; the fences around it keep the copy between the two sequence
 * accesses. (The C memory model calls such a race undefined; every seqlock in
 * practice, the kernel's included, relies on the hardware's behaviour here.) */
static inline void copy_out(uint64_t *target, const uint64_t *source, int words) {
    memcpy(target, source, (size_t)words * 8);
}

/* A lock-free read: copy, then accept the copy only if the sequence was even
 * and unchanged around it. Returns the retries, which are 0 uncontended. */
static inline uint64_t seqlock_read(const uint64_t *sequence, const uint64_t *source, uint64_t *target, int words) {
    uint64_t retries = 0;
    for (;;) {
        uint64_t before = LOAD(sequence, ACQUIRE);
        memcpy(target, source, (size_t)words * 8); /* see copy_out */
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__builtin_expect(!(before & 1) && LOAD(sequence, RELAXED) == before, 1)) return retries;
        retries++;
    }
}

/* The write SlotStore's string store does, at the least: lock, save the old
 * bytes in the journal, make the sequence odd, copy, make it even, commit. */
static inline void locked_journaled_write(uint64_t *sequence, uint64_t *target, const uint64_t *source, int words) {
    lock();
    journal_save(target, (uint64_t)words * 8);
    seqlock_begin(sequence);
    copy_out(target, source, words);
    seqlock_end(sequence);
    journal_clear();
    unlock();
}

/* ---- section atomic ---- */

static void add_body(void *context, uint64_t count) {
    (void)context;
    int64_t sum = 0;
    /* seq_cst, as Swift's Atomic.add with .sequentiallyConsistent; on x86 it is
     * the same `lock xadd` as any other order. */
    for (uint64_t i = 0; i < count; i++) sum += __atomic_fetch_add(&store->counter, 1, __ATOMIC_SEQ_CST);
    bench_sink += (uint64_t)sum;
}

static void load_body(void *context, uint64_t count) {
    (void)context;
    int64_t sum = 0;
    for (uint64_t i = 0; i < count; i++) sum += LOAD(&store->counter, ACQUIRE);
    bench_sink += (uint64_t)sum;
}

static void section_atomic(void) {
    bench_measure("atomic add int64 (fetch_add)", medium, add_body, NULL);
    bench_measure("atomic load int64 (acquire), independent loads", medium, load_body, NULL);
}

/* ---- section mutex ---- */

static void lock_body(void *context, uint64_t count) {
    (void)context;
    for (uint64_t i = 0; i < count; i++) { lock(); unlock(); }
}

static void section_mutex(void) {
    bench_measure("robust process-shared mutex lock + unlock", medium, lock_body, NULL);
}

/* ---- section write ---- */

static void write_text_body(void *context, uint64_t count) {
    (void)context;
    uint64_t value[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (uint64_t i = 0; i < count; i++) {
        value[0] = i; /* each write changes the bytes, as the bench's alternating strings do */
        locked_journaled_write(&store->text.sequence, store->text.bytes, value, 8);
    }
}

static void write_wide_body(void *context, uint64_t count) {
    (void)context;
    uint64_t value[64];
    for (int i = 0; i < 64; i++) value[i] = (uint64_t)i;
    for (uint64_t i = 0; i < count; i++) {
        value[0] = i;
        locked_journaled_write(&store->wide.sequence, store->wide.bytes, value, 64);
    }
}

/* A transaction of two 8-byte fields: one journal record per field, each
 * published before its field changes; no seqlock, since an aligned 8-byte
 * store is atomic on its own. */
static void write_pair_body(void *context, uint64_t count) {
    (void)context;
    for (uint64_t i = 0; i < count; i++) {
        lock();
        journal_save(&store->a, 8);
        STORE(&store->a, (int64_t)i, RELAXED);
        journal_save(&store->b, 8);
        STORE(&store->b, (int64_t)i, RELAXED);
        journal_clear();
        unlock();
    }
}

static void section_write(void) {
    bench_measure("locked write 64 B + undo journal + seqlock", medium, write_text_body, NULL);
    bench_measure("locked write 512 B + undo journal + seqlock", medium, write_wide_body, NULL);
    bench_measure("locked write of two int64 fields + undo journal", medium, write_pair_body, NULL);
}

/* ---- section seqlock ---- */

static void read_text_body(void *context, uint64_t count) {
    (void)context;
    uint64_t copy[8], sum = 0;
    for (uint64_t i = 0; i < count; i++) {
        sum += seqlock_read(&store->text.sequence, store->text.bytes, copy, 8);
        sum += copy[7]; /* use the copy, as the bench uses its buffer */
    }
    bench_sink += sum;
}

static void read_wide_body(void *context, uint64_t count) {
    (void)context;
    uint64_t copy[64], sum = 0;
    for (uint64_t i = 0; i < count; i++) {
        sum += seqlock_read(&store->wide.sequence, store->wide.bytes, copy, 64);
        sum += copy[i & 63];
    }
    bench_sink += sum;
}

/* Reads while a second process does locked journaled writes of the same value
 * nonstop, as slotstore-bench's writer process does: the reader pays for the
 * cache line the writer keeps taking away, and for retries when it catches a
 * write in progress. Repetitions are time-bounded, so a stalled writer can't
 * turn one into a short uncontended run. */
static void read_while_writing(void) {
    memset(control, 0, sizeof *control);
    pin(0);
    pid_t child = fork();
    if (child < 0) bench_fail_errno("fork");
    if (child == 0) {
        pin(1);
        uint64_t value[8] = {9, 9, 9, 9, 9, 9, 9, 9}, writes = 0;
        STORE(&control->ready, 1, RELEASE);
        while (!LOAD(&control->stop, ACQUIRE)) {
            value[0] = writes++;
            locked_journaled_write(&store->text.sequence, store->text.bytes, value, 8);
        }
        STORE(&control->child_ops, writes, RELEASE);
        _exit(0);
    }
    while (!LOAD(&control->ready, ACQUIRE)) sched_yield();
    int repetitions = bench_repetitions();
    uint64_t target = bench_target_ns(), reads = 0, retries = 0, copy[8], sum = 0;
    double samples[repetitions];
    for (int r = -1; r < repetitions; r++) {
        uint64_t start = bench_now(), elapsed, count = 0;
        do {
            for (int i = 0; i < 256; i++) { retries += seqlock_read(&store->text.sequence, store->text.bytes, copy, 8); sum += copy[7]; }
            count += 256;
            elapsed = bench_now() - start;
        } while (elapsed < target);
        if (r >= 0) { samples[r] = (double)elapsed / (double)count; reads += count; }
    }
    bench_sink += sum;
    STORE(&control->stop, 1, RELEASE);
    if (waitpid(child, NULL, 0) < 0) bench_fail_errno("waitpid");
    unpin();
    bench_print_row("seqlock read 64 B while a writer process writes", medium, samples, repetitions);
    fprintf(stderr, "floor: the writer process made %llu locked writes; %.3f retries per read\n",
            (unsigned long long)LOAD(&control->child_ops, ACQUIRE), (double)retries / (double)reads);
}

static void section_seqlock(void) {
    bench_measure("seqlock read 64 B", medium, read_text_body, NULL);
    bench_measure("seqlock read 512 B", medium, read_wide_body, NULL);
    read_while_writing();
}

/* ---- section map ---- */

/* A keyed multiply-fold hash of the 32-byte key (the wyhash family's idea:
 * fold the 128-bit product of two 64-bit words). Two independent products per
 * 16 bytes let the CPU overlap them; SlotStore's hash is a sequential chain
 * because it takes keys of any length, which is part of what it pays. */
static inline uint64_t fold(uint64_t a, uint64_t b) {
    __uint128_t product = (__uint128_t)a * b;
    return (uint64_t)product ^ (uint64_t)(product >> 64);
}

static inline uint64_t map_hash(const uint64_t key[4]) {
    uint64_t left = fold(key[0] ^ 0x2d358dccaa6c78a5u, key[1] ^ 0x8bb84b93962eacc9u);
    uint64_t right = fold(key[2] ^ 0x4b33a62ed433d4a3u, key[3] ^ 0x4d5a2da51de1aa47u);
    return fold(left ^ right, 0x9E3779B97F4A7C15u ^ BENCH_KEY_BYTES);
}

static inline bool same_key(const uint64_t *a, const uint64_t *b) {
    return ((a[0] ^ b[0]) | (a[1] ^ b[1]) | (a[2] ^ b[2]) | (a[3] ^ b[3])) == 0;
}

/* The bucket holding `key`, or the empty one where it would go. Writers only
 * (lock held): no other writer can change a bucket under us. */
/* The home bucket: the hash scaled to the bucket count (any count), as
 * SlotStore's layout 2 does; one multiply where a power of two would mask. */
static inline uint64_t map_home(const uint64_t key[4]) {
    return (uint64_t)(((__uint128_t)map_hash(key) * bucket_count) >> 64);
}

static inline uint64_t map_next(uint64_t index) { return index + 1 == bucket_count ? 0 : index + 1; }

static inline floor_bucket *map_slot(const uint64_t key[4]) {
    uint64_t index = map_home(key);
    for (;;) {
        floor_bucket *bucket = &buckets[index];
        if (bucket->sequence == 0 || same_key(bucket->key, key)) return bucket;
        index = map_next(index);
    }
}

/* A lock-free lookup, each bucket read under its own seqlock (as SlotStore's):
 * a writer inside a bucket makes us retry that bucket, never see half a key. */
static inline bool map_get(const uint64_t key[4], int64_t *value) {
    uint64_t index = map_home(key);
    for (;;) {
        floor_bucket *bucket = &buckets[index];
        uint64_t before = LOAD(&bucket->sequence, ACQUIRE);
        if (before == 0) return false; /* a never-used bucket ends the probe */
        if (before & 1) continue;      /* a writer is inside: read it again */
        uint64_t seen[4];
        for (int i = 0; i < 4; i++) seen[i] = LOAD(&bucket->key[i], RELAXED);
        int64_t found = LOAD(&bucket->value, RELAXED);
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (LOAD(&bucket->sequence, RELAXED) != before) continue;
        if (same_key(seen, key)) { *value = found; return true; }
        index = map_next(index);
    }
}

/* An insert journals the bucket and the count (so a recovery can put both
 * back), then fills the bucket inside its seqlock. */
static void map_insert(const uint64_t key[4], int64_t value) {
    lock();
    floor_bucket *bucket = map_slot(key);
    if (bucket->sequence != 0) bench_fail("map insert: key already present");
    journal_save(bucket, sizeof *bucket);
    journal_save(&store->map_count, 8);
    seqlock_begin(&bucket->sequence);
    copy_out(bucket->key, key, 4);
    STORE(&bucket->value, value, RELAXED);
    seqlock_end(&bucket->sequence);
    store->map_count++;
    journal_clear();
    unlock();
}

/* Replacing an existing key's value: the same steps on the 8-byte value. */
static inline void map_set(const uint64_t key[4], int64_t value) {
    lock();
    floor_bucket *bucket = map_slot(key);
    if (__builtin_expect(bucket->sequence == 0, 0)) bench_fail("map set: key not present");
    journal_save(&bucket->value, 8);
    seqlock_begin(&bucket->sequence);
    STORE(&bucket->value, value, RELAXED);
    seqlock_end(&bucket->sequence);
    journal_clear();
    unlock();
}

static void map_get_body(void *context, uint64_t count) {
    bench_keys *keys = context;
    int64_t sum = 0, value;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t key[4];
        memcpy(key, bench_next_key(keys), BENCH_KEY_BYTES);
        if (__builtin_expect(!map_get(key, &value), 0)) bench_fail("map get: a key that is in the map was not found");
        sum += value;
    }
    bench_sink += (uint64_t)sum;
}

static void map_set_body(void *context, uint64_t count) {
    bench_keys *keys = context;
    for (uint64_t i = 0; i < count; i++) {
        uint64_t key[4];
        memcpy(key, bench_next_key(keys), BENCH_KEY_BYTES);
        map_set(key, (int64_t)i);
    }
}

static void section_map(size_t bucket_bytes) {
    uint64_t count = (uint64_t)bench_env("MAP_KEYS", 1000000);
    if (count >= bucket_count) bench_fail("MAP_KEYS=%llu does not fit %llu buckets", (unsigned long long)count,
                                          (unsigned long long)bucket_count);
    char *insert_order = bench_shuffled_keys(count, 1);
    char *lookup_order = bench_shuffled_keys(count, 2);
    int repetitions = bench_repetitions();
    double samples[repetitions];
    /* The fill is timed as a whole, once per repetition, after one untimed fill
     * that faults the pages in; emptying the table between fills is not timed. */
    for (int r = -1; r < repetitions; r++) {
        memset(buckets, 0, bucket_bytes);
        store->map_count = 0;
        uint64_t start = bench_now();
        for (uint64_t i = 0; i < count; i++) {
            uint64_t key[4];
            memcpy(key, insert_order + i * BENCH_KEY_BYTES, BENCH_KEY_BYTES);
            map_insert(key, (int64_t)i);
        }
        if (r >= 0) samples[r] = (double)(bench_now() - start) / (double)count;
    }
    if (store->map_count != count) bench_fail("map holds %llu keys after the fill, not %llu",
                                              (unsigned long long)store->map_count, (unsigned long long)count);
    bench_print_row("map fill empty table (locked journaled inserts)", medium, samples, repetitions);
    fprintf(stderr, "floor: map of %llu keys in %llu buckets of %zu B, load %.2f\n", (unsigned long long)count,
            (unsigned long long)bucket_count, sizeof(floor_bucket), (double)count / (double)bucket_count);
    bench_keys lookups = {lookup_order, count, 0};
    bench_measure("map get hit (per-bucket seqlock)", medium, map_get_body, &lookups);
    bench_measure("map set existing key (lock + journal + seqlock)", medium, map_set_body, &lookups);
    free(insert_order);
    free(lookup_order);
}

/* ---- section contention ---- */

/* Two processes, pinned to CPUs 0 and 1, do the same operation on the same
 * word for a fixed time; the row is the time over both processes' operations.
 * Time-bounded rather than count-bounded so that neither process ever runs
 * alone at the end of a repetition. This process is one of the two, as in
 * slotstore-bench, and checks the clock once per 256 operations. */
typedef void (*operation_batch)(uint64_t first, uint64_t count);

static void add_batch(uint64_t first, uint64_t count) {
    (void)first;
    int64_t sum = 0;
    for (uint64_t i = 0; i < count; i++) sum += __atomic_fetch_add(&store->counter, 1, __ATOMIC_SEQ_CST);
    bench_sink += (uint64_t)sum;
}

static void write_batch(uint64_t first, uint64_t count) {
    uint64_t value[8] = {1, 2, 3, 4, 5, 6, 7, (uint64_t)getpid()};
    for (uint64_t i = 0; i < count; i++) {
        value[0] = first + i;
        locked_journaled_write(&store->text.sequence, store->text.bytes, value, 8);
    }
}

static void contend(const char *op, operation_batch batch) {
    uint64_t length = (uint64_t)bench_env("CONTENTION_MS", 120) * 1000000u;
    int repetitions = bench_repetitions();
    double samples[repetitions];
    pin(0);
    for (int r = -1; r < repetitions; r++) {
        memset(control, 0, sizeof *control);
        pid_t child = fork();
        if (child < 0) bench_fail_errno("fork");
        if (child == 0) {
            pin(1);
            STORE(&control->ready, 1, RELEASE);
            while (!LOAD(&control->go, ACQUIRE)) {}
            uint64_t done = 0;
            while (!LOAD(&control->stop, ACQUIRE)) { batch(done, 256); done += 256; }
            control->child_end = bench_now();
            STORE(&control->child_ops, done, RELEASE);
            _exit(0);
        }
        while (!LOAD(&control->ready, ACQUIRE)) sched_yield();
        uint64_t start = bench_now(), done = 0, end;
        STORE(&control->go, 1, RELEASE);
        do { batch(done, 256); done += 256; end = bench_now(); } while (end - start < length);
        STORE(&control->stop, 1, RELEASE);
        int status;
        if (waitpid(child, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
            bench_fail("%s: the second process failed", op);
        uint64_t last = control->child_end > end ? control->child_end : end;
        if (r >= 0) samples[r] = (double)(last - start) / (double)(done + LOAD(&control->child_ops, ACQUIRE));
    }
    unpin();
    bench_print_row(op, medium, samples, repetitions);
}

static void section_contention(void) {
    contend("2 processes: atomic add on one counter (aggregate)", add_batch);
    contend("2 processes: locked write 64 B + journal + seqlock (aggregate)", write_batch);
}

/* ---- section open ---- */

/* What opening a store costs at the least: open, fstat for the size, map it,
 * read the first page (a store must check its header), unmap, close. */
static void open_body(void *context, uint64_t count) {
    const char *path = context;
    uint64_t sum = 0;
    for (uint64_t i = 0; i < count; i++) {
        int fd = open(path, O_RDWR);
        if (fd < 0) bench_fail_errno(path);
        struct stat status;
        if (fstat(fd, &status) != 0) bench_fail_errno("fstat");
        const volatile uint64_t *mapped = mmap(NULL, (size_t)status.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (mapped == MAP_FAILED) bench_fail_errno("mmap");
        sum += mapped[0];
        munmap((void *)mapped, (size_t)status.st_size);
        close(fd);
    }
    bench_sink += sum;
}

static void section_open(const char *directory) {
    char path[4096];
    snprintf(path, sizeof path, "%s/floor-open.bin", directory);
    uint64_t *words = map_new_file(path, 1 << 20, NULL);
    for (size_t i = 0; i < (1 << 20) / 8; i++) words[i] = i;
    munmap(words, 1 << 20);
    bench_measure("open + fstat + mmap 1 MiB + read a page + munmap + close", medium, open_body, path);
    unlink(path);
}

/* ---- section msync ---- */

typedef struct {
    volatile uint64_t *page;
} msync_context;

/* Only the msync is timed: dirtying the page first is the caller's write,
 * not the flush (slotstore-bench times only sync() for the same reason). */
static uint64_t msync_body(void *context, uint64_t count) {
    msync_context *flushing = context;
    uint64_t total = 0;
    for (uint64_t i = 0; i < count; i++) {
        flushing->page[0] = i;
        uint64_t start = bench_now();
        if (msync((void *)flushing->page, PAGE, MS_SYNC) != 0) bench_fail_errno("msync");
        total += bench_now() - start;
    }
    return total;
}

/* A durable commit of one int64 field with an undo journal needs three
 * ordered flushes: the journal record before the field changes (or a crash
 * mid-write could not be undone), the field before the journal is cleared (or
 * the clear could land first and leave a torn field nobody can undo), and the
 * clear itself (or a crash would undo a write the caller was told was durable). */
static void durable_body(void *context, uint64_t count) {
    (void)context;
    for (uint64_t i = 0; i < count; i++) {
        lock();
        journal_save(&store->a, 8);
        flush(&store->journal, sizeof store->journal.used + 24);
        STORE(&store->a, (int64_t)i, RELAXED);
        flush(&store->a, 8);
        journal_clear();
        flush(&store->journal.used, 8);
        unlock();
    }
}

static void section_msync(const char *directory) {
    char path[4096];
    snprintf(path, sizeof path, "%s/floor-msync.bin", directory);
    int fd;
    volatile uint64_t *page = map_new_file(path, 1 << 20, &fd);
    for (size_t i = 0; i < (1 << 20) / 8; i++) page[i] = i;
    if (msync((void *)page, 1 << 20, MS_SYNC) != 0) bench_fail_errno("msync");
    msync_context flushing = {page};
    bench_measure_timed("msync(MS_SYNC) of one dirty 4 KiB page", medium, msync_body, &flushing);
    munmap((void *)page, 1 << 20);
    close(fd);
    unlink(path);
    bench_measure("durable int64 write: undo journal + 3 msync(MS_SYNC)", medium, durable_body, NULL);
}

/* ---- main ---- */

static bool wanted(int argc, char **argv, const char *section) {
    if (argc == 3) return true;
    for (int i = 3; i < argc; i++) if (strcmp(argv[i], section) == 0) return true;
    return false;
}

int main(int argc, char **argv) {
    static const char *sections[] = {"atomic", "mutex", "write", "seqlock", "map", "contention", "open", "msync"};
    if (argc < 3) {
        fprintf(stderr, "usage: floor DIR MEDIUM [atomic mutex write seqlock map contention open msync]\n");
        return 2;
    }
    for (int i = 3; i < argc; i++) {
        bool known = false;
        for (size_t s = 0; s < sizeof sections / sizeof *sections; s++) known |= strcmp(argv[i], sections[s]) == 0;
        if (!known) bench_fail("unknown section %s (expected one of atomic mutex write seqlock map contention open msync)", argv[i]);
    }
    const char *directory = argv[1];
    medium = argv[2];

    long count = bench_env("MAP_BUCKETS", 1L << 21);
    if (count < 8 || count > (1L << 30)) bench_fail("MAP_BUCKETS=%ld: expected 8 to 2^30", count);
    bool map = wanted(argc, argv, "map");
    size_t bucket_bytes = map ? (size_t)count * sizeof(floor_bucket) : 0;
    size_t header_bytes = (sizeof(floor_store) + PAGE - 1) & ~(size_t)(PAGE - 1);

    char path[4096];
    snprintf(path, sizeof path, "%s/floor-store.bin", directory);
    int fd;
    uint8_t *base = map_new_file(path, header_bytes + bucket_bytes, &fd);
    store = (floor_store *)base;
    buckets = (floor_bucket *)(base + header_bytes);
    bucket_count = (uint64_t)count;
    init_lock();
    control = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (control == MAP_FAILED) bench_fail_errno("mmap of the control page");

    if (wanted(argc, argv, "atomic")) section_atomic();
    if (wanted(argc, argv, "mutex")) section_mutex();
    if (wanted(argc, argv, "write")) section_write();
    if (wanted(argc, argv, "seqlock")) section_seqlock();
    if (map) section_map(bucket_bytes);
    if (wanted(argc, argv, "contention")) section_contention();
    if (wanted(argc, argv, "open")) section_open(directory);
    if (wanted(argc, argv, "msync")) section_msync(directory);

    munmap(base, header_bytes + bucket_bytes);
    close(fd);
    unlink(path);
    return 0;
}
