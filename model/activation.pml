/*
 * activation.pml -- the pgs activation/passivation protocol and its write
 * pipeline (group commit and the output gate), for spin.
 *
 * Models docs/protocol.md as implemented by src/server.c and
 * src/commit.c, with the idle timer of src/timer.c, the worker loop of
 * src/runtime.c and the load/write paths of src/persist.c.  Keep them in
 * step: a change to one is a change to all.  model/check.sh (ctest -R
 * spin) checks it exhaustively, checks that the mutants listed below are
 * caught, and that every scenario probe is reached.
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
 * state: a counter), ver (s->version: the version storage holds once the
 * struct's writes land) and dirty; and, under the commit lock, pend
 * (s->pending), comm (s->committing) and wr (s->writes).  Per message:
 * m->w attached (mw; after the turn, the held output's h->w), m->waiting
 * (mwait), m->sync (msync; set for direct calls too, as h->sync is).
 * Per caller: its waiter (w->done, w->handoff, w->held).  Storage: one
 * record, st_ver (0 = no record yet) and st_val.  The run queue is a
 * channel of struct ids; the timer heap a set of ids (theap).
 *
 * The write pipeline (commit.c).  Write requests (wreqs) come from a pool
 * of NW ids; per wreq: its state (queued as s->pending, taken into a
 * batch, committed), its struct, its base version (the expected version)
 * and the value it writes.  A write while s has a pending wreq coalesces
 * into it (same base, new value); else a new wreq is queued and counted
 * in s->writes.  nq is c_nsync (every write here is sync), c_busy a batch
 * being committed, bq the batches taken and not yet delivered in commit
 * order (c_seq/c_delivered; a batch is named by the thread running it).
 * The held outputs of all turns form one FIFO (hq), each entry naming the
 * wreq it waits behind (hqw) and the version that must be durable before
 * it goes (hqv): a wreq's own held list is its entries, in order.  With
 * one ref a batch holds at most one wreq (take() takes the queued one).
 *
 * Each process is a loop of atomic steps selected by its local `ph`.  The
 * shard lock and the commit lock are modelled by atomicity: every region
 * of the code between a lock and its unlock is one step (the run-queue,
 * timer and commit locks nest inside the shard lock, so runq_push,
 * idle_arm and pgsi_gate belong to that step); a storage access with no
 * lock held is a step of its own.  Adjacent regions are merged into one
 * step only where every step another thread could take between them
 * commutes with one of the two (Lipton's reduction), so no behaviour is
 * lost; each merge is noted where it is made.  In short: the handler
 * (which touches only the owner's state) with the write after it and,
 * for a loaded state, with the locked step that handed it the message;
 * a load with the wait that found no write in flight (from then on only
 * this owner can add one); runq_pop / heap_remove with the locked check
 * after them (the in_runq / in_timer flags keep everyone else off the
 * link meanwhile); a free with the unlock before it (nothing can reach a
 * removed, unlinked struct); the storage commit with run_batch's next
 * locked region; complete_one's take with its first release; and
 * pgsi_writes_done with the c_delivered update.  Kept apart: everything
 * whose order matters -- a write and the gate after it, commit_lead and
 * the gate, the take and the commit (c_busy is seen in between), each
 * round of complete_one and each held release, the last round and
 * pgsi_writes_done (a gate in between finds nothing to wait on: GATE_NOW
 * while s->writes > 0).
 *
 * Messages: NCALLER callers (1 or 2) make NCALL calls each (codes
 * 1..NCALL, then NCALL+1..2*NCALL), the caster NCAST casts (the codes
 * after).  Every handled message increments the counter.  Calls always
 * persist (write mode sync); a cast's handler may return PGS_NOPERSIST
 * (the state stays dirty until a later write or the passivation writes
 * it); a handler may crash, CRASHES times in all (transient lifecycle:
 * the state is dropped and reloaded, by the next message, from the last
 * write, once it has landed).  The first message finds no record and
 * runs init (a virtual behaviour), whose write is queued like any other.
 * Every turn has outputs (its reply, or a cast's sends): released at once
 * when nothing of the server is in flight, else held behind its last
 * write (pgsi_gate).
 *
 * Who commits: NCOMMIT committer threads (1 by default: a second one only
 * adds a waiter for the same wake-ups and another thread to run batches,
 * which callers and owners already do; check.sh's SPIN_DEEP run uses the
 * code's PGSI_COMMITTERS = 2), a caller leading for its own reply
 * (pgsi_commit_lead in process() and in await_durable()), and any owner
 * waiting for its writes before a load or after a passivation's write
 * (pgsi_wait_writes).  The committers' condition variable is modelled
 * exactly (k_sleep: a signal wakes one committer that waits, else it is
 * lost), so a lost wake-up shows as a deadlock.  The c_done broadcast is
 * modelled by the waiters' guards (writes == 0, or a batch can be taken),
 * which lets them run no later than the code.
 *
 * With -DINLINE the engine is PGS_STORAGE_INLINE (memory:): pgsi_write
 * stores within the turn, s->writes stays 0, outputs go at once, and the
 * committer never runs: the pre-pipeline protocol.
 *
 * Time is nondeterminism.  An idle node in the heap may come due at any
 * moment; it is always found due (a node found not due is re-armed as it
 * was, which leads back to a state where it had not fired: nothing new).
 * A caller may time out, MAXTMO times per caller, wherever the code looks
 * at its deadline: in wait_reply(), in run_owned() before its own message,
 * and in await_durable().
 *
 * ------------------------------------------------------------------------
 * Mapping to the code (src/server.c unless said otherwise; "+" joins the
 * regions one step merges)
 *
 *  Caller  C_CALL      pgsi_request(): lock; lookup() (pgsi_reg_find, or
 *                      pgsi_server_new + pgsi_reg_insert, registry.c);
 *                      IDLE -> RUNNING, run_direct() -> process() (+ the
 *                      turn if loaded), else run_queued(): mb_push, then
 *                      SCHEDULED -> take it over, or RUNNING by another
 *                      -> wait_reply() sets waiting
 *          C_WAIT      wait_reply(): woken with w->done (return) or
 *                      w->handoff (run_owned), or the deadline passes:
 *                      w->held ? held->w = NULL : unwait + m->w = NULL
 *          C_AWAIT     await_durable(): lock, read w->done; +
 *                      pgsi_commit_lead (commit.c): commit lock; !c_busy
 *                      && c_nsync -> start_batch on this thread
 *          C_SLEEP     await_durable(): pgsi_sleep until w->done, or the
 *                      deadline: held->w = NULL, PGS_ETIMEDOUT
 *  Sender              pgsi_send() (a cast): lock; lookup; mb_push; IDLE
 *                      -> SCHEDULED + pgsi_runq_push unless in_runq
 *  Worker  W_POP       worker_main() (runtime.c): runq_pop; +
 *                      pgsi_run_popped(): lock; in_runq = 0; dead and
 *                      !in_timer -> pgsi_server_free; skip if dead or not
 *                      SCHEDULED; else RUNNING, run_owned(budget BATCH =
 *                      PGSI_BATCH)
 *  Timer               timer_main() (timer.c): heap_remove of the due
 *                      node; + pgsi_idle_due(): lock; in_timer = 0; dead
 *                      and !in_runq -> pgsi_server_free; IDLE ->
 *                      SCHEDULED + passivate_pending + pgsi_runq_push
 *                      unless in_runq
 *  Committer K_CHECK   committer_main() (commit.c), loop head after a
 *                      batch: commit lock; !c_busy && ready() ->
 *                      start_batch, else cond_wait(c_cv)
 *          K_SLEEP     cond_wait(c_cv) until signalled (k_sleep cleared);
 *                      the same check under the re-taken lock
 *  owner steps (callers and worker), inline owner_step:
 *          P_LOCK      run_owned() loop head: lock; head; budget and
 *                      deadline; empty + passivate_pending -> passivate()
 *                      (+ unload() if not dirty; else + pgsi_write,
 *                      P_PWAIT); done -> release_locked() (+
 *                      pgsi_server_free); else mb_pop + unwait +
 *                      passivate_pending = 0, process(lead = is_mine) (+
 *                      the turn if loaded, else P_WAITW)
 *          P_WAITW     turn() -> activate() -> pgsi_load (persist.c) ->
 *                      pgsi_wait_writes (commit.c): commit lock; writes
 *                      == 0 -> go on (+ pgs_storage_get and decode + the
 *                      turn, or, no record, create(): pgsi_init_state +
 *                      pgsi_write, then P_HANDLE); !c_busy && c_nsync ->
 *                      start_batch on this thread; else cond_wait(c_done)
 *          P_GET       pgsi_load without the wait (MUT_LOAD_NO_WAIT only)
 *          P_HANDLE    the turn: invoke() + after_handler() (PERSIST /
 *                      NOPERSIST: dirty / CRASH: crash() -> unload) +
 *                      persist() -> pgsi_write (persist.c) ->
 *                      pgsi_submit_put -> submit() + pending_with_room()
 *                      (commit.c): commit lock; coalesce into s->pending
 *                      or queue a new wreq (writes++); s->version; wake
 *                      the committer unless c_busy or ctx->lead
 *          P_LEAD      process(): lead && !pgsi_nothing_in_flight ->
 *                      pgsi_commit_lead (commit.c)
 *          P_OUTPUT    process() -> output(): pgsi_nothing_in_flight +
 *                      gate() -> pgsi_gate (commit.c): lock; commit lock;
 *                      last_write() ? GATE_HELD (append to its held list,
 *                      w->held = copy, wake unless lead or c_busy) :
 *                      GATE_NOW (+ the direct reply, or release(): lock;
 *                      to_waiter); pgsi_msg_free
 *          P_DRELEASE  run_direct() after process(): lock;
 *                      passivate_pending = 0; release_locked(); read
 *                      w->done (+ pgsi_server_free)
 *          P_PWAIT     passivate() -> pgsi_wait_durable (persist.c) ->
 *                      pgsi_wait_writes, as P_WAITW (+ unload())
 *  batch steps (any thread that commits), inline batch_step:
 *          start_batch start_batch() + take() (commit.c): c_busy = 1;
 *                      s->pending -> s->committing; run_batch() follows
 *          B_COMMIT    commit_batch(): pgs_storage_batch, expected
 *                      version w->base; + run_batch(): commit lock;
 *                      c_busy = 0; more; c_delivered == seq - 1 ?
 *                      (signal c_cv if more) : B_WAITD
 *          B_WAITD     run_batch(): cond_wait(c_done) until the previous
 *                      batch is delivered; then signal c_cv if more
 *          B_ROUND     complete_one(): commit lock; take w's held list
 *                      (+ release the first, as B_REL); none left ->
 *                      s->committing = NULL if it is w, then B_DONE
 *          B_REL       pgsi_held_release_all -> release(): lock; h->w ?
 *                      to_waiter : dropped (a cast's: no lock, no waiter)
 *          B_DONE      pgsi_writes_done (commit.c): lock; commit lock;
 *                      writes--; pgsi_release_idle (+ pgsi_server_free);
 *                      wreq_free; + run_batch(): commit lock;
 *                      c_delivered = seq
 *  inline release_locked   release_locked() + take_waiting(); its IDLE
 *                      branch arms the idle node (pgsi_idle_arm, timer.c)
 *                      or, unloaded, calls pgsi_release_idle
 *  inline release_idle pgsi_release_idle(): leaves the registry only when
 *                      idle, unloaded, empty and s->writes == 0
 *  inline submit       pgsi_write -> pgsi_submit_put -> submit() +
 *                      pending_with_room() (or, -DINLINE, pgs_storage_put)
 *  Checker             the end: runs only when nothing else can move
 *
 * Write failures (-DFAIL=n; check.sh's "fail" run): n commits may fail.
 * A failed write sets s->write_error (before the next take, so the
 * server's later writes fail with it without storage); the outputs held
 * behind them are released as failures; a turn gated while the error is
 * set gets GATE_FAILED and gate() releases it after unlocking
 * (P_FAILREL); the next turn unloads and recovers (P_RECOVER:
 * pgsi_recover, then reload); a passivation whose write failed keeps the
 * state, dirty (pgsi_wait_durable).  The ghost `lost` marks effects
 * dropped with a failed write: a load then resets what it expects; failed
 * outputs are exempt from the durability check, and a GATE_FAILED one
 * from the turn-order check (a failed turn sends nothing; its error may
 * overtake earlier held errors), not from the once-only and reply checks.
 * This run found a stale waiter, since fixed: gate() released a
 * GATE_FAILED turn through the copy's waiter, set before it dropped the
 * lock, so a caller whose deadline passed in between (w->held not set: it
 * detaches m->w instead) returned, and then got to_waiter() on its dead
 * stack frame.  The code now releases through m->w, read under the
 * release's lock; -DMUT_STALE_WAITER brings the bug back, and spin must
 * catch it.

 * Not modelled: stop/delete/start kinds, outbox contents (sends from
 * handlers; a turn's outputs are one token, released in order), write
 * failures but with -DFAIL (storage errors other than a failed commit,
 * ENOMEM), async/on_passivate write modes (the committer's deadline),
 * shutdown (pgsi_passivate_all, pgsi_commit_drain), nested calls
 * (EDEADLK), send_after timers, more refs (so batches of more than one
 * server).  One worker: with one ref, in_runq keeps at most one run-queue
 * link per struct, so a second worker could only pop a different (dead)
 * struct of the ref, whose handling is a single locked step.
 *
 * ------------------------------------------------------------------------
 * Properties.  Assertions, plus spin's end-state check (every final state
 * has the callers and the sender terminated, the worker waiting for an
 * empty run queue, the timer for an empty heap, the committer asleep),
 * plus, in check.sh's -DNP run, the absence of any cycle: every execution
 * terminates, so every message is eventually handled and every output
 * released (no livelock, without fairness).
 *
 *  - exactly once: a message is handled at most once (handled[]), and at
 *    the end every sent message was handled (Checker);
 *  - order: messages are handled in the order they arrived under the
 *    shard lock (tick[]), which implies per-sender FIFO (nseq[], checked
 *    on its own);
 *  - one owner: every unlocked step on state or storage is made by the
 *    RUNNING owner of the registered struct, and ownership of the ref,
 *    over all its structs, is held by one thread at a time (ref_owner);
 *  - storage: every commit expects the stored version (wbase == st_ver: a
 *    stale or second writer would conflict) and so versions only grow;
 *    a load never reads storage while a write of the ref is in flight
 *    (no live wreq) and sees every effect handled so far (st_val ==
 *    expect); the handler sees the state every earlier message left
 *    (val == expect);
 *  - the output gate: a turn's outputs (a reply, a cast's sends) are
 *    released only once the write of that turn and of every earlier turn
 *    of the server is durable (released at once: st_ver == the last
 *    submitted version; held: st_ver >= the version submitted when it was
 *    gated), and outputs are released in turn order (an output released
 *    at once finds nothing held; a held one is the oldest held); at the
 *    end every output was released exactly once (nout);
 *  - replies: a reply goes to the caller whose message it answers, while
 *    that caller still waits for it; a caller that timed out gets none;
 *    a caller that gives up touches its queued message only while it
 *    still exists (not yet output and freed);
 *  - the invariants of docs/protocol.md at every lock release: IDLE =>
 *    empty mailbox; SCHEDULED => (mailbox or passivate_pending) and
 *    in_runq; RUNNING => one owner; nwaiting = number of waiting
 *    messages; a registered, idle, unloaded struct has writes in flight
 *    (it is kept only for them, and their completion removes it);
 *    s->writes = its live wreqs; pending/committing name live wreqs of s;
 *  - memory: a struct is freed only when dead and linked by nothing
 *    (registry, run queue, timer heap, a wreq, the worker that popped
 *    it, a caller that may still touch it), never used after free; a
 *    wreq is used only while alive; at the end nothing is allocated:
 *    every struct passivated and freed, every wreq completed.
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
 *  MUT_FREE_LINKED      pgsi_release_idle frees a removed struct even
 *                       while the run queue or the timer heap links it
 *  MUT_NO_DETACH        a timed-out caller leaves m->w attached
 *  MUT_NO_DIRTY_WRITE   passivation unloads a dirty state without writing
 *  MUT_REQUEUE_TAKEN    a worker that finds its popped server taken puts
 *                       it back on the run queue (a livelock: only the
 *                       -DNP run sees it)
 *  MUT_NO_GATE          (a) output() releases a turn's outputs at once
 *                       even while a write of the server is in flight
 *  MUT_REMOVE_WRITING   (b) pgsi_release_idle ignores s->writes: the
 *                       struct leaves the registry with writes in flight
 *  MUT_LOAD_NO_WAIT     (c) pgsi_load reads storage without
 *                       pgsi_wait_writes
 *  MUT_OUT_OF_ORDER     (d) run_batch() releases its outputs without
 *                       waiting for the previous batch's (c_delivered)
 *  MUT_ONE_ROUND        complete_one() releases one round of held
 *                       outputs and stops: an output gated meanwhile is
 *                       never released
 *  MUT_GATE_OLDEST      last_write() prefers s->committing to s->pending:
 *                       a turn's outputs wait behind an older write than
 *                       its own
 *  MUT_NO_SIGNAL        the committer is never woken (pthread_cond_signal
 *                       lost): a write no caller waits for is never
 *                       committed
 *
 * Reading a trail: every step printf's what it did (pan ignores printf),
 * so `spin <the same -D flags> -t -k activation.pml.trail activation.pml`
 * in the run's directory narrates the interleaving, one line per step
 * ("pid 3: pop m3 from struct 1", ...); add -p for every statement.  Pids
 * (two callers): 0 and 1 the callers, 2 the caster, 3 the worker, 4 the
 * timer, 5 (and 6) the committer(s) (one caller: each one less).  Message m<code>:
 * caller 0's calls first, then caller 1's, then the casts (the defaults:
 * m1, m2 the calls, m3 the cast).
 *
 * Scenario probes.  Each reached(n) marks a scenario the properties rely
 * on.  check.sh collects, from its exhaustive runs, the probes reached
 * (c_code sets a bit outside the state vector; pan prints the set at
 * exit) and fails if one is never reached, so the model cannot pass by
 * exercising nothing.  -DREACH=n instead turns probe n into a failing
 * assertion, for a trail that shows how it is reached.
 *   1 direct path               2 SCHEDULED take-over
 *   3 hand-off to a waiter      4 wait_reply timeout
 *   5 owner timeout before its message
 *   6 messages arriving while the owner passivates
 *   7 the ref re-created after its struct was removed
 *   8 the timer frees a dead struct
 *   9 the worker frees a dead struct
 *  10 a caller takes over a passivation the timer scheduled
 *  11 a detached call's reply dropped
 *  12 a struct removed while still linked
 *  13 the worker pops a struct a caller took
 *  14 passivation writes a dirty state
 *  15 a turn runs while the server's previous write is in flight
 *  16 a write coalesces into a pending write that already holds an
 *     earlier turn's output
 *  17 a reload finds a write of the server in flight and waits for it
 *  18 a message arrives at an unloaded struct kept registered only for
 *     its writes
 *  19 a batch committed while the previous one still delivers waits for
 *     it (two batches overlap)
 *  20 a caller commits its own write from process() (no thread hop)
 *  21 a caller commits from await_durable()
 *  22 the committer thread commits a batch
 *  23 an output held behind a write already taken into a batch
 *  24 complete_one takes a second round (an output gated while it
 *     released the first)
 *  25 a passivation unloads at once while an earlier write is in flight
 *  26 the last write's completion removes the struct and frees it
 *  27 a caller gives up while its reply is held; the reply is dropped
 *  28 an owner waiting for its writes (load or passivation) commits
 *  29 the last write's completion removes the struct while the run queue
 *     or the timer still links it (they free it)
 *  30 a released, unloaded struct stays registered for its writes
 */

/* Bounds.  The defaults are check.sh's "base" run; its other runs change
 * them with -D (see check.sh for the list and what each adds). */
#ifndef NCALLER
#define NCALLER 2       /* caller threads */
#endif
#ifndef NCALL
#define NCALL 1         /* calls per caller */
#endif
#ifndef NCAST
#define NCAST 1         /* casts */
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
#define REACH 0         /* -DREACH=n: probe reached(n) fails when reached */
#endif
#if REACH > 0
#define reached(n) assert(REACH != n)
#else
c_decl {
    /* The probes reached, outside the state vector; printed at exit. */
    unsigned long pgs_reached;
    static void pgs_report(void) __attribute__((destructor));
    static void pgs_report(void)
    {
        int i;
        printf("probes reached:");
        for (i = 1; i < 64; i++)
            if (pgs_reached & (1UL << i))
                printf(" %d", i);
        printf("\n");
    }
}
#define reached(n) c_code { pgs_reached |= 1UL << n; }
#endif

#if NCALLER < 1 || NCALLER > 2
#error NCALLER must be 1 or 2
#endif
#define NSEND 3
#define CASTER 2                 /* the caster's sender index */
#define NCALLS (NCALLER * NCALL)
#define TOTAL (NCALLS + NCAST)
#define CAP TOTAL
#define HQ TOTAL
#ifndef NS
#define NS 3            /* struct pool: 3 or 4; lookup asserts it is enough */
#endif
#if NS < 3 || NS > 4
#error NS must be 3 or 4
#endif
#ifndef NCOMMIT
#define NCOMMIT 1       /* committer threads (the code runs PGSI_COMMITTERS = 2) */
#endif
#if NCOMMIT < 1 || NCOMMIT > 2
#error NCOMMIT must be 1 or 2
#endif
#define NBATCH (NCALLER + 1 + NCOMMIT)   /* threads that can run a batch */
#ifndef NW
#define NW (NBATCH + 1) /* wreq pool: a pending one, one per batch */
#endif

#define SND(code) ((code) <= NCALL -> 0 : ((code) <= NCALLS -> 1 : CASTER))
#define SEQ(code) ((code) <= NCALLS -> (code) - 1 - SND(code) * NCALL : (code) - 1 - NCALLS)
#define CODE(snd, i) ((snd) == CASTER -> NCALLS + (i) + 1 : (snd) * NCALL + (i) + 1)
#define NMSG(snd) ((snd) == CASTER -> NCAST : ((snd) < NCALLER -> NCALL : 0))

#define IDLE 0
#define SCHEDULED 1
#define RUNNING 2

/* wreq states */
#define W_FREE 0
#define W_QUEUED 1      /* s->pending, in the commit queue */
#define W_BATCH 2       /* taken into a batch, not yet committed */
#define W_DONE 3        /* committed (durable), being completed */

#define NOBODY 0
#define ME (_pid + 1)            /* pgsi_thread_token() */
#define TOKEN(c) ((c) + 1)       /* callers are pids 0 and 1 */
#define ISCALLER (_pid < NCALLER)  /* callers are pids 0 (and 1) */
#define SENDER_PID NCALLER
#define WORKER_PID (NCALLER + 1)
#define TIMER_PID (NCALLER + 2)
#define COMMITTER_PID (NCALLER + 3)     /* the first committer */
#define KI (_pid - COMMITTER_PID)         /* a committer's index */

/* Steps (the value of a process's `ph`: what it does next). */
#define P_LOCK     1    /* run_owned(): the locked head check */
#define P_WAITW    2    /* pgsi_load -> pgsi_wait_writes, then the load */
#define P_GET      3    /* pgsi_load without the wait (MUT_LOAD_NO_WAIT) */
#define P_HANDLE   4    /* invoke() + after_handler() + persist() */
#define P_LEAD     5    /* process(): pgsi_commit_lead if lead */
#define P_OUTPUT   6    /* output(): gate or release */
#define P_DRELEASE 7    /* run_direct(): lock, release_locked */
#define P_PWAIT    8    /* passivate(): pgsi_wait_durable, then unload */
#define C_CALL     9    /* pgsi_request(): the locked lookup */
#define C_WAIT    10    /* wait_reply() */
#define C_AWAIT   11    /* await_durable(): read done, commit_lead */
#define C_SLEEP   12    /* await_durable(): sleep for the reply */
#define W_POP     13    /* worker_main(): runq_pop + pgsi_run_popped() */
#define B_COMMIT  14    /* commit_batch() + run_batch()'s c_busy = 0 */
#define B_WAITD   15    /* run_batch(): wait for the previous delivery */
#define B_ROUND   16    /* complete_one(): take the held list */
#define B_REL     17    /* release(): one held output */
#define B_DONE    18    /* pgsi_writes_done(), free, c_delivered = seq */
#define K_CHECK   19    /* committer_main(): locked check */
#define K_SLEEP   20    /* committer_main(): cond_wait(c_cv) */
#define P_FAILREL 21    /* -DFAIL: gate(): release of a GATE_FAILED turn */
#define P_RECOVER 22    /* -DFAIL: turn(): unload + pgsi_recover */

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

/* ---- the write pipeline (commit lock) */
byte pend[NS + 1];               /* s->pending: a wreq id, 0: none */
byte comm[NS + 1];               /* s->committing */
byte wr[NS + 1];                 /* s->writes */
byte wst[NW + 1];                /* W_FREE .. W_DONE */
byte ws[NW + 1];                 /* w->s */
byte wbase[NW + 1];              /* w->base: the expected version */
byte wval[NW + 1];               /* the state it writes */
byte nq;                         /* queued writes: c_nsync */
bit c_busy;
byte bq[NBATCH];                 /* batches taken, not delivered: runner pid+1 */
byte bqn;
bit k_sleep[NCOMMIT];            /* committer i waits on c_cv */
/* held outputs, oldest first (each wreq's held list, merged) */
byte hq[HQ];                     /* the turn's message */
byte hqw[HQ];                    /* the wreq it waits behind */
byte hqv[HQ];                    /* the version that must be durable first */
byte hqn;

/* ---- messages (shard lock) */
bit mw[TOTAL + 1];               /* m->w != NULL (then h->w) */
bit mwait[TOTAL + 1];            /* m->waiting */
bit msync[TOTAL + 1];            /* m->sync || m->direct (h->sync) */
bit mgone[TOTAL + 1];            /* a queued message, output and freed */

/* ---- waiters, one per caller (on the caller's stack in C) */
bit w_done[2];
byte w_handoff[2];               /* struct handed to me, 0: none */
bit w_held[2];                   /* w->held != NULL */

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
byte lastver, lastval;           /* the last write submitted (s->version) */
byte nout;                       /* turns whose outputs were released */
byte nwreq;                      /* live wreqs */
byte ref_owner;                  /* token owning the ref (any struct of it) */
byte rqn[NS + 1];                /* run-queue entries per struct */
byte wk_hold;                    /* struct the worker popped (and runs) */
byte c_hold[2];                  /* struct a caller may still touch */
byte cur[2];                     /* the message a caller is in pgsi_request for */
byte crashes = CRASHES;

#ifdef FAIL
/* -DFAIL=n: n commits may fail (see "Write failures" in the header) */
bit werr[NS + 1];                /* s->write_error */
bit wfail[NW + 1];               /* w->status != 0 */
byte fails = FAIL;
bit lost;                        /* ghost: effects lost to a failed write */
#define WERR(x) werr[x]
#define WFAILED(w) wfail[w]
#else
#define WERR(x) 0
#define WFAILED(w) 0
#endif

/* Locals of every thread that can own a server (callers and the worker),
 * and of every thread that can run a batch (those and the committer). */
#define BATCH_LOCALS \
    byte bw, bs, bret, rtake, hc; \
    bit bmore, bfree, bround
#define OWNER_LOCALS \
    byte c = _pid; \
    byte ph, i, s, m, mine, budget, k, j, w, code; \
    bit done, out, freeit, persist, justpass, gaveup, direct, lead, awaitme, cw; \
    BATCH_LOCALS

/* ------------------------------------------------------------------------
 * Helpers.  All run inside an enclosing atomic block.
 */

/* The pipeline's own invariants (commit lock). */
inline check_pipe()
{
    k = 1; w = 0;
    do
    :: k <= NW -> w = w + (wst[k] == W_QUEUED); k++
    :: else -> break
    od;
    assert(w == nq);
    k = 1;
    do
    :: k <= NS ->
        assert(pend[k] == 0 || (wst[pend[k]] == W_QUEUED && ws[pend[k]] == k));
        assert(comm[k] == 0 || (wst[comm[k]] >= W_BATCH && ws[comm[k]] == k));
        assert(wr[k] == 0 || alloc[k]);
        /* s->writes counts its live wreqs */
        w = 0; j = 1;
        do
        :: j <= NW -> w = w + (wst[j] != W_FREE && ws[j] == k); j++
        :: else -> break
        od;
        assert(w == wr[k]);
        j = 0;
        k++
    :: else -> break
    od;
    assert(nwreq <= NW && bqn <= NBATCH);
    k = 0; w = 0
}

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
        /* an idle unloaded struct is registered only for its writes */
        assert(status[reg] != IDLE || loaded[reg] || wr[reg] > 0);
        k = 0; w = 0;
        do
        :: k < mlen[reg] -> w = w + mwait[mb[reg * CAP + k]]; k++
        :: else -> break
        od;
        assert(w == nwaiting[reg]);
        k = 0; w = 0
    :: else -> assert(ref_owner == NOBODY)
    fi;
    check_pipe()
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

/* pthread_cond_signal(&rt->c_cv): wakes one committer that waits, if
 * any (which one: any). */
inline signal()
{
#ifndef MUT_NO_SIGNAL
    if
    :: k_sleep[0] -> k_sleep[0] = 0; printf("pid %d: signal committer 0\n", _pid)
#if NCOMMIT > 1
    :: k_sleep[1] -> k_sleep[1] = 0; printf("pid %d: signal committer 1\n", _pid)
#endif
    :: else
    fi
#else
    skip    /* mutant: the wake-up is lost */
#endif
}

/* A message at a registered struct (pgsi_send, pgsi_request). */
inline arrive_probe()
{
    if
    :: status[s] == IDLE && !loaded[s] && wr[s] > 0 -> reached(18)
    :: else
    fi
}

/* lookup(): find the registered struct, or create an unloaded IDLE one */
inline lookup()
{
    if
    :: reg != 0 -> s = reg; arrive_probe()
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

/* pgsi_server_free(x), after the unlock that removed or unlinked x (one
 * step with it: nothing can reach such a struct).  Nothing may link x
 * any more. */
inline sfree(x)
{
    assert(alloc[x] && dead[x] && reg != x && mlen[x] == 0);
    assert(!in_runq[x] && rqn[x] == 0 && !in_timer[x] && !theap[x]);
    assert(wr[x] == 0 && pend[x] == 0 && comm[x] == 0);
    assert(wk_hold != x || _pid == WORKER_PID);
    assert(c_hold[0] != x || _pid == 0);
    assert(c_hold[1] != x || _pid == 1);
    k = 1;
    do
    :: k <= NW -> assert(wst[k] == W_FREE || ws[k] != x); k++   /* no wreq links it */
    :: else -> break
    od;
    k = 0;
    printf("pid %d: free struct %d\n", _pid, x);
    alloc[x] = 0; status[x] = IDLE; owner[x] = NOBODY; mlen[x] = 0;
    loaded[x] = 0; in_runq[x] = 0; in_timer[x] = 0; dead[x] = 0;
    pending[x] = 0; nwaiting[x] = 0; val[x] = 0; ver[x] = 0; dirty[x] = 0
}

/* After the unlock that ends its ownership, a thread touches s only to
 * free it. */
inline let_go()
{
    if
    :: ISCALLER -> c_hold[_pid] = 0
    :: _pid == WORKER_PID -> wk_hold = 0
    :: else
    fi
}

/* pgsi_release_idle(x) (shard lock held): x leaves the registry if it is
 * idle, unloaded, empty and has no write in flight.  Sets fr when the
 * calling thread must free x after unlocking. */
#ifndef MUT_REMOVE_WRITING
#define NO_WRITES(x) (wr[x] == 0)
#else
#define NO_WRITES(x) 1           /* mutant: writes in flight ignored */
#endif
inline release_idle(x, fr)
{
    if
    :: !dead[x] && status[x] == IDLE && mlen[x] == 0 && !loaded[x] && NO_WRITES(x) ->
        assert(reg == x);
        reg = 0;
        dead[x] = 1;
        printf("pid %d: struct %d idle, unloaded, no write in flight: removed (dead)\n", _pid, x);
#ifdef MUT_FREE_LINKED
        fr = 1;
#else
        fr = (!in_runq[x] && !in_timer[x]);
#endif
        if
        :: in_runq[x] || in_timer[x] -> reached(12)   /* still linked */
        :: else
        fi
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
            release_idle(s, freeit);
            if
            :: reg == s ->   /* its last write takes it out */
                reached(30);
                printf("pid %d: release struct %d: unloaded, %d write(s) in flight: kept\n", _pid, s, wr[s])
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

#ifdef INLINE
/* pgsi_write() on a PGS_STORAGE_INLINE engine: pgs_storage_put within
 * the turn, expecting the version this struct loaded or last wrote. */
inline submit()
{
    own_check();
    assert(loaded[s] && wr[s] == 0);
    assert(ver[s] == st_ver);
    st_ver++;
    st_val = val[s];
    ver[s] = st_ver;
    lastver = st_ver;
    lastval = st_val;
    dirty[s] = 0;
    printf("pid %d: write struct %d: version %d, value %d\n", _pid, s, st_ver, st_val)
}
#else
/* pgsi_write() -> pgsi_submit_put -> submit() + pending_with_room()
 * (commit lock): the state becomes s's next version, coalesced into its
 * pending write if it has one, else a new wreq last in the queue. */
inline submit()
{
    own_check();
    assert(loaded[s]);
    if
    :: pend[s] != 0 ->
        w = pend[s];
        k = 0;
        do
        :: k < hqn && hqw[k] != w -> k++
        :: else -> break
        od;
        if
        :: k < hqn -> reached(16)   /* an earlier turn's output waits on it */
        :: else
        fi;
        k = 0;
        printf("pid %d: write struct %d: coalesced into pending w%d\n", _pid, s, w)
    :: else ->
        w = 1;                          /* malloc */
        do
        :: w <= NW && wst[w] != W_FREE -> w++
        :: else -> break
        od;
        assert(w <= NW);                /* the pool is big enough */
        wst[w] = W_QUEUED;
        ws[w] = s;
        wbase[w] = ver[s];
        pend[s] = w;
        wr[s]++;
        nq++;
        nwreq++;
        printf("pid %d: write struct %d: new pending w%d on version %d\n", _pid, s, w, ver[s])
    fi;
    wval[w] = val[s];
    ver[s] = wbase[w] + 1;
    lastver = ver[s];
    lastval = val[s];
    dirty[s] = 0;
    if
    :: !c_busy && !lead -> signal()
    :: else
    fi;
    w = 0
}
#endif

/* start_batch() + take() (commit lock): this thread commits the queued
 * write; it comes back to phase `back`. */
inline start_batch(back)
{
    assert(!c_busy && nq > 0 && bw == 0);
    c_busy = 1;
    bw = 1;
    do
    :: bw <= NW && wst[bw] != W_QUEUED -> bw++
    :: else -> break
    od;
    assert(bw <= NW);
    bs = ws[bw];
    assert(alloc[bs] && pend[bs] == bw);
    wst[bw] = W_BATCH;
#ifdef FAIL
    wfail[bw] = werr[bs];            /* w->status = s->write_error */
#endif
    nq--;
    pend[bs] = 0;
    comm[bs] = bw;
    assert(bqn < NBATCH);
    bq[bqn] = ME;
    bqn++;
    printf("pid %d: take w%d (struct %d) into a batch\n", _pid, bw, bs);
    bret = back;
    ph = B_COMMIT
}

/* Releases one turn's outputs (release(), or output()'s direct reply):
 * the reply to its waiting caller, if any; a cast's sends. */
inline release_output(hc)
{
    nout++;
    if
    :: msync[hc] && mw[hc] ->
        assert(cur[SND(hc)] == hc && !w_done[SND(hc)]);   /* the right caller */
        w_done[SND(hc)] = 1;
        w_held[SND(hc)] = 0;
        printf("pid %d: reply m%d to pid %d\n", _pid, hc, SND(hc));
        if
        :: ref_owner != TOKEN(SND(hc)) -> c_hold[SND(hc)] = 0   /* it won't touch s again */
        :: else
        fi
    :: msync[hc] && !mw[hc] ->
        reached(11);  /* its caller gave up: the reply is dropped */
        printf("pid %d: reply m%d dropped (detached)\n", _pid, hc)
    :: !msync[hc] -> printf("pid %d: outputs of cast m%d released\n", _pid, hc)
    fi;
    mw[hc] = 0;
    msync[hc] = 0
}

/* The owner is done with s (pgsi_request or pgsi_run_popped returns, or
 * a caller goes on to await_durable). */
inline finish()
{
    if
    :: ISCALLER && awaitme ->
        /* run_queued(): its message was handled: await_durable */
        c_hold[c] = 0;
        awaitme = 0;
        ph = C_AWAIT
    :: ISCALLER && !awaitme ->
        /* what pgsi_request returns: the reply, or PGS_ETIMEDOUT */
        assert(w_done[c] != gaveup && !w_held[c]);
        c_hold[c] = 0;
        cur[c] = 0;
        w_done[c] = 0;
        w_handoff[c] = 0;
        w_held[c] = 0;
        gaveup = 0;
        code = 0;
        i++;
        ph = C_CALL
    :: else ->
        wk_hold = 0;
        ph = W_POP
    fi;
    s = 0; m = 0; mine = 0; budget = 0; direct = 0; lead = 0
}

/* The caller's pgsi_request returns (from wait_reply or await_durable). */
inline caller_return()
{
    awaitme = 0;
    finish()
}

/* Entering activate(): the state is not in memory. */
inline to_load()
{
    if
    :: wr[s] > 0 -> reached(17)   /* a write of s in flight: wait for it */
    :: else
    fi;
#ifdef MUT_LOAD_NO_WAIT
    ph = P_GET
#else
    ph = P_WAITW
#endif
}

#ifdef FAIL
/* turn(): a write of s failed: unload (what is in memory may be ahead of
 * storage), then pgsi_recover (P_RECOVER). */
inline turn_recover()
{
    printf("pid %d: struct %d has a write error: unload, recover\n", _pid, s);
    lost = 1;                         /* effects in memory are dropped */
    loaded[s] = 0; dirty[s] = 0; val[s] = 0; ver[s] = 0;
    ph = P_RECOVER
}
#endif

/* After the handler: process() goes on to commit_lead and output. */
inline after_turn()
{
    if
    :: lead -> ph = P_LEAD
    :: else -> ph = P_OUTPUT
    fi
}

/* turn(): invoke() + after_handler() + persist(): the handler runs on
 * the state and its write is queued.  The handler touches only the
 * owner's state, so it commutes with every other thread's step; it is
 * merged with the write that follows it and, when the state was already
 * in memory, with the locked step that handed it the message (every step
 * another thread can take in between commutes with one side or the
 * other: mailbox and registry steps with the handler and the write,
 * pipeline steps with the lock step). */
inline handle()
{
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
        /* PGS_CRASH: crash() -> unload(); transient: reloaded lazily,
         * from the last write once it lands */
        crashes--;
        persist = 0;
        printf("pid %d: (PGS_CRASH: unload)\n", _pid);
        loaded[s] = 0; dirty[s] = 0; val[s] = 0; ver[s] = 0;
        expect = lastval
    fi;
    if
    :: persist -> persist = 0; submit()   /* persist() -> pgsi_write */
    :: else
    fi;
    after_turn()
}

/* pgsi_load once no write is in flight (pgsi_recover: the wait, then a
* write error of that wait cleared): the storage get and decode, or,
 * with no record, create(): init and its first write (queued like any).
 * Merged into the step that found s->writes == 0, and a loaded state
 * with the handler: from then on only this owner can add a write of the
 * ref, so nothing another thread does can change what it reads. */
inline load_state()
{
    own_check();
    assert(nwreq == 0);               /* no write of the ref in flight */
#ifdef FAIL
    werr[s] = 0;                      /* pgsi_recover: storage is the truth now */
    if
    :: lost -> expect = st_val; lost = 0   /* what failed is gone */
    :: else
    fi;
    lastver = st_ver;
    lastval = st_val;
#endif
    if
    :: st_ver > 0 ->
        assert(st_val == expect);     /* a load sees the last write */
        val[s] = st_val;
        ver[s] = st_ver;
        dirty[s] = 0;
        loaded[s] = 1;
        printf("pid %d: load struct %d: version %d, value %d\n", _pid, s, st_ver, st_val);
        handle()
    :: else ->
        assert(expect == 0);          /* nothing was handled yet */
        val[s] = 0;
        ver[s] = 0;
        dirty[s] = 0;
        loaded[s] = 1;
        printf("pid %d: struct %d: no record, init\n", _pid, s);
        submit();
        ph = P_HANDLE   /* the committer may take this write before the next */
    fi
}

/* passivate(): terminate, unload (no other thread reads the state or
 * `loaded` of a RUNNING struct); run_owned() goes round again. */
inline unload_state()
{
    own_check();
    assert(lead);
    if
    :: wr[s] > 0 ->   /* no wait: the struct stays registered until they land */
        reached(25);
        printf("pid %d: unload with %d write(s) in flight\n", _pid, wr[s])
    :: else
    fi;
    loaded[s] = 0; dirty[s] = 0; val[s] = 0; ver[s] = 0;
    printf("pid %d: passivate struct %d: unloaded\n", _pid, s);
    justpass = 1;
    ph = P_LOCK
}

/* passivate() once pgsi_wait_durable's wait is over: unload, or, after a
 * write error, keep the state (dirty, version re-read, error cleared:
 * the timer tries again later). */
inline passivate_end()
{
    if
#ifdef FAIL
    :: werr[s] ->
        printf("pid %d: passivation write failed: struct %d stays active\n", _pid, s);
        ver[s] = st_ver; lastver = st_ver; lastval = st_val;
        dirty[s] = 1;
        werr[s] = 0;
        ph = P_LOCK
#endif
    :: else -> unload_state()
    fi
}

/* pgsi_wait_writes (commit lock), as the body of a guarded step (P_WAITW,
 * P_PWAIT) that runs once s->writes == 0 or a batch can be taken: either
 * the writes are done (the caller goes on), or this thread commits the
 * queued one and comes back here. */
inline wait_writes()
{
    own_check();
    if
    :: wr[s] == 0 -> skip
    :: else ->
        reached(28);
        printf("pid %d: wait for struct %d's writes: commit them here\n", _pid, s);
        start_batch(ph)
    fi
}

/* ------------------------------------------------------------------------
 * The batch steps (run_batch, complete_one), run by whichever thread
 * took the batch; it goes back to bret afterwards.
 *
 * Steps merged where nothing another thread can do in between makes a
 * difference: the storage commit with run_batch's next locked region
 * (while the batch runs, the commit touches only storage and the wreq,
 * which no other step reads then: c_busy stays visible between the take
 * and this step); complete_one's take of the held list with the release
 * of its first entry (a gate appends at the other end; a time-out
 * before the take is the same as one between); pgsi_writes_done with the
 * free after it and the c_delivered update (which only lets others go).
 */

/* release(): the oldest output taken in this round */
inline release_one()
{
    k = 0;
    do
    :: k < hqn && hqw[k] != bw -> k++
    :: else -> break
    od;
    assert(k < hqn);
    hc = hq[k];
    assert(k == 0);                  /* outputs leave in turn order */
    assert(st_ver >= hqv[k] || WFAILED(bw));   /* the output gate */
    do
    :: k + 1 < hqn -> hq[k] = hq[k + 1]; hqw[k] = hqw[k + 1]; hqv[k] = hqv[k + 1]; k++
    :: else -> break
    od;
    hqn--;
    hq[hqn] = 0; hqw[hqn] = 0; hqv[hqn] = 0;
    k = 0;
    release_output(hc);
    hc = 0;
    rtake--;
    if
    :: rtake > 0 -> ph = B_REL
    :: else -> ph = B_ROUND
    fi
}

inline batch_step()
{
    if
    /* commit_batch(): one storage transaction, expecting w->base; then
     * run_batch(): commit lock; c_busy = 0; outputs in commit order */
    :: ph == B_COMMIT ->
        assert(wst[bw] == W_BATCH && ws[bw] == bs);
#ifdef FAIL
        if
        :: wfail[bw] ->
            lost = 1;
            printf("pid %d: w%d fails: an earlier write of struct %d failed\n", _pid, bw, bs)
        :: !wfail[bw] && fails > 0 ->
            fails--; wfail[bw] = 1; lost = 1;
            printf("pid %d: commit of w%d FAILS\n", _pid, bw)
        :: !wfail[bw] ->
#endif
        assert(wbase[bw] == st_ver);     /* stored version never goes back */
        assert(wval[bw] >= st_val);
        st_ver = wbase[bw] + 1;
        st_val = wval[bw];
        printf("pid %d: commit w%d: version %d, value %d\n", _pid, bw, st_ver, st_val)
#ifdef FAIL
        fi;
        if
        :: wfail[bw] -> werr[bs] = 1     /* recorded before the next take */
        :: else
        fi
#endif
        ;
        wst[bw] = W_DONE;
        assert(c_busy);
        c_busy = 0;
        bmore = (nq > 0);
        if
#ifndef MUT_OUT_OF_ORDER
        :: bq[0] != ME ->
            reached(19);  /* the previous batch still delivers: wait */
            ph = B_WAITD
#endif
        :: else ->
            if
            :: bmore -> signal()
            :: else
            fi;
            bmore = 0;
            ph = B_ROUND
        fi

    /* complete_one(): take what waits behind the write, release the
     * first of it */
    :: ph == B_ROUND ->
        assert(wst[bw] == W_DONE);
        rtake = 0;
        k = 0;
        do
        :: k < hqn -> rtake = rtake + (hqw[k] == bw); k++
        :: else -> break
        od;
        k = 0;
#ifdef MUT_ONE_ROUND
        if
        :: bround -> rtake = 0
        :: else
        fi;
#endif
        if
        :: rtake == 0 ->
            if
            :: comm[bs] == bw -> comm[bs] = 0
            :: else
            fi;
            ph = B_DONE
        :: else ->
            if
            :: bround -> reached(24)
            :: else
            fi;
            bround = 1;
            release_one()
        fi

    /* release(): the next output taken in this round */
    :: ph == B_REL -> release_one()

    /* pgsi_writes_done(): lock; commit lock; writes--; the struct may
     * leave the registry now; pgsi_server_free; wreq_free; then
     * run_batch(): commit lock; c_delivered = seq; broadcast c_done */
    :: ph == B_DONE ->
        assert(alloc[bs] && wr[bs] > 0);
        assert(pend[bs] != bw && comm[bs] != bw);
        wr[bs]--;
        nwreq--;
        wst[bw] = W_FREE; ws[bw] = 0; wbase[bw] = 0; wval[bw] = 0;
#ifdef FAIL
        wfail[bw] = 0;
#endif
        printf("pid %d: w%d done, struct %d has %d write(s) left\n", _pid, bw, bs, wr[bs]);
        release_idle(bs, bfree);
        if
        :: dead[bs] && bfree -> reached(26)
        :: dead[bs] && !bfree -> reached(29)   /* the worker or timer frees it */
        :: else
        fi;
        bw = 0;
        check_inv();
        if
        :: bfree -> sfree(bs); bfree = 0
        :: else
        fi;
        k = 0;
        do
        :: bq[k] != ME -> k++
        :: else -> break
        od;
        do
        :: k + 1 < bqn -> bq[k] = bq[k + 1]; k++
        :: else -> break
        od;
        bqn--;
        bq[bqn] = 0;
        k = 0;
        bs = 0; bround = 0;
        ph = bret;
        bret = 0
    fi
}

/* ------------------------------------------------------------------------
 * The owner's steps: one atomic step each, selected by ph: a locked
 * region, or one unlocked access to the state or to storage (merged as
 * the header says).
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
            freeit = (!in_runq[s] && !in_timer[s] && wr[s] == 0);
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
            lead = 1;                     /* passivate(): ctx.lead = 1 */
            printf("pid %d: struct %d empty, passivate_pending: passivate\n", _pid, s);
            if
            :: dirty[s] ->
                /* pgsi_write (ctx.lead = 1: no committer wake-up), then
                 * pgsi_wait_durable (P_PWAIT) */
                reached(14);
#ifndef MUT_NO_DIRTY_WRITE
                submit();
#endif
                ph = P_PWAIT
            :: else -> unload_state()    /* nothing to write: unload now */
            fi
        :: !out && done && !(m == 0 && pending[s]) ->
            release_locked();
            out = 1
        :: !out && !done ->
            printf("pid %d: pop m%d from struct %d\n", _pid, m, s);
            mb_pop();
            unwait(m);
            pending[s] = 0;
            lead = (m == mine);
            if
            :: m == mine -> mine = 0; budget = 0; awaitme = 1
            :: else
            fi;
            if
#ifdef FAIL
            :: werr[s] -> turn_recover()
#endif
            :: !WERR(s) && loaded[s] ->
                if
                :: wr[s] > 0 -> reached(15)   /* its previous write in flight */
                :: else
                fi;
                handle()
            :: !WERR(s) && !loaded[s] -> to_load()
            fi
        fi;
        check_inv();
        if
        :: out && freeit -> sfree(s); freeit = 0; finish()   /* after the unlock */
        :: out && !freeit -> finish()
        :: else
        fi;
        out = 0; done = 0

    /* P_WAITW and P_PWAIT are guarded steps of the process (they may
     * block): see OWNER_OPTIONS */

    /* MUT_LOAD_NO_WAIT: pgsi_load without pgsi_wait_writes */
    :: ph == P_GET -> load_state()

    /* invoke() + after_handler(): the handler runs on the state */
    :: ph == P_HANDLE -> handle()

    /* process(): a caller commits its write itself if no one commits */
    :: ph == P_LEAD ->
        own_check();
        if
        :: wr[s] > 0 && !c_busy && nq > 0 ->
            reached(20);
            printf("pid %d: commit my own write (commit_lead)\n", _pid);
            start_batch(P_OUTPUT)
        :: else -> ph = P_OUTPUT
        fi

    /* output(): held behind the last write, or released now */
    :: ph == P_OUTPUT ->
        own_check();
        if
#ifdef FAIL
        :: werr[s] ->   /* GATE_FAILED: h->failed; gate() releases it after unlocking */
            cw = mw[m];                     /* copy->w */
            printf("pid %d: outputs of m%d: GATE_FAILED\n", _pid, m);
            ph = P_FAILREL
#endif
#ifndef MUT_NO_GATE
        :: !WERR(s) && (pend[s] != 0 || comm[s] != 0) ->   /* GATE_HELD */
#ifndef MUT_GATE_OLDEST
            w = (pend[s] != 0 -> pend[s] : comm[s]);
#else
            w = (comm[s] != 0 -> comm[s] : pend[s]);   /* mutant: the older write */
#endif
            if
            :: pend[s] == 0 -> reached(23)   /* behind a write being committed */
            :: else
            fi;
            assert(hqn < HQ);
            hq[hqn] = m; hqw[hqn] = w; hqv[hqn] = lastver;
            hqn++;
            if
            :: mw[m] -> w_held[SND(m)] = 1   /* w->held = copy */
            :: else
            fi;
            printf("pid %d: outputs of m%d held behind w%d\n", _pid, m, w);
            if
            :: !lead && !c_busy -> signal()
            :: else
            fi;
            w = 0
#endif
        :: else ->      /* GATE_NOW, or nothing in flight */
            assert(hqn == 0);             /* every earlier output went first */
            assert(st_ver == lastver);    /* the output gate: all writes durable */
            release_output(m)
        fi;
        if
        :: ph == P_FAILREL -> skip
        :: ph != P_FAILREL && direct -> ph = P_DRELEASE
        :: ph != P_FAILREL && !direct -> mgone[m] = 1; m = 0; ph = P_LOCK   /* pgsi_msg_free */
        fi

#ifdef FAIL
    /* gate(), GATE_FAILED: release(rt, s, copy, &m->w, 0) after the
     * unlock: lock; w = m->w (a caller that gave up cleared it); to_waiter.
     * (-DMUT_STALE_WAITER: through the copy's waiter, set before the
     * unlock: the bug spin found, now fixed.) */
    :: ph == P_FAILREL ->
#ifdef MUT_STALE_WAITER
        mw[m] = cw;                       /* copy->w, set under the gate's lock */
#endif
        cw = 0;
        release_output(m);
        if
        :: direct -> ph = P_DRELEASE
        :: else -> mgone[m] = 1; m = 0; ph = P_LOCK   /* pgsi_msg_free */
        fi
#endif

    /* run_direct(): lock; clear passivate_pending; release; read done */
    :: ph == P_DRELEASE ->
        pending[s] = 0;
        release_locked();
        awaitme = !w_done[c];
        check_inv();
        if
        :: freeit -> sfree(s); freeit = 0; finish()   /* after the unlock */
        :: else -> finish()
        fi
    fi
}

#ifdef FAIL
/* pgsi_recover: once s has no write in flight, clear the error; then
 * activate() -> pgsi_load (its wait finds none). */
#define FAIL_OPTIONS \
    :: atomic { ph == P_RECOVER && (wr[s] == 0 || (!c_busy && nq > 0)) -> \
        wait_writes(); \
        if \
        :: ph == P_RECOVER -> werr[s] = 0; load_state() \
        :: else \
        fi }
#else
#define FAIL_OPTIONS
#endif

/* The guarded (blocking) owner steps, as do-loop options. */
#define OWNER_OPTIONS \
    :: atomic { ph == P_WAITW && (wr[s] == 0 || (!c_busy && nq > 0)) -> \
        wait_writes(); \
        if \
        :: ph == P_WAITW -> load_state() \
        :: else \
        fi } \
    :: atomic { ph == P_PWAIT && (wr[s] == 0 || (!c_busy && nq > 0)) -> \
        wait_writes(); \
        if \
        :: ph == P_PWAIT -> passivate_end() \
        :: else \
        fi } \
    :: atomic { ph == B_WAITD && bq[0] == ME -> \
        if \
        :: bmore -> signal() \
        :: else \
        fi; \
        bmore = 0; \
        ph = B_ROUND } \
    :: atomic { ph >= B_COMMIT && ph <= B_DONE && ph != B_WAITD -> batch_step() } \
    :: atomic { ((ph >= P_LOCK && ph <= P_DRELEASE) || ph == P_FAILREL) && ph != P_WAITW -> \
        owner_step() } \
    FAIL_OPTIONS

/* ------------------------------------------------------------------------
 * Processes.
 */

/* pgsi_request() for NCALL calls each. */
active [NCALLER] proctype Caller()
{
    OWNER_LOCALS;
    byte tmo = MAXTMO;

    ph = C_CALL;
    do
    :: atomic { ph == C_CALL && i < NCALL ->
        code = CODE(c, i);
        lookup();
        c_hold[c] = s;
        cur[c] = code;
        tick[code] = ticket;
        ticket++;
        msync[code] = 1;
        mw[code] = 1;
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
            lead = 1;
            m = code;
            if
#ifdef FAIL
            :: werr[s] -> turn_recover()
#endif
            :: !WERR(s) && loaded[s] ->
                if
                :: wr[s] > 0 -> reached(15)
                :: else
                fi;
                handle()
            :: !WERR(s) && !loaded[s] -> to_load()
            fi
        :: else ->
            /* run_queued */
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
    :: ph == C_CALL && i >= NCALL -> break

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
            assert(c_hold[c] == 0);   /* the release let go of it */
            caller_return()
        fi
       }
    /* wait_reply(): the deadline passed */
    :: atomic { ph == C_WAIT && tmo > 0 && !w_done[c] && w_handoff[c] == 0 ->
        tmo--;
        gaveup = 1;
        reached(4);
        if
        :: w_held[c] ->
            /* handled; its reply waits for a write: dropped when it comes */
            reached(27);
            printf("pid %d: wait for m%d timed out, its reply held: drop it\n", _pid, code);
            mw[code] = 0;
            w_held[c] = 0
        :: else ->
            /* detach: the message is handled later, its reply dropped */
            assert(alloc[s] && c_hold[c] == s);
            assert(!mgone[code]);     /* m is still alive */
            printf("pid %d: wait for m%d timed out: detach\n", _pid, code);
            unwait(code);
#ifndef MUT_NO_DETACH
            mw[code] = 0;
#endif
            skip
        fi;
        check_inv();
        caller_return()
       }

    /* await_durable(): lock; is the reply in?  If not, pgsi_commit_lead.
     * (One step: the reply arriving between the two is a release by
     * another thread, which commutes with the take.) */
    :: atomic { ph == C_AWAIT ->
        if
        :: w_done[c] -> caller_return()
        :: !w_done[c] && !c_busy && nq > 0 ->
            reached(21);
            start_batch(C_AWAIT)
        :: else -> ph = C_SLEEP
        fi
       }
    /* await_durable(): sleep until the reply, or the deadline */
    :: atomic { ph == C_SLEEP && w_done[c] -> caller_return() }
    :: atomic { ph == C_SLEEP && tmo > 0 && !w_done[c] ->
        tmo--;
        gaveup = 1;
        assert(w_held[c]);
        reached(27);
        printf("pid %d: await m%d timed out, its reply held: drop it\n", _pid, code);
        mw[code] = 0;
        w_held[c] = 0;
        caller_return()
       }

    OWNER_OPTIONS
    od
}

/* pgsi_send() for NCAST casts. */
active proctype Sender()
{
    byte i, s, code, k, j, w;
    do
    :: atomic { i < NCAST ->
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
    /* runq_pop(), under the run-queue lock, then pgsi_run_popped(): lock;
     * the struct may be dead, or taken.  (One step: while in_runq is set
     * nothing else pushes, frees or looks at the run-queue link.) */
    :: atomic { ph == W_POP && len(runq) > 0 ->
        runq?s;
        rqn[s]--;
        wk_hold = s;
        printf("pid %d: popped struct %d from the run queue\n", _pid, s);
        assert(alloc[s]);
        in_runq[s] = 0;
        if
        :: dead[s] && !in_timer[s] -> reached(9); sfree(s); finish()
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

    OWNER_OPTIONS
    od
}

/* timer_main() + pgsi_idle_due().  The idle node comes due at any time;
 * "due" is always taken: a node found not due is re-armed unchanged,
 * which leads back to a state where it had not fired yet. */
active proctype Timer()
{
    byte s, k, j, w;
    bit freeit;
end_t:
    do
    /* heap_remove, then pgsi_idle_due(): lock.  (One step: while
     * in_timer is set nothing else arms, frees or looks at the node.) */
    :: atomic { theap[1] || theap[2] || theap[3] || theap[NS] ->
        if
        :: theap[1] -> s = 1
        :: theap[2] -> s = 2
        :: theap[3] -> s = 3
#if NS > 3
        :: theap[4] -> s = 4
#endif
        fi;
        theap[s] = 0;
        printf("pid %d: idle node of struct %d due\n", _pid, s);
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
        :: freeit -> sfree(s)   /* after the unlock */
        :: else
        fi;
        freeit = 0; s = 0
       }
    od
}

/* committer_main(): commits whenever no batch runs and a write waits. */
active [NCOMMIT] proctype Committer()
{
    byte ph = K_CHECK;
    byte k, j, w;
    BATCH_LOCALS;
end_k:
    do
    /* the loop head (after a batch), or woken from cond_wait: either way
     * the check runs under the lock the wait re-took */
    :: atomic { ph == K_CHECK || (ph == K_SLEEP && !k_sleep[KI]) ->
        if
        :: !c_busy && nq > 0 ->
            reached(22);
            start_batch(K_CHECK)
        :: else ->
            k_sleep[KI] = 1;
            ph = K_SLEEP
        fi
       }
    :: atomic { ph == B_WAITD && bq[0] == ME ->
        if
        :: bmore -> signal()
        :: else
        fi;
        bmore = 0;
        ph = B_ROUND
       }
    :: atomic { ph >= B_COMMIT && ph <= B_DONE && ph != B_WAITD -> batch_step() }
    od
}

/* The end: runs only when nothing else can move. */
active proctype Checker()
{
    byte i;
    timeout ->
    atomic {
        assert(nhandled == TOTAL);                  /* none lost */
        assert(nout == TOTAL);                      /* every output released */
        i = 1;
        do
        :: i <= TOTAL -> assert(handled[i] && !mw[i] && !mwait[i] && !msync[i]); i++
        :: else -> break
        od;
        i = 0;
        do
        :: i < NSEND -> assert(nseq[i] == NMSG(i)); i++
        :: else -> break
        od;
        /* every struct passivated, removed and freed; nothing queued */
        assert(reg == 0);
        i = 1;
        do
        :: i <= NS -> assert(!alloc[i] && wr[i] == 0); i++
        :: else -> break
        od;
        assert(len(runq) == 0 && ref_owner == NOBODY);
        assert(wk_hold == 0 && c_hold[0] == 0 && c_hold[1] == 0);
        /* every write committed and completed */
        assert(nwreq == 0 && nq == 0 && !c_busy && bqn == 0 && hqn == 0);
        /* everything handled is stored */
#ifdef FAIL
        assert((st_val == expect && st_val == lastval && st_ver == lastver) || lost)
#else
        assert(st_val == expect && st_val == lastval && st_ver == lastver)
#endif
    }
}
