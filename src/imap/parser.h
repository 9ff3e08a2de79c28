#ifndef EMAILVAULT_IMAP_PARSER_H
#define EMAILVAULT_IMAP_PARSER_H
/*
 * IMAP4rev1/IMAP4rev2 response parser (server -> client).
 *
 * Pure: bytes go in through imap_parser_feed(), events come out through
 * callbacks. No I/O, no globals. Feeding may stop at any byte; the parser
 * keeps the partial state, so a transcript fed whole or one byte at a time
 * gives the same events (only the chunking of literal_data differs).
 *
 * Ownership: the parser owns every byte a response points to. The
 * struct imap_response handed to on_response, its nodes and strings are
 * valid only until on_response returns; copy what you keep.
 * Pointers in struct imap_literal_info are valid only during literal_begin.
 *
 * See docs/imap-parser.md for limits and the event model.
 */
#include <stddef.h>
#include <stdint.h>

/* ---- token tree ------------------------------------------------------ */

enum imap_node_type {
	IMAP_NODE_ATOM = 1,	/* atom, number, flag, fetch item name */
	IMAP_NODE_QUOTED,	/* quoted string, unescaped */
	IMAP_NODE_LITERAL,	/* literal kept inline */
	IMAP_NODE_STREAMED,	/* literal streamed to callbacks; size only */
	IMAP_NODE_NIL,
	IMAP_NODE_LIST		/* parenthesized list (also the data root) */
};

struct imap_node;	/* opaque, read through the accessors below */

enum imap_node_type imap_node_type(const struct imap_node *n);
/* Bytes of an atom, quoted string or inline literal, NUL-terminated
 * (a literal may also contain NULs: trust *len). NULL for other types. */
const char *imap_node_bytes(const struct imap_node *n, size_t *len);
/* Size of a literal (inline or streamed), else the byte length. */
uint64_t imap_node_size(const struct imap_node *n);
int imap_node_is_literal8(const struct imap_node *n);	/* ~{n} */
/* Case-insensitive compare of an atom with name; 0 if not an atom. */
int imap_node_atom_is(const struct imap_node *n, const char *name);
/* Number of an atom made only of digits; -1 if not one or overflow. */
int imap_node_u32(const struct imap_node *n, uint32_t *out);
int imap_node_u64(const struct imap_node *n, uint64_t *out);
/* List children: first child (NULL if empty or not a list), next
 * sibling (NULL at the end), child count. */
const struct imap_node *imap_node_child(const struct imap_node *list);
const struct imap_node *imap_node_next(const struct imap_node *n);
size_t imap_node_count(const struct imap_node *list);
/* The node right after the first atom named name among list's children
 * ("UIDNEXT" in a STATUS list, "COUNT" in ESEARCH), or NULL. */
const struct imap_node *imap_node_after(const struct imap_node *list,
    const char *name);

/* Safe decimal parsing: digits only, no sign, no overflow. 0 or -1. */
int imap_parse_u32(const char *s, size_t len, uint32_t *out);
int imap_parse_u64(const char *s, size_t len, uint64_t *out);

/* ---- responses ------------------------------------------------------- */

enum imap_resp_kind {
	IMAP_RESP_TAGGED = 1,	/* a1 OK|NO|BAD [code] text */
	IMAP_RESP_STATUS,	/* * OK|NO|BAD|PREAUTH|BYE [code] text */
	IMAP_RESP_DATA,		/* * [n] KEYWORD tokens... */
	IMAP_RESP_CONTINUE	/* + [code] text-or-base64 */
};

enum imap_status {
	IMAP_STATUS_NONE = 0,
	IMAP_STATUS_OK, IMAP_STATUS_NO, IMAP_STATUS_BAD,
	IMAP_STATUS_PREAUTH, IMAP_STATUS_BYE
};

/* Data response keywords; IMAP_KW_OTHER for anything else. */
enum imap_kw {
	IMAP_KW_OTHER = 0,
	IMAP_KW_EXISTS, IMAP_KW_RECENT, IMAP_KW_EXPUNGE, IMAP_KW_FETCH,
	IMAP_KW_CAPABILITY, IMAP_KW_LIST, IMAP_KW_LSUB, IMAP_KW_STATUS,
	IMAP_KW_SEARCH, IMAP_KW_ESEARCH, IMAP_KW_FLAGS, IMAP_KW_ENABLED,
	IMAP_KW_ID, IMAP_KW_NAMESPACE, IMAP_KW_VANISHED, IMAP_KW_QUOTA,
	IMAP_KW_QUOTAROOT, IMAP_KW_METADATA, IMAP_KW_SORT, IMAP_KW_THREAD
};

/* Response codes (RFC 3501, 4315, 5162, 5530, 7162, 9051 ...). */
enum imap_code_id {
	IMAP_CODE_NONE = 0,	/* no [code] in the response */
	IMAP_CODE_OTHER,	/* a code we do not know: see name and raw */
	IMAP_CODE_ALERT, IMAP_CODE_ALREADYEXISTS, IMAP_CODE_APPENDUID,
	IMAP_CODE_AUTHENTICATIONFAILED, IMAP_CODE_AUTHORIZATIONFAILED,
	IMAP_CODE_BADCHARSET, IMAP_CODE_CANNOT, IMAP_CODE_CAPABILITY,
	IMAP_CODE_CLIENTBUG, IMAP_CODE_CLOSED, IMAP_CODE_COMPRESSIONACTIVE,
	IMAP_CODE_CONTACTADMIN, IMAP_CODE_COPYUID, IMAP_CODE_CORRUPTION,
	IMAP_CODE_EXPIRED, IMAP_CODE_EXPUNGEISSUED, IMAP_CODE_HASCHILDREN,
	IMAP_CODE_HIGHESTMODSEQ, IMAP_CODE_INUSE, IMAP_CODE_LIMIT,
	IMAP_CODE_MODIFIED, IMAP_CODE_NOMODSEQ, IMAP_CODE_NONEXISTENT,
	IMAP_CODE_NOPERM, IMAP_CODE_NOTSAVED, IMAP_CODE_OVERQUOTA,
	IMAP_CODE_PARSE, IMAP_CODE_PERMANENTFLAGS, IMAP_CODE_PRIVACYREQUIRED,
	IMAP_CODE_READ_ONLY, IMAP_CODE_READ_WRITE, IMAP_CODE_SERVERBUG,
	IMAP_CODE_THROTTLED, IMAP_CODE_TRYCREATE, IMAP_CODE_UIDNEXT,
	IMAP_CODE_UIDNOTSTICKY, IMAP_CODE_UIDVALIDITY, IMAP_CODE_UNAVAILABLE,
	IMAP_CODE_UNKNOWN_CTE, IMAP_CODE_UNSEEN, IMAP_CODE_WEBALERT
};

struct imap_code {
	enum imap_code_id id;	/* IMAP_CODE_NONE: no code */
	const char *name;	/* as sent, e.g. "UIDVALIDITY"; NULL if none */
	const char *raw;	/* arguments as sent, "" if none */
	size_t raw_len;
	/* raw read as tokens (a list node), or NULL if it has none or they
	 * do not form tokens (e.g. free text): never an error. */
	const struct imap_node *args;
};

struct imap_response {
	enum imap_resp_kind kind;
	const char *tag;		/* TAGGED only, else NULL */
	enum imap_status status;	/* TAGGED and STATUS */
	struct imap_code code;		/* TAGGED, STATUS, CONTINUE */
	const char *text;		/* human text or base64, "" if none */
	size_t text_len;
	int has_number;			/* DATA: "* 17 FETCH" */
	uint32_t number;
	const char *keyword;		/* DATA: keyword as sent */
	enum imap_kw kw;
	const struct imap_node *data;	/* DATA: list of tokens after keyword */
	uint64_t wire_bytes;		/* bytes read, streamed literals included */
};

enum imap_code_id imap_code_lookup(const char *name, size_t len);
const char *imap_code_name(enum imap_code_id id);
enum imap_kw imap_kw_lookup(const char *name, size_t len);
const char *imap_status_name(enum imap_status s);
/* The single number argument of UIDVALIDITY, UIDNEXT, UNSEEN,
 * HIGHESTMODSEQ... codes; -1 if the code has none. */
int imap_code_u64(const struct imap_code *c, uint64_t *out);
/* In a FETCH response: the value following item name (pairwise, case-
 * insensitive; "BODY[]", "UID", "FLAGS"), or NULL. */
const struct imap_node *imap_fetch_item(const struct imap_response *r,
    const char *name);

/* ---- parser ---------------------------------------------------------- */

struct imap_limits {
	size_t max_response;	/* bytes of one response, streamed literals
				 * excluded (default 16 MiB, at most 4 GiB-1) */
	unsigned max_depth;	/* list nesting (default 64) */
	uint64_t max_literal;	/* any literal, streamed too (default 2 GiB) */
	size_t max_inline;	/* literal kept in the tree (default 1 MiB) */
	size_t max_tokens;	/* nodes in one response (default 2 000 000) */
};
void imap_limits_default(struct imap_limits *l);

/* literal_begin's context. */
struct imap_literal_info {
	uint64_t size;
	int literal8;		/* ~{n}: may contain NUL */
	int nonsync;		/* {n+} */
	const char *item;	/* atom just before, e.g. "BODY[]"; "" if none */
	size_t item_len;
	int has_number;		/* the response's number and keyword, */
	uint32_t number;	/* e.g. 17 and "FETCH" */
	const char *keyword;
	enum imap_kw kw;
	unsigned depth;		/* list nesting; 0 = top level */
	int has_uid;		/* FETCH: "UID n" came before this literal */
	uint32_t uid;
};

/* literal_begin returns one of these, or < 0 to abort. */
#define IMAP_LIT_INLINE	0
#define IMAP_LIT_STREAM	1
/* on_response returns 0, IMAP_PAUSE (stop feeding right after this
 * response, e.g. before STARTTLS or COMPRESS), or < 0 to abort. */
#define IMAP_PAUSE	1

struct imap_callbacks {
	void *ud;
	int (*on_response)(void *ud, const struct imap_response *r);
	int (*literal_begin)(void *ud, const struct imap_literal_info *li);
	int (*literal_data)(void *ud, const char *data, size_t len);
	int (*literal_end)(void *ud);
	/* called once, when the parser fails; a streamed literal cut short
	 * by an error, reset or free gets no literal_end */
	void (*on_error)(void *ud, int code, const char *msg);
};

/* Errors (negative); once one happens the parser refuses input until
 * imap_parser_reset(). */
enum imap_err {
	IMAP_OK = 0,
	IMAP_ERR_SYNTAX = -1,		/* malformed response */
	IMAP_ERR_TOO_LONG = -2,		/* max_response */
	IMAP_ERR_TOO_DEEP = -3,		/* max_depth */
	IMAP_ERR_LITERAL = -4,		/* max_literal */
	IMAP_ERR_INLINE = -5,		/* max_inline */
	IMAP_ERR_TOKENS = -6,		/* max_tokens */
	IMAP_ERR_NOMEM = -7,
	IMAP_ERR_ABORTED = -8		/* a callback returned < 0 */
};

struct imap_parser;

/* cb is copied; lim may be NULL for defaults. NULL on out of memory. */
struct imap_parser *imap_parser_new(const struct imap_callbacks *cb,
    const struct imap_limits *lim);
void imap_parser_free(struct imap_parser *p);
/* Forget partial input and any error (e.g. after STARTTLS). */
void imap_parser_reset(struct imap_parser *p);
/* Consume data: IMAP_OK when all was consumed, IMAP_PAUSE when
 * on_response asked to pause (imap_parser_consumed() tells how many bytes
 * of this call were used), or an enum imap_err. Not reentrant: never call
 * it (or reset/free) from a callback. */
int imap_parser_feed(struct imap_parser *p, const void *data, size_t len);
size_t imap_parser_consumed(const struct imap_parser *p);
/* Bytes read of an unfinished response (0 = at a response boundary);
 * meaningless after an error. */
uint64_t imap_parser_pending(const struct imap_parser *p);
int imap_parser_error(const struct imap_parser *p);
const char *imap_parser_errmsg(const struct imap_parser *p);	/* "" if none */

#endif
