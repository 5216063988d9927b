/* dsl.c: the flow DSL loader. libyaml events become a node tree in which every node remembers
 * file:line:col (like h2o's yoml); the tree is then walked key by key into a struct flow, and
 * every mistake is reported as "file:line:col: what is wrong; what to do". The loader goes on
 * after an error where it can, so one run shows all of them. Static checks of templates and
 * sub-flow linking live in dsl_check.c. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml.h>
#include "dsl_internal.h"
#include "error.h"
#include "util.h"

#define MAX_ERRORS 50
#define DEFAULT_TIMEOUT_MS 10000
#define YAML_TAG_PREFIX "tag:yaml.org,2002:"

extern char **environ;

/* ---- limits and diagnostics -------------------------------------------------------------- */

void dsl_limits_default(struct dsl_limits *l)
{
	l->max_file_bytes = 1 << 20;
	l->max_depth = 64;
	l->max_aliases = 100;
	l->max_nodes = 100000;
	l->max_steps = 256;
}

void dsl_errors_add(struct dsl_errors *e, const char *file, int line, int col, const char *msg)
{
	struct dsl_error *d;

	e->v = xrealloc(e->v, (e->n + 1) * sizeof(*e->v));
	d = &e->v[e->n++];
	d->file = xstrdup(file ? file : "-");
	d->line = line;
	d->col = col;
	d->message = xstrdup(msg);
}

void dsl_errors_close(struct dsl_errors *e)
{
	size_t i;

	if (e == NULL)
		return;
	for (i = 0; i < e->n; i++) {
		free(e->v[i].file);
		free(e->v[i].message);
	}
	free(e->v);
	e->v = NULL;
	e->n = 0;
}

char *dsl_errors_format(const struct dsl_errors *e)
{
	struct strbuf b;
	size_t i;

	strbuf_init(&b);
	for (i = 0; e != NULL && i < e->n; i++) {
		const struct dsl_error *d = &e->v[i];

		if (d->line > 0 && d->col > 0)
			strbuf_addf(&b, "%s:%d:%d: %s\n", d->file, d->line, d->col, d->message);
		else if (d->line > 0)
			strbuf_addf(&b, "%s:%d: %s\n", d->file, d->line, d->message);
		else
			strbuf_addf(&b, "%s: %s\n", d->file, d->message);
	}
	return strbuf_detach(&b);
}

void dsl_report(struct dsl_loader *ld, int line, int col, const char *fmt, ...)
{
	va_list ap;
	char *msg;

	ld->n_errors++;
	if (ld->n_errors > MAX_ERRORS + 1)
		return;
	if (ld->n_errors == MAX_ERRORS + 1) {
		dsl_errors_add(ld->errs, ld->file, 0, 0, "too many errors; fix the ones above first");
		return;
	}
	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		fatalx("out of memory");
	va_end(ap);
	dsl_errors_add(ld->errs, ld->file, line, col, msg);
	free(msg);
}

#define report(ld, n, ...) dsl_report((ld), (n)->line, (n)->col, __VA_ARGS__)

static size_t utf8_chars(const char *s, size_t n)
{
	size_t i, c = 0;

	for (i = 0; i < n; i++)
		if (((unsigned char)s[i] & 0xc0) != 0x80)
			c++;
	return c;
}

int dsl_node_col(const struct dsl_node *n, size_t offset)
{
	if (!n->exact || offset > n->len)
		return n->col;
	return n->text_col + (int)utf8_chars(n->str, offset);
}

/* ---- the node tree ----------------------------------------------------------------------- */

static void node_free(struct dsl_node *n)
{
	size_t i;

	if (n == NULL)
		return;
	for (i = 0; i < n->n; i++) {
		if (n->keys != NULL)
			node_free(n->keys[i]);
		node_free(n->items[i]);
	}
	free(n->keys);
	free(n->items);
	free(n->str);
	free(n->tag);
	free(n);
}

static void node_push(struct dsl_node *parent, struct dsl_node *key, struct dsl_node *child)
{
	if (parent->n == parent->cap) {
		parent->cap = parent->cap ? parent->cap * 2 : 4;
		parent->items = xrealloc(parent->items, parent->cap * sizeof(*parent->items));
		if (parent->kind == DSL_MAP)
			parent->keys = xrealloc(parent->keys, parent->cap * sizeof(*parent->keys));
	}
	if (parent->kind == DSL_MAP)
		parent->keys[parent->n] = key;
	parent->items[parent->n++] = child;
	parent->size += child->size + (key ? key->size : 0);
	parent->n_alias += child->n_alias;
	if (parent->height < child->height + 1)
		parent->height = child->height + 1;
}

static struct dsl_node *node_copy(const struct dsl_node *n)
{
	struct dsl_node *c = xmalloc(sizeof(*c));
	size_t i;

	*c = *n;
	c->str = n->str ? xstrndup(n->str, n->len) : NULL;
	c->tag = n->tag ? xstrdup(n->tag) : NULL;
	c->keys = NULL;
	c->items = NULL;
	c->cap = n->n;
	if (n->n > 0) {
		c->items = xmalloc(n->n * sizeof(*c->items));
		if (n->kind == DSL_MAP)
			c->keys = xmalloc(n->n * sizeof(*c->keys));
	}
	for (i = 0; i < n->n; i++) {
		if (n->kind == DSL_MAP)
			c->keys[i] = node_copy(n->keys[i]);
		c->items[i] = node_copy(n->items[i]);
	}
	return c;
}

/* ---- libyaml events -> tree, with the limits libyaml does not have ----------------------- */

struct anchor {
	char *name;
	struct dsl_node *node;
	bool done;
};

struct frame {
	struct dsl_node *node;
	struct dsl_node *key;  /* a mapping's key waiting for its value */
	ssize_t anchor;        /* index in anchors, -1 when none */
};

struct builder {
	struct dsl_loader *ld;
	const char *buf;
	size_t len;
	struct frame *stack;
	size_t depth, cap;
	struct anchor *anchors;
	size_t n_anchors;
	size_t nodes, aliases;
	struct dsl_node *root;
	int docs;
};

static struct dsl_node *node_new(struct builder *b, enum dsl_node_kind kind, yaml_mark_t m)
{
	struct dsl_node *n = xcalloc(1, sizeof(*n));

	n->kind = kind;
	n->file = b->ld->file;
	n->line = (int)m.line + 1;
	n->col = (int)m.column + 1;
	n->size = 1;
	return n;
}

static int limit_nodes(struct builder *b, size_t add, yaml_mark_t m)
{
	b->nodes += add;
	if (b->nodes <= b->ld->lim.max_nodes)
		return 0;
	dsl_report(b->ld, (int)m.line + 1, (int)m.column + 1,
		   "the file has more than %zu YAML nodes (limit max_nodes); split it into "
		   "several flows and use sub-flow steps", b->ld->lim.max_nodes);
	return SAGAD_ELIMIT;
}

static ssize_t anchor_add(struct builder *b, const yaml_char_t *name, struct dsl_node *n, bool done)
{
	struct anchor *a;

	if (name == NULL)
		return -1;
	b->anchors = xrealloc(b->anchors, (b->n_anchors + 1) * sizeof(*b->anchors));
	a = &b->anchors[b->n_anchors];
	a->name = xstrdup((const char *)name);
	a->node = n;
	a->done = done;
	return (ssize_t)b->n_anchors++;
}

static int key_cmp(const void *pa, const void *pb)
{
	const struct dsl_node *a = *(struct dsl_node *const *)pa, *b = *(struct dsl_node *const *)pb;
	int c = strcmp(a->str, b->str);

	if (c != 0)
		return c;
	if (a->line != b->line)
		return a->line < b->line ? -1 : 1;
	return a->col < b->col ? -1 : a->col > b->col;
}

static void check_duplicate_keys(struct builder *b, const struct dsl_node *map)
{
	struct dsl_node **keys;
	size_t i;

	if (map->n < 2)
		return;
	keys = xmalloc(map->n * sizeof(*keys));
	memcpy(keys, map->keys, map->n * sizeof(*keys));
	qsort(keys, map->n, sizeof(*keys), key_cmp);
	for (i = 1; i < map->n; i++) {
		size_t first = i - 1;

		while (first > 0 && strcmp(keys[first - 1]->str, keys[i]->str) == 0)
			first--;
		if (strcmp(keys[i - 1]->str, keys[i]->str) == 0)
			report(b->ld, keys[i], "duplicate key \"%s\" (first at line %d, column %d); "
			       "remove one of them", keys[i]->str, keys[first]->line, keys[first]->col);
	}
	free(keys);
}

/* Hangs a finished node under the open collection (or makes it the root). Takes n. */
static int attach(struct builder *b, struct dsl_node *n)
{
	struct frame *fr;

	if (b->depth == 0) {
		node_free(b->root);
		b->root = n;
		return 0;
	}
	fr = &b->stack[b->depth - 1];
	if (fr->node->kind == DSL_SEQ) {
		node_push(fr->node, NULL, n);
		return 0;
	}
	if (fr->key == NULL) {
		if (n->kind != DSL_SCALAR) {
			report(b->ld, n, "a mapping key must be a plain value, not a %s; write "
			       "\"key: value\"", n->kind == DSL_MAP ? "mapping" : "list");
			node_free(n);
			return SAGAD_ESYNTAX;
		}
		fr->key = n;
		return 0;
	}
	node_push(fr->node, fr->key, n);
	fr->key = NULL;
	return 0;
}

static int on_scalar(struct builder *b, const yaml_event_t *ev)
{
	struct dsl_node *n;
	int chars, quoted;
	int rc;

	if ((rc = limit_nodes(b, 1, ev->start_mark)) != 0)
		return rc;
	n = node_new(b, DSL_SCALAR, ev->start_mark);
	n->str = xstrndup((const char *)ev->data.scalar.value, ev->data.scalar.length);
	n->len = ev->data.scalar.length;
	switch (ev->data.scalar.style) {
	case YAML_SINGLE_QUOTED_SCALAR_STYLE:
	case YAML_DOUBLE_QUOTED_SCALAR_STYLE:
		n->style = DSL_QUOTED;
		break;
	case YAML_LITERAL_SCALAR_STYLE:
	case YAML_FOLDED_SCALAR_STYLE:
		n->style = DSL_BLOCK;
		break;
	default:
		n->style = DSL_PLAIN;
	}
	if (ev->data.scalar.tag != NULL)
		n->tag = xstrdup((const char *)ev->data.scalar.tag);
	/* Offsets inside the value map to columns when the scalar sits on one line, as written. */
	quoted = n->style == DSL_QUOTED;
	chars = (int)utf8_chars(n->str, n->len);
	n->text_col = n->col + quoted;
	n->exact = n->style != DSL_BLOCK && n->tag == NULL &&
		   ev->start_mark.line == ev->end_mark.line &&
		   (int)(ev->end_mark.column - ev->start_mark.column) == chars + 2 * quoted;
	anchor_add(b, ev->data.scalar.anchor, n, true);
	return attach(b, n);
}

static int on_collection_start(struct builder *b, const yaml_event_t *ev, enum dsl_node_kind kind)
{
	const yaml_char_t *anchor = kind == DSL_MAP ? ev->data.mapping_start.anchor
						    : ev->data.sequence_start.anchor;
	const yaml_char_t *tag = kind == DSL_MAP ? ev->data.mapping_start.tag
						 : ev->data.sequence_start.tag;
	struct frame *fr;
	int rc;

	if (b->depth + 1 > (size_t)b->ld->lim.max_depth) {
		dsl_report(b->ld, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
			   "nesting deeper than %d levels (limit max_depth); flatten this value",
			   b->ld->lim.max_depth);
		return SAGAD_ELIMIT;
	}
	if ((rc = limit_nodes(b, 1, ev->start_mark)) != 0)
		return rc;
	if (b->depth == b->cap) {
		b->cap = b->cap ? b->cap * 2 : 16;
		b->stack = xrealloc(b->stack, b->cap * sizeof(*b->stack));
	}
	fr = &b->stack[b->depth++];
	fr->node = node_new(b, kind, ev->start_mark);
	fr->node->height = 1;
	fr->key = NULL;
	fr->anchor = anchor_add(b, anchor, fr->node, false);
	if (tag != NULL && strcmp((const char *)tag, "!") != 0 &&
	    strcmp((const char *)tag, kind == DSL_MAP ? YAML_TAG_PREFIX "map" : YAML_TAG_PREFIX "seq") != 0)
		report(b->ld, fr->node, "unsupported tag \"%s\"; remove it (flow files use plain "
		       "YAML: mappings, lists, strings, numbers, booleans and null)", tag);
	return 0;
}

static int on_collection_end(struct builder *b)
{
	struct frame fr = b->stack[--b->depth];

	if (fr.node->kind == DSL_MAP)
		check_duplicate_keys(b, fr.node);
	if (fr.anchor >= 0)
		b->anchors[fr.anchor].done = true;
	return attach(b, fr.node);
}

static int on_alias(struct builder *b, const yaml_event_t *ev)
{
	const char *name = (const char *)ev->data.alias.anchor;
	const struct anchor *a = NULL;
	struct dsl_node *n;
	int line = (int)ev->start_mark.line + 1, col = (int)ev->start_mark.column + 1;
	size_t i;
	int rc;

	for (i = b->n_anchors; i-- > 0;)
		if (strcmp(b->anchors[i].name, name) == 0) {
			a = &b->anchors[i];
			break;
		}
	if (a == NULL) {
		dsl_report(b->ld, line, col, "unknown alias *%s; define the anchor &%s before using it",
			   name, name);
		return SAGAD_ESYNTAX;
	}
	if (!a->done) {
		dsl_report(b->ld, line, col, "alias *%s is used inside the node it names; recursive "
			   "structures are not supported", name);
		return SAGAD_ESYNTAX;
	}
	/* Count expansions, not uses: an alias of a node holding 10 aliases expands 11 times. */
	b->aliases += 1 + a->node->n_alias;
	if (b->aliases > (size_t)b->ld->lim.max_aliases) {
		dsl_report(b->ld, line, col, "too many alias expansions (more than %d, limit "
			   "max_aliases); write the values out or use fewer nested aliases "
			   "(alias bombs such as \"billion laughs\" are refused)", b->ld->lim.max_aliases);
		return SAGAD_ELIMIT;
	}
	if (b->depth + (size_t)a->node->height > (size_t)b->ld->lim.max_depth) {
		dsl_report(b->ld, line, col, "alias *%s nests deeper than %d levels (limit max_depth); "
			   "flatten this value", name, b->ld->lim.max_depth);
		return SAGAD_ELIMIT;
	}
	if ((rc = limit_nodes(b, a->node->size, ev->start_mark)) != 0)
		return rc;
	n = node_copy(a->node);
	n->n_alias++;
	return attach(b, n);
}

static int on_event(struct builder *b, const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_DOCUMENT_START_EVENT:
		if (++b->docs > 1) {
			dsl_report(b->ld, (int)ev->start_mark.line + 1, (int)ev->start_mark.column + 1,
				   "a flow file holds one YAML document; move what follows this "
				   "\"---\" into its own file");
			return SAGAD_ESYNTAX;
		}
		return 0;
	case YAML_SCALAR_EVENT:
		return on_scalar(b, ev);
	case YAML_SEQUENCE_START_EVENT:
		return on_collection_start(b, ev, DSL_SEQ);
	case YAML_MAPPING_START_EVENT:
		return on_collection_start(b, ev, DSL_MAP);
	case YAML_SEQUENCE_END_EVENT:
	case YAML_MAPPING_END_EVENT:
		return on_collection_end(b);
	case YAML_ALIAS_EVENT:
		return on_alias(b, ev);
	default:
		return 0;
	}
}

/* The line and column (1-based, in characters) of a byte offset. */
static void offset_pos(const char *buf, size_t len, size_t off, int *line, int *col)
{
	size_t i, start = 0;

	*line = 1;
	if (off > len)
		off = len;
	for (i = 0; i < off; i++)
		if (buf[i] == '\n') {
			(*line)++;
			start = i + 1;
		}
	*col = 1 + (int)utf8_chars(buf + start, off - start);
}

/* The byte at a 0-based line and character column, or NUL. */
static char char_at(const char *buf, size_t len, size_t line, size_t col)
{
	size_t i = 0;

	while (line > 0 && i < len)
		if (buf[i++] == '\n')
			line--;
	while (i < len && buf[i] != '\n' && col > 0) {
		i++;
		while (i < len && ((unsigned char)buf[i] & 0xc0) == 0x80)
			i++;
		col--;
	}
	return i < len ? buf[i] : '\0';
}

static const char *syntax_hint(const yaml_parser_t *p, const char *buf, size_t len)
{
	const char *pr = p->problem ? p->problem : "";

	char c = char_at(buf, len, p->problem_mark.line, p->problem_mark.column);

	if (c == '\t')
		return "indent with spaces: YAML does not allow tabs";
	if (c == '\0')
		return "the file ends inside an unclosed [ ], { } or quote: close it";
	if (strstr(pr, "mapping values are not allowed"))
		return "check the indentation of this line, or quote a value that contains \": \"";
	if (strstr(pr, "did not find expected key"))
		return "check the indentation: the keys of one mapping start in the same column";
	if (strstr(pr, "did not find expected '-'"))
		return "check the indentation: the items of one list start in the same column";
	if (strstr(pr, "cannot start any token"))
		return "quote the value: it starts with a character YAML reserves (such as @ or `)";
	if (strstr(pr, "end of stream") || strstr(pr, "did not find expected ',' or"))
		return "close the quote, bracket or brace that is still open";
	if (strstr(pr, "could not find expected ':'"))
		return "write \"key: value\" with a space after the colon";
	return "check the indentation and quoting near here";
}

static void yaml_problem(struct dsl_loader *ld, const yaml_parser_t *p, const char *buf, size_t len)
{
	int line, col;

	switch (p->error) {
	case YAML_MEMORY_ERROR:
		fatalx("libyaml: out of memory");
	case YAML_READER_ERROR:
		offset_pos(buf, len, p->problem_offset, &line, &col);
		if (p->problem && strstr(p->problem, "control characters")) {
			dsl_report(ld, line, col, "control character U+%04X is not allowed in YAML; "
				   "remove it (a double-quoted string can write it as \\u%04X)",
				   (unsigned)p->problem_value, (unsigned)p->problem_value);
		} else if (p->problem && strstr(p->problem, "UTF-8")) {
			/* Point at the byte that starts the broken character. */
			size_t off = p->problem_offset < len ? p->problem_offset : len;
			size_t k = off;

			while (k > 0 && off - k < 4 && ((unsigned char)buf[k - 1] & 0xc0) == 0x80)
				k--;
			if (k > 0 && (unsigned char)buf[k - 1] >= 0xc0 && off - k < 4)
				off = k - 1;
			offset_pos(buf, len, off, &line, &col);
			if (off < len)
				dsl_report(ld, line, col, "the file is not valid UTF-8 (%s at byte 0x%02X); "
					   "save it as UTF-8", p->problem, (unsigned char)buf[off]);
			else
				dsl_report(ld, line, col, "the file is not valid UTF-8 (%s); save it "
					   "as UTF-8", p->problem);
		} else {
			dsl_report(ld, line, col, "cannot read the file: %s", p->problem);
		}
		return;
	case YAML_SCANNER_ERROR:
	case YAML_PARSER_ERROR:
		line = (int)p->problem_mark.line + 1;
		col = (int)p->problem_mark.column + 1;
		if (p->context != NULL)
			dsl_report(ld, line, col, "YAML syntax error: %s (%s at line %d, column %d); %s",
				   p->problem, p->context, (int)p->context_mark.line + 1,
				   (int)p->context_mark.column + 1, syntax_hint(p, buf, len));
		else
			dsl_report(ld, line, col, "YAML syntax error: %s; %s", p->problem,
				   syntax_hint(p, buf, len));
		return;
	default:
		dsl_report(ld, 0, 0, "YAML error: %s", p->problem ? p->problem : "unknown");
	}
}

/* Parses buf into *out (NULL for an empty document). Returns 0, SAGAD_ESYNTAX or SAGAD_ELIMIT. */
static int build_tree(struct dsl_loader *ld, const char *buf, size_t len, struct dsl_node **out)
{
	struct builder b;
	yaml_parser_t p;
	yaml_event_t ev;
	const char *nul;
	size_t i;
	int rc = 0, done;

	*out = NULL;
	/* libyaml takes a NUL for the end of the stream and would ignore the rest silently. */
	if ((nul = memchr(buf, '\0', len)) != NULL) {
		int line, col;

		offset_pos(buf, len, (size_t)(nul - buf), &line, &col);
		dsl_report(ld, line, col, "NUL byte in the file; a flow file is UTF-8 text: save it "
			   "as UTF-8");
		return SAGAD_ESYNTAX;
	}
	memset(&b, 0, sizeof(b));
	b.ld = ld;
	b.buf = buf;
	b.len = len;
	if (!yaml_parser_initialize(&p))
		fatalx("libyaml: out of memory");
	yaml_parser_set_input_string(&p, (const unsigned char *)buf, len);
	yaml_parser_set_encoding(&p, YAML_UTF8_ENCODING);
	for (;;) {
		if (!yaml_parser_parse(&p, &ev)) {
			yaml_problem(ld, &p, buf, len);
			rc = SAGAD_ESYNTAX;
			break;
		}
		done = ev.type == YAML_STREAM_END_EVENT;
		rc = on_event(&b, &ev);
		yaml_event_delete(&ev);
		if (rc != 0 || done)
			break;
	}
	yaml_parser_delete(&p);
	for (i = 0; i < b.depth; i++) {
		node_free(b.stack[i].key);
		node_free(b.stack[i].node);
	}
	free(b.stack);
	for (i = 0; i < b.n_anchors; i++)
		free(b.anchors[i].name);
	free(b.anchors);
	if (rc == 0)
		*out = b.root;
	else
		node_free(b.root);
	return rc;
}

/* ---- scalars: the YAML 1.2 core schema ---------------------------------------------------- */

enum scalar_type { S_STRING, S_NULL, S_BOOL, S_INT, S_FLOAT, S_BAD };

static bool is_null_word(const char *s)
{
	return *s == '\0' || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	       !strcmp(s, "NULL");
}

static int bool_word(const char *s)
{
	if (!strcmp(s, "true") || !strcmp(s, "True") || !strcmp(s, "TRUE"))
		return 1;
	if (!strcmp(s, "false") || !strcmp(s, "False") || !strcmp(s, "FALSE"))
		return 0;
	return -1;
}

static bool all_of(const char *s, const char *set)
{
	return *s != '\0' && s[strspn(s, set)] == '\0';
}

/* 1 and *v for an integer, 0 when s is not one, -1 when it does not fit 64 bits. */
static int int_word(const char *s, long long *v)
{
	const char *d = s;
	int base = 10;
	char *end;

	if (s[0] == '0' && s[1] == 'o' && all_of(s + 2, "01234567")) {
		base = 8;
		d = s + 2;
	} else if (s[0] == '0' && s[1] == 'x' && all_of(s + 2, "0123456789abcdefABCDEF")) {
		base = 16;
		d = s + 2;
	} else if (!all_of(s + (*s == '-' || *s == '+'), "0123456789")) {
		return 0;
	}
	errno = 0;
	*v = strtoll(d, &end, base);
	return errno == ERANGE ? -1 : 1;
}

/* 1 and *v for a float, 0 when s is not one, -1 for .inf/.nan (not representable in JSON). */
static int float_word(const char *s, double *v)
{
	const char *p = s + (*s == '-' || *s == '+');
	size_t digits = strspn(p, "0123456789"), frac = 0;

	if (!strcmp(p, ".inf") || !strcmp(p, ".Inf") || !strcmp(p, ".INF") || !strcmp(s, ".nan") ||
	    !strcmp(s, ".NaN") || !strcmp(s, ".NAN"))
		return -1;
	p += digits;
	if (*p == '.') {
		frac = strspn(p + 1, "0123456789");
		p += 1 + frac;
	}
	if (digits + frac == 0)
		return 0;
	if (*p == 'e' || *p == 'E') {
		p++;
		p += *p == '-' || *p == '+';
		if (strspn(p, "0123456789") == 0)
			return 0;
		p += strspn(p, "0123456789");
	}
	if (*p != '\0')
		return 0;
	*v = strtod(s, NULL);
	return isfinite(*v) ? 1 : -1;
}

/* Resolves a scalar's type; *why explains S_BAD. */
static enum scalar_type scalar_type(const struct dsl_node *n, long long *iv, double *dv, int *bv,
				    const char **why)
{
	const char *t = n->tag, *s = n->str;
	bool want_any = t == NULL && n->style == DSL_PLAIN;
	int r;

	*why = NULL;
	if (t != NULL && !strcmp(t, "!"))
		return S_STRING;
	if (t != NULL && strncmp(t, YAML_TAG_PREFIX, strlen(YAML_TAG_PREFIX)) != 0) {
		*why = "unsupported tag";
		return S_BAD;
	}
	if (t != NULL)
		t += strlen(YAML_TAG_PREFIX);
	if (!want_any && (t == NULL || !strcmp(t, "str")))
		return S_STRING;
	if ((want_any || !strcmp(t, "null")) && is_null_word(s))
		return S_NULL;
	if ((want_any || !strcmp(t, "bool")) && (*bv = bool_word(s)) >= 0)
		return S_BOOL;
	if (want_any || !strcmp(t, "int") || !strcmp(t, "float")) {
		if ((r = int_word(s, iv)) == 1)
			return S_INT;
		if (r < 0) {
			*why = "integer out of range (64 bits); quote it if it is an identifier";
			return S_BAD;
		}
	}
	if (want_any || !strcmp(t, "float")) {
		if ((r = float_word(s, dv)) == 1)
			return S_FLOAT;
		if (r < 0) {
			*why = "infinity and NaN cannot be written in JSON; quote it if you meant text";
			return S_BAD;
		}
	}
	if (want_any)
		return S_STRING;
	*why = "the value does not match its tag";
	return S_BAD;
}

static bool is_string(const struct dsl_node *n)
{
	long long iv;
	double dv;
	int bv;
	const char *why;

	return n->kind == DSL_SCALAR && scalar_type(n, &iv, &dv, &bv, &why) == S_STRING;
}

static bool is_null(const struct dsl_node *n)
{
	long long iv;
	double dv;
	int bv;
	const char *why;

	return n->kind == DSL_SCALAR && scalar_type(n, &iv, &dv, &bv, &why) == S_NULL;
}

/* Converts a node to JSON, reporting what cannot be converted. New reference or NULL. */
static json_t *node_to_json(struct dsl_loader *ld, const struct dsl_node *n)
{
	json_t *v, *c;
	long long iv;
	double dv;
	int bv;
	const char *why;
	size_t i;
	bool ok = true;

	switch (n->kind) {
	case DSL_MAP:
		v = json_object();
		for (i = 0; i < n->n; i++) {
			if ((c = node_to_json(ld, n->items[i])) == NULL) {
				ok = false;
				continue;
			}
			json_object_setn_new(v, n->keys[i]->str, n->keys[i]->len, c);
		}
		break;
	case DSL_SEQ:
		v = json_array();
		for (i = 0; i < n->n; i++) {
			if ((c = node_to_json(ld, n->items[i])) == NULL) {
				ok = false;
				continue;
			}
			json_array_append_new(v, c);
		}
		break;
	default:
		switch (scalar_type(n, &iv, &dv, &bv, &why)) {
		case S_NULL:
			return json_null();
		case S_BOOL:
			return json_boolean(bv);
		case S_INT:
			return json_integer(iv);
		case S_FLOAT:
			return json_real(dv);
		case S_BAD:
			report(ld, n, "\"%s\": %s", n->str, why);
			return NULL;
		default:
			if ((v = json_stringn(n->str, n->len)) == NULL)
				report(ld, n, "string is not valid UTF-8 (check its escapes)");
			return v;
		}
	}
	if (!ok) {
		json_decref(v);
		return NULL;
	}
	return v;
}

/* ---- schema helpers ----------------------------------------------------------------------- */

static const char *node_desc(const struct dsl_node *n)
{
	if (n->kind == DSL_MAP)
		return "a mapping";
	if (n->kind == DSL_SEQ)
		return "a list";
	if (is_null(n))
		return "nothing (null)";
	return "a single value";
}

static bool want(struct dsl_loader *ld, const struct dsl_node *n, enum dsl_node_kind kind,
		 const char *what)
{
	if (n->kind == kind)
		return true;
	report(ld, n, "%s: expected %s, found %s", what,
	       kind == DSL_MAP ? "a mapping (key: value lines)" :
	       kind == DSL_SEQ ? "a list (\"- item\" lines or [a, b])" : "a single value",
	       node_desc(n));
	return false;
}

static const struct dsl_node *get(const struct dsl_node *map, const char *key)
{
	size_t i;

	if (map == NULL || map->kind != DSL_MAP)
		return NULL;
	for (i = 0; i < map->n; i++)
		if (!strcmp(map->keys[i]->str, key))
			return map->items[i];
	return NULL;
}

static const struct dsl_node *get_key(const struct dsl_node *map, const char *key)
{
	size_t i;

	for (i = 0; map != NULL && map->kind == DSL_MAP && i < map->n; i++)
		if (!strcmp(map->keys[i]->str, key))
			return map->keys[i];
	return NULL;
}

static size_t count(const char *const *v)
{
	size_t n = 0;

	while (v[n] != NULL)
		n++;
	return n;
}

static bool in_list(const char *s, const char *const *v)
{
	for (; *v != NULL; v++)
		if (!strcmp(s, *v))
			return true;
	return false;
}

static bool in_list_n(const char *s, const char *const *v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!strcmp(s, v[i]))
			return true;
	return false;
}

/* Reports every key of map not in known; `where` reads "in step \"pay\"". */
static void check_keys(struct dsl_loader *ld, const struct dsl_node *map, const char *const *known,
		       const char *where)
{
	size_t i;

	for (i = 0; i < map->n; i++) {
		const struct dsl_node *k = map->keys[i];
		const char *s;
		char *all;

		if (in_list(k->str, known))
			continue;
		if ((s = dsl_suggest(k->str, known, count(known))) != NULL) {
			report(ld, k, "unknown key \"%s\" %s; did you mean \"%s\"?", k->str, where, s);
		} else {
			all = dsl_join(known, count(known));
			report(ld, k, "unknown key \"%s\" %s (valid keys: %s)", k->str, where, all);
			free(all);
		}
	}
}

static void missing(struct dsl_loader *ld, const struct dsl_node *map, const char *what,
		    const char *key, const char *hint)
{
	report(ld, map, "%s: missing key \"%s\" (%s)", what, key, hint);
}

/* A non-empty text value (any scalar but null: `version: 2` reads as "2"). */
static bool get_text(struct dsl_loader *ld, const struct dsl_node *n, const char *what,
		     const char **out)
{
	if (n->kind != DSL_SCALAR || is_null(n)) {
		report(ld, n, "%s: expected a text value, found %s", what, node_desc(n));
		return false;
	}
	*out = n->str;
	return true;
}

static bool get_int(struct dsl_loader *ld, const struct dsl_node *n, const char *what,
		    long long min, long long max, long long *out)
{
	long long iv;
	double dv;
	int bv;
	const char *why;

	if (n->kind != DSL_SCALAR || scalar_type(n, &iv, &dv, &bv, &why) != S_INT) {
		report(ld, n, "%s: expected an integer like %lld, found %s%s%s", what, min,
		       n->kind == DSL_SCALAR ? "\"" : "", n->kind == DSL_SCALAR ? n->str : node_desc(n),
		       n->kind == DSL_SCALAR ? "\"" : "");
		return false;
	}
	if (iv < min || iv > max) {
		report(ld, n, "%s: %lld is out of range; use %lld to %lld", what, iv, min, max);
		return false;
	}
	*out = iv;
	return true;
}

static bool get_number(struct dsl_loader *ld, const struct dsl_node *n, const char *what,
		       double min, double max, double *out)
{
	long long iv;
	double dv;
	int bv;
	const char *why;
	enum scalar_type t = n->kind == DSL_SCALAR ? scalar_type(n, &iv, &dv, &bv, &why) : S_BAD;

	if (t == S_INT)
		dv = (double)iv;
	if (t != S_INT && t != S_FLOAT) {
		report(ld, n, "%s: expected a number between %g and %g, found %s", what, min, max,
		       n->kind == DSL_SCALAR ? n->str : node_desc(n));
		return false;
	}
	if (dv < min || dv > max) {
		report(ld, n, "%s: %g is out of range; use %g to %g", what, dv, min, max);
		return false;
	}
	*out = dv;
	return true;
}

static bool get_bool(struct dsl_loader *ld, const struct dsl_node *n, const char *what, bool *out)
{
	long long iv;
	double dv;
	int bv;
	const char *why;

	if (n->kind != DSL_SCALAR || scalar_type(n, &iv, &dv, &bv, &why) != S_BOOL) {
		report(ld, n, "%s: expected true or false, found %s", what,
		       n->kind == DSL_SCALAR ? n->str : node_desc(n));
		return false;
	}
	*out = bv;
	return true;
}

static bool parse_duration(struct dsl_loader *ld, const struct dsl_node *n, const char *what,
			   const char *s, int64_t *ms)
{
	if (all_of(s, "0123456789.") && strspn(s, "0.") != strlen(s)) {
		report(ld, n, "%s: \"%s\" has no unit; write a duration like \"2s\" or \"250ms\"",
		       what, s);
		return false;
	}
	if (util_parse_duration(s, ms) != 0) {
		report(ld, n, "%s: expected a duration like \"2s\" or \"250ms\" (units ms, s, m, h, "
		       "d), found \"%s\"", what, s);
		return false;
	}
	return true;
}

static bool get_duration(struct dsl_loader *ld, const struct dsl_node *n, const char *what,
			 int64_t *ms)
{
	if (n->kind != DSL_SCALAR || is_null(n)) {
		report(ld, n, "%s: expected a duration like \"2s\" or \"250ms\", found %s", what,
		       node_desc(n));
		return false;
	}
	return parse_duration(ld, n, what, n->str, ms);
}

static bool valid_name(const char *s, bool dash)
{
	if (*s < 'a' || *s > 'z')
		return false;
	for (s++; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_' ||
		      (dash && *s == '-')))
			return false;
	return true;
}

static bool valid_field_name(const char *s)
{
	if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_'))
		return false;
	for (s++; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') ||
		      (*s >= '0' && *s <= '9') || *s == '_'))
			return false;
	return true;
}

static bool valid_header_name(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (*s <= ' ' || *s >= 127 || strchr("()<>@,;:\\\"/[]?={}", *s))
			return false;
	return true;
}

/* ---- templates ----------------------------------------------------------------------------- */

/* tmpl's messages start with "offset N: "; the column already says where. */
static const char *strip_offset(const char *err)
{
	const char *p = err;

	if (strncmp(p, "offset ", 7) == 0) {
		p += 7 + strspn(p + 7, "0123456789");
		if (*p == ':')
			return p + 1 + (p[1] == ' ');
	}
	return err;
}

/* Compiles each string of n on its own, so an error points at its column, and checks the
 * references it makes. */
static void walk_strings(struct dsl_loader *ld, const struct dsl_site *site, const struct dsl_node *n)
{
	char err[256];
	size_t i, off = 0;
	struct tmpl *t;

	if (n->kind != DSL_SCALAR) {
		for (i = 0; i < n->n; i++)
			walk_strings(ld, site, n->items[i]);
		return;
	}
	if (!is_string(n))
		return;
	err[0] = '\0';
	if ((t = tmpl_compile_string(n->str, err, sizeof(err), &off)) == NULL) {
		/* An unterminated ${ may have been meant literally. */
		dsl_report(ld, n->line, dsl_node_col(n, off), "%s: template error: %s%s", site->what,
			   strip_offset(err), strstr(err, "unterminated \"${") ?
			   " (write $${ for a literal ${)" : "");
		return;
	}
	dsl_check_refs(ld, site, n, t);
	tmpl_free(t);
}

/* Compiles a template-capable value; NULL after reporting why. */
static struct tmpl *compile(struct dsl_loader *ld, const struct dsl_site *site, const struct dsl_node *n)
{
	size_t before = ld->n_errors, off = 0;
	struct tmpl *t;
	json_t *v;
	char err[256];

	walk_strings(ld, site, n);
	if (ld->n_errors != before)
		return NULL;
	if ((v = node_to_json(ld, n)) == NULL)
		return NULL;
	err[0] = '\0';
	t = tmpl_compile(v, err, sizeof(err), &off);
	json_decref(v);
	if (t == NULL)
		report(ld, n, "%s: template error: %s", site->what, strip_offset(err));
	return t;
}

static json_t *env_ctx(struct dsl_loader *ld)
{
	json_t *env;
	char **e;

	if (ld->env_ctx != NULL)
		return ld->env_ctx;
	env = json_object();
	for (e = environ; e != NULL && *e != NULL; e++) {
		const char *eq = strchr(*e, '=');
		json_t *v;

		if (eq == NULL || (v = json_string(eq + 1)) == NULL)
			continue;
		json_object_setn_new(env, *e, (size_t)(eq - *e), v);
	}
	ld->env_ctx = json_object();
	json_object_set_new(ld->env_ctx, "env", env);
	return ld->env_ctx;
}

struct unset_env {
	const char *name;
	size_t offset;
	char *copy;
};

static void on_env_ref(const struct tmpl_ref *r, void *arg)
{
	struct unset_env *u = arg;

	if (u->copy == NULL && r->n_segs == 2 && !strcmp(r->segs[0], "env") &&
	    getenv(r->segs[1]) == NULL) {
		u->copy = xstrdup(r->segs[1]);
		u->offset = r->offset;
	}
}

/* Evaluates a load-time value (a string template over env: a participant setting, or a topic
 * when kind is DSL_SITE_TOPIC) now. New string or NULL. */
static char *setting_at(struct dsl_loader *ld, const struct dsl_node *n, const char *what,
			const char *example, enum dsl_site_kind kind)
{
	struct dsl_site site = { kind, -1, what };
	size_t before = ld->n_errors, off = 0;
	struct unset_env u = { NULL, 0, NULL };
	struct tmpl *t;
	char err[256], *s;

	if (n->kind != DSL_SCALAR || is_null(n)) {
		report(ld, n, "%s: expected a text value, found %s", what, node_desc(n));
		return NULL;
	}
	err[0] = '\0';
	if ((t = tmpl_compile_string(n->str, err, sizeof(err), &off)) == NULL) {
		dsl_report(ld, n->line, dsl_node_col(n, off), "%s: template error: %s", what,
			   strip_offset(err));
		return NULL;
	}
	dsl_check_refs(ld, &site, n, t);
	if (ld->n_errors != before) {
		tmpl_free(t);
		return NULL;
	}
	if ((s = tmpl_eval_string(t, env_ctx(ld), err, sizeof(err))) == NULL) {
		tmpl_visit_refs(t, on_env_ref, &u);
		if (u.copy != NULL)
			dsl_report(ld, n->line, dsl_node_col(n, u.offset), "%s: environment variable %s "
				   "is not set; set it or use default(env.%s, '%s')", what, u.copy,
				   u.copy, example);
		else
			report(ld, n, "%s: %s", what, err);
		free(u.copy);
	}
	tmpl_free(t);
	return s;
}

static char *setting(struct dsl_loader *ld, const struct dsl_node *n, const char *what,
		     const char *example)
{
	return setting_at(ld, n, what, example, DSL_SITE_SETTINGS);
}

/* Kafka's rule for topic names: 1 to 249 of [a-zA-Z0-9._-]. */
static bool valid_topic(const char *s)
{
	size_t n = strlen(s);

	return n >= 1 && n <= 249 && strcmp(s, ".") != 0 && strcmp(s, "..") != 0 &&
	       s[strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")] == '\0';
}

/* A topic: text resolved at load time (env allowed). New string or NULL after reporting. */
static char *get_topic(struct dsl_loader *ld, const struct dsl_node *n, const char *what,
		       enum dsl_site_kind kind)
{
	char *s = setting_at(ld, n, what, "my-topic", kind);

	if (s != NULL && !valid_topic(s)) {
		report(ld, n, "%s: \"%s\" is not a valid Kafka topic name; use letters, digits, "
		       "\".\", \"_\" and \"-\" (at most 249 characters)", what, s);
		free(s);
		s = NULL;
	}
	return s;
}

/* A template that renders s as is. */
static struct tmpl *constant(const char *s)
{
	struct strbuf b;
	struct tmpl *t;
	char err[256];
	size_t off;

	strbuf_init(&b);
	for (; *s; s++) {
		if (s[0] == '$' && s[1] == '{')
			strbuf_adds(&b, "$");
		strbuf_add(&b, s, 1);
	}
	t = tmpl_compile_string(b.data ? b.data : "", err, sizeof(err), &off);
	strbuf_close(&b);
	if (t == NULL)
		fatalx("dsl: constant template: %s", err);
	return t;
}

/* ---- the flow --------------------------------------------------------------------------- */

static const char *const top_keys[] = { "name", "version", "description", "input", "strict_input",
	"participants", "deadline", "output", "defaults", "steps", "triggers", "keys", "http_status",
	NULL };
static const char *const http_status_keys[] = { "completed", "compensated", "failed", NULL };
static const char *const input_keys[] = { "type", "required", "default", "description",
	"sensitive", NULL };
static const char *const participant_keys[] = { "type", "url", "headers", "timeout", "topic",
	"reply_topic", "circuit_breaker", NULL };
static const char *const breaker_keys[] = { "failure_rate", "min_calls", "window",
	"consecutive_failures", "open", "half_open_probes", NULL };
static const char *const saga_ref_keys[] = { "flow", "key", "do", "if_missing", "states", NULL };
static const char *const participant_types[] = { "http", "kafka", NULL };
static const char *const defaults_keys[] = { "timeout", "retry", "compensation_retry", NULL };
static const char *const retry_keys[] = { "max_attempts", "initial_backoff", "multiplier",
	"max_backoff", "jitter", "on", NULL };
static const char *const retry_on_names[] = { "connect", "timeout", "5xx", "429", NULL };
static const char *const step_keys[] = { "name", "participant", "action", "compensation", "keep",
	"timeout", "retry", "pivot", "flow", "input", "publish", "when", "background", "fallback",
	"saga", NULL };
static const char *const parallel_keys[] = { "name", "parallel", NULL };
static const char *const request_keys[] = { "method", "path", "query", "headers", "body",
	"success", "retry", "topic", "key", "reply", NULL };
static const char *const http_only_keys[] = { "method", "path", "query", "success", NULL };
static const char *const kafka_only_keys[] = { "topic", "key", "reply", NULL };
static const char *const reply_keys[] = { "topic", "correlate", "type", "success", "failure",
	"fields", NULL };
static const char *const correlate_keys[] = { "path", "value", NULL };
static const char *const trigger_keys[] = { "topic", "type", "types", "fields", "input", NULL };
/* Built-in defaults by participant kind. */
#define DEFAULT_KAFKA_TIMEOUT_MS 30000
#define DEFAULT_CORRELATE_PATH "header:correlation-id"
static const char *const success_keys[] = { "status", "body", "fields", NULL };
static const char *const methods[] = { "GET", "POST", "PUT", "PATCH", "DELETE", NULL };
/* In enum input_type order. */
static const char *const type_names[] = { "any", "string", "integer", "number", "boolean", "object",
	"array", NULL };

static const struct retry_policy retry_default = { 3, 100, 2.0, 5000, 0.2, RETRY_ON_DEFAULT };
static const struct retry_policy comp_retry_default = { 10, 200, 2.0, 30000, 0.2, RETRY_ON_DEFAULT };

struct defaults {
	int64_t timeout_ms;
	bool timeout_set;          /* defaults.timeout was written (else Kafka uses its own 30s) */
	struct retry_policy retry, comp_retry;
};

static bool get_type(struct dsl_loader *ld, const struct dsl_node *n, const char *what,
		     enum input_type *out)
{
	const char *s;
	char *all;
	size_t i;

	if (!get_text(ld, n, what, &s))
		return false;
	for (i = 0; type_names[i] != NULL; i++)
		if (!strcmp(s, type_names[i])) {
			*out = (enum input_type)i;
			return true;
		}
	all = dsl_join(type_names, count(type_names));
	if ((s = dsl_suggest(n->str, type_names, count(type_names))) != NULL)
		report(ld, n, "%s: unknown type \"%s\"; did you mean \"%s\"? (types: %s)", what,
		       n->str, s, all);
	else
		report(ld, n, "%s: unknown type \"%s\" (types: %s)", what, n->str, all);
	free(all);
	return false;
}

static void parse_input(struct dsl_loader *ld, const struct dsl_node *n)
{
	struct flow *f = ld->flow;
	char what[160];
	size_t i;

	ld->input_declared = true;
	if (is_null(n))
		return;
	if (!want(ld, n, DSL_MAP, "input"))
		return;
	f->inputs = xcalloc(n->n, sizeof(*f->inputs));
	ld->input_names = xcalloc(n->n, sizeof(*ld->input_names));
	for (i = 0; i < n->n; i++) {
		const struct dsl_node *k = n->keys[i], *v = n->items[i], *x;
		struct flow_input_field *fld = &f->inputs[f->n_inputs++];
		bool req = false;

		fld->name = xstrdup(k->str);
		fld->type = INPUT_ANY;
		ld->input_names[ld->n_input_names++] = fld->name;
		snprintf(what, sizeof(what), "input field \"%.64s\"", k->str);
		if (!valid_field_name(k->str))
			report(ld, k, "%s: not a valid field name; use letters, digits and \"_\" so "
			       "templates can read it as input.NAME", what);
		if (v->kind == DSL_SCALAR) {
			get_type(ld, v, what, &fld->type);
			continue;
		}
		if (!want(ld, v, DSL_MAP, what))
			continue;
		snprintf(what, sizeof(what), "in input field \"%.64s\"", k->str);
		check_keys(ld, v, input_keys, what);
		snprintf(what, sizeof(what), "input field \"%.64s\"", k->str);
		if ((x = get(v, "type")) != NULL)
			get_type(ld, x, what, &fld->type);
		if ((x = get(v, "required")) != NULL && get_bool(ld, x, what, &req))
			fld->required = req;
		if ((x = get(v, "sensitive")) != NULL && get_bool(ld, x, what, &req))
			fld->sensitive = req;   /* secret.h: sealed in the store, never shown */
		if ((x = get(v, "description")) != NULL && x->kind != DSL_SCALAR)
			report(ld, x, "%s: description: expected text, found %s", what, node_desc(x));
		if ((x = get(v, "default")) != NULL) {
			if (fld->required) {
				report(ld, x, "%s: a required field never uses its default; remove "
				       "\"default\" or \"required: true\"", what);
			} else if ((fld->default_value = node_to_json(ld, x)) != NULL &&
				   !flow_input_type_ok(fld->type, fld->default_value)) {
				report(ld, x, "%s: the default is not of type %s", what,
				       type_names[fld->type]);
			}
		}
	}
}

static void parse_retry(struct dsl_loader *ld, const struct dsl_node *n, const char *owner,
			struct retry_policy *rp)
{
	const struct dsl_node *x;
	char what[200];
	long long iv;
	size_t i;

	snprintf(what, sizeof(what), "in %s", owner);
	if (!want(ld, n, DSL_MAP, owner))
		return;
	check_keys(ld, n, retry_keys, what);
	snprintf(what, sizeof(what), "%s: max_attempts", owner);
	if ((x = get(n, "max_attempts")) != NULL && get_int(ld, x, what, 1, 1000, &iv))
		rp->max_attempts = (int)iv;
	snprintf(what, sizeof(what), "%s: initial_backoff", owner);
	if ((x = get(n, "initial_backoff")) != NULL)
		get_duration(ld, x, what, &rp->initial_backoff_ms);
	snprintf(what, sizeof(what), "%s: max_backoff", owner);
	if ((x = get(n, "max_backoff")) != NULL)
		get_duration(ld, x, what, &rp->max_backoff_ms);
	snprintf(what, sizeof(what), "%s: multiplier", owner);
	if ((x = get(n, "multiplier")) != NULL)
		get_number(ld, x, what, 1, 100, &rp->multiplier);
	snprintf(what, sizeof(what), "%s: jitter", owner);
	if ((x = get(n, "jitter")) != NULL)
		get_number(ld, x, what, 0, 1, &rp->jitter);
	snprintf(what, sizeof(what), "%s: on", owner);
	if ((x = get(n, "on")) != NULL && (x->kind == DSL_SCALAR || want(ld, x, DSL_SEQ, what))) {
		size_t m = x->kind == DSL_SCALAR ? 1 : x->n;

		rp->on = 0;
		for (i = 0; i < m; i++) {
			const struct dsl_node *e = x->kind == DSL_SCALAR ? x : x->items[i];
			const char *s;
			size_t j;
			char *all;

			if (e->kind != DSL_SCALAR) {
				report(ld, e, "%s: expected one of connect, timeout, 5xx, 429", what);
				continue;
			}
			for (j = 0; retry_on_names[j] != NULL; j++)
				if (!strcmp(e->str, retry_on_names[j]))
					break;
			if (retry_on_names[j] != NULL) {
				rp->on |= 1u << j;
				continue;
			}
			all = dsl_join(retry_on_names, count(retry_on_names));
			if ((s = dsl_suggest(e->str, retry_on_names, count(retry_on_names))) != NULL)
				report(ld, e, "%s: unknown failure \"%s\"; did you mean \"%s\"? "
				       "(known: %s; other 4xx are never retried)", what, e->str, s, all);
			else
				report(ld, e, "%s: unknown failure \"%s\" (known: %s; other 4xx are "
				       "never retried)", what, e->str, all);
			free(all);
		}
	}
	if (rp->max_backoff_ms < rp->initial_backoff_ms)
		report(ld, n, "%s: max_backoff (%lldms) is shorter than initial_backoff (%lldms); "
		       "raise max_backoff", owner, (long long)rp->max_backoff_ms,
		       (long long)rp->initial_backoff_ms);
}

static void parse_defaults(struct dsl_loader *ld, const struct dsl_node *n, struct defaults *d)
{
	const struct dsl_node *x;

	if (!want(ld, n, DSL_MAP, "defaults"))
		return;
	check_keys(ld, n, defaults_keys, "in defaults");
	if ((x = get(n, "timeout")) != NULL && get_duration(ld, x, "defaults: timeout", &d->timeout_ms))
		d->timeout_set = true;
	if ((x = get(n, "retry")) != NULL)
		parse_retry(ld, x, "defaults: retry", &d->retry);
	if ((x = get(n, "compensation_retry")) != NULL)
		parse_retry(ld, x, "defaults: compensation_retry", &d->comp_retry);
}

/* Reports a key of a participant's settings that belongs to the other kind. */
static void other_kind_key(struct dsl_loader *ld, const struct dsl_node *v, const char *key,
			   const char *what, bool kafka)
{
	const struct dsl_node *k = get_key(v, key);

	if (k == NULL)
		return;
	if (kafka)
		report(ld, k, "%s: %s is only for http participants; a kafka participant has topic, "
		       "reply_topic, headers and timeout", what, key);
	else
		report(ld, k, "%s: %s is only for kafka participants; add \"type: kafka\" if this "
		       "participant is reached through Kafka", what, key);
}

/* circuit_breaker: { failure_rate: 50, min_calls: 10, window: 10s, consecutive_failures: 5,
 * open: 5s, half_open_probes: 1 }; at least one of failure_rate and consecutive_failures. */
static void parse_breaker(struct dsl_loader *ld, const struct dsl_node *n, const char *owner,
			  struct flow_breaker *b)
{
	const struct dsl_node *x;
	char what[240];
	long long iv;

	*b = (struct flow_breaker){ true, 0, 10, 10000, 0, 5000, 1 };
	if (!want(ld, n, DSL_MAP, owner))
		return;
	snprintf(what, sizeof(what), "in %s", owner);
	check_keys(ld, n, breaker_keys, what);
	snprintf(what, sizeof(what), "%s: failure_rate", owner);
	if ((x = get(n, "failure_rate")) != NULL && get_int(ld, x, what, 1, 100, &iv))
		b->failure_rate = (int)iv;
	snprintf(what, sizeof(what), "%s: min_calls", owner);
	if ((x = get(n, "min_calls")) != NULL && get_int(ld, x, what, 1, 100000, &iv))
		b->min_calls = (int)iv;
	snprintf(what, sizeof(what), "%s: consecutive_failures", owner);
	if ((x = get(n, "consecutive_failures")) != NULL && get_int(ld, x, what, 1, 100000, &iv))
		b->consecutive_failures = (int)iv;
	snprintf(what, sizeof(what), "%s: half_open_probes", owner);
	if ((x = get(n, "half_open_probes")) != NULL && get_int(ld, x, what, 1, 1000, &iv))
		b->half_open_probes = (int)iv;
	snprintf(what, sizeof(what), "%s: window", owner);
	if ((x = get(n, "window")) != NULL && get_duration(ld, x, what, &b->window_ms) &&
	    b->window_ms < 100)
		report(ld, x, "%s: must be at least 100ms", what);
	snprintf(what, sizeof(what), "%s: open", owner);
	if ((x = get(n, "open")) != NULL && get_duration(ld, x, what, &b->open_ms) && b->open_ms == 0)
		report(ld, x, "%s: must be more than 0 (how long calls are refused before a probe)",
		       what);
	if (b->failure_rate == 0 && b->consecutive_failures == 0)
		report(ld, n, "%s: give failure_rate (percent of failed calls in the window) or "
		       "consecutive_failures (failures in a row), or both", owner);
}

static void parse_participant(struct dsl_loader *ld, struct participant *p, const struct dsl_node *k,
			      const struct dsl_node *v, const struct defaults *d)
{
	const struct dsl_node *x;
	char what[200];
	const char *sugg;
	char *s;
	size_t i, len;
	bool kafka;

	p->name = xstrdup(k->str);
	p->kind = PARTICIPANT_HTTP;
	p->timeout_ms = d->timeout_ms;
	snprintf(what, sizeof(what), "participant \"%.64s\"", k->str);
	if (!valid_name(k->str, true))
		report(ld, k, "%s: not a valid name; use lower-case letters, digits, \"_\" and \"-\", "
		       "starting with a letter", what);
	if (!want(ld, v, DSL_MAP, what))
		return;
	snprintf(what, sizeof(what), "in participant \"%.64s\"", k->str);
	check_keys(ld, v, participant_keys, what);
	snprintf(what, sizeof(what), "participant \"%.64s\"", k->str);
	if ((x = get(v, "type")) != NULL && x->kind != DSL_SCALAR) {
		want(ld, x, DSL_SCALAR, what);
	} else if (x != NULL && !strcmp(x->str, "kafka")) {
		p->kind = PARTICIPANT_KAFKA;
		if (!d->timeout_set)
			p->timeout_ms = DEFAULT_KAFKA_TIMEOUT_MS;
	} else if (x != NULL && strcmp(x->str, "http") != 0) {
		if ((sugg = dsl_suggest(x->str, participant_types, count(participant_types))) != NULL)
			report(ld, x, "%s: unknown type \"%s\"; did you mean \"%s\"? (types: http, "
			       "kafka)", what, x->str, sugg);
		else
			report(ld, x, "%s: unknown type \"%s\"; this version supports: http, kafka",
			       what, x->str);
	}
	kafka = p->kind == PARTICIPANT_KAFKA;
	if (kafka) {
		other_kind_key(ld, v, "url", what, true);
	} else {
		other_kind_key(ld, v, "topic", what, false);
		other_kind_key(ld, v, "reply_topic", what, false);
	}
	if (kafka) {
		snprintf(what, sizeof(what), "participant \"%.64s\": topic", k->str);
		if ((x = get(v, "topic")) != NULL)
			p->topic = get_topic(ld, x, what, DSL_SITE_SETTINGS);
		snprintf(what, sizeof(what), "participant \"%.64s\": reply_topic", k->str);
		if ((x = get(v, "reply_topic")) != NULL)
			p->reply_topic = get_topic(ld, x, what, DSL_SITE_SETTINGS);
	} else if ((x = get(v, "url")) == NULL) {
		missing(ld, v, what, "url", "the participant's base URL, e.g. \"http://127.0.0.1:8081\"; "
			"or \"type: kafka\" for a Kafka participant");
	} else {
		snprintf(what, sizeof(what), "participant \"%.64s\": url", k->str);
		if ((s = setting(ld, x, what, "http://...")) != NULL) {
			if (strncmp(s, "http://", 7) != 0 && strncmp(s, "https://", 8) != 0) {
				report(ld, x, "%s: \"%s\" must start with http:// or https://", what, s);
				free(s);
			} else {
				len = strlen(s);
				while (len > 0 && s[len - 1] == '/')
					s[--len] = '\0';
				p->base_url = s;
			}
		}
	}
	if ((x = get(v, "headers")) != NULL && !is_null(x) &&
	    want(ld, x, DSL_MAP, "participant headers")) {
		p->headers = xcalloc(x->n, sizeof(*p->headers));
		for (i = 0; i < x->n; i++) {
			const struct dsl_node *hk = x->keys[i];

			snprintf(what, sizeof(what), "participant \"%.64s\": header \"%.64s\"", k->str, hk->str);
			if (!valid_header_name(hk->str)) {
				report(ld, hk, "%s: not a valid %sheader name", what, kafka ? "" : "HTTP ");
				continue;
			}
			if ((s = setting(ld, x->items[i], what, "...")) == NULL)
				continue;
			p->headers[p->n_headers].name = xstrdup(hk->str);
			/* A value from the environment is a credential: never shown or stored. */
			p->headers[p->n_headers].secret = strstr(x->items[i]->str, "${") != NULL;
			p->headers[p->n_headers++].value = constant(s);
			free(s);
		}
	}
	if ((x = get(v, "circuit_breaker")) != NULL && !is_null(x)) {
		snprintf(what, sizeof(what), "participant \"%.64s\": circuit_breaker", k->str);
		parse_breaker(ld, x, what, &p->breaker);
	}
	if ((x = get(v, "timeout")) != NULL) {
		snprintf(what, sizeof(what), "participant \"%.64s\": timeout", k->str);
		if ((s = setting(ld, x, what, kafka ? "30s" : "10s")) != NULL) {
			if (parse_duration(ld, x, what, s, &p->timeout_ms) && p->timeout_ms == 0)
				report(ld, x, "%s: must be more than 0", what);
			free(s);
		}
	}
}

static void parse_participants(struct dsl_loader *ld, const struct dsl_node *n,
			       const struct defaults *d)
{
	struct flow *f = ld->flow;
	size_t i;

	if (!want(ld, n, DSL_MAP, "participants"))
		return;
	f->participants = xcalloc(n->n, sizeof(*f->participants));
	for (i = 0; i < n->n; i++)
		parse_participant(ld, &f->participants[f->n_participants++], n->keys[i], n->items[i], d);
}

enum keep_kind { KEEP_HTTP, KEEP_KAFKA, KEEP_SUBFLOW };

/* True when segs (of a keep path) name a part of a response of this kind. */
static bool response_path(enum keep_kind kind, char **segs, size_t nsegs)
{
	static const char *const kafka_top[] = { "type", "topic", "partition", "offset", NULL };

	if (segs == NULL || nsegs == 0)
		return false;
	if (!strcmp(segs[0], "body") || (kind == KEEP_KAFKA && !strcmp(segs[0], "headers")))
		return true;
	if (nsegs > 1)
		return false;
	if (kind == KEEP_KAFKA)
		return in_list(segs[0], kafka_top);
	return !strcmp(segs[0], "status") || (kind == KEEP_SUBFLOW && !strcmp(segs[0], "saga"));
}

static void parse_keep(struct dsl_loader *ld, struct flow_step *st, const struct dsl_node *n,
		       const char *owner, enum keep_kind kind)
{
	size_t i, m = n->kind == DSL_SCALAR ? 1 : n->n;
	char what[256];

	snprintf(what, sizeof(what), "%s: keep", owner);
	if (n->kind != DSL_SCALAR && !want(ld, n, DSL_SEQ, what))
		return;
	st->keep = xcalloc(m, sizeof(*st->keep));
	for (i = 0; i < m; i++) {
		const struct dsl_node *e = n->kind == DSL_SCALAR ? n : n->items[i];
		const char *s;
		char **segs;
		size_t nsegs = 0;

		if (!get_text(ld, e, what, &s))
			continue;
		segs = expr_path_split(s, &nsegs);
		if (!response_path(kind, segs, nsegs)) {
			if (kind == KEEP_KAFKA)
				report(ld, e, "%s: \"%s\" is not a path of a Kafka reply; write type, "
				       "body, body.FIELD (like body.id), headers, headers.NAME, topic, "
				       "partition or offset", what, s);
			else
				report(ld, e, "%s: \"%s\" is not a response path; write status, body or "
				       "body.FIELD (like body.id)%s", what, s,
				       kind == KEEP_SUBFLOW ? ", or saga" : "");
			expr_path_free(segs);
			continue;
		}
		expr_path_free(segs);
		st->keep[st->n_keep++] = xstrdup(s);
	}
}

static void parse_success(struct dsl_loader *ld, struct flow_request *rq, const struct dsl_node *n,
			  const char *owner)
{
	const struct dsl_node *x;
	char what[200], where[200];
	long long iv;
	size_t i, m;

	snprintf(what, sizeof(what), "%s: success", owner);
	if (!want(ld, n, DSL_MAP, what))
		return;
	snprintf(where, sizeof(where), "in the success rule of %s", owner);
	check_keys(ld, n, success_keys, where);
	if ((x = get(n, "status")) != NULL && (x->kind == DSL_SCALAR || want(ld, x, DSL_SEQ, what))) {
		m = x->kind == DSL_SCALAR ? 1 : x->n;
		snprintf(what, sizeof(what), "%s: success: status", owner);
		rq->ok_status = xcalloc(m, sizeof(*rq->ok_status));
		for (i = 0; i < m; i++)
			if (get_int(ld, x->kind == DSL_SCALAR ? x : x->items[i], what, 100, 599, &iv))
				rq->ok_status[rq->n_ok_status++] = (int)iv;
	}
	if ((x = get(n, "body")) != NULL) {
		rq->body_equals = node_to_json(ld, x);
		rq->has_body_equals = rq->body_equals != NULL;
	}
	snprintf(what, sizeof(what), "%s: success: fields", owner);
	if ((x = get(n, "fields")) != NULL && want(ld, x, DSL_MAP, what)) {
		rq->field_paths = xcalloc(x->n, sizeof(*rq->field_paths));
		rq->field_equals = xcalloc(x->n, sizeof(*rq->field_equals));
		for (i = 0; i < x->n; i++) {
			json_t *v = node_to_json(ld, x->items[i]);

			if (v == NULL)
				continue;
			rq->field_paths[rq->n_fields] = xstrdup(x->keys[i]->str);
			rq->field_equals[rq->n_fields++] = v;
		}
	}
}

/* A mapping of name -> string template (query, headers). */
static void parse_pairs(struct dsl_loader *ld, const struct dsl_node *n, const char *owner,
			const char *key, struct dsl_site *site, bool kafka, struct flow_header **out,
			size_t *n_out)
{
	char what[240];
	const char *saved = site->what;
	size_t i;

	snprintf(what, sizeof(what), "%s: %s", owner, key);
	if (is_null(n) || !want(ld, n, DSL_MAP, what))
		return;
	*out = xcalloc(n->n, sizeof(**out));
	for (i = 0; i < n->n; i++) {
		const struct dsl_node *k = n->keys[i], *v = n->items[i];
		struct tmpl *t;

		snprintf(what, sizeof(what), "%s: %s \"%.64s\"", owner, key, k->str);
		if (!strcmp(key, "headers") && !valid_header_name(k->str)) {
			report(ld, k, "%s: not a valid %sheader name", what, kafka ? "" : "HTTP ");
			continue;
		}
		if (v->kind != DSL_SCALAR || is_null(v)) {
			report(ld, v, "%s: expected a text value, found %s", what, node_desc(v));
			continue;
		}
		site->what = what;
		t = compile(ld, site, v);
		site->what = saved;
		if (t == NULL)
			continue;
		(*out)[*n_out].name = xstrdup(k->str);
		(*out)[(*n_out)++].value = t;
	}
}

/* A place in a Kafka message: "header:NAME", or a path into the body ("eventType",
 * "data.items[0].id"). New string or NULL after reporting. */
static char *get_msg_path(struct dsl_loader *ld, const struct dsl_node *n, const char *what)
{
	const char *s;
	char **segs;
	size_t nsegs = 0;

	if (!get_text(ld, n, what, &s))
		return NULL;
	if (!strncmp(s, "header:", 7)) {
		if (s[7] != '\0' && valid_header_name(s + 7))
			return xstrdup(s);
	} else if ((segs = expr_path_split(s, &nsegs)) != NULL) {
		expr_path_free(segs);
		if (nsegs > 0)
			return xstrdup(s);
	}
	report(ld, n, "%s: \"%s\" is neither a body path (like eventType or data.id) nor "
	       "header:NAME", what, s);
	return NULL;
}

/* One text or a list of texts (event types). */
static void get_names(struct dsl_loader *ld, const struct dsl_node *n, const char *what,
		      char ***out, size_t *n_out)
{
	size_t i, m = n->kind == DSL_SCALAR ? 1 : n->n;
	const char *s;

	if (n->kind != DSL_SCALAR && !want(ld, n, DSL_SEQ, what))
		return;
	*out = xcalloc(m, sizeof(**out));
	for (i = 0; i < m; i++)
		if (get_text(ld, n->kind == DSL_SCALAR ? n : n->items[i], what, &s))
			(*out)[(*n_out)++] = xstrdup(s);
}

/* A mapping of message path -> value that must be equal. */
static void parse_fields(struct dsl_loader *ld, const struct dsl_node *n, const char *what,
			 char ***paths, json_t ***equals, size_t *n_out)
{
	size_t i;

	if (!want(ld, n, DSL_MAP, what))
		return;
	*paths = xcalloc(n->n, sizeof(**paths));
	*equals = xcalloc(n->n, sizeof(**equals));
	for (i = 0; i < n->n; i++) {
		json_t *v;
		char *path;

		if ((path = get_msg_path(ld, n->keys[i], what)) == NULL)
			continue;
		if ((v = node_to_json(ld, n->items[i])) == NULL) {
			free(path);
			continue;
		}
		(*paths)[*n_out] = path;
		(*equals)[(*n_out)++] = v;
	}
}

/* What a request is: an HTTP call, a Kafka request/reply (or one-way) message, or the event of
 * a publish step. */
enum request_kind { REQUEST_HTTP, REQUEST_KAFKA, REQUEST_PUBLISH };

/* `reply:` of a Kafka request; NULL after reporting (or when n is not a mapping). */
static struct flow_reply *parse_reply(struct dsl_loader *ld, const struct dsl_node *n,
				      const char *owner, struct dsl_site *site,
				      const struct participant *p)
{
	const struct dsl_node *x, *c;
	struct flow_reply *r;
	char what[260], where[260], hint[200];

	snprintf(what, sizeof(what), "%s: reply", owner);
	if (!want(ld, n, DSL_MAP, what))
		return NULL;
	r = xcalloc(1, sizeof(*r));
	r->line = n->line;
	snprintf(where, sizeof(where), "in the reply of %s", owner);
	check_keys(ld, n, reply_keys, where);
	snprintf(what, sizeof(what), "%s: reply: topic", owner);
	if ((x = get(n, "topic")) != NULL) {
		r->topic = get_topic(ld, x, what, DSL_SITE_TOPIC);
	} else if (p != NULL && p->reply_topic != NULL) {
		r->topic = xstrdup(p->reply_topic);
	} else if (p != NULL) {
		snprintf(what, sizeof(what), "%s: reply", owner);
		snprintf(hint, sizeof(hint), "the topic replies arrive on; or set reply_topic on "
			 "participant \"%.64s\"", p->name);
		missing(ld, n, what, "topic", hint);
	}
	snprintf(what, sizeof(what), "%s: reply: correlate", owner);
	if ((c = get(n, "correlate")) != NULL && !is_null(c) && want(ld, c, DSL_MAP, what)) {
		snprintf(where, sizeof(where), "in the reply of %s: correlate", owner);
		check_keys(ld, c, correlate_keys, where);
		if ((x = get(c, "path")) == NULL)
			missing(ld, c, what, "path", "where a reply carries the value: a body path "
				"like paidId, or header:NAME");
		else
			r->correlate_path = get_msg_path(ld, x, what);
		snprintf(what, sizeof(what), "%s: reply: correlate: value", owner);
		if ((x = get(c, "value")) != NULL) {
			if (x->kind != DSL_SCALAR || is_null(x)) {
				report(ld, x, "%s: expected a text value (a template such as "
				       "\"${steps.pay.response.body.id}\"), found %s", what, node_desc(x));
			} else {
				site->what = what;
				r->correlate_value = compile(ld, site, x);
				site->what = NULL;
			}
		}
	}
	if (r->correlate_path == NULL)
		r->correlate_path = xstrdup(DEFAULT_CORRELATE_PATH);
	snprintf(what, sizeof(what), "%s: reply: type", owner);
	if ((x = get(n, "type")) != NULL)
		r->type_path = get_msg_path(ld, x, what);
	snprintf(what, sizeof(what), "%s: reply: success", owner);
	if ((x = get(n, "success")) != NULL)
		get_names(ld, x, what, &r->success_types, &r->n_success_types);
	snprintf(what, sizeof(what), "%s: reply: failure", owner);
	if ((x = get(n, "failure")) != NULL)
		get_names(ld, x, what, &r->failure_types, &r->n_failure_types);
	if (get(n, "success") == NULL && (x = get_key(n, "failure")) != NULL)
		report(ld, x, "%s: reply: failure is set but success is not; with a failure list, "
		       "replies of other types are ignored and the step could never succeed: list "
		       "the success types too", owner);
	if (get(n, "type") == NULL &&
	    ((x = get_key(n, "success")) != NULL || (x = get_key(n, "failure")) != NULL))
		report(ld, x, "%s: reply: %s lists event types; add \"type:\", the body path (or "
		       "header:NAME) that holds a reply's type", owner, x->str);
	snprintf(what, sizeof(what), "%s: reply: fields", owner);
	if ((x = get(n, "fields")) != NULL)
		parse_fields(ld, x, what, &r->field_paths, &r->field_equals, &r->n_fields);
	return r;
}

/* Reports each key of request n that belongs to the other kind of participant. */
static void other_kind_request_keys(struct dsl_loader *ld, const struct dsl_node *n,
				    const char *owner, const struct participant *p, bool kafka)
{
	size_t i;

	for (i = 0; p != NULL && i < n->n; i++) {
		const struct dsl_node *k = n->keys[i];

		if (kafka && in_list(k->str, http_only_keys))
			report(ld, k, "%s: %s is only for http participants (participant \"%s\" is "
			       "kafka); %s", owner, k->str, p->name, !strcmp(k->str, "success") ?
			       "the event types of a successful reply go under reply: success" :
			       "a Kafka request has topic, key, headers, body and reply");
		else if (!kafka && in_list(k->str, kafka_only_keys))
			report(ld, k, "%s: %s is only for kafka participants (participant \"%s\" is "
			       "http); an HTTP request has method, path, query, headers, body and "
			       "success", owner, k->str, p->name);
	}
}

static void parse_http_request(struct dsl_loader *ld, struct flow_request *rq,
			       const struct dsl_node *n, const char *owner, struct dsl_site *site)
{
	const struct dsl_node *x;
	char what[240];
	const char *s;
	size_t i;

	snprintf(what, sizeof(what), "%s: method", owner);
	if ((x = get(n, "method")) == NULL) {
		missing(ld, n, owner, "method", "GET, POST, PUT, PATCH or DELETE");
	} else if (get_text(ld, x, what, &s)) {
		char *up = xstrdup(s);

		for (i = 0; up[i]; i++)
			up[i] = (char)(up[i] >= 'a' && up[i] <= 'z' ? up[i] - 32 : up[i]);
		if (in_list(up, methods)) {
			rq->method = up;
		} else {
			report(ld, x, "%s: unknown method \"%s\"; use GET, POST, PUT, PATCH or DELETE",
			       what, s);
			free(up);
		}
	}
	snprintf(what, sizeof(what), "%s: path", owner);
	site->what = what;
	if ((x = get(n, "path")) == NULL) {
		missing(ld, n, owner, "path", "the request path, like /classes");
	} else if (x->kind != DSL_SCALAR || !is_string(x)) {
		report(ld, x, "%s: expected a path like \"/classes\", found %s", what, node_desc(x));
	} else if (x->str[0] != '/' && strncmp(x->str, "${", 2) != 0) {
		report(ld, x, "%s: \"%s\" must start with \"/\" (the participant's url is prepended)",
		       what, x->str);
	} else {
		rq->path = compile(ld, site, x);
	}
	site->what = NULL;
	if ((x = get(n, "query")) != NULL)
		parse_pairs(ld, x, owner, "query", site, false, &rq->query, &rq->n_query);
	if ((x = get(n, "success")) != NULL)
		parse_success(ld, rq, x, owner);
}

/* topic, key and reply of a Kafka request (p is NULL when the participant is unknown). */
static void parse_kafka_request(struct dsl_loader *ld, struct flow_request *rq,
				const struct dsl_node *n, const char *owner, struct dsl_site *site,
				const struct participant *p, enum request_kind kind)
{
	const struct dsl_node *x;
	char what[240], hint[200];

	snprintf(what, sizeof(what), "%s: topic", owner);
	if ((x = get(n, "topic")) != NULL) {
		rq->topic = get_topic(ld, x, what, DSL_SITE_TOPIC);
	} else if (p != NULL && p->topic == NULL) {
		snprintf(hint, sizeof(hint), "the topic to produce to; or set topic on participant "
			 "\"%.64s\"", p->name);
		missing(ld, n, owner, "topic", hint);
	}
	snprintf(what, sizeof(what), "%s: key", owner);
	if ((x = get(n, "key")) != NULL && !is_null(x)) {
		if (x->kind != DSL_SCALAR) {
			report(ld, x, "%s: expected a text value (a template rendering the message "
			       "key), found %s", what, node_desc(x));
		} else {
			site->what = what;
			rq->key = compile(ld, site, x);
			site->what = NULL;
		}
	}
	if ((x = get(n, "reply")) != NULL && !is_null(x)) {
		if (kind == REQUEST_PUBLISH)
			report(ld, get_key(n, "reply"), "%s: a publish step never waits for a reply; "
			       "remove reply, or make this a request/reply step with action", owner);
		else
			rq->reply = parse_reply(ld, x, owner, site, p);
	}
}

static void parse_request(struct dsl_loader *ld, struct flow_request *rq, const struct dsl_node *n,
			  const char *owner, struct dsl_site *site, struct retry_policy *comp_retry,
			  const struct participant *p, enum request_kind kind)
{
	const struct dsl_node *x;
	char what[240], where[240];

	rq->line = n->line;
	if (!want(ld, n, DSL_MAP, owner))
		return;
	snprintf(where, sizeof(where), "in the %s", owner);
	/* "retry" is checked as a known key here and explained below. */
	check_keys(ld, n, request_keys, where);
	other_kind_request_keys(ld, n, owner, p, kind != REQUEST_HTTP);
	if (comp_retry == NULL && (x = get_key(n, "retry")) != NULL) {
		if (kind == REQUEST_PUBLISH)
			report(ld, x, "%s: a publish step has no retry: its event is committed to "
			       "the outbox and produced from there", owner);
		else
			report(ld, x, "%s: retry does not go inside the action; an action's retry is "
			       "set on the step: move it one level up", owner);
	}
	if (kind == REQUEST_HTTP)
		parse_http_request(ld, rq, n, owner, site);
	else
		parse_kafka_request(ld, rq, n, owner, site, p, kind);
	if ((x = get(n, "headers")) != NULL)
		parse_pairs(ld, x, owner, "headers", site, kind != REQUEST_HTTP, &rq->headers,
			    &rq->n_headers);
	snprintf(what, sizeof(what), "%s: body", owner);
	site->what = what;
	if ((x = get(n, "body")) != NULL)
		rq->body = compile(ld, site, x);
	snprintf(what, sizeof(what), "%s: retry", owner);
	if (comp_retry != NULL && (x = get(n, "retry")) != NULL)
		parse_retry(ld, x, what, comp_retry);
	site->what = NULL;
}

static struct participant *find_participant(struct flow *f, const char *name)
{
	size_t i;

	for (i = 0; i < f->n_participants; i++)
		if (!strcmp(f->participants[i].name, name))
			return &f->participants[i];
	return NULL;
}

static void unknown_participant(struct dsl_loader *ld, const struct dsl_node *x, const char *owner)
{
	struct flow *f = ld->flow;
	const char **names = xcalloc(f->n_participants + 1, sizeof(*names));
	const char *s;
	char *all;
	size_t i;

	for (i = 0; i < f->n_participants; i++)
		names[i] = f->participants[i].name;
	all = dsl_join(names, f->n_participants);
	s = dsl_suggest(x->str, names, f->n_participants);
	if (f->n_participants == 0)
		report(ld, x, "%s: unknown participant \"%s\" (the flow declares none; add it under "
		       "participants:)", owner, x->str);
	else if (s != NULL)
		report(ld, x, "%s: unknown participant \"%s\" (known: %s); did you mean \"%s\"?", owner,
		       x->str, all, s);
	else
		report(ld, x, "%s: unknown participant \"%s\" (known: %s)", owner, x->str, all);
	free(all);
	free(names);
}

/* A publish step has none of these: it produces one event through the outbox and never waits. */
static const char *const not_for_publish[] = { "action", "compensation", "retry", "timeout", "keep",
	NULL };

static void parse_call_step(struct dsl_loader *ld, struct flow_step *st, const struct dsl_node *n,
			    const char *owner)
{
	struct dsl_site site = { DSL_SITE_ACTION, st->index, NULL };
	const struct participant *p = NULL;
	const struct dsl_node *x, *pub = get_key(n, "publish");
	enum request_kind kind = REQUEST_HTTP;
	char what[240];
	const char *s;
	size_t i;

	st->kind = STEP_KIND_CALL;
	if ((x = get(n, "participant")) == NULL) {
		missing(ld, n, owner, "participant", "a call step names the participant it calls");
	} else if (get_text(ld, x, owner, &s)) {
		if ((st->participant = find_participant(ld->flow, s)) == NULL)
			unknown_participant(ld, x, owner);
		else
			st->timeout_ms = st->participant->timeout_ms;
	}
	p = st->participant;
	if (p != NULL ? p->kind == PARTICIPANT_KAFKA :
	    pub != NULL || get(get(n, "action"), "topic") != NULL || get(get(n, "action"), "reply") != NULL)
		kind = REQUEST_KAFKA;
	if (pub != NULL) {
		if (p != NULL && p->kind != PARTICIPANT_KAFKA) {
			report(ld, pub, "%s: publish is only for kafka participants (participant \"%s\" "
			       "is http); an HTTP call is an action", owner, p->name);
			return;
		}
		for (i = 0; not_for_publish[i] != NULL; i++)
			if ((x = get_key(n, not_for_publish[i])) != NULL)
				report(ld, x, "%s: a publish step has no %s; it produces one event "
				       "through the outbox and never waits%s", owner, x->str,
				       !strcmp(x->str, "action") ? " (a request/reply step has action "
				       "instead of publish)" : "");
		st->publish = true;
		snprintf(what, sizeof(what), "publish of %s", owner);
		parse_request(ld, &st->action, get(n, "publish"), what, &site, NULL, p, REQUEST_PUBLISH);
		st->action.line = pub->line;
		return;
	}
	snprintf(what, sizeof(what), "action of %s", owner);
	if ((x = get(n, "action")) == NULL)
		missing(ld, n, owner, "action", kind == REQUEST_KAFKA ?
			"the message to send: topic, key, headers, body, reply; or publish for a "
			"one-way event" : "the request to send: method, path, body ...");
	else
		parse_request(ld, &st->action, x, what, &site, NULL, p, kind);
	if (x != NULL)
		st->action.line = get_key(n, "action")->line;
	if ((x = get(n, "compensation")) != NULL && !is_null(x)) {
		snprintf(what, sizeof(what), "compensation of %s", owner);
		site.kind = DSL_SITE_COMPENSATION;
		st->compensation = xcalloc(1, sizeof(*st->compensation));
		parse_request(ld, st->compensation, x, what, &site, &st->comp_retry, p, kind);
		st->compensation->line = get_key(n, "compensation")->line;
	}
	if ((x = get(n, "retry")) != NULL) {
		snprintf(what, sizeof(what), "retry of %s", owner);
		parse_retry(ld, x, what, &st->retry);
	}
}

static void parse_subflow_step(struct dsl_loader *ld, struct flow_step *st, const struct dsl_node *n,
			       const char *owner)
{
	char what[240];
	struct dsl_site site = { DSL_SITE_SUBFLOW_INPUT, st->index, what };
	const struct dsl_node *x;
	const char *s;

	st->kind = STEP_KIND_SUBFLOW;
	st->timeout_ms = 0;
	if ((x = get_key(n, "retry")) != NULL)
		report(ld, x, "%s: a sub-flow step has no retry; the child flow's steps retry on "
		       "their own", owner);
	if ((x = get_key(n, "compensation")) != NULL)
		report(ld, x, "%s: a sub-flow step has no compensation of its own; the child saga "
		       "compensates its steps", owner);
	if ((x = get(n, "flow")) == NULL) {
		missing(ld, n, owner, "flow", "the name of the flow to run");
	} else if (get_text(ld, x, owner, &s)) {
		if (!valid_name(s, true)) {
			report(ld, x, "%s: flow: \"%s\" is not a flow name", owner, s);
		} else {
			st->subflow_name = xstrdup(s);
			st->subflow_line = x->line;
			st->subflow_col = x->col;
			ld->subflows = xrealloc(ld->subflows, (ld->n_subflows + 1) *
						sizeof(*ld->subflows));
			ld->subflows[ld->n_subflows++] = (struct dsl_subflow_loc){ ld->flow,
				(size_t)st->index, x->line, x->col };
		}
	}
	snprintf(what, sizeof(what), "%s: input", owner);
	if ((x = get(n, "input")) == NULL) {
		missing(ld, n, owner, "input", "the child flow's input, a mapping");
	} else if (x->kind != DSL_MAP && !(is_string(x) && !strncmp(x->str, "${", 2))) {
		report(ld, x, "%s: expected a mapping (the child's input) or a template like "
		       "\"${input}\", found %s", what, node_desc(x));
	} else {
		st->subflow_input = compile(ld, &site, x);
	}
}

/* saga: { flow: order, key: { orderId: "${input.orderId}" }, do: cancel, if_missing: fail } */
static void parse_saga_step(struct dsl_loader *ld, struct flow_step *st, const struct dsl_node *n,
			    const char *owner)
{
	char what[320];
	struct dsl_site site = { DSL_SITE_ACTION, st->index, what };
	const struct dsl_node *x, *k;
	struct flow_saga_ref *ref;
	const char *s;
	size_t i;

	st->kind = STEP_KIND_SAGA;
	st->timeout_ms = 0;
	for (i = 0; i < 4; i++) {
		static const char *const not_here[] = { "retry", "compensation", "keep", "fallback" };
		if ((x = get_key(n, not_here[i])) != NULL)
			report(ld, x, "%s: a saga step has no %s; it acts on another saga and "
			       "cannot be undone", owner, not_here[i]);
	}
	snprintf(what, sizeof(what), "%s: saga", owner);
	n = get(n, "saga");
	if (!want(ld, n, DSL_MAP, what))
		return;
	snprintf(what, sizeof(what), "in %s: saga", owner);
	check_keys(ld, n, saga_ref_keys, what);
	ref = st->saga_ref = xcalloc(1, sizeof(*ref));
	snprintf(what, sizeof(what), "%s: saga", owner);
	if ((x = get(n, "flow")) == NULL)
		missing(ld, n, what, "flow", "the flow whose saga this step acts on");
	else if (get_text(ld, x, what, &s) && !valid_name(s, true))
		report(ld, x, "%s: flow: \"%s\" is not a flow name", what, s);
	else if (x->kind == DSL_SCALAR)
		ref->flow = xstrdup(x->str);
	if ((x = get(n, "do")) == NULL) {
		missing(ld, n, what, "do", "find (read the saga) or cancel (stop it and undo its "
			"steps, running or completed)");
	} else if (get_text(ld, x, what, &s)) {
		if (!strcmp(s, "cancel"))
			ref->op = SAGA_OP_CANCEL;
		else if (!strcmp(s, "find"))
			ref->op = SAGA_OP_FIND;
		else
			report(ld, x, "%s: do: \"%s\" is not an operation; use find or cancel", what, s);
	}
	if ((x = get(n, "if_missing")) != NULL && get_text(ld, x, what, &s)) {
		if (!strcmp(s, "skip"))
			ref->missing_ok = true;
		else if (strcmp(s, "fail") != 0)
			report(ld, x, "%s: if_missing: \"%s\"; use fail (the step fails) or skip (it "
			       "succeeds with found: false)", what, s);
	}
	if ((x = get(n, "states")) != NULL) {
		if (ref->op != SAGA_OP_FIND)
			report(ld, x, "%s: states is for do: find (cancel accepts any state)", what);
		get_names(ld, x, "saga: states", &ref->states, &ref->n_states);
		for (i = 0; i < ref->n_states; i++) {
			static const char *const states[] = { "running", "compensating", "completed",
				"compensated", "failed", NULL };
			if (!in_list(ref->states[i], states))
				report(ld, x, "%s: states: \"%s\" is not a saga state (running, "
				       "compensating, completed, compensated, failed)", what,
				       ref->states[i]);
		}
	}
	if ((x = get(n, "key")) == NULL) {
		missing(ld, n, what, "key", "the business key that finds the saga, e.g. "
			"{ orderId: \"${input.orderId}\" }");
	} else if (want(ld, x, DSL_MAP, "saga key")) {
		if (x->n != 1) {
			report(ld, x, "%s: key: give exactly one business key name and value", what);
			return;
		}
		k = x->keys[0];
		ref->key_name = xstrdup(k->str);
		snprintf(what, sizeof(what), "%s: saga.key.%.64s", owner, k->str);
		ref->key_value = compile(ld, &site, x->items[0]);
	}
}

/* when, background, fallback: settings every kind of step may have. */
static void parse_step_common(struct dsl_loader *ld, struct flow_step *st, const struct dsl_node *n,
			      const char *owner)
{
	char what[240];
	struct dsl_site site = { DSL_SITE_ACTION, st->index, what };
	const struct dsl_node *x;
	bool b;

	snprintf(what, sizeof(what), "%s: when", owner);
	if ((x = get(n, "when")) != NULL) {
		if (!(is_string(x) && !strncmp(x->str, "${", 2)))
			report(ld, x, "%s: expected a condition like \"${steps.pay.response.body."
			       "status == 'PaymentApproved'}\", found %s", what, node_desc(x));
		else
			st->when = compile(ld, &site, x);
	}
	snprintf(what, sizeof(what), "%s: background", owner);
	if ((x = get(n, "background")) != NULL && get_bool(ld, x, what, &b)) {
		st->background = b;
		if (b && st->pivot)
			report(ld, x, "%s: a pivot step cannot run in the background: the saga must "
			       "know its outcome", what);
		if (b && st->kind == STEP_KIND_SAGA)
			report(ld, x, "%s: a saga step cannot run in the background", what);
	}
	snprintf(what, sizeof(what), "%s: fallback", owner);
	if ((x = get(n, "fallback")) != NULL) {
		if (x->kind == DSL_SCALAR && !strcmp(x->str, "fail")) {
			st->fallback = FALLBACK_FAIL;
		} else if (x->kind == DSL_MAP && x->n == 1 && !strcmp(x->keys[0]->str, "value")) {
			st->fallback = FALLBACK_VALUE;
			st->fallback_value = node_to_json(ld, x->items[0]);
			if (st->kind != STEP_KIND_CALL || st->publish)
				report(ld, x, "%s: only a call step (action) can fall back to a value",
				       what);
		} else {
			report(ld, x, "%s: use fail (the step fails and the saga compensates) or "
			       "{ value: ... } (the step succeeds with that response body)", what);
		}
	}
}

static void parse_step(struct dsl_loader *ld, size_t i, const struct dsl_node *n,
		       const struct defaults *d)
{
	struct flow *f = ld->flow;
	struct flow_step *st = &f->steps[i];
	const struct dsl_node *x, *flow_key;
	const struct participant *pp;
	char owner[200], where[220];
	const char *s;
	bool call, sub, pivot;
	size_t j;

	st->index = (int)i;
	st->line = n->line;
	st->retry = d->retry;
	st->comp_retry = d->comp_retry;
	st->timeout_ms = d->timeout_ms;
	snprintf(owner, sizeof(owner), "step #%zu", i + 1);
	if (!want(ld, n, DSL_MAP, owner)) {
		st->name = xstrdup(owner);
		return;
	}
	if ((x = get(n, "name")) == NULL) {
		missing(ld, n, owner, "name", "every step has a unique name like \"pay\"");
	} else if (get_text(ld, x, owner, &s)) {
		if (!valid_name(s, false))
			report(ld, x, "step name \"%s\" is not valid; use lower-case letters, digits "
			       "and \"_\", starting with a letter", s);
		for (j = 0; j < i; j++)
			if (f->steps[j].name != NULL && !strcmp(f->steps[j].name, s)) {
				report(ld, x, "duplicate step name \"%s\" (first at line %d); step names "
				       "must be unique", s, f->steps[j].line);
				break;
			}
		snprintf(owner, sizeof(owner), "step \"%.64s\"", s);
	}
	st->name = xstrdup(x != NULL && x->kind == DSL_SCALAR ? x->str : owner);
	snprintf(where, sizeof(where), "in %s", owner);
	check_keys(ld, n, step_keys, where);
	/* keep comes first: the step's compensation may read its own kept response. */
	x = get(n, "participant");
	pp = x != NULL && x->kind == DSL_SCALAR ? find_participant(f, x->str) : NULL;
	if ((x = get(n, "keep")) != NULL && get_key(n, "publish") == NULL)
		parse_keep(ld, st, x, owner, get_key(n, "flow") != NULL ? KEEP_SUBFLOW :
			   pp != NULL && pp->kind == PARTICIPANT_KAFKA ? KEEP_KAFKA : KEEP_HTTP);
	snprintf(where, sizeof(where), "%s: pivot", owner);
	if ((x = get(n, "pivot")) != NULL && get_bool(ld, x, where, &pivot))
		st->pivot = pivot;
	call = get(n, "participant") != NULL || get(n, "action") != NULL ||
	       get_key(n, "publish") != NULL;
	sub = (flow_key = get_key(n, "flow")) != NULL || get(n, "input") != NULL;
	if (get_key(n, "saga") != NULL) {
		if (call || sub) {
			report(ld, get_key(n, "saga"), "%s has saga together with participant/action "
			       "or flow/input: a saga step only acts on another saga", owner);
			return;
		}
		parse_saga_step(ld, st, n, owner);
		parse_step_common(ld, st, n, owner);
		return;
	}
	if (call && sub) {
		report(ld, flow_key ? flow_key : n, "%s has both participant/action and flow/input: a "
		       "step either calls a participant (participant + action) or runs a sub-flow "
		       "(flow + input)", owner);
		return;
	}
	if (!call && !sub) {
		report(ld, n, "%s: nothing to do; give it participant + action (call a participant), "
		       "participant + publish (produce a Kafka event), flow + input (run a "
		       "sub-flow) or saga (act on another saga)", owner);
		return;
	}
	if (call)
		parse_call_step(ld, st, n, owner);
	else
		parse_subflow_step(ld, st, n, owner);
	parse_step_common(ld, st, n, owner);
	if ((x = get(n, "timeout")) != NULL && !st->publish) {
		char what[240];

		snprintf(what, sizeof(what), "%s: timeout", owner);
		if (get_duration(ld, x, what, &st->timeout_ms) && call && st->timeout_ms == 0)
			report(ld, x, "%s: a call step needs a timeout above 0", what);
	}
}

/* A parallel group is written `- parallel: [step, step, ...]` (with an optional name); its
 * steps are flattened into flow->steps, marked with the group they belong to. */
static bool is_parallel(const struct dsl_node *n)
{
	return n != NULL && n->kind == DSL_MAP && get_key(n, "parallel") != NULL;
}

static void parse_steps(struct dsl_loader *ld, const struct dsl_node *n, const struct defaults *d)
{
	struct flow *f = ld->flow;
	size_t i, j, total = 0, k;

	if (!want(ld, n, DSL_SEQ, "steps"))
		return;
	if (n->n == 0) {
		report(ld, n, "steps: the list is empty; a flow needs at least one step");
		return;
	}
	for (i = 0; i < n->n; i++) {
		const struct dsl_node *g = n->items[i], *members;

		if (!is_parallel(g)) {
			total++;
			continue;
		}
		check_keys(ld, g, parallel_keys, "in a parallel group");
		members = get(g, "parallel");
		if (!want(ld, members, DSL_SEQ, "parallel"))
			return; /* reported: the flow does not load */
		if (members->n < 2)
			report(ld, members, "parallel: a group needs at least two steps (one step "
			       "runs on its own)");
		for (j = 0; j < members->n; j++)
			if (is_parallel(members->items[j]))
				report(ld, members->items[j], "parallel: groups do not nest; run a "
				       "sub-flow step inside the group instead");
		total += members->n;
	}
	if (total > ld->lim.max_steps) {
		report(ld, n, "the flow has %zu steps (limit max_steps %zu); split it into sub-flows",
		       total, ld->lim.max_steps);
		ld->rc = SAGAD_ELIMIT;
		return;
	}
	if (total == 0) {
		report(ld, n, "steps: no steps; a flow needs at least one step");
		return;
	}
	/* Flatten, then every name first, so a reference to a later step can say so. */
	ld->step_nodes = xcalloc(total, sizeof(*ld->step_nodes));
	ld->step_group = xcalloc(total, sizeof(*ld->step_group));
	f->steps = xcalloc(total, sizeof(*f->steps));
	f->n_steps = total;
	for (i = 0, k = 0; i < n->n; i++) {
		const struct dsl_node *g = n->items[i], *members = get(g, "parallel");
		size_t m = is_parallel(g) ? members->n : 1;

		for (j = 0; j < m; j++, k++) {
			ld->step_nodes[k] = is_parallel(g) ? members->items[j] : g;
			ld->step_group[k] = (int)(k - j);
			f->steps[k].group_first = (int)(k - j);
			f->steps[k].group_n = (int)m;
		}
	}
	ld->step_names = xcalloc(total, sizeof(*ld->step_names));
	for (i = 0; i < total; i++) {
		const struct dsl_node *x = get(ld->step_nodes[i], "name");

		ld->step_names[ld->n_step_names++] = x && x->kind == DSL_SCALAR ? x->str : "";
	}
	for (i = 0; i < total; i++)
		parse_step(ld, i, ld->step_nodes[i], d);
	f->pivot = -1;
	for (i = 0; i < total; i++) {
		if (f->steps[i].pivot && f->pivot < 0)
			f->pivot = (int)i;
		if (f->steps[i].group_n > 1 && f->steps[i].pivot)
			report(ld, ld->step_nodes[i], "step \"%s\": a pivot cannot run in a parallel "
			       "group; make it its own step", f->steps[i].name);
	}
}

/* keys: { orderId: "${string(input.orderId)}", applyId: "${string(steps.apply.response.body.id)}" } */
static void parse_keys(struct dsl_loader *ld, const struct dsl_node *n)
{
	struct flow *f = ld->flow;
	char what[200];
	struct dsl_site site = { DSL_SITE_OUTPUT, -1, what };
	size_t i;

	if (!want(ld, n, DSL_MAP, "keys"))
		return;
	f->keys = xcalloc(n->n ? n->n : 1, sizeof(*f->keys));
	for (i = 0; i < n->n; i++) {
		const struct dsl_node *k = n->keys[i], *v = n->items[i];

		snprintf(what, sizeof(what), "keys.%.64s", k->str);
		if (!valid_field_name(k->str)) {
			report(ld, k, "keys: \"%s\" is not a valid key name; use letters, digits and "
			       "\"_\" (it is queried as ?key.NAME=)", k->str);
			continue;
		}
		if (!(is_string(v) && strstr(v->str, "${") != NULL)) {
			report(ld, v, "%s: expected a template such as \"${input.orderId}\", found %s",
			       what, node_desc(v));
			continue;
		}
		f->keys[f->n_keys].name = xstrdup(k->str);
		f->keys[f->n_keys++].value = compile(ld, &site, v);
	}
}

/* ---- triggers --------------------------------------------------------------------------------- */

/* With strict_input, a trigger's input mapping may only make declared fields. */
static void check_trigger_input_keys(struct dsl_loader *ld, const struct dsl_node *n,
				     const char *what)
{
	struct flow *f = ld->flow;
	const char *sugg;
	char *all;
	size_t i;

	if (!f->input_closed || n->kind != DSL_MAP)
		return;
	for (i = 0; i < n->n; i++) {
		const struct dsl_node *k = n->keys[i];

		if (in_list_n(k->str, ld->input_names, ld->n_input_names))
			continue;
		all = dsl_join(ld->input_names, ld->n_input_names);
		if ((sugg = dsl_suggest(k->str, ld->input_names, ld->n_input_names)) != NULL)
			report(ld, k, "%s: field \"%s\" is not declared in input and strict_input is "
			       "on (declared: %s); did you mean \"%s\"?", what, k->str, all, sugg);
		else
			report(ld, k, "%s: field \"%s\" is not declared in input and strict_input is "
			       "on (declared: %s)", what, k->str, *all ? all : "none");
		free(all);
	}
}

static void parse_trigger(struct dsl_loader *ld, struct flow_trigger *t, size_t i,
			  const struct dsl_node *n)
{
	char owner[64], what[160], where[80];
	struct dsl_site site = { DSL_SITE_TRIGGER_INPUT, -1, what };
	const struct dsl_node *x;

	t->line = n->line;
	snprintf(owner, sizeof(owner), "trigger #%zu", i + 1);
	if (!want(ld, n, DSL_MAP, owner))
		return;
	snprintf(where, sizeof(where), "in %s", owner);
	check_keys(ld, n, trigger_keys, where);
	snprintf(what, sizeof(what), "%s: topic", owner);
	if ((x = get(n, "topic")) == NULL)
		missing(ld, n, owner, "topic", "the Kafka topic whose events start a saga of this flow");
	else
		t->topic = get_topic(ld, x, what, DSL_SITE_TOPIC);
	snprintf(what, sizeof(what), "%s: type", owner);
	if ((x = get(n, "type")) != NULL)
		t->type_path = get_msg_path(ld, x, what);
	snprintf(what, sizeof(what), "%s: types", owner);
	if ((x = get(n, "types")) != NULL) {
		get_names(ld, x, what, &t->types, &t->n_types);
		if (get(n, "type") == NULL)
			report(ld, get_key(n, "types"), "%s: types lists event types; add \"type:\", the "
			       "body path (or header:NAME) that holds an event's type", owner);
	}
	snprintf(what, sizeof(what), "%s: fields", owner);
	if ((x = get(n, "fields")) != NULL)
		parse_fields(ld, x, what, &t->field_paths, &t->field_equals, &t->n_fields);
	snprintf(what, sizeof(what), "%s: input", owner);
	if ((x = get(n, "input")) != NULL && !is_null(x)) {
		if (x->kind != DSL_MAP && !(is_string(x) && !strncmp(x->str, "${", 2))) {
			report(ld, x, "%s: expected a mapping (the saga's input) or a template like "
			       "\"${event.data}\", found %s", what, node_desc(x));
			return;
		}
		check_trigger_input_keys(ld, x, what);
		t->input = compile(ld, &site, x);
	}
}

static void parse_triggers(struct dsl_loader *ld, const struct dsl_node *n)
{
	struct flow *f = ld->flow;
	size_t i;

	if (is_null(n) || !want(ld, n, DSL_SEQ, "triggers"))
		return;
	f->triggers = xcalloc(n->n + 1, sizeof(*f->triggers));
	f->n_triggers = n->n;
	for (i = 0; i < n->n; i++)
		parse_trigger(ld, &f->triggers[i], i, n->items[i]);
}

/* ---- source: the flow as JSON for GET /v1/flows/{flow} ---------------------------------- */

static bool sensitive(const char *h)
{
	return !strcasecmp(h, "authorization") || !strcasecmp(h, "proxy-authorization") ||
	       !strcasecmp(h, "cookie") || strcasestr(h, "secret") || strcasestr(h, "token") ||
	       strcasestr(h, "password") || strcasestr(h, "api-key") || strcasestr(h, "apikey");
}

static json_t *retry_json(const struct retry_policy *rp)
{
	json_t *on = json_array();
	size_t i;

	for (i = 0; retry_on_names[i] != NULL; i++)
		if (rp->on & (1u << i))
			json_array_append_new(on, json_string(retry_on_names[i]));
	return json_pack("{s:i, s:I, s:f, s:I, s:f, s:o}", "max_attempts", rp->max_attempts,
			 "initial_backoff_ms", (json_int_t)rp->initial_backoff_ms,
			 "multiplier", rp->multiplier, "max_backoff_ms", (json_int_t)rp->max_backoff_ms,
			 "jitter", rp->jitter, "on", on);
}

/* A request as written, with constant values of secret-looking headers masked. */
static json_t *request_json(struct dsl_loader *ld, const struct dsl_node *n)
{
	json_t *v = node_to_json(ld, n), *h, *hv;
	const char *k;

	if (v != NULL && (h = json_object_get(v, "headers")) != NULL && json_is_object(h))
		json_object_foreach(h, k, hv)
			if (sensitive(k) && !(json_is_string(hv) && strstr(json_string_value(hv), "${")))
				json_object_set_new(h, k, json_string("***"));
	return v;
}

static json_t *build_source(struct dsl_loader *ld, const struct dsl_node *root)
{
	struct flow *f = ld->flow;
	const struct dsl_node *triggers = get(root, "triggers"), *x;
	json_t *src = json_object(), *o, *arr;
	char err[256];
	size_t i, j;

	json_object_set_new(src, "name", json_string(f->name));
	json_object_set_new(src, "version", json_integer(f->version));
	json_object_set_new(src, "file", json_string(f->file));
	if (f->description != NULL)
		json_object_set_new(src, "description", json_string(f->description));
	o = json_object();
	for (i = 0; i < f->n_inputs; i++) {
		const struct flow_input_field *fld = &f->inputs[i];
		json_t *spec = json_pack("{s:s, s:b}", "type", type_names[fld->type], "required",
					 fld->required);

		if (fld->default_value != NULL)
			json_object_set(spec, "default", fld->default_value);
		if (fld->sensitive)
			json_object_set_new(spec, "sensitive", json_true());
		json_object_set_new(o, fld->name, spec);
	}
	json_object_set_new(src, "input", o);
	json_object_set_new(src, "strict_input", json_boolean(f->input_closed));
	o = json_object();
	for (i = 0; i < f->n_participants; i++) {
		const struct participant *p = &f->participants[i];
		json_t *h = json_object();

		for (j = 0; j < p->n_headers; j++) {
			char *s = tmpl_eval_string(p->headers[j].value, env_ctx(ld), err, sizeof(err));

			json_object_set_new(h, p->headers[j].name,
					    json_string(sensitive(p->headers[j].name) || p->headers[j].secret ?
							"***" : s ? s : ""));
			free(s);
		}
		if (p->kind == PARTICIPANT_KAFKA)
			json_object_set_new(o, p->name, json_pack("{s:s, s:s?, s:s?, s:o, s:I}", "type",
					    "kafka", "topic", p->topic, "reply_topic", p->reply_topic,
					    "headers", h, "timeout_ms", (json_int_t)p->timeout_ms));
		else
			json_object_set_new(o, p->name, json_pack("{s:s, s:s, s:o, s:I}", "type", "http",
					    "url", p->base_url, "headers", h, "timeout_ms",
					    (json_int_t)p->timeout_ms));
		if (p->breaker.enabled)
			json_object_set_new(json_object_get(o, p->name), "circuit_breaker",
				json_pack("{s:i, s:i, s:I, s:i, s:I, s:i}", "failure_rate",
					  p->breaker.failure_rate, "min_calls", p->breaker.min_calls,
					  "window_ms", (json_int_t)p->breaker.window_ms,
					  "consecutive_failures", p->breaker.consecutive_failures,
					  "open_ms", (json_int_t)p->breaker.open_ms, "half_open_probes",
					  p->breaker.half_open_probes));
	}
	json_object_set_new(src, "participants", o);
	json_object_set_new(src, "deadline_ms", json_integer(f->deadline_ms));
	if ((x = get(root, "output")) != NULL)
		json_object_set_new(src, "output", node_to_json(ld, x));
	arr = json_array();
	for (i = 0; i < f->n_steps; i++) {
		const struct flow_step *st = &f->steps[i];
		const struct dsl_node *sn = ld->step_nodes[i];

		o = json_pack("{s:s}", "name", st->name);
		if (st->group_n > 1)
			json_object_set_new(o, "parallel_group", json_string(f->steps[st->group_first].name));
		if ((x = get(sn, "when")) != NULL)
			json_object_set_new(o, "when", node_to_json(ld, x));
		if (st->background)
			json_object_set_new(o, "background", json_true());
		if (st->fallback == FALLBACK_VALUE)
			json_object_set_new(o, "fallback", json_pack("{s:O}", "value", st->fallback_value));
		if (st->kind == STEP_KIND_SAGA) {
			json_object_set_new(o, "saga", node_to_json(ld, get(sn, "saga")));
			json_array_append_new(arr, o);
			continue;
		}
		if (st->kind == STEP_KIND_CALL && st->publish) {
			json_object_set_new(o, "participant", json_string(st->participant->name));
			json_object_set_new(o, "publish", request_json(ld, get(sn, "publish")));
			json_object_set_new(o, "pivot", json_boolean(st->pivot));
			json_array_append_new(arr, o);
			continue;
		} else if (st->kind == STEP_KIND_CALL) {
			json_object_set_new(o, "participant", json_string(st->participant->name));
			json_object_set_new(o, "action", request_json(ld, get(sn, "action")));
			if (st->compensation != NULL)
				json_object_set_new(o, "compensation",
						    request_json(ld, get(sn, "compensation")));
			json_object_set_new(o, "retry", retry_json(&st->retry));
			if (st->compensation != NULL)
				json_object_set_new(o, "compensation_retry", retry_json(&st->comp_retry));
		} else {
			json_object_set_new(o, "flow", json_string(st->subflow_name));
			json_object_set_new(o, "input", node_to_json(ld, get(sn, "input")));
		}
		if (st->keep != NULL) {
			json_t *k = json_array();

			for (j = 0; j < st->n_keep; j++)
				json_array_append_new(k, json_string(st->keep[j]));
			json_object_set_new(o, "keep", k);
		}
		json_object_set_new(o, "timeout_ms", json_integer(st->timeout_ms));
		json_object_set_new(o, "pivot", json_boolean(st->pivot));
		json_array_append_new(arr, o);
	}
	json_object_set_new(src, "steps", arr);
	if ((x = get(root, "keys")) != NULL && !is_null(x))
		json_object_set_new(src, "keys", node_to_json(ld, x));
	if ((x = get(root, "http_status")) != NULL)
		json_object_set_new(src, "http_status", node_to_json(ld, x));
	/* Triggers as written, with the topic as resolved. */
	arr = json_array();
	for (i = 0; i < f->n_triggers; i++) {
		o = node_to_json(ld, triggers->items[i]);
		json_object_set_new(o, "topic", json_string(f->triggers[i].topic));
		json_array_append_new(arr, o);
	}
	json_object_set_new(src, "triggers", arr);
	return src;
}

/* ---- loading -------------------------------------------------------------------------------- */

static void parse_flow(struct dsl_loader *ld, const struct dsl_node *root)
{
	struct flow *f = ld->flow;
	struct defaults d = { DEFAULT_TIMEOUT_MS, false, retry_default, comp_retry_default };
	struct dsl_site site = { DSL_SITE_OUTPUT, -1, "output" };
	const struct dsl_node *x;
	const char *s;
	long long iv;
	bool b;

	if (root == NULL) {
		dsl_report(ld, 1, 1, "the file is empty; a flow needs at least name, version and steps");
		return;
	}
	if (!want(ld, root, DSL_MAP, "flow file"))
		return;
	check_keys(ld, root, top_keys, "at the top level");
	if ((x = get(root, "name")) == NULL) {
		missing(ld, root, "flow", "name", "the flow's name, like \"apply\"");
	} else if (get_text(ld, x, "name", &s)) {
		ld->name_line = x->line;
		ld->name_col = x->col;
		if (!valid_name(s, true))
			report(ld, x, "name \"%s\" is not valid; use lower-case letters, digits, \"_\" "
			       "and \"-\", starting with a letter", s);
		else
			f->name = xstrdup(s);
	}
	if ((x = get(root, "version")) == NULL)
		missing(ld, root, "flow", "version", "an integer >= 1; raise it when the flow changes");
	else if (get_int(ld, x, "version", 1, INT_MAX, &iv))
		f->version = (int)iv;
	if ((x = get(root, "description")) != NULL && get_text(ld, x, "description", &s))
		f->description = xstrdup(s);
	if ((x = get(root, "input")) != NULL)
		parse_input(ld, x);
	if ((x = get(root, "strict_input")) != NULL && get_bool(ld, x, "strict_input", &b))
		f->input_closed = b;
	if ((x = get(root, "defaults")) != NULL)
		parse_defaults(ld, x, &d);
	if ((x = get(root, "participants")) != NULL)
		parse_participants(ld, x, &d);
	if ((x = get(root, "deadline")) != NULL)
		get_duration(ld, x, "deadline", &f->deadline_ms);
	if ((x = get(root, "steps")) == NULL)
		missing(ld, root, "flow", "steps", "the list of steps, at least one");
	else
		parse_steps(ld, x, &d);
	if (ld->rc != 0)
		return;
	if ((x = get(root, "triggers")) != NULL)
		parse_triggers(ld, x);
	if ((x = get(root, "keys")) != NULL && !is_null(x))
		parse_keys(ld, x);
	if ((x = get(root, "http_status")) != NULL && want(ld, x, DSL_MAP, "http_status")) {
		const struct dsl_node *y;

		check_keys(ld, x, http_status_keys, "in http_status");
		if ((y = get(x, "completed")) != NULL && get_int(ld, y, "http_status: completed", 200,
								 299, &iv))
			f->status_completed = (int)iv;
		if ((y = get(x, "compensated")) != NULL && get_int(ld, y, "http_status: compensated",
								   200, 599, &iv))
			f->status_compensated = (int)iv;
		if ((y = get(x, "failed")) != NULL && get_int(ld, y, "http_status: failed", 200, 599,
							      &iv))
			f->status_failed = (int)iv;
	}
	if ((x = get(root, "output")) != NULL && !is_null(x))
		f->output = compile(ld, &site, x);
	if (ld->n_errors == 0)
		f->source = build_source(ld, root);
}

static int error_cmp(const void *pa, const void *pb)
{
	const struct dsl_error *a = pa, *b = pb;

	if (a->line != b->line)
		return a->line < b->line ? -1 : 1;
	return a->col < b->col ? -1 : a->col > b->col;
}

/* Sorts errors first..n by position, keeping the order of errors at the same place. */
static void sort_errors(struct dsl_errors *e, size_t first)
{
	size_t i, j;

	for (i = first + 1; i < e->n; i++) {
		struct dsl_error tmp = e->v[i];

		for (j = i; j > first && error_cmp(&e->v[j - 1], &tmp) > 0; j--)
			e->v[j] = e->v[j - 1];
		e->v[j] = tmp;
	}
}

static int load(const char *name, const char *buf, size_t len, const struct dsl_limits *lim,
		struct flow **out, struct dsl_errors *errs, struct dsl_loader *keep_ld)
{
	struct dsl_errors local = { NULL, 0 };
	struct dsl_loader ld;
	struct dsl_node *root = NULL;
	size_t first;
	int rc;

	*out = NULL;
	memset(&ld, 0, sizeof(ld));
	ld.file = name;
	ld.errs = errs != NULL ? errs : &local;
	first = ld.errs->n;
	if (lim != NULL)
		ld.lim = *lim;
	else
		dsl_limits_default(&ld.lim);
	if (len > ld.lim.max_file_bytes) {
		dsl_report(&ld, 0, 0, "the file has %zu bytes (limit max_file_bytes %zu); split it "
			   "into several flows", len, ld.lim.max_file_bytes);
		rc = SAGAD_ELIMIT;
		goto out;
	}
	if ((rc = build_tree(&ld, buf, len, &root)) != 0)
		goto out;
	ld.flow = xcalloc(1, sizeof(*ld.flow));
	ld.flow->refs = 1;
	ld.flow->file = xstrdup(name);
	parse_flow(&ld, root);
	sort_errors(ld.errs, first);
	rc = ld.rc != 0 ? ld.rc : ld.n_errors > 0 ? SAGAD_ESYNTAX : 0;
	if (rc == 0) {
		*out = ld.flow;
		ld.flow = NULL;
	}
out:
	if (rc != 0 && ld.n_errors == 0)
		dsl_report(&ld, 0, 0, "%s", sagad_strerror(rc));
	node_free(root);
	flow_unref(ld.flow);
	json_decref(ld.env_ctx);
	free(ld.input_names);
	free(ld.step_names);
	free(ld.step_nodes);
	free(ld.step_group);
	if (keep_ld != NULL && rc == 0) {
		keep_ld->subflows = ld.subflows;
		keep_ld->n_subflows = ld.n_subflows;
		keep_ld->name_line = ld.name_line;
		keep_ld->name_col = ld.name_col;
	} else {
		free(ld.subflows);
	}
	dsl_errors_close(&local);
	return rc;
}

int dsl_load_buffer(const char *name, const char *yaml, size_t len, const struct dsl_limits *lim,
		    struct flow **out, struct dsl_errors *errs)
{
	return load(name, yaml, len, lim, out, errs, NULL);
}

static int load_file(const char *path, const struct dsl_limits *lim, struct flow **out,
		     struct dsl_errors *errs, struct dsl_loader *keep_ld)
{
	struct dsl_limits dl;
	struct dsl_errors local = { NULL, 0 };
	struct stat sb;
	char *buf = NULL;
	size_t len = 0, cap;
	ssize_t r;
	int fd, rc;

	*out = NULL;
	if (lim == NULL) {
		dsl_limits_default(&dl);
		lim = &dl;
	}
	if (errs == NULL)
		errs = &local;
	if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = -errno;
		dsl_errors_add(errs, path, 0, 0, strerror(errno));
		goto out;
	}
	if (fstat(fd, &sb) != 0) {
		rc = -errno;
		dsl_errors_add(errs, path, 0, 0, strerror(errno));
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		rc = -EISDIR;
		dsl_errors_add(errs, path, 0, 0, "not a regular file");
		goto out;
	}
	/* Read at most one byte past the limit: enough to know it is too big. */
	cap = lim->max_file_bytes + 1;
	buf = xmalloc(cap);
	while (len < cap && (r = read(fd, buf + len, cap - len)) != 0) {
		if (r < 0) {
			if (errno == EINTR)
				continue;
			rc = -errno;
			dsl_errors_add(errs, path, 0, 0, strerror(errno));
			goto out;
		}
		len += (size_t)r;
	}
	if (len > lim->max_file_bytes) {
		char msg[160];

		snprintf(msg, sizeof(msg), "the file has %lld bytes (limit max_file_bytes %zu); split "
			 "it into several flows", (long long)sb.st_size, lim->max_file_bytes);
		dsl_errors_add(errs, path, 0, 0, msg);
		rc = SAGAD_ELIMIT;
		goto out;
	}
	rc = load(path, buf, len, lim, out, errs, keep_ld);
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	dsl_errors_close(&local);
	return rc;
}

int dsl_load_file(const char *path, const struct dsl_limits *lim, struct flow **out,
		  struct dsl_errors *errs)
{
	return load_file(path, lim, out, errs, NULL);
}

static int name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool flow_file_name(const char *s)
{
	size_t n = strlen(s);

	return s[0] != '.' && ((n > 5 && !strcmp(s + n - 5, ".yaml")) ||
			       (n > 4 && !strcmp(s + n - 4, ".yml")));
}

struct loaded {
	const struct flow *flow;
	int line, col;
};

int dsl_load_dir(const char *dir, const struct dsl_limits *lim, struct flow_set *fs,
		 struct dsl_errors *errs)
{
	struct dsl_errors local = { NULL, 0 };
	struct dsl_subflow_loc *locs = NULL;
	struct loaded *seen = NULL;
	size_t n_locs = 0, n_seen = 0, n_names = 0, i, j;
	char **names = NULL;
	struct dirent *de;
	bool failed = false;
	DIR *d;
	int rc;

	if (errs == NULL)
		errs = &local;
	if ((d = opendir(dir)) == NULL) {
		rc = -errno;
		dsl_errors_add(errs, dir, 0, 0, strerror(errno));
		return rc;
	}
	while ((de = readdir(d)) != NULL)
		if (flow_file_name(de->d_name)) {
			names = xrealloc(names, (n_names + 1) * sizeof(*names));
			names[n_names++] = xstrdup(de->d_name);
		}
	closedir(d);
	if (n_names > 0)
		qsort(names, n_names, sizeof(*names), name_cmp);
	seen = xcalloc(n_names + 1, sizeof(*seen));
	for (i = 0; i < n_names; i++) {
		char *path = xasprintf("%s/%s", dir, names[i]);
		struct dsl_loader ld;
		struct flow *f;

		memset(&ld, 0, sizeof(ld));
		if (load_file(path, lim, &f, errs, &ld) != 0) {
			failed = true;
			free(path);
			continue;
		}
		if (flow_set_add(fs, f) != 0) {
			const struct loaded *prev = NULL;
			char *msg;

			for (j = 0; j < n_seen; j++)
				if (!strcmp(seen[j].flow->name, f->name) && seen[j].flow->version == f->version)
					prev = &seen[j];
			if (prev != NULL)
				msg = xasprintf("flow \"%s\" version %d is already defined at %s:%d:%d; "
						"raise the version or rename one of them", f->name,
						f->version, prev->flow->file, prev->line, prev->col);
			else
				msg = xasprintf("flow \"%s\" version %d is already loaded; raise the "
						"version or rename it", f->name, f->version);
			dsl_errors_add(errs, path, ld.name_line, ld.name_col, msg);
			free(msg);
			free(ld.subflows);
			flow_unref(f);
			failed = true;
			free(path);
			continue;
		}
		seen[n_seen++] = (struct loaded){ f, ld.name_line, ld.name_col };
		if (ld.n_subflows > 0) {
			locs = xrealloc(locs, (n_locs + ld.n_subflows) * sizeof(*locs));
			memcpy(locs + n_locs, ld.subflows, ld.n_subflows * sizeof(*locs));
			n_locs += ld.n_subflows;
		}
		free(ld.subflows);
		flow_unref(f); /* the set holds its own reference */
		free(path);
	}
	if (dsl_link_locs(fs, errs, locs, n_locs) != 0)
		failed = true;
	for (i = 0; i < n_names; i++)
		free(names[i]);
	free(names);
	free(seen);
	free(locs);
	dsl_errors_close(&local);
	return failed ? SAGAD_ESYNTAX : 0;
}

int dsl_limit_set(struct dsl_limits *l, const char *name_value, char *err, size_t errlen)
{
	static const char *const names = "max_file_bytes, max_depth, max_aliases, max_nodes, "
					 "max_steps";
	const char *eq = strchr(name_value, '=');
	size_t n = eq != NULL ? (size_t)(eq - name_value) : 0, v;
	char *end;
	long long iv;

	if (eq == NULL) {
		snprintf(err, errlen, "\"%s\": expected NAME=VALUE with NAME one of %s", name_value,
			 names);
		return SAGAD_EINVAL;
	}
	if (n == strlen("max_file_bytes") && strncmp(name_value, "max_file_bytes", n) == 0) {
		/* The loader allocates the limit (plus one byte) to read a file. */
		if (util_parse_size(eq + 1, &v) != 0 || v == 0 || v > (size_t)256 << 20) {
			snprintf(err, errlen, "max_file_bytes=%s: expected a size from 1 byte to 256MiB "
				 "such as 1048576 or 2MiB", eq + 1);
			return SAGAD_EINVAL;
		}
		l->max_file_bytes = v;
		return 0;
	}
	errno = 0;
	iv = strtoll(eq + 1, &end, 10);
	if (errno != 0 || end == eq + 1 || *end != '\0' || iv < 1 || iv > 100000000) {
		snprintf(err, errlen, "%s: expected a whole number from 1 to 100000000", name_value);
		return SAGAD_EINVAL;
	}
	if (n == strlen("max_depth") && strncmp(name_value, "max_depth", n) == 0)
		l->max_depth = (int)iv;
	else if (n == strlen("max_aliases") && strncmp(name_value, "max_aliases", n) == 0)
		l->max_aliases = (int)iv;
	else if (n == strlen("max_nodes") && strncmp(name_value, "max_nodes", n) == 0)
		l->max_nodes = (size_t)iv;
	else if (n == strlen("max_steps") && strncmp(name_value, "max_steps", n) == 0)
		l->max_steps = (size_t)iv;
	else {
		snprintf(err, errlen, "unknown flow limit \"%.*s\" (known: %s)", (int)n, name_value,
			 names);
		return SAGAD_EINVAL;
	}
	return 0;
}
