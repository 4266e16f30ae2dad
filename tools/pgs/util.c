/*
** util.c — the tool's containers: growable arrays and collected records
** (a scan's or history's callback must not call into the store, so what
** a command needs from them is copied out first).
*/
#include "tool.h"

#include <stdlib.h>
#include <string.h>

int grow(void *vp, size_t *cap, size_t n, size_t size)
{
    void *v;
    memcpy(&v, vp, sizeof v); /* vp points to a T *, not a void * */
    if (n < *cap)
        return PGS_OK;
    size_t c = *cap ? *cap : 16;
    while (c <= n && c <= SIZE_MAX / 2)
        c *= 2;
    if (c <= n || c > SIZE_MAX / size || !(v = realloc(v, c * size)))
        return PGS_ENOMEM;
    memcpy(vp, &v, sizeof v);
    *cap = c;
    return PGS_OK;
}

int records_add(void *arg, const pgs_record *rec)
{
    records *r = arg;
    if (grow(&r->v, &r->cap, r->n, sizeof *r->v))
        return PGS_ENOMEM;
    int rc = pgs_record_copy(rec, &r->v[r->n]);
    r->n += rc == PGS_OK;
    return rc;
}

void records_free(records *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i]);
    free(r->v);
    memset(r, 0, sizeof *r);
}
