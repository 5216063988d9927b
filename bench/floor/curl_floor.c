/* curl_floor.c: what Debian 12's libcurl costs per participant call on its own, without sagad.
 *
 * Keeps C transfers in flight against one URL with one curl multi handle, driven the cheapest
 * way libcurl offers (curl_multi_perform() and curl_multi_poll(), no event loop, no other
 * thread), each transfer a POST shaped like sagad's participant calls (the same options, the
 * same six header lines, a 60-byte JSON body) on a kept-alive connection, and reports the
 * process's CPU time per call (getrusage: user and system). Easy handles are reused, as sagad
 * reuses them. bench/floor.sh runs it against the bench's nginx participant.
 *
 *   curl_floor URL CONCURRENCY CALLS [bare]
 *
 * "bare" sends no custom header lines (what the headers themselves cost). Exit 1 when a call
 * fails or answers other than 2xx: the figure is only good for calls that did what sagad's do.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <curl/curl.h>

struct slot {
	CURL *easy;
	struct curl_slist nodes[6];
	char lines[6][128];
};

static size_t on_write(char *p, size_t size, size_t n, void *arg)
{
	(void)p;
	(void)arg;
	return size * n;
}

static const char body[] = "{\"studentId\":\"s-1\",\"classId\":\"c-7\",\"amount\":120,\"x\":1}";

/* The header lines sagad's engine.c dispatch_call() writes for a step. */
static void set_headers(struct slot *s, long n, int bare)
{
	static const char *const fmt[6] = {
		"Content-Type: application/json",
		"Idempotency-Key: 3f1c2a9e-6b1d-4c57-9a51-0d8e5a7b%04ld:pay:action",
		"traceparent: 00-3f1c2a9e6b1d4c579a510d8e5a7b%04ld-6b1d4c579a510d8e-01",
		"X-Saga-Id: 3f1c2a9e-6b1d-4c57-9a51-0d8e5a7b%04ld",
		"X-Saga-Step: pay",
		"X-Saga-Attempt: 1",
	};

	if (bare) {
		curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, NULL);
		return;
	}
	for (int i = 0; i < 6; i++) {
		snprintf(s->lines[i], sizeof(s->lines[i]), fmt[i], n % 10000);
		s->nodes[i].data = s->lines[i];
		s->nodes[i].next = i < 5 ? &s->nodes[i + 1] : NULL;
	}
	curl_easy_setopt(s->easy, CURLOPT_HTTPHEADER, s->nodes);
}

/* The process's CPU time so far, in seconds: user + system, and system alone. */
static void cpu_times(double *total, double *sys)
{
	struct rusage ru;

	getrusage(RUSAGE_SELF, &ru);
	*sys = ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	*total = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + *sys;
}

int main(int argc, char **argv)
{
	long conc, calls, started = 0, done = 0, failed = 0;
	int bare, running = 0;
	struct slot *slots;
	CURLM *multi;
	double c0 = 0, s0 = 0;
	struct timespec w0 = { 0 }, w1;

	if (argc < 4) {
		fprintf(stderr, "usage: curl_floor URL CONCURRENCY CALLS [bare]\n");
		return 2;
	}
	conc = atol(argv[2]);
	calls = atol(argv[3]);
	bare = argc > 4 && !strcmp(argv[4], "bare");
	if (conc < 1 || calls < conc) {
		fprintf(stderr, "curl_floor: CONCURRENCY >= 1 and CALLS >= CONCURRENCY\n");
		return 2;
	}
	curl_global_init(CURL_GLOBAL_DEFAULT);
	multi = curl_multi_init();
	slots = calloc((size_t)conc, sizeof(*slots));
	for (long i = 0; i < conc; i++) {
		CURL *e = curl_easy_init();

		slots[i].easy = e;
		curl_easy_setopt(e, CURLOPT_URL, argv[1]);
		curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
		curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, 0L);
		curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
		curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
		curl_easy_setopt(e, CURLOPT_USERAGENT, "sagad/0.1.0");
		curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
		curl_easy_setopt(e, CURLOPT_PRIVATE, &slots[i]);
		curl_easy_setopt(e, CURLOPT_NOPROXY, "");
		curl_easy_setopt(e, CURLOPT_PROXY, "");
		curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, 10000L);
		curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)(sizeof(body) - 1));
		curl_easy_setopt(e, CURLOPT_POSTFIELDS, body);
		set_headers(&slots[i], started, bare);
		curl_multi_add_handle(multi, e);
		started++;
	}
	/* The first CONCURRENCY calls open the connections; the clock starts after them. */
	long warm = conc;
	do {
		CURLMsg *m;
		int left;

		curl_multi_perform(multi, &running);
		while ((m = curl_multi_info_read(multi, &left)) != NULL) {
			CURL *e = m->easy_handle;
			struct slot *s;
			long code = 0;

			if (m->msg != CURLMSG_DONE)
				continue;
			curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
			if (m->data.result != CURLE_OK || code < 200 || code > 299)
				failed++;
			done++;
			if (done == warm) {
				cpu_times(&c0, &s0);
				clock_gettime(CLOCK_MONOTONIC, &w0);
			}
			curl_multi_remove_handle(multi, e);
			if (started < calls) {
				curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&s);
				set_headers(s, started, bare);
				curl_multi_add_handle(multi, e);
				started++;
				running++;
			}
		}
		if (running > 0)
			curl_multi_poll(multi, NULL, 0, 1000, NULL);
	} while (running > 0 || done < calls);
	clock_gettime(CLOCK_MONOTONIC, &w1);
	{
		double cpu, sys, wall = (w1.tv_sec - w0.tv_sec) + (w1.tv_nsec - w0.tv_nsec) / 1e9;
		long n = done - warm;

		cpu_times(&cpu, &sys);
		cpu -= c0;
		sys -= s0;

		printf("libcurl %s, %s headers, %ld in flight: %ld calls in %.2f s (%.0f calls/s), "
		       "CPU %.1f us per call (user %.1f, system %.1f), %ld failed\n",
		       curl_version_info(CURLVERSION_NOW)->version, bare ? "no custom" : "sagad's 6",
		       conc, n, wall, n / wall, cpu * 1e6 / n, (cpu - sys) * 1e6 / n, sys * 1e6 / n,
		       failed);
	}
	for (long i = 0; i < conc; i++)
		curl_easy_cleanup(slots[i].easy);
	free(slots);
	curl_multi_cleanup(multi);
	curl_global_cleanup();
	return failed ? 1 : 0;
}
