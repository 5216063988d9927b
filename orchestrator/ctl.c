/* ctl.c: sagactl, the admin CLI of sagad.
 *
 * A table of commands (like tmux's cmd_entry): each entry names its words ("saga start"), its
 * options and argument counts, its help text and one function. main() parses the global
 * options, finds the entry, parses the command's options (global ones are accepted there too)
 * and calls the function. Every command but `flow validate` makes one blocking request to the
 * admin API with libcurl's easy interface and prints the answer as a table or, with -o json,
 * as the API's JSON. `flow validate` runs the daemon's own loader (dsl.h) offline.
 *
 * Exit statuses: 0 ok; 1 the operation failed (sagad answered with an error or could not be
 * reached, a flow file is invalid); 2 the command line is wrong. Data goes to stdout,
 * messages and hints to stderr. The bearer token is never printed. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>
#include <jansson.h>
#include "dsl.h"
#include "error.h"
#include "flow.h"
#include "util.h"

#ifndef PACKAGE_VERSION
#define PACKAGE_VERSION "0.1.0"
#endif

#define DEFAULT_URL "http://127.0.0.1:7700"
#define DEFAULT_TIMEOUT_MS 30000     /* per request, --timeout */
#define CONNECT_TIMEOUT_MS 5000
#define DEFAULT_WAIT_MS 30000        /* sagad's wait when saga start gives no --timeout */
#define WAIT_MARGIN_MS 10000         /* saga start --wait: the server's wait + this */
#define MAX_RESPONSE_BYTES (64u << 20)
#define MAX_INPUT_BYTES (16u << 20)
#define MAX_JSON_CELL 120            /* compact JSON shown in a table cell or header line */

enum { EXIT_OK = 0, EXIT_FAIL = 1, EXIT_USAGE = 2 };

enum output { OUTPUT_TABLE, OUTPUT_JSON };

/* Option ids. Global options come first; the rest belong to commands. */
enum opt_id {
	OPT_URL, OPT_TOKEN, OPT_OUTPUT, OPT_TIMEOUT, OPT_HELP, OPT_VERSION,
	OPT_INPUT, OPT_WAIT, OPT_WAIT_TIMEOUT, OPT_IDEMPOTENCY_KEY,
	OPT_FLOW, OPT_STATUS, OPT_LIMIT, OPT_CURSOR, OPT_KEY,
	OPT_MAX
};

struct opt {
	const char *name;       /* long name, without "--" */
	char short_name;        /* 0 = none */
	bool has_arg;
	enum opt_id id;
};

struct ctl {
	char *url;              /* base URL without trailing '/'; owned */
	char *url_shown;        /* the same without user:password@, for messages; owned */
	const char *token;      /* borrowed from argv or the environment; never printed */
	enum output output;
	int64_t timeout_ms;     /* 0 = not set: DEFAULT_TIMEOUT_MS */
	CURL *curl;
	bool replayed;          /* the last answer had "Idempotent-Replayed: true" */
};

/* What the dispatcher parsed for a command. */
struct cmd_args {
	const struct cmd *cmd;      /* the command being run */
	const char *opt[OPT_MAX];   /* value of each command option given (or "" for flags) */
	char **argv;                /* positional arguments; owned array, borrowed strings */
	int argc;
};

struct cmd {
	const char *name;           /* the command's words: "saga start" */
	const char *usage;          /* what follows the words in the usage line */
	const char *summary;        /* one line for the command list */
	const char *help;           /* the reference: description, options, examples */
	const struct opt *opts;     /* command options, {NULL}-terminated; NULL = none */
	int min_args, max_args;     /* positional arguments; max_args -1 = no limit */
	int (*exec)(struct ctl *c, struct cmd_args *a);
};

static const struct cmd cmd_table[];
static const char *const groups[] = { "flow", "saga", NULL };

/* ---------------------------------------------------------------------------------------- */
/* Messages, scratch strings */

static void errorx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void errorx(const char *fmt, ...)
{
	va_list ap;

	fputs("sagactl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/* Strings that live until the command ends: table cells built from JSON, formatted values. */
static char **scratch;
static size_t n_scratch, cap_scratch;

static const char *keep(char *s)
{
	if (n_scratch == cap_scratch) {
		cap_scratch = cap_scratch ? 2 * cap_scratch : 64;
		scratch = xrealloc(scratch, cap_scratch * sizeof(*scratch));
	}
	scratch[n_scratch++] = s;
	return s;
}

static const char *sfmt(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static const char *sfmt(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		fatalx("vasprintf failed");
	va_end(ap);
	return keep(s);
}

static void scratch_free(void)
{
	for (size_t i = 0; i < n_scratch; i++)
		free(scratch[i]);
	free(scratch);
	scratch = NULL;
	n_scratch = cap_scratch = 0;
}

/* Text from the daemon or a file is printed with control characters replaced, so that it
 * cannot move the cursor or change the terminal. Newlines are kept when keep_nl. */
static void put_clean(FILE *f, const char *s, bool keep_nl)
{
	for (; *s != '\0'; s++) {
		unsigned char ch = (unsigned char)*s;
		if (ch == '\n' && keep_nl)
			fputc('\n', f);
		else if (ch < 0x20 || ch == 0x7f)
			fputc(' ', f);
		else
			fputc(ch, f);
	}
}

/* ---------------------------------------------------------------------------------------- */
/* JSON helpers: robust against missing fields and unexpected types */

static json_t *jget(const json_t *o, const char *key)
{
	return json_is_object(o) ? json_object_get(o, key) : NULL;
}

static const char *jstrget(const json_t *o, const char *key)
{
	return json_string_value(jget(o, key));
}

static const char *compact(const json_t *v, size_t max)
{
	char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

	if (s == NULL)
		return "?";
	if (max > 3 && strlen(s) > max)
		strcpy(s + max - 3, "...");
	return keep(s);
}

static const char *fmt_ms(int64_t ms)
{
	if (ms == 0)
		return "0";
	if (ms % 86400000 == 0)
		return sfmt("%lldd", (long long)(ms / 86400000));
	if (ms % 3600000 == 0)
		return sfmt("%lldh", (long long)(ms / 3600000));
	if (ms % 60000 == 0)
		return sfmt("%lldm", (long long)(ms / 60000));
	if (ms % 1000 == 0)
		return sfmt("%llds", (long long)(ms / 1000));
	if (ms > 1000)
		return sfmt("%.1fs", ms / 1000.0);
	return sfmt("%lldms", (long long)ms);
}

/* A value as table text: strings as they are, numbers, booleans, "-" for null or absent,
 * an error object's message, anything else as compact JSON. */
static const char *jtext(const json_t *v)
{
	if (v == NULL)
		return "-";
	switch (json_typeof(v)) {
	case JSON_STRING:
		return json_string_value(v)[0] ? json_string_value(v) : "-";
	case JSON_INTEGER:
		return sfmt("%" JSON_INTEGER_FORMAT, json_integer_value(v));
	case JSON_REAL:
		return sfmt("%g", json_real_value(v));
	case JSON_TRUE:
		return "true";
	case JSON_FALSE:
		return "false";
	case JSON_OBJECT:
		if (jstrget(v, "message") != NULL)
			return jstrget(v, "message");
		return compact(v, MAX_JSON_CELL);
	case JSON_ARRAY:
		return compact(v, MAX_JSON_CELL);
	case JSON_NULL:
	default:
		return "-";
	}
}

/* A duration field: strings as written ("2s"), numbers taken as milliseconds. */
static const char *jduration(const json_t *v)
{
	if (json_is_integer(v))
		return fmt_ms(json_integer_value(v));
	return jtext(v);
}

/* The duration o.key ("2s" as written) or o.key_ms (milliseconds); NULL when neither. */
static const json_t *jdur_field(const json_t *o, const char *key)
{
	char ms_key[64];

	if (jget(o, key) != NULL)
		return jget(o, key);
	snprintf(ms_key, sizeof(ms_key), "%s_ms", key);
	return jget(o, ms_key);
}

/* "2026-11-21T18:33:42.123Z" -> ms since the epoch; -1 when it does not parse. */
static int64_t parse_time(const char *s)
{
	struct tm tm = { 0 };
	int ms = 0, n = 0, off_h = 0, off_m = 0;
	const char *p;
	int64_t t;

	if (s == NULL || sscanf(s, "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon,
				&tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 6)
		return -1;
	p = s + n;
	if (*p == '.') {
		int digits = 0;
		for (p++; isdigit((unsigned char)*p); p++, digits++)
			if (digits < 3)
				ms = ms * 10 + (*p - '0');
		for (; digits < 3; digits++)
			ms *= 10;
	}
	tm.tm_year -= 1900;
	tm.tm_mon -= 1;
	t = (int64_t)timegm(&tm) * 1000 + ms;
	if (*p == '+' || *p == '-') {
		if (sscanf(p + 1, "%2d:%2d", &off_h, &off_m) != 2)
			return -1;
		t -= (*p == '+' ? 1 : -1) * ((int64_t)off_h * 3600000 + (int64_t)off_m * 60000);
	} else if (*p != 'Z' && *p != 'z') {
		return -1;
	}
	return t;
}

static void print_json(const json_t *v)
{
	json_dumpf(v, stdout, JSON_INDENT(2) | JSON_ENCODE_ANY);
	fputc('\n', stdout);
}

/* ---------------------------------------------------------------------------------------- */
/* Tables: aligned columns, two spaces apart, upper-case headers, no trailing blanks */

struct table {
	int ncols, nrows;
	char **cells;           /* row-major; row 0 holds the headers; owned */
	size_t *width;          /* display width of each column */
};

static size_t text_width(const char *s)
{
	size_t w = 0;

	for (; *s != '\0'; s++)
		if (((unsigned char)*s & 0xc0) != 0x80)   /* count UTF-8 lead bytes */
			w++;
	return w;
}

static void table_addv(struct table *t, const char *const *v)
{
	t->cells = xrealloc(t->cells, (size_t)(t->nrows + 1) * t->ncols * sizeof(char *));
	for (int i = 0; i < t->ncols; i++) {
		const char *s = v[i] != NULL && v[i][0] != '\0' ? v[i] : "-";
		char *cell = xstrdup(s);
		for (char *p = cell; *p != '\0'; p++)
			if ((unsigned char)*p < 0x20 || *p == 0x7f)
				*p = ' ';
		t->cells[t->nrows * t->ncols + i] = cell;
		if (text_width(cell) > t->width[i])
			t->width[i] = text_width(cell);
	}
	t->nrows++;
}

/* Headers are the ncols strings after ncols. */
static void table_init(struct table *t, int ncols, ...)
{
	const char *h[16];
	va_list ap;

	if (ncols > 16)
		fatalx("table with %d columns", ncols);
	t->ncols = ncols;
	t->nrows = 0;
	t->cells = NULL;
	t->width = xcalloc((size_t)ncols, sizeof(size_t));
	va_start(ap, ncols);
	for (int i = 0; i < ncols; i++)
		h[i] = va_arg(ap, const char *);
	va_end(ap);
	table_addv(t, h);
}

/* Adds a row of t->ncols strings; NULL or "" shows as "-". */
static void table_add(struct table *t, ...)
{
	const char *v[16];
	va_list ap;

	va_start(ap, t);
	for (int i = 0; i < t->ncols; i++)
		v[i] = va_arg(ap, const char *);
	va_end(ap);
	table_addv(t, v);
}

static void table_print(const struct table *t, int indent)
{
	for (int r = 0; r < t->nrows; r++) {
		printf("%*s", indent, "");
		for (int i = 0; i < t->ncols; i++) {
			const char *cell = t->cells[r * t->ncols + i];
			fputs(cell, stdout);
			if (i < t->ncols - 1)
				printf("%*s", (int)(t->width[i] - text_width(cell) + 2), "");
		}
		fputc('\n', stdout);
	}
}

static void table_close(struct table *t)
{
	for (int i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t->width);
}

/* A header line of a "Key  value" block, for the saga and flow headers. */
static void field(const char *key, const char *value)
{
	if (value == NULL || value[0] == '\0')
		return;
	printf("%-10s", key);
	put_clean(stdout, value, false);
	fputc('\n', stdout);
}

/* ---------------------------------------------------------------------------------------- */
/* Usage and help */

static const char main_usage[] =
	"Usage: sagactl [--url URL] [--token TOKEN] [-o table|json] [--timeout DURATION]\n"
	"               COMMAND [ARGS...]\n";

static const char main_help[] =
	"sagactl is the admin client of sagad, the saga orchestrator. It starts, lists,\n"
	"inspects, cancels and retries sagas through the daemon's HTTP API, and checks\n"
	"flow files offline with the daemon's own loader.\n"
	"\n"
	"Commands:\n"
	"%s"
	"\n"
	"Options (before or after the command):\n"
	"  --url URL            where sagad listens; default $SAGAD_URL, else\n"
	"                       " DEFAULT_URL "\n"
	"  --token TOKEN        bearer token, sent as \"Authorization: Bearer TOKEN\";\n"
	"                       default $SAGAD_TOKEN (prefer the variable: arguments are\n"
	"                       visible to other users in ps)\n"
	"  -o, --output FORMAT  table (default): aligned columns for people;\n"
	"                       json: the API's JSON, pretty-printed, for scripts\n"
	"  --timeout DURATION   give up on a request after DURATION (default 30s);\n"
	"                       durations: 500ms, 10s, 1.5s, 2m, 1h.\n"
	"                       After `saga start` it is the saga's wait timeout instead\n"
	"                       (see `sagactl help saga start`).\n"
	"  -h, --help           show this help; `sagactl help COMMAND` for a command\n"
	"  --version            print sagactl's version\n"
	"\n"
	"Output: data goes to stdout; errors go to stderr as `sagactl: MESSAGE`, where\n"
	"MESSAGE is the daemon's own error text when it answered with one.\n"
	"\n"
	"Exit status:\n"
	"  0  success\n"
	"  1  the operation failed: sagad answered with an error (unknown flow or saga,\n"
	"     input rejected, saga already final, ...), sagad could not be reached, or\n"
	"     `flow validate` found an invalid file\n"
	"  2  usage error: unknown command or option, missing, extra or malformed argument\n"
	"  `saga start` exits 0 once the daemon has accepted the saga, also when the saga\n"
	"  then ends compensated or failed: see `sagactl help saga start`.\n"
	"\n"
	"Environment:\n"
	"  SAGAD_URL    the daemon's address when --url is not given\n"
	"  SAGAD_TOKEN  the bearer token when --token is not given\n"
	"\n"
	"Authentication: when sagad requires it (docs/security.md) a token with the read\n"
	"role may list and show flows and sagas; saga start, cancel and retry need the\n"
	"operator role. A static token or a JWT is sent the same way. Without a valid\n"
	"token sagad answers 401, with a token of too low a role 403; sagactl then prints\n"
	"the daemon's message and exits 1. The token is never printed.\n"
	"\n"
	"Examples:\n"
	"  sagactl flow validate flows/*.yaml\n"
	"  sagactl flow list\n"
	"  sagactl saga start apply --input '{\"studentName\": \"Ada\", \"courseId\": 7}'\n"
	"  sagactl saga list --status failed\n"
	"  sagactl saga show 01JB8M0W5T3K9P2Q7R4S6V8X0Y\n"
	"  sagactl -o json saga show 01JB8M0W5T3K9P2Q7R4S6V8X0Y | jq '.history[-1]'\n"
	"  SAGAD_URL=http://10.0.0.5:7700 sagactl saga cancel 01JB8M0W5T3K9P2Q7R4S6V8X0Y\n";

static void print_cmd_list(FILE *f, const char *group)
{
	for (const struct cmd *cmd = cmd_table; cmd->name != NULL; cmd++) {
		size_t gl = group ? strlen(group) : 0;
		char words[64];

		if (group != NULL && (strncmp(cmd->name, group, gl) != 0 || cmd->name[gl] != ' '))
			continue;
		snprintf(words, sizeof(words), "%s %s", cmd->name, cmd->usage);
		if (strlen(words) > 24)   /* cut long argument lists; help COMMAND has them */
			snprintf(words, sizeof(words), "%s %.*s", cmd->name,
				 (int)strcspn(cmd->usage, "["), cmd->usage);
		fprintf(f, "  %-24s %s\n", words, cmd->summary);
	}
}

static void print_main_help(void)
{
	char *list;
	size_t len;
	FILE *f = open_memstream(&list, &len);

	if (f == NULL)
		fatalx("open_memstream: %s", strerror(errno));
	print_cmd_list(f, NULL);
	fclose(f);
	fputs(main_usage, stdout);
	fputc('\n', stdout);
	printf(main_help, list);
	free(list);
}

static void print_cmd_help(const struct cmd *cmd)
{
	printf("Usage: sagactl %s%s%s\n\n%s", cmd->name, cmd->usage[0] ? " " : "", cmd->usage,
	       cmd->help);
}

static void print_group_help(FILE *f, const char *group)
{
	fprintf(f, "Usage: sagactl %s COMMAND [ARGS...]\n\nCommands:\n", group);
	print_cmd_list(f, group);
	fprintf(f, "\nRun 'sagactl help %s COMMAND' for a command's options and examples.\n", group);
}

/* Prints "sagactl: MESSAGE", the usage line (of cmd, or the main one) and where to read on;
 * returns EXIT_USAGE. */
static int usage_error(const struct cmd *cmd, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static int usage_error(const struct cmd *cmd, const char *fmt, ...)
{
	va_list ap;

	fputs("sagactl: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	if (cmd != NULL) {
		fprintf(stderr, "Usage: sagactl %s%s%s\n", cmd->name, cmd->usage[0] ? " " : "",
			cmd->usage);
		fprintf(stderr, "Run 'sagactl help %s' for details.\n", cmd->name);
	} else {
		fputs(main_usage, stderr);
		fputs("Run 'sagactl --help' for the list of commands.\n", stderr);
	}
	return EXIT_USAGE;
}

/* ---------------------------------------------------------------------------------------- */
/* Options */

static const struct opt global_opts[] = {
	{ "url", 0, true, OPT_URL },
	{ "token", 0, true, OPT_TOKEN },
	{ "output", 'o', true, OPT_OUTPUT },
	{ "timeout", 0, true, OPT_TIMEOUT },
	{ "help", 'h', false, OPT_HELP },
	{ "version", 0, false, OPT_VERSION },
	{ NULL, 0, false, 0 }
};

struct parser {
	int argc;
	char **argv;
	int i;
	bool opts_done;          /* after "--" */
	const struct cmd *cmd;   /* for usage errors; NULL before the command */
	const struct opt *tables[3];
};

/* usage_error() for parse_next(): returns -2. */
#define bad_arg(...) (usage_error(__VA_ARGS__), -2)

static const struct opt *find_opt(const struct parser *p, const char *name, size_t n, char sh)
{
	for (int t = 0; p->tables[t] != NULL; t++)
		for (const struct opt *o = p->tables[t]; o->name != NULL; o++)
			if (sh ? o->short_name == sh : strlen(o->name) == n && strncmp(o->name, name, n) == 0)
				return o;
	return NULL;
}

/* Reads the next argument. Returns 1 for an option (*o; *val when it takes a value), 0 for a
 * positional argument (*val), -1 at the end, or -2 after printing what is wrong. */
static int parse_next(struct parser *p, const struct opt **o, const char **val)
{
	const char *arg, *name, *eq;
	size_t n;

	*val = NULL;
	for (;;) {
		if (p->i >= p->argc)
			return -1;
		arg = p->argv[p->i++];
		if (p->opts_done || arg[0] != '-' || arg[1] == '\0') {
			*val = arg;
			return 0;
		}
		if (strcmp(arg, "--") != 0)
			break;
		p->opts_done = true;
	}
	if (arg[1] == '-') {
		name = arg + 2;
		eq = strchr(name, '=');
		n = eq ? (size_t)(eq - name) : strlen(name);
		if ((*o = find_opt(p, name, n, 0)) == NULL)
			return bad_arg(p->cmd, "unknown option --%.*s", (int)n, name);
		if (!(*o)->has_arg) {
			if (eq != NULL)
				return bad_arg(p->cmd, "option --%s takes no value", (*o)->name);
			return 1;
		}
		if (eq != NULL) {
			*val = eq + 1;
			return 1;
		}
	} else {
		if ((*o = find_opt(p, NULL, 0, arg[1])) == NULL)
			return bad_arg(p->cmd, "unknown option -%c", arg[1]);
		if (!(*o)->has_arg) {
			if (arg[2] != '\0')
				return bad_arg(p->cmd, "unknown option %s", arg);
			return 1;
		}
		if (arg[2] != '\0') {
			*val = arg + 2;
			return 1;
		}
	}
	if (p->i >= p->argc)
		return bad_arg(p->cmd, "option --%s needs a value", (*o)->name);
	*val = p->argv[p->i++];
	return 1;
}

/* Applies a global option. Returns 0, EXIT_USAGE after a message, or -1 when help or the
 * version was printed and sagactl should exit 0. */
static int apply_global(struct ctl *c, const struct cmd *cmd, const struct opt *o, const char *val)
{
	switch (o->id) {
	case OPT_URL:
		if (val[0] == '\0')
			return usage_error(cmd, "--url needs a URL, such as " DEFAULT_URL);
		free(c->url);
		c->url = xstrdup(val);
		return 0;
	case OPT_TOKEN:
		c->token = val;
		return 0;
	case OPT_OUTPUT:
		if (strcmp(val, "table") == 0)
			c->output = OUTPUT_TABLE;
		else if (strcmp(val, "json") == 0)
			c->output = OUTPUT_JSON;
		else
			return usage_error(cmd, "unknown output format \"%s\" (use table or json)", val);
		return 0;
	case OPT_TIMEOUT:
		if (util_parse_duration(val, &c->timeout_ms) != 0 || c->timeout_ms <= 0)
			return usage_error(cmd, "--timeout: \"%s\" is not a positive duration "
					   "(examples: 500ms, 10s, 2m)", val);
		return 0;
	case OPT_HELP:
		if (cmd != NULL)
			print_cmd_help(cmd);
		else
			print_main_help();
		return -1;
	case OPT_VERSION:
		printf("sagactl %s\n", PACKAGE_VERSION);
		return -1;
	default:
		fatalx("option %d is not global", (int)o->id);
	}
}

/* Sets c->url from --url, $SAGAD_URL or the default: adds http:// when there is no scheme,
 * drops trailing slashes, and keeps a copy without credentials for messages. */
static void resolve_url(struct ctl *c)
{
	const char *env = getenv("SAGAD_URL");
	char *u, *at, *scheme_end;
	size_t n;

	if (c->url == NULL)
		c->url = xstrdup(env != NULL && env[0] != '\0' ? env : DEFAULT_URL);
	if (strstr(c->url, "://") == NULL) {
		u = xasprintf("http://%s", c->url);
		free(c->url);
		c->url = u;
	}
	n = strlen(c->url);
	while (n > 0 && c->url[n - 1] == '/')
		c->url[--n] = '\0';
	c->url_shown = xstrdup(c->url);
	scheme_end = strstr(c->url_shown, "://") + 3;
	at = strchr(scheme_end, '@');
	if (at != NULL && at < scheme_end + strcspn(scheme_end, "/"))
		memmove(scheme_end, at + 1, strlen(at + 1) + 1);
	if (c->token == NULL && (env = getenv("SAGAD_TOKEN")) != NULL && env[0] != '\0')
		c->token = env;
}

/* ---------------------------------------------------------------------------------------- */
/* HTTP: one blocking request to the admin API */

struct request {
	const char *method;         /* "GET", "POST" */
	const char *path;           /* "/v1/flows", with any query string */
	const char *body;           /* JSON to send, or NULL */
	const char *idempotency_key;
	int64_t timeout_ms;         /* 0 = the --timeout value */
};

struct body_buf {
	struct strbuf b;
	bool too_big;
};

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
	struct body_buf *bb = arg;
	size_t n = size * nmemb;

	if (bb->b.len + n > MAX_RESPONSE_BYTES) {
		bb->too_big = true;
		return 0;
	}
	strbuf_add(&bb->b, data, n);
	return n;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *arg)
{
	static const char name[] = "idempotent-replayed:";
	struct ctl *c = arg;
	size_t n = size * nmemb, k = sizeof(name) - 1;

	if (n > k && strncasecmp(data, name, k) == 0) {
		while (k < n && (data[k] == ' ' || data[k] == '\t'))
			k++;
		c->replayed = n - k >= 4 && strncasecmp(data + k, "true", 4) == 0;
	}
	return n;
}

/* Adds "name=value" (URL-encoded) to a query string being built. */
static void query_add(struct ctl *c, struct strbuf *q, const char *name, const char *value)
{
	char *v;

	if (value == NULL)
		return;
	v = curl_easy_escape(c->curl, value, 0);
	if (v == NULL)
		fatalx("curl_easy_escape failed");
	strbuf_addf(q, "%c%s=%s", q->len == 0 ? '?' : '&', name, v);
	curl_free(v);
}

/* Returns a path segment URL-encoded (a flow name or saga id), a scratch string. */
static const char *seg(struct ctl *c, const char *s)
{
	char *v = curl_easy_escape(c->curl, s, 0);
	const char *r;

	if (v == NULL)
		fatalx("curl_easy_escape failed");
	r = keep(xstrdup(v));
	curl_free(v);
	return r;
}

static const char *reason_phrase(long status)
{
	switch (status) {
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 413: return "Payload Too Large";
	case 422: return "Unprocessable Entity";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	default: return "";
	}
}

static int transport_error(struct ctl *c, const struct request *rq, CURLcode res,
			   const char *errbuf, bool too_big, int64_t timeout_ms)
{
	long os_errno = 0;
	curl_off_t connect_us = 0;

	switch (res) {
	case CURLE_COULDNT_CONNECT:
		curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
		errorx("cannot reach sagad at %s (%s); is it running? set --url or SAGAD_URL",
		       c->url_shown, os_errno ? strerror((int)os_errno) : "connection failed");
		break;
	case CURLE_COULDNT_RESOLVE_HOST:
		errorx("cannot reach sagad at %s (unknown host); check --url or SAGAD_URL", c->url_shown);
		break;
	case CURLE_OPERATION_TIMEDOUT:
		curl_easy_getinfo(c->curl, CURLINFO_CONNECT_TIME_T, &connect_us);
		if (connect_us == 0)
			errorx("cannot reach sagad at %s (connection timed out); is it running? "
			       "set --url or SAGAD_URL", c->url_shown);
		else
			errorx("sagad at %s did not answer %s %s within %s; raise --timeout",
			       c->url_shown, rq->method, rq->path, fmt_ms(timeout_ms));
		break;
	case CURLE_UNSUPPORTED_PROTOCOL:
	case CURLE_URL_MALFORMAT:
		errorx("bad sagad URL %s: use http://HOST:PORT or https://HOST:PORT", c->url_shown);
		break;
	default:
		if (too_big)
			errorx("sagad's answer to %s %s is larger than %u MiB", rq->method, rq->path,
			       MAX_RESPONSE_BYTES >> 20);
		else
			errorx("request to sagad at %s failed: %s", c->url_shown,
			       errbuf[0] ? errbuf : curl_easy_strerror(res));
		break;
	}
	return EXIT_FAIL;
}

/* The daemon answered 4xx/5xx: print its error.message, or what we know. */
static int api_error(struct ctl *c, const struct request *rq, long status, json_t *body)
{
	json_t *err = jget(body, "error");
	const char *msg = json_is_object(err) ? jstrget(err, "message") : json_string_value(err);

	fputs("sagactl: ", stderr);
	if (msg != NULL && msg[0] != '\0')
		put_clean(stderr, msg, true);
	else if (body != NULL)
		fprintf(stderr, "sagad answered %ld %s to %s %s", status, reason_phrase(status),
			rq->method, rq->path);
	else
		fprintf(stderr, "%s answered %ld %s to %s %s; is --url pointing at sagad?",
			c->url_shown, status, reason_phrase(status), rq->method, rq->path);
	if ((status == 401 || status == 403) && c->token == NULL)
		fputs(" (no token given: set --token or SAGAD_TOKEN)", stderr);
	fputc('\n', stderr);
	return EXIT_FAIL;
}

/* Makes the request. Returns 0 when the daemon answered 2xx, with *out its JSON body (a new
 * reference; NULL when the body was empty) and *status the HTTP status; else prints the error
 * and returns EXIT_FAIL. */
static int api_call(struct ctl *c, const struct request *rq, long *status, json_t **out)
{
	struct body_buf bb = { .too_big = false };
	struct curl_slist *hdrs = NULL;
	char errbuf[CURL_ERROR_SIZE] = "";
	int64_t timeout_ms = rq->timeout_ms ? rq->timeout_ms : c->timeout_ms;
	char *url = xasprintf("%s%s", c->url, rq->path);
	char *auth = NULL, *idem = NULL;
	json_t *body = NULL;
	json_error_t jerr;
	CURLcode res;
	int rc = EXIT_FAIL;

	*out = NULL;
	*status = 0;
	strbuf_init(&bb.b);
	curl_easy_reset(c->curl);
	curl_easy_setopt(c->curl, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "sagactl/" PACKAGE_VERSION);
	curl_easy_setopt(c->curl, CURLOPT_TIMEOUT_MS, (long)timeout_ms);
	curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT_MS,
			 (long)(timeout_ms < CONNECT_TIMEOUT_MS ? timeout_ms : CONNECT_TIMEOUT_MS));
	curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &bb);
	curl_easy_setopt(c->curl, CURLOPT_HEADERFUNCTION, on_header);
	curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, c);
	c->replayed = false;
	hdrs = curl_slist_append(hdrs, "Accept: application/json");
	if (strcmp(rq->method, "POST") == 0) {
		const char *b = rq->body ? rq->body : "";
		curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, b);
		curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(b));
		hdrs = curl_slist_append(hdrs, rq->body ? "Content-Type: application/json"
							: "Content-Type:");
		hdrs = curl_slist_append(hdrs, "Expect:");
	} else if (strcmp(rq->method, "GET") != 0) {
		curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, rq->method);
	}
	if (rq->idempotency_key != NULL) {
		idem = xasprintf("Idempotency-Key: %s", rq->idempotency_key);
		hdrs = curl_slist_append(hdrs, idem);
	}
	if (c->token != NULL) {
		auth = xasprintf("Authorization: Bearer %s", c->token);
		hdrs = curl_slist_append(hdrs, auth);
	}
	if (hdrs == NULL)
		fatalx("curl_slist_append failed");
	curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, hdrs);

	res = curl_easy_perform(c->curl);
	if (res != CURLE_OK) {
		rc = transport_error(c, rq, res, errbuf, bb.too_big, timeout_ms);
		goto out;
	}
	curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);
	if (bb.b.len > 0) {
		body = json_loadb(bb.b.data, bb.b.len, JSON_DECODE_ANY, &jerr);
		if (body == NULL && *status >= 200 && *status < 300) {
			errorx("%s answered %s %s with something that is not JSON (%s); "
			       "is --url pointing at sagad?", c->url_shown, rq->method, rq->path,
			       jerr.text);
			goto out;
		}
	}
	if (*status < 200 || *status >= 300) {
		rc = api_error(c, rq, *status, body);
		goto out;
	}
	*out = body;
	body = NULL;
	rc = 0;
out:
	json_decref(body);
	curl_slist_free_all(hdrs);
	if (auth != NULL) {
		explicit_bzero(auth, strlen(auth));
		free(auth);
	}
	free(idem);
	free(url);
	strbuf_close(&bb.b);
	return rc;
}

/* GET path, then print it as JSON (-o json) or with the table printer. */
static int get_and_print(struct ctl *c, const char *path, void (*table)(struct ctl *, json_t *))
{
	struct request rq = { .method = "GET", .path = path };
	json_t *body;
	long status;
	int rc;

	if ((rc = api_call(c, &rq, &status, &body)) != 0)
		return rc;
	if (c->output == OUTPUT_JSON)
		print_json(body);
	else
		table(c, body);
	json_decref(body);
	return EXIT_OK;
}

/* ---------------------------------------------------------------------------------------- */
/* flow validate */

struct vfile {
	const char *path;        /* as given, or dir/name for a sibling */
	char *real;              /* realpath(), or NULL when it does not resolve; owned */
	bool given;              /* named on the command line (else a sibling, for linking) */
	int rc;                  /* dsl_load_file() result */
	struct flow *flow;       /* when rc == 0; a reference */
	struct dsl_errors errs;  /* load errors */
	struct dsl_error *extra; /* link and duplicate errors; owned */
	size_t n_extra;
};

static void vfile_add_error(struct vfile *vf, const char *file, int line, int col, char *msg)
{
	struct dsl_error *e;

	vf->extra = xrealloc(vf->extra, (vf->n_extra + 1) * sizeof(*vf->extra));
	e = &vf->extra[vf->n_extra++];
	e->file = xstrdup(file);
	e->line = line;
	e->col = col;
	e->message = msg;
}

static bool vfile_valid(const struct vfile *vf)
{
	return vf->rc == 0 && vf->n_extra == 0;
}

/* Every diagnostic of a file: load errors then link errors. */
static struct dsl_errors vfile_errors(const struct vfile *vf)
{
	struct dsl_errors all = { xcalloc(vf->errs.n + vf->n_extra, sizeof(struct dsl_error)), 0 };

	for (size_t i = 0; i < vf->errs.n; i++)
		all.v[all.n++] = vf->errs.v[i];
	for (size_t i = 0; i < vf->n_extra; i++)
		all.v[all.n++] = vf->extra[i];
	return all;
}

static bool same_file(const struct vfile *vf, const char *file)
{
	char *real;
	bool same;

	if (file == NULL)
		return false;
	if (strcmp(vf->path, file) == 0 || (vf->flow != NULL && vf->flow->file != NULL &&
					    strcmp(vf->flow->file, file) == 0))
		return true;
	if (vf->real == NULL || (real = realpath(file, NULL)) == NULL)
		return false;
	same = strcmp(real, vf->real) == 0;
	free(real);
	return same;
}

/* The directory part of path ("." for a bare name), a scratch string. */
static const char *dir_of(const char *path)
{
	char *copy = xstrdup(path);
	const char *dir = keep(xstrdup(dirname(copy)));

	free(copy);
	return dir;
}

static bool same_dir(const struct vfile *a, const struct vfile *b)
{
	char *da, *db;
	bool same;

	if (a->real == NULL || b->real == NULL)
		return false;
	da = xstrdup(a->real);
	db = xstrdup(b->real);
	same = strcmp(dirname(da), dirname(db)) == 0;
	free(da);
	free(db);
	return same;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool is_flow_file(const char *name)
{
	size_t n = strlen(name);

	if (name[0] == '.')
		return false;
	return (n > 5 && strcmp(name + n - 5, ".yaml") == 0) ||
	       (n > 4 && strcmp(name + n - 4, ".yml") == 0);
}

/* Appends the sibling flow files of dir (sorted) that are not already in v. */
static void add_siblings(const char *dir, struct vfile **v, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	char **names = NULL;
	size_t nn = 0;

	if (d == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		if (!is_flow_file(de->d_name))
			continue;
		names = xrealloc(names, (nn + 1) * sizeof(*names));
		names[nn++] = strcmp(dir, ".") == 0 ? xstrdup(de->d_name)
						    : xasprintf("%s/%s", dir, de->d_name);
	}
	closedir(d);
	if (nn > 1)
		qsort(names, nn, sizeof(*names), cmp_str);
	for (size_t i = 0; i < nn; i++) {
		char *real = realpath(names[i], NULL);
		bool dup = real == NULL;
		for (size_t j = 0; j < *n && !dup; j++)
			dup = (*v)[j].real != NULL && strcmp((*v)[j].real, real) == 0;
		if (dup) {
			free(real);
			free(names[i]);
			continue;
		}
		*v = xrealloc(*v, (*n + 1) * sizeof(**v));
		(*v)[*n] = (struct vfile){ .path = keep(names[i]), .real = real };
		(*n)++;
	}
	free(names);
}

static void validate_print_json(const struct vfile *v, size_t n)
{
	json_t *arr = json_array();

	for (size_t i = 0; i < n; i++) {
		struct dsl_errors all;
		json_t *o, *errs = json_array();

		if (!v[i].given)
			continue;
		o = json_pack("{s:s, s:b}", "file", v[i].path, "valid", vfile_valid(&v[i]));
		if (v[i].flow != NULL) {
			json_object_set_new(o, "flow", json_string(v[i].flow->name));
			json_object_set_new(o, "version", json_integer(v[i].flow->version));
			json_object_set_new(o, "steps", json_integer((json_int_t)v[i].flow->n_steps));
		}
		all = vfile_errors(&v[i]);
		for (size_t k = 0; k < all.n; k++)
			json_array_append_new(errs, json_pack("{s:s, s:i, s:i, s:s}",
				"file", all.v[k].file ? all.v[k].file : v[i].path,
				"line", all.v[k].line, "col", all.v[k].col,
				"message", all.v[k].message ? all.v[k].message : ""));
		if (v[i].rc != 0 && all.n == 0)
			json_array_append_new(errs, json_pack("{s:s, s:i, s:i, s:s}", "file",
				v[i].path, "line", 0, "col", 0, "message", sagad_strerror(v[i].rc)));
		free(all.v);
		json_object_set_new(o, "errors", errs);
		json_array_append_new(arr, o);
	}
	print_json(arr);
	json_decref(arr);
}

static int cmd_flow_validate(struct ctl *c, struct cmd_args *a)
{
	struct dsl_limits lim;
	struct flow_set fs;
	struct dsl_errors lerrs = { NULL, 0 };
	struct vfile *v = NULL;
	size_t n = 0, n_given;
	bool all_valid = true;

	dsl_limits_default(&lim);
	/* 1. The given files, each once. */
	for (int i = 0; i < a->argc; i++) {
		char *real = realpath(a->argv[i], NULL);
		bool dup = false;
		for (size_t j = 0; j < n && real != NULL && !dup; j++)
			dup = v[j].real != NULL && strcmp(v[j].real, real) == 0;
		if (dup) {
			free(real);
			continue;
		}
		v = xrealloc(v, (n + 1) * sizeof(*v));
		v[n++] = (struct vfile){ .path = a->argv[i], .real = real, .given = true };
	}
	n_given = n;
	/* 2. Their sibling flow files, for sub-flow references (sagad loads a whole folder). */
	for (size_t i = 0; i < n_given; i++) {
		const char *dir;
		bool seen = false;

		if (v[i].real == NULL)   /* does not exist: nothing of it to link */
			continue;
		dir = dir_of(v[i].path);
		for (size_t j = 0; j < i && !seen; j++)
			seen = v[j].real != NULL && strcmp(dir_of(v[j].path), dir) == 0;
		if (!seen)
			add_siblings(dir, &v, &n);
	}
	/* 3. Load everything; siblings' own errors are not reported. */
	for (size_t i = 0; i < n; i++)
		v[i].rc = dsl_load_file(v[i].path, &lim, &v[i].flow, &v[i].errs);
	/* 4. Link the set. A duplicate name@version is an error only within one folder (sagad
	 * loads one folder), and is blamed on a given file. */
	flow_set_init(&fs);
	for (size_t i = 0; i < n; i++) {
		struct flow *f = v[i].flow;
		if (v[i].rc != 0 || f == NULL)
			continue;
		if (flow_set_add(&fs, f) != SAGAD_EEXIST)
			continue;
		for (size_t j = 0; j < i; j++) {
			struct flow *g = v[j].flow;
			if (v[j].rc != 0 || g == NULL || strcmp(g->name, f->name) != 0 ||
			    g->version != f->version)
				continue;
			if (!same_dir(&v[i], &v[j]))   /* sagad never loads them together */
				break;
			if (v[i].given)
				vfile_add_error(&v[i], v[i].path, 0, 0, xasprintf(
					"flow \"%s\" version %d is also defined in %s; bump the version "
					"or rename one", f->name, f->version, v[j].path));
			else if (v[j].given)
				vfile_add_error(&v[j], v[j].path, 0, 0, xasprintf(
					"flow \"%s\" version %d is also defined in %s; bump the version "
					"or rename one", f->name, f->version, v[i].path));
			break;
		}
	}
	if (dsl_link(&fs, &lerrs) != 0) {
		for (size_t k = 0; k < lerrs.n; k++) {
			struct dsl_error *e = &lerrs.v[k];
			bool placed = false;
			for (size_t i = 0; i < n_given; i++) {
				if (!same_file(&v[i], e->file))
					continue;
				vfile_add_error(&v[i], e->file, e->line, e->col, xstrdup(e->message));
				placed = true;
				break;
			}
			if (!placed && e->file == NULL) {   /* no location: cannot tell, so report */
				errorx("%s", e->message);
				all_valid = false;
			}
		}
	}
	dsl_errors_close(&lerrs);

	/* 5. Report the given files, in order. */
	if (c->output == OUTPUT_JSON)
		validate_print_json(v, n_given);
	for (size_t i = 0; i < n_given; i++) {
		struct vfile *vf = &v[i];
		if (vfile_valid(vf)) {
			if (c->output == OUTPUT_TABLE)
				printf("%s: ok (flow %s version %d, %zu step%s)\n", vf->path,
				       vf->flow->name, vf->flow->version, vf->flow->n_steps,
				       vf->flow->n_steps == 1 ? "" : "s");
			continue;
		}
		all_valid = false;
		if (c->output == OUTPUT_JSON)
			continue;
		struct dsl_errors all = vfile_errors(vf);
		if (all.n > 0) {
			char *text = dsl_errors_format(&all);
			put_clean(stderr, text, true);
			free(text);
		} else {
			fprintf(stderr, "%s: %s\n", vf->path, sagad_strerror(vf->rc));
		}
		free(all.v);
	}

	flow_set_close(&fs);
	for (size_t i = 0; i < n; i++) {
		flow_unref(v[i].flow);
		dsl_errors_close(&v[i].errs);
		for (size_t k = 0; k < v[i].n_extra; k++) {
			free(v[i].extra[k].file);
			free(v[i].extra[k].message);
		}
		free(v[i].extra);
		free(v[i].real);
	}
	free(v);
	return all_valid ? EXIT_OK : EXIT_FAIL;
}

/* ---------------------------------------------------------------------------------------- */
/* flow list, flow show */

static void flow_list_table(struct ctl *c, json_t *body)
{
	json_t *flows = json_is_array(body) ? body : jget(body, "flows");
	struct table t;
	json_t *f;
	size_t i;

	if (json_array_size(flows) == 0) {
		fprintf(stderr, "sagad has no flows loaded\n");
		return;
	}
	table_init(&t, 4, "NAME", "VERSION", "STEPS", "DESCRIPTION");
	json_array_foreach(flows, i, f) {
		json_t *steps = jget(f, "steps"), *st;
		struct strbuf names;
		size_t k;

		strbuf_init(&names);
		json_array_foreach(steps, k, st)
			strbuf_addf(&names, "%s%s", k ? "," : "",
				    json_is_string(st) ? json_string_value(st) : jtext(jget(st, "name")));
		table_add(&t, jtext(jget(f, "name")), jtext(jget(f, "version")),
			  names.data, jtext(jget(f, "description")));
		strbuf_close(&names);
	}
	table_print(&t, 0);
	table_close(&t);
}

static int cmd_flow_list(struct ctl *c, struct cmd_args *a)
{
	return get_and_print(c, "/v1/flows", flow_list_table);
}

/* "POST /classes" from a request object; NULL when there is none. */
static const char *request_text(const json_t *rq)
{
	const char *method, *path;

	if (json_is_string(rq)) {
		/* "POST http://host/path {...body}" or "kafka topic key=K {...}": the table shows
		 * what precedes the body (-o json has all of it) */
		const char *t = json_string_value(rq), *body = strstr(t, " {");
		const char *arr = strstr(t, " [");
		if (body == NULL || (arr != NULL && arr < body))
			body = arr;
		if (body != NULL)
			return sfmt("%.*s", (int)(body - t), t);
		return t;
	}
	if (!json_is_object(rq))
		return NULL;
	method = jstrget(rq, "method");
	path = jstrget(rq, "url") ? jstrget(rq, "url") : jstrget(rq, "path");
	if (method == NULL && path == NULL)
		return compact(rq, 60);
	return sfmt("%s %s", method ? method : "?", path ? path : "?");
}

static const char *retry_text(const json_t *r)
{
	struct strbuf b;
	const json_t *max, *init, *mult, *cap;

	if (r == NULL || json_is_null(r))
		return "default";
	if (!json_is_object(r))
		return jtext(r);
	max = jget(r, "max_attempts");
	init = jdur_field(r, "initial_backoff");
	mult = jget(r, "multiplier");
	cap = jdur_field(r, "max_backoff");
	strbuf_init(&b);
	if (max != NULL)
		strbuf_addf(&b, "%s attempt%s", jtext(max),
			    json_integer_value(max) == 1 ? "" : "s");
	if (init != NULL)
		strbuf_addf(&b, "%s%s", b.len ? ", " : "", jduration(init));
	if (mult != NULL)
		strbuf_addf(&b, "%sx%s", b.len ? " " : "", jtext(mult));
	if (cap != NULL)
		strbuf_addf(&b, "%sup to %s", b.len ? " " : "", jduration(cap));
	if (b.len == 0)
		strbuf_adds(&b, "default");
	return keep(strbuf_detach(&b));
}

static void flow_show_table(struct ctl *c, json_t *f)
{
	json_t *input = jget(f, "input"), *parts = jget(f, "participants"), *steps = jget(f, "steps");
	json_t *v, *st;
	const char *key;
	struct table t;
	size_t i;

	field("Flow", sfmt("%s@%s", jtext(jget(f, "name")), jtext(jget(f, "version"))));
	field("About", jstrget(f, "description"));
	field("File", jstrget(f, "file"));
	v = (json_t *)jdur_field(f, "deadline");
	if (v != NULL && !json_is_null(v) && !(json_is_integer(v) && json_integer_value(v) == 0))
		field("Deadline", jduration(v));

	if (json_object_size(input) > 0) {
		printf("\nInput:\n");
		table_init(&t, 3, "FIELD", "TYPE", "RULE");
		json_object_foreach(input, key, v) {
			const char *rule = NULL;
			if (jget(v, "default") != NULL)
				rule = sfmt("default %s", compact(jget(v, "default"), 40));
			if (json_is_true(jget(v, "required")))
				rule = "required";
			if (json_is_true(jget(v, "sensitive")))
				rule = rule ? sfmt("%s, sensitive", rule) : "sensitive";
			table_add(&t, key, json_is_string(v) ? json_string_value(v)
							     : jtext(jget(v, "type")), rule);
		}
		table_print(&t, 2);
		table_close(&t);
	}
	if (json_object_size(parts) > 0) {
		printf("\nParticipants:\n");
		table_init(&t, 3, "NAME", "URL", "TIMEOUT");
		json_object_foreach(parts, key, v) {
			json_t *url = jget(v, "url") ? jget(v, "url") : jget(v, "base_url");
			table_add(&t, key, jtext(url), jduration(jdur_field(v, "timeout")));
		}
		table_print(&t, 2);
		table_close(&t);
	}

	printf("\nSteps:\n");
	table_init(&t, 6, "STEP", "CALLS", "ACTION", "COMPENSATION", "TIMEOUT", "RETRY");
	json_array_foreach(steps, i, st) {
		const char *name = jtext(jget(st, "name")), *calls, *action, *comp;
		json_t *cj = jget(st, "compensation");

		if (json_is_true(jget(st, "pivot")))
			name = sfmt("%s (pivot)", name);
		if (jget(st, "flow") != NULL) {
			calls = sfmt("flow %s", jtext(jget(st, "flow")));
			action = "child saga";
			comp = cj && !json_is_null(cj) ? request_text(cj) : "child's compensation";
		} else {
			calls = jtext(jget(st, "participant"));
			action = request_text(jget(st, "action"));
			comp = cj && !json_is_null(cj) ? request_text(cj) : "none";
		}
		table_add(&t, name, calls, action, comp, jduration(jdur_field(st, "timeout")),
			  jget(st, "flow") != NULL && jget(st, "retry") == NULL
				  ? "-" : retry_text(jget(st, "retry")));
	}
	table_print(&t, 2);
	table_close(&t);
}

static int cmd_flow_show(struct ctl *c, struct cmd_args *a)
{
	return get_and_print(c, sfmt("/v1/flows/%s", seg(c, a->argv[0])), flow_show_table);
}

/* ---------------------------------------------------------------------------------------- */
/* saga list, saga show */

/* Prints " NAME VALUE" with VALUE quoted for a POSIX shell when it needs it. */
static void put_shell_opt(FILE *f, const char *name, const char *value)
{
	if (value == NULL)
		return;
	fprintf(f, " %s ", name);
	if (value[0] != '\0' && value[strspn(value, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					       "0123456789_.,:/=+@%-")] == '\0') {
		fputs(value, f);
		return;
	}
	fputc('\'', f);
	for (const char *p = value; *p != '\0'; p++) {
		if (*p == '\'')
			fputs("'\\''", f);
		else if ((unsigned char)*p >= 0x20 && *p != 0x7f)
			fputc(*p, f);
	}
	fputc('\'', f);
}

static void saga_list_table(struct ctl *c, json_t *body, struct cmd_args *a)
{
	json_t *sagas = json_is_array(body) ? body : jget(body, "sagas"), *s;
	const char *next = jstrget(body, "next_cursor");
	struct table t;
	size_t i;

	if (json_array_size(sagas) == 0) {
		fprintf(stderr, "no sagas found\n");
	} else {
		bool steps = jget(json_array_get(sagas, 0), "steps") != NULL;

		if (steps)
			table_init(&t, 5, "ID", "FLOW", "STATUS", "UPDATED", "STEPS");
		else
			table_init(&t, 5, "ID", "FLOW", "STATUS", "CREATED", "UPDATED");
		json_array_foreach(sagas, i, s) {
			const char *flow = jtext(jget(s, "flow"));
			if (jget(s, "flow_version") != NULL)
				flow = sfmt("%s@%s", flow, jtext(jget(s, "flow_version")));
			if (steps) {
				/* the status view: each step (participant) and its state */
				struct strbuf sb;
				json_t *st;
				size_t k;

				strbuf_init(&sb);
				json_array_foreach(jget(s, "steps"), k, st)
					strbuf_addf(&sb, "%s%s=%s%s", k ? " " : "", jtext(jget(st, "name")),
						    jtext(jget(st, "state")),
						    json_is_true(jget(jget(st, "response"), "fallback")) ?
						    "(fallback)" : "");
				table_add(&t, jtext(jget(s, "id")), flow, jtext(jget(s, "status")),
					  jtext(jget(s, "updated_at")), sfmt("%s", sb.data ? sb.data : ""));
				strbuf_close(&sb);
				continue;
			}
			table_add(&t, jtext(jget(s, "id")), flow, jtext(jget(s, "status")),
				  jtext(jget(s, "created_at")), jtext(jget(s, "updated_at")));
		}
		table_print(&t, 0);
		table_close(&t);
	}
	if (next != NULL && next[0] != '\0') {
		fflush(stdout);   /* keep the hint after the table when both go to one pipe */
		fputs("next: sagactl saga list", stderr);
		put_shell_opt(stderr, "--flow", a->opt[OPT_FLOW]);
		put_shell_opt(stderr, "--status", a->opt[OPT_STATUS]);
		put_shell_opt(stderr, "--key", a->opt[OPT_KEY]);
		put_shell_opt(stderr, "--limit", a->opt[OPT_LIMIT]);
		put_shell_opt(stderr, "--cursor", next);
		fputc('\n', stderr);
	}
}

static int cmd_saga_list(struct ctl *c, struct cmd_args *a)
{
	struct request rq = { .method = "GET" };
	struct strbuf q;
	json_t *body;
	long status, limit;
	char *end;
	int rc;

	if (a->opt[OPT_LIMIT] != NULL) {
		errno = 0;
		limit = strtol(a->opt[OPT_LIMIT], &end, 10);
		if (errno != 0 || *end != '\0' || end == a->opt[OPT_LIMIT] || limit < 1)
			return usage_error(a->cmd, "--limit: \"%s\" is not a positive number",
					   a->opt[OPT_LIMIT]);
	}
	if (a->opt[OPT_KEY] != NULL) {
		const char *eq = strchr(a->opt[OPT_KEY], '=');
		if (eq == NULL || eq == a->opt[OPT_KEY] || eq[1] == '\0')
			return usage_error(a->cmd, "--key: expected NAME=VALUE (a business key of the "
					   "flow, e.g. --key orderId=42), got \"%s\"", a->opt[OPT_KEY]);
	}
	strbuf_init(&q);
	query_add(c, &q, "flow", a->opt[OPT_FLOW]);
	query_add(c, &q, "status", a->opt[OPT_STATUS]);
	if (a->opt[OPT_KEY] != NULL) {
		const char *eq = strchr(a->opt[OPT_KEY], '=');
		query_add(c, &q, sfmt("key.%.*s", (int)(eq - a->opt[OPT_KEY]), a->opt[OPT_KEY]), eq + 1);
	}
	query_add(c, &q, "limit", a->opt[OPT_LIMIT]);
	query_add(c, &q, "cursor", a->opt[OPT_CURSOR]);
	rq.path = sfmt("/v1/sagas%s", q.data ? q.data : "");
	strbuf_close(&q);
	if ((rc = api_call(c, &rq, &status, &body)) != 0)
		return rc;
	if (c->output == OUTPUT_JSON)
		print_json(body);
	else
		saga_list_table(c, body, a);
	json_decref(body);
	return EXIT_OK;
}

static void saga_header(const json_t *s)
{
	const char *status = jtext(jget(s, "status"));
	json_t *input = jget(s, "input"), *output = jget(s, "output"), *err = jget(s, "error");

	if (json_is_true(jget(s, "cancel_requested")))
		status = sfmt("%s (cancel requested)", status);
	field("Saga", jtext(jget(s, "id")));
	field("Flow", jget(s, "flow_version") != NULL
		      ? sfmt("%s@%s", jtext(jget(s, "flow")), jtext(jget(s, "flow_version")))
		      : jtext(jget(s, "flow")));
	field("Status", status);
	field("Created", jstrget(s, "created_at"));
	field("Updated", jstrget(s, "updated_at"));
	field("Deadline", jstrget(s, "deadline_at"));
	field("Parent", jstrget(s, "parent_id"));
	if (err != NULL && !json_is_null(err))
		field("Error", jtext(err));
	if (input != NULL && !json_is_null(input))
		field("Input", compact(input, MAX_JSON_CELL));
	if (output != NULL && !json_is_null(output))
		field("Output", compact(output, MAX_JSON_CELL));
}

static void saga_steps(const json_t *s)
{
	json_t *steps = jget(s, "steps"), *st;
	struct table t;
	size_t i;

	if (json_array_size(steps) == 0)
		return;
	printf("\nSteps:\n");
	table_init(&t, 4, "STEP", "STATE", "ATTEMPTS", "ERROR");
	json_array_foreach(steps, i, st) {
		const char *attempts = jtext(jget(st, "attempt"));
		if (json_integer_value(jget(st, "comp_attempt")) > 0)
			attempts = sfmt("%s (compensation %s)", attempts,
					jtext(jget(st, "comp_attempt")));
		table_add(&t, jtext(jget(st, "name")), jtext(jget(st, "state")), attempts,
			  jtext(jget(st, "error")));
	}
	table_print(&t, 2);
	table_close(&t);
}

struct hist_row {
	json_int_t seq;
	size_t index;
};

static int cmp_hist(const void *a, const void *b)
{
	const struct hist_row *x = a, *y = b;

	if (x->seq != y->seq)
		return x->seq < y->seq ? -1 : 1;
	return x->index < y->index ? -1 : x->index > y->index;
}

static void saga_history(const json_t *s)
{
	json_t *hist = jget(s, "history");
	size_t n = json_array_size(hist);
	struct hist_row *rows;
	struct table t;

	if (n == 0)
		return;
	rows = xcalloc(n, sizeof(*rows));
	for (size_t i = 0; i < n; i++) {
		json_t *seq = jget(json_array_get(hist, i), "seq");
		rows[i].seq = json_is_integer(seq) ? json_integer_value(seq) : (json_int_t)i;
		rows[i].index = i;
	}
	qsort(rows, n, sizeof(*rows), cmp_hist);
	printf("\nHistory:\n");
	table_init(&t, 9, "TIME", "TOOK", "STEP", "PHASE", "ATTEMPT", "EVENT", "REQUEST", "STATUS",
		   "ERROR");
	for (size_t i = 0; i < n; i++) {
		json_t *h = json_array_get(hist, rows[i].index);
		int64_t t0 = parse_time(jstrget(h, "started_at"));
		int64_t t1 = parse_time(jstrget(h, "ended_at"));
		int64_t ms = json_is_integer(jget(h, "ms")) ? json_integer_value(jget(h, "ms"))
			   : t0 >= 0 && t1 >= t0 ? t1 - t0 : -1;
		const char *took = ms < 0 ? NULL : ms < 1000 ? sfmt("%lldms", (long long)ms)
					 : sfmt("%.1fs", ms / 1000.0);
		const char *when = jstrget(h, "started_at") ? jstrget(h, "started_at")
							     : jstrget(h, "ended_at");

		table_add(&t, when, took, jtext(jget(h, "step")), jtext(jget(h, "phase")),
			  jtext(jget(h, "attempt")), jtext(jget(h, "event")),
			  request_text(jget(h, "request")), jtext(jget(h, "status")),
			  jtext(jget(h, "error")));
	}
	table_print(&t, 2);
	table_close(&t);
	free(rows);
}

static void saga_show_table(struct ctl *c, json_t *s)
{
	saga_header(s);
	saga_steps(s);
	saga_history(s);
}

static int cmd_saga_show(struct ctl *c, struct cmd_args *a)
{
	return get_and_print(c, sfmt("/v1/sagas/%s", seg(c, a->argv[0])), saga_show_table);
}

/* ---------------------------------------------------------------------------------------- */
/* saga start, cancel, retry */

/* Reads --input: inline JSON, @FILE or @- (stdin). Returns a compact JSON object string
 * (scratch) or NULL after a usage message. */
static const char *read_input(const struct cmd *cmd, const char *arg)
{
	struct strbuf b;
	json_error_t jerr;
	json_t *v;
	const char *what = "--input";
	char *text;

	strbuf_init(&b);
	if (arg[0] == '@') {
		FILE *f = strcmp(arg, "@-") == 0 ? stdin : fopen(arg + 1, "r");
		char buf[8192];
		size_t n;

		what = strcmp(arg, "@-") == 0 ? "--input @- (standard input)" : sfmt("--input %s", arg);
		if (f == NULL) {
			usage_error(cmd, "--input: cannot open %s: %s", arg + 1, strerror(errno));
			return NULL;
		}
		while ((n = fread(buf, 1, sizeof(buf), f)) > 0 && b.len <= MAX_INPUT_BYTES)
			strbuf_add(&b, buf, n);
		if (ferror(f) || b.len > MAX_INPUT_BYTES) {
			usage_error(cmd, "%s: cannot read: %s", what,
				    ferror(f) ? strerror(errno) : "larger than 16 MiB");
			if (f != stdin)
				fclose(f);
			strbuf_close(&b);
			return NULL;
		}
		if (f != stdin)
			fclose(f);
	} else {
		strbuf_adds(&b, arg);
	}
	v = json_loadb(b.data ? b.data : "", b.len, JSON_REJECT_DUPLICATES, &jerr);
	strbuf_close(&b);
	if (v == NULL) {
		usage_error(cmd, "%s: not valid JSON: %s (line %d, column %d)", what,
			    jerr.text, jerr.line, jerr.column);
		return NULL;
	}
	if (!json_is_object(v)) {
		usage_error(cmd, "%s: must be a JSON object, like '{\"name\": \"Ada\"}'", what);
		json_decref(v);
		return NULL;
	}
	text = json_dumps(v, JSON_COMPACT);
	json_decref(v);
	return keep(text);
}

static int cmd_saga_start(struct ctl *c, struct cmd_args *a)
{
	const struct cmd *cmd = a->cmd;
	const char *wait = a->opt[OPT_WAIT], *wt = a->opt[OPT_WAIT_TIMEOUT];
	const char *key = a->opt[OPT_IDEMPOTENCY_KEY];
	struct request rq = { .method = "POST", .idempotency_key = key };
	struct strbuf q;
	int64_t wait_ms = DEFAULT_WAIT_MS;
	json_t *s;
	long status;
	int rc;

	if (wait != NULL && strcmp(wait, "none") != 0 && strcmp(wait, "completion") != 0 &&
	    (strncmp(wait, "step:", 5) != 0 || wait[5] == '\0'))
		return usage_error(cmd, "--wait: \"%s\" is not none, completion or step:NAME", wait);
	if (wt != NULL && (util_parse_duration(wt, &wait_ms) != 0 || wait_ms <= 0))
		return usage_error(cmd, "--timeout: \"%s\" is not a positive duration "
				   "(examples: 500ms, 30s, 5m)", wt);
	if (key != NULL && (key[0] == '\0' || key[strcspn(key, "\r\n")] != '\0' || strlen(key) > 255))
		return usage_error(cmd, "--idempotency-key: must be 1 to 255 characters on one line");
	rq.body = a->opt[OPT_INPUT] ? read_input(cmd, a->opt[OPT_INPUT]) : "{}";
	if (rq.body == NULL)
		return EXIT_USAGE;

	strbuf_init(&q);
	query_add(c, &q, "wait", wait);
	query_add(c, &q, "timeout", wt);
	rq.path = sfmt("/v1/flows/%s/sagas%s", seg(c, a->argv[0]), q.data ? q.data : "");
	strbuf_close(&q);
	/* The daemon holds the request while it waits: allow that plus a margin, unless the
	 * request limit (--timeout before the command) is already longer. */
	if (wait == NULL || strcmp(wait, "none") != 0) {
		int64_t need = wait_ms + WAIT_MARGIN_MS;
		rq.timeout_ms = c->timeout_ms > need ? c->timeout_ms : need;
	}
	if ((rc = api_call(c, &rq, &status, &s)) != 0)
		return rc;
	if (c->output == OUTPUT_JSON) {
		print_json(s);
	} else {
		saga_header(s);
		saga_steps(s);
	}
	fflush(stdout);
	if (jstrget(s, "id") != NULL) {
		const char *st = jstrget(s, "status") ? jstrget(s, "status") : "running";
		if (status == 202 && (wait == NULL || strcmp(wait, "none") != 0))
			fprintf(stderr, "sagactl: saga %s is still %s after waiting %s; it goes on in "
				"sagad. Follow it with: sagactl saga show %s\n",
				jstrget(s, "id"), st, fmt_ms(wait_ms), jstrget(s, "id"));
		else if (c->output == OUTPUT_TABLE)
			fprintf(stderr, "\nTimeline: sagactl saga show %s\n", jstrget(s, "id"));
		if (c->replayed)
			fprintf(stderr, "sagactl: idempotency key \"%s\" was used before: this is the "
				"saga it started; nothing new was started\n", key);
	}
	json_decref(s);
	return EXIT_OK;
}

static int saga_post(struct ctl *c, const char *id, const char *verb, const char *done)
{
	struct request rq = { .method = "POST" };
	json_t *s;
	long status;
	int rc;

	rq.path = sfmt("/v1/sagas/%s/%s", seg(c, id), verb);
	if ((rc = api_call(c, &rq, &status, &s)) != 0)
		return rc;
	if (c->output == OUTPUT_JSON) {
		print_json(s);
	} else {
		printf("saga ");
		put_clean(stdout, jstrget(s, "id") ? jstrget(s, "id") : id, false);
		printf(": %s", done);
		if (jstrget(s, "status") != NULL) {
			printf(" (status ");
			put_clean(stdout, jstrget(s, "status"), false);
			printf(")");
		}
		printf("\n");
	}
	json_decref(s);
	return EXIT_OK;
}

static int cmd_saga_cancel(struct ctl *c, struct cmd_args *a)
{
	return saga_post(c, a->argv[0], "cancel", "cancel requested");
}

static int cmd_saga_retry(struct ctl *c, struct cmd_args *a)
{
	return saga_post(c, a->argv[0], "retry", "compensation resumed");
}

/* ---------------------------------------------------------------------------------------- */
/* help, and the command table */

static const struct cmd *find_cmd(char **words, int n, int *used);

static bool is_group(const char *w)
{
	for (int i = 0; groups[i] != NULL; i++)
		if (strcmp(groups[i], w) == 0)
			return true;
	return false;
}

static int cmd_help(struct ctl *c, struct cmd_args *a)
{
	const struct cmd *cmd;
	int used;

	if (a->argc == 0) {
		print_main_help();
		return EXIT_OK;
	}
	cmd = find_cmd(a->argv, a->argc, &used);
	if (cmd != NULL && used == a->argc) {
		print_cmd_help(cmd);
		return EXIT_OK;
	}
	if (a->argc == 1 && is_group(a->argv[0])) {
		print_group_help(stdout, a->argv[0]);
		return EXIT_OK;
	}
	return usage_error(NULL, "no help for \"%s%s%s\": not a command", a->argv[0],
			   a->argc > 1 ? " " : "", a->argc > 1 ? a->argv[1] : "");
}

static const struct opt start_opts[] = {
	{ "input", 0, true, OPT_INPUT },
	{ "wait", 0, true, OPT_WAIT },
	{ "timeout", 0, true, OPT_WAIT_TIMEOUT },
	{ "idempotency-key", 0, true, OPT_IDEMPOTENCY_KEY },
	{ NULL, 0, false, 0 }
};

static const struct opt list_opts[] = {
	{ "flow", 0, true, OPT_FLOW },
	{ "status", 0, true, OPT_STATUS },
	{ "limit", 0, true, OPT_LIMIT },
	{ "cursor", 0, true, OPT_CURSOR },
	{ "key", 0, true, OPT_KEY },
	{ NULL, 0, false, 0 }
};

static const struct cmd cmd_table[] = {
	{ "flow validate", "FILE...", "check flow files offline (exit 0 valid, 1 invalid)",
	  "Checks flow files with the same loader sagad uses when it starts or reloads: YAML\n"
	  "syntax, the DSL's keys and types, templates, participants, step references and\n"
	  "static checks. Sub-flow steps (`flow: NAME`) are resolved against the files given\n"
	  "and the other *.yaml/*.yml files in the same folders, as sagad resolves them in\n"
	  "its flows folder; problems in those other files are not reported. Does not contact\n"
	  "sagad. ${env.NAME} values are taken from sagactl's own environment.\n"
	  "\n"
	  "Prints `FILE: ok (flow NAME version N, K steps)` on stdout for each valid file,\n"
	  "and one `FILE:LINE:COL: message` line on stderr for each problem.\n"
	  "With -o json, prints one JSON array on stdout instead:\n"
	  "  [{\"file\": ..., \"valid\": true|false, \"flow\": ..., \"version\": N, \"steps\": K,\n"
	  "    \"errors\": [{\"file\": ..., \"line\": L, \"col\": C, \"message\": ...}]}]\n"
	  "\n"
	  "Exit status: 0 every file is valid, 1 any file is invalid or unreadable,\n"
	  "2 usage error (no FILE given).\n"
	  "\n"
	  "Examples:\n"
	  "  sagactl flow validate flows/apply.yaml\n"
	  "  sagactl flow validate flows/*.yaml\n"
	  "  # pre-commit hook: check the staged flow files\n"
	  "  git diff --cached --name-only --diff-filter=AM -- 'flows/*.yaml' |\n"
	  "      xargs -r sagactl flow validate\n",
	  NULL, 1, -1, cmd_flow_validate },
	{ "flow list", "", "list the flows sagad has loaded",
	  "Lists the flows sagad has loaded (GET /v1/flows): name, version, steps in order\n"
	  "and description.\n"
	  "\n"
	  "Examples:\n"
	  "  sagactl flow list\n"
	  "  sagactl -o json flow list | jq -r '.flows[].name'\n",
	  NULL, 0, 0, cmd_flow_list },
	{ "flow show", "NAME", "show a flow's steps, participants and compensations",
	  "Shows the flow NAME as sagad runs it (GET /v1/flows/NAME): its file, deadline,\n"
	  "declared input fields, participants, and for each step the participant (or the\n"
	  "sub-flow) it calls, the action and compensation requests (method and path\n"
	  "template), the per-attempt timeout and the retry policy (\"default\" when the\n"
	  "flow leaves it to the defaults). \"(pivot)\" marks the step the flow declares as\n"
	  "its pivot, the point after which the saga is meant to commit. -o json prints the\n"
	  "flow's full definition as JSON (templates, success rules, headers, keep paths).\n"
	  "\n"
	  "Examples:\n"
	  "  sagactl flow show apply\n"
	  "  sagactl -o json flow show apply | jq '.steps[] | {name, compensation}'\n",
	  NULL, 1, 1, cmd_flow_show },
	{ "saga start", "FLOW [--input JSON|@FILE|@-] [--wait MODE] [--timeout DURATION]\n"
	  "                          [--idempotency-key KEY]",
	  "start a saga of FLOW and wait for its outcome",
	  "Starts a saga of the flow FLOW (POST /v1/flows/FLOW/sagas) with an input object.\n"
	  "sagad checks the input against the flow's `input:` declaration first: if it is\n"
	  "rejected, nothing runs and the reason is printed (for example\n"
	  "`sagactl: input.classId: required field missing`).\n"
	  "\n"
	  "Options:\n"
	  "  --input JSON|@FILE|@-\n"
	  "        the saga's input: a JSON object inline, read from FILE, or read from\n"
	  "        standard input with @-. Default: {} (no input).\n"
	  "  --wait none|completion|step:NAME\n"
	  "        completion (default): wait until the saga has ended: completed,\n"
	  "          compensated or failed.\n"
	  "        none: return at once; the saga runs on in sagad.\n"
	  "        step:NAME: wait until step NAME has succeeded (or the saga can no\n"
	  "          longer get there); later steps go on in sagad.\n"
	  "  --timeout DURATION\n"
	  "        how long sagad waits (default 30s, at most sagad's --max-wait, 5m by\n"
	  "        default). When it runs out the saga goes on:\n"
	  "        sagactl prints its current state and says how to follow it.\n"
	  "        The request itself is allowed this wait plus 10s (or the global\n"
	  "        --timeout given before `saga start`, when that is longer).\n"
	  "  --idempotency-key KEY\n"
	  "        sent as the Idempotency-Key header: starting FLOW again with the same\n"
	  "        KEY returns the saga the first call started instead of starting\n"
	  "        another (sagactl then says so on stderr). Use it whenever a script\n"
	  "        may run the command twice.\n"
	  "\n"
	  "Output: the saga's id, flow, status, output or error, and its steps; with -o\n"
	  "json, the saga's JSON as `saga show` prints it. The command to see the whole\n"
	  "timeline is printed on stderr.\n"
	  "\n"
	  "Exit status: 0 when sagad accepted the saga, whatever its outcome: a saga that\n"
	  "ended compensated or failed exits 0 too, and its status says how it ended. To\n"
	  "make a script fail unless the saga completed, test the status:\n"
	  "    sagactl -o json saga start apply --input @in.json |\n"
	  "        jq -e '.status == \"completed\"' >/dev/null\n"
	  "1 when sagad refused the saga (unknown flow, input rejected, ...) or could not be\n"
	  "reached; 2 for usage errors, including an --input that is not a JSON object.\n"
	  "\n"
	  "Examples:\n"
	  "  # start and wait for the outcome\n"
	  "  sagactl saga start apply --input '{\"studentName\": \"Ada\", \"courseId\": 7}'\n"
	  "  # input from a file; return at once with the saga's id\n"
	  "  sagactl saga start apply --input @input.json --wait none\n"
	  "  # input from a pipe, safe to retry\n"
	  "  jq -n '{studentName: \"Ada\", courseId: 7}' |\n"
	  "      sagactl saga start apply --input @- --idempotency-key apply-ada-7\n"
	  "  # wait until the payment step is done, for at most 2 minutes\n"
	  "  sagactl saga start apply --input @input.json --wait step:pay --timeout 2m\n"
	  "  # keep only the id\n"
	  "  id=$(sagactl -o json saga start apply --input @input.json --wait none | jq -r .id)\n",
	  start_opts, 1, 1, cmd_saga_start },
	{ "saga list", "[--flow FLOW] [--status STATUS] [--key NAME=VALUE] [--limit N] "
	  "[--cursor CURSOR]",
	  "list sagas, by flow, status and business key",
	  "Lists sagas, newest first (GET /v1/sagas): id, flow@version, status, created and\n"
	  "updated times (RFC 3339, UTC). When there are more than one page holds, the\n"
	  "command for the next page is printed on stderr.\n"
	  "\n"
	  "With --key, it is the status view of a business key (a flow's `keys:`, such as\n"
	  "orderId): every saga of any flow with that key, cancelled ones included, and the\n"
	  "state of each of its steps (-o json adds each step's response and the keys).\n"
	  "\n"
	  "Options:\n"
	  "  --flow FLOW        only sagas of this flow\n"
	  "  --status STATUS    only sagas in this status: running, compensating, completed,\n"
	  "                     compensated or failed (failed: compensation gave up; see\n"
	  "                     `saga retry`)\n"
	  "  --limit N          at most N sagas per page, 1 to 1000 (default 50)\n"
	  "  --cursor CURSOR    the page after CURSOR, from the previous page's `next:` hint\n"
	  "                     (next_cursor in -o json)\n"
	  "  --key NAME=VALUE   only sagas whose business key NAME has VALUE\n"
	  "\n"
	  "Examples:\n"
	  "  sagactl saga list\n"
	  "  sagactl saga list --key orderId=42\n"
	  "  sagactl saga list --flow apply --status failed\n"
	  "  sagactl -o json saga list --status compensating | jq -r '.sagas[].id'\n",
	  list_opts, 0, 0, cmd_saga_list },
	{ "saga show", "ID", "show a saga: status, steps and full history",
	  "Shows the saga ID (GET /v1/sagas/ID) as a readable timeline:\n"
	  "  - a header: id, flow@version, status (and whether a cancel was requested),\n"
	  "    created and updated times, deadline, parent saga, error, input and output\n"
	  "    (long values are cut: use -o json for all of it);\n"
	  "  - the steps: state, attempts of the action (and of the compensation), error;\n"
	  "  - the history, in order: when each attempt started and how long it took,\n"
	  "    step, phase (action or compensation), attempt, event, the request sent,\n"
	  "    the participant's HTTP status and the error.\n"
	  "\n"
	  "Examples:\n"
	  "  sagactl saga show 01JB8M0W5T3K9P2Q7R4S6V8X0Y\n"
	  "  sagactl -o json saga show 01JB8M0W5T3K9P2Q7R4S6V8X0Y | jq '.history[] | select(.error)'\n",
	  NULL, 1, 1, cmd_saga_show },
	{ "saga cancel", "ID", "cancel a running saga: it compensates",
	  "Asks sagad to cancel the saga ID (POST /v1/sagas/ID/cancel): the saga stops\n"
	  "going forward and compensates the steps already done, in reverse order. A step\n"
	  "in flight is awaited first; if it succeeds, it is compensated too. Returns at\n"
	  "once, with the saga compensating; follow it with `sagactl saga show ID`.\n"
	  "Cancelling a saga that is already compensating is fine; cancelling one that\n"
	  "has ended fails (exit 1).\n"
	  "\n"
	  "Examples:\n"
	  "  sagactl saga cancel 01JB8M0W5T3K9P2Q7R4S6V8X0Y\n",
	  NULL, 1, 1, cmd_saga_cancel },
	{ "saga retry", "ID", "resume the compensation of a failed saga",
	  "Resumes the compensation of the saga ID (POST /v1/sagas/ID/retry). A saga is\n"
	  "`failed` when a compensation gave up after its retries (the participant kept\n"
	  "failing): fix the cause (the participant, its data), then retry. Every failed\n"
	  "compensation gets a new round of attempts, in reverse order. Returns at once,\n"
	  "with the saga compensating; follow it with `sagactl saga show ID`. Fails\n"
	  "(exit 1) when the saga is not failed.\n"
	  "\n"
	  "Examples:\n"
	  "  sagactl saga list --status failed\n"
	  "  sagactl saga retry 01JB8M0W5T3K9P2Q7R4S6V8X0Y\n",
	  NULL, 1, 1, cmd_saga_retry },
	{ "help", "[COMMAND]", "show help for sagactl or a command",
	  "Shows sagactl's help, or the reference of COMMAND with its options and examples.\n"
	  "\n"
	  "Examples:\n"
	  "  sagactl help\n"
	  "  sagactl help saga\n"
	  "  sagactl help saga start\n",
	  NULL, 0, 2, cmd_help },
	{ NULL, NULL, NULL, NULL, NULL, 0, 0, NULL }
};

/* Finds the command whose words begin words[0..n); *used = how many words it took. */
static const struct cmd *find_cmd(char **words, int n, int *used)
{
	for (const struct cmd *cmd = cmd_table; cmd->name != NULL; cmd++) {
		const char *p = cmd->name;
		int k = 0;

		while (k < n) {
			size_t len = strcspn(p, " ");
			if (strlen(words[k]) != len || strncmp(words[k], p, len) != 0)
				break;
			k++;
			p += len;
			if (*p == '\0') {
				*used = k;
				return cmd;
			}
			p++;
		}
	}
	return NULL;
}

/* ---------------------------------------------------------------------------------------- */

static int run(struct ctl *c, int argc, char **argv)
{
	struct parser p = { .argc = argc, .argv = argv, .i = 1, .tables = { global_opts } };
	struct cmd_args a = { .cmd = NULL };
	const struct cmd *cmd;
	const struct opt *o;
	const char *val;
	int r, used, start, rc;

	/* Global options, up to the command's first word. */
	while ((r = parse_next(&p, &o, &val)) == 1)
		if ((r = apply_global(c, NULL, o, val)) != 0)
			return r < 0 ? EXIT_OK : r;
	if (r == -2)
		return EXIT_USAGE;
	if (r == -1)
		return usage_error(NULL, "missing command");
	start = p.i - 1;
	cmd = find_cmd(argv + start, argc - start, &used);
	if (cmd == NULL) {
		if (is_group(argv[start])) {
			if (start + 1 < argc && (strcmp(argv[start + 1], "-h") == 0 ||
						 strcmp(argv[start + 1], "--help") == 0)) {
				print_group_help(stdout, argv[start]);
				return EXIT_OK;
			}
			if (start + 1 < argc)
				fprintf(stderr, "sagactl: unknown %s command \"%s\"\n", argv[start],
					argv[start + 1]);
			else
				fprintf(stderr, "sagactl: missing %s command\n", argv[start]);
			print_group_help(stderr, argv[start]);
			return EXIT_USAGE;
		}
		return usage_error(NULL, "unknown command \"%s\"", argv[start]);
	}

	/* The command's options (global ones too, after its own) and arguments. */
	p.i = start + used;
	p.cmd = cmd;
	a.cmd = cmd;
	p.tables[0] = cmd->opts ? cmd->opts : global_opts;
	p.tables[1] = cmd->opts ? global_opts : NULL;
	a.argv = xcalloc((size_t)argc, sizeof(char *));
	while ((r = parse_next(&p, &o, &val)) >= 0) {
		if (r == 0) {
			a.argv[a.argc++] = (char *)val;
		} else if (o->id <= OPT_VERSION) {
			if ((r = apply_global(c, cmd, o, val)) != 0) {
				rc = r < 0 ? EXIT_OK : r;
				goto out;
			}
		} else {
			a.opt[o->id] = o->has_arg ? val : "";
		}
	}
	if (r == -2) {
		rc = EXIT_USAGE;
		goto out;
	}
	if (a.argc < cmd->min_args) {
		const char *what = cmd->usage[0] == '[' ? "argument" : cmd->usage;
		rc = usage_error(cmd, "missing %.*s", (int)strcspn(what, " "), what);
		goto out;
	}
	if (cmd->max_args >= 0 && a.argc > cmd->max_args) {
		rc = usage_error(cmd, "unexpected argument \"%s\"", a.argv[cmd->max_args]);
		goto out;
	}
	if (c->timeout_ms == 0)
		c->timeout_ms = DEFAULT_TIMEOUT_MS;
	resolve_url(c);
	rc = cmd->exec(c, &a);
out:
	free(a.argv);
	return rc;
}

int main(int argc, char **argv)
{
	struct ctl c = { .output = OUTPUT_TABLE };
	int rc;

	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		errorx("cannot initialise libcurl");
		return EXIT_FAIL;
	}
	if ((c.curl = curl_easy_init()) == NULL) {
		errorx("cannot initialise libcurl");
		return EXIT_FAIL;
	}
	rc = run(&c, argc, argv);
	curl_easy_cleanup(c.curl);
	curl_global_cleanup();
	free(c.url);
	free(c.url_shown);
	scratch_free();
	if (fflush(stdout) != 0 || ferror(stdout)) {
		errorx("cannot write output: %s", strerror(errno));
		if (rc == EXIT_OK)
			rc = EXIT_FAIL;
	}
	return rc;
}
