/* server_api.c — embedding the reconciliation server
 * (include/tether_server.h): store (LMDB, or Redis / Redis Cluster) +
 * policies + reconciler + HTTP. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/policy.h"
#include "core/util.h"
#include "net/http_server.h"
#include "server/server.h"
#include "store/store.h"
#include "tether_server.h"

#define SERVER_MAP_SIZE ((uint64_t)64 << 30)
/* A policy file is a few KiB; refuse anything that is clearly not one. */
#define MAX_CONFIG_BYTES ((size_t)4 << 20)

struct tether_server {
  tt_store *st;
  tt_policy_table *policies;
  tt_server *srv;
  tt_http_server *http;
};

/* Reads the whole config file. *out malloc'd (free()), NUL-terminated. */
static int read_config(const char *path, char **out, size_t *len, char *errbuf,
                       size_t errlen) {
  int rc = 0;
  char *buf = NULL;
  *out = NULL;
  *len = 0;
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    tt_errf(errbuf, errlen, "config %s: cannot open: %s", path,
            strerror(errno));
    return TETHER_ECONFIG;
  }
  size_t cap = 4096, n = 0;
  buf = malloc(cap);
  if (buf == NULL) {
    rc = TETHER_ENOMEM;
    goto out;
  }
  for (;;) {
    if (n + 1 >= cap) {
      if (cap >= MAX_CONFIG_BYTES) {
        tt_errf(errbuf, errlen, "config %s: larger than %zu bytes", path,
                MAX_CONFIG_BYTES);
        rc = TETHER_ECONFIG;
        goto out;
      }
      char *nb = realloc(buf, cap * 2);
      if (nb == NULL) {
        rc = TETHER_ENOMEM;
        goto out;
      }
      buf = nb;
      cap *= 2;
    }
    size_t got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
    if (got == 0) {
      if (ferror(f)) {
        tt_errf(errbuf, errlen, "config %s: read error: %s", path,
                strerror(errno));
        rc = TETHER_ECONFIG;
        goto out;
      }
      break;
    }
  }
  buf[n] = '\0';
  *out = buf;
  *len = n;
  buf = NULL;
out:
  free(buf);
  fclose(f);
  return rc;
}

int tether_server_start(tether_server **out, const tether_server_opts *opts,
                        char *errbuf, size_t errlen) {
  int rc = 0;
  char eb[512];
  char *cfg = NULL;
  size_t cfglen = 0;
  tether_server_opts o;
  memset(&o, 0, sizeof o);
  if (opts)
    o = *opts;
  if (errbuf && errlen)
    errbuf[0] = '\0';
  if (out == NULL)
    return TETHER_EINVAL;
  *out = NULL;
  const char *dir = o.data_dir && o.data_dir[0] ? o.data_dir : "./tether-data";

  tether_server *s = calloc(1, sizeof *s);
  if (s == NULL)
    return TETHER_ENOMEM;

  /* The config first: a typo there should not cost a store open. */
  if (o.config_path && o.config_path[0]) {
    rc = read_config(o.config_path, &cfg, &cfglen, errbuf, errlen);
    if (rc != 0)
      goto fail;
  }
  eb[0] = '\0';
  rc = tt_policy_parse(cfg, cfglen, &s->policies, eb, sizeof eb);
  if (rc != 0) {
    tt_errf(errbuf, errlen, "config %s: %s",
            o.config_path ? o.config_path : "(none)",
            eb[0] ? eb : tether_strerror(rc));
    goto fail;
  }

  const char *be = o.backend && o.backend[0] ? o.backend : "lmdb";
  /* Named in every message about the store: the directory or the URL. */
  char where[300];
  if (strcmp(be, "lmdb") == 0) {
    snprintf(where, sizeof where, "data directory %s", dir);
    /* LMDB wants the directory to exist. */
    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
      tt_errf(errbuf, errlen, "%s: cannot create: %s", where,
              strerror(errno));
      rc = TETHER_EIO;
      goto fail;
    }
    tt_store_opts so = {.map_size = o.map_size ? o.map_size : SERVER_MAP_SIZE};
    eb[0] = '\0';
    rc = tt_store_open_lmdb(dir, &so, &s->st, eb, sizeof eb);
  } else if (strncmp(be, "redis://", 8) == 0 ||
             strncmp(be, "redis-cluster://", 16) == 0) {
    /* The URL may carry a password: name the backend by its kind only;
     * the store's own messages mask it. */
    snprintf(where, sizeof where, "backend %s",
             be[5] == '-' ? "redis-cluster" : "redis");
    eb[0] = '\0';
    rc = tt_store_open_redis(be, NULL, &s->st, eb, sizeof eb);
    if (rc != 0) { /* eb already names the URL */
      tt_errf(errbuf, errlen, "%s", eb[0] ? eb : tether_strerror(rc));
      goto fail;
    }
  } else {
    /* Only the scheme: the rest may hold a password. */
    const char *sep = strstr(be, "://");
    int n = sep ? (int)(sep - be) + 3 : (int)strlen(be);
    tt_errf(errbuf, errlen,
            "backend \"%.*s%s\": unknown; expected lmdb, "
            "redis://HOST:PORT[/DB] or redis-cluster://HOST:PORT[,HOST:PORT...]",
            n > 40 ? 40 : n, be, sep && sep[3] ? "..." : "");
    rc = TETHER_ECONFIG;
    goto fail;
  }
  if (rc != 0) {
    tt_errf(errbuf, errlen, "%s: %s", where, eb[0] ? eb : tether_strerror(rc));
    goto fail;
  }

  tt_server_opts sopts = {.max_skew_ms = o.max_skew_ms,
                          .partitions = o.partitions};
  eb[0] = '\0';
  rc = tt_server_open(s->st, s->policies, &sopts, &s->srv, eb, sizeof eb);
  if (rc != 0) {
    char why[256];
    tt_store_last_error(s->st, why, sizeof why);
    tt_errf(errbuf, errlen, "%s: %s%s%s", where,
            eb[0] ? eb : tether_strerror(rc), why[0] ? ": " : "", why);
    goto fail;
  }

  tt_http_server_opts ho = {
      .host = o.host,
      .port = o.port,
      .max_body = o.max_body,
      .log = o.log,
      .log_ctx = o.log_ctx,
  };
  /* The documented default port is 8420; callers ask for "any" with 0 only
   * through an explicit opts struct, so a NULL opts means 8420. */
  if (opts == NULL)
    ho.port = 8420;
  rc = tt_http_server_start(s->srv, &ho, &s->http, errbuf, errlen);
  if (rc != 0)
    goto fail;
  free(cfg);
  *out = s;
  return 0;

fail:
  free(cfg);
  if (s->srv)
    tt_server_close(s->srv);
  tt_store_close(s->st);
  if (s->policies)
    tt_policy_free(s->policies);
  free(s);
  return rc;
}

uint16_t tether_server_port(const tether_server *s) {
  return s ? tt_http_server_port(s->http) : 0;
}

void tether_server_stop(tether_server *s) {
  if (s == NULL)
    return;
  /* HTTP first: it answers long-polls, lets queued pushes commit and joins
   * its threads, so nothing touches the reconciler after this. */
  tt_http_server_stop(s->http);
  tt_server_close(s->srv);
  tt_store_close(s->st);
  tt_policy_free(s->policies);
  free(s);
}
