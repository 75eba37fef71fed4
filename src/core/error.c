/* error.c — the error table of tether.h turned into strings.
 * tether_err_name gives the code without its prefix, as libuv does:
 * "EINVAL" for TETHER_EINVAL, "OK" for TETHER_OK. */
#include <stdlib.h>

#include "tether.h"

const char *tether_version(void) { return TETHER_VERSION_STRING; }

const char *tether_strerror(int err) {
  switch (err) {
#define TT_ERR_MSG_(name, num, msg)                                            \
  case (num):                                                                  \
    return (msg);
    TETHER_ERRNO_MAP(TT_ERR_MSG_)
#undef TT_ERR_MSG_
  default:
    return "unknown error";
  }
}

const char *tether_err_name(int err) {
  switch (err) {
#define TT_ERR_NAME_(name, num, msg)                                           \
  case (num):                                                                  \
    return #name;
    TETHER_ERRNO_MAP(TT_ERR_NAME_)
#undef TT_ERR_NAME_
  default:
    return "unknown error";
  }
}

void tether_free(void *p) { free(p); }
