/* answer.h: a saga as the admin API shows it (GET /v1/sagas/{id}, and the answer to a start,
 * cancel or retry), written as JSON text from the committed state in the store.
 *
 * The same document as a jansson tree dumped with JSON_COMPACT | JSON_REAL_PRECISION(15)
 * (docs/api.md, "The saga object"), made without the tree: the rows are read and written out
 * at once (jsonw.h), and the JSON the store holds (input, output, kept responses) is copied. */
#ifndef SAGAD_ANSWER_H
#define SAGAD_ANSWER_H

#include <stdbool.h>
#include "flow.h"
#include "store.h"
#include "util.h"

/* Appends saga id as a JSON object to b: its summary, keys, input (sensitive and sealed
 * fields masked, secret.h), output, steps (those that never started shown as pending, from the
 * flow version in fs the saga runs) and, when history is true, its history. *flow gets that
 * flow version (NULL when fs does not have it) and status the saga's status name. Returns 0,
 * or SAGAD_ENOENT (nothing appended) when the store has no such saga. */
int answer_saga_text(struct store *st, const struct flow_set *fs, const char *id, bool history,
		     struct strbuf *b, const struct flow **flow, char *status, size_t status_len);

#endif
