/* log.c: logfmt lines on stderr. */
#include <stdio.h>
#include <string.h>
#include "error.h"
#include "log.h"
#include "util.h"

enum log_level log_min_level = LOG_INFO;

static const char *const names[LOG_LEVEL_MAX] = { "debug", "info", "warn", "error" };

const char *log_level_name(enum log_level l)
{
	return l < LOG_LEVEL_MAX ? names[l] : "?";
}

int log_level_parse(const char *s, enum log_level *out)
{
	for (int i = 0; i < LOG_LEVEL_MAX; i++) {
		if (strcmp(s, names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return SAGAD_EINVAL;
}

void log_write(enum log_level l, const char *fmt, ...)
{
	char ts[40], line[4096];
	va_list ap;
	int n;

	util_format_time(util_now_ms(), ts, sizeof(ts));
	n = snprintf(line, sizeof(line), "ts=%s level=%s ", ts, log_level_name(l));
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s\n", line);
}

const char *log_quote(const char *s, char *buf, size_t len)
{
	size_t o = 0;
	bool plain = *s != '\0';

	for (const char *p = s; *p; p++)
		if (*p == ' ' || *p == '"' || *p == '=' || *p == '\\' || (unsigned char)*p < 0x20)
			plain = false;
	if (plain) {
		snprintf(buf, len, "%s", s);
		return buf;
	}
	if (len < 3)
		return "\"\"";
	buf[o++] = '"';
	for (const char *p = s; *p && o + 3 < len; p++) {
		if (*p == '"' || *p == '\\') {
			buf[o++] = '\\';
			buf[o++] = *p;
		} else if ((unsigned char)*p < 0x20) {
			buf[o++] = ' ';
		} else {
			buf[o++] = *p;
		}
	}
	buf[o++] = '"';
	buf[o] = '\0';
	return buf;
}
