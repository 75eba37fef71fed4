/* http_client.c — libcurl client with keep-alive, retries, zstd. */
#include "net/http_client.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "core/util.h"
#include "net/codec.h"

#define DEFAULT_TIMEOUT_MS 30000u
#define DEFAULT_CONNECT_MS 5000u
#define DEFAULT_RETRIES 4u
#define DEFAULT_BACKOFF_MS 100u
#define DEFAULT_BACKOFF_MAX_MS 5000u
#define MAX_URL 2048

struct tt_http_client {
  CURL *easy;
  char *base;
  tt_http_client_opts o;
  int server_zstd;
  uint64_t sent, received;
  uint64_t rng;
  /* scratch of the attempt in flight */
  char *rbuf;
  size_t rlen, rcap;
  int rtoo_big;
  char content_encoding[64];
  char curl_err[CURL_ERROR_SIZE];
};

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc = CURLE_OK;
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_ALL); }

/* xorshift64*: jitter only needs to differ between clients, not be secret. */
static uint64_t next_rand(tt_http_client *c) {
  uint64_t x = c->rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  c->rng = x;
  return x * 0x2545F4914F6CDD1DULL;
}

static void sleep_ms(uint64_t ms) {
  struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0)
    ;
}

int tt_http_client_new(const char *base_url, const tt_http_client_opts *opts,
                       tt_http_client **out) {
  *out = NULL;
  if (base_url == NULL || base_url[0] == '\0' ||
      strlen(base_url) > MAX_URL / 2)
    return TETHER_EINVAL;
  pthread_once(&curl_once, curl_init);
  if (curl_init_rc != CURLE_OK)
    return TETHER_ENOMEM;
  tt_http_client *c = calloc(1, sizeof *c);
  if (c == NULL)
    return TETHER_ENOMEM;
  if (opts)
    c->o = *opts;
  if (c->o.timeout_ms == 0)
    c->o.timeout_ms = DEFAULT_TIMEOUT_MS;
  if (c->o.connect_ms == 0)
    c->o.connect_ms = c->o.timeout_ms < DEFAULT_CONNECT_MS ? c->o.timeout_ms
                                                           : DEFAULT_CONNECT_MS;
  if (c->o.retries == 0)
    c->o.retries = DEFAULT_RETRIES;
  if (c->o.no_retry)
    c->o.retries = 0;
  if (c->o.backoff_ms == 0)
    c->o.backoff_ms = DEFAULT_BACKOFF_MS;
  if (c->o.backoff_max_ms == 0)
    c->o.backoff_max_ms = DEFAULT_BACKOFF_MAX_MS;
  c->base = strdup(base_url);
  c->easy = curl_easy_init();
  if (c->base == NULL || c->easy == NULL) {
    tt_http_client_free(c);
    return TETHER_ENOMEM;
  }
  size_t n = strlen(c->base);
  while (n > 0 && c->base[n - 1] == '/')
    c->base[--n] = '\0';
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  c->rng = ((uint64_t)ts.tv_nsec << 20) ^ (uint64_t)ts.tv_sec ^
           (uint64_t)(uintptr_t)c ^ 0x9E3779B97F4A7C15ULL;
  if (c->rng == 0)
    c->rng = 1;
  *out = c;
  return 0;
}

int tt_http_client_sibling(const tt_http_client *c, tt_http_client **out) {
  *out = NULL;
  if (c == NULL)
    return TETHER_EINVAL;
  int rc = tt_http_client_new(c->base, &c->o, out);
  if (rc == 0)
    (*out)->server_zstd = c->server_zstd;
  return rc;
}

void tt_http_client_free(tt_http_client *c) {
  if (c == NULL)
    return;
  if (c->easy)
    curl_easy_cleanup(c->easy);
  free(c->base);
  free(c->rbuf);
  free(c);
}

void tt_http_client_bytes(const tt_http_client *c, uint64_t *sent,
                          uint64_t *received) {
  if (sent)
    *sent = c->sent;
  if (received)
    *received = c->received;
}

int tt_http_client_server_zstd(const tt_http_client *c) {
  return c->server_zstd;
}

static size_t on_write(char *data, size_t size, size_t nmemb, void *ud) {
  tt_http_client *c = ud;
  size_t n = size * nmemb;
  if (n > TT_CODEC_MAX_RESPONSE - c->rlen) {
    c->rtoo_big = 1;
    return 0; /* makes curl stop with CURLE_WRITE_ERROR */
  }
  if (c->rlen + n > c->rcap) {
    size_t ncap = c->rcap ? c->rcap : 16384;
    while (ncap < c->rlen + n)
      ncap = ncap > TT_CODEC_MAX_RESPONSE / 2 ? TT_CODEC_MAX_RESPONSE
                                              : ncap * 2;
    char *nb = realloc(c->rbuf, ncap);
    if (nb == NULL)
      return 0;
    c->rbuf = nb;
    c->rcap = ncap;
  }
  memcpy(c->rbuf + c->rlen, data, n);
  c->rlen += n;
  return n;
}

/* Copies the value of header line LINE (N bytes) if its name is NAME. */
static int header_value(const char *line, size_t n, const char *name,
                        char *out, size_t outlen) {
  size_t nl = strlen(name);
  if (n <= nl || strncasecmp(line, name, nl) != 0 || line[nl] != ':')
    return 0;
  const char *v = line + nl + 1;
  const char *end = line + n;
  while (v < end && (*v == ' ' || *v == '\t'))
    v++;
  while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
    end--;
  size_t len = (size_t)(end - v);
  if (len >= outlen)
    len = outlen - 1;
  memcpy(out, v, len);
  out[len] = '\0';
  return 1;
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud) {
  tt_http_client *c = ud;
  size_t n = size * nmemb;
  char val[256];
  if (header_value(data, n, "Content-Encoding", c->content_encoding,
                   sizeof c->content_encoding))
    return n;
  if (header_value(data, n, "Accept-Encoding", val, sizeof val) &&
      tt_codec_accepts_zstd(val))
    c->server_zstd = 1;
  return n;
}

static int retryable_curl(CURLcode res) {
  switch (res) {
  case CURLE_COULDNT_RESOLVE_HOST:
  case CURLE_COULDNT_RESOLVE_PROXY:
  case CURLE_COULDNT_CONNECT:
  case CURLE_OPERATION_TIMEDOUT:
  case CURLE_SEND_ERROR:
  case CURLE_RECV_ERROR:
  case CURLE_GOT_NOTHING:
  case CURLE_PARTIAL_FILE:
  case CURLE_HTTP2:
  case CURLE_HTTP2_STREAM:
    return 1;
  default:
    return 0;
  }
}

static int retryable_status(long st) {
  return st == 502 || st == 503 || st == 504;
}

static void add_bytes(tt_http_client *c) {
  long req_hdr = 0, resp_hdr = 0;
  curl_off_t up = 0, down = 0;
  curl_easy_getinfo(c->easy, CURLINFO_REQUEST_SIZE, &req_hdr);
  curl_easy_getinfo(c->easy, CURLINFO_HEADER_SIZE, &resp_hdr);
  curl_easy_getinfo(c->easy, CURLINFO_SIZE_UPLOAD_T, &up);
  curl_easy_getinfo(c->easy, CURLINFO_SIZE_DOWNLOAD_T, &down);
  c->sent += (uint64_t)(req_hdr > 0 ? req_hdr : 0) + (uint64_t)(up > 0 ? up : 0);
  c->received +=
      (uint64_t)(resp_hdr > 0 ? resp_hdr : 0) + (uint64_t)(down > 0 ? down : 0);
}

static int do_request(tt_http_client *c, const char *path, const char *body,
                      size_t blen, int *status, json_t **resp, char *errbuf,
                      size_t errlen) {
  int rc = 0;
  char url[MAX_URL];
  char *zbody = NULL;
  size_t zlen = 0;
  struct curl_slist *hdrs = NULL, *h2;
  *status = 0;
  *resp = NULL;

  int n = snprintf(url, sizeof url, "%s%s", c->base, path);
  if (n < 0 || (size_t)n >= sizeof url) {
    tt_errf(errbuf, errlen, "URL too long: %s%s", c->base, path);
    return TETHER_EINVAL;
  }
  int compressed = 0;
  if (body && c->server_zstd && blen > TT_CODEC_COMPRESS_MIN &&
      tt_codec_compress(body, blen, &zbody, &zlen) == 0)
    compressed = 1;
  /* "Expect:" stops curl's 100-continue round trip on large bodies. */
  const char *hv[] = {"Content-Type: application/json",
                      "Accept-Encoding: zstd", "Expect:",
                      compressed ? "Content-Encoding: zstd" : NULL};
  for (size_t i = 0; i < sizeof hv / sizeof hv[0]; i++) {
    if (hv[i] == NULL)
      continue;
    h2 = curl_slist_append(hdrs, hv[i]);
    if (h2 == NULL) {
      rc = TETHER_ENOMEM;
      goto out;
    }
    hdrs = h2;
  }

  CURL *e = c->easy;
  long code = 0;
  uint32_t attempts = c->o.retries + 1;
  for (uint32_t attempt = 0; attempt < attempts; attempt++) {
    if (attempt > 0) {
      uint64_t d = c->o.backoff_ms;
      for (uint32_t i = 1; i < attempt && d < c->o.backoff_max_ms; i++)
        d *= 2;
      if (d > c->o.backoff_max_ms)
        d = c->o.backoff_max_ms;
      /* Full jitter over the upper half: many replicas that lost the server
       * at once do not come back in lockstep. */
      d = d / 2 + next_rand(c) % (d / 2 + 1);
      sleep_ms(d);
    }
    c->rlen = 0;
    c->rtoo_big = 0;
    c->content_encoding[0] = '\0';
    c->curl_err[0] = '\0';
    curl_easy_reset(e);
    curl_easy_setopt(e, CURLOPT_URL, url);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, c->curl_err);
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
    curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
    curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)c->o.timeout_ms);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)c->o.connect_ms);
    /* We decode zstd ourselves, with a bound. */
    curl_easy_setopt(e, CURLOPT_HTTP_CONTENT_DECODING, 0L);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
    if (body) {
      curl_easy_setopt(e, CURLOPT_POST, 1L);
      curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE,
                       (curl_off_t)(compressed ? zlen : blen));
      curl_easy_setopt(e, CURLOPT_POSTFIELDS, compressed ? zbody : body);
    } else {
      curl_easy_setopt(e, CURLOPT_HTTPGET, 1L);
    }
    CURLcode res = curl_easy_perform(e);
    add_bytes(c);
    if (res != CURLE_OK) {
      if (c->rtoo_big) {
        tt_errf(errbuf, errlen, "answer from %s over %zu bytes", url,
                (size_t)TT_CODEC_MAX_RESPONSE);
        rc = TETHER_ETOOBIG;
        goto out;
      }
      if (res == CURLE_URL_MALFORMAT || res == CURLE_UNSUPPORTED_PROTOCOL) {
        tt_errf(errbuf, errlen, "bad server URL %s: %s", url,
                c->curl_err[0] ? c->curl_err : curl_easy_strerror(res));
        rc = TETHER_EINVAL;
        goto out;
      }
      tt_errf(errbuf, errlen, "cannot reach %s: %s", url,
              c->curl_err[0] ? c->curl_err : curl_easy_strerror(res));
      rc = TETHER_EUNREACHABLE;
      if (retryable_curl(res))
        continue;
      goto out;
    }
    curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &code);
    if (retryable_status(code) && attempt + 1 < attempts) {
      rc = TETHER_EUNREACHABLE;
      continue;
    }
    rc = 0;
    break;
  }
  if (rc != 0)
    goto out;

  char *plain = NULL;
  size_t plen = 0;
  int drc = tt_codec_decode(tt_codec_encoding(c->content_encoding), c->rbuf,
                            c->rlen, TT_CODEC_MAX_RESPONSE, &plain, &plen);
  if (drc != 0) {
    tt_errf(errbuf, errlen, "%s answered %ld with an undecodable body (%s)",
            url, code,
            drc == TETHER_EINVAL ? "unknown Content-Encoding"
                                 : tether_strerror(drc));
    rc = drc == TETHER_EINVAL ? TETHER_EPROTO : drc;
    goto out;
  }
  char perr[200];
  drc = tt_codec_parse(plain, plen, resp, perr, sizeof perr);
  free(plain);
  if (drc != 0) {
    if (retryable_status(code)) {
      tt_errf(errbuf, errlen, "cannot reach %s: it answered %ld", url, code);
      rc = TETHER_EUNREACHABLE;
    } else {
      tt_errf(errbuf, errlen, "%s answered %ld with a body that is not "
              "tether JSON: %s", url, code, perr);
      rc = TETHER_EPROTO;
    }
    goto out;
  }
  *status = (int)code;
out:
  curl_slist_free_all(hdrs);
  free(zbody);
  /* Do not keep a large answer buffer alive between requests. */
  if (c->rcap > ((size_t)1 << 20)) {
    free(c->rbuf);
    c->rbuf = NULL;
    c->rcap = 0;
  }
  c->rlen = 0;
  return rc;
}

int tt_http_post(tt_http_client *c, const char *path, const json_t *body,
                 int *status, json_t **resp, char *errbuf, size_t errlen) {
  *status = 0;
  *resp = NULL;
  size_t len = 0;
  char *text = tt_codec_dump(body, &len);
  if (text == NULL)
    return TETHER_ENOMEM;
  int rc = do_request(c, path, text, len, status, resp, errbuf, errlen);
  free(text);
  return rc;
}

int tt_http_post_text(tt_http_client *c, const char *path, const char *text,
                      size_t len, int *status, json_t **resp, char *errbuf,
                      size_t errlen) {
  *status = 0;
  *resp = NULL;
  if (text == NULL)
    return TETHER_EINVAL;
  return do_request(c, path, text, len, status, resp, errbuf, errlen);
}

int tt_http_get(tt_http_client *c, const char *path, int *status,
                json_t **resp, char *errbuf, size_t errlen) {
  return do_request(c, path, NULL, 0, status, resp, errbuf, errlen);
}
