/* error.h: sagad's error codes. Every function that can fail returns 0 or one of these
 * negative codes; sagad_strerror() gives the human text. Errors a user caused also carry a
 * message with a location, written by the callee into a caller-supplied buffer. */
#ifndef SAGAD_ERROR_H
#define SAGAD_ERROR_H

#define SAGAD_ERRNO_MAP(XX)                                              \
	XX(EINVAL, "invalid argument")                                   \
	XX(ENOMEM, "out of memory")                                      \
	XX(EIO, "input/output error")                                    \
	XX(ENOENT, "not found")                                          \
	XX(EEXIST, "already exists")                                     \
	XX(ESYNTAX, "syntax error")                                      \
	XX(ELIMIT, "limit exceeded")                                     \
	XX(ENOFLOW, "no such flow")                                      \
	XX(ENOSAGA, "no such saga")                                      \
	XX(EINPUT, "saga input rejected")                                \
	XX(ETEMPLATE, "template evaluation failed")                      \
	XX(ESTATE, "not allowed in the saga's current state")            \
	XX(ESTORE, "store error")                                        \
	XX(EBUSY, "store busy")                                          \
	XX(EFULL, "disk full")                                           \
	XX(ETIMEOUT, "timed out")                                        \
	XX(ECONNECT, "connection failed")                                \
	XX(EHTTP, "participant answered with a failure status")          \
	XX(EREJECTED, "participant rejected the request")                \
	XX(ETOOBIG, "response too large")                                \
	XX(ESHUTDOWN, "shutting down")                                   \
	XX(ENOKAFKA, "Kafka is not configured")                          \
	XX(EOPEN, "circuit breaker open")                                \
	XX(EAUTH, "authentication required")                             \
	XX(EFORBIDDEN, "not allowed for this role")                      \
	XX(ENOKEY, "no secrets key configured")

enum sagad_errno {
	SAGAD_OK = 0,
#define XX(name, text) SAGAD_##name,
	SAGAD_ERR_FIRST_ = -1000,
	SAGAD_ERRNO_MAP(XX)
#undef XX
};

/* Returns a static string for a negative sagad code, or strerror() text for -errno. */
const char *sagad_strerror(int err);
/* Returns the code's symbolic name ("EINVAL"), static. */
const char *sagad_errname(int err);

#endif
