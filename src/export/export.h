#ifndef EMAILVAULT_EXPORT_EXPORT_H
#define EMAILVAULT_EXPORT_EXPORT_H
/*
 * Writing archived messages out, byte-exact: an mbox file (mboxrd: every
 * line that starts with ">*From " gets one more '>', so reading it back
 * gives the very same bytes: src/export/mboxrd.c), one .eml file per
 * message, or a Maildir. Messages are given in the order they are written
 * (the caller sorts by date); each once. Files are 0600, folders 0700.
 */
#include <stddef.h>
#include <stdint.h>

enum export_format { EXPORT_MBOX, EXPORT_EML, EXPORT_MAILDIR };

struct export_opts {
	enum export_format format;
	const char *out;	/* mbox: a file (must not exist); eml, maildir: a folder */
	int by_folder;		/* OUT/source/folder/... (mbox: one file per folder) */
};

struct export_msg {
	const char *hash;
	int64_t date;		/* unix seconds: the From_ line, file names */
	const char *source, *folder;	/* where it was archived (first location) */
	const char *flags;	/* "\\Seen \\Flagged": Maildir info */
	const char *sender;	/* an address for the From_ line, or NULL */
};

struct exporter;

/* Parses "mbox", "eml", "maildir"; -1 if none. */
int export_format_parse(const char *name, enum export_format *out);
struct exporter *exporter_open(const struct export_opts *o, char *err, size_t errlen);
/* Writes one message. 0, or -1 with ERR (the export stops). */
int exporter_add(struct exporter *x, const struct export_msg *m, const char *data, size_t len,
    char *err, size_t errlen);
/* The same from the store, in bounded memory whatever the message's size:
 * a big one is written as it is read (docs/search.md). */
struct store_reader;
int exporter_add_stored(struct exporter *x, const struct export_msg *m, struct store_reader *r,
    char *err, size_t errlen);
/* One message in pieces: begin, any number of writes, end. A write that
 * fails is told at the end, with ERR. OK 0 at the end drops the message's
 * own file (an mbox is dropped as a whole by exporter_close). */
int exporter_begin(struct exporter *x, const struct export_msg *m, char *err, size_t errlen);
int exporter_write(struct exporter *x, const char *p, size_t n);
int exporter_end(struct exporter *x, int ok, char *err, size_t errlen);
/* Finishes (flushes and renames the mbox files into place) and frees.
 * 0, or -1 with ERR; on error nothing half-written is left under OUT's name. */
int exporter_close(struct exporter *x, int ok, char *err, size_t errlen);

#endif
