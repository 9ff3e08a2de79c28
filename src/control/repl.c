#define _GNU_SOURCE	/* ppoll */
/*
 * emailvault repl: an interactive Lua prompt into the running engine, or
 * (--offline) into the archive as last recorded. Line editing, history and
 * completion come from libedit; chunks run in the engine, one coroutine
 * each, so the asynchronous API works at the prompt. Without a terminal
 * libedit can drive (TERM unset or dumb, input not a terminal) lines are
 * read plainly.
 */
#include "control/repl.h"

#include <errno.h>
#include <locale.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <editline/readline.h>
#include <lauxlib.h>
#include <lualib.h>

#include "control/client.h"
#include "control/frame.h"
#include "paths.h"

static int repl_fd = -1;		/* the engine, or -1 offline */
static lua_State *checker;		/* a plain Lua state to tell incomplete chunks */
static lua_State *offline_L;		/* offline: where chunks run */
static volatile sig_atomic_t interrupted;

static void
on_sigint(int sig)
{
	(void)sig;
	interrupted = 1;
}

/* A chunk is incomplete when it only fails at its end ("<eof>"). */
static int
incomplete(const char *text)
{
	size_t len = strlen(text);
	char *ret = malloc(len + 8);
	int status, more = 0;

	if (ret == NULL)
		return 0;
	memcpy(ret, "return ", 7);
	memcpy(ret + 7, text, len + 1);
	status = luaL_loadbuffer(checker, ret, len + 7, "=stdin");
	lua_pop(checker, 1);
	free(ret);
	if (status == LUA_OK)
		return 0;
	status = luaL_loadbuffer(checker, text, len, "=stdin");
	if (status == LUA_ERRSYNTAX) {
		size_t mlen;
		const char *msg = lua_tolstring(checker, -1, &mlen);
		more = mlen >= 5 && strcmp(msg + mlen - 5, "<eof>") == 0;
	}
	lua_pop(checker, 1);
	return more;
}

/* ---- completion --------------------------------------------------------- */

static char **candidates;
static size_t ncandidates;

static void
free_candidates(void)
{
	for (size_t i = 0; i < ncandidates; i++)
		free(candidates[i]);
	free(candidates);
	candidates = NULL;
	ncandidates = 0;
}

static void
add_candidates(const char *text, size_t len)
{
	const char *p = text, *end = text + len;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		if (n > 0) {
			char **grown = realloc(candidates, (ncandidates + 1) * sizeof(char *));
			if (grown == NULL)
				return;
			candidates = grown;
			candidates[ncandidates] = strndup(p, n);
			if (candidates[ncandidates])
				ncandidates++;
		}
		p += n + 1;
	}
}

/* Asks the engine (or the offline VM) which names complete WORD. */
static void
fetch_candidates(const char *word)
{
	free_candidates();
	if (repl_fd >= 0) {
		char type, *payload;
		size_t plen;
		if (frame_write(repl_fd, 'C', word, strlen(word)) < 0)
			return;
		if (frame_read(repl_fd, &type, &payload, &plen) == 0) {
			if (type == 'L')
				add_candidates(payload, plen);
			free(payload);
		}
		return;
	}
	lua_getglobal(offline_L, "require");
	lua_pushliteral(offline_L, "offline");
	if (lua_pcall(offline_L, 1, 1, 0) == LUA_OK) {
		lua_getfield(offline_L, -1, "complete");
		lua_pushstring(offline_L, word);
		if (lua_pcall(offline_L, 1, 1, 0) == LUA_OK) {
			size_t n;
			const char *s = lua_tolstring(offline_L, -1, &n);
			if (s)
				add_candidates(s, n);
		}
	}
	lua_settop(offline_L, 0);
}

static char *
candidate_generator(const char *text, int state)
{
	static size_t next;

	if (state == 0) {
		fetch_candidates(text);
		next = 0;
	}
	while (next < ncandidates)
		return strdup(candidates[next++]);
	return NULL;
}

static char **
complete(const char *text, int start, int end)
{
	(void)start;
	(void)end;
	rl_attempted_completion_over = 1;	/* no file names */
	return rl_completion_matches(text, candidate_generator);
}

/* ---- plain line input ------------------------------------------------- */

/* libedit needs a terminal it can drive. CI, containers, cron and editor
 * shell buffers have no TERM or TERM=dumb; there the terminal's own line
 * discipline edits the line (erase, kill, ^C, ^D) and nothing but prompts
 * and results is written: no escape sequences, bells or redraws. */
static int
plain_input(void)
{
	const char *term = getenv("TERM");

	return !isatty(0) || term == NULL || term[0] == '\0' || strcmp(term, "dumb") == 0;
}

/*
 * libedit reads the terminal through this. SIGINT is let in only while
 * ppoll waits, so a Ctrl-C typed right after the prompt, before the read
 * blocks, still ends the line (EOF here; the loop sees `interrupted`).
 * libedit takes what it returns as one character: UTF-8 is decoded here.
 */
static int
wait_byte(unsigned char *c)
{
	sigset_t block, orig;
	struct pollfd pfd = { .fd = 0, .events = POLLIN };
	int got = 0;

	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &orig);
	while (!interrupted) {
		if (ppoll(&pfd, 1, NULL, &orig) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		ssize_t r = read(0, c, 1);
		if (r == 1) {
			got = 1;
			break;
		}
		if (r == 0 || errno != EINTR)
			break;
	}
	sigprocmask(SIG_SETMASK, &orig, NULL);
	return got;
}

static int
edit_getc(FILE *f)
{
	unsigned char c;
	int cp, more;

	(void)f;
	if (!wait_byte(&c))
		return EOF;
	if (c < 0x80)
		return c;
	if ((c & 0xe0) == 0xc0) {
		cp = c & 0x1f;
		more = 1;
	} else if ((c & 0xf0) == 0xe0) {
		cp = c & 0x0f;
		more = 2;
	} else if ((c & 0xf8) == 0xf0) {
		cp = c & 0x07;
		more = 3;
	} else {
		return 0xfffd;
	}
	while (more-- > 0) {
		if (!wait_byte(&c))
			return EOF;
		if ((c & 0xc0) != 0x80)
			return 0xfffd;
		cp = cp << 6 | (c & 0x3f);
	}
	return cp;
}

/* Bytes read from the terminal beyond the line returned. */
static char plain_buf[8192];
static size_t plain_len;

/* One line without its end, like readline(); NULL at the end of input or
 * when Ctrl-C interrupted it. */
static char *
plain_readline(const char *prompt)
{
	sigset_t block, orig;
	struct pollfd pfd = { .fd = 0, .events = POLLIN };
	char *line = NULL, *nl;
	size_t len = 0;

	/* Ctrl-C right after the prompt, before the read blocks, must not be
	 * lost: SIGINT is let in only while ppoll waits. */
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigprocmask(SIG_BLOCK, &block, &orig);
	if (isatty(0)) {
		fputs(prompt, stdout);
		fflush(stdout);
	}
	for (;;) {
		if ((nl = memchr(plain_buf, '\n', plain_len)) != NULL || plain_len == sizeof(plain_buf)) {
			size_t n = nl ? (size_t)(nl - plain_buf) : plain_len;
			char *grown = realloc(line, len + n + 1);
			if (grown == NULL)
				break;
			line = grown;
			memcpy(line + len, plain_buf, n);
			len += n;
			line[len] = '\0';
			n += nl != NULL;
			memmove(plain_buf, plain_buf + n, plain_len - n);
			plain_len -= n;
			if (nl)
				break;
			continue;
		}
		if (interrupted)
			break;
		if (ppoll(&pfd, 1, NULL, &orig) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		ssize_t r = read(0, plain_buf + plain_len, sizeof(plain_buf) - plain_len);
		if (r <= 0) {
			if (r < 0 && errno == EINTR)
				continue;
			if (plain_len > 0) {	/* a last line without its end */
				nl = plain_buf + plain_len;
				plain_buf[plain_len] = '\n';
				plain_len++;
				continue;
			}
			break;
		}
		plain_len += (size_t)r;
	}
	sigprocmask(SIG_SETMASK, &orig, NULL);
	if (interrupted || nl == NULL) {
		free(line);
		plain_len = 0;	/* ^C drops what was typed */
		return NULL;
	}
	if (line == NULL)
		line = strdup("");
	while (len > 0 && line[len - 1] == '\r')
		line[--len] = '\0';
	return line;
}

/* ---- running a chunk -------------------------------------------------- */

static int
run_offline(const char *chunk)
{
	lua_State *L = offline_L;
	int rc;

	lua_getglobal(L, "require");
	lua_pushliteral(L, "offline");
	if (lua_pcall(L, 1, 1, 0) != LUA_OK) {
		fprintf(stderr, "%s\n", lua_tostring(L, -1));
		lua_settop(L, 0);
		return 1;
	}
	lua_getfield(L, -1, "eval");
	lua_pushstring(L, chunk);
	rc = lua_pcall(L, 1, 2, 0);
	if (rc != LUA_OK || !lua_toboolean(L, -2)) {
		fprintf(stderr, "%s\n", lua_tostring(L, -1));
		rc = 1;
	} else {
		const char *out = lua_tostring(L, -1);
		if (out && *out)
			printf("%s\n", out);
		rc = 0;
	}
	lua_settop(L, 0);
	fflush(stdout);
	return rc;
}

static void
history_path(char *buf, size_t len)
{
	const char *env = getenv("EMAILVAULT_HISTORY");
	const char *state = getenv("XDG_STATE_HOME");
	const char *home = getenv("HOME");
	char dir[3072];		/* leaves room for "/repl_history" in BUF */

	if (env && *env) {
		snprintf(buf, len, "%s", env);
		return;
	}
	if (state && *state)
		snprintf(dir, sizeof(dir), "%s/emailvault", state);
	else
		snprintf(dir, sizeof(dir), "%s/.local/state/emailvault", home && *home ? home : ".");
	paths_mkdir_p(dir, 0700);
	snprintf(buf, len, "%s/repl_history", dir);
}

int
repl_run(const char *data_dir, int offline, lua_State *offline_state)
{
	char hist[4096], err[1024];
	char *chunk = NULL;
	size_t chunk_len = 0;
	struct sigaction sa;
	int plain = plain_input();

	/* libedit edits characters, not bytes, in the locale's charset: without
	 * a UTF-8 one, "Zürich" typed at the prompt would lose its ü. */
	const char *loc = setlocale(LC_CTYPE, "");
	if (loc == NULL || (strstr(loc, "UTF-8") == NULL && strstr(loc, "utf8") == NULL))
		setlocale(LC_CTYPE, "C.UTF-8");
	offline_L = offline_state;
	if (!offline) {
		repl_fd = control_connect(data_dir, err, sizeof(err));
		if (repl_fd < 0) {
			fprintf(stderr, "emailvault: %s; or look at the archive without it: "
			    "emailvault repl --offline --data %s\n", err, data_dir);
			return 1;
		}
	}
	checker = luaL_newstate();
	if (checker == NULL)
		return 1;

	/* Before any other libedit call: the first one initialises it, and the
	 * reader is taken then. */
	rl_getc_function = edit_getc;
	rl_readline_name = "emailvault";
	history_path(hist, sizeof(hist));
	using_history();
	stifle_history(1000);
	read_history(hist);
	/* "." and ":" stay inside a word: "vault.imap.co" completes whole. */
	static char word_breaks[] = " \t\n\"\\'`@$><=;|&{(,+-*/%^~#";
	rl_basic_word_break_characters = word_breaks;
	rl_completer_word_break_characters = word_breaks;
	rl_attempted_completion_function = complete;
	rl_completion_append_character = '\0';	/* "vault.sources" then "(" */

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigint;	/* no SA_RESTART: reading a line stops */
	sigaction(SIGINT, &sa, NULL);

	if (isatty(0))
		printf("MyEmailVault %s — Lua %s (%s). Ctrl-D leaves, Ctrl-C interrupts, %s\n",
		    EMAILVAULT_VERSION, offline ? "offline: the archive as last recorded" :
		    "inside the running engine", data_dir, plain ? "plain line input (TERM is "
		    "dumb or unset: no history recall or completion)" : "Tab completes vault.*");
	for (;;) {
		char *line;

		interrupted = 0;
		line = (plain ? plain_readline : readline)(chunk ? "   ...> " : "vault> ");
		if (line == NULL) {
			if (interrupted) {	/* Ctrl-C at the prompt: drop the line */
				printf("\n");
				free(chunk);
				chunk = NULL;
				chunk_len = 0;
				continue;
			}
			printf("\n");
			break;	/* Ctrl-D */
		}
		if (chunk == NULL && line[0] == '\0') {
			free(line);
			continue;
		}
		size_t n = strlen(line);
		char *grown = realloc(chunk, chunk_len + n + 2);
		if (grown == NULL) {
			free(line);
			break;
		}
		chunk = grown;
		if (chunk_len)
			chunk[chunk_len++] = '\n';
		memcpy(chunk + chunk_len, line, n + 1);
		chunk_len += n;
		free(line);
		if (incomplete(chunk))
			continue;
		add_history(chunk);
		{
			/* History may hold what was typed at the prompt: never
			 * readable by others, not even for a moment. */
			mode_t old = umask(077);
			if (write_history(hist) == 0)
				chmod(hist, 0600);
			umask(old);
		}
		if (repl_fd >= 0) {
			int rc = control_eval(repl_fd, chunk, 0);
			if (rc == CONTROL_LOST)
				break;	/* the engine stopped */
			if (rc == CONTROL_ABANDONED) {
				/* Late replies would land on the next chunk: start a
				 * fresh connection (the engine drops the old chunk). */
				close(repl_fd);
				repl_fd = control_connect(data_dir, err, sizeof(err));
				if (repl_fd < 0) {
					fprintf(stderr, "emailvault: %s\n", err);
					break;
				}
			}
		} else {
			run_offline(chunk);
		}
		free(chunk);
		chunk = NULL;
		chunk_len = 0;
	}
	free(chunk);
	free_candidates();
	lua_close(checker);
	if (repl_fd >= 0)
		close(repl_fd);
	return 0;
}
