/*
** player.c — a player: one persistent server per player.  Every change
** bumps its version, so the supervisor can tell an acknowledged state from
** an older or a later one.
*/
#include "game.h"

#include <string.h>
#include <sys/time.h>

static int64_t wall_ms(void)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    return (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
}

static int player_init(pgs_ctx *ctx, void *state, const void *args, size_t len)
{
    ((player *)state)->level = 1;
    return PGS_PERSIST;
}

/* Points raise the score and the experience; each level costs 100 more. */
static void add_points(player *p, int32_t points)
{
    p->score += points;
    p->xp += (uint32_t)points;
    while (p->xp >= p->level * 100) {
        p->xp -= p->level * 100;
        p->level++;
    }
}

/* Applies c; 0 if it was a read. */
static int apply(player *p, const command *c)
{
    switch (c->op) {
    case OP_JOIN:
        p->sessions++;
        p->last_session_ms = wall_ms();
        break;
    case OP_SCORE:
        add_points(p, c->amount > 0 ? c->amount : 0);
        break;
    case OP_LOOT:
        p->inventory[c->item % GAME_ITEMS]++;
        break;
    case OP_LEAVE:
        p->playtime_ms += wall_ms() - p->last_session_ms;
        break;
    default:
        return 0;
    }
    p->version++;
    return 1;
}

/* Applies the message; what the handler returns.  A malformed message
** crashes the turn: the state in memory is dropped, not written. */
static int handle(player *p, const void *msg, size_t len)
{
    command c;
    if (len != sizeof c)
        return PGS_CRASH;
    memcpy(&c, msg, sizeof c);
    return apply(p, &c) ? PGS_PERSIST : PGS_UNCHANGED;
}

static int player_call(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    player *p = state;
    int result = handle(p, msg, len);
    standing s = {p->version, p->score};
    pgs_reply(ctx, &s, sizeof s);
    return result;
}

static int player_cast(pgs_ctx *ctx, void *state, const void *msg, size_t len)
{
    return handle(state, msg, len);
}

const pgs_behaviour game_player = {
    .version = PGS_BEHAVIOUR_VERSION,
    .name = "player",
    .state_size = sizeof(player),
    .init = player_init,
    .handle_call = player_call,
    .handle_cast = player_cast,
};
