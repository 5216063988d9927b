/* http_proxy.c: the HTTP client's proxy settings from the environment (see http_proxy.h).
 *
 * libcurl's rules (url.c, detect_proxy() and create_conn_helper_init_proxy()):
 *   - no proxy for hosts in no_proxy, else NO_PROXY;
 *   - http:// URLs: http_proxy (never HTTP_PROXY, which a CGI request's "Proxy:" header can
 *     set), else all_proxy, else ALL_PROXY;
 *   - https:// URLs: https_proxy, else HTTPS_PROXY, else all_proxy, else ALL_PROXY.
 * A variable set to the empty string counts as unset (curl_getenv()). A URL of any other form
 * (no scheme, or another one) keeps CURLOPT_PROXY unset, and libcurl decides per transfer, as
 * before. */
#include <stdlib.h>
#include <strings.h>
#include "http_proxy.h"
#include "util.h"

static char *env_get(const char *name)
{
	const char *v = getenv(name);

	return v != NULL && v[0] != '\0' ? xstrdup(v) : NULL;
}

static char *env_first(const char *const *names)
{
	char *v = NULL;

	for (; *names != NULL && v == NULL; names++)
		v = env_get(*names);
	return v != NULL ? v : xstrdup("");
}

void http_proxy_init(struct http_proxy *p)
{
	static const char *const http[] = { "http_proxy", "all_proxy", "ALL_PROXY", NULL };
	static const char *const https[] = {
		"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY", NULL,
	};
	static const char *const no[] = { "no_proxy", "NO_PROXY", NULL };

	p->http = env_first(http);
	p->https = env_first(https);
	p->no_proxy = env_first(no);
}

void http_proxy_close(struct http_proxy *p)
{
	free(p->http);
	free(p->https);
	free(p->no_proxy);
	p->http = p->https = p->no_proxy = NULL;
}

enum http_proxy_scheme http_proxy_scheme(const char *url)
{
	if (strncasecmp(url, "http://", 7) == 0)
		return HTTP_PROXY_HTTP;
	if (strncasecmp(url, "https://", 8) == 0)
		return HTTP_PROXY_HTTPS;
	return HTTP_PROXY_OTHER;
}

const char *http_proxy_for(const struct http_proxy *p, enum http_proxy_scheme s)
{
	return s == HTTP_PROXY_HTTP ? p->http : s == HTTP_PROXY_HTTPS ? p->https : NULL;
}
