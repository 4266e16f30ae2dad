/*
** test_storage_sqlite.c — the sqlite: adapter against the conformance
** suite, plus what only a file-backed store has: data surviving a reopen,
** a store in use by another process refused with PGS_EBUSY, and an
** unwritable location refused with a clear error.
*/
#include "conformance.c"
#include "filestore.h"
#include "tcounter.h"

#include <sqlite3.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[] = "/tmp/pgs-sqlite-XXXXXX";
static char url[256];

static void unwritable_location_is_refused(void)
{
    pgs_storage *st = NULL;
    int rc = pgs_storage_open(&st, "sqlite:/proc/pgs-cannot-be-here/x.db", NULL);
    CHECK(rc == PGS_ESTORAGE);
    CHECK(st == NULL);
    char ro[300];
    snprintf(ro, sizeof ro, "%s/ro", dir);
    mkdir(ro, 0555);
    snprintf(ro, sizeof ro, "sqlite:%s/ro/x.db", dir);
    if (geteuid() != 0) { /* root ignores directory permissions */
        CHECK(pgs_storage_open(&st, ro, NULL) != PGS_OK);
    }
    expect_open_fails("sqlite:x.db?synchronous=sometimes", PGS_EURL);
    expect_open_fails("sqlite:x.db?max_size=12", PGS_EURL);
    expect_open_fails("sqlite:x.db?colour=blue", PGS_EURL);
}

static void set_schema(const char *path, int v)
{
    sqlite3 *db;
    char q[96];
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    snprintf(q, sizeof q, "UPDATE pgs_meta SET value = %d WHERE name = 'schema'", v);
    REQUIRE(sqlite3_exec(db, q, NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
}

/* Schema 1 (before history) is taken up to 2 at open, with pgs_history
** made if it is missing; schema 3 is a newer pgs's: refused. */
static void schema_versions(void)
{
    char path[300], u[320];
    snprintf(path, sizeof path, "%s/schema.db", dir);
    snprintf(u, sizeof u, "sqlite:%s", path);
    pgs_storage *st;
    REQUIRE_OK(pgs_storage_open(&st, u, NULL));
    pgs_storage_close(st);
    sqlite3 *db;
    REQUIRE(sqlite3_open(path, &db) == SQLITE_OK);
    REQUIRE(sqlite3_exec(db, "DROP TABLE pgs_history", NULL, NULL, NULL) == SQLITE_OK);
    sqlite3_close(db);
    set_schema(path, 1);
    REQUIRE_OK(pgs_storage_open(&st, u, NULL));
    pgs_ref r;
    REQUIRE_OK(pgs_ref_make(&r, "conf-reopen", "h", 1));
    pgs_record v1 = {.ref = r, .version = 1}, v2 = {.ref = r, .version = 2};
    CHECK_EQ(pgs_storage_put(st, &v1, 0), PGS_OK);
    pgs_write w = {.op = PGS_OP_PUT, .record = &v2, .expected_version = 1, .keep = 1};
    CHECK_EQ(pgs_storage_batch(st, &w, 1), PGS_OK);
    hist_list h;
    CHECK_EQ(history_of(st, &r, &h), PGS_OK);
    CHECK(h.n == 1 && h.version[0] == 1);
    pgs_storage_close(st);
    set_schema(path, 3);
    st = NULL;
    CHECK_EQ(pgs_storage_open(&st, u, NULL), PGS_EVERSION);
    CHECK(st == NULL);
}

int main(void)
{
    REQUIRE(mkdtemp(dir));
    snprintf(url, sizeof url, "sqlite:%s/store.db", dir);
    int failures = pgs_conformance_run(url, NULL);
    store_in_use_is_busy_at(url); /* one process at a time */
    RUN(unwritable_location_is_refused);
    /* max_size is SQLite's max_page_count: a real SQLITE_FULL, as on a full disk. */
    char full[300];
    snprintf(full, sizeof full, "sqlite:%s/full.db?max_size=131072", dir);
    store_fills_up_cleanly(full, 1000, 10);
    RUN(schema_versions);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return failures || CHECK_DONE();
}
