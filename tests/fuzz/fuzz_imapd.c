/*
 * libFuzzer target for the IMAP view's command parser (src/serve/imapd_*.c).
 *
 * The input is what a client sends, fed to the framer in pieces whose sizes
 * the first byte chooses (so every split of a line or a literal is tried).
 * Every command the framer completes is parsed; a parsed FETCH, UID FETCH,
 * SEARCH or UID SEARCH has its arguments read too. Checked: the framer
 * takes every byte, holds at most IMAPD_COMMAND_MAX, completes commands no
 * longer than that, and every node of a parsed command stays inside its
 * arena with a NUL after it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "serve/imapd_args.h"
#include "serve/imapd_parse.h"

static void
check_nodes(const struct imapd_cmd *cmd)
{
	for (int i = 0; i < cmd->nnodes; i++) {
		const struct imapd_node *n = &cmd->nodes[i];
		if (n->type != IMAPD_LIST && (n->s == NULL || n->s[n->len] != '\0'))
			abort();
		if (n->child >= cmd->nnodes || n->next >= cmd->nnodes)
			abort();
	}
}

static void
command(const char *buf, size_t len)
{
	struct imapd_cmd cmd;
	char err[160];

	if (len > IMAPD_COMMAND_MAX)
		abort();
	if (imapd_parse(buf, len, &cmd, err, sizeof(err)) == 0) {
		check_nodes(&cmd);
		if (strcmp(cmd.name, "FETCH") == 0 || strcmp(cmd.name, "UID FETCH") == 0) {
			struct imapd_fetch *f = malloc(sizeof(*f));
			struct imapd_seqset *s = malloc(sizeof(*s));
			const struct imapd_node *set = imapd_arg(&cmd, 0);
			if (set && set->type == IMAPD_ATOM && imapd_seqset_parse(set->s, set->len, s) == 0)
				(void)imapd_seqset_has(s, 7, 100);
			if (imapd_fetch_parse(&cmd, imapd_arg(&cmd, 1), f, err, sizeof(err)) == 0)
				for (int i = 0; i < f->n; i++)
					for (int k = 0; k < f->items[i].nfields; k++)
						if (strlen(f->items[i].fields[k]) == 0)
							abort();
			free(f);
			free(s);
		} else if (strcmp(cmd.name, "SEARCH") == 0 || strcmp(cmd.name, "UID SEARCH") == 0) {
			struct imapd_search *q = malloc(sizeof(*q));
			if (imapd_search_parse(&cmd, 0, q, err, sizeof(err)) == 0 &&
			    (q->root < 0 || q->root >= q->n))
				abort();
			imapd_search_free(q);
			free(q);
		}
	}
	imapd_cmd_free(&cmd);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct imapd_framer *f;
	size_t step, at = 1;

	if (size < 1 || (f = imapd_framer_new()) == NULL)
		return 0;
	step = (size_t)(data[0] % 64) + 1;
	while (at < size) {
		size_t n = size - at < step ? size - at : step, used = 0;
		enum imapd_status st = imapd_framer_feed(f, (const char *)data + at, n, &used);
		if (used > n || (used == 0 && st == IMAPD_MORE && n > 0))
			abort();
		if (imapd_framer_held(f) > IMAPD_COMMAND_MAX)
			abort();
		if (st == IMAPD_COMMAND) {
			size_t len;
			const char *buf = imapd_framer_take(f, &len);
			command(buf, len);
		}
		at += used;
	}
	imapd_framer_free(f);
	return 0;
}
