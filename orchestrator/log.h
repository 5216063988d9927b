/* log.h: logfmt lines on stderr ("ts=... level=info saga=... event=... msg=..."). The level is
 * checked before formatting. Never pass secrets (Authorization headers, sensitive fields). */
#ifndef SAGAD_LOG_H
#define SAGAD_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR, LOG_LEVEL_MAX };

extern enum log_level log_min_level;

const char *log_level_name(enum log_level l);
/* Parses "debug", "info", "warn", "error"; returns 0 or SAGAD_EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
/* fmt produces the logfmt key=value pairs after ts and level, e.g. "saga=%s event=started". */
void log_write(enum log_level l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_debug(...) do { if (log_min_level <= LOG_DEBUG) log_write(LOG_DEBUG, __VA_ARGS__); } while (0)
#define log_info(...)  do { if (log_min_level <= LOG_INFO)  log_write(LOG_INFO, __VA_ARGS__); } while (0)
#define log_warn(...)  do { if (log_min_level <= LOG_WARN)  log_write(LOG_WARN, __VA_ARGS__); } while (0)
#define log_error(...) log_write(LOG_ERROR, __VA_ARGS__)

/* Quotes a value for logfmt into buf (adds quotes and escapes when needed); returns buf. */
const char *log_quote(const char *s, char *buf, size_t len);

#endif
