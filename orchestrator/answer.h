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

/* The answer from memory. The engine keeps the pieces of a saga's answer as it writes the
 * saga's rows, when a client waits for that answer (engine.h, engine_start_answered()), so the
 * answer is written without reading the rows back. Each piece is written by the code that
 * writes the store's rows above, from the row the store was given (secrets scrubbed, the input
 * sealed), so once those rows are committed answer_pieces_text() appends, byte for byte, what
 * answer_saga_text() would. Who calls these must call them for every row of the saga it
 * writes, right after the write succeeds.
 *
 * Reference counted: answer_pieces_new() returns one reference, owned by the caller;
 * answer_pieces_ref() adds one, answer_pieces_unref() drops one (the last frees; NULL is a
 * no-op). */
struct answer_pieces;
/* For a saga of flow f whose row store_saga_insert() was just given. */
struct answer_pieces *answer_pieces_new(const struct flow *f, const struct store_saga *row);
struct answer_pieces *answer_pieces_ref(struct answer_pieces *p);
int answer_pieces_refs(const struct answer_pieces *p);
void answer_pieces_unref(struct answer_pieces *p);
/* After store_saga_update(), store_step_put(), store_history_append() (row->seq set to the
 * row's seq) and store_key_put() with these rows. */
void answer_pieces_saga(struct answer_pieces *p, const struct store_saga *row);
void answer_pieces_step(struct answer_pieces *p, const struct store_step *row);
void answer_pieces_history(struct answer_pieces *p, const struct store_history *row);
void answer_pieces_key(struct answer_pieces *p, const char *name, const char *value);
/* Appends the saga as answer_saga_text() does (same arguments). SAGAD_ENOENT, nothing
 * appended, when fs does not have the saga's flow version (the store's answer then shows no
 * pending steps): read it from the store. */
int answer_pieces_text(const struct answer_pieces *p, const struct flow_set *fs, bool history,
		       struct strbuf *b, const struct flow **flow, char *status, size_t status_len);

#endif
