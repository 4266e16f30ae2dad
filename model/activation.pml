/*
 * activation.pml -- the pgs activation/passivation protocol, for spin.
 *
 * Models docs/protocol.md as implemented by src/server.c, with the idle
 * timer of src/timer.c and the worker loop of src/runtime.c.  Keep the
 * three in step: a change to one is a change to all.  model/check.sh
 * (ctest -R spin) checks it exhaustively, and checks that the mutants and
 * scenario probes listed at the end of this comment are caught/reached.
 *
 * ------------------------------------------------------------------------
 * What is modelled
 *
 * One ref.  `reg` is its registry slot: 0 (absent) or the id (1..NS) of
 * the one registered `struct server`.  Structs come from a pool of NS
 * ids: lookup() takes the lowest free id, free() gives it back (ids are
 * reused, as malloc reuses addresses), so a ref can have a dead struct
 * still linked from the run queue or the timer heap while a new struct
 * for it is registered.  Per struct (arrays indexed by id): status
 * IDLE/SCHEDULED/RUNNING, owner (thread token = _pid+1), the mailbox (a
 * FIFO of message codes), loaded, in_runq, in_timer, dead,
 * passivate_pending, nwaiting; the owner-only fields val (the in-memory
 * state: a counter), ver (s->version) and dirty.  Per message: m->w
 * attached (mw), m->waiting (mwait), m->sync (msync).  Per caller: its
 * waiter (w->done, w->handoff).  Storage: one record, st_ver (0 = no
 * record yet) and st_val.  The run queue is a channel of struct ids; the
 * timer heap a set of ids (theap).
 *
 * Each process is a loop of atomic steps selected by its local `ph`.  The
 * shard lock is modelled by atomicity: every region of server.c between
 * pthread_mutex_lock(&sh->lock) and its unlock is ONE step (the run-queue
 * and timer locks nest inside it, so runq_push/idle_arm belong to that
 * step).  Work done without the lock -- load, create's first write, the
 * handler, each storage write, unload, free() -- is one step per access
 * to the state or to storage, so all of it interleaves with every other
 * process.
 *
 * Messages: code = sender*N + seq + 1.  Senders 0 and 1 are the two
 * synchronous callers (N calls each, pids 0 and 1), sender 2 the caster
 * (N casts).  Every handled message increments the counter.  Calls always
 * persist (PGS_PERSIST, write mode sync); a cast's handler may return
 * PGS_NOPERSIST (the state then stays dirty until a later write or the
 * passivation writes it); a handler may crash, CRASHES times in all
 * (transient lifecycle: the state is dropped and reloaded from the last
 * write by the next message).  The first message finds no record and runs
 * init (a virtual behaviour), whose first write is its own step.
 *
 * Time is nondeterminism.  An idle node in the heap may come due at any
 * moment; it is always found due (a node found not due is re-armed as it
 * was, which leads back to a state where it had not fired: nothing new).
 * A caller may time out, MAXTMO times per caller, wherever the code looks
 * at its deadline: in wait_reply() and in run_owned() before its own
 * message.
 *
 * ------------------------------------------------------------------------
 * Mapping to the code (src/server.c unless said otherwise)
 *
 *  Caller  C_CALL      pgsi_request(): lock; lookup() (pgsi_reg_find, or
 *                      pgsi_server_new + pgsi_reg_insert, registry.c);
 *                      IDLE -> RUNNING (run_direct), else run_queued():
 *                      mb_push, then SCHEDULED -> take it over, or
 *                      RUNNING by another -> wait_reply() sets waiting
 *          C_WAIT      wait_reply(): woken with w->done (return) or
 *                      w->handoff (run_owned), or the deadline passes:
 *                      unwait + m->w = NULL (detach), PGS_ETIMEDOUT
 *          P_DRELEASE  run_direct() after process(): lock;
 *                      passivate_pending = 0; release_locked()
 *  Sender              pgsi_send() (a cast): lock; lookup; mb_push; IDLE
 *                      -> SCHEDULED + pgsi_runq_push unless in_runq
 *  Worker  W_POP       worker_main() (runtime.c): runq_pop
 *          W_POPPED    pgsi_run_popped(): lock; in_runq = 0; free if dead
 *                      and !in_timer; skip if dead or not SCHEDULED; else
 *                      RUNNING, run_owned(budget BATCH = PGSI_BATCH)
 *  Timer   T_POP       timer_main() (timer.c): heap_remove of the due node
 *          T_DUE       pgsi_idle_due(): lock; in_timer = 0; free if dead
 *                      and !in_runq; IDLE -> SCHEDULED + passivate_pending
 *                      + pgsi_runq_push unless in_runq
 *  owner steps (callers and worker), inline owner_step:
 *          P_LOCK      run_owned() loop head: lock; head; budget and
 *                      deadline; empty + passivate_pending -> passivate();
 *                      done -> release_locked(); else mb_pop + unwait +
 *                      passivate_pending = 0
 *          P_LOAD      turn() -> activate() -> pgsi_load (persist.c), or
 *          P_CWRITE      create(): pgsi_init_state + pgsi_write
 *          P_HANDLE    invoke() + after_handler() (PERSIST / NOPERSIST:
 *                      dirty / CRASH: crash() -> unload)
 *          P_WRITE     persist() -> pgsi_write (persist.c)
 *          P_DELIVER   deliver() for m->sync: lock; reply if m->w
 *                      (direct messages are answered in place, no lock)
 *          P_PWRITE    passivate(): pgsi_write if dirty
 *          P_UNLOAD    passivate(): unload() (terminate, loaded = 0)
 *          P_FREE      pgsi_server_free() after release_locked said so
 *  inline release_locked   release_locked() + take_waiting(); its IDLE
 *                      branch removes an unloaded struct (dead) or arms
 *                      the idle node (pgsi_idle_arm, timer.c)
 *  Checker             the end: runs only when nothing else can move
 *
 * Not modelled: stop/delete/start kinds, outboxes (sends from handlers),
 * storage failures, async/on_passivate write modes, shutdown
 * (pgsi_passivate_all), nested calls (EDEADLK), send_after timers, more
 * refs.  One worker: with one ref, in_runq keeps at most one run-queue
 * link per struct, so a second worker could only pop a different (dead)
 * struct of the ref, whose handling is a single locked step.
 *
 * ------------------------------------------------------------------------
 * Properties.  Assertions, plus spin's end-state check (every final state
 * has the callers and the sender terminated, the worker waiting for an
 * empty run queue and the timer for an empty heap), plus, in check.sh's
 * -DNP run, the absence of any cycle: every execution terminates, so every
 * message is eventually handled (no livelock, without fairness).
 *
 *  - exactly once: a message is handled at most once (handled[]), and at
 *    the end every sent message was handled (Checker);
 *  - order: messages are handled in the order they arrived under the
 *    shard lock (tick[]), which implies per-sender FIFO (nseq[], checked
 *    on its own);
 *  - one owner: every unlocked step on state or storage is made by the
 *    RUNNING owner of the registered struct, and ownership of the ref,
 *    over all its structs, is held by one thread at a time (ref_owner);
 *  - storage: every write expects the stored version (ver == st_ver: a
 *    stale or second owner would conflict) and so versions only grow; a
 *    load sees every effect handled so far (st_val == expect); the handler
 *    sees the state every earlier message left (val == expect); a call's
 *    reply is released only once its write is stored (the output gate);
 *  - replies: a reply goes to the caller whose message it answers, while
 *    that caller still waits for it; a caller that timed out gets none;
 *  - the invariants of docs/protocol.md at every lock release: IDLE =>
 *    empty mailbox; SCHEDULED => (mailbox or passivate_pending) and
 *    in_runq; RUNNING => one owner; nwaiting = number of waiting messages;
 *  - memory: a struct is freed only when dead and linked by nothing
 *    (registry, run queue, timer heap, the worker or timer that popped
 *    it, a caller that may still touch it), never used after free, and at
 *    the end nothing is allocated: every struct passivated and freed.
 *
 * Mutants (spin -DMUT_x; check.sh requires spin to report an error):
 *  MUT_REMOVE_NONEMPTY  passivation ends by removing the struct from the
 *                       registry without checking the mailbox
 *  MUT_DIRECT_SCHEDULED a caller takes the direct path whenever the server
 *                       is not RUNNING, SCHEDULED included
 *  MUT_NO_WAKE          release hands ownership to a waiter but does not
 *                       set w->handoff: the waiter never learns it
 *  MUT_NO_SCHEDULE      release leaves a non-empty mailbox SCHEDULED
 *                       without pushing it on the run queue
 *  MUT_FREE_LINKED      release frees a removed struct even while the run
 *                       queue or the timer heap still links it
 *  MUT_NO_DETACH        a timed-out caller leaves m->w attached
 *  MUT_NO_DIRTY_WRITE   passivation unloads a dirty state without writing
 *  MUT_REQUEUE_TAKEN    a worker that finds its popped server taken puts
 *                       it back on the run queue (a livelock: only the
 *                       -DNP run sees it)
 *
 * Reading a trail: every step printf's what it did (pan ignores printf),
 * so `spin <the same -D flags> -t -k activation.pml.trail activation.pml`
 * in the run's directory narrates the interleaving, one line per step
 * ("pid 3: pop m5 from struct 1", ...); add -p for every statement.  Pids:
 * 0 and 1 the callers, 2 the caster, 3 the worker, 4 the timer.  Message
 * m<code>: m1,m2 caller 0's calls, m3,m4 caller 1's, m5,m6 the casts.
 *
 * Scenario probes (-DREACH=n turns probe n into a failing assertion;
 * check.sh requires spin to reach each): 1 direct path, 2 SCHEDULED
 * take-over, 3 hand-off to a waiter, 4 wait_reply timeout, 5 owner
 * timeout before its message, 6 messages arriving while the owner
 * passivates, 7 the ref re-created after its struct was removed, 8 the
 * timer frees a dead struct, 9 the worker frees a dead struct, 10 a
 * caller takes over a passivation the timer scheduled, 11 a detached
 * call's reply dropped, 12 a struct removed while still linked, 13 the
 * worker pops a struct a caller took, 14 passivation writes a dirty state.
 */

/* Bounds.  The defaults are check.sh's "base" run; its other runs change
 * them with -D (see check.sh for the list and what each adds). */
#ifndef N
#define N 2             /* messages per sender */
#endif
#ifndef BATCH
#define BATCH 1         /* worker budget per turn of a server (PGSI_BATCH) */
#endif
#ifndef MAXTMO
#define MAXTMO 1        /* timeouts per caller */
#endif
#ifndef CRASHES
#define CRASHES 1       /* handler crashes in the whole run */
#endif
#ifndef NOPERSIST
#define NOPERSIST 1     /* casts may return PGS_NOPERSIST */
#endif

#ifndef REACH
#define REACH 0         /* -DREACH=n: probe reached(n) must be reachable */
#endif
/* A scenario probe: check.sh runs with -DREACH=n for each n and requires
 * spin to reach the probe, so the scenarios the properties rely on are
 * known to be exercised (the model is not vacuous). */
#define reached(n) assert(REACH != n)

#define NSEND 3
#define CASTER 2
#define TOTAL (NSEND * N)
#define CAP TOTAL
#ifndef NS
#define NS 3            /* struct pool: 3 or 4; lookup asserts it is enough */
#endif
#if NS < 3 || NS > 4
#error NS must be 3 or 4
#endif

#define SND(code) (((code) - 1) / N)
#define SEQ(code) (((code) - 1) % N)
#define CODE(snd, i) ((snd) * N + (i) + 1)

#define IDLE 0
#define SCHEDULED 1
#define RUNNING 2

#define NOBODY 0
#define ME (_pid + 1)            /* pgsi_thread_token() */
#define TOKEN(c) ((c) + 1)       /* callers are pids 0 and 1 */
#define SENDER_PID 2
#define WORKER_PID 3
#define TIMER_PID 4

/* Steps (the value of a process's `ph`: what it does next). */
#define P_LOCK     1    /* run_owned(): the locked head check */
#define P_LOAD     2    /* activate(): pgsi_load, or init if no record */
#define P_CWRITE   3    /* create(): the first write */
#define P_HANDLE   4    /* invoke() + after_handler() */
#define P_WRITE    5    /* persist(): pgsi_write */
#define P_DELIVER  6    /* deliver(), locked (m->sync) */
#define P_DRELEASE 7    /* run_direct(): lock, release_locked */
#define P_PWRITE   8    /* passivate(): pgsi_write if dirty */
#define P_UNLOAD   9    /* passivate(): terminate + unload */
#define P_FREE    10    /* pgsi_server_free after the unlock */
#define C_CALL    11    /* pgsi_request(): the locked lookup */
#define C_WAIT    12    /* wait_reply() */
#define W_POP     13    /* worker_main(): runq_pop */
#define W_POPPED  14    /* pgsi_run_popped(): the locked check */
#define T_POP     15    /* timer_main(): heap_remove of a due idle node */
#define T_DUE     16    /* pgsi_idle_due() */
#define T_FREE    17    /* pgsi_idle_due(): free after the unlock */

/* ---- registry and server structs (shard lock) */
byte reg;                        /* the registered struct, 0: none */
bit alloc[NS + 1];               /* id in use (malloc'd) */
byte status[NS + 1];
byte owner[NS + 1];
byte mb[(NS + 1) * CAP];         /* mailboxes: struct s uses mb[s*CAP ..] */
byte mlen[NS + 1];
bit loaded[NS + 1];
bit in_runq[NS + 1];
bit in_timer[NS + 1];
bit dead[NS + 1];
bit pending[NS + 1];             /* passivate_pending */
byte nwaiting[NS + 1];
/* owner only */
byte val[NS + 1];                /* the state: a counter */
byte ver[NS + 1];                /* s->version */
bit dirty[NS + 1];

/* ---- messages (shard lock) */
bit mw[TOTAL + 1];               /* m->w != NULL */
bit mwait[TOTAL + 1];            /* m->waiting */
bit msync[TOTAL + 1];            /* m->sync */

/* ---- waiters, one per caller (on the caller's stack in C) */
bit w_done[2];
byte w_handoff[2];               /* struct handed to me, 0: none */

/* ---- run queue (run-queue lock) and timer heap (timer lock) */
chan runq = [NS] of { byte };
bit theap[NS + 1];               /* the struct's idle node is in the heap */

/* ---- storage */
byte st_ver;                     /* 0: no record */
byte st_val;

/* ---- ghosts */
byte ticket;                     /* arrival counter (under the shard lock) */
byte tick[TOTAL + 1];            /* arrival number of each message */
bit handled[TOTAL + 1];
byte nhandled;
byte nseq[NSEND];
byte expect;                     /* the value the state must have now */
byte ref_owner;                  /* token owning the ref (any struct of it) */
byte rqn[NS + 1];                /* run-queue entries per struct */
byte wk_hold, tm_hold;           /* struct popped by worker / timer */
byte c_hold[2];                  /* struct a caller may still touch */
byte cur[2];                     /* the message a caller is in pgsi_request for */
byte crashes = CRASHES;

/* Locals of every thread that can own a server (callers and the worker). */
#define OWNER_LOCALS \
    byte c = _pid; \
    byte ph, i, s, m, mine, budget, k, w, code; \
    bit done, out, freeit, persist, justpass, gaveup, direct

/* ------------------------------------------------------------------------
 * Helpers.  All run inside an enclosing atomic block.
 */
inline check_inv()
{
    assert(nhandled <= TOTAL);
    if
    :: reg != 0 ->
        assert(alloc[reg] && !dead[reg]);
        assert(status[reg] != IDLE || (mlen[reg] == 0 && owner[reg] == NOBODY));
        assert(status[reg] != SCHEDULED ||
               ((mlen[reg] > 0 || pending[reg]) && in_runq[reg] && owner[reg] == NOBODY));
        assert(status[reg] != RUNNING || (owner[reg] != NOBODY && owner[reg] == ref_owner));
        assert(status[reg] == RUNNING || ref_owner == NOBODY);
        k = 0; w = 0;
        do
        :: k < mlen[reg] -> w = w + mwait[mb[reg * CAP + k]]; k++
        :: else -> break
        od;
        assert(w == nwaiting[reg]);
        k = 0; w = 0
    :: else -> assert(ref_owner == NOBODY)
    fi
}

/* An unlocked owner step: made by the RUNNING owner of the registered
 * struct, the only owner of the ref. */
inline own_check()
{
    assert(alloc[s] && reg == s && status[s] == RUNNING &&
           owner[s] == ME && ref_owner == ME)
}

inline mb_push(code)
{
    assert(mlen[s] < CAP);
    mb[s * CAP + mlen[s]] = code;
    mlen[s]++
}

inline mb_pop()
{
    k = 0;
    do
    :: k + 1 < mlen[s] -> mb[s * CAP + k] = mb[s * CAP + k + 1]; k++
    :: else -> break
    od;
    mlen[s]--;
    mb[s * CAP + mlen[s]] = 0;
    k = 0
}

/* pgsi_runq_push (runtime.c): shard lock held, run-queue lock inside */
inline runq_push()
{
    assert(!in_runq[s] && len(runq) < NS);
    in_runq[s] = 1;
    runq!s;
    rqn[s]++
}

/* pgsi_idle_arm (timer.c): shard lock held, timer lock inside */
inline idle_arm()
{
    in_timer[s] = 1;
    theap[s] = 1
}

/* unwait() */
inline unwait(code)
{
    if
    :: mwait[code] -> mwait[code] = 0; nwaiting[s]--
    :: else
    fi
}

/* lookup(): find the registered struct, or create an unloaded IDLE one */
inline lookup()
{
    if
    :: reg != 0 -> s = reg
    :: else ->
        if
        :: st_ver > 0 -> reached(7)   /* the ref comes back after removal */
        :: else
        fi;
        s = 1;                          /* malloc: the lowest free id */
        do
        :: s <= NS && alloc[s] -> s++
        :: else -> break
        od;
        assert(s <= NS);                /* the pool is big enough */
        alloc[s] = 1;
        status[s] = IDLE;
        owner[s] = NOBODY;
        reg = s;
        printf("pid %d: new struct %d registered\n", _pid, s)
    fi
}

/* pgsi_server_free(), no lock held.  Nothing may link s any more. */
inline sfree()
{
    assert(alloc[s] && dead[s] && reg != s && mlen[s] == 0);
    assert(!in_runq[s] && rqn[s] == 0 && !in_timer[s] && !theap[s]);
    assert(wk_hold != s || _pid == WORKER_PID);
    assert(tm_hold != s || _pid == TIMER_PID);
    assert(c_hold[0] != s || _pid == 0);
    assert(c_hold[1] != s || _pid == 1);
    printf("pid %d: free struct %d\n", _pid, s);
    alloc[s] = 0; status[s] = IDLE; owner[s] = NOBODY; mlen[s] = 0;
    loaded[s] = 0; in_runq[s] = 0; in_timer[s] = 0; dead[s] = 0;
    pending[s] = 0; nwaiting[s] = 0; val[s] = 0; ver[s] = 0; dirty[s] = 0
}

/* After the unlock that ends its ownership, a thread touches s only to
 * free it. */
inline let_go()
{
    if
    :: _pid < 2 -> c_hold[_pid] = 0
    :: _pid == WORKER_PID -> wk_hold = 0
    :: else
    fi
}

/* release_locked(): the owner gives s up.  Sets freeit when the releasing
 * thread must free s after unlocking. */
inline release_locked()
{
    assert(owner[s] == ME && ref_owner == ME);
    let_go();
    if
    :: mlen[s] == 0 ->
        status[s] = IDLE;
        owner[s] = NOBODY;
        ref_owner = NOBODY;
        if
        :: !loaded[s] ->
            assert(reg == s);
            reg = 0;
            dead[s] = 1;
            printf("pid %d: release struct %d: empty, unloaded: removed (dead)\n", _pid, s);
#ifdef MUT_FREE_LINKED
            freeit = 1;
#else
            freeit = (!in_runq[s] && !in_timer[s]);
#endif
            if
            :: in_runq[s] || in_timer[s] -> reached(12)   /* still linked */
            :: else
            fi
        :: else ->
            printf("pid %d: release struct %d: IDLE\n", _pid, s);
            if
            :: !in_timer[s] -> idle_arm()
            :: else
            fi
        fi
    :: else ->
        /* take_waiting() */
        w = 0;
        if
        :: nwaiting[s] > 0 ->
            k = 0;
            do
            :: k < mlen[s] && mwait[mb[s * CAP + k]] -> w = mb[s * CAP + k]; break
            :: k < mlen[s] && !mwait[mb[s * CAP + k]] -> k++
            :: else -> break
            od;
            k = 0;
            if
            :: w != 0 -> mwait[w] = 0; nwaiting[s]--
            :: else
            fi
        :: else
        fi;
        if
        :: w != 0 ->
            /* a blocked caller gets the work it waits for */
            owner[s] = TOKEN(SND(w));
            ref_owner = TOKEN(SND(w));
            printf("pid %d: release struct %d: hand-off to pid %d (m%d)\n", _pid, s, SND(w), w);
#ifndef MUT_NO_WAKE
            w_handoff[SND(w)] = s
#endif
        :: else ->
            status[s] = SCHEDULED;
            owner[s] = NOBODY;
            ref_owner = NOBODY;
            printf("pid %d: release struct %d: SCHEDULED\n", _pid, s);
#ifndef MUT_NO_SCHEDULE
            if
            :: !in_runq[s] -> runq_push()
            :: else
            fi
#endif
        fi;
        w = 0
    fi
}

/* pgsi_write() (persist.c): the put expects the version this struct
 * loaded or last wrote. */
inline do_write()
{
    own_check();
    assert(loaded[s]);
    assert(ver[s] == st_ver);
    st_ver++;
    st_val = val[s];
    ver[s] = st_ver;
    dirty[s] = 0;
    printf("pid %d: write struct %d: version %d, value %d\n", _pid, s, st_ver, st_val)
}

/* The owner is done with s (pgsi_request or pgsi_run_popped returns). */
inline finish()
{
    if
    :: _pid < 2 ->
        /* what pgsi_request returns: the reply, or PGS_ETIMEDOUT */
        assert(w_done[c] != gaveup);
        c_hold[c] = 0;
        cur[c] = 0;
        w_done[c] = 0;
        w_handoff[c] = 0;
        gaveup = 0;
        i++;
        ph = C_CALL
    :: else ->
        wk_hold = 0;
        ph = W_POP
    fi;
    s = 0; m = 0; mine = 0; budget = 0; direct = 0; code = 0
}

/* After the handler (and its write): deliver(). */
inline after_turn()
{
    if
    :: direct ->
        /* the direct path replies on the caller's own stack, no lock */
        assert(persist == 0 || st_val == expect);   /* the output gate */
        assert(cur[c] == m);
        w_done[c] = 1;
        persist = 0;
        ph = P_DRELEASE
    :: !direct && msync[m] -> ph = P_DELIVER
    :: !direct && !msync[m] -> persist = 0; m = 0; ph = P_LOCK   /* a cast */
    fi
}

/* ------------------------------------------------------------------------
 * The owner's steps: one atomic step each, selected by ph: a locked
 * region, or one unlocked access to the state or to storage.
 */
inline owner_step()
{
    if
    /* run_owned(): lock; look at the head; pop it, passivate, or release */
    :: ph == P_LOCK ->
        assert(alloc[s] && owner[s] == ME && status[s] == RUNNING);
        if
        :: mlen[s] > 0 -> m = mb[s * CAP]
        :: else -> m = 0
        fi;
        done = (m == 0);
        if
        :: !done && mine == 0 ->   /* done = !mine && budget-- <= 0 */
            if
            :: budget == 0 -> done = 1
            :: else -> budget--
            fi
        :: else
        fi;
        if
        :: !done && mine != 0 && m != mine && tmo > 0 ->
            if
            :: tmo--; done = 1; gaveup = 1;   /* the deadline passed: detach */
                reached(5);
                printf("pid %d: deadline passed before m%d: detach it, give up\n", _pid, mine);
#ifndef MUT_NO_DETACH
                mw[mine] = 0
#else
                skip
#endif
            :: skip
            fi
        :: else
        fi;
#ifdef MUT_REMOVE_NONEMPTY
        if
        :: justpass && !loaded[s] && mlen[s] > 0 ->
            /* mutant: passivation ends by removing the struct whatever is queued */
            printf("pid %d: MUTANT removes struct %d with %d queued\n", _pid, s, mlen[s]);
            let_go();
            status[s] = IDLE; owner[s] = NOBODY; ref_owner = NOBODY;
            reg = 0; dead[s] = 1;
            freeit = (!in_runq[s] && !in_timer[s]);
            out = 1
        :: else
        fi;
#endif
        if
        :: justpass && mlen[s] > 0 -> reached(6)  /* arrived while it passivated */
        :: else
        fi;
        justpass = 0;
        if
        :: out -> skip
        :: !out && done && m == 0 && pending[s] ->
            pending[s] = 0;
            printf("pid %d: struct %d empty, passivate_pending: passivate\n", _pid, s);
            ph = (dirty[s] -> P_PWRITE : P_UNLOAD)
        :: !out && done && !(m == 0 && pending[s]) ->
            release_locked();
            out = 1
        :: !out && !done ->
            printf("pid %d: pop m%d from struct %d\n", _pid, m, s);
            mb_pop();
            unwait(m);
            pending[s] = 0;
            if
            :: m == mine -> mine = 0; budget = 0
            :: else
            fi;
            ph = (loaded[s] -> P_HANDLE : P_LOAD)
        fi;
        check_inv();
        if
        :: out && freeit -> ph = P_FREE
        :: out && !freeit -> finish()
        :: else
        fi;
        out = 0; done = 0

    /* activate(): pgsi_load, or init (virtual) when there is no record */
    :: ph == P_LOAD ->
        own_check();
        if
        :: st_ver > 0 ->
            assert(st_val == expect);     /* a load sees the last write */
            val[s] = st_val;
            ver[s] = st_ver;
            printf("pid %d: load struct %d: version %d, value %d\n", _pid, s, st_ver, st_val);
            ph = P_HANDLE
        :: else ->
            assert(expect == 0);          /* nothing was handled yet */
            val[s] = 0;
            ver[s] = 0;
            printf("pid %d: struct %d: no record, init\n", _pid, s);
            ph = P_CWRITE
        fi;
        dirty[s] = 0;
        loaded[s] = 1

    /* create(): the first record */
    :: ph == P_CWRITE -> do_write(); ph = P_HANDLE

    /* invoke() + after_handler(): the handler runs on the state */
    :: ph == P_HANDLE ->
        own_check();
        assert(loaded[s]);
        assert(m != 0 && !handled[m]);    /* at most once */
        handled[m] = 1;
        assert(tick[m] == nhandled);      /* in arrival order */
        tick[m] = 0;
        nhandled++;
        assert(SEQ(m) == nseq[SND(m)]);   /* per-sender order */
        nseq[SND(m)]++;
        assert(val[s] == expect);         /* sees every earlier effect */
        val[s]++;
        expect++;
        persist = 1;
        printf("pid %d: handle m%d on struct %d: value %d\n", _pid, m, s, val[s]);
        if
        :: SND(m) == CASTER && NOPERSIST ->   /* PGS_NOPERSIST */
            persist = 0; dirty[s] = 1;
            printf("pid %d: (PGS_NOPERSIST: dirty)\n", _pid)
        :: SND(m) == CASTER -> skip
        :: SND(m) != CASTER -> skip
        :: crashes > 0 ->
            /* PGS_CRASH: crash() -> unload(); transient: reloaded lazily */
            crashes--;
            persist = 0;
            printf("pid %d: (PGS_CRASH: unload)\n", _pid);
            loaded[s] = 0; dirty[s] = 0; val[s] = 0; ver[s] = 0;
            expect = st_val
        fi;
        if
        :: persist -> ph = P_WRITE
        :: else -> after_turn()
        fi

    /* persist(): pgsi_write */
    :: ph == P_WRITE -> do_write(); after_turn()

    /* deliver() for a queued call: lock; reply to the waiter if attached */
    :: ph == P_DELIVER ->
        if
        :: mw[m] ->
            assert(cur[SND(m)] == m && !w_done[SND(m)]);   /* the right caller */
            assert(persist == 0 || st_val == expect);      /* the output gate */
            w_done[SND(m)] = 1;
            printf("pid %d: reply m%d to pid %d\n", _pid, m, SND(m));
            if
            :: TOKEN(SND(m)) != ME -> c_hold[SND(m)] = 0   /* it won't touch s again */
            :: else
            fi
        :: else -> reached(11);  /* its caller gave up: the reply is dropped */
            printf("pid %d: reply m%d dropped (detached)\n", _pid, m)
        fi;
        mw[m] = 0;
        msync[m] = 0;
        persist = 0;
        m = 0;
        ph = P_LOCK

    /* run_direct(): lock; clear passivate_pending; release */
    :: ph == P_DRELEASE ->
        pending[s] = 0;
        release_locked();
        check_inv();
        if
        :: freeit -> ph = P_FREE
        :: else -> finish()
        fi

    /* passivate(): write if dirty ... */
    :: ph == P_PWRITE ->
        reached(14);
#ifndef MUT_NO_DIRTY_WRITE
        do_write();
#endif
        ph = P_UNLOAD

    /* ... terminate, unload; run_owned() goes round again */
    :: ph == P_UNLOAD ->
        own_check();
        loaded[s] = 0; dirty[s] = 0; val[s] = 0; ver[s] = 0;
        printf("pid %d: passivate struct %d: unloaded\n", _pid, s);
        justpass = 1;
        ph = P_LOCK

    /* pgsi_server_free() after the unlock */
    :: ph == P_FREE -> sfree(); freeit = 0; finish()
    fi
}

/* ------------------------------------------------------------------------
 * Processes.
 */

/* pgsi_request() for N calls each. */
active [2] proctype Caller()
{
    OWNER_LOCALS;
    byte tmo = MAXTMO;

    ph = C_CALL;
    do
    :: atomic { ph == C_CALL && i < N ->
        code = CODE(c, i);
        lookup();
        c_hold[c] = s;
        cur[c] = code;
        tick[code] = ticket;
        ticket++;
        assert(!(status[s] == RUNNING && owner[s] == ME));  /* no EDEADLK here */
        if
#ifdef MUT_DIRECT_SCHEDULED
        :: status[s] != RUNNING ->
#else
        :: status[s] == IDLE ->
#endif
            /* run_direct: the message lives on this stack */
            reached(1);
            printf("pid %d: call m%d: struct %d IDLE: direct\n", _pid, code, s);
            status[s] = RUNNING;
            owner[s] = ME;
            assert(ref_owner == NOBODY);
            ref_owner = ME;
            direct = 1;
            m = code;
            ph = (loaded[s] -> P_HANDLE : P_LOAD)
        :: else ->
            /* run_queued */
            mw[code] = 1;
            msync[code] = 1;
            mb_push(code);
            if
            :: status[s] == SCHEDULED ->    /* take it over */
                reached(2);
                printf("pid %d: call m%d: struct %d SCHEDULED: take over\n", _pid, code, s);
                if
                :: pending[s] && mlen[s] == 1 -> reached(10)  /* from a passivation */
                :: else
                fi;
                status[s] = RUNNING;
                owner[s] = ME;
                assert(ref_owner == NOBODY);
                ref_owner = ME;
                mine = code;
                budget = 0;
                ph = P_LOCK
            :: status[s] == RUNNING ->      /* wait_reply */
                printf("pid %d: call m%d: struct %d RUNNING: queue and wait\n", _pid, code, s);
                mwait[code] = 1;
                nwaiting[s]++;
                ph = C_WAIT
            fi
        fi;
        check_inv()
       }
    :: ph == C_CALL && i >= N -> break

    /* wait_reply(): woken with the reply, or with ownership handed to me */
    :: atomic { ph == C_WAIT && (w_done[c] || w_handoff[c] != 0) ->
        if
        :: w_handoff[c] != 0 ->
            reached(3);
            printf("pid %d: woken with struct %d handed over\n", _pid, s);
            assert(w_handoff[c] == s && owner[s] == ME && !w_done[c]);
            mine = code;
            budget = 0;
            ph = P_LOCK
        :: else ->
            assert(c_hold[c] == 0);   /* deliver() let go of it */
            finish()
        fi
       }
    /* wait_reply(): the deadline passed; detach, the message stays queued */
    :: atomic { ph == C_WAIT && tmo > 0 && !w_done[c] && w_handoff[c] == 0 ->
        assert(alloc[s] && c_hold[c] == s);
        tmo--;
        gaveup = 1;
        reached(4);
        printf("pid %d: wait for m%d timed out: detach\n", _pid, code);
        unwait(code);
#ifndef MUT_NO_DETACH
        mw[code] = 0;
#endif
        check_inv();
        finish()
       }

    :: atomic { ph >= P_LOCK && ph <= P_FREE -> owner_step() }
    od
}

/* pgsi_send() for N casts. */
active proctype Sender()
{
    byte i, s, code, k, w;
    do
    :: atomic { i < N ->
        code = CODE(CASTER, i);
        lookup();
        tick[code] = ticket;
        ticket++;
        mb_push(code);
        printf("pid %d: cast m%d to struct %d\n", _pid, code, s);
        if
        :: status[s] == IDLE ->
            status[s] = SCHEDULED;
            if
            :: !in_runq[s] -> runq_push()
            :: else
            fi
        :: else
        fi;
        check_inv();
        s = 0;
        code = 0;
        i++
       }
    :: else -> break
    od
}

/* worker_main() + pgsi_run_popped(). */
active proctype Worker()
{
    OWNER_LOCALS;
    byte tmo = 0;

    ph = W_POP;
end_w:
    do
    /* runq_pop(), under the run-queue lock */
    :: atomic { ph == W_POP && len(runq) > 0 ->
        runq?s;
        rqn[s]--;
        wk_hold = s;
        printf("pid %d: popped struct %d from the run queue\n", _pid, s);
        ph = W_POPPED
       }
    /* pgsi_run_popped(): lock; the struct may be dead, or taken */
    :: atomic { ph == W_POPPED ->
        assert(alloc[s]);
        in_runq[s] = 0;
        if
        :: dead[s] && !in_timer[s] -> reached(9); ph = P_FREE
        :: dead[s] && in_timer[s] -> finish()              /* the timer frees it */
        :: !dead[s] && status[s] != SCHEDULED ->           /* a caller took it */
            reached(13);
#ifdef MUT_REQUEUE_TAKEN
            /* mutant: put it back for later instead of dropping the link */
            if
            :: !in_runq[s] -> runq_push()
            :: else
            fi;
#endif
            finish()
        :: !dead[s] && status[s] == SCHEDULED ->
            status[s] = RUNNING;
            owner[s] = ME;
            assert(ref_owner == NOBODY);
            ref_owner = ME;
            printf("pid %d: run struct %d\n", _pid, s);
            mine = 0;
            budget = BATCH;
            ph = P_LOCK
        fi;
        check_inv()
       }

    :: atomic { ph >= P_LOCK && ph <= P_FREE -> owner_step() }
    od
}

/* timer_main() + pgsi_idle_due().  The idle node comes due at any time;
 * "due" is always taken: a node found not due is re-armed unchanged,
 * which leads back to a state where it had not fired yet. */
active proctype Timer()
{
    byte ph = T_POP;
    byte s, k, w;
    bit freeit;
end_t:
    do
    :: atomic { ph == T_POP && (theap[1] || theap[2] || theap[3] || theap[NS]) ->
        if
        :: theap[1] -> s = 1
        :: theap[2] -> s = 2
        :: theap[3] -> s = 3
#if NS > 3
        :: theap[4] -> s = 4
#endif
        fi;
        theap[s] = 0;
        tm_hold = s;
        printf("pid %d: idle node of struct %d due\n", _pid, s);
        ph = T_DUE
       }
    :: atomic { ph == T_DUE ->
        assert(alloc[s] && in_timer[s]);
        in_timer[s] = 0;
        if
        :: dead[s] ->
            freeit = !in_runq[s];
            if
            :: freeit -> reached(8)
            :: else
            fi
        :: !dead[s] && status[s] == IDLE ->
            /* due: ask the next owner to passivate */
            status[s] = SCHEDULED;
            pending[s] = 1;
            printf("pid %d: struct %d IDLE: SCHEDULED, passivate_pending\n", _pid, s);
            if
            :: !in_runq[s] -> runq_push()
            :: else
            fi
        :: !dead[s] && status[s] != IDLE -> skip   /* release re-arms */
        fi;
        check_inv();
        if
        :: freeit -> ph = T_FREE
        :: else -> tm_hold = 0; s = 0; ph = T_POP
        fi
       }
    :: atomic { ph == T_FREE ->
        sfree();
        freeit = 0; tm_hold = 0; s = 0; ph = T_POP
       }
    od
}

/* The end: runs only when nothing else can move. */
active proctype Checker()
{
    byte i;
    timeout ->
    atomic {
        assert(nhandled == TOTAL);                  /* none lost */
        i = 1;
        do
        :: i <= TOTAL -> assert(handled[i] && !mw[i] && !mwait[i] && !msync[i]); i++
        :: else -> break
        od;
        i = 0;
        do
        :: i < NSEND -> assert(nseq[i] == N); i++
        :: else -> break
        od;
        /* every struct passivated, removed and freed; nothing queued */
        assert(reg == 0);
        i = 1;
        do
        :: i <= NS -> assert(!alloc[i]); i++
        :: else -> break
        od;
        assert(len(runq) == 0 && ref_owner == NOBODY);
        assert(wk_hold == 0 && tm_hold == 0 && c_hold[0] == 0 && c_hold[1] == 0);
        /* everything handled is stored */
        assert(st_val == expect)
    }
}
