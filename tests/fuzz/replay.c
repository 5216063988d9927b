/* replay.c: runs a fuzz target without libFuzzer, for make check (see fuzz.h). With no
 * argument it replays every file under tests/fuzz/regressions/<target>/ and
 * tests/fuzz/corpus/<target>/ (and the FUZZ_SEEDS folders) and prints TAP, one line per input; with arguments, every file
 * (or every file under each directory) named. An input that makes the target crash or fail a
 * FUZZ_CHECK kills the program: the TAP driver reports the missing lines as a failure, and
 * stderr names the input. Finding no input at all is a failure too. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "fuzz.h"

#ifndef FUZZ_TARGET
#error "build with -DFUZZ_TARGET='\"name\"'"
#endif
#ifndef TEST_SRCDIR
#error "build with -DTEST_SRCDIR='\"/abs/path/to/source\"'"
#endif

/* libFuzzer calls it when the target defines it; so does this driver. */
__attribute__((weak)) int LLVMFuzzerInitialize(int *argc, char ***argv);

static char **files;
static size_t n_files;

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void collect(const char *path, int must_exist)
{
	struct stat sb;
	DIR *d;
	struct dirent *de;

	if (stat(path, &sb) != 0) {
		if (must_exist) {
			printf("Bail out! %s: %s\n", path, strerror(errno));
			exit(1);
		}
		return;
	}
	if (!S_ISDIR(sb.st_mode)) {
		files = realloc(files, (n_files + 1) * sizeof(*files));
		files[n_files++] = strdup(path);
		return;
	}
	if ((d = opendir(path)) == NULL)
		return;
	while ((de = readdir(d)) != NULL) {
		char sub[4096];

		if (de->d_name[0] == '.')
			continue; /* ., .., README-style dot files */
		snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
		collect(sub, 0);
	}
	closedir(d);
}

static int replay(const char *path)
{
	FILE *fp = fopen(path, "rb");
	uint8_t *buf = NULL;
	size_t len = 0, cap = 0, n;

	if (fp == NULL)
		return -1;
	do {
		if (len + 65536 > cap) {
			cap = (len + 65536) * 2;
			buf = realloc(buf, cap);
		}
		n = fread(buf + len, 1, cap - len, fp);
		len += n;
	} while (n > 0);
	fclose(fp);
	/* The exact bytes, in an allocation of exactly that size: ASan sees any overread. */
	uint8_t *exact = malloc(len ? len : 1);
	memcpy(exact, buf, len);
	free(buf);
	fprintf(stderr, "replay: %s (%zu bytes)\n", path, len);
	LLVMFuzzerTestOneInput(exact, len);
	free(exact);
	return 0;
}

int main(int argc, char **argv)
{
	if (LLVMFuzzerInitialize != NULL)
		LLVMFuzzerInitialize(&argc, &argv);
	if (argc > 1) {
		for (int i = 1; i < argc; i++)
			collect(argv[i], 1);
	} else {
		collect(TEST_SRCDIR "/tests/fuzz/regressions/" FUZZ_TARGET, 0);
		collect(TEST_SRCDIR "/tests/fuzz/corpus/" FUZZ_TARGET, 1);
#ifdef FUZZ_SEEDS
		/* More seeds kept elsewhere in the tree (scripts/fuzz.sh passes the same). */
		char seeds[] = FUZZ_SEEDS, *save = NULL;
		for (char *d = strtok_r(seeds, " ", &save); d; d = strtok_r(NULL, " ", &save)) {
			char path[4096];
			snprintf(path, sizeof(path), "%s/%s", TEST_SRCDIR, d);
			collect(path, 1);
		}
#endif
	}
	qsort(files, n_files, sizeof(*files), cmp);
	if (n_files == 0) {
		printf("1..1\nnot ok 1 - no inputs to replay for %s\n", FUZZ_TARGET);
		return 1;
	}
	printf("1..%zu\n", n_files);
	fflush(stdout);
	for (size_t i = 0; i < n_files; i++) {
		const char *shown = files[i];

		if (strncmp(shown, TEST_SRCDIR "/", strlen(TEST_SRCDIR) + 1) == 0)
			shown += strlen(TEST_SRCDIR) + 1;
		if (replay(files[i]) != 0)
			printf("not ok %zu - %s: cannot read it\n", i + 1, shown);
		else
			printf("ok %zu - %s %s\n", i + 1, FUZZ_TARGET, shown);
		fflush(stdout);
		free(files[i]);
	}
	free(files);
	return 0;
}
