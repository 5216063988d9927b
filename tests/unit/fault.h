/* fault.h: the unit tests' handle on tests/fault/faultvfs.so, the SQLite VFS shim that makes
 * the store's writes fail on demand (tests/fault/faultvfs.c lists the faults). Header-only,
 * included once by a test program, after cmocka.h. */
#ifndef SAGAD_TEST_FAULT_H
#define SAGAD_TEST_FAULT_H

#include <dlfcn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static bool faultvfs;           /* the shim is loaded */
static char fault_ctl[64];      /* its control file */

/* Loads the shim (FAULTVFS_SO, which make check sets, or the build tree's) with the control
 * file /tmp/<name>.<pid>.fault. Call it before the first store_open(): the store's VFS wraps
 * the default VFS it finds then. Without a fault in the control file the shim only passes
 * the calls on. Whether it loaded is in faultvfs (a test that needs it asserts it). */
static void fault_load(const char *name)
{
	const char *so = getenv("FAULTVFS_SO");

	snprintf(fault_ctl, sizeof(fault_ctl), "/tmp/%s.%d.fault", name, (int)getpid());
	setenv("FAULTVFS_CONTROL", fault_ctl, 1);
	faultvfs = dlopen(so != NULL ? so : TEST_SRCDIR "/tests/fault/faultvfs.so",
			  RTLD_NOW) != NULL;
	if (!faultvfs)
		fprintf(stderr, "# cannot load faultvfs.so (make tests/fault/faultvfs.so): %s\n",
			dlerror());
}

/* fault_set("full"): every write of the store fails with SQLITE_FULL from now on ("ioerr":
 * writes and syncs fail with I/O errors; faultvfs.c has the others); NULL: none. */
static void fault_set(const char *fault)
{
	FILE *f;

	if (fault == NULL) {
		unlink(fault_ctl);
		return;
	}
	f = fopen(fault_ctl, "w");
	assert_non_null(f);
	fputs(fault, f);
	assert_int_equal(fclose(f), 0);
}

#endif
