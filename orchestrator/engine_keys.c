/* engine_keys.c: a flow's business keys (`keys:`). Each key is a template rendered as soon as
 * the data it reads exists (at the start for input fields, after the step it reads succeeded),
 * recorded once in the saga_keys table in the same transaction, and kept in the saga's
 * memory for the API. Sagas are found by key through store_saga_list() / store_key_find(). */
#include <string.h>

#include "answer.h"
#include "engine_internal.h"
#include "expr.h"
#include "log.h"
#include "store.h"
#include "util.h"

void engine__keys_update(struct saga *s)
{
	const struct flow *f = s->flow;
	char err[256];

	for (size_t k = 0; k < f->n_keys; k++) {
		char *v;
		int rc;

		if (json_object_get(s->keys, f->keys[k].name) != NULL)
			continue;
		/* Missing data: a step it reads has not run yet. Tried again after the next one. */
		if ((v = tmpl_eval_string(f->keys[k].value, s->ctx, err, sizeof(err))) == NULL)
			continue;
		util_utf8_sanitize(v);
		rc = store_key_put(s->e->store, s->id, f->keys[k].name, v);
		engine__store_failed(s->e, rc, "key_put", s->id);
		if (rc == 0 && engine__answer_kept(s) != NULL)
			answer_pieces_key(s->answer, f->keys[k].name, v);
		json_object_set_new(s->keys, f->keys[k].name, json_string(v));
		free(v);
	}
}

static int on_key(const char *name, const char *value, void *arg)
{
	json_object_set_new(arg, name, json_string(value));
	return 0;
}

void engine__keys_load(struct saga *s)
{
	json_decref(s->keys);
	s->keys = json_object();
	store_each_key(s->e->store, s->id, on_key, s->keys);
}
