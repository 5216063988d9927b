/* http_proxy.h: the HTTP client's proxy settings, read from the environment once, with
 * libcurl's rules. libcurl (7.88) looks up the proxy variables on every transfer when
 * CURLOPT_PROXY and CURLOPT_NOPROXY are unset; a daemon's environment does not change, so the
 * client reads it once at creation and sets the options to what libcurl would have found. */
#ifndef SAGAD_ADAPTER_HTTP_PROXY_H
#define SAGAD_ADAPTER_HTTP_PROXY_H

/* Which proxy option a URL gets, by its scheme. */
enum http_proxy_scheme {
	HTTP_PROXY_OTHER,   /* no scheme, or another one: CURLOPT_PROXY unset, libcurl reads the
			     * environment per transfer, as before */
	HTTP_PROXY_HTTP,    /* http:// (any case): the http proxy */
	HTTP_PROXY_HTTPS,   /* https:// (any case): the https proxy */
};

/* The settings; "" means none, as for libcurl: an empty proxy is no proxy, an empty no-proxy
 * list matches nothing. Embedded in its owner: http_proxy_init(), http_proxy_close(). */
struct http_proxy {
	char *http;         /* for http:// URLs: http_proxy, else all_proxy, else ALL_PROXY */
	char *https;        /* for https:// URLs: https_proxy, else HTTPS_PROXY, else all_proxy,
			     * else ALL_PROXY */
	char *no_proxy;     /* CURLOPT_NOPROXY: no_proxy, else NO_PROXY */
};

/* Reads the environment into p (strings owned by p: http_proxy_close() frees them). */
void http_proxy_init(struct http_proxy *p);
void http_proxy_close(struct http_proxy *p);

enum http_proxy_scheme http_proxy_scheme(const char *url);
/* The CURLOPT_PROXY value for a scheme: p's, or NULL (unset) for HTTP_PROXY_OTHER. */
const char *http_proxy_for(const struct http_proxy *p, enum http_proxy_scheme s);

#endif
