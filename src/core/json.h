/* json.h — the JSON text parser every hot path uses: strict RFC 8259 text
 * into jansson values.
 *
 * Why not json_loadb: jansson's reader pulls the text through a per-byte
 * stream with a growable buffer per token, about 9 us for a 500-byte
 * intent on the benchmark machine, while building the same tree costs
 * under 2 us; push bodies, stored intents, stored documents and pull
 * answers are all parsed on the sync path. This parser builds the same
 * values through jansson's constructors and accepts exactly what
 * json_loadb accepts with the matching flags (fuzz/fuzz_json.c checks
 * both on every input): UTF-8 only, no "\u0000" and no lone surrogate,
 * integers that fit json_int_t (others are refused, as jansson refuses
 * them), reals that do not overflow, at most TT_JSON_MAX_DEPTH levels of
 * values (a scalar counts as a level: 2048 arrays around a number are too
 * deep, 2048 empty nested arrays are not), a later duplicate key replacing
 * the earlier one unless TT_JSON_REJECT_DUPLICATES. One exception: a NUL
 * byte anywhere outside a string is refused, where json_loadb skips one
 * right after a number or literal (jansson issue #331). Numbers are read
 * in the C locale whatever the process's locale is. */
#ifndef TT_CORE_JSON_H
#define TT_CORE_JSON_H

#include <jansson.h>
#include <stddef.h>

enum {
  TT_JSON_ANY = 1,               /* any value at top level, not only {} / [] */
  TT_JSON_REJECT_DUPLICATES = 2, /* a repeated object key is an error */
  TT_JSON_ALLOW_NUL = 4          /* "\u0000" allowed in string values */
};

/* jansson's JSON_PARSER_MAX_DEPTH. */
#define TT_JSON_MAX_DEPTH 2048

typedef struct {
  size_t position; /* byte offset of the error */
  int line;        /* 1-based */
  int column;      /* 1-based, in bytes */
  char text[120];  /* what is wrong, e.g. "control character 0x0a in string" */
} tt_json_error;

/* Parses LEN bytes of TEXT (need not be NUL-terminated) into *OUT (a new
 * reference, caller json_decref()s it). Returns 0, TETHER_EJSON (the text
 * is not accepted; ERR, if not NULL, says where and why) or TETHER_ENOMEM;
 * on failure *OUT is NULL. */
int tt_json_parse(const char *text, size_t len, unsigned flags, json_t **out,
                  tt_json_error *err);

/* Where a streamed element was in the text. CANONICAL is 1 only when the
 * bytes are exactly what tt_canon writes for the element (no white space,
 * keys in its order, its escapes and number forms); 0 may also mean only
 * that the reader did not check (any \u escape, an escaped key), so it is
 * a fast path's test, never a refusal. */
typedef struct {
  const char *text; /* into the parsed text */
  size_t len;
  int canonical;
} tt_json_span;

/* Receives one element of the streamed array (see tt_json_parse_streamed)
 * and owns it; SPAN is valid during the call. 0 goes on; any other value
 * stops the parse, which returns it. */
typedef int (*tt_json_each_fn)(void *ctx, json_t *elem,
                               const tt_json_span *span);

/* tt_json_parse for a top-level object whose member KEY is usually a long
 * array: when that member is an array, its elements are not collected but
 * handed to EACH one by one as they are read, and the member is left as
 * an empty array in *OUT. Whoever reads a push body of thousands of
 * intents then holds one intent's tree at a time. Elements already handed
 * over stay handed over when the text turns out malformed later. */
int tt_json_parse_streamed(const char *text, size_t len, unsigned flags,
                           const char *key, tt_json_each_fn each, void *ctx,
                           json_t **out, tt_json_error *err);

/* A fast path for tt_json_parse_streamed's elements: called with the text
 * at the start of each element (AVAIL bytes to the end of the whole text),
 * the parse's FLAGS, and DEPTH, the nesting level the element has (the
 * value itself counted, as TT_JSON_MAX_DEPTH counts). It returns 0 once it
 * has read the element itself, *USED being the length of its text, which
 * must be exactly tt_canon's text of a valid element; 1 to have it parsed
 * as usual and handed to EACH; a negative value to stop the parse, which
 * returns it. */
typedef int (*tt_json_each_text_fn)(void *ctx, const char *text, size_t avail,
                                    unsigned flags, int depth, size_t *used);
/* tt_json_parse_streamed, trying EACH_TEXT (NULL: never) on every element
 * before building it. */
int tt_json_parse_streamed_text(const char *text, size_t len, unsigned flags,
                                const char *key, tt_json_each_text_fn each_text,
                                tt_json_each_fn each, void *ctx, json_t **out,
                                tt_json_error *err);
/* Reads ONE value from the start of TEXT (no white space before it) and
 * stops after it: *USED is its length, *CANONICAL 1 when those bytes are
 * tt_canon's. DEPTH is the number of values around it (so the value itself
 * is at DEPTH + 1 towards TT_JSON_MAX_DEPTH). 0, TETHER_EJSON (not a value
 * the parser accepts, no reason given) or TETHER_ENOMEM; *OUT is a new
 * reference on 0, else NULL. */
int tt_json_parse_prefix(const char *text, size_t len, unsigned flags,
                         int depth, json_t **out, size_t *used,
                         int *canonical);
/* 0 when the LEN bytes of TEXT are one JSON value (any kind, no white
 * space around it) that the parser accepts with FLAGS and that is exactly
 * tt_canon's text of it; it is read, not built. TETHER_EJSON otherwise,
 * also for canonical text the reader does not vouch for (a \u escape:
 * see tt_json_span), TETHER_ENOMEM. For stored values about to be sent
 * as they are. */
int tt_json_check_canonical(const char *text, size_t len, unsigned flags);
/* tt_json_parse without the reason: the value, or NULL whatever went wrong
 * (for stored records, where any failure reads as corrupt). */
json_t *tt_json_load(const char *text, size_t len, unsigned flags);

#endif
