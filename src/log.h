#ifndef EMAILVAULT_LOG_H
#define EMAILVAULT_LOG_H
/*
 * One line per event: time, level, source id, message and key=value fields.
 *   2026-11-26T01:42:41.123Z INFO  [work] source started generation=2
 * Lines go to stderr, or to a file (reopened by log_reopen for rotation).
 * When stderr is the journal, lines have no time (journald adds its own)
 * and begin with a syslog priority instead, "<6>INFO  [work] ...", which
 * journald reads as the line's level (sd-daemon(3)).
 * Registered secrets are replaced by *** in every line, as a last line of
 * defence against a password reaching the log through an error message.
 */
#include <stdarg.h>
#include <stddef.h>

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

int log_parse_level(const char *name, enum log_level *out);
const char *log_level_name(enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);

/* Sends lines to PATH (append) instead of stderr; -1 with errno on failure. */
int log_open_file(const char *path);
/* Reopens the file given to log_open_file (after logrotate moved it). */
int log_reopen(void);
/* Journal style when stderr is the journal: $JOURNAL_STREAM names the
 * device and inode of stderr's stream (systemd.exec(5)). Returns 1 if it
 * is, 0 if not; a log file given with log_open_file is never the journal. */
int log_detect_journal(void);
void log_close(void);

void log_add_secret(const char *secret);
void log_clear_secrets(void);
/* A copy of S (LEN bytes) with every registered secret replaced by ***, as
 * in log lines, for text that leaves the engine another way (an event
 * handler's webhook); *OUTLEN is its length. NULL when out of memory. */
char *log_scrub(const char *s, size_t len, size_t *outlen);

/* SOURCE may be NULL for engine-wide events. FMT is the message followed
 * by key=value fields; use log_quote for values that may hold spaces. */
void log_msg(enum log_level level, const char *source, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level level, const char *source, const char *fmt, va_list ap);

/* Writes VALUE quoted if needed ("a b" -> "\"a b\"") into BUF of SIZE. */
const char *log_quote(char *buf, unsigned size, const char *value);

/* Observers see every line written (the control socket streams them). */
typedef void (*log_observer_fn)(enum log_level level, const char *line, void *ud);
void log_set_observer(log_observer_fn fn, void *ud);

#define log_debug(src, ...) log_msg(LOG_DEBUG, src, __VA_ARGS__)
#define log_info(src, ...)  log_msg(LOG_INFO, src, __VA_ARGS__)
#define log_warn(src, ...)  log_msg(LOG_WARN, src, __VA_ARGS__)
#define log_error(src, ...) log_msg(LOG_ERROR, src, __VA_ARGS__)

#endif
