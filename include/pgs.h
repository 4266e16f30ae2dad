/*
** pgs.h — persistent servers for C.  The whole public API.
**
** A *behaviour* is a versioned table of callbacks (init, handle_call,
** handle_cast, handle_info, terminate, encode, decode, format) registered
** under a stable name.  A *server* is one instance of a behaviour, named by a *ref*:
** the behaviour's name plus a key of any bytes.  pgs keeps each server's
** state in a storage engine after every message it handles, passivates
** servers that sit idle (their state then lives only in storage), and
** reactivates them transparently when a message arrives.
**
** Conventions, as in SQLite, LMDB and libuv:
**   - Every function returns an int status: PGS_OK (0) or a negative
**     PGS_E* code; results come back through out-parameters.
**     pgs_strerror() and pgs_errname() describe every code.
**   - Handles are opaque.  Each comment says who owns every pointer and for
**     how long it stays valid, and which threads may call the function.
**   - Pluggable parts (behaviours, storage adapters) are structs of
**     function pointers that begin with a version field; slots are only
**     ever appended.
**   - No global mutable state: everything lives in a pgs_runtime or a
**     pgs_storage, and any number of them can coexist in one process.
*/
#ifndef PGS_H
#define PGS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PGS_VERSION_STRING "0.1.0"

/* Marks the public functions: the shared library is built with hidden
** visibility and exports these alone (pgsi_* internals stay inside). */
#if defined(__GNUC__) /* and clang */
#define PGS_API __attribute__((visibility("default")))
#else
#define PGS_API
#endif

/* ------------------------------------------------------------------------
** Error codes.  One X-macro list gives the codes, pgs_strerror() and
** pgs_errname().  Codes are negative and stable; new ones are appended.
*/
#define PGS_ERRNO_MAP(X)                                                      \
    X(EINVAL, -1, "invalid argument")                                         \
    X(ENOMEM, -2, "out of memory")                                            \
    X(EREF, -3, "malformed ref")                                              \
    X(ENOBEHAVIOUR, -4, "behaviour not registered")                           \
    X(EEXIST, -5, "already exists")                                           \
    X(ENOTFOUND, -6, "no such server")                                        \
    X(ETOOBIG, -7, "message or state larger than the configured maximum")     \
    X(ETIMEDOUT, -8, "timed out")                                             \
    X(ECRASH, -9, "server crashed while handling the message")                \
    X(ECALLBACK, -10, "callback misbehaved (unknown return code or bad output)") \
    X(ECLOSED, -11, "runtime is closed or closing")                           \
    X(ESTORAGE, -12, "storage error")                                         \
    X(ECONFLICT, -13, "version conflict: the stored record changed")          \
    X(ECORRUPT, -14, "corrupt stored record (checksum or format mismatch)")   \
    X(EURL, -15, "bad or unsupported storage URL")                            \
    X(EDEADLK, -16, "call would deadlock (server calls itself)")              \
    X(EVERSION, -17, "unsupported struct version")                            \
    X(ELOOP, -18, "call chain nested too deeply")                             \
    X(ENOTSUP, -19, "operation not supported here")                           \
    X(ESCHEMA, -20, "stored state has a newer schema version than the code")  \
    X(EBUSY, -21, "resource busy (e.g. the store is in use by another process)") \
    X(ENOSPC, -22, "storage is full")                                         \
    X(EPARKED, -23, "server is parked after a crash loop (see pgs_unpark)")

enum pgs_status {
    PGS_OK = 0,
#define PGS_ERRENUM_(name, val, msg) PGS_##name = (val),
    PGS_ERRNO_MAP(PGS_ERRENUM_)
#undef PGS_ERRENUM_
};

/* A static English description of `code` (never NULL; unknown codes get
** "unknown error").  Thread-safe. */
PGS_API const char *pgs_strerror(int code);
/* The code's symbolic name, e.g. "PGS_ENOTFOUND" (never NULL). */
PGS_API const char *pgs_errname(int code);

/* ------------------------------------------------------------------------
** Refs: a server's identity, a plain value.
**
** A ref can be copied with memcpy, stored, or sent to another process in its
** text form "behaviour/key".  In the text form the key's bytes outside
** [A-Za-z0-9._~-] are written as %XX (two upper-case hex digits), so every
** key byte string has exactly one text form.  Behaviour names are 1 to
** PGS_NAME_MAX bytes of [A-Za-z0-9._-]; those starting with "pgs." name
** pgs's own records (crash counts, set-aside messages) and cannot be
** registered.  Keys are 0 to PGS_KEY_MAX bytes.
*/
#define PGS_NAME_MAX 63
#define PGS_KEY_MAX 256
/* Longest text form, including the terminating NUL. */
#define PGS_REF_TEXT_MAX (PGS_NAME_MAX + 1 + 3 * PGS_KEY_MAX + 1)

typedef struct pgs_ref {
    uint16_t key_len;               /* bytes used in key */
    char name[PGS_NAME_MAX + 1];    /* NUL-terminated behaviour name */
    unsigned char key[PGS_KEY_MAX]; /* key bytes; only key_len are meaningful */
} pgs_ref;

/* Builds *ref from a behaviour name and key bytes.  Errors: PGS_EINVAL
** (NULL ref or name, key NULL with key_len > 0), PGS_EREF (name empty, too
** long or with a byte outside [A-Za-z0-9._-]; key longer than PGS_KEY_MAX).
** Bytes of ref past key_len are zeroed, so refs compare with memcmp. */
PGS_API int pgs_ref_make(pgs_ref *ref, const char *name, const void *key, size_t key_len);

/* Parses the text form, e.g. "counter/42" or "cart/user%2F7".
** `len` is the text's length; pass (size_t)-1 for a NUL-terminated string.
** Errors: PGS_EINVAL (NULL), PGS_EREF (no '/', bad name, bad or lower-case
** %-escape, a byte that should have been escaped, key too long). */
PGS_API int pgs_ref_parse(pgs_ref *ref, const char *text, size_t len);

/* Writes the NUL-terminated text form into buf[0..size).  *out_len (may be
** NULL) receives its length without the NUL.  Errors: PGS_EINVAL, PGS_EREF
** (ref not well formed), PGS_ETOOBIG (buf too small; nothing useful is
** written).  PGS_REF_TEXT_MAX bytes always suffice. */
PGS_API int pgs_ref_format(const pgs_ref *ref, char *buf, size_t size, size_t *out_len);

/* 1 if the refs name the same server, else 0. */
PGS_API int pgs_ref_equal(const pgs_ref *a, const pgs_ref *b);

/* ------------------------------------------------------------------------
** Byte strings returned to the caller.
*/
typedef struct pgs_bytes {
    void *data; /* malloc'd by pgs, owned by the caller: pgs_bytes_free() */
    size_t len;
} pgs_bytes;

/* Frees b->data and zeroes *b.  NULL and already-freed values are fine. */
PGS_API void pgs_bytes_free(pgs_bytes *b);

/* ------------------------------------------------------------------------
** Lifecycles, write modes and per-server options.
*/
enum pgs_lifecycle {
    PGS_LIFECYCLE_INHERIT = 0, /* take the behaviour's (or the default) */
    PGS_TRANSIENT = 1,  /* default: wiped on normal stop, revived after a crash */
    PGS_TEMPORARY = 2,  /* wiped on normal stop and on crash */
    PGS_PERMANENT = 3   /* revived eagerly after crash, stop and at runtime
                           open; wiped only by pgs_delete() */
};

/* When a turn's state reaches storage.  In every mode the write of one
** turn and of the turns before it land in order, a server keeps handling
** messages while its write is in flight, and writes of many servers share
** one storage transaction (group commit).
**   SYNC: the turn's reply, and the casts, infos and async calls it sent,
**     are held until its write is durable (an output gate): an
**     acknowledged update survives kill -9 and power loss (as far as the
**     engine's own durability goes).
**   ASYNC: the reply and sends go at once; writes of one server coalesce
**     and are committed within about pgs_options.flush_interval_ms.  A
**     crash of the process loses at most the updates of that window (the
**     README gives the measured bound).
**   ON_PASSIVATE: written only at passivation, stop and close; a process
**     crash loses everything since the last passivation.
** A handler returning PGS_NOPERSIST skips the write in any mode. */
enum pgs_write_mode {
    PGS_WRITE_INHERIT = 0,
    PGS_WRITE_SYNC = 1,         /* the default */
    PGS_WRITE_ASYNC = 2,
    PGS_WRITE_ON_PASSIVATE = 3
};

/* Idle timeout value meaning "never passivate while the runtime is open". */
#define PGS_IDLE_NEVER UINT32_MAX

/* What a crash loop (more than max_restarts crashes within
** restart_window_ms, counted in storage, so across process restarts too)
** does to the server.  Whatever the policy, restarts after a crash back
** off: the server's next turn waits 10 ms after a crash, twice as long
** after each further crash in a row (no good turn between), with jitter
** of 25%, up to pgs_options.backoff_max_ms.  A policy that acts resets
** the count. */
enum pgs_fault_policy {
    PGS_POLICY_INHERIT = 0,
    PGS_POLICY_BACKOFF = 1,  /* the default: only back off; the state stays */
    PGS_POLICY_ROLLBACK = 2, /* come back from the newest kept version older
                                than the crashes (see history; versions are
                                writes: turns coalesced into one write go
                                back together); park if there is none */
    PGS_POLICY_RESET = 3,    /* a fresh init from the stored start arguments */
    PGS_POLICY_PARK = 4      /* keep the data; every message fails with
                                PGS_EPARKED until pgs_unpark, pgs_repair or
                                pgs_rollback */
};

/* history value: keep no older versions. */
#define PGS_HISTORY_NONE UINT16_MAX

/* Per-server options: given to pgs_start(), stored with the state, and
** applied again whenever the server reactivates; pgs_reconfigure changes
** them later.  Zero fields inherit the behaviour's setting, then the
** runtime's.  Zero-initialise, then set what you need. */
typedef struct pgs_server_opts {
    uint32_t idle_timeout_ms; /* 0: inherit; PGS_IDLE_NEVER: never */
    uint8_t lifecycle;        /* enum pgs_lifecycle */
    uint8_t write_mode;       /* enum pgs_write_mode */
    uint8_t fault_policy;     /* enum pgs_fault_policy */
    uint8_t poison_after;     /* a message that crashes the server this many
                                 times, each on the state reloaded from
                                 storage, is set aside (pgs_poison_list) and
                                 the server goes on with its next message.
                                 0: inherit (1: set aside at once); at most 16 */
    uint16_t max_restarts;    /* 0: inherit (5) */
    uint16_t history;         /* older versions kept in storage (pgs_history,
                                 rollback); 0: inherit (none, but 3 under
                                 PGS_POLICY_ROLLBACK); PGS_HISTORY_NONE: none */
    uint32_t restart_window_ms; /* 0: inherit (60000) */
    uint8_t history_messages; /* 1: store with each version the message whose
                                 turn made it (pgs_record_cause), so history
                                 reads message -> state; 2: don't; 0: inherit
                                 (don't) */
} pgs_server_opts;

/* ------------------------------------------------------------------------
** Behaviours.
**
** Callbacks run on pgs's threads (worker threads, or the calling thread of
** pgs_call when the server was idle), one message at a time per server.
** They may call any pgs function on the runtime, including pgs_call on
** *other* servers (a call to the server itself fails with PGS_EDEADLK).
** Casts, infos and async calls sent from inside a callback leave only after
** the turn's state write has succeeded (the output gate); if the turn
** crashes they are dropped.  A synchronous pgs_call cannot wait for the
** gate (its reply is needed now): its effect on the callee stands even if
** the caller's turn later crashes; prefer pgs_call_async between servers.
** A callback must not call pgs_shutdown or pgs_close, and must not rely on
** running on any particular thread.
**
** The state is a block of `state_size` bytes allocated and zeroed by pgs.
** With encode and decode NULL, the state is flat: its bytes are stored as
** they are.  With pointers inside, provide encode/decode and free whatever
** the state owns in terminate, which runs whenever the in-memory state is
** discarded (passivate, stop, delete, crash, runtime close).
*/
typedef struct pgs_ctx pgs_ctx; /* a turn's context; valid only during the callback */
typedef struct pgs_buf pgs_buf; /* encode's output buffer, owned by pgs */

/* What handle_call/handle_cast/handle_info/init return. */
enum pgs_result {
    PGS_PERSIST = 0,    /* write the state (per the write mode) */
    PGS_NOPERSIST = 1,  /* keep the new state in memory, skip this write */
    PGS_STOP = 2,       /* stop normally (the state is deleted per the lifecycle) */
    PGS_CRASH = 3,      /* failure: drop the in-memory state, revive from storage */
    PGS_UNCHANGED = 4   /* the turn did not change the state (a read): nothing
                           to write now or at passivation */
};

/* Why terminate runs. */
enum pgs_reason {
    PGS_REASON_PASSIVATE = 1, /* idle; state kept in storage */
    PGS_REASON_STOP = 2,      /* normal stop (handler or pgs_stop) */
    PGS_REASON_DELETE = 3,    /* pgs_delete */
    PGS_REASON_CRASH = 4,     /* the state is discarded after a failure */
    PGS_REASON_SHUTDOWN = 5   /* runtime close; state kept in storage */
};

/* Kinds of info message. */
enum pgs_info_kind {
    PGS_INFO_MESSAGE = 1, /* from pgs_send_info() */
    PGS_INFO_TIMER = 2,   /* from pgs_send_after(); tag = the timer id */
    PGS_INFO_REPLY = 3,   /* reply to pgs_call_async(); tag as given, status set */
    PGS_INFO_MONITOR = 4  /* a monitored server's event (pgs_monitor): tag = the
                             monitor id, status = enum pgs_event, data = the
                             watched ref's text form */
};

typedef struct pgs_info {
    int kind;           /* enum pgs_info_kind */
    int status;         /* PGS_INFO_REPLY: the call's status (PGS_OK or PGS_E*) */
    uint64_t tag;       /* see pgs_info_kind */
    const void *data;   /* payload; valid only during the callback */
    size_t len;
} pgs_info;

#define PGS_BEHAVIOUR_VERSION 2

enum pgs_behaviour_flags {
    PGS_VIRTUAL = 1 /* every ref exists: a message to an unknown ref runs init
                       with empty arguments first (Orleans style) */
};

typedef struct pgs_behaviour {
    int version;           /* PGS_BEHAVIOUR_VERSION */
    const char *name;      /* the stable name refs carry; [A-Za-z0-9._-]{1,63} */
    size_t state_size;     /* bytes of in-memory state (may be 0) */
    uint32_t schema_version; /* version of the encoded state, passed to decode */
    uint32_t flags;        /* PGS_VIRTUAL */
    pgs_server_opts defaults; /* behaviour-wide option defaults (0 = runtime's) */

    /* Fills the zeroed state from the start arguments (args may be NULL when
    ** args_len is 0).  Returns PGS_PERSIST (PGS_NOPERSIST and
    ** PGS_UNCHANGED are treated alike: a new server is always written), or
    ** PGS_CRASH (or PGS_STOP) to refuse: pgs_start then fails with
    ** PGS_ECRASH and nothing is stored. */
    int (*init)(pgs_ctx *ctx, void *state, const void *args, size_t args_len);

    /* Handles a call; sets the reply with pgs_reply() (none: an empty reply). */
    int (*handle_call)(pgs_ctx *ctx, void *state, const void *msg, size_t len);
    int (*handle_cast)(pgs_ctx *ctx, void *state, const void *msg, size_t len);
    int (*handle_info)(pgs_ctx *ctx, void *state, const pgs_info *info);

    /* Optional.  Releases what the state owns; the runtime frees the block. */
    void (*terminate)(pgs_ctx *ctx, void *state, int reason);

    /* Optional pair.  encode appends the state's persistent form to `out`
    ** with pgs_buf_append() and returns 0, or a non-zero value on failure
    ** (the turn then fails with PGS_ECALLBACK and nothing is written).
    ** decode rebuilds the zeroed state from bytes written by encode at
    ** schema version `schema`; it returns 0, or non-zero if the bytes are
    ** unusable (the server then fails to activate with PGS_ECORRUPT). */
    int (*encode)(const void *state, pgs_buf *out);
    int (*decode)(void *state, const void *data, size_t len, uint32_t schema);

    /* Version 2.  Optional: renders an encoded state (bytes as decode reads
    ** them at schema version `schema`) as text for people, appending it to
    ** `out` with pgs_buf_append(); returns 0, or non-zero if the bytes are
    ** unusable.  Tools call it (pgs_behaviour_format, the pgs command's
    ** show and history --diff), never the runtime, so it must not need a
    ** runtime or a ctx.  Any thread. */
    int (*format)(const void *data, size_t len, uint32_t schema, pgs_buf *out);
} pgs_behaviour;

/* Renders an encoded state with b->format into out->data (malloc'd,
** NUL-terminated, out->len without the NUL; the caller's: pgs_bytes_free).
** A version 1 behaviour is never read past its end.  Errors: PGS_EINVAL
** (NULL, or data NULL with len > 0), PGS_EVERSION (b->version unknown),
** PGS_ENOTSUP (b has no format: version 1 or NULL), PGS_ECALLBACK (format
** failed), PGS_ENOMEM.  Any thread. */
PGS_API int pgs_behaviour_format(const pgs_behaviour *b, const void *data, size_t len,
                                 uint32_t schema, pgs_bytes *out);

/* Plugins: a shared object that exports
**     const pgs_behaviour *const *pgs_plugin_behaviours(size_t *n);
** returning its behaviours (*n of them; the array and the structs stay
** valid while the object is loaded) lends them to tools, e.g.
** `pgs show --plugin ./libcounter_plugin.so counter/42`, which renders the
** state with the behaviour's format.  Tools call nothing else of a
** plugin's behaviours.  The plugin resolves pgs_buf_append from the
** loading program (link it with -lpgs). */
#define PGS_PLUGIN_SYMBOL "pgs_plugin_behaviours"
typedef const pgs_behaviour *const *(*pgs_plugin_fn)(size_t *n);

/* Appends len bytes; returns PGS_OK, PGS_ENOMEM or PGS_ETOOBIG. */
PGS_API int pgs_buf_append(pgs_buf *buf, const void *data, size_t len);

/* Inside handle_call: sets the reply, copied.  A second call replaces the
** first.  Errors: PGS_EINVAL (not in handle_call), PGS_ETOOBIG, PGS_ENOMEM. */
PGS_API int pgs_reply(pgs_ctx *ctx, const void *data, size_t len);

/* The server being run.  The pointer is valid during the callback. */
PGS_API const pgs_ref *pgs_self(const pgs_ctx *ctx);

/* The runtime running the callback. */
PGS_API struct pgs_runtime *pgs_ctx_runtime(const pgs_ctx *ctx);

/* The `user` pointer given in pgs_options at pgs_open (NULL if none). */
PGS_API void *pgs_user(const pgs_ctx *ctx);

/* ------------------------------------------------------------------------
** Storage: records and the adapter vtable.
**
** A record is what pgs stores for one server.  Adapters store its fields
** and give them back unchanged; pgs computes and verifies the checksum,
** so corruption is caught in one place for every engine.
*/
typedef struct pgs_record {
    pgs_ref ref;
    uint64_t version;        /* 1 for the first write, +1 per write */
    uint32_t schema_version; /* the behaviour's schema_version at write time */
    uint64_t checksum;       /* pgs_record_checksum() of all other fields */
    const void *args;    size_t args_len;     /* start arguments */
    const void *options; size_t options_len;  /* encoded pgs_server_opts */
    const void *state;   size_t state_len;    /* encoded state */
} pgs_record;

/* 64-bit XXH3 (libxxhash) over every field but `checksum` itself: first
** over a header laid out as (integers little-endian) the name with its NUL,
** key_len (2 bytes), the key, version (8), schema_version (4), args_len,
** options_len and state_len (8 each); then args, options and state, each
** hashed with the running value as its seed. */
PGS_API uint64_t pgs_record_checksum(const pgs_record *rec);

/* Makes one malloc'd block holding a deep copy of *src (all byte fields
** point inside it).  The caller owns *out and frees it with free(). 
** Adapters use it to return records from get.  Errors: PGS_EINVAL (NULL),
** PGS_ENOMEM. */
PGS_API int pgs_record_copy(const pgs_record *src, pgs_record **out);

/* The record as one portable byte string (a value per key for engines
** like LMDB; export and import): out->data is malloc'd, owned by the
** caller (pgs_bytes_free).  The checksum is carried as it is, not
** recomputed.  Errors: PGS_EINVAL (NULL, or a byte field NULL with a
** length), PGS_EREF (bad ref), PGS_ENOMEM, PGS_ETOOBIG. */
PGS_API int pgs_record_encode(const pgs_record *rec, pgs_bytes *out);

/* Decodes what pgs_record_encode wrote into a record from
** pgs_record_copy() (owned by the caller: free()).  Every length is
** checked against the bytes given and the checksum against the fields:
** PGS_ECORRUPT if anything is off, never a wrong record.  Errors:
** PGS_EINVAL, PGS_ECORRUPT, PGS_ENOMEM. */
PGS_API int pgs_record_decode(const void *data, size_t len, pgs_record **out);

/* The message whose turn produced this version of a server's record, if
** its server keeps history messages: *kind 1 call, 2 cast, 3 info; *msg
** points into rec->options (valid while rec is).  When turns of a server
** coalesce into one write, it is the last one's.  Errors: PGS_ENOTFOUND
** (none stored), PGS_ECORRUPT, PGS_EINVAL. */
PGS_API int pgs_record_cause(const pgs_record *rec, int *kind, const void **msg, size_t *len);

enum pgs_write_op { PGS_OP_PUT = 1, PGS_OP_DELETE = 2 };

/* One write of a batch. */
typedef struct pgs_write {
    int op;                     /* enum pgs_write_op */
    pgs_record *record;         /* PUT: the record (its ref names the server);
                                   pgs_storage_batch fills its checksum */
    const pgs_ref *ref;         /* DELETE: the server */
    uint64_t expected_version;  /* PUT: the version now stored (0: none);
                                   DELETE: ignored */
    uint32_t keep;              /* PUT: how many replaced versions to keep
                                   as history (0: none; see history) */
} pgs_write;

#define PGS_STORAGE_VERSION 2

/* A storage adapter, like SQLite's VFS.  pgs calls the slots from several
** threads at once; an adapter serialises internally as it needs to.
** Adapters never call back into a runtime.  Slots are only appended; those
** above a version number are valid for adapters of that version. */
typedef struct pgs_storage_ops {
    int version;        /* PGS_STORAGE_VERSION */
    const char *scheme; /* URL scheme it serves, e.g. "memory" */

    /* Opens the store named by `url` (the whole URL).  *state receives the
    ** adapter's private handle.  Errors: PGS_EURL, PGS_ESTORAGE, PGS_EBUSY. */
    int (*open)(const char *url, void **state);
    void (*close)(void *state);

    /* Looks up ref.  On PGS_OK *out is a record from pgs_record_copy(), owned
    ** by the caller.  PGS_ENOTFOUND if absent. */
    int (*get)(void *state, const pgs_ref *ref, pgs_record **out);

    /* Applies all writes or none.  A PUT whose expected_version differs from
    ** the stored version fails the whole batch with PGS_ECONFLICT.  A batch
    ** names each ref at most once (pgs_storage_batch checks).  A DELETE of
    ** an absent ref is a no-op, except that a batch made of that one DELETE
    ** returns PGS_ENOTFOUND.  Versions start at 1; 0 means "no record".
    ** History (version 2 adapters): a PUT over version e with keep > 0
    ** keeps the replaced record; after a PUT of version v with any keep,
    ** the history of its ref holds only versions above v - 1 - keep (pgs
    ** writes versions one by one, so that is the last `keep`).  A DELETE
    ** removes the ref's history with it.
    ** Errors: PGS_ECONFLICT, PGS_ENOTFOUND, PGS_EINVAL, PGS_ESTORAGE,
    ** PGS_ENOMEM. */
    int (*batch)(void *state, const pgs_write *writes, size_t n);

    /* Calls fn for each record of behaviour `name` (every record if NULL), in
    ** no set order, until fn returns non-zero (whose value scan returns).
    ** The record is valid only during fn; fn must not call into the store. */
    int (*scan)(void *state, const char *name,
                int (*fn)(void *arg, const pgs_record *rec), void *arg);

    /* PGS_STORAGE_INLINE if a batch costs next to nothing (no I/O to wait
    ** for): the runtime then writes each state inside its turn instead of
    ** through group commit, whose hand-offs would cost more than they save. */
    unsigned flags;

    /* Version 2.  Calls fn for each kept older version of ref, newest
    ** first, until fn returns non-zero (whose value it returns).  As in
    ** scan, the record is valid only during fn.  NULL: the adapter keeps
    ** no history (pgs_write.keep is ignored). */
    int (*history)(void *state, const pgs_ref *ref,
                   int (*fn)(void *arg, const pgs_record *rec), void *arg);
} pgs_storage_ops;

enum pgs_storage_flags { PGS_STORAGE_INLINE = 1 };

/* A storage handle: an adapter plus its open state.  Opaque. */
typedef struct pgs_storage pgs_storage;

/* Opens storage from a URL: a built-in engine (memory:, sqlite:, lmdb:,
** postgresql://, with the options pgs_open lists), or, when `ops` is not NULL, any URL
** that adapter understands.  *out is owned by the caller:
** pgs_storage_close().  Errors: PGS_EINVAL, PGS_EURL, PGS_EVERSION (ops),
** PGS_ENOMEM, and the adapter's own (PGS_EBUSY: in use by another
** process). */
PGS_API int pgs_storage_open(pgs_storage **out, const char *url, const pgs_storage_ops *ops);
PGS_API void pgs_storage_close(pgs_storage *st);

/* Direct record access, for tools and tests; any thread.  put and del are
** one-write batches: del returns PGS_ENOTFOUND if there was nothing to
** delete.  put fills rec->checksum itself.  get verifies the checksum and
** that the record is the one asked for: PGS_ECORRUPT if not; scan stops at
** the first such record with PGS_ECORRUPT. */
PGS_API int pgs_storage_get(pgs_storage *st, const pgs_ref *ref, pgs_record **out);
PGS_API int pgs_storage_put(pgs_storage *st, pgs_record *rec, uint64_t expected_version);
PGS_API int pgs_storage_del(pgs_storage *st, const pgs_ref *ref);
PGS_API int pgs_storage_batch(pgs_storage *st, pgs_write *writes, size_t n);
PGS_API int pgs_storage_scan(pgs_storage *st, const char *name,
                             int (*fn)(void *arg, const pgs_record *rec), void *arg);
/* The kept older versions of ref, newest first (see pgs_write.keep),
** each verified as get verifies.  Returns PGS_OK, fn's first non-zero
** value, PGS_ECORRUPT, PGS_ENOTSUP (the adapter keeps no history), or the
** adapter's error.  An absent ref has no history: PGS_OK, fn not called. */
PGS_API int pgs_storage_history(pgs_storage *st, const pgs_ref *ref,
                                int (*fn)(void *arg, const pgs_record *rec), void *arg);

/* Bytes of a record's options as pgs writes them (the message that made
** the version may follow: pgs_record_cause). */
#define PGS_RECORD_OPTIONS_LEN 20

/* The options stored in rec, decoded: *opts the server's overrides (zero:
** inherit) and *parked 1 if it is parked (see the fault section), else 0.
** A record with no options gives zeroes.  Errors: PGS_EINVAL (NULL),
** PGS_ECORRUPT (a layout or value pgs does not know). */
PGS_API int pgs_record_options(const pgs_record *rec, pgs_server_opts *opts, int *parked);

/* Encodes opts and the parked flag as pgs stores them, into
** out[0..PGS_RECORD_OPTIONS_LEN), for rec->options.  Errors: PGS_EINVAL
** (NULL, or a value pgs does not know). */
PGS_API int pgs_record_options_encode(const pgs_server_opts *opts, int parked,
                                      unsigned char out[PGS_RECORD_OPTIONS_LEN]);

/* ------------------------------------------------------------------------
** The runtime.
*/
typedef struct pgs_runtime pgs_runtime;

/* 2: on_event.  A version 1 struct (without it) is still accepted. */
#define PGS_OPTIONS_VERSION 2

typedef struct pgs_options {
    int version;              /* PGS_OPTIONS_VERSION */
    int workers;              /* worker threads; 0: one per core */
    uint32_t idle_timeout_ms; /* default idle timeout; 0: 30000 */
    size_t max_message_size;  /* messages, replies and states; 0: 16 MiB */
    pgs_storage *storage;     /* if not NULL: use this open store (borrowed:
                                 it must outlive the runtime) instead of url */
    uint32_t default_call_timeout_ms; /* for timeout_ms < 0; 0: 5000 */
    uint32_t flush_interval_ms; /* write mode async: a state reaches storage
                                 within about this long; 0: 50 */
    void *user;               /* the application's context, handed to every
                                 callback through pgs_user(); pgs never
                                 touches it (owned by the caller) */
    uint32_t backoff_max_ms;  /* the longest wait before a restart after a
                                 crash; 0: 5000 */
    /* Version 2.  If not NULL, told of every server's every lifecycle event
    ** (enum pgs_event: the events monitors see, for all servers), with
    ** `user` above: for tracing and logging.  It runs on the pgs thread
    ** where the event happened, with no lock held, after the event; ref is
    ** valid during the call.  It must be quick and thread-safe, and must
    ** not wait on a server (it may be that server's own turn); it may
    ** cast.  It is also told of the passivations pgs_close makes. */
    void (*on_event)(void *user, const pgs_ref *ref, int event);
} pgs_options;

/* Fills *opts with the defaults. */
PGS_API void pgs_options_init(pgs_options *opts);

/* The store pgs_open uses when given neither a URL nor opts->storage: the
** SQLite file pgs.db in the working directory. */
#define PGS_DEFAULT_URL "sqlite:pgs.db"

/* Opens a runtime on the storage named by `url` (or opts->storage; with
** neither, PGS_DEFAULT_URL).  URLs:
**   "memory:"  in this process only, gone at close.
**   "sqlite:PATH[?synchronous=full|normal|off][&max_size=BYTES]"  WAL;
**       synchronous=full by default; max_size bounds the file, beyond it
**       writes fail with PGS_ENOSPC.  One process at a time.
**   "lmdb:DIR[?map_size=BYTES][&max_size=BYTES][&sync=full|nosync]"  the
**       map grows (doubling) up to max_size, then PGS_ENOSPC.  One
**       process at a time.
**   "postgresql://[user[:pw]@]host[:port]/db[?libpq parameters]"  (also
**       "postgres://")  any libpq URI; tables made if missing; several
**       processes and machines may share the database.
** opts may be NULL for the defaults.  *out is owned by the caller and released by
** pgs_close(); on failure it is set to NULL.  Errors: PGS_EINVAL,
** PGS_EVERSION, PGS_EURL, PGS_ENOMEM, PGS_ESTORAGE, PGS_EBUSY (the store
** is open in another process).  Any thread. */
PGS_API int pgs_open(pgs_runtime **out, const char *url, const pgs_options *opts);

/* Registers a behaviour.  `b` is borrowed and must stay valid and unchanged
** until the runtime is closed.  Registering revives the behaviour's
** permanent servers found in storage.  Errors: PGS_EINVAL (NULL, missing
** init), PGS_EVERSION, PGS_EREF (bad name), PGS_EEXIST, PGS_ECLOSED. */
PGS_API int pgs_register(pgs_runtime *rt, const pgs_behaviour *b);

/* Stops accepting work: every later call on rt fails with PGS_ECLOSED;
** queued messages are handled, then every active server passivates
** (writes if dirty, terminate with PGS_REASON_SHUTDOWN) and keeps its
** state.  The handle stays valid until pgs_close().  Idempotent.  Call it
** from outside any callback.  Returns PGS_OK, or PGS_ESTORAGE if some
** server's unwritten changes (PGS_NOPERSIST turns) could not be stored. */
PGS_API int pgs_shutdown(pgs_runtime *rt);

/* pgs_shutdown(), then frees everything rt owns (not a borrowed storage).
** rt must not be used afterwards, and no other thread may be inside a pgs
** call on rt.  NULL is fine. */
PGS_API void pgs_close(pgs_runtime *rt);

/* Starts the server (behaviour `name`, key) unless it exists: init runs with
** the start arguments, and the state, arguments and options are stored
** before pgs_start returns.  If the server already exists (active or in
** storage) init does not run again and PGS_OK is returned all the same.
** ref_out (may be NULL) receives the ref.  opts may be NULL.  Errors:
** PGS_EINVAL, PGS_EREF, PGS_ENOBEHAVIOUR, PGS_ETOOBIG, PGS_ECRASH (init
** refused), PGS_ECALLBACK, PGS_ESTORAGE, PGS_ECLOSED.  Any thread. */
PGS_API int pgs_start(pgs_runtime *rt, const char *name, const void *key, size_t key_len,
                      const void *args, size_t args_len, const pgs_server_opts *opts,
                      pgs_ref *ref_out);

/* Calls the server and waits up to timeout_ms (negative: the runtime's
** default) for its reply.  On PGS_OK, *reply (may be NULL to discard)
** receives the reply, owned by the caller.  A passivated server is
** reactivated first.  The message is copied.  Errors: PGS_EINVAL, PGS_EREF,
** PGS_ENOBEHAVIOUR, PGS_ETOOBIG, PGS_ENOTFOUND (never started, stopped or
** deleted, including while the call was queued), PGS_ECRASH,
** PGS_ECALLBACK, PGS_ETIMEDOUT (the message may still be handled later),
** PGS_EDEADLK, PGS_ELOOP, PGS_ECORRUPT, PGS_ESTORAGE, PGS_ECLOSED.
** Any thread, including callbacks (calling another server). */
PGS_API int pgs_call(pgs_runtime *rt, const pgs_ref *ref, const void *msg, size_t len,
                     pgs_bytes *reply, int timeout_ms);

/* Queues a cast and returns.  Errors found before queueing are returned
** (PGS_EINVAL, PGS_EREF, PGS_ENOBEHAVIOUR, PGS_ETOOBIG, PGS_ECLOSED,
** PGS_ENOMEM); a cast to a server that turns out not to exist is dropped.
** Inside a callback the cast leaves after the turn's write.  Any thread. */
PGS_API int pgs_cast(pgs_runtime *rt, const pgs_ref *ref, const void *msg, size_t len);

/* Queues an info message (kind PGS_INFO_MESSAGE), like pgs_cast. */
PGS_API int pgs_send_info(pgs_runtime *rt, const pgs_ref *ref, const void *msg, size_t len);

/* Calls `ref` without waiting: the reply arrives at `reply_to` (NULL inside a
** callback: the calling server) as an info message of kind PGS_INFO_REPLY
** carrying `tag` and the call's status.  Use it for server-to-server calls
** that must not hold a worker.  Errors as pgs_cast. */
PGS_API int pgs_call_async(pgs_runtime *rt, const pgs_ref *ref, const void *msg, size_t len,
                           const pgs_ref *reply_to, uint64_t tag);

/* Volatile timer: after delay_ms, sends `ref` an info of kind PGS_INFO_TIMER
** whose tag is the timer id (also stored in *id, may be NULL).  Timers are
** not stored: they die with the process.  A passivated server is woken by
** its timer like by any message.  Errors as pgs_cast. */
PGS_API int pgs_send_after(pgs_runtime *rt, const pgs_ref *ref, uint32_t delay_ms,
                           const void *msg, size_t len, uint64_t *id);

/* Cancels a timer.  PGS_ENOTFOUND if it already fired or never existed. */
PGS_API int pgs_cancel_timer(pgs_runtime *rt, uint64_t id);

/* Stops the server normally, after the messages queued before: terminate
** runs with PGS_REASON_STOP and the state is deleted (temporary and
** transient) or kept (permanent, which is then revived).  Messages queued
** behind the stop meet a server that no longer exists: PGS_ENOTFOUND, or
** a fresh init for a virtual behaviour.  Errors: PGS_ENOTFOUND and those
** of pgs_call.  Any thread, not the server's own callbacks (they return
** PGS_STOP). */
PGS_API int pgs_stop(pgs_runtime *rt, const pgs_ref *ref, int timeout_ms);

/* Deletes the server whatever its lifecycle: terminate runs with
** PGS_REASON_DELETE if it was active, and its record is removed.
** PGS_ENOTFOUND if there was nothing to delete. */
PGS_API int pgs_delete(pgs_runtime *rt, const pgs_ref *ref, int timeout_ms);

/* Introspection (a snapshot; counters are totals since open). */
typedef struct pgs_stats {
    uint64_t active;        /* servers in memory now */
    uint64_t activations;   /* loads from storage and inits */
    uint64_t passivations;
    uint64_t crashes;
    uint64_t messages;      /* messages handled */
    uint64_t writes;        /* records written */
    uint64_t commits;       /* storage transactions (writes / commits: the
                               mean group-commit batch) */
} pgs_stats;

/* Fills *out (a subset of pgs_metrics_get's figures).  Errors: PGS_EINVAL.
** Any thread. */
PGS_API int pgs_stats_get(pgs_runtime *rt, pgs_stats *out);

/* ------------------------------------------------------------------------
** Metrics: a snapshot of the runtime's figures, and its rendering in the
** Prometheus text format.
**
** Counting costs the hot path little: counters live beside the registry
** shard a server hashes to (the thread updating one already holds that
** cache line) and are relaxed atomics; the group-commit figures are kept
** by the one thread committing a batch.  A snapshot sums them without
** stopping anything, so figures taken while the runtime works may be a
** few events apart from one another (writes and commits, say).
*/

/* Buckets of a pgs_histogram. */
#define PGS_HIST_BUCKETS 24

/* A histogram of non-negative integer observations in fixed log2 buckets:
** buckets[0] counts observations <= 1; buckets[i], 0 < i < N-1, those in
** (2^(i-1), 2^i]; buckets[N-1] every one above 2^(N-2) (N =
** PGS_HIST_BUCKETS).  Counts are per bucket, not cumulative. */
typedef struct pgs_histogram {
    uint64_t count;                     /* observations (the buckets' sum) */
    uint64_t sum;                       /* their total */
    uint64_t max;                       /* the largest one; 0: none */
    uint64_t buckets[PGS_HIST_BUCKETS];
} pgs_histogram;

typedef struct pgs_metrics {
    /* Gauges: now. */
    uint64_t active;        /* servers whose state is in memory */
    uint64_t stored;        /* servers with a stored record: those found when
                               their behaviour was registered, plus those
                               created since, less those deleted (records
                               pgs did not write itself are not seen) */
    uint64_t passivated;    /* stored - active, or 0: servers whose state is
                               only in storage (passivated, never activated
                               since the runtime opened, parked, or waiting
                               out a crash) */
    uint64_t queued;        /* messages waiting in mailboxes, all servers
                               (a call to an idle server, run at once on
                               the caller's thread, never waits in one) */
    uint64_t queued_max;    /* the deepest one server's mailbox has been */

    /* Counters: totals since the runtime opened. */
    uint64_t activations;   /* states brought into memory: inits + reactivations */
    uint64_t reactivations; /* states loaded from storage (after a
                               passivation, a crash, or in a new process),
                               as opposed to made by init */
    uint64_t passivations;  /* idle, or at close */
    uint64_t crashes;       /* turns that crashed */
    uint64_t parked;        /* times a server was parked (PGS_EVENT_PARK) */
    uint64_t poison;        /* messages set aside (PGS_EVENT_POISON) */
    uint64_t messages;      /* messages handled */
    uint64_t writes;        /* records written or deleted */
    uint64_t commits;       /* storage transactions */

    /* Group commit (zero for engines written inside the turn, which set
    ** PGS_STORAGE_INLINE: every commit there is one write). */
    pgs_histogram batch;    /* writes per storage transaction */
    pgs_histogram write_latency; /* microseconds from a server's write being
                               queued (the first of the turns it carries,
                               when several coalesce) to its commit being
                               durable; successful writes only */
} pgs_metrics;

/* Fills *out with a snapshot.  Errors: PGS_EINVAL.  Any thread, any time
** until pgs_close (also after pgs_shutdown). */
PGS_API int pgs_metrics_get(pgs_runtime *rt, pgs_metrics *out);

/* Renders *m in the Prometheus text exposition format (version 0.0.4):
** every figure with # HELP and # TYPE lines, named pgs_*; counters end in
** _total; the histograms as pgs_commit_batch_writes and
** pgs_write_latency_seconds (in seconds, as Prometheus prefers), with
** cumulative _bucket{le="..."} lines, _sum and _count.  Writes the text,
** NUL-terminated, into buf[0..size) if it fits; *len (may be NULL)
** receives its length without the NUL either way, so a call with size 0
** (buf may then be NULL) measures it.  PGS_METRICS_TEXT_MAX bytes always
** suffice.
** Errors: PGS_EINVAL (m NULL, or buf NULL with size > 0), PGS_ETOOBIG
** (buf too small: it holds a truncated, NUL-terminated prefix).  Any
** thread; it touches nothing but its arguments. */
#define PGS_METRICS_TEXT_MAX 8192
PGS_API int pgs_metrics_prometheus(const pgs_metrics *m, char *buf, size_t size, size_t *len);

/* 1 if the server is active (in memory) now, 0 if not; negative on error. */
PGS_API int pgs_is_active(pgs_runtime *rt, const pgs_ref *ref);

/* The runtime's store (borrowed: valid until pgs_close), for reading
** records and history with the pgs_storage_* calls. */
PGS_API pgs_storage *pgs_runtime_storage(pgs_runtime *rt);

/* ------------------------------------------------------------------------
** Faults: crash loops, poison messages, parking and repair, monitors.
**
** A turn crashes when its handler returns PGS_CRASH or misbehaves
** (PGS_ECALLBACK).  Its state is dropped and comes back from storage.
** Every crash is counted in storage, with its error and the message that
** caused it, so a crash loop is seen across process restarts too
** (pgs_server_info_get).  See pgs_server_opts for poison_after,
** max_restarts, restart_window_ms, fault_policy and history.
*/

/* Events a monitor is told of. */
enum pgs_event {
    PGS_EVENT_ACTIVATE = 1,  /* loaded from storage, or created */
    PGS_EVENT_PASSIVATE = 2, /* idle or runtime close: its state is in storage */
    PGS_EVENT_STOP = 3,      /* stopped normally */
    PGS_EVENT_CRASH = 4,     /* a turn crashed */
    PGS_EVENT_ROLLBACK = 5,  /* rolled back (policy or pgs_rollback) */
    PGS_EVENT_RESET = 6,     /* started afresh from its start arguments */
    PGS_EVENT_PARK = 7,
    PGS_EVENT_UNPARK = 8,    /* unparked (pgs_unpark, pgs_repair, pgs_rollback) */
    PGS_EVENT_POISON = 9,    /* a message was set aside */
    PGS_EVENT_DELETE = 10    /* deleted; the monitor is removed after this */
};

/* A monitor callback: runs on a pgs thread with no lock held, just after
** the event.  Keep it short; it may send (pgs_cast, pgs_send_info) but must
** not wait on the watched server. */
typedef void (*pgs_monitor_fn)(void *arg, const pgs_ref *ref, int event);

/* Watches ref, which need not be active or even exist yet.  Each event
** goes to fn(arg, ref, event) if fn is not NULL, else to the server
** `notify` as an info of kind PGS_INFO_MONITOR.  *id (may be NULL)
** receives the monitor's id.  Monitors live in the runtime, not in
** storage.  Errors: PGS_EINVAL, PGS_EREF, PGS_ENOBEHAVIOUR, PGS_ENOMEM,
** PGS_ECLOSED.  Any thread. */
PGS_API int pgs_monitor(pgs_runtime *rt, const pgs_ref *ref, pgs_monitor_fn fn, void *arg,
                        const pgs_ref *notify, uint64_t *id);
/* Removes a monitor.  PGS_ENOTFOUND if there is none with that id. */
PGS_API int pgs_demonitor(pgs_runtime *rt, uint64_t id);

/* What storage says of one server. */
typedef struct pgs_server_info {
    uint64_t version;        /* stored version */
    int parked;              /* 1 if parked */
    pgs_server_opts opts;    /* its stored overrides */
    uint32_t crashes;        /* crashes in the current restart window */
    int last_error;          /* PGS_ECRASH or PGS_ECALLBACK; 0: never crashed */
    int64_t last_crash_ms;   /* wall clock, ms since the epoch; 0: never */
    uint64_t crash_version;  /* the stored version the last crash met */
    int last_kind;           /* the crashing message: 1 call, 2 cast, 3 info */
    pgs_bytes last_message;  /* ...its bytes (malloc'd, the caller's:
                                pgs_bytes_free) */
} pgs_server_info;

/* Reads what storage holds for ref.  Errors: PGS_ENOTFOUND (no record),
** PGS_EINVAL, PGS_EREF, PGS_ENOBEHAVIOUR, PGS_ECORRUPT, PGS_ESTORAGE. */
PGS_API int pgs_server_info_get(pgs_runtime *rt, const pgs_ref *ref, pgs_server_info *out);

/* Operator actions.  Each runs as a turn of the server, in order with its
** messages, and is durable when it returns.  They work on parked servers.
**   reconfigure: the non-zero fields of opts replace the stored ones
**     (idle timeout, lifecycle, write mode, fault settings).
**   unpark: the server takes messages again, on the state it has.
**   repair: replaces the state with `state` (encoded, as decode reads it
**     at the behaviour's schema version) and unparks.  PGS_ECORRUPT if
**     decode refuses it.
**   rollback: makes stored version `version` (the current one or a kept
**     older one) the state again, as a new version, and unparks.
**     PGS_ENOTFOUND if that version is not kept.
** Errors: those of pgs_call. */
PGS_API int pgs_reconfigure(pgs_runtime *rt, const pgs_ref *ref, const pgs_server_opts *opts,
                            int timeout_ms);
PGS_API int pgs_unpark(pgs_runtime *rt, const pgs_ref *ref, int timeout_ms);
PGS_API int pgs_repair(pgs_runtime *rt, const pgs_ref *ref, const void *state, size_t len,
                       int timeout_ms);
PGS_API int pgs_rollback(pgs_runtime *rt, const pgs_ref *ref, uint64_t version, int timeout_ms);

/* A message set aside after crashing its server poison_after times. */
typedef struct pgs_poison {
    uint64_t id;             /* for pgs_poison_retry / pgs_poison_drop */
    pgs_ref ref;             /* the server */
    int kind;                /* 1 call, 2 cast, 3 info */
    int info_kind;           /* info: enum pgs_info_kind */
    uint64_t tag;            /* info: its tag */
    int error;               /* PGS_ECRASH or PGS_ECALLBACK */
    uint32_t attempts;       /* times it crashed the server */
    int64_t time_ms;         /* when it was set aside (wall clock) */
    uint64_t state_version;  /* the stored version it met */
    const void *msg;    size_t msg_len;   /* valid during the callback */
    const void *state;  size_t state_len; /* the encoded state it met */
} pgs_poison;

/* Calls fn for each set-aside message of ref (all servers if NULL), in no
** set order, until fn returns non-zero (returned).  Any thread. */
PGS_API int pgs_poison_list(pgs_runtime *rt, const pgs_ref *ref,
                            int (*fn)(void *arg, const pgs_poison *p), void *arg);
/* Sends a set-aside message again, as what it was (a call waits and puts
** its reply in *reply, may be NULL), after removing it from the list: if
** it crashes again it is set aside again, under a new id.  Errors:
** PGS_ENOTFOUND, and those of pgs_call or pgs_cast. */
PGS_API int pgs_poison_retry(pgs_runtime *rt, uint64_t id, pgs_bytes *reply, int timeout_ms);
/* Removes a set-aside message.  PGS_ENOTFOUND if there is none. */
PGS_API int pgs_poison_drop(pgs_runtime *rt, uint64_t id);

/* The same reads and repairs on a pgs_storage, with no runtime and no
** behaviour registered: for tools (the pgs command) working on a store
** that no runtime has open (SQLite and LMDB stores admit one process at a
** time; on PostgreSQL a running server's next write over a record changed
** here fails with PGS_ECONFLICT, and it reloads).  Any thread.
**   pgs_storage_server_info: as pgs_server_info_get.  Errors: PGS_EINVAL,
**     PGS_EREF, PGS_ENOTFOUND, PGS_ECORRUPT, the store's errors.
**   pgs_storage_poison_list, pgs_storage_poison_drop: as pgs_poison_list
**     (PGS_ECORRUPT for a damaged set-aside record) and pgs_poison_drop.
**   pgs_storage_fault_clear: starts ref's crash count again, as pgs_unpark
**     and the other repairs do (the last crash stays on record), or with
**     `erase` removes its crash record, as pgs_delete does.  PGS_OK if it
**     has none.  Writing the server's record itself (options with the
**     parked flag cleared, a state, a kept version) is the caller's, with
**     pgs_storage_put. */
PGS_API int pgs_storage_server_info(pgs_storage *st, const pgs_ref *ref, pgs_server_info *out);
PGS_API int pgs_storage_poison_list(pgs_storage *st, const pgs_ref *ref,
                                    int (*fn)(void *arg, const pgs_poison *p), void *arg);
PGS_API int pgs_storage_poison_drop(pgs_storage *st, uint64_t id);
PGS_API int pgs_storage_fault_clear(pgs_storage *st, const pgs_ref *ref, int erase);

#ifdef __cplusplus
}
#endif
#endif /* PGS_H */
