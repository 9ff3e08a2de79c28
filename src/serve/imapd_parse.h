#ifndef EMAILVAULT_SERVE_IMAPD_PARSE_H
#define EMAILVAULT_SERVE_IMAPD_PARSE_H
/*
 * The IMAP server's command parser: pure (bytes in, commands out, no I/O),
 * bounded, fuzzed (tests/fuzz/fuzz_imapd.c).
 *
 * Two steps. The framer cuts the byte stream into whole commands: lines
 * with the literals they announce ({N} waits for a continuation request,
 * {N+} does not), at most IMAPD_LINE_MAX bytes a line, IMAPD_LITERAL_MAX a
 * literal and IMAPD_COMMAND_MAX a command. A command past a limit is
 * skipped to its end and reported as an error with its tag. Then
 * imapd_parse turns one command into a tag, a name and a tree of
 * arguments (atoms, strings, lists); imapd_args.c reads the arguments of
 * each command (sequence sets, FETCH items, SEARCH keys).
 */
#include <stddef.h>
#include <stdint.h>

#define IMAPD_LINE_MAX		(64 * 1024)
#define IMAPD_LITERAL_MAX	(64 * 1024)
#define IMAPD_COMMAND_MAX	(256 * 1024)
#define IMAPD_NODES_MAX		4096
#define IMAPD_DEPTH_MAX		16
#define IMAPD_TAG_MAX		64

enum imapd_status {
	IMAPD_MORE,		/* every byte taken: feed more */
	IMAPD_CONTINUE,		/* a synchronizing literal: send "+ ...", then feed more */
	IMAPD_COMMAND,		/* a command is complete: imapd_framer_take */
	IMAPD_ERROR		/* a command was refused: imapd_framer_error */
};

struct imapd_framer;

struct imapd_framer *imapd_framer_new(void);
void imapd_framer_free(struct imapd_framer *f);
/* Feeds LEN bytes of DATA; *USED gets how many were taken (stop at a
 * COMMAND, CONTINUE or ERROR; feed the rest after handling it). */
enum imapd_status imapd_framer_feed(struct imapd_framer *f, const char *data, size_t len,
    size_t *used);
/* After IMAPD_COMMAND: the command's bytes (lines with CRLF, literals in
 * place, without the final CRLF), owned by the framer until the next feed. */
const char *imapd_framer_take(struct imapd_framer *f, size_t *len);
/* After IMAPD_ERROR: what was wrong, and the command's tag ("*" when it
 * had none that can be repeated). */
const char *imapd_framer_error(const struct imapd_framer *f, const char **tag);
/* Bytes held for the command in progress (per-connection memory). */
size_t imapd_framer_held(const struct imapd_framer *f);

enum imapd_node_type { IMAPD_ATOM, IMAPD_STRING, IMAPD_LIST };

struct imapd_node {
	enum imapd_node_type type;
	const char *s;		/* atom or string bytes (NUL-terminated copy); NULL for lists */
	size_t len;
	int child;		/* first child of a list, -1 if none */
	int next;		/* next sibling, -1 at the end */
	int literal;		/* a string sent as a literal */
};

struct imapd_cmd {
	char tag[IMAPD_TAG_MAX + 1];
	char name[32];		/* upper case; "UID FETCH" for UID commands */
	struct imapd_node *nodes;
	int nnodes;
	int first;		/* the first argument, -1 if none */
	char *text;		/* the copy the nodes point into */
};

/*
 * Parses the command BUF (LEN bytes, from imapd_framer_take) into CMD.
 * 0, or -1 with ERR (CMD->tag is set whenever the line began with one,
 * else "*"). imapd_cmd_free in both cases.
 */
int imapd_parse(const char *buf, size_t len, struct imapd_cmd *cmd, char *err, size_t errlen);
void imapd_cmd_free(struct imapd_cmd *cmd);

/* Argument I of CMD (0-based), or NULL. */
const struct imapd_node *imapd_arg(const struct imapd_cmd *cmd, int i);
int imapd_nargs(const struct imapd_cmd *cmd);
const struct imapd_node *imapd_child(const struct imapd_cmd *cmd, const struct imapd_node *n);
const struct imapd_node *imapd_next(const struct imapd_cmd *cmd, const struct imapd_node *n);
/* An atom or string: astring. 1 if N is one. */
int imapd_is_astring(const struct imapd_node *n);
/* 1 if N is an atom equal to WORD (case-insensitive). */
int imapd_atom_is(const struct imapd_node *n, const char *word);

#endif
