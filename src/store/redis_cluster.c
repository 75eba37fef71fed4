/* redis_cluster.c — where a partition lives in a Redis Cluster: its hash
 * slot (CRC16 of the hash tag, per the Redis Cluster specification) and
 * the node serving that slot (the slot map, from CLUSTER SLOTS at open,
 * after every MOVED and when a node cannot be reached).
 *
 * Nodes are never freed before the store closes, so a node pointer read
 * under the mutex stays valid after it; the slot map itself is only read
 * and written under the mutex. On a single server (redis://) there is one
 * node and the map sends every slot to it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/redis_int.h"

/* CRC16-CCITT, polynomial 0x1021, initial value 0, no reflection: the
 * "XMODEM" variant the Redis Cluster specification names (its check value
 * for "123456789" is 0x31C3). Bitwise rather than a table: one hash per
 * transaction. */
uint16_t rd_crc16(const void *buf, size_t len) {
  const unsigned char *p = buf;
  uint16_t crc = 0;
  for (size_t i = 0; i < len; i++) {
    crc ^= (uint16_t)(p[i] << 8);
    for (int b = 0; b < 8; b++)
      crc = (crc & 0x8000) ? (uint16_t)((crc << 1) ^ 0x1021)
                           : (uint16_t)(crc << 1);
  }
  return crc;
}

/* Keys are "tt{p<p>}:...": the hash tag, between the first '{' and the
 * next '}', is "p<p>", and only it is hashed. */
unsigned rd_partition_slot(unsigned partition) {
  char tag[16];
  int n = snprintf(tag, sizeof(tag), "p%u", partition);
  return rd_crc16(tag, (size_t)n) & (RD_SLOTS - 1);
}

rd_node *rd_node_intern(rd_store *s, const char *host, int port) {
  rd_node *n;
  char name[sizeof(n->name)];
  int v6 = strchr(host, ':') != NULL;
  if (snprintf(name, sizeof(name), "%s%s%s:%d", v6 ? "[" : "", host,
               v6 ? "]" : "", port) >= (int)sizeof(name))
    return NULL;
  for (int i = 0; i < s->nnodes; i++)
    if (strcmp(s->nodes[i]->name, name) == 0)
      return s->nodes[i];
  if (s->nnodes >= RD_MAX_NODES)
    return NULL;
  n = calloc(1, sizeof(*n));
  if (!n || !(n->host = strdup(host))) {
    free(n);
    return NULL;
  }
  n->port = port;
  memcpy(n->name, name, sizeof(name));
  s->nodes[s->nnodes++] = n;
  return n;
}

static int rd_node_index(rd_store *s, const rd_node *n) {
  for (int i = 0; i < s->nnodes; i++)
    if (s->nodes[i] == n)
      return i;
  return -1;
}

static rd_node *rd_slot_lookup(rd_store *s, unsigned slot) {
  rd_node *n = NULL;
  pthread_mutex_lock(&s->mu);
  if (!s->cfg.cluster)
    n = s->nodes[0];
  else if (s->slot[slot] >= 0)
    n = s->nodes[s->slot[slot]];
  pthread_mutex_unlock(&s->mu);
  return n;
}

int rd_slot_node(rd_store *s, unsigned slot, rd_node **out) {
  rd_node *n = rd_slot_lookup(s, slot);
  if (!n && s->cfg.cluster) {
    (void)rd_refresh(s, NULL);
    n = rd_slot_lookup(s, slot);
    if (!n)
      rd_seterr(s, "redis cluster %s: no node serves hash slot %u (cluster "
                   "down, or a slot left unassigned)",
                s->url, slot);
  }
  *out = n;
  return n ? 0 : TETHER_EUNAVAILABLE;
}

/* Fills MAP from a CLUSTER SLOTS reply R got from node FROM. 0 or -1. */
static int rd_parse_slots(rd_store *s, const redisReply *r, const rd_node *from,
                          int16_t *map) {
  if (r->type != REDIS_REPLY_ARRAY)
    return -1;
  for (size_t i = 0; i < RD_SLOTS; i++)
    map[i] = -1;
  for (size_t i = 0; i < r->elements; i++) {
    const redisReply *e = r->element[i], *m;
    const char *host;
    char hostbuf[256];
    rd_node *n;
    int idx;
    long long a, b;
    if (e->type != REDIS_REPLY_ARRAY || e->elements < 3 ||
        e->element[0]->type != REDIS_REPLY_INTEGER ||
        e->element[1]->type != REDIS_REPLY_INTEGER ||
        e->element[2]->type != REDIS_REPLY_ARRAY)
      return -1;
    a = e->element[0]->integer;
    b = e->element[1]->integer;
    m = e->element[2];
    if (a < 0 || b < a || b >= RD_SLOTS || m->elements < 2 ||
        m->element[0]->type != REDIS_REPLY_STRING ||
        m->element[1]->type != REDIS_REPLY_INTEGER ||
        m->element[1]->integer <= 0 || m->element[1]->integer > 65535 ||
        m->element[0]->len >= sizeof(hostbuf))
      return -1;
    /* An empty or "?" endpoint means "the address you reached me at". */
    if (m->element[0]->len == 0 ||
        (m->element[0]->len == 1 && m->element[0]->str[0] == '?')) {
      host = from->host;
    } else {
      memcpy(hostbuf, m->element[0]->str, m->element[0]->len);
      hostbuf[m->element[0]->len] = '\0';
      host = hostbuf;
    }
    pthread_mutex_lock(&s->mu);
    n = rd_node_intern(s, host, (int)m->element[1]->integer);
    idx = n ? rd_node_index(s, n) : -1;
    pthread_mutex_unlock(&s->mu);
    if (idx < 0)
      return -1;
    for (long long k = a; k <= b; k++)
      map[k] = (int16_t)idx;
  }
  return 0;
}

int rd_refresh(rd_store *s, rd_node *hint) {
  rd_node *cand[RD_MAX_NODES + 1];
  int ncand = 0, rc = TETHER_EUNAVAILABLE;
  int16_t *map;
  rd_req q;
  if (!s->cfg.cluster)
    return 0;
  map = malloc(RD_SLOTS * sizeof(*map));
  if (!map)
    return TETHER_ENOMEM;
  rd_req_init(&q);
  rd_req_cmd(&q, "CLUSTER");
  rd_req_ref(&q, "SLOTS", 5);
  if (hint)
    cand[ncand++] = hint;
  pthread_mutex_lock(&s->mu);
  for (int i = 0; i < s->nnodes; i++)
    if (s->nodes[i] != hint)
      cand[ncand++] = s->nodes[i];
  pthread_mutex_unlock(&s->mu);
  for (int i = 0; i < ncand && rc; i++) {
    rd_conn *k = NULL;
    redisReply *r = NULL;
    int src = rd_conn_get(s, cand[i], &k);
    if (src)
      continue;
    src = rd_conn_send(s, k, &q, 0, &r);
    rd_conn_put(s, k, src != 0);
    if (src)
      continue;
    if (r->type == REDIS_REPLY_ERROR) {
      rd_seterr(s, "redis %s: CLUSTER SLOTS: %.*s", cand[i]->name,
                (int)(r->len > 160 ? 160 : r->len), r->str);
    } else if (rd_parse_slots(s, r, cand[i], map) == 0) {
      pthread_mutex_lock(&s->mu);
      memcpy(s->slot, map, RD_SLOTS * sizeof(*map));
      pthread_mutex_unlock(&s->mu);
      rc = 0;
    } else {
      rd_seterr(s, "redis %s: CLUSTER SLOTS: unexpected reply",
                cand[i]->name);
    }
    freeReplyObject(r);
  }
  rd_req_free(&q);
  free(map);
  return rc;
}

void rd_moved(rd_store *s, unsigned slot, const char *host, int port) {
  rd_node *n;
  pthread_mutex_lock(&s->mu);
  n = rd_node_intern(s, host, port);
  pthread_mutex_unlock(&s->mu);
  /* One slot moved usually means a resharding: learn the rest now rather
   * than one MOVED at a time, asking the new owner first. */
  (void)rd_refresh(s, n);
  /* The redirect is the freshest word on SLOT: a node that has not heard
   * of the move yet may have answered the refresh. */
  pthread_mutex_lock(&s->mu);
  if (n && slot < RD_SLOTS)
    s->slot[slot] = (int16_t)rd_node_index(s, n);
  pthread_mutex_unlock(&s->mu);
}
