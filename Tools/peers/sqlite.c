/* SlotStore's peer workloads on SQLite, the embedded database most programs
 * reach for first.
 *
 * usage: sqlite SHM_DIR SHM_MEDIUM DISK_DIR DISK_MEDIUM
 *     (build: cc -O2 sqlite.c -lsqlite3; Tools/peers/run does it)
 * env: REPS, TARGET_MS (../bench-floor/harness.h), MAP_KEYS (1000000)
 * Prints one row per workload: workload<TAB>medium<TAB>median ns/op<TAB>min<TAB>max
 *
 * Settings, chosen to be SQLite's fastest that keep what SlotStore keeps:
 * - journal_mode=WAL, so readers don't block the writer (several processes
 *   share the file, as SlotStore's users do), and mmap_size=256 MiB, so reads
 *   come from the mapping rather than read() calls.
 * - Everything but durable-commit: synchronous=NORMAL on SHM_DIR. In WAL mode a
 *   commit then survives the process's death but not the machine's
 *   (SlotStore's default promise); no fsync per commit.
 * - durable-commit: synchronous=FULL on DISK_DIR, an fsync of the WAL at every
 *   commit (SlotStore's durability .flushOnCommit).
 * - Statements are prepared once and reset per use; each runs in its own
 *   (autocommit) transaction, as each SlotStore call is its own.
 */
#include "../bench-floor/harness.h"

#include <sqlite3.h>

static sqlite3 *open_database(const char *path, const char *synchronous) {
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK) bench_fail("sqlite open %s: %s", path, sqlite3_errmsg(db));
    char setup[512];
    snprintf(setup, sizeof setup,
             "PRAGMA journal_mode=WAL; PRAGMA synchronous=%s; PRAGMA mmap_size=268435456;"
             "CREATE TABLE cells(id INTEGER PRIMARY KEY, value);"
             "CREATE TABLE map(key BLOB PRIMARY KEY, value INTEGER) WITHOUT ROWID;"
             "INSERT INTO cells VALUES (1, 0), (2, zeroblob(64));",
             synchronous);
    char *error = NULL;
    if (sqlite3_exec(db, setup, NULL, NULL, &error) != SQLITE_OK) bench_fail("sqlite setup of %s: %s", path, error);
    return db;
}

static sqlite3_stmt *prepare(sqlite3 *db, const char *sql) {
    sqlite3_stmt *statement;
    if (sqlite3_prepare_v3(db, sql, -1, SQLITE_PREPARE_PERSISTENT, &statement, NULL) != SQLITE_OK)
        bench_fail("sqlite prepare \"%s\": %s", sql, sqlite3_errmsg(db));
    return statement;
}

/* Steps a statement that returns at most one row; returns whether it did. */
static int step(sqlite3_stmt *statement) {
    int result = sqlite3_step(statement);
    if (result == SQLITE_ROW) return 1;
    if (result != SQLITE_DONE)
        bench_fail("sqlite \"%s\": %s", sqlite3_sql(statement), sqlite3_errmsg(sqlite3_db_handle(statement)));
    return 0;
}

typedef struct {
    sqlite3_stmt *statement;
    bench_keys keys;
} query;

/* UPDATE ... RETURNING gives the new value back, as SlotStore's add does. */
static void counter_add(void *context, uint64_t count) {
    query *add = context;
    int64_t sum = 0;
    for (uint64_t i = 0; i < count; i++) {
        if (!step(add->statement)) bench_fail("the counter row is missing");
        sum += sqlite3_column_int64(add->statement, 0);
        step(add->statement);
        sqlite3_reset(add->statement);
    }
    bench_sink += (uint64_t)sum;
}

static void read_64(void *context, uint64_t count) {
    query *read = context;
    uint8_t copy[64];
    uint64_t sum = 0;
    for (uint64_t i = 0; i < count; i++) {
        if (!step(read->statement)) bench_fail("the 64-byte row is missing");
        memcpy(copy, sqlite3_column_blob(read->statement, 0), 64);
        sqlite3_reset(read->statement);
        sum += copy[63];
    }
    bench_sink += sum;
}

static void write_64(void *context, uint64_t count) {
    query *write = context;
    uint64_t text[8] = {1, 2, 3, 4, 5, 6, 7, 8};
    for (uint64_t i = 0; i < count; i++) {
        text[0] = i;
        sqlite3_bind_blob(write->statement, 1, text, 64, SQLITE_STATIC);
        step(write->statement);
        sqlite3_reset(write->statement);
    }
}

static void map_get(void *context, uint64_t count) {
    query *get = context;
    int64_t sum = 0;
    for (uint64_t i = 0; i < count; i++) {
        sqlite3_bind_blob(get->statement, 1, bench_next_key(&get->keys), BENCH_KEY_BYTES, SQLITE_STATIC);
        if (!step(get->statement)) bench_fail("map get: a key that is in the map was not found");
        sum += sqlite3_column_int64(get->statement, 0);
        sqlite3_reset(get->statement);
    }
    bench_sink += (uint64_t)sum;
}

static void map_put(void *context, uint64_t count) {
    query *put = context;
    for (uint64_t i = 0; i < count; i++) {
        sqlite3_bind_int64(put->statement, 1, (int64_t)i);
        sqlite3_bind_blob(put->statement, 2, bench_next_key(&put->keys), BENCH_KEY_BYTES, SQLITE_STATIC);
        step(put->statement);
        sqlite3_reset(put->statement);
    }
}

static void durable_commit(void *context, uint64_t count) {
    query *commit = context;
    for (uint64_t i = 0; i < count; i++) {
        sqlite3_bind_int64(commit->statement, 1, (int64_t)i);
        step(commit->statement);
        sqlite3_reset(commit->statement);
    }
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: sqlite SHM_DIR SHM_MEDIUM DISK_DIR DISK_MEDIUM (the media label the rows)\n");
        return 2;
    }
    const char *shm = argv[2], *disk = argv[4];
    uint64_t count = (uint64_t)bench_env("MAP_KEYS", 1000000);
    char path[4096];

    snprintf(path, sizeof path, "%s/peers.sqlite", argv[1]);
    sqlite3 *db = open_database(path, "NORMAL");
    query add = {prepare(db, "UPDATE cells SET value = value + 1 WHERE id = 1 RETURNING value"), {0}};
    bench_measure("counter-add", shm, counter_add, &add);
    query read = {prepare(db, "SELECT value FROM cells WHERE id = 2"), {0}};
    bench_measure("read-64", shm, read_64, &read);
    query write = {prepare(db, "UPDATE cells SET value = ?1 WHERE id = 2"), {0}};
    bench_measure("write-64", shm, write_64, &write);

    /* Fill in one transaction, in slotstore-bench's insertion order: setup, not a row. */
    char *insert_order = bench_shuffled_keys(count, 1);
    char *lookup_order = bench_shuffled_keys(count, 2);
    uint64_t started = bench_now();
    sqlite3_exec(db, "BEGIN", NULL, NULL, NULL);
    sqlite3_stmt *insert = prepare(db, "INSERT INTO map VALUES (?1, ?2)");
    for (uint64_t i = 0; i < count; i++) {
        sqlite3_bind_blob(insert, 1, insert_order + i * BENCH_KEY_BYTES, BENCH_KEY_BYTES, SQLITE_STATIC);
        sqlite3_bind_int64(insert, 2, (int64_t)i);
        step(insert);
        sqlite3_reset(insert);
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) bench_fail("sqlite fill commit: %s", sqlite3_errmsg(db));
    fprintf(stderr, "sqlite: filled %llu keys in %.1f s\n", (unsigned long long)count, (double)(bench_now() - started) / 1e9);
    query get = {prepare(db, "SELECT value FROM map WHERE key = ?1"), {lookup_order, count, 0}};
    bench_measure("map-get", shm, map_get, &get);
    query put = {prepare(db, "UPDATE map SET value = ?1 WHERE key = ?2"), {lookup_order, count, 0}};
    bench_measure("map-put", shm, map_put, &put);
    sqlite3_stmt *statements[] = {add.statement, read.statement, write.statement, insert, get.statement, put.statement};
    for (size_t i = 0; i < sizeof statements / sizeof *statements; i++) sqlite3_finalize(statements[i]);
    sqlite3_close(db);
    free(insert_order);
    free(lookup_order);

    snprintf(path, sizeof path, "%s/peers.sqlite", argv[3]);
    sqlite3 *durable = open_database(path, "FULL");
    query commit = {prepare(durable, "UPDATE cells SET value = ?1 WHERE id = 1"), {0}};
    bench_measure("durable-commit", disk, durable_commit, &commit);
    sqlite3_finalize(commit.statement);
    sqlite3_close(durable);
    return 0;
}
