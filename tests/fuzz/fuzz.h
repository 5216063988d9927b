/* fuzz.h: what the fuzz targets under tests/fuzz share.
 *
 * Each fuzz-<target>.c defines LLVMFuzzerTestOneInput() (and may define
 * LLVMFuzzerInitialize()). It is linked twice: with libFuzzer (./configure CC=clang
 * --enable-fuzzing; scripts/fuzz.sh runs it) and, in every build, with replay.c, a make check
 * test that feeds it the seed corpus tests/fuzz/corpus/<target>/ and the regression inputs
 * tests/fuzz/regressions/<target>/ (inputs that once crashed it).
 *
 * A target checks more than "no crash": FUZZ_CHECK states what must hold for every input (an
 * error always has a message, an API answer with a JSON content type is JSON, ...) and aborts
 * with the reason when it does not, which both drivers report as a failure. */
#ifndef SAGAD_FUZZ_H
#define SAGAD_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#define FUZZ_CHECK(cond, ...)                                                           \
	do {                                                                            \
		if (!(cond)) {                                                          \
			fprintf(stderr, "%s:%d: fuzz check failed: %s: ", __FILE__,     \
				__LINE__, #cond);                                       \
			fprintf(stderr, __VA_ARGS__);                                   \
			fputc('\n', stderr);                                            \
			abort();                                                        \
		}                                                                       \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A NUL-terminated copy of data, malloc()ed (free it). */
static inline char *fuzz_strndup(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);

	if (s == NULL)
		abort();
	for (size_t i = 0; i < size; i++)
		s[i] = (char)data[i];
	s[size] = '\0';
	return s;
}

#endif
