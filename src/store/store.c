/* store.c — backend-independent wrappers over tt_store_ops. Each backend's
 * transaction starts with struct tt_txn, so T alone finds the ops. */
#include "store/store.h"

void tt_store_close(tt_store *s) {
  if (s)
    s->ops->close(s);
}

int tt_get(tt_txn *t, tt_table tab, tt_bytes key, tt_bytes *val) {
  if (!t || !val || (unsigned)tab >= TT_TABLE__COUNT)
    return TETHER_EINVAL;
  return t->store->ops->get(t, tab, key, val);
}

int tt_put(tt_txn *t, tt_table tab, tt_bytes key, tt_bytes val) {
  if (!t || (unsigned)tab >= TT_TABLE__COUNT)
    return TETHER_EINVAL;
  return t->store->ops->put(t, tab, key, val);
}

int tt_del(tt_txn *t, tt_table tab, tt_bytes key) {
  if (!t || (unsigned)tab >= TT_TABLE__COUNT)
    return TETHER_EINVAL;
  return t->store->ops->del(t, tab, key);
}

int tt_scan(tt_txn *t, tt_table tab, tt_bytes from, tt_scan_cb cb,
            void *ctx) {
  if (!t || !cb || (unsigned)tab >= TT_TABLE__COUNT)
    return TETHER_EINVAL;
  return t->store->ops->scan(t, tab, from, cb, ctx);
}

int tt_commit(tt_txn *t) {
  if (!t)
    return TETHER_EINVAL;
  return t->store->ops->commit(t);
}

void tt_abort(tt_txn *t) {
  if (t)
    t->store->ops->abort(t);
}

int tt_prefetch(tt_txn *t, tt_table tab, const tt_bytes *keys, size_t n) {
  if (!t->store->ops->prefetch || n == 0)
    return 0;
  return t->store->ops->prefetch(t, tab, keys, n);
}

void tt_store_last_error(tt_store *s, char *buf, size_t len) {
  if (!buf || !len)
    return;
  buf[0] = '\0';
  if (s && s->ops->last_error)
    s->ops->last_error(s, buf, len);
}

int tt_get_tmp(tt_txn *t, tt_table tab, tt_bytes key, tt_bytes *val) {
  if (t->store->ops->get_tmp)
    return t->store->ops->get_tmp(t, tab, key, val);
  return t->store->ops->get(t, tab, key, val);
}
