/* error.c: the text of sagad's error codes. */
#include <string.h>
#include "error.h"

const char *sagad_strerror(int err)
{
	switch (err) {
	case 0: return "ok";
#define XX(name, text) case SAGAD_##name: return text;
	SAGAD_ERRNO_MAP(XX)
#undef XX
	default: return err < 0 && err > -4096 ? strerror(-err) : "unknown error";
	}
}

const char *sagad_errname(int err)
{
	switch (err) {
	case 0: return "OK";
#define XX(name, text) case SAGAD_##name: return #name;
	SAGAD_ERRNO_MAP(XX)
#undef XX
	default: return "ESYSTEM";
	}
}
