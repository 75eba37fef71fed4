/* util.h — small pure helpers shared by every layer: hex, canonical JSON,
 * limits. No I/O, no clock, no randomness. */
#ifndef TT_CORE_UTIL_H
#define TT_CORE_UTIL_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "tether.h"

#define TT_ID_LEN 16   /* replica id bytes */
#define TT_HASH_LEN 32 /* BLAKE2b-256 */

/* Input limits; exceeding one is TETHER_ETOOBIG (or a rejection on the wire). */
/* 200, not 256: coll \0 id \0 seq must fit LMDB's 511-byte key limit. */
#define TT_MAX_NAME 200          /* collection, document id, field name bytes */
#define TT_MAX_LABEL 256
#define TT_MAX_OPS 1024          /* ops in one intent */
#define TT_MAX_VALUE (1u << 20)  /* canonical bytes of one value */
#define TT_MAX_INTENTS 10000     /* intents in one push */
/* Encoded size (tt_doc_encode) of one stored document. The server rejects
 * an intent whose merged document would be larger, so that no write can
 * make a document that replicas refuse to store (their record limit,
 * TT_R_MAX_RECORD, is derived from this with room to spare) and that
 * would wedge every replica's pull. */
#define TT_MAX_DOC ((size_t)16 << 20)

/* Writes 2*len lowercase hex chars and a NUL into out (size >= 2*len+1). */
void tt_hex_encode(const uint8_t *in, size_t len, char *out);
/* Decodes exactly 2*len hex chars (either case). 0 or TETHER_EINVAL. */
int tt_hex_decode(const char *hex, uint8_t *out, size_t len);
/* 1 + the value of a lower-case hex digit, 0 for any other byte. */
extern const uint8_t tt_hex_lower_digit[256];

/* Growable byte buffer for building wire text without a JSON tree.
 * Zero-initialise; release with tt_buf_free. */
typedef struct {
  uint8_t *data;
  size_t len;
  size_t cap;
} tt_buf;
/* Appends LEN bytes; 0 or TETHER_ENOMEM (then the buffer is unchanged). */
int tt_buf_add(tt_buf *b, const void *p, size_t len);
/* tt_buf_add of the NUL-terminated S, and of V in decimal (tt_i64_text). */
int tt_buf_add_str(tt_buf *b, const char *s);
int tt_buf_add_int(tt_buf *b, int64_t v);
void tt_buf_free(tt_buf *b);

/* Canonical JSON: keys sorted, compact, UTF-8, integers as integers.
 * Returns malloc'd NUL-terminated text (free with free()), NULL on ENOMEM. */
char *tt_canon(const json_t *v);
/* The same, with its length (without the NUL) in *LEN (may be NULL). */
char *tt_canon_n(const json_t *v, size_t *len);
/* Length of tt_canon(V) without building it: 0 with *out set, or
 * TETHER_ETOOBIG as soon as it exceeds MAX (counting stops there). */
int tt_canon_len(const json_t *v, size_t max, size_t *out);
/* Streams the canonical form of V to CB (jansson's dump callback; a
 * non-zero return from CB stops it). 0 or TETHER_ENOMEM. */
int tt_canon_dump(const json_t *v, json_dump_callback_t cb, void *ctx);
/* Appends the canonical form of V to B. 0; TETHER_ETOOBIG once it would
 * pass MAX bytes (0 = no bound); TETHER_EINVAL for a string that is not
 * UTF-8 (json_stringn_nocheck); TETHER_ENOMEM. On error B is as before. */
int tt_canon_buf(tt_buf *b, const json_t *v, size_t max);
/* Appends the canonical form of the JSON string of LEN bytes at S (quotes
 * and escapes). 0, TETHER_EINVAL when S is not UTF-8, or TETHER_ENOMEM;
 * on error B is as before. */
int tt_canon_str_buf(tt_buf *b, const char *s, size_t len);
/* The canonical text of the real D (jansson's "%.17g" form with ".0"
 * when it has no point or exponent) into OUT, NUL-terminated; its length
 * (never 0: 0 would mean snprintf failed). */
#define TT_CANON_REAL_MAX 48
size_t tt_canon_real_text(double d, char out[TT_CANON_REAL_MAX]);
/* 1 if A and B are the same JSON value (NULL equals only NULL). */
int tt_canon_equal(const json_t *a, const json_t *b);

/* 1 if the LEN bytes at S are well-formed UTF-8 (no overlong forms, no
 * surrogates, nothing above U+10FFFF) — what jansson accepts in a string.
 * Stored records read back from disk are checked with it: a name that is
 * not UTF-8 could never be put into a JSON answer. */
int tt_utf8_valid(const void *s, size_t len);

/* Length of the longest prefix of the NUL-terminated S, at most MAX bytes,
 * that is well-formed UTF-8 (as tt_utf8_valid): for UTF-8 input, the
 * longest prefix that does not cut a character in half. For quoting
 * client text into a message that must stay UTF-8 (it goes into JSON):
 * printf("%.*s", (int)tt_utf8_prefix(s, 100), s). S NULL -> 0. */
size_t tt_utf8_prefix(const char *s, size_t max);

/* Valid name: 1..TT_MAX_NAME bytes, no NUL (jansson guarantees UTF-8). */
int tt_name_valid(const char *s);

/* Copies at most errlen-1 bytes of a formatted message; errbuf may be NULL.
 * When the message is cut, it is cut on a UTF-8 character boundary. */
void tt_errf(char *errbuf, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* V in decimal, as printf's "%lld" writes it, without a NUL: the length
 * (at most TT_I64_TEXT_MAX). Every integer of every canonical text goes
 * through it, on both sides, and snprintf costs several times as much. */
#define TT_I64_TEXT_MAX 20
size_t tt_i64_text(int64_t v, char out[TT_I64_TEXT_MAX]);

/* Big-endian u64/u32 for ordered store keys. */
void tt_be64_put(uint8_t out[8], uint64_t v);
uint64_t tt_be64_get(const uint8_t in[8]);
void tt_be32_put(uint8_t out[4], uint32_t v);
uint32_t tt_be32_get(const uint8_t in[4]);

/* The first byte in [P, END) that a JSON string cannot hold as it is: a
 * control character, '"', '\\', or a byte of a multi-byte UTF-8
 * character. Strings are most of every body and nearly all plain ASCII, so
 * it tests eight bytes at a time while none is such a byte. The
 * has-less-than tricks below never flag a word that holds none; a flagged
 * word is then read byte by byte, which keeps it free of byte order. */
static inline const unsigned char *tt_json_plain_end(const unsigned char *p,
                                                     const unsigned char *end) {
  const uint64_t ones = 0x0101010101010101u, highs = 0x8080808080808080u;
  while (end - p >= 8) {
    uint64_t w, q, b;
    memcpy(&w, p, 8);
    q = w ^ (ones * '"');
    b = w ^ (ones * '\\');
    uint64_t special = (w | ((w - ones * 0x20) & ~w) | ((q - ones) & ~q) |
                        ((b - ones) & ~b)) &
                       highs;
    if (special) break;
    p += 8;
  }
  while (p < end && *p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
    p++;
  return p;
}

#endif
