/* SlotStore's peer workloads on LMDB (liblmdb), the embedded store most like
 * SlotStore: one memory-mapped file, many processes, lock-free readers.
 *
 * usage: lmdb SHM_DIR SHM_MEDIUM DISK_DIR DISK_MEDIUM
 *       (build: cc -O2 lmdb.c -llmdb; Tools/peers/run does it)
 * env: REPS, TARGET_MS (../bench-floor/harness.h), MAP_KEYS (1000000)
 * Prints one row per workload: workload<TAB>medium<TAB>median ns/op<TAB>min<TAB>max
 *
 * Settings, chosen to be LMDB's fastest that keep what SlotStore keeps:
 * - Everything but durable-commit: MDB_WRITEMAP | MDB_NOSYNC on SHM_DIR. A
 *   commit then survives the process's death (SlotStore's default promise)
 *   but not the machine's, and writes go straight into the map.
 * - durable-commit: default flags (fdatasync at every commit) on DISK_DIR, the
 *   promise of SlotStore's durability .flushOnCommit.
 * - Every operation is its own transaction, as each SlotStore call is. A read
 *   renews a read transaction kept for reuse (mdb_txn_renew / mdb_txn_reset,
 *   LMDB's cheap path), so each read sees the latest commit, as SlotStore's does.
 */
#include "../bench-floor/harness.h"

#include <lmdb.h>
#include <sys/stat.h>
#include <unistd.h>

static void check(int result, const char *what) {
    if (result != MDB_SUCCESS) bench_fail("lmdb %s: %s", what, mdb_strerror(result));
}

typedef struct {
    MDB_env *env;
    MDB_dbi cells; /* "counter" and "text" */
    MDB_dbi map;   /* the MAP_KEYS keys */
    MDB_txn *reader;
} lmdb_store;

static void open_store(lmdb_store *store, const char *directory, unsigned flags, size_t map_bytes) {
    if (mkdir(directory, 0700) != 0) bench_fail_errno(directory);
    check(mdb_env_create(&store->env), "mdb_env_create");
    check(mdb_env_set_mapsize(store->env, map_bytes), "mdb_env_set_mapsize");
    check(mdb_env_set_maxdbs(store->env, 4), "mdb_env_set_maxdbs");
    check(mdb_env_open(store->env, directory, flags, 0600), "mdb_env_open");
    MDB_txn *txn;
    check(mdb_txn_begin(store->env, NULL, 0, &txn), "mdb_txn_begin");
    check(mdb_dbi_open(txn, "cells", MDB_CREATE, &store->cells), "mdb_dbi_open cells");
    check(mdb_dbi_open(txn, "map", MDB_CREATE, &store->map), "mdb_dbi_open map");
    int64_t zero = 0;
    uint8_t text[64] = {0};
    MDB_val key = {7, "counter"}, value = {8, &zero};
    check(mdb_put(txn, store->cells, &key, &value, 0), "mdb_put counter");
    key = (MDB_val){4, "text"};
    value = (MDB_val){64, text};
    check(mdb_put(txn, store->cells, &key, &value, 0), "mdb_put text");
    check(mdb_txn_commit(txn), "mdb_txn_commit");
    check(mdb_txn_begin(store->env, NULL, MDB_RDONLY, &store->reader), "mdb_txn_begin (reader)");
    mdb_txn_reset(store->reader);
}

/* ---- workloads ---- */

/* Read the counter, add one, write it back, commit: LMDB's atomic add. */
static void counter_add(void *context, uint64_t count) {
    lmdb_store *store = context;
    int64_t sum = 0;
    for (uint64_t i = 0; i < count; i++) {
        MDB_txn *txn;
        MDB_val key = {7, "counter"}, value;
        check(mdb_txn_begin(store->env, NULL, 0, &txn), "mdb_txn_begin");
        check(mdb_get(txn, store->cells, &key, &value), "mdb_get counter");
        int64_t counter;
        memcpy(&counter, value.mv_data, 8);
        counter++;
        value = (MDB_val){8, &counter};
        check(mdb_put(txn, store->cells, &key, &value, 0), "mdb_put counter");
        check(mdb_txn_commit(txn), "mdb_txn_commit");
        sum += counter;
    }
    bench_sink += (uint64_t)sum;
}

/* Copy the 64-byte value out, as SlotStore's read(into:) does: LMDB's pointer
 * is only valid inside the read transaction. */
static void read_64(void *context, uint64_t count) {
    lmdb_store *store = context;
    uint8_t copy[64];
    uint64_t sum = 0;
    for (uint64_t i = 0; i < count; i++) {
        MDB_val key = {4, "text"}, value;
        check(mdb_txn_renew(store->reader), "mdb_txn_renew");
        check(mdb_get(store->reader, store->cells, &key, &value), "mdb_get text");
        memcpy(copy, value.mv_data, 64);
        mdb_txn_reset(store->reader);
        sum += copy[63];
    }
    bench_sink += sum;
}

static void write_64(void *context, uint64_t count) {
    lmdb_store *store = context;
    uint64_t text[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (uint64_t i = 0; i < count; i++) {
        text[0] = i;
        MDB_txn *txn;
        MDB_val key = {4, "text"}, value = {64, text};
        check(mdb_txn_begin(store->env, NULL, 0, &txn), "mdb_txn_begin");
        check(mdb_put(txn, store->cells, &key, &value, 0), "mdb_put text");
        check(mdb_txn_commit(txn), "mdb_txn_commit");
    }
}

typedef struct {
    lmdb_store *store;
    bench_keys keys;
} map_context;

static void map_get(void *context, uint64_t count) {
    map_context *map = context;
    int64_t sum = 0;
    for (uint64_t i = 0; i < count; i++) {
        MDB_val key = {BENCH_KEY_BYTES, (void *)bench_next_key(&map->keys)}, value;
        check(mdb_txn_renew(map->store->reader), "mdb_txn_renew");
        check(mdb_get(map->store->reader, map->store->map, &key, &value), "mdb_get (a key that is in the map)");
        int64_t found;
        memcpy(&found, value.mv_data, 8);
        mdb_txn_reset(map->store->reader);
        sum += found;
    }
    bench_sink += (uint64_t)sum;
}

static void map_put(void *context, uint64_t count) {
    map_context *map = context;
    for (uint64_t i = 0; i < count; i++) {
        int64_t number = (int64_t)i;
        MDB_txn *txn;
        MDB_val key = {BENCH_KEY_BYTES, (void *)bench_next_key(&map->keys)}, value = {8, &number};
        check(mdb_txn_begin(map->store->env, NULL, 0, &txn), "mdb_txn_begin");
        check(mdb_put(txn, map->store->map, &key, &value, 0), "mdb_put map");
        check(mdb_txn_commit(txn), "mdb_txn_commit");
    }
}

static void durable_commit(void *context, uint64_t count) {
    lmdb_store *store = context;
    for (uint64_t i = 0; i < count; i++) {
        int64_t number = (int64_t)i;
        MDB_txn *txn;
        MDB_val key = {7, "counter"}, value = {8, &number};
        check(mdb_txn_begin(store->env, NULL, 0, &txn), "mdb_txn_begin");
        check(mdb_put(txn, store->cells, &key, &value, 0), "mdb_put counter");
        check(mdb_txn_commit(txn), "mdb_txn_commit");
    }
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: lmdb SHM_DIR SHM_MEDIUM DISK_DIR DISK_MEDIUM (the media label the rows)\n");
        return 2;
    }
    const char *shm = argv[2], *disk = argv[4];
    uint64_t count = (uint64_t)bench_env("MAP_KEYS", 1000000);
    char path[4096];

    lmdb_store store;
    snprintf(path, sizeof path, "%s/lmdb", argv[1]);
    /* Room for the map's B-tree with copy-on-write pages to spare. */
    open_store(&store, path, MDB_WRITEMAP | MDB_NOSYNC, (size_t)count * 256 + (64u << 20));
    bench_measure("counter-add", shm, counter_add, &store);
    bench_measure("read-64", shm, read_64, &store);
    bench_measure("write-64", shm, write_64, &store);

    /* Fill in one transaction, in the insertion order slotstore-bench uses;
     * the fill is setup here, not a row. */
    char *insert_order = bench_shuffled_keys(count, 1);
    char *lookup_order = bench_shuffled_keys(count, 2);
    uint64_t started = bench_now();
    MDB_txn *txn;
    check(mdb_txn_begin(store.env, NULL, 0, &txn), "mdb_txn_begin (fill)");
    for (uint64_t i = 0; i < count; i++) {
        int64_t number = (int64_t)i;
        MDB_val key = {BENCH_KEY_BYTES, insert_order + i * BENCH_KEY_BYTES}, value = {8, &number};
        check(mdb_put(txn, store.map, &key, &value, MDB_NOOVERWRITE), "mdb_put (fill)");
    }
    check(mdb_txn_commit(txn), "mdb_txn_commit (fill)");
    fprintf(stderr, "lmdb: filled %llu keys in %.1f s\n", (unsigned long long)count, (double)(bench_now() - started) / 1e9);
    map_context map = {&store, {lookup_order, count, 0}};
    bench_measure("map-get", shm, map_get, &map);
    bench_measure("map-put", shm, map_put, &map);
    free(insert_order);
    free(lookup_order);
    mdb_txn_abort(store.reader);
    mdb_env_close(store.env);

    lmdb_store durable;
    snprintf(path, sizeof path, "%s/lmdb", argv[3]);
    open_store(&durable, path, 0, 64u << 20);
    bench_measure("durable-commit", disk, durable_commit, &durable);
    mdb_txn_abort(durable.reader);
    mdb_env_close(durable.env);
    return 0;
}
