/*
** fuzz_ref.c — libFuzzer harness for the ref parser: any text either
** parses into a well-formed ref whose text form is exactly that text (one
** text form per ref), or is refused with PGS_EREF.
*/
#include "pgs.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pgs_ref ref;
    int rc = pgs_ref_parse(&ref, (const char *)data, size);
    if (rc != PGS_OK) {
        if (rc != PGS_EREF)
            abort();
        return 0;
    }
    char text[PGS_REF_TEXT_MAX];
    size_t len = 0;
    if (pgs_ref_format(&ref, text, sizeof text, &len) != PGS_OK || len != size ||
        memcmp(text, data, size) != 0)
        abort();
    pgs_ref again;
    if (pgs_ref_make(&again, ref.name, ref.key, ref.key_len) != PGS_OK ||
        !pgs_ref_equal(&again, &ref))
        abort();
    return 0;
}
