/* dsl_check.c: the loader's static checks. What a template may read (roots, earlier steps,
 * declared input fields, kept response paths), "did you mean" suggestions, and the cross-flow
 * link: sub-flow names exist and no flow runs itself through sub-flows. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include "dsl_internal.h"
#include "error.h"
#include "util.h"

/* ---- suggestions ---------------------------------------------------------------------------- */

#define MAX_WORD 64

static size_t distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b), i, j;
	size_t row[MAX_WORD + 1];

	if (la > MAX_WORD || lb > MAX_WORD)
		return (size_t)-1;
	for (j = 0; j <= lb; j++)
		row[j] = j;
	for (i = 1; i <= la; i++) {
		size_t diag = row[0];

		row[0] = i;
		for (j = 1; j <= lb; j++) {
			size_t up = row[j], cost = (a[i - 1] | 0x20) == (b[j - 1] | 0x20) ? 0 : 1;
			size_t best = diag + cost;

			if (up + 1 < best)
				best = up + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[lb];
}

const char *dsl_suggest(const char *word, const char *const *cands, size_t n)
{
	size_t i, len = strlen(word), best_d = (size_t)-1, limit;
	const char *best = NULL;

	limit = len <= 3 ? 1 : len <= 6 ? 2 : 3;
	for (i = 0; i < n; i++) {
		size_t d;

		if (cands[i] == NULL || cands[i][0] == '\0')
			continue;
		d = distance(word, cands[i]);
		if (d < best_d) {
			best_d = d;
			best = cands[i];
		}
	}
	return best_d <= limit ? best : NULL;
}

char *dsl_join(const char *const *names, size_t n)
{
	struct strbuf b;
	size_t i;

	strbuf_init(&b);
	for (i = 0; i < n; i++) {
		if (names[i] == NULL || names[i][0] == '\0')
			continue;
		if (b.len > 0)
			strbuf_adds(&b, ", ");
		strbuf_adds(&b, names[i]);
	}
	return strbuf_detach(&b);
}

/* ---- template references --------------------------------------------------------------------- */

struct ref_check {
	struct dsl_loader *ld;
	const struct dsl_site *site;
	const struct dsl_node *node;
};

static char *path_text(const char *const *segs, size_t from, size_t to)
{
	struct strbuf b;
	size_t i;

	strbuf_init(&b);
	for (i = from; i < to; i++) {
		if (i > from && segs[i][0] != '[')
			strbuf_adds(&b, ".");
		strbuf_adds(&b, segs[i]);
	}
	return strbuf_detach(&b);
}

/* True when a step's keep list lets a reference read response path segs[3..]. Segments
 * compare as expr_path_split() writes them ("[0]" for an index), which is what flow_keep()
 * uses; the status (and a Kafka reply's type) is always kept. */
static bool kept(const struct flow_step *st, const char *const *segs, size_t n_segs)
{
	size_t i, j, nk;
	char **ks;
	bool ok = false;

	if (st->keep == NULL || !strcmp(segs[3], "status") || !strcmp(segs[3], "type"))
		return true;
	for (i = 0; i < st->n_keep && !ok; i++) {
		if ((ks = expr_path_split(st->keep[i], &nk)) == NULL)
			continue;
		/* Covered when one path is a prefix of the other: a kept body.id covers
		 * body.id.x, and a reference to body sees the kept part of it. */
		ok = true;
		for (j = 0; j < nk && 3 + j < n_segs; j++)
			if (strcmp(segs[3 + j], ks[j]) != 0)
				ok = false;
		expr_path_free(ks);
	}
	return ok;
}

static void report_at(const struct ref_check *c, size_t offset, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void report_at(const struct ref_check *c, size_t offset, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		fatalx("out of memory");
	va_end(ap);
	dsl_report(c->ld, c->node->line, dsl_node_col(c->node, offset), "%s: %s",
		   c->site->what ? c->site->what : "template", msg);
	free(msg);
}

static int find_step(const struct dsl_loader *ld, const char *name)
{
	size_t i;

	for (i = 0; i < ld->n_step_names; i++)
		if (!strcmp(ld->step_names[i], name))
			return (int)i;
	return -1;
}

static bool kafka_step(const struct flow_step *st)
{
	return st->kind == STEP_KIND_CALL && st->participant != NULL &&
	       st->participant->kind == PARTICIPANT_KAFKA;
}

static void check_steps_ref(const struct ref_check *c, const struct tmpl_ref *r, const char *path)
{
	const struct dsl_loader *ld = c->ld;
	const struct dsl_site *site = c->site;
	const char *sugg;
	char *all, *rel, *keeps;
	int j;

	if (r->n_segs < 2)
		return;
	if ((j = find_step(ld, r->segs[1])) < 0) {
		all = dsl_join(ld->step_names, ld->n_step_names);
		sugg = dsl_suggest(r->segs[1], ld->step_names, ld->n_step_names);
		if (sugg != NULL)
			report_at(c, r->offset, "%s: unknown step \"%s\" (steps: %s); did you mean "
				  "\"%s\"?", path, r->segs[1], all, sugg);
		else
			report_at(c, r->offset, "%s: unknown step \"%s\" (steps: %s)", path,
				  r->segs[1], all);
		free(all);
		return;
	}
	if (site->kind != DSL_SITE_OUTPUT && site->step >= 0) {
		const char *self = ld->step_names[site->step];

		if (j > site->step) {
			report_at(c, r->offset, "steps.%s is not available in step \"%s\": it runs "
				  "later", r->segs[1], self);
			return;
		}
		if (j != site->step && ld->step_group != NULL &&
		    ld->step_group[j] == ld->step_group[site->step]) {
			report_at(c, r->offset, "steps.%s is not available in step \"%s\": they run "
				  "in parallel", r->segs[1], self);
			return;
		}
		if (j == site->step && site->kind != DSL_SITE_COMPENSATION) {
			report_at(c, r->offset, "steps.%s is not available in step \"%s\": that is its "
				  "own response, which exists only after it ran (its compensation "
				  "can read it)", r->segs[1], self);
			return;
		}
	}
	if (r->n_segs >= 3 && strcmp(r->segs[2], "response") != 0) {
		report_at(c, r->offset, "%s: a step offers only steps.%s.response (with status and "
			  "body)", path, r->segs[1]);
		return;
	}
	if (r->n_segs >= 4 && kafka_step(&ld->flow->steps[j])) {
		static const char *const parts[] = { "type", "body", "headers", "topic", "partition",
			"offset", NULL };
		size_t k;

		for (k = 0; parts[k] != NULL && strcmp(parts[k], r->segs[3]) != 0; k++)
			;
		if (parts[k] == NULL) {
			report_at(c, r->offset, "%s: step \"%s\" talks to a Kafka participant; its "
				  "response has type, body, headers, topic, partition and offset "
				  "(no status)", path, r->segs[1]);
			return;
		}
	} else if (r->n_segs >= 4 && strcmp(r->segs[3], "status") != 0 &&
		   strcmp(r->segs[3], "body") != 0 &&
		   !(strcmp(r->segs[3], "saga") == 0 && ld->flow->steps[j].kind == STEP_KIND_SUBFLOW)) {
		report_at(c, r->offset, "%s: a response has only status and body%s; write "
			  "steps.%s.response.body...", path,
			  ld->flow->steps[j].kind == STEP_KIND_SUBFLOW ? " (and saga, the child's id)" : "",
			  r->segs[1]);
		return;
	}
	if (r->n_segs >= 4 && !kept(&ld->flow->steps[j], r->segs, r->n_segs)) {
		const struct flow_step *st = &ld->flow->steps[j];

		rel = path_text(r->segs, 3, r->n_segs);
		keeps = dsl_join((const char *const *)st->keep, st->n_keep);
		report_at(c, r->offset, "%s is not kept: step \"%s\" keeps only %s; add %s to its "
			  "keep list", path, r->segs[1], *keeps ? keeps : "nothing", rel);
		free(rel);
		free(keeps);
	}
}

/* A trigger's input is rendered from the event before any saga exists. */
static void check_trigger_ref(const struct ref_check *c, const struct tmpl_ref *r, const char *path)
{
	static const char *const roots[] = { "event", "headers", "kafka" };
	static const char *const kafka[] = { "topic", "partition", "offset", "key" };
	const char *root = r->n_segs > 0 ? r->segs[0] : "", *sugg;
	size_t i;

	if (!strcmp(root, "event") || !strcmp(root, "headers"))
		return;
	if (!strcmp(root, "kafka")) {
		if (r->n_segs < 2)
			return;
		for (i = 0; i < 4; i++)
			if (!strcmp(r->segs[1], kafka[i]))
				break;
		if (i == 4 && (sugg = dsl_suggest(r->segs[1], kafka, 4)) != NULL)
			report_at(c, r->offset, "%s: kafka offers only topic, partition, offset and "
				  "key; did you mean \"kafka.%s\"?", path, sugg);
		else if (i == 4)
			report_at(c, r->offset, "%s: kafka offers only kafka.topic, kafka.partition, "
				  "kafka.offset and kafka.key", path);
		else if (r->n_segs > 2)
			report_at(c, r->offset, "%s: kafka.%s has no fields", path, r->segs[1]);
		return;
	}
	if (!strcmp(root, "env")) {
		report_at(c, r->offset, "%s: env is only available in participant settings and "
			  "topics; a trigger's input reads event, headers and kafka", path);
		return;
	}
	if (!strcmp(root, "input") || !strcmp(root, "saga") || !strcmp(root, "steps")) {
		report_at(c, r->offset, "%s: a trigger's input reads only event, headers and kafka: "
			  "it makes the saga's input, so %s", path,
			  !strcmp(root, "input") ? "there is no input yet (the event's fields are "
			  "event.NAME)" : !strcmp(root, "saga") ? "there is no saga yet" :
			  "no step has run yet");
		return;
	}
	if ((sugg = dsl_suggest(root, roots, 3)) != NULL)
		report_at(c, r->offset, "unknown name \"%s\"; did you mean \"%s\"? (a trigger's "
			  "input reads event, headers and kafka)", root, sugg);
	else
		report_at(c, r->offset, "unknown name \"%s\"; a trigger's input reads event, "
			  "headers and kafka", root);
}

static void on_ref(const struct tmpl_ref *r, void *arg)
{
	const struct ref_check *c = arg;
	const struct dsl_loader *ld = c->ld;
	static const char *const roots[] = { "input", "saga", "steps" };
	const char *root = r->n_segs > 0 ? r->segs[0] : "";
	const char *sugg;
	char *path = path_text(r->segs, 0, r->n_segs), *all;

	if (c->site->kind == DSL_SITE_SETTINGS || c->site->kind == DSL_SITE_TOPIC) {
		if (strcmp(root, "env") != 0)
			report_at(c, r->offset, "%s: %s resolved when the flow loads; only env.NAME "
				  "can be used here", path, c->site->kind == DSL_SITE_TOPIC ?
				  "a topic is" : "participant settings are");
		else if (r->n_segs != 2)
			report_at(c, r->offset, "%s: write env.NAME (one environment variable)", path);
		goto out;
	}
	if (c->site->kind == DSL_SITE_TRIGGER_INPUT) {
		check_trigger_ref(c, r, path);
		goto out;
	}
	if (!strcmp(root, "env")) {
		report_at(c, r->offset, "%s: env is only available in participant settings (url, "
			  "headers, timeout); pass the value in the saga's input or set it as a "
			  "participant header", path);
	} else if (!strcmp(root, "input")) {
		if (r->n_segs < 2 || !ld->input_declared)
			goto out;
		for (size_t i = 0; i < ld->n_input_names; i++)
			if (!strcmp(ld->input_names[i], r->segs[1]))
				goto out;
		all = dsl_join(ld->input_names, ld->n_input_names);
		sugg = dsl_suggest(r->segs[1], ld->input_names, ld->n_input_names);
		if (sugg != NULL)
			report_at(c, r->offset, "input.%s is not declared in input (declared: %s); "
				  "did you mean \"%s\"?", r->segs[1], all, sugg);
		else
			report_at(c, r->offset, "input.%s is not declared in input (declared: %s); "
				  "declare it or fix the name", r->segs[1], *all ? all : "none");
		free(all);
	} else if (!strcmp(root, "saga")) {
		if (r->n_segs >= 2 && strcmp(r->segs[1], "id") != 0 && strcmp(r->segs[1], "flow") != 0 &&
		    strcmp(r->segs[1], "created_at") != 0 && strcmp(r->segs[1], "flow_version") != 0)
			report_at(c, r->offset, "%s: a saga offers only saga.id, saga.flow, "
				  "saga.flow_version and saga.created_at", path);
		else if (r->n_segs > 2)
			report_at(c, r->offset, "%s: saga.%s is a string with no fields", path,
				  r->segs[1]);
	} else if (!strcmp(root, "steps")) {
		check_steps_ref(c, r, path);
	} else {
		sugg = dsl_suggest(root, roots, 3);
		if (sugg != NULL)
			report_at(c, r->offset, "unknown name \"%s\"; did you mean \"%s\"? (a template "
				  "reads input, saga and steps)", root, sugg);
		else
			report_at(c, r->offset, "unknown name \"%s\"; a template reads input, saga "
				  "and steps", root);
	}
out:
	free(path);
}

void dsl_check_refs(struct dsl_loader *ld, const struct dsl_site *site, const struct dsl_node *n,
		    const struct tmpl *t)
{
	struct ref_check c = { ld, site, n };

	tmpl_visit_refs(t, on_ref, &c);
}

/* ---- linking sub-flows ---------------------------------------------------------------------- */

struct linker {
	struct flow_set *fs;
	struct dsl_errors *errs;
	const struct dsl_subflow_loc *locs;
	size_t n_locs;
	char *color;      /* per flow: 0 white, 1 on the path, 2 done */
	size_t *path;     /* flow indexes on the current path */
	size_t depth;
	int rc;
};

static void link_error(struct linker *l, const struct flow *f, size_t step, const char *msg)
{
	int line = f->steps[step].line, col = 0;
	size_t i;

	if (f->steps[step].subflow_line > 0) {
		line = f->steps[step].subflow_line;
		col = f->steps[step].subflow_col;
	}
	for (i = 0; i < l->n_locs; i++)
		if (l->locs[i].flow == f && l->locs[i].step == step) {
			line = l->locs[i].line;
			col = l->locs[i].col;
		}
	dsl_errors_add(l->errs, f->file, line, col, msg);
	l->rc = SAGAD_ESYNTAX;
}

static ssize_t flow_index(const struct flow_set *fs, const struct flow *f)
{
	size_t i;

	for (i = 0; i < fs->n; i++)
		if (fs->flows[i] == f)
			return (ssize_t)i;
	return -1;
}

static void visit(struct linker *l, size_t k)
{
	const struct flow *f = l->fs->flows[k];
	size_t i, j;

	l->color[k] = 1;
	l->path[l->depth++] = k;
	for (i = 0; i < f->n_steps; i++) {
		const struct flow_step *st = &f->steps[i];
		struct flow *child;
		ssize_t c;

		if (st->kind != STEP_KIND_SUBFLOW || st->subflow_name == NULL)
			continue;
		if ((child = flow_set_find(l->fs, st->subflow_name)) == NULL ||
		    (c = flow_index(l->fs, child)) < 0)
			continue;
		if (l->color[c] == 1) {
			struct strbuf b;
			char *msg;

			strbuf_init(&b);
			for (j = 0; j < l->depth && l->path[j] != (size_t)c; j++)
				;
			for (; j < l->depth; j++)
				strbuf_addf(&b, "%s -> ", l->fs->flows[l->path[j]]->name);
			strbuf_adds(&b, child->name);
			msg = xasprintf("step \"%s\": sub-flow cycle %s; a flow cannot run itself, "
					"directly or through other flows", st->name, b.data);
			link_error(l, f, i, msg);
			free(msg);
			strbuf_close(&b);
		} else if (l->color[c] == 0) {
			visit(l, (size_t)c);
		}
	}
	l->depth--;
	l->color[k] = 2;
}

int dsl_link_locs(struct flow_set *fs, struct dsl_errors *errs, const struct dsl_subflow_loc *locs,
		  size_t n_locs)
{
	struct linker l = { fs, errs, locs, n_locs, NULL, NULL, 0, 0 };
	const char **names;
	size_t i, k;

	names = xcalloc(fs->n + 1, sizeof(*names));
	for (k = 0; k < fs->n; k++)
		names[k] = fs->flows[k]->name;
	for (k = 0; k < fs->n; k++) {
		const struct flow *f = fs->flows[k];

		for (i = 0; i < f->n_steps; i++) {
			const struct flow_step *st = &f->steps[i];
			const char *sugg;
			char *all, *msg;

			if (st->kind != STEP_KIND_SUBFLOW || st->subflow_name == NULL ||
			    flow_set_find(fs, st->subflow_name) != NULL)
				continue;
			all = dsl_join(names, fs->n);
			sugg = dsl_suggest(st->subflow_name, names, fs->n);
			if (sugg != NULL)
				msg = xasprintf("step \"%s\": unknown flow \"%s\" (known: %s); did you "
						"mean \"%s\"?", st->name, st->subflow_name, all, sugg);
			else
				msg = xasprintf("step \"%s\": unknown flow \"%s\" (known: %s); add a "
						"file for it to the flows folder", st->name,
						st->subflow_name, *all ? all : "none");
			link_error(&l, f, i, msg);
			free(msg);
			free(all);
		}
	}
	l.color = xcalloc(fs->n + 1, 1);
	l.path = xcalloc(fs->n + 1, sizeof(*l.path));
	for (k = 0; k < fs->n; k++)
		if (l.color[k] == 0)
			visit(&l, k);
	free(l.color);
	free(l.path);
	free(names);
	return l.rc;
}

int dsl_link(struct flow_set *fs, struct dsl_errors *errs)
{
	return dsl_link_locs(fs, errs, NULL, 0);
}
