/*
** fuzz_record.c — libFuzzer harness for the stored-record decoder: any
** bytes given to pgs_record_decode either decode into a record that
** re-encodes to exactly those bytes, or are refused with PGS_ECORRUPT.
** The options bytes of a decoded record go through the runtime's options
** decoder too (records from storage meet it on every load).
*/
#include "internal.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pgs_record *rec = NULL;
    int rc = pgs_record_decode(data, size, &rec);
    if (rc != PGS_OK) {
        if (rc != PGS_ECORRUPT || rec)
            abort(); /* only "corrupt", and nothing handed out */
        return 0;
    }
    pgs_bytes again;
    if (pgs_record_encode(rec, &again) != PGS_OK || again.len != size ||
        memcmp(again.data, data, size) != 0)
        abort(); /* one record, one encoding */
    pgs_server_opts o;
    int parked;
    (void)pgsi_opts_decode(rec->options, rec->options_len, &o, &parked);
    pgs_bytes_free(&again);
    free(rec);
    return 0;
}
